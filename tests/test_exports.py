"""Exports (iocs.csv, STIX, ATT&CK layer, pcap, HAR), --yara, and the generated detections, each
checked against the replay's own artifacts: parsed back, validated, and run over the replay.

The chains: 3CX (x64 and x86), the WinHTTP downloader and the generality suite (chains whose
stages arrive by registry, CryptoAPI, LZNT1, XOR layers, a custom cipher, four kinds of
injection, drop-and-load, and a negative control); benign-dll is the benign control.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dpkt
import pytest
import stix2
import yara
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from stix2validator import ValidationOptions, validate_string
from suricataparser import parse_file

from emulator.cli import main
from emulator.export.attack_meta import ATTACK_RELEASE
from emulator.export.detections.events import COLUMNS, replay_events
from emulator.export.stix import stix_json
from emulator.report import Report

CHAINS = ["3cx", "winhttp-downloader", "3cx-x86"]
# The generality suite (scenarios/lineage-common/README.md): chains nobody wrote an export for,
# one per way a stage arrives (registry + base64 + XOR on x86, LZNT1, a custom cipher in two
# layers, hollowing, drop-and-load) and the negative control; their replays are the ones
# tests/test_lineage.py shares (the others of the suite cost ~3 s each here and add no new path).
GENERALITY = [
    "reg-b64-xor-x86",
    "file-lznt1",
    "custom-cipher",
    "inject-hollowing",
    "drop-load-dll",
    "negative-control",
]
# Of those, the ones with HTTP traffic (pcap, HAR and Suricata rules to check).
GENERALITY_NETWORK = ["drop-load-dll", "negative-control"]
REPO = Path(__file__).resolve().parent.parent
BENIGN_SAMPLE = REPO / "scenarios" / "benign-dll" / "samples" / "benign.dll"

Outdir = Callable[[str], Path]


def _report(out: Path) -> Report:
    return Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))


def _http(report: Report) -> list[Any]:
    return [r for r in report.network if r.kind == "http" and r.url and not r.blocked]


# --- iocs.csv ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_iocs_csv_names_every_indicator_of_the_report(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    rows = list(csv.DictReader(io.StringIO((out / "iocs.csv").read_text(encoding="utf-8"))))
    assert rows and list(rows[0]) == ["value", "type", "stage", "evidence", "description"]
    have = {(r["value"], r["type"]) for r in rows}
    stage_ids = {s.id for s in report.stages}
    for row in rows:
        assert set(row["stage"].split(";")) <= stage_ids | {""}, row
        assert all(e.isdigit() for e in row["evidence"].split(";") if e), row
    for stage in report.stages:
        assert (stage.sha256, "sha256") in have
    for dropped in report.dropped:
        assert (dropped.sha256, "sha256") in have
    for record in _http(report):
        assert (record.host, "domain") in have
        assert (record.url, "url") in have
        if record.response.sha256:
            assert (record.response.sha256, "sha256") in have
        for head, kind in (("User-Agent", "user_agent"), ("Cookie", "cookie")):
            if head in record.request.headers:
                assert (record.request.headers[head], kind) in have
    for sync in report.sync_objects:
        assert (sync.name, "sync_object") in have
    for file in report.files:
        assert (file.path, "file_path") in have
    for reg in report.registry:
        key = f"{reg.path}\\{reg.value_name}" if reg.value_name else reg.path
        assert (key, "registry_key") in have


def test_3cx_iocs_include_the_beacon_cookie_and_the_mutex(scenario_outdir: Outdir) -> None:
    rows = list(csv.DictReader(io.StringIO((scenario_outdir("3cx") / "iocs.csv").read_text(encoding="utf-8"))))
    kinds = {r["type"] for r in rows}
    assert {"domain", "url", "sha256", "sync_object", "file_path", "registry_key", "user_agent", "cookie"} <= kinds
    cookie = next(r for r in rows if r["type"] == "cookie")
    assert cookie["value"].startswith("__tutma=") and cookie["stage"]


# --- STIX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_stix_bundle_parses_validates_and_follows_the_stage_graph(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    text = (out / "stix-bundle.json").read_text(encoding="utf-8")
    # uuid5 ids are deterministic by design; the spec only recommends (SHOULD) UUIDv4.
    result = validate_string(text, ValidationOptions(disabled=["uuid-check"]))
    assert result.is_valid, [str(e) for e in result.errors]
    bundle = stix2.parse(text, allow_custom=False)
    by_type: dict[str, list[Any]] = {}
    for obj in bundle.objects:
        by_type.setdefault(obj.type, []).append(obj)
    (analysis,) = by_type["malware-analysis"]
    assert analysis.product == "chainreplay" and analysis.version == report.tool.version
    assert analysis.analysis_engine_version == report.tool.engine
    assert analysis.result in ("suspicious", "unknown")
    ids = {o.id: o for o in bundle.objects}
    assert all(ref in ids for ref in analysis.analysis_sco_refs)
    malware = by_type["malware"]
    assert len(malware) == len(report.stages)
    for stage in report.stages:
        (m,) = [m for m in malware if m.name == f"{stage.id}: {stage.name}"]
        (file,) = [ids[r] for r in m.sample_refs]
        assert file.hashes["SHA-256"] == stage.sha256
        data = (out / stage.file).read_bytes()
        assert file.hashes["MD5"] == hashlib.md5(data).hexdigest()
    patterns = {i.pattern for i in by_type["indicator"]}
    for record in _http(report):
        assert f"[domain-name:value = '{record.host}']" in patterns
        assert f"[url:value = '{record.url}']" in patterns
    for stage in report.stages:
        assert f"[file:hashes.'SHA-256' = '{stage.sha256}']" in patterns
    techniques = {ref.external_id for ap in by_type.get("attack-pattern", []) for ref in ap.external_references}
    assert techniques == {t.technique for t in report.attack}
    # relationships follow the stage graph: each child stage is downloaded/dropped by its parent
    names = {m.id: m.name.split(":")[0] for m in malware}
    links = {
        (names[r.source_ref], r.relationship_type, names[r.target_ref])
        for r in by_type["relationship"]
        if r.source_ref in names and r.target_ref in names
    }
    for stage in report.stages:
        if stage.parent:
            kind = "downloads" if stage.origin.type == "network" else "drops"
            assert (stage.parent, kind, stage.id) in links
    assert text == stix_json(report, out)


def _stix2_made(report: Report, out: Path) -> str:
    """The bundle text with every object made by stix2 (what stix_json wrote before its fast path)."""
    from emulator.export.stix import stix_bundle

    return json.dumps(json.loads(stix_bundle(report, out).serialize()), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_stix_bundle_made_as_plain_objects_is_the_one_stix2_makes(name: str, scenario_outdir: Outdir) -> None:
    from emulator.export import stix

    out = scenario_outdir(name)
    report = _report(out)
    assert stix._fast_allowed(stix._patterns(report), stix._timestamp(report.virtual_time.start))
    assert stix_json(report, out) == _stix2_made(report, out)


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(max_size=12),
    start=st.sampled_from(
        ["2023-03-29T12:00:00Z", "2023-03-29T12:00:00.5Z", "2023-03-29T12:00:00.123456Z", "2023-03-29T14:00:00+02:00"]
    ),
    stages=st.integers(min_value=0, max_value=3),
)
def test_stix_bundle_of_any_names_times_and_stages_is_the_one_stix2_makes(
    text: str, start: str, stages: int, scenario_outdir: Outdir
) -> None:
    """Names and descriptions with any characters (quotes, backslashes, controls, non-ASCII,
    empty), start times with and without fractions (one with an offset stix2 refuses), no stages
    at all: the plain objects serialise as stix2's."""
    out = scenario_outdir("3cx")
    report = _report(out)
    kept = report.stages[:stages]
    report = report.model_copy(
        update={
            "stages": [s.model_copy(update={"name": text + s.name}) for s in kept],
            "virtual_time": report.virtual_time.model_copy(update={"start": start}),
            "target": report.target.model_copy(update={"name": text}),
            "attack": [t.model_copy(update={"name": text}) for t in report.attack],
            "outcome": report.outcome.model_copy(update={"detail": text}),
            "network": report.network if stages else [],  # none: no observable, no reference to one
        }
    )
    try:
        expected = _stix2_made(report, out)
    except stix2.exceptions.InvalidValueError:  # a start time stix2 cannot parse: refused either way
        with pytest.raises(stix2.exceptions.InvalidValueError):
            stix_json(report, out)
        return
    assert stix_json(report, out) == expected


