"""Replay every scenario that declares an ``[expect]`` table and check the report against it.

The expectations are data: a scenario folder whose scenario.toml has an ``[expect]`` table is a
test case here, with no new Python. Keys understood (all optional except as noted):

``outcome``        report outcome status, default "completed"
``stage_kinds``    exact list of stage kinds, in order
``stage_origins``  exact list of stage origin types, in order
``edges``          exact set of graph edges, each "source -type-> target" with node ids as in
                   report.json's graph (stage ids s0.., artifacts like 'file:c:\\...', 'url:https://...')
``xfail``          a known emulator bug makes the edge/origin check fail: the reason. The test then
                   xfails on a mismatch and fails once the expectations are met (remove the key).

Each scenario is replayed once per session (see the ``scenario_report`` fixture in conftest.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"

Report = dict[str, Any]

# Expectations for scenarios whose scenario.toml this suite does not own. Used only for keys the
# [expect] table lacks: once scenarios/3cx/scenario.toml carries them, the toml wins.
SUPPLEMENTARY_EXPECT: dict[str, dict[str, Any]] = {
    "3cx": {
        "stage_origins": ["scenario", "file", "memory", "network"],
        "edges": [
            r"process:3CXDesktopApp.exe -loads-> s0",
            r"s0 -creates-> sync:avmonitorrefreshevent",
            r"s0 -reads-> file:c:\users\analyst\appdata\local\programs\3cxdesktopapp\app\d3dcompiler_47.dll",
            r"file:c:\users\analyst\appdata\local\programs\3cxdesktopapp\app\d3dcompiler_47.dll -decrypts_to-> s1",
            r"s0 -executes-> s1",
            r"s1 -maps-> s2",
            r"s2 -drops-> file:c:\users\analyst\appdata\local\programs\3cxdesktopapp\app\manifest",
            r"s2 -reads-> registry:hkey_local_machine\software\microsoft\cryptography",
            r"s2 -fetches-> url:https://raw.githubusercontent.com/IconStorages/images/main/icon14.ico",
            r"s2 -beacons_to-> url:https://pbxcloudeservices.com/phonesystem/api/status",
            r"s2 -beacons_to-> url:https://pbxcloudeservices.com/cdn/update/stage3.bin",
            r"url:https://pbxcloudeservices.com/cdn/update/stage3.bin -decrypts_to-> s3",
            r"s2 -maps-> s3",
            r"s3 -reads-> file:c:\users\analyst\appdata\roaming\3cxdesktopapp\config.json",
            r"s3 -reads-> file:c:\users\analyst\appdata\local\google\chrome\user data\default\history",
            r"s3 -reads-> file:c:\users\analyst\appdata\local\microsoft\edge\user data\default\history",
            r"s3 -reads-> file:c:\users\analyst\appdata\local\bravesoftware\brave-browser\user data\default\history",
            r"s3 -reads-> file:c:\users\analyst\appdata\roaming\mozilla\firefox\profiles"
            r"\chainreplay.default-release\places.sqlite",
            r"s3 -exfiltrates_to-> url:https://pbxcloudeservices.com/phonesystem/api/status",
        ],
    },
}

_EDGE = re.compile(r"^(?P<source>.+?) -(?P<type>[a-z_]+)-> (?P<target>.+)$")


def _scenarios_with_expect() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(SCENARIOS_DIR.glob("*/scenario.toml")):
        expect = tomllib.loads(path.read_text(encoding="utf-8")).get("expect")
        if expect:
            name = path.parent.name
            found.append((name, {**SUPPLEMENTARY_EXPECT.get(name, {}), **expect}))
    return found


SCENARIOS = _scenarios_with_expect()
SCENARIO_IDS = [name for name, _ in SCENARIOS]


def edge_string(edge: dict[str, Any]) -> str:
    return f"{edge['source']} -{edge['type']}-> {edge['target']}"


def report_edges(report: Report) -> set[str]:
    return {edge_string(e) for e in report["graph"]["edges"]}


def recorded_seqs(report: Report) -> dict[int, tuple[str, dict[str, Any]]]:
    """Every seq the report shows a record for, with the section and the record."""
    seqs: dict[int, tuple[str, dict[str, Any]]] = {}
    for section in ("api_calls", "network", "files", "registry", "sync_objects", "memory", "threads", "notes"):
        for record in report.get(section, []):
            seqs[record["seq"]] = (section, record)
    for stage in report["stages"]:
        seqs.setdefault(stage["seq_range"][0], ("stages", stage))
    return seqs


def test_some_scenarios_declare_expectations() -> None:
    assert {"3cx", "3cx-x86", "winhttp-downloader", "benign-dll"} <= set(SCENARIO_IDS)


def test_expected_edges_are_well_formed() -> None:
    for name, expect in SCENARIOS:
        for edge in expect.get("edges", []):
            assert _EDGE.match(edge), f"{name}: [expect].edges entry {edge!r} is not 'source -type-> target'"


@pytest.mark.parametrize(("name", "expect"), SCENARIOS, ids=SCENARIO_IDS)
def test_scenario_matches_expectations(
    name: str, expect: dict[str, Any], scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    assert report["outcome"]["status"] == expect.get("outcome", "completed"), report["outcome"]
    if "stage_kinds" in expect:
        assert [s["kind"] for s in report["stages"]] == expect["stage_kinds"]
    assert [s["id"] for s in report["stages"]] == [f"s{i}" for i in range(len(report["stages"]))]

    mismatches: list[str] = []
    if "stage_origins" in expect:
        origins = [s["origin"]["type"] for s in report["stages"]]
        if origins != expect["stage_origins"]:
            mismatches.append(f"stage origins {origins} != expected {expect['stage_origins']}")
    if "edges" in expect:
        actual, wanted = report_edges(report), set(expect["edges"])
        if actual != wanted:
            mismatches.append(f"edges missing: {sorted(wanted - actual)}; unexpected: {sorted(actual - wanted)}")
    known_bug = expect.get("xfail")
    if known_bug and mismatches:
        pytest.xfail(f"{known_bug}: {'; '.join(mismatches)}")
    assert not mismatches, "\n".join(mismatches)
    assert not known_bug, f"{name}: expectations now met; remove 'xfail' from its [expect] table"


@pytest.mark.parametrize(("name", "expect"), SCENARIOS, ids=SCENARIO_IDS)
def test_every_edge_has_evidence_in_the_report(
    name: str, expect: dict[str, Any], scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    events = report["stats"]["events"]
    recorded = recorded_seqs(report)
    stage_ids = {s["id"] for s in report["stages"]}
    for edge in report["graph"]["edges"]:
        label = edge_string(edge)
        evidence = edge["evidence"]
        assert evidence, f"{label}: no evidence"
        assert all(isinstance(seq, int) and 0 <= seq < events for seq in evidence), f"{label}: {evidence}"
        assert any(seq in recorded for seq in evidence), f"{label}: no evidence seq is a record of the report"
        source, target = edge["source"], edge["target"]
        if source not in stage_ids or target in stage_ids:
            continue
        # A stage touching an artifact: the evidence is a record of that stage naming the artifact.
        kind, _, ref = target.partition(":")
        section = {
            "file": "files",
            "url": "network",
            "host": "network",
            "registry": "registry",
            "sync": "sync_objects",
            "process": "api_calls",
        }[kind]
        matching = [recorded[seq][1] for seq in evidence if recorded.get(seq, ("", {}))[0] == section]
        assert matching, f"{label}: no {section} record among evidence {evidence}"
        for record in matching:
            assert record["stage"] == source, f"{label}: record {record['seq']} belongs to {record['stage']}"
            named = {
                "files": lambda r: r["path"].lower(),
                "network": lambda r: r["url"] or r["host"],
                "registry": lambda r: r["path"].lower(),
                "sync_objects": lambda r: r["name"].lower(),
                # A process is named by the API's process or command-line argument.
                "api_calls": lambda r, ref=ref: next((ref for a in r["args"] if ref.lower() in a.lower()), r["args"]),
            }[section]
            assert named(record) == ref, f"{label}: record {record['seq']} names {named(record)!r}"
    for technique in report["attack"]:
        assert technique["evidence"], technique
        assert all(0 <= seq < events for seq in technique["evidence"]), technique


# ---- the 3CX chain, both architectures --------------------------------------------------------

CHAINS_3CX = ["3cx", "3cx-x86"]
HISTORY_FILES = [
    r"google\chrome\user data\default\history",
    r"microsoft\edge\user data\default\history",
    r"bravesoftware\brave-browser\user data\default\history",
    r"mozilla\firefox\profiles\chainreplay.default-release\places.sqlite",
]


def _api(report: Report, name: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"].lower().endswith("." + name.lower())]


@pytest.mark.parametrize("name", CHAINS_3CX)
def test_3cx_carrier_read_before_it_is_made_executable(name: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    opens = [c for c in _api(report, "CreateFileW") if c["args"][0].lower().endswith(r"\d3dcompiler_47.dll")]
    assert opens, "no CreateFileW of d3dcompiler_47.dll"
    handles = {c["ret"] for c in opens}
    reads = [c for c in _api(report, "ReadFile") if c["args"][0] in handles and c["stage"] == "s0"]
    assert reads, "no ReadFile of the d3dcompiler_47.dll handle"
    file_reads = [
        f
        for f in report["files"]
        if f["op"] == "read" and f["path"].lower().endswith(r"\d3dcompiler_47.dll") and f["size"]
    ]
    assert file_reads
    rwx = [c for c in _api(report, "VirtualProtect") if "PAGE_EXECUTE_READWRITE" in c["args"]]
    assert rwx, "no VirtualProtect(PAGE_EXECUTE_READWRITE)"
    assert reads[0]["seq"] < rwx[0]["seq"] and file_reads[0]["seq"] < rwx[0]["seq"]
    shellcode = report["stages"][1]
    assert shellcode["kind"] == "shellcode"
    assert shellcode["origin"]["type"] == "file" and shellcode["origin"]["ref"].lower().endswith("d3dcompiler_47.dll")
    assert rwx[0]["seq"] < shellcode["seq_range"][0]


@pytest.mark.parametrize("name", CHAINS_3CX)
def test_3cx_network_and_crypto(name: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    http = [n for n in report["network"] if n["kind"] == "http"]
    github = [n for n in http if n["method"] == "GET" and n["host"] == "raw.githubusercontent.com"]
    assert github and re.fullmatch(
        r"https://raw\.githubusercontent\.com/IconStorages/images/main/icon\d+\.ico", github[0]["url"]
    ), github
    assert github[0]["response"]["status"] == 200 and github[0]["stage"] == "s2"
    decrypts = _api(report, "BCryptDecrypt")
    assert len(decrypts) >= 2 and all(c["ret"] == "0x0" for c in decrypts)
    beacons = [n for n in http if n["method"] == "POST" and n["responder"] == "c2" and n["stage"] == "s2"]
    assert beacons, "no C2 POST from stage 2"
    cookie = next((v for k, v in beacons[0]["request"]["headers"].items() if k.lower() == "cookie"), "")
    assert "__tutma=" in cookie
    assert github[0]["seq"] < decrypts[0]["seq"] < beacons[0]["seq"]
    stage3_get = [n for n in http if n["method"] == "GET" and n["url"].endswith("/stage3.bin")]
    assert stage3_get and stage3_get[0]["response"]["status"] == 200


@pytest.mark.parametrize("name", CHAINS_3CX)
def test_3cx_stage3_reads_history_and_posts(name: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    reads = [f for f in report["files"] if f["stage"] == "s3" and f["op"] == "read" and f["size"]]
    for suffix in HISTORY_FILES:
        assert any(f["path"].lower().endswith(suffix) for f in reads), f"stage 3 did not read {suffix}"
    posts = [n for n in report["network"] if n["stage"] == "s3" and n["method"] == "POST"]
    assert posts and posts[0]["response"]["status"] == 200 and posts[0]["request"]["body_size"] > 0
    assert max(f["seq"] for f in reads) < posts[0]["seq"]
    assert {s["origin"]["type"] for s in report["stages"]} >= {"file", "memory", "network"}
    assert report["stages"][3]["name"] == "iconic.dll" and report["stages"][2]["name"] == "samcli.dll"
