"""Every export and report.html of every scenario, read back with the real tools and proven
against the replay, as tests/test_exports.py proves them on 3CX (not a test: a sweep to run by
hand when scenarios or exporters change).

    python -m emulator batch scenarios -j 2 -o /tmp/exports-out
    python bench/exports_sweep.py /tmp/exports-out [--no-browser] [--json FILE]

For each output folder (one per scenario): every export file exists and parses (STIX with
stix2 and stix2-validator, the Navigator layer's keys, network.pcap with dpkt and tshark, HAR,
YARA with yara-python, Sigma with pySigma + the sqlite backend, Suricata with suricataparser);
each is proven against the replay (YARA rules match their stage and not the benign corpus,
Sigma rules match the replay's own events and not the benign replay's, Suricata contents are in
the pcap's requests, STIX indicators name the observed hosts, URLs and stage hashes, the layer
holds every technique); nothing is empty that should not be; every exporter and renderer run
again in this process raises nothing; report.html loads in headless Chromium with no console
error, shows every stage and edge, a drawn graph and a story naming each stage.
Prints one line per problem and a count per check; exit 1 if any problem.
"""

from __future__ import annotations

import argparse
import base64
import csv
import functools
import hashlib
import io
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpkt
import stix2
import yara
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from stix2validator import ValidationOptions, validate_string
from suricataparser import parse_file

from emulator.export import DETECTIONS_DIR, EXPORT_FILES
from emulator.export.detections.events import COLUMNS, replay_events, side_loads
from emulator.render import RENDERED_FILES
from emulator.report import Report

REPO = Path(__file__).resolve().parent.parent
BENIGN_SAMPLE = REPO / "scenarios" / "benign-dll" / "samples" / "benign.dll"
_print = print  # the sweep is a script: its output is the point


class Sweep:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str, str]] = []  # (scenario, check, detail)
        self.passed: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def check(self, name: str, what: str, fn: Callable[[], list[str]]) -> None:
        """Run one check; it returns problems (strings) or raises (a problem too)."""
        try:
            found = fn() or []
        except Exception as err:  # noqa: BLE001 - a traceback is a finding
            tb = traceback.format_exception(err)
            found = [f"raised {type(err).__name__}: {err} | {''.join(tb[-3:]).strip()[-400:]}"]
        if found:
            self.failed[what] += 1
            for detail in found:
                self.problems.append((name, what, detail))
        else:
            self.passed[what] += 1


def _report(out: Path) -> Report:
    return Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))


def _http(report: Report) -> list[Any]:
    return [r for r in report.network if r.kind == "http" and r.url and not r.blocked]


def _events_db(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in COLUMNS) + ")")
    db.executemany(
        "INSERT INTO logs VALUES (" + ", ".join("?" * len(COLUMNS)) + ")",
        [tuple(row[c] for c in COLUMNS) for row in rows],
    )
    return db


def _pcap_flows(path: Path) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    flows: dict[int, dict[str, bytes]] = {}
    answers: dict[str, str] = {}
    with path.open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(buf).data
            seg = ip.data
            if isinstance(seg, dpkt.udp.UDP) and 53 in (seg.sport, seg.dport):
                msg = dpkt.dns.DNS(seg.data)
                if msg.qr == dpkt.dns.DNS_R:
                    for rr in msg.an:
                        if rr.type == dpkt.dns.DNS_A:
                            answers[rr.name] = socket.inet_ntoa(rr.ip)
            elif isinstance(seg, dpkt.tcp.TCP):
                client = seg.sport if seg.sport >= 49152 else seg.dport
                flow = flows.setdefault(client, {"c": b"", "s": b""})
                flow["c" if seg.sport == client else "s"] += seg.data
    return [(f["c"], f["s"]) for f in flows.values()], answers


# --- the checks -------------------------------------------------------------------------------


def files_exist(out: Path, report: Report) -> list[str]:
    missing = [n for n in (*EXPORT_FILES, *RENDERED_FILES) if not (out / n).is_file()]
    if not (out / DETECTIONS_DIR / "suricata.rules").is_file():
        missing.append(f"{DETECTIONS_DIR}/suricata.rules")
    failed = [
        f"note {n.what}: {n.detail}" for n in report.notes if n.what in ("export_failed", "graph", "analysis_cut")
    ]
    return [f"missing {m}" for m in missing] + failed