_PATTERN_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(_PATTERN_TEXT, st.sampled_from(["'", "\\", "\\'", "'\\", "a'b\\c", ""])),
    path=st.sampled_from(["domain-name:value", "url:value", "ipv4-addr:value"]),
)
def test_patterns_known_valid_are_what_stix2s_validator_accepts(value: str, path: str) -> None:
    """The patterns the bundle's indicators skip stix2's parser for are ones it accepts: the same
    verdict for every printable value (quotes and backslashes escaped as the bundle does), for
    hashes of the right and the wrong form, and for values outside printable ASCII (not skipped)."""
    from stix2patterns.validator import run_validator

    from emulator.export.stix import _quote, known_valid_pattern

    for pattern in (
        f"[{path} = {_quote(value)}]",
        f"[file:hashes.'SHA-256' = {_quote(value)}]",
        f"[{path} = {_quote(value + chr(0xE9))}]",  # outside printable ASCII: left to the parser
        f"[{path} = '{value}']",  # not escaped: valid or not, the parser decides
    ):
        if known_valid_pattern(pattern):
            assert run_validator(pattern, "2.1") == [], pattern
    assert known_valid_pattern(f"[{path} = {_quote(value)}]")
    assert known_valid_pattern(f"[file:hashes.'SHA-256' = '{hashlib.sha256(value.encode()).hexdigest()}']")
    assert not known_valid_pattern(f"[{path} = {_quote(value + chr(0xE9))}]")


def test_an_indicator_with_a_pattern_of_another_form_is_still_checked_by_stix2() -> None:
    from emulator.export.stix import _Indicator

    common = {"pattern_type": "stix", "valid_from": "2020-01-01T00:00:00Z"}
    good = "[file:hashes.'SHA-256' = '" + "ab" * 32 + "']"
    assert _Indicator(pattern=good, **common).pattern == good
    short, long = "[file:hashes.'SHA-256' = '" + "a" * 63 + "']", "[file:hashes.'SHA-256' = '" + "a" * 65 + "']"
    for bad in (short, long, "[url:value = 'a'b']", "[url:value = 'a' AND]", "[url:value = 'a\\']"):
        with pytest.raises(stix2.exceptions.InvalidValueError):
            _Indicator(pattern=bad, **common)
    with pytest.raises(ValueError, match="valid_until"):  # every other check of stix2's still runs
        _Indicator(pattern=good, valid_until="2019-01-01T00:00:00Z", **common)


def test_two_replays_write_the_same_exports(scenario_outdir: Outdir, tmp_path: Path) -> None:
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    first = scenario_outdir("winhttp-downloader")
    replay_target(load_scenario(REPO / "scenarios" / "winhttp-downloader"), tmp_path, isolate=False)
    exported = ["iocs.csv", "stix-bundle.json", "attack-navigator-layer.json", "network.pcap", "network.har"]
    exported += [p.relative_to(first).as_posix() for p in (first / "detections").rglob("*") if p.is_file()]
    assert len(exported) > 6
    for name in exported:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


