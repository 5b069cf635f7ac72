"""Exports of the edge cases tests/test_exports.py does not replay: a raw TCP stager with a DNS
call (no HTTP), URLMon downloads on x86, a network stash, and a chain whose name has a space,
quotes, a semicolon and non-ASCII letters. Every export is read back with the real tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import stix2
import yara
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from suricataparser import parse_file

from emulator.report import Report

REPO = Path(__file__).resolve().parent.parent
EDGES = ["tcp-stager-x86", "urlmon-drop-x86", "net-reg-stash"]
ODD_NAME = 'dl "odd" ñ;x'

Outdir = Callable[[str], Path]


@pytest.fixture(scope="module")
def odd_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """winhttp-downloader replayed under a name with a space, quotes, a semicolon and an ñ."""
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    folder = tmp_path_factory.mktemp("odd") / ODD_NAME
    shutil.copytree(REPO / "scenarios" / "winhttp-downloader", folder)
    toml = folder / "scenario.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace('name = "winhttp-downloader"', 'name = "dl \\"odd\\" ñ;x"', 1),
        encoding="utf-8",
    )
    out = tmp_path_factory.mktemp("odd-out")
    replay_target(load_scenario(folder), out, isolate=False)
    return out


def _outdirs(scenario_outdir: Outdir, odd_outdir: Path) -> list[Path]:
    return [scenario_outdir(name) for name in EDGES] + [odd_outdir]


def test_edge_case_exports_read_back_with_the_real_tools(scenario_outdir: Outdir, odd_outdir: Path) -> None:
    tshark = shutil.which("tshark")
    for out in _outdirs(scenario_outdir, odd_outdir):
        report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
        # STIX: parsed strictly, every reference resolves
        bundle = stix2.parse((out / "stix-bundle.json").read_text(encoding="utf-8"), allow_custom=False)
        ids = {o.id for o in bundle.objects}
        for obj in bundle.objects:
            data = json.loads(obj.serialize())
            refs = [v for k, v in data.items() if k.endswith("_ref")]
            refs += [r for k, v in data.items() if k.endswith("_refs") for r in v]
            assert set(refs) <= ids, (out.name, obj.id)
        # HAR: the types HAR 1.2 requires
        for entry in json.loads((out / "network.har").read_text(encoding="utf-8"))["log"]["entries"]:
            assert isinstance(entry["time"], int | float) and isinstance(entry["response"]["status"], int)
            assert isinstance(entry["request"]["headersSize"], int) and isinstance(entry["response"]["bodySize"], int)
        # YARA: each rule compiles and matches its stage
        for stage in report.stages:
            rule = out / "detections" / "yara" / f"{stage.id}.yar"
            if rule.exists():
                assert yara.compile(source=rule.read_text(encoding="utf-8")).match(data=(out / stage.file).read_bytes())
        # Sigma converts, Suricata parses: one rule per line
        for file in (out / "detections" / "sigma").glob("*.yml"):
            sqliteBackend().convert(SigmaCollection.from_yaml(file.read_text(encoding="utf-8")))
        lines = [x for x in (out / "detections" / "suricata.rules").read_text().splitlines() if x and x[0] != "#"]
        assert len(parse_file(str(out / "detections" / "suricata.rules"))) == len(lines)
        if tshark is None:
            continue
        # pcap: no malformed packet; every raw TCP/UDP body's bytes are the stream's payload
        base = [tshark, "-r", str(out / "network.pcap"), "-d", "tcp.port==443,http"]
        malformed = subprocess.run(
            [*base, "-Y", "_ws.malformed || _ws.expert.severity == error"], capture_output=True, text=True, check=True
        ).stdout
        assert malformed == "", out.name
        raw = [r for r in report.network if r.kind == "tcp" and not r.blocked]
        if raw:
            text = subprocess.run(
                [*base, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.len"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            want = sum(
                (out / "network" / f"{h}.bin").stat().st_size
                for r in raw
                for h in (r.request.sha256, r.response.sha256)
                if h
            )
            assert sum(int(x) for x in text.split()) == want > 0


def test_an_odd_name_is_carried_safely_into_every_rule(odd_outdir: Path) -> None:
    rules = (odd_outdir / "detections" / "suricata.rules").read_text(encoding="utf-8")
    assert 'msg:"chainreplay dl \\"odd\\" ?\\;x ' in rules
    for rule in (odd_outdir / "detections" / "yara").glob("*.yar"):
        assert rule.read_text(encoding="utf-8").startswith("rule chainreplay_dl__odd____x_")


# --- exports of the chains added since the exports were proven (bench/exports_sweep.py) -------


def _sigma_hits(out: Path, file: str, rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """The rows of ``rows`` (Sigma taxonomy) the rule ``detections/sigma/<file>`` matches."""
    import sqlite3

    from emulator.export.detections.events import COLUMNS

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in COLUMNS) + ")")
    db.executemany(
        "INSERT INTO logs VALUES (" + ", ".join("?" * len(COLUMNS)) + ")",
        [tuple(row.get(c) for c in COLUMNS) for row in rows],
    )
    (query,) = sqliteBackend().convert(SigmaCollection.from_yaml((out / "detections" / "sigma" / file).read_text()))
    return db.execute(query).fetchall()


@pytest.mark.parametrize("name", ["sideload-version", "sideload-winmm"])
def test_a_dll_search_hijack_gets_an_image_load_rule(name: str, scenario_outdir: Outdir) -> None:
    """A DLL the loader's search took from beside the program under a system DLL's name (noted
    ``dll_search_hijack``, T1574.001 on its stage) is side-loading as much as 3CX's is: an
    ``image_load`` rule keyed on the program and the DLL's name, matching the replay's own event
    and the event Sysmon would log (the DLL's full guest path), not the benign replay's."""
    from emulator.export.detections.events import replay_events

    out = scenario_outdir(name)
    report = Report.from_file(out / "report.json")
    (note,) = [n for n in report.notes if n.what == "dll_search_hijack"]
    planted = next(s for s in report.stages if s.id == note.stage)
    rule = (out / "detections" / "sigma" / "image_load_sideloaded.yml").read_text(encoding="utf-8")
    assert "attack.t1574.001" in rule
    own = [r for r in replay_events(report) if r["category"] == "image_load"]
    assert own and _sigma_hits(out, "image_load_sideloaded.yml", own)
    program = report.stages[0].name
    sysmon = {"category": "image_load", "Image": f"C:\\Users\\analyst\\{program}", "ImageLoaded": planted.origin.ref}
    assert _sigma_hits(out, "image_load_sideloaded.yml", [sysmon])
    benign = replay_events(Report.from_file(scenario_outdir("benign-dll") / "report.json"))
    assert _sigma_hits(out, "image_load_sideloaded.yml", benign) == []


def test_a_dns_txt_exchange_is_a_txt_query_and_answer_in_the_pcap(scenario_outdir: Outdir) -> None:
    """dns-txt-b64's payload came in a DNS TXT record: the pcap holds a TXT query answered with
    the record's bytes (as strings of at most 255 bytes), not an A query answered NXDOMAIN."""
    import dpkt

    out = scenario_outdir("dns-txt-b64")
    report = Report.from_file(out / "report.json")
    (record,) = [r for r in report.network if r.kind == "dns" and "TXT" in r.response.headers]
    body = (out / "network" / f"{record.response.sha256}.bin").read_bytes()
    queries, answers = [], []
    with (out / "network.pcap").open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            msg = dpkt.dns.DNS(dpkt.ethernet.Ethernet(buf).data.data.data)
            (queries if msg.qr == dpkt.dns.DNS_Q else answers).append(msg)
    assert [(q.qd[0].name, q.qd[0].type) for q in queries] == [(record.host, dpkt.dns.DNS_TXT)]
    (answer,) = answers
    assert answer.rcode == dpkt.dns.DNS_RCODE_NOERR
    (rr,) = answer.an
    strings = [t.encode("latin-1") if isinstance(t, str) else t for t in rr.text]  # dpkt decodes them
    assert rr.type == dpkt.dns.DNS_TXT and b"".join(strings) == body and all(len(t) <= 255 for t in strings)
    tshark = shutil.which("tshark")
    if tshark:
        base = [tshark, "-r", str(out / "network.pcap")]
        fields = [*base, "-Y", "dns.flags.response == 1", "-T", "fields", "-e", "dns.txt"]
        shown = subprocess.run(fields, capture_output=True, text=True, check=True).stdout.strip()
        assert shown.replace(",", "") == body.decode()
        bad = [*base, "-Y", "_ws.malformed || _ws.expert.severity == error"]
        assert subprocess.run(bad, capture_output=True, text=True, check=True).stdout == ""


@pytest.mark.parametrize("name", ["dns-txt-b64", "tcp-stager-x86"])
def test_a_stage_delivered_over_dns_or_raw_tcp_has_a_suricata_rule(name: str, scenario_outdir: Outdir) -> None:
    """A payload that came in a DNS TXT record or a raw TCP stream (no HTTP) had no Suricata rule
    at all: its exchange gets one, a download (its host or tcp:// node leads to the stage), whose
    content is in that exchange as network.pcap holds it (the TXT query's name; the first bytes
    the server sent, from the stream's start)."""
    import re

    import dpkt

    out = scenario_outdir(name)
    report = Report.from_file(out / "report.json")
    (record,) = [r for r in report.network if r.kind == "tcp" or "TXT" in r.response.headers]
    rules = parse_file(str(out / "detections" / "suricata.rules"))
    metadata = {r.sid: str(next(o.value.data for o in r.options if o.name == "metadata")) for r in rules}
    (rule,) = [r for r in rules if f"'chainreplay_seq {record.seq}'" in metadata[r.sid]]
    assert rule.msg.split()[3] == "download" and rule.action == "alert"
    (value,) = [o.value for o in rule.options if o.name == "content"]
    wanted = bytes.fromhex(value.strip('"|')) if value.startswith('"|') else value.strip('"').encode()
    dns_names, server_bytes = [], b""
    with (out / "network.pcap").open("rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            seg = dpkt.ethernet.Ethernet(buf).data.data
            if isinstance(seg, dpkt.udp.UDP) and seg.dport == 53:
                dns_names += [q.name for q in dpkt.dns.DNS(seg.data).qd if q.type == dpkt.dns.DNS_TXT]
            elif isinstance(seg, dpkt.tcp.TCP) and seg.sport == record.port:
                server_bytes += seg.data
    if record.kind == "dns":
        assert rule.header.startswith("dns ") and "dns.query" in [o.name for o in rule.options]
        assert dns_names == [wanted.decode()] == [record.host]
    else:
        assert re.match(rf"tcp \$EXTERNAL_NET {record.port} -> \$HOME_NET any", rule.header)
        depth = int(next(o.value for o in rule.options if o.name == "depth"))
        assert len(wanted) == depth == 32 and server_bytes.startswith(wanted)


@pytest.mark.parametrize(
    ("name", "parent", "image", "run_file"),
    [
        ("rundll32-drop", "launcher.exe", "rundll32.exe", "update.dll"),
        ("cmd-start-exe", "launcher.exe", "cmd.exe", "helper.exe"),
        ("inject-hollowing", None, "svchost.exe", None),
    ],
)
def test_a_process_the_chain_started_gets_a_process_creation_rule(
    name: str, parent: str | None, image: str, run_file: str | None, scenario_outdir: Outdir
) -> None:
    """A program the chain started (a LOLBin that ran its dropped file, cmd.exe, the process it
    injected into) had no Sigma rule: a ``process_creation`` rule keys on the parent's and the
    program's names (and on the guest file a system program ran), matches the replay's own
    process events (the command line the creating call passed) and the event Sysmon would log,
    and nothing of the benign replay."""
    from emulator.export.detections.events import replay_events

    out = scenario_outdir(name)
    report = Report.from_file(out / "report.json")
    text = (out / "detections" / "sigma" / "process_creation_started.yml").read_text(encoding="utf-8")
    rule = SigmaCollection.from_yaml(text).rules[0]
    assert rule.logsource.category == "process_creation"
    own = [r for r in replay_events(report) if r["category"] == "process_creation"]
    assert own and len(_sigma_hits(out, "process_creation_started.yml", own)) == len(own)
    program = parent or report.stages[0].name
    command = f'{image} "C:\\Users\\someone\\AppData\\Local\\Temp\\{run_file}",Start' if run_file else image
    sysmon = {
        "category": "process_creation",
        "ParentImage": f"C:\\Users\\someone\\{program}",
        "Image": f"C:\\Windows\\System32\\{image}",
        "CommandLine": command,
    }
    assert _sigma_hits(out, "process_creation_started.yml", [sysmon])
    if run_file:  # the same program running something else is not the chain's
        other = {**sysmon, "CommandLine": f"{image} shell32.dll,Control_RunDLL"}
        assert _sigma_hits(out, "process_creation_started.yml", [other]) == []
    benign = replay_events(Report.from_file(scenario_outdir("benign-dll") / "report.json"))
    assert _sigma_hits(out, "process_creation_started.yml", benign) == []


def test_a_url_that_redirected_to_the_payload_is_a_download(scenario_outdir: Outdir) -> None:
    """net-fallback-redirect: the fallback URL answered 302 to the URL that served the payload
    (``url -redirects_to-> url``): its Suricata rule is a download, as the second's is, not a
    plain request; the first C2, which never resolved, gets no rule."""
    out = scenario_outdir("net-fallback-redirect")
    report = Report.from_file(out / "report.json")
    redirect = next(e for e in report.graph.edges if e.type == "redirects_to")
    roles = {
        rule.msg.split()[5]: rule.msg.split()[3] for rule in parse_file(str(out / "detections" / "suricata.rules"))
    }
    first, then = (node.removeprefix("url:").split("://", 1)[1] for node in (redirect.source, redirect.target))
    assert roles == {first: "download", then: "download"}