def rerun(out: Path, report: Report) -> list[str]:
    """Every exporter and renderer, called here so a traceback is seen (a replay turns one into a note)."""
    from emulator.export import _exports
    from emulator.render.files import rendered_bytes, saved_bodies

    problems = []
    for name, produce in _exports(report, out).items():
        try:
            data = produce()
        except Exception as err:  # noqa: BLE001
            problems.append(f"{name} raised {type(err).__name__}: {err}")
            continue
        if isinstance(data, bytes) and (out / name).is_file() and (out / name).read_bytes() != data:
            problems.append(f"{name}: not what the replay wrote")
    rendered = rendered_bytes(report, saved_bodies(report, out))
    for name, data in rendered.items():
        if not data:
            problems.append(f"{name} is empty")
    return problems


def check_iocs(out: Path, report: Report) -> list[str]:
    rows = list(csv.DictReader(io.StringIO((out / "iocs.csv").read_text(encoding="utf-8"))))
    have = {(r["value"], r["type"]) for r in rows}
    want = {(s.sha256, "sha256") for s in report.stages} | {(d.sha256, "sha256") for d in report.dropped}
    for record in _http(report):
        want |= {(record.host, "domain"), (record.url, "url")}
    want |= {(r.host, "domain") for r in report.network if r.host and not re.fullmatch(r"[\d.]+", r.host)}
    want |= {(f.path, "file_path") for f in report.files}
    for reg in report.registry:
        want.add((f"{reg.path}\\{reg.value_name}" if reg.value_name else reg.path, "registry_key"))
    stage_ids = {s.id for s in report.stages} | {""}
    bad = [f"row names unknown stage {r['stage']}" for r in rows if not set(r["stage"].split(";")) <= stage_ids]
    return bad + [f"missing {v} ({t})" for v, t in sorted(want - have)]


def check_stix(out: Path, report: Report) -> list[str]:
    text = (out / "stix-bundle.json").read_text(encoding="utf-8")
    problems = []
    result = validate_string(text, ValidationOptions(disabled=["uuid-check"]))
    if not result.is_valid:
        problems += [f"invalid: {e}" for e in result.errors][:5]
    bundle = stix2.parse(text, allow_custom=False)
    by_type: dict[str, list[Any]] = {}
    for obj in bundle.objects:
        by_type.setdefault(obj.type, []).append(obj)
    ids = {o.id for o in bundle.objects}
    for obj in bundle.objects:
        data = json.loads(obj.serialize())
        refs = [v for k, v in data.items() if k.endswith("_ref")]
        refs += [r for k, v in data.items() if k.endswith("_refs") for r in v]
        problems += [f"{obj.id} refers to missing {r}" for r in refs if r not in ids]
    malware = by_type.get("malware", [])
    if len(malware) != len(report.stages):
        problems.append(f"{len(malware)} malware objects for {len(report.stages)} stages")
    patterns = {i.pattern for i in by_type.get("indicator", [])}
    for record in _http(report):
        for p in (f"[domain-name:value = '{record.host}']", f"[url:value = '{record.url}']"):
            if p not in patterns:
                problems.append(f"no indicator {p}")
    for record in report.network:
        named = record.host and not record.blocked and not re.fullmatch(r"[\d.]+", record.host)
        if named and f"[domain-name:value = '{record.host}']" not in patterns:
            problems.append(f"no domain indicator for {record.kind} host {record.host}")
    for stage in report.stages:
        if f"[file:hashes.'SHA-256' = '{stage.sha256}']" not in patterns:
            problems.append(f"no hash indicator for {stage.id}")
    techniques = {r.external_id for ap in by_type.get("attack-pattern", []) for r in ap.external_references}
    if techniques != {t.technique for t in report.attack}:
        problems.append(f"techniques differ: {sorted(techniques ^ {t.technique for t in report.attack})}")
    names = {m.id: m.name.split(":")[0] for m in malware}
    links = {
        (names[r.source_ref], names[r.target_ref])
        for r in by_type.get("relationship", [])
        if r.source_ref in names and r.target_ref in names
    }
    for stage in report.stages:
        if stage.parent and (stage.parent, stage.id) not in links:
            problems.append(f"no relationship {stage.parent} -> {stage.id}")
    return problems