# --- ATT&CK Navigator -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_navigator_layer(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    layer = json.loads((out / "attack-navigator-layer.json").read_text(encoding="utf-8"))
    assert layer["versions"] == {"attack": ATTACK_RELEASE, "navigator": layer["versions"]["navigator"], "layer": "4.5"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", layer["versions"]["navigator"])
    assert layer["domain"] == "enterprise-attack" and layer["name"]
    entries = {t["techniqueID"]: t for t in layer["techniques"]}
    assert set(entries) == {t.technique for t in report.attack}
    for hit in report.attack:
        entry = entries[hit.technique]
        assert f"stage {hit.stage}" in entry["comment"] and str(hit.evidence) in entry["comment"]
        assert isinstance(entry["score"], int) and entry["enabled"] is True


# --- network.pcap / network.har ---------------------------------------------------------------


def _pcap_requests(path: Path) -> tuple[list[tuple[Any, Any]], dict[str, str]]:
    """(request, response) per TCP flow in order of first packet, and the DNS answers (host -> A)."""
    flows: dict[tuple[int, int], dict[str, bytes]] = {}
    answers: dict[str, str] = {}
    with path.open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(buf).data
            seg = ip.data
            if isinstance(seg, dpkt.udp.UDP) and 53 in (seg.sport, seg.dport):
                msg = dpkt.dns.DNS(seg.data)
                if msg.qr == dpkt.dns.DNS_R:
                    for rr in msg.an:
                        answers[rr.name] = socket.inet_ntoa(rr.ip)
            elif isinstance(seg, dpkt.tcp.TCP):
                client = seg.sport if seg.sport >= 49152 else seg.dport
                flow = flows.setdefault((client, 0), {"c": b"", "s": b""})
                flow["c" if seg.sport == client else "s"] += seg.data
    pairs = []
    for flow in flows.values():
        request = dpkt.http.Request(flow["c"])
        response = dpkt.http.Response(flow["s"]) if flow["s"] else None
        pairs.append((request, response))
    return pairs, answers


@pytest.mark.parametrize("name", CHAINS + GENERALITY_NETWORK)
def test_pcap_holds_every_exchange_with_its_headers_and_bodies(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    pairs, answers = _pcap_requests(out / "network.pcap")
    records = _http(report)
    assert records and len(pairs) == len(records)
    for (request, response), record in zip(pairs, records, strict=True):
        assert request.method == record.method
        assert record.url.endswith(request.uri)
        for key, value in record.request.headers.items():
            assert request.headers[key.lower()] == value
        assert hashlib.sha256(request.body).hexdigest() == (record.request.sha256 or hashlib.sha256().hexdigest())
        assert response.status == str(record.response.status)
        assert hashlib.sha256(response.body).hexdigest() == record.response.sha256
        assert record.host in answers
        assert answers[record.host].startswith("203.0.113.")


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_pcap_with_headers_packed_here_is_the_one_dpkt_makes(name: str, scenario_outdir: Outdir) -> None:
    from emulator.export import pcap

    out = scenario_outdir(name)
    report = _report(out)
    assert pcap.network_pcap(report, out) == pcap._pcap(report, out, pcap._DpktWriter())


@settings(max_examples=300, deadline=None)
@given(
    ends=st.tuples(
        st.sampled_from(["192.0.2.10", "203.0.113.10", "0.0.0.0", "255.255.255.255"]),
        st.sampled_from(["192.0.2.53", "203.0.113.255", "10.0.0.1"]),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ),
    seq=st.integers(0, 0xFFFFFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    flags=st.integers(0, 0x3F),
    data=st.one_of(st.binary(max_size=64), st.binary(min_size=1400, max_size=1460), st.just(b"\xff" * 7)),
    to_server=st.booleans(),
)
def test_packets_packed_here_are_the_ones_dpkt_packs(
    ends: tuple[str, str, int, int], seq: int, ack: int, flags: int, data: bytes, to_server: bool
) -> None:
    """Every TCP segment and UDP datagram (odd and even lengths, checksums of every kind: a UDP
    sum of zero is sent as all ones) is the bytes dpkt writes, pcap record header included."""
    from emulator.export import pcap

    written = []
    for writer in (pcap._Writer(), pcap._DpktWriter()):
        writer.ip_id = 0xFFFE if seq % 2 else 1  # the last two IP ids
        writer.segment(1.25, ends, seq, ack, flags, data, to_server)
        writer.datagram(2.5, ends, data, to_server)
        written.append(writer.buffer.getvalue())
    assert written[0] == written[1]


def test_internet_checksum_is_the_folded_sum() -> None:
    from emulator.export.pcap import _checksum

    for data in (b"", b"\x00" * 5, b"\xff\xff", b"\xff\xff" * 3, b"\x00\x01\xff\xfe", b"\x12", bytes(range(256))):
        padded = data + b"\x00" * (len(data) % 2)
        total = sum(int.from_bytes(padded[i : i + 2], "big") for i in range(0, len(padded), 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        assert _checksum(data) == ~total & 0xFFFF, data


@pytest.mark.parametrize("name", CHAINS + GENERALITY_NETWORK)
def test_tshark_dissects_the_pcap_as_the_report_says(name: str, scenario_outdir: Outdir) -> None:
    """Wireshark's own dissector reads every request and DNS answer, with no malformed packet.
    (tshark is installed by .ci/run.)"""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (.ci/run installs it)")
    out = scenario_outdir(name)
    report = _report(out)
    base = [tshark, "-r", str(out / "network.pcap"), "-d", "tcp.port==443,http"]

    def fields(display: str, *names: str) -> list[list[str]]:
        args = [*base, "-Y", display, "-T", "fields", *(x for n in names for x in ("-e", n))]
        text = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
        return [line.split("\t") for line in text.splitlines()]

    records = _http(report)
    requests = fields("http.request", "http.request.method", "http.host", "http.request.uri", "http.user_agent")
    assert requests == [
        [r.method, r.request.headers["Host"], urlsplit(r.url).path, r.request.headers.get("User-Agent", "")]
        for r in records
    ]
    assert [int(c[0]) for c in fields("http.response", "http.response.code")] == [r.response.status for r in records]
    answered = {row[0] for row in fields("dns.flags.response == 1 && dns.a", "dns.qry.name")}
    assert answered == {r.host for r in records}
    assert fields("_ws.malformed || _ws.expert.severity == error", "frame.number") == []


@pytest.mark.parametrize("name", CHAINS + GENERALITY_NETWORK)
def test_har_is_a_valid_archive_of_the_exchanges(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    har = json.loads((out / "network.har").read_text(encoding="utf-8"))
    log = har["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "chainreplay"
    records = _http(report)
    assert len(log["entries"]) == len(records)
    for entry, record in zip(log["entries"], records, strict=True):
        assert {"startedDateTime", "time", "request", "response", "cache", "timings"} <= set(entry)
        req, resp = entry["request"], entry["response"]
        for key in ("method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"):
            assert key in req
        for key in ("status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL"):
            assert key in resp
        assert req["method"] == record.method and req["url"] == record.url
        assert {h["name"]: h["value"] for h in req["headers"]} == record.request.headers
        assert resp["status"] == record.response.status
        content = resp["content"]
        body = base64.b64decode(content["text"]) if content.get("encoding") == "base64" else content["text"].encode()
        assert hashlib.sha256(body).hexdigest() == record.response.sha256
        assert entry["startedDateTime"].endswith("Z")


# --- run --yara -------------------------------------------------------------------------------


def test_yara_option_reports_matches_on_stages_and_bodies(
    scenario_outdir: Outdir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = scenario_outdir("winhttp-downloader")
    report = _report(first)
    (record,) = _http(report)
    body = (first / "network" / f"{record.response.sha256}.bin").read_bytes()
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "payload.yar").write_text(
        "rule payload_head : downloaded { strings: $h = { " + body[:24].hex(" ") + " } condition: $h }\n"
        'rule never { strings: $n = "no such string anywhere 1b2c3d" condition: $n }\n'
    )
    out = tmp_path / "out"
    assert main(["run", str(REPO / "scenarios" / "winhttp-downloader"), "-o", str(out), "--yara", str(rules)]) == 0
    assert "yara: " in capsys.readouterr().out
    scan = json.loads((out / "report.json").read_text(encoding="utf-8"))["yara"]
    assert scan["scanned"] >= 3
    hits = {(m["rule"], m["target_type"], m["sha256"]) for m in scan["matches"]}
    assert ("payload_head", "response", record.response.sha256) in hits
    assert not [m for m in scan["matches"] if m["rule"] == "never"]
    match = next(m for m in scan["matches"] if m["target_type"] == "response")
    assert match["namespace"] == "payload" and match["tags"] == ["downloaded"] and match["offsets"] == [0]
    assert match["target"] == f"GET {record.url}"
    assert "payload_head" in (out / "report.html").read_text(encoding="utf-8")  # scanned before rendering


def test_yara_rule_that_does_not_compile_stops_before_the_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yar"
    bad.write_text("rule broken { condition: $missing }\n")
    out = tmp_path / "out"
    assert main(["run", str(REPO / "scenarios" / "benign-dll"), "-o", str(out), "--yara", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.yar" in err and "$missing" in err
    assert not out.exists()


# --- generated detections ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_generated_yara_rules_match_their_stage_and_not_the_benign_sample(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    benign_replay = scenario_outdir("benign-dll")
    benign = [BENIGN_SAMPLE.read_bytes()] + [p.read_bytes() for p in (benign_replay / "stages").iterdir()]
    folder = out / "detections" / "yara"
    assert {p.stem for p in folder.iterdir()} == {s.id for s in report.stages}
    stage_bytes = {s.id: (out / s.file).read_bytes() for s in report.stages}
    for stage in report.stages:
        text = (folder / f"{stage.id}.yar").read_text(encoding="utf-8")
        rules = yara.compile(source=text)
        assert rules.match(data=stage_bytes[stage.id]), stage.id
        for data in benign:
            assert not rules.match(data=data), stage.id
        also = re.search(r'also_matches = "stages that carry these bytes: ([^"]*)"', text)
        allowed = set(also.group(1).split(", ")) if also else set()
        for other, data in stage_bytes.items():
            if other != stage.id and data != stage_bytes[stage.id]:
                assert bool(rules.match(data=data)) == (other in allowed), (stage.id, other)


# Names every Windows program carries (system DLL exports, import tables, GetProcAddress calls).
_UBIQUITOUS = {
    "getprocaddress",
    "getmodulehandlea",
    "loadlibrarya",
    "virtualalloc",
    "virtualprotect",
    "exitprocess",
    "getenvironmentvariablea",
    "kernel32.dll",
    "ntdll.dll",
    "user32.dll",
    "advapi32.dll",
}


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_generated_yara_rules_key_on_no_api_name_and_no_pe_header(name: str, scenario_outdir: Outdir) -> None:
    """A rule's strings are the stage's own: never a Windows API or DLL name (in every export and
    import table, which the small benign corpus does not show), never the bytes of a PE's headers
    (the layout the linker gives every binary: read here with pefile)."""
    import pefile

    out = scenario_outdir(name)
    for stage in _report(out).stages:
        path = out / "detections" / "yara" / f"{stage.id}.yar"
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        data = (out / stage.file).read_bytes()
        end = pefile.PE(data=data, fast_load=True).OPTIONAL_HEADER.SizeOfHeaders if data[:2] == b"MZ" else 0
        for quoted, offset in re.findall(r'= "((?:[^"\\]|\\.)*)" (?:ascii|wide)\s+// offset (0x[0-9a-f]+)', text):
            assert quoted.replace("\\\\", "\\").lower() not in _UBIQUITOUS, (stage.id, quoted)
            assert int(offset, 16) >= end, (stage.id, quoted, offset)
        for offset in re.findall(r"= \{[0-9a-f ]+\}\s+// offset (0x[0-9a-f]+)", text):
            assert int(offset, 16) >= end, (stage.id, offset)


def test_api_names_are_the_keys_of_speakeasys_signature_tables() -> None:
    """The names read straight from the shipped file are the functions and DLLs the engine's
    signature tables hold (the file's layout read without the engine has not drifted)."""
    from emulator.backends.speakeasy.signatures import LazyTable, shipped
    from emulator.export.detections.yara_rules import is_api_name, windows_api_names

    tables = shipped()
    assert tables
    expected = {key.lower() for t in tables.values() for table in (t[2], t[3]) for key in LazyTable(table)}
    assert windows_api_names() == expected and len(expected) > 15_000
    assert is_api_name("KERNEL32.dll") and is_api_name("WinHttpOpen") and not is_api_name("CHAINREPLAY_SANDBOX")


def test_generated_yara_rules_of_chains_from_other_sources_do_not_match_each_other(scenario_outdir: Outdir) -> None:
    """3CX and the WinHTTP downloader share no source with the generality suite (built from
    scenarios/lineage-common): no rule of one side matches a stage of the other."""
    sides = [["3cx", "3cx-x86", "winhttp-downloader"], GENERALITY]
    stages = {
        (name, s.id): (scenario_outdir(name) / s.file).read_bytes()
        for side in sides
        for name in side
        for s in _report(scenario_outdir(name)).stages
    }
    for mine, theirs in (sides, sides[::-1]):
        for name in mine:
            for rule in sorted((scenario_outdir(name) / "detections" / "yara").glob("*.yar")):
                rules = yara.compile(source=rule.read_text(encoding="utf-8"))
                hits = [key for key, data in stages.items() if key[0] in theirs and rules.match(data=data)]
                assert hits == [], (name, rule.stem, hits)


def _byte_windows_by_definition(data: bytes, excluded: list[bytes], taken: set[bytes]) -> list[tuple[int, bytes]]:
    """The byte sequences of a generated YARA rule as documented: from offset 0, the first
    16-byte window with at least 8 distinct bytes that no excluded file contains anywhere (every
    window of every excluded file in one set), then the same from 256 bytes further on."""
    from emulator.export.detections.yara_rules import MIN_DISTINCT_BYTES, WINDOW

    excluded_windows = {e[i : i + WINDOW] for e in excluded for i in range(len(e) - WINDOW + 1)}
    picked: list[tuple[int, bytes]] = []
    offset = 0
    while len(taken) < 8 and offset + WINDOW <= len(data):
        window = data[offset : offset + WINDOW]
        if len(set(window)) >= MIN_DISTINCT_BYTES and window not in excluded_windows and window not in taken:
            taken.add(window)
            picked.append((offset, window))
            offset += WINDOW * 16
        else:
            offset += 1
    return picked


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(max_size=12),
            st.text(alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x7F), max_size=14).map(str.encode),
            st.text(alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x7F), max_size=14).map(
                lambda t: t.encode("utf-16-le")
            ),
        ),
        max_size=12,
    )
)
def test_yara_string_patterns_find_what_counted_repeats_find(pieces: list[bytes]) -> None:
    """The rule generator's string patterns, spelt out for speed, match exactly where the counted
    repeats ``{MIN_STRING,}`` do: same offsets, same bytes (printable runs of every length around
    the minimum, odd alignments, stray bytes between, 0x1f and 0x7f at the edges)."""
    import re

    from emulator.export.detections import yara_rules

    data = b"".join(pieces)
    counted = {
        yara_rules._ASCII: re.compile(rb"[\x20-\x7e]{%d,}" % yara_rules.MIN_STRING),
        yara_rules._WIDE: re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % yara_rules.MIN_STRING),
    }
    for fast, slow in counted.items():
        assert [(m.start(), m.group()) for m in fast.finditer(data)] == [
            (m.start(), m.group()) for m in slow.finditer(data)
        ]


def test_generated_yara_byte_sequences_follow_their_definition() -> None:
    """The rule generator finds its byte sequences by searching the excluded files (and skipping
    the runs of bytes a file shares with the stage) instead of holding every window of every
    file in a set: on stages carried whole, carried in part with changes, padded with runs of
    one byte, or sharing nothing, it picks exactly what the definition picks."""
    import random

    from emulator.export.detections.yara_rules import _candidates, _pick, benign_corpus

    rnd = random.Random(18)
    unprintable = [*range(0x20), *range(0x7F, 0x100)]  # no text: the rules are byte sequences only

    def noise(n: int) -> bytes:
        return bytes(rnd.choice(unprintable) for _ in range(n))

    def stage(n: int) -> bytes:
        parts: list[bytes] = []
        while sum(map(len, parts)) < n:
            kind = rnd.randrange(3)
            parts.append(noise(rnd.randrange(1, 300)) if kind else bytes([rnd.randrange(4)]) * rnd.randrange(1, 200))
        return b"".join(parts)[:n]

    compared = 0
    for trial in range(120):
        data = stage(rnd.randrange(0, 5000))
        excluded = benign_corpus() if trial % 2 else []
        for _ in range(rnd.randrange(0, 4)):
            if data and rnd.random() < 0.6:  # carries part of the stage, perhaps with a byte changed
                start = rnd.randrange(len(data))
                piece = bytearray(data[start : rnd.randrange(start, len(data) + 1)])
                if piece and rnd.random() < 0.5:
                    piece[rnd.randrange(len(piece))] ^= 0xFF
                excluded.append(noise(rnd.randrange(0, 400)) + bytes(piece) + noise(rnd.randrange(0, 400)))
            else:
                excluded.append(stage(rnd.randrange(0, 3000)))
        picked = _pick(data, excluded, _candidates(data))
        want = _byte_windows_by_definition(data, excluded, set())
        assert [(s.offset, s.text) for s in picked] == [(o, "{ " + w.hex(" ") + " }") for o, w in want], trial
        compared += len(want)
    assert compared > 200  # the cases exercise the byte sequences, not only empty picks


def _events_db(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in COLUMNS) + ")")
    db.executemany(
        "INSERT INTO logs VALUES (" + ", ".join("?" * len(COLUMNS)) + ")",
        [tuple(row[c] for c in COLUMNS) for row in rows],
    )
    return db


@pytest.mark.parametrize("name", CHAINS + GENERALITY)
def test_generated_sigma_rules_match_the_replay_and_not_the_benign_replay(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    files = sorted((out / "detections" / "sigma").glob("*.yml"))
    categories = {f.name.split("_")[0] for f in files}
    assert files and ({"dns", "proxy"} <= categories or name not in CHAINS + GENERALITY_NETWORK)
    own = _events_db(replay_events(report))
    benign = _events_db(replay_events(_report(scenario_outdir("benign-dll"))))
    backend = sqliteBackend()
    for file in files:
        collection = SigmaCollection.from_yaml(file.read_text(encoding="utf-8"))
        assert not collection.errors, file.name
        (rule,) = collection.rules
        (query,) = backend.convert(collection)
        hits = own.execute(query).fetchall()
        assert hits, (file.name, query)
        category = rule.logsource.category
        assert {h[0] for h in hits} == {category}, file.name
        assert benign.execute(query).fetchall() == [], file.name
    dns = own.execute("SELECT QueryName FROM logs WHERE category = 'dns_query'").fetchall()
    assert {d[0] for d in dns} == {r.host for r in report.network}


def _unescape(value: str) -> str:
    text = value.strip('"')
    return re.sub(r"\|([0-9a-fA-F ]+)\|", lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), text)


@pytest.mark.parametrize("name", CHAINS + GENERALITY_NETWORK)
def test_generated_suricata_rules_parse_and_their_contents_are_in_the_pcap(name: str, scenario_outdir: Outdir) -> None:
    out = scenario_outdir(name)
    report = _report(out)
    rules = parse_file(str(out / "detections" / "suricata.rules"))
    records = _http(report)
    assert rules and len({r.sid for r in rules}) == len(rules)
    pairs, _ = _pcap_requests(out / "network.pcap")
    by_seq = {record.seq: request for (request, _), record in zip(pairs, records, strict=True)}
    roles = set()
    for rule in rules:
        assert rule.action == "alert" and rule.header.startswith("http ")
        meta = next(o.value for o in rule.options if o.name == "metadata")
        seq = int(re.search(r"chainreplay_seq (\d+)", str(meta.data)).group(1))  # type: ignore[union-attr]
        roles.add(rule.msg.split()[3])
        request = by_seq[seq]
        buffers = {
            "http.method": request.method,
            "http.host": request.headers["host"].lower(),
            "http.uri": request.uri,
            "http.user_agent": request.headers.get("user-agent", ""),
            "http.cookie": request.headers.get("cookie", ""),
        }
        sticky = None
        checked = 0
        for option in rule.options:
            if option.name in buffers:
                sticky = option.name
            elif option.name == "content":
                assert sticky is not None
                assert _unescape(option.value) in buffers[sticky], (rule.sid, sticky)
                checked += 1
        assert checked >= 3
    # A response whose bytes became a stage (directly, or through a dropped file) is a download.
    assert ("download" in roles) == (name != "negative-control")


def test_benign_replay_exports_are_empty_but_valid(scenario_outdir: Outdir) -> None:
    out = scenario_outdir("benign-dll")
    assert json.loads((out / "network.har").read_text())["log"]["entries"] == []
    assert _pcap_requests(out / "network.pcap") == ([], {})
    assert parse_file(str(out / "detections" / "suricata.rules")) == []
    assert not list((out / "detections" / "sigma").glob("*.yml"))
    # benign.dll is in the benign corpus: nothing in it may become a rule
    for rule in (out / "detections" / "yara").glob("*.yar"):
        assert not yara.compile(source=rule.read_text()).match(data=BENIGN_SAMPLE.read_bytes())
    assert validate_string((out / "stix-bundle.json").read_text(), ValidationOptions(disabled=["uuid-check"])).is_valid


def test_hostile_network_values_cannot_break_or_forge_the_exports(scenario_outdir: Outdir, tmp_path: Path) -> None:
    """Header values with CR/LF, a host DNS cannot carry, quotes, semicolons and Sigma wildcards
    in a URL: every export is still written, the pcap holds no forged header, the rules parse."""
    from emulator.export import write_exports

    out = tmp_path / "out"
    shutil.copytree(scenario_outdir("winhttp-downloader"), out)
    report = _report(out)
    (record,) = _http(report)
    evil_host = "a" * 70 + ".example"
    hostile = record.model_copy(
        update={
            "host": evil_host,
            "url": f'https://{evil_host}/p?q="x";*|y',
            "request": record.request.model_copy(
                update={"headers": {"Host": evil_host, "User-Agent": "UA\r\nX-Forged: 1", "Cookie": 'a=";b'}}
            ),
        }
    )
    report = report.model_copy(update={"network": [hostile]})
    (out / "report.json").write_text(report.to_json())
    written = write_exports(out, report)
    assert not [n for n in written.notes if n.what == "export_failed"], written.notes
    (request, _), *_ = _pcap_requests(out / "network.pcap")[0]
    assert "x-forged" not in request.headers and request.headers["user-agent"] == "UA  X-Forged: 1"
    (rule,) = parse_file(str(out / "detections" / "suricata.rules"))
    assert rule.msg.startswith("chainreplay")
    backend = sqliteBackend()
    rows = replay_events(report)
    for file in (out / "detections" / "sigma").glob("proxy*.yml"):
        (query,) = backend.convert(SigmaCollection.from_yaml(file.read_text()))
        assert _events_db(rows).execute(query).fetchall(), file.name
    assert stix2.parse((out / "stix-bundle.json").read_text(), allow_custom=False)


# --- exports written beside the drawing (a forked copy of the parent) -----------------------

FROZEN_3CX = REPO / "tests" / "data" / "frozen" / "3cx"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _produced(out: Path, **kwargs: Any) -> Report:
    from emulator.output import produce
    from emulator.trace import read_trace

    out.mkdir()
    return produce(out, read_trace(FROZEN_3CX), generated_at="SNAPSHOT", **kwargs)


def _serial(monkeypatch: pytest.MonkeyPatch, out: Path, **kwargs: Any) -> dict[str, bytes]:
    """The output folder as the exports alone in this process write it (no copy forked)."""
    import emulator.export

    with monkeypatch.context() as patch:
        patch.setattr(emulator.export.BackgroundExports, "start", classmethod(lambda cls, *args: None))
        _produced(out, **kwargs)
    return _files(out)


# One produce() in a fresh interpreter (a copy is forked only where no other thread runs, and the
# test process may hold threads of other tests): which copies started, and the containment.
_BESIDE = r"""
import json, os, sys
from pathlib import Path
import emulator.export as export
from emulator.output import produce
from emulator.trace import read_trace
out, mode, frozen = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
started = []
start = export.BackgroundExports.start.__func__
def counted(cls, *args):
    copy = start(cls, *args)
    started.append(0 if copy is None else copy.pid)
    return copy
export.BackgroundExports.start = classmethod(counted)
kwargs = {"write_frozen": mode.startswith(("trace", "store"))}
import emulator.output
parent, write_trace, traced = os.getpid(), emulator.output.write_trace, []
write_stored, stored = emulator.output._write_stored, []
def counted_trace(*args):
    if os.getpid() != parent and mode == "trace-dies":
        raise OSError("no room for the trace")
    if os.getpid() == parent:
        traced.append(1)
    return write_trace(*args)
def counted_store(*args):
    if os.getpid() != parent and mode == "store-dies":
        raise OSError("no room for the stages")
    if os.getpid() == parent:
        stored.append(1)
    return write_stored(*args)
emulator.output.write_trace = counted_trace
emulator.output._write_stored = counted_store
write_atomically, reported = emulator.output.write_atomically, []
def counted_report(path, data):
    if os.getpid() == parent and Path(path).name == "report.json":
        reported.append(1)
    return write_atomically(path, data)
emulator.output.write_atomically = counted_report
if mode == "dies":
    parent, write_all = os.getpid(), export._write_all
    def dies(out, report):
        if os.getpid() != parent:
            os._exit(3)
        return write_all(out, report)
    export._write_all = dies
if mode.startswith("signal"):
    import signal, time
    import emulator.render
    from emulator.lifecycle import Interrupted, RunControl
    def signalled(*args, **kwargs):
        if mode == "signal-late":  # once the copy has written every export and ended (a zombie)
            deadline = time.monotonic() + 60
            stat = Path(f"/proc/{started[0]}/stat")
            while stat.read_text().rpartition(")")[2].split()[0] != "Z" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (out / "detections" / "suricata.rules").is_file()
        raise Interrupted(signal.SIGTERM)
    emulator.render.render_files = signalled
    kwargs["control"] = RunControl(time.monotonic() + 600).__enter__()
out.mkdir()
report = produce(out, read_trace(frozen), generated_at="SNAPSHOT", **kwargs)
containment = report.containment
same = (out / "report.json").read_text(encoding="utf-8") == "".join(report.json_chunks())
print(json.dumps({"started": started, "traced": len(traced), "stored": len(stored),
                  "reported": len(reported), "same": same,
                  "refused": containment.host_processes_refused,
                  "violations": containment.violations, "outcome": report.outcome.status}))
"""


def _beside(out: Path, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _BESIDE, str(out), mode, str(FROZEN_3CX)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["started"]) == 1 and result["started"][0] > 0, result  # a copy was forked
    return result


def test_exports_beside_the_drawing_are_the_serial_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The copy that writes the exports while the parent draws writes every byte the parent
    would; its fork is the project's own, not a process the guard refuses."""
    result = _beside(tmp_path / "beside", "plain")
    assert result["refused"] == 0 and not result["violations"]
    # report.json is the copy's, renamed into place: the parent's model dump, not written by it
    assert result["reported"] == 0 and result["same"], result
    assert not (tmp_path / "beside" / ".report.json.copy").exists()
    assert _files(tmp_path / "beside") == _serial(monkeypatch, tmp_path / "serial")
    assert (tmp_path / "beside" / "stix-bundle.json").is_file()


def test_exports_are_written_by_the_parent_when_the_copy_dies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = _beside(tmp_path / "died", "dies")
    assert result["reported"] == 1 and result["same"], result  # report.json written by the parent
    assert _files(tmp_path / "died") == _serial(monkeypatch, tmp_path / "serial")


def test_the_copy_writes_the_trace_beside_the_drawing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A replay's frozen trace (trace.jsonl, blobs/) and the files the exports read (stages/,
    network/, dropped/) are written by the exports' copy, not the parent (which draws the body
    previews from the trace), and are what the parent alone writes; a copy that cannot write
    them leaves them to the parent, which writes them (and the exports) once the copy is gone."""
    serial = _serial(monkeypatch, tmp_path / "serial", write_frozen=True)
    for folder in ("blobs/", "stages/", "network/"):
        assert any(name.startswith(folder) for name in serial), folder
    assert "trace.jsonl" in serial and b'<pre class="body">' in serial["report.html"]
    from emulator.output import _bodies
    from emulator.render.files import saved_bodies
    from emulator.trace import read_trace

    bodies = saved_bodies(_report(tmp_path / "serial"), tmp_path / "serial")
    assert bodies and _bodies(read_trace(FROZEN_3CX)) == bodies  # the previews drawn from the trace
    result = _beside(tmp_path / "beside", "trace")
    assert result["traced"] == 0 and result["stored"] == 0
    assert result["refused"] == 0 and not result["violations"]
    assert _files(tmp_path / "beside") == serial
    for mode in ("trace-dies", "store-dies"):
        result = _beside(tmp_path / mode, mode)
        assert result["traced"] == 1 and result["stored"] == 1, mode
        assert _files(tmp_path / mode) == serial, mode


def test_exports_follow_a_report_the_drawing_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A signal while drawing makes the outcome "interrupted": the exports the copy wrote from
    the report before it are replaced by ones from the report as written."""
    import signal
    import time

    import emulator.render
    from emulator.lifecycle import Interrupted, RunControl

    assert _beside(tmp_path / "cut", "signal")["outcome"] == "interrupted"
    bundle = json.loads((tmp_path / "cut" / "stix-bundle.json").read_text())
    (analysis,) = [o for o in bundle["objects"] if o["type"] == "malware-analysis"]
    assert analysis["result_name"] == "interrupted"

    def signalled(*args: object, **kwargs: object) -> list[str]:
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(emulator.render, "render_files", signalled)
    with RunControl(time.monotonic() + 600) as control:
        assert _files(tmp_path / "cut") == _serial(monkeypatch, tmp_path / "serial", control=control)