def check_navigator(out: Path, report: Report) -> list[str]:
    layer = json.loads((out / "attack-navigator-layer.json").read_text(encoding="utf-8"))
    problems = [f"no key {k}" for k in ("name", "versions", "domain", "techniques") if k not in layer]
    entries = {t["techniqueID"]: t for t in layer.get("techniques", [])}
    want = {t.technique for t in report.attack}
    if set(entries) != want:
        problems.append(f"techniques differ: {sorted(set(entries) ^ want)}")
    for hit in report.attack:
        entry = entries.get(hit.technique)
        if entry and f"stage {hit.stage}" not in entry["comment"]:
            problems.append(f"{hit.technique}: comment does not name {hit.stage}")
    return problems


def check_pcap(out: Path, report: Report, tshark: str | None) -> list[str]:
    problems = []
    flows, answers = _pcap_flows(out / "network.pcap")
    http = _http(report)
    http_flows = [f for f in flows if f[0][:4] in (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC")]
    if len(http_flows) != len(http):
        problems.append(f"{len(http_flows)} HTTP flows in the pcap for {len(http)} exchanges")
    for (client, server), record in zip(http_flows, http, strict=False):
        request = dpkt.http.Request(client)
        if request.method != record.method or not record.url.endswith(request.uri):
            problems.append(f"seq {record.seq}: pcap has {request.method} {request.uri}")
        body = request.body
        if hashlib.sha256(body).hexdigest() != (record.request.sha256 or hashlib.sha256().hexdigest()):
            problems.append(f"seq {record.seq}: request body differs")
        if server:
            response = dpkt.http.Response(server)
            if response.status != str(record.response.status):
                problems.append(f"seq {record.seq}: status {response.status}")
            if record.response.sha256 and hashlib.sha256(response.body).hexdigest() != record.response.sha256:
                problems.append(f"seq {record.seq}: response body differs")
        if record.host not in answers and not re.fullmatch(r"[\d.]+", record.host):
            problems.append(f"seq {record.seq}: no DNS answer for {record.host}")
    problems += _dns_in_pcap(out, report)
    if tshark:
        base = [tshark, "-r", str(out / "network.pcap"), "-d", "tcp.port==443,http"]
        bad = subprocess.run(
            [*base, "-Y", "_ws.malformed || _ws.expert.severity == error"], capture_output=True, text=True, timeout=60
        ).stdout
        if bad.strip():
            problems.append(f"tshark: malformed packets: {bad.strip()[:200]}")
    har = json.loads((out / "network.har").read_text(encoding="utf-8"))
    entries = [e for e in har["log"]["entries"] if e["response"]["status"]]  # a blocked request is status 0
    if len(entries) != len(http):
        problems.append(f"HAR has {len(entries)} answered entries for {len(http)} exchanges")
    for entry, record in zip(entries, http, strict=False):
        content = entry["response"]["content"]
        text = content.get("text", "")
        body = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode()
        if record.response.sha256 and hashlib.sha256(body).hexdigest() != record.response.sha256:
            problems.append(f"HAR seq {record.seq}: body differs")
    return problems


def _dns_in_pcap(out: Path, report: Report) -> list[str]:
    """Every DNS exchange of the report is a query of its type in the pcap, answered as recorded."""
    problems = []
    answers: dict[tuple[str, int], list[Any]] = {}
    with (out / "network.pcap").open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            seg = dpkt.ethernet.Ethernet(buf).data.data
            if isinstance(seg, dpkt.udp.UDP) and seg.sport == 53:
                msg = dpkt.dns.DNS(seg.data)
                for q in msg.qd:
                    answers.setdefault((q.name.lower(), q.type), []).append(msg)
    for record in report.network:
        if record.kind != "dns":
            continue
        kind = dpkt.dns.DNS_TXT if "TXT" in record.response.headers else dpkt.dns.DNS_A
        got = answers.get((record.host.lower(), kind))
        if not got:
            problems.append(f"DNS seq {record.seq}: no {'TXT' if kind == dpkt.dns.DNS_TXT else 'A'} answer in the pcap")
            continue
        if kind == dpkt.dns.DNS_TXT and record.response.sha256:
            body = (out / "network" / f"{record.response.sha256}.bin").read_bytes()
            texts = [t.encode("latin-1") if isinstance(t, str) else t for rr in got[0].an for t in rr.text]
            if b"".join(texts) != body:
                problems.append(f"DNS seq {record.seq}: TXT answer differs from the record")
        if kind == dpkt.dns.DNS_A and record.response.headers.get("A"):
            ips = [socket.inet_ntoa(rr.ip) for m in got for rr in m.an if rr.type == dpkt.dns.DNS_A]
            if record.response.headers["A"] not in ips:
                problems.append(f"DNS seq {record.seq}: A answer {ips} is not {record.response.headers['A']}")
    return problems


def check_yara(out: Path, report: Report, benign: list[bytes]) -> list[str]:
    problems = []
    folder = out / "detections" / "yara"
    stage_bytes = {s.id: (out / s.file).read_bytes() for s in report.stages if (out / s.file).is_file()}
    for stage in report.stages:
        if stage.id not in stage_bytes:
            problems.append(f"{stage.id}: no bytes at {stage.file}")
            continue
        path = folder / f"{stage.id}.yar"
        if not path.is_file() and stage_bytes[stage.id] in benign:
            continue  # a benign binary: nothing in it may become a rule
        if not path.is_file():
            problems.append(f"{stage.id} ({stage.kind}, {stage.size} bytes): no YARA rule")
            continue
        text = path.read_text(encoding="utf-8")
        rules = yara.compile(source=text)
        if not rules.match(data=stage_bytes[stage.id]):
            problems.append(f"{stage.id}: its rule does not match it")
        for i, data in enumerate(benign):
            if rules.match(data=data):
                problems.append(f"{stage.id}: its rule matches benign sample {i}")
        also = re.search(r'also_matches = "stages that carry these bytes: ([^"]*)"', text)
        allowed = set(also.group(1).split(", ")) if also else set()
        for other, data in stage_bytes.items():
            if (
                other != stage.id
                and data != stage_bytes[stage.id]
                and bool(rules.match(data=data)) != (other in allowed)
            ):
                problems.append(f"{stage.id}: rule vs {other}: also_matches is wrong")
    extra = {p.stem for p in folder.glob("*.yar")} - {s.id for s in report.stages}
    problems += [f"rule for unknown stage {x}" for x in sorted(extra)]
    return problems


def check_sigma(out: Path, report: Report, benign_rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    files = sorted((out / "detections" / "sigma").glob("*.yml"))
    categories = {f.name.rsplit("_", 1)[0] if f.name.startswith("proxy_beacon") else f.stem for f in files}
    own = _events_db(replay_events(report))
    benign = _events_db(benign_rows)
    backend = sqliteBackend()
    for file in files:
        collection = SigmaCollection.from_yaml(file.read_text(encoding="utf-8"))
        if collection.errors:
            problems.append(f"{file.name}: {collection.errors}")
            continue
        (rule,) = collection.rules
        (query,) = backend.convert(collection)
        hits = own.execute(query).fetchall()
        if not hits:
            problems.append(f"{file.name}: matches none of the replay's events")
        elif {h[0] for h in hits} != {rule.logsource.category}:
            problems.append(f"{file.name}: matches other categories")
        if benign.execute(query).fetchall():
            problems.append(f"{file.name}: matches the benign replay")
        # values a real log would hold: a path's end is never a second absolute path
        raw = file.read_text(encoding="utf-8")
        if re.search(r"\\\\[A-Za-z]:\\\\", raw.replace("\\\\\\\\", "\\\\")) or re.search(r"'\\[A-Za-z]:\\", raw):
            problems.append(f"{file.name}: an endswith value holds a drive letter after a backslash")
    hosts = {r.host for r in report.network if r.host and not re.fullmatch(r"[\d.:]+", r.host)}
    if hosts and "dns_query_domains" not in categories:
        problems.append("hosts contacted but no dns_query rule")
    if _http(report) and "proxy_urls" not in categories:
        problems.append("HTTP exchanges but no proxy rule")
    if report.dropped and "file_event_dropped" not in categories:
        problems.append("dropped files but no file_event rule")
    if side_loads(report) and "image_load_sideloaded" not in categories:
        problems.append("side-loads but no image_load rule")
    hijacks = sorted({t.technique for t in report.attack if t.technique.startswith("T1574.")})
    if hijacks and "image_load_sideloaded" not in categories:
        problems.append(f"{', '.join(hijacks)} observed but no image_load rule")
    started = [e for e in report.graph.edges if e.type == "creates_process"]
    if started and not any(c.startswith("process_creation") for c in categories):
        problems.append(f"{len(started)} process(es) started but no process_creation rule")
    return problems


def _unescape(value: str) -> str:
    text = value.strip('"')
    return re.sub(r"\|([0-9a-fA-F ]+)\|", lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), text)


def check_suricata(out: Path, report: Report) -> list[str]:
    problems = []
    path = out / "detections" / "suricata.rules"
    rules = parse_file(str(path))
    lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x and x[0] != "#"]
    if len(rules) != len(lines):
        problems.append(f"{len(lines)} lines, {len(rules)} parsed")
    if len({r.sid for r in rules}) != len(rules):
        problems.append("duplicate sids")
    http = _http(report)
    if http and not rules:
        problems.append("HTTP exchanges but no Suricata rule")
    flows, _ = _pcap_flows(out / "network.pcap")
    http_flows = [f for f in flows if f[0][:4] in (b"GET ", b"POST", b"PUT ", b"HEAD")]
    by_seq = {r.seq: dpkt.http.Request(c) for (c, _), r in zip(http_flows, http, strict=False)}
    records = {r.seq: r for r in report.network}
    dns_queries, server_bytes = _pcap_dns_and_streams(out / "network.pcap")
    role_of: dict[int, str] = {}
    for rule in rules:
        meta = next(o.value for o in rule.options if o.name == "metadata")
        found = re.search(r"chainreplay_seq (\d+)", str(meta.data))
        seq = int(found.group(1)) if found else -1
        role_of[seq] = rule.msg.split()[3] if len(rule.msg.split()) > 3 else "?"
        record = records.get(seq)
        if record is None:
            problems.append(f"sid {rule.sid}: no exchange seq {seq}")
            continue
        contents = [_unescape(o.value) for o in rule.options if o.name == "content"]
        if record.kind == "dns":
            if not all(c.lower() in dns_queries for c in contents):
                problems.append(f"sid {rule.sid}: dns.query {contents} not queried in the pcap")
            continue
        if record.kind in ("tcp", "udp"):
            stream = server_bytes.get(record.port or 0, b"").decode("latin-1")
            if not all(c in stream for c in contents):
                problems.append(f"sid {rule.sid}: content not in the pcap's {record.kind} stream")
            continue
        request = by_seq.get(seq)
        if request is None:
            problems.append(f"sid {rule.sid}: no request seq {seq} in the pcap")
            continue
        buffers = {
            "http.method": request.method,
            "http.host": request.headers.get("host", "").lower(),
            "http.uri": request.uri,
            "http.user_agent": request.headers.get("user-agent", ""),
            "http.cookie": request.headers.get("cookie", ""),
        }
        sticky = None
        for option in rule.options:
            if option.name in buffers:
                sticky = option.name
            elif option.name == "content" and sticky and _unescape(option.value) not in buffers[sticky]:
                problems.append(f"sid {rule.sid}: {sticky} content {option.value} not in the pcap's request")
    # every stage whose bytes came over the network: a rule on that exchange says download
    for stage in report.stages:
        for hop in stage.lineage or []:
            if hop.source != "network":
                continue
            ref = hop.ref
            seqs = [
                r.seq
                for r in report.network
                if ref in (r.url, r.host, f"{r.kind}://{r.host}:{r.port}") and not r.blocked
            ]
            if not any(role_of.get(seq) == "download" for seq in seqs):
                problems.append(f"{stage.id} came from {ref} but no Suricata rule on it is a download")
    return problems


def _pcap_dns_and_streams(path: Path) -> tuple[set[str], dict[int, bytes]]:
    """The names queried in the pcap (lower case) and, per server port, the bytes servers sent."""
    names: set[str] = set()
    streams: dict[int, bytes] = {}
    with path.open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            seg = dpkt.ethernet.Ethernet(buf).data.data
            if isinstance(seg, dpkt.udp.UDP) and seg.dport == 53:
                names |= {q.name.lower() for q in dpkt.dns.DNS(seg.data).qd}
            elif isinstance(seg, dpkt.tcp.TCP | dpkt.udp.UDP) and seg.sport < 49152:
                streams[seg.sport] = streams.get(seg.sport, b"") + bytes(seg.data)
    return names, streams


# --- the browser ------------------------------------------------------------------------------


class Browser:
    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="exports-sweep-chromium-")
        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1600,1200",
        ):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def check(self, out: Path, report: Report) -> list[str]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        from emulator.render.layout import build_layout

        d = self.driver
        problems = []
        d.get((out / "report.html").resolve().as_uri())
        WebDriverWait(d, 20).until(lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        logs = [e for e in d.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]
        problems += [f"console {e['level']}: {e['message'][:200]}" for e in logs]
        layout = build_layout(report)
        nodes = d.find_elements(By.CSS_SELECTOR, "#graph svg .node")
        edges = d.find_elements(By.CSS_SELECTOR, "#graph svg .edge")
        if len(nodes) != len(layout.boxes):
            problems.append(f"{len(nodes)} node boxes drawn for {len(layout.boxes)} laid out")
        if len(edges) != len(layout.routes):
            problems.append(f"{len(edges)} edges drawn for {len(layout.routes)} routes")
        small = [n.get_attribute("id") for n in nodes if n.size["width"] <= 20 or n.size["height"] <= 10]
        if small:
            problems.append(f"nodes not drawn with a size: {small[:5]}")
        # every graph node and edge of report.json is in the layout (or its overflow box)
        box_ids = {b.id for b in layout.boxes}
        overflow = any(b.kind == "more" or "more node" in " ".join(b.lines) for b in layout.boxes)
        lost = [n.id for n in report.graph.nodes if n.id not in box_ids]
        if lost and not overflow:
            problems.append(f"graph nodes not drawn: {lost[:5]}")
        routed = {(r.source, r.target, r.type) for r in layout.routes}
        missing = [
            (e.source, e.type, e.target)
            for e in report.graph.edges
            if (e.source, e.target, e.type) not in routed and e.source in box_ids and e.target in box_ids
        ]
        if missing:
            problems.append(f"graph edges not drawn: {missing[:5]}")
        texts = " ".join(n.text for n in nodes)
        for stage in report.stages:
            if stage.id not in texts:
                problems.append(f"stage {stage.id} not among the graph's nodes")
        story = d.find_element(By.ID, "story").text
        for stage in report.stages:
            if f"Stage {stage.id}" not in story and f"{stage.id}:" not in story:
                problems.append(f"the story does not tell stage {stage.id}")
        stages_table = d.find_element(By.ID, "stages").text
        for stage in report.stages:
            if stage.id not in stages_table:
                problems.append(f"stage {stage.id} not in the stages table")
        if report.stages and not d.find_elements(By.CSS_SELECTOR, "#timeline tbody tr"):
            problems.append("timeline empty")
        # a node click shows its details without an error
        if nodes:
            d.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", nodes[0])
            if d.find_element(By.ID, "details").get_attribute("data-selected") != "node0":
                problems.append("clicking a node shows no details")
        later = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        problems += [f"console after click: {e['message'][:200]}" for e in later]
        # the standalone SVG renders (its own document, with a drawn size); the PNG decodes
        d.get((out / "stage_graph.svg").resolve().as_uri())
        size = d.execute_script(
            "const r = document.documentElement; return r.tagName === 'svg' ? r.getBBox().width : -1;"
        )
        if not size or size <= 0:
            problems.append(f"stage_graph.svg does not render ({size})")
        problems += [f"stage_graph.svg console: {e['message'][:200]}" for e in d.get_log("browser")]
        from PIL import Image

        with Image.open(out / "stage_graph.png") as png:
            png.load()
            if png.width < 100 or png.height < 100:
                problems.append(f"stage_graph.png is {png.width}x{png.height}")
        return problems


def _narration(out: Path, report: Report) -> list[str]:
    text = (out / "narration.md").read_text(encoding="utf-8")
    problems = [f"narration.md does not tell stage {s.id}" for s in report.stages if f"Stage {s.id}: " not in text]
    for note in report.notes:
        section = text.split(f"## Stage {note.stage}:", 1)[-1].split("\n## ", 1)[0] if note.stage else text
        if note.detail[:50] not in section:
            problems.append(f"narration.md does not tell {note.what} of {note.stage or 'the replay'}")
    html = (out / "report.html").read_text(encoding="utf-8")
    notes = html.split('<section id="notes">', 1)[-1].split("</section>", 1)[0]
    if report.notes and notes.count("<tr>") != min(len(report.notes), 200) + 1:
        problems.append("report.html's Notes table does not list every note")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a batch's output folder (one subfolder per scenario)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    outs = sorted(p for p in args.folder.iterdir() if (p / "report.json").is_file())
    if args.only:
        outs = [p for p in outs if p.name in args.only]
    sweep = Sweep()
    tshark = shutil.which("tshark")
    benign_out = args.folder / "benign-dll"
    benign = [BENIGN_SAMPLE.read_bytes()]
    benign_rows: list[dict[str, Any]] = []
    if (benign_out / "report.json").is_file():
        benign += [p.read_bytes() for p in (benign_out / "stages").iterdir()]
        benign_rows = replay_events(_report(benign_out))
    browser = None if args.no_browser else Browser()
    try:
        for out in outs:
            name = out.name
            report = _report(out)
            sweep.counts["scenarios"] += 1
            sweep.counts["stages"] += len(report.stages)
            sweep.counts["yara rules"] += len(list((out / "detections" / "yara").glob("*.yar")))
            sweep.counts["sigma rules"] += len(list((out / "detections" / "sigma").glob("*.yml")))
            sweep.counts["suricata rules"] += len(parse_file(str(out / "detections" / "suricata.rules")))
            sweep.counts["http exchanges"] += len(_http(report))
            sweep.counts["techniques"] += len({t.technique for t in report.attack})
            sweep.counts["graph nodes"] += len(report.graph.nodes)
            sweep.counts["graph edges"] += len(report.graph.edges)
            checks: list[tuple[str, Callable[[Path, Report], list[str]]]] = [
                ("files", files_exist),
                ("rerun (no traceback)", rerun),
                ("iocs.csv", check_iocs),
                ("stix", check_stix),
                ("navigator", check_navigator),
                ("pcap/har", lambda o, r: check_pcap(o, r, tshark)),
                ("yara", lambda o, r: check_yara(o, r, benign)),
                ("sigma", lambda o, r: check_sigma(o, r, benign_rows)),
                ("suricata", check_suricata),
                ("narration.md", _narration),
            ]
            if browser is not None:
                checks.append(("html (chromium)", browser.check))
            for what, fn in checks:
                sweep.check(name, what, functools.partial(fn, out, report))
    finally:
        if browser is not None:
            browser.close()
    for name, what, detail in sweep.problems:
        _print(f"{name}: {what}: {detail}")
    _print()
    for what in sorted(set(sweep.passed) | set(sweep.failed)):
        _print(f"{what:24} {sweep.passed[what]:4} passed {sweep.failed[what]:4} with problems")
    _print(", ".join(f"{v} {k}" for k, v in sweep.counts.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "problems": sweep.problems,
                    "passed": dict(sweep.passed),
                    "failed": dict(sweep.failed),
                    "counts": dict(sweep.counts),
                },
                indent=2,
            )
        )
    return 1 if sweep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