def test_exports_the_copy_wrote_are_replaced_under_the_guard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A report changed by the drawing once the copy has written every export, detections/
    included: the parent clears them (a folder too, under the output guard) and writes them
    again, with no refusal (the folder was cleared with shutil.rmtree, which the guard refused)."""
    import signal
    import time

    import emulator.render
    from emulator.lifecycle import Interrupted, RunControl

    result = _beside(tmp_path / "late", "signal-late")
    assert result["outcome"] == "interrupted" and not result["violations"], result

    def signalled(*args: object, **kwargs: object) -> list[str]:
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(emulator.render, "render_files", signalled)
    with RunControl(time.monotonic() + 600) as control:
        assert _files(tmp_path / "late") == _serial(monkeypatch, tmp_path / "serial", control=control)


def test_a_generated_rule_that_does_not_compile_fails_with_its_own_error(
    scenario_outdir: Outdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stages' rules are compiled in one set; if the set does not compile, the error is the
    one the failing rule gives alone (as when each rule was compiled alone)."""
    from emulator.export.detections import yara_rules

    out = scenario_outdir("3cx")
    report = _report(out)
    render = yara_rules._render
    broken: list[str] = []

    def render_one_broken(name: str, *args: Any) -> str:
        text = render(name, *args)
        if len(broken) == 1:  # the second stage's rule names a string it does not have
            text = text.replace("of them", "of them and $nowhere")
        broken.append(text)
        return text

    monkeypatch.setattr(yara_rules, "_render", render_one_broken)
    with pytest.raises(yara.SyntaxError) as raised:
        yara_rules.stage_rules(report, out)
    with pytest.raises(yara.SyntaxError) as alone:
        yara.compile(source=broken[1])
    assert str(raised.value) == str(alone.value)
    monkeypatch.setattr(yara_rules, "_render", render)
    assert yara_rules.stage_rules(report, out).keys() == {s.id for s in report.stages}


def test_an_exporter_that_cannot_be_imported_fails_alone(
    tmp_path: Path, scenario_outdir: Outdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal during the output libraries' import (while the child emulates) can leave an
    exporter unimportable: that export is a note, every other one is written, nothing raises."""
    from emulator.export import write_exports

    out = tmp_path / "out"
    shutil.copytree(scenario_outdir("winhttp-downloader"), out)
    shutil.rmtree(out / "detections")
    (out / "iocs.csv").unlink()
    monkeypatch.setitem(sys.modules, "emulator.export.detections.sigma", None)  # import fails
    written = write_exports(out, _report(out))
    failed = [n.detail for n in written.notes if n.what == "export_failed"]
    assert len(failed) == 1 and failed[0].startswith("detections: ModuleNotFoundError"), failed
    assert (out / "iocs.csv").is_file()
    assert not (out / "detections").exists()
    assert json.loads((out / "report.json").read_text())["notes"][-1]["what"] == "export_failed"


def test_blob_reads_resolve_as_the_whole_path_resolved(tmp_path: Path) -> None:
    """An exporter's read of ``OUTDIR/<folder>/<sha256>`` refuses and accepts exactly what
    resolving the whole path decides: plain files inside, and links (a folder or a file, to
    inside or outside the folder, dangling), ``..`` and absolute names."""
    from emulator.export._common import _read

    def by_resolving(outdir: Path, relative: str, sha256: str) -> bytes | None:  # the definition
        path = (outdir / relative).resolve()
        if outdir.resolve() not in path.parents or path.is_symlink() or not path.is_file():
            return None
        data = path.read_bytes()
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    data = b"body"
    digest = hashlib.sha256(data).hexdigest()
    outside = tmp_path / "outside"
    (outside / "network").mkdir(parents=True)
    (outside / "network" / f"{digest}.bin").write_bytes(data)
    (outside / f"{digest}.bin").write_bytes(data)
    real = tmp_path / "real"
    out = tmp_path / "out"  # the output folder reached through a link
    (real / "network").mkdir(parents=True)
    out.symlink_to(real)
    (real / "network" / f"{digest}.bin").write_bytes(data)
    (real / "inside").mkdir()
    (real / "inside" / f"{digest}.bin").write_bytes(data)
    (real / "linked").symlink_to(outside / "network")
    (real / "linked-in").symlink_to(real / "inside")
    (real / "files").mkdir()
    (real / "files" / f"{digest}.bin").symlink_to(outside / f"{digest}.bin")
    (real / "files" / "in.bin").symlink_to(real / "inside" / f"{digest}.bin")
    (real / "files" / "dangling.bin").symlink_to(tmp_path / "nowhere")
    cases = [
        f"network/{digest}.bin",
        f"inside/{digest}.bin",
        f"linked/{digest}.bin",
        f"linked-in/{digest}.bin",
        f"files/{digest}.bin",
        "files/in.bin",
        "files/dangling.bin",
        f"network/../inside/{digest}.bin",
        f"../outside/{digest}.bin",
        f"./network/{digest}.bin",
        f"network//{digest}.bin",
        f"{outside}/{digest}.bin",
        f"missing/{digest}.bin",
    ]
    answers = [(_read(out, relative, digest), by_resolving(out, relative, digest)) for relative in cases]
    assert [a for a, _ in answers] == [b for _, b in answers]
    assert any(a == data for a, _ in answers) and any(a is None for a, _ in answers)
