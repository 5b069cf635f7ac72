"""Replay every scenario that declares an ``[expect]`` table and check the report against it.

The expectations are data: a scenario folder whose scenario.toml has an ``[expect]`` table is a
test case here, with no new Python. The table is validated at load and evaluated by the
package (:mod:`emulator.expect`, the same code as ``chainreplay run --expect`` and ``check``);
docs/scenarios.md lists its keys. ``xfail``: a known emulator bug makes the edge/origin checks
fail; the test then xfails on a mismatch and fails once the expectations are met.

Each scenario is replayed once per session (see the ``scenario_report`` fixture in conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.expect import EDGE_PATTERN, Expect, evaluate, failures
from emulator.report import Report as ReportModel
from emulator.scenario import read_scenario_file

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"

Report = dict[str, Any]


def _scenarios_with_expect() -> list[tuple[str, Expect]]:
    found = []
    for path in sorted(SCENARIOS_DIR.glob("*/scenario.toml")):
        expect = read_scenario_file(path.parent).expect
        if expect is not None:
            found.append((path.parent.name, expect))
    return found


SCENARIOS = _scenarios_with_expect()
SCENARIO_IDS = [name for name, _ in SCENARIOS]


def edge_string(edge: dict[str, Any]) -> str:
    return f"{edge['source']} -{edge['type']}-> {edge['target']}"


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
        for edge in expect.edges or []:
            assert EDGE_PATTERN.match(edge), f"{name}: [expect].edges entry {edge!r} is not 'source -type-> target'"


@pytest.mark.parametrize(("name", "expect"), SCENARIOS, ids=SCENARIO_IDS)
def test_scenario_matches_expectations(name: str, expect: Expect, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    assert [s["id"] for s in report["stages"]] == [f"s{i}" for i in range(len(report["stages"]))]
    results = evaluate(expect, ReportModel.model_validate(report))
    failed = failures(results)
    assert not failed, "\n".join(f"{r.name}: {r.evidence}" for r in failed)
    known = [r for r in results if r.status == "xfail"]
    if known:
        pytest.xfail("; ".join(f"{r.name}: {r.evidence}" for r in known))


_THREAD_OR_VIEW_CALLS = (
    "setthreadcontext",
    "wow64setthreadcontext",
    "ntsetcontextthread",
    "queueuserapc",
    "ntqueueapcthread",
    "resumethread",
    "ntresumethread",
    "ntunmapviewofsection",
    "zwunmapviewofsection",
)


def _last_named(calls: list[dict[str, Any]], record: dict[str, Any], ref: str) -> object:
    """For a call on a thread or view handle: ``ref`` if the stage's last earlier call that named a
    process named it, else the record's arguments (the assertion then shows them)."""
    if record["api"].rpartition(".")[2].lower() not in _THREAD_OR_VIEW_CALLS:
        return record["args"]
    for call in reversed([c for c in calls if c["seq"] < record["seq"] and c["stage"] == record["stage"]]):
        if any(":\\" in a and a.lower().endswith(".exe") for a in call["args"]):
            return ref if any(ref.lower() in a.lower() for a in call["args"]) else call["args"]
    return record["args"]


@pytest.mark.parametrize(("name", "expect"), SCENARIOS, ids=SCENARIO_IDS)
def test_every_edge_has_evidence_in_the_report(
    name: str, expect: Expect, scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    events = report["stats"]["events"]
    recorded = recorded_seqs(report)
    calls = sorted(report["api_calls"], key=lambda r: r["seq"])
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
                # Raw TCP / UDP exchanges have no URL: the graph names them kind://host:port.
                "network": lambda r: (
                    r["url"] or (f"{r['kind']}://{r['host']}:{r['port']}" if r["kind"] in ("tcp", "udp") else r["host"])
                ),
                "registry": lambda r: r["path"].lower(),
                "sync_objects": lambda r: r["name"].lower(),
                # A process is named by the API's process or command-line argument; a call on a
                # thread or a view (SetThreadContext, QueueUserAPC, ResumeThread, ZwUnmapViewOfSection)
                # by the stage's last call before it that named a process. A program named without
                # its folder (rundll32.exe, cmd.exe) is the node of the path it was found at.
                "api_calls": lambda r, ref=ref: next(
                    (ref for a in r["args"] if ref.lower() in a.lower() or _named_bare(ref, a)),
                    _last_named(calls, r, ref),
                ),
            }[section]
            assert named(record) == ref, f"{label}: record {record['seq']} names {named(record)!r}"
    for technique in report["attack"]:
        assert technique["evidence"], technique
        assert all(0 <= seq < events for seq in technique["evidence"]), technique


def _named_bare(path: str, arg: str) -> bool:
    """Whether a call's argument names the program at ``path`` by its file name alone, as its
    first word (a command line searched for it: ``rundll32.exe x.dll,Start``)."""
    name = path.rpartition("\\")[2].lower()
    first = arg.strip().strip('"').split('"')[0].split(" ")[0].lower()
    return "\\" in path and first in (name, name.removesuffix(".exe"))


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
    assert posts and posts[0]["response"]["status"] == 200 and posts[0]["request"]["size"] > 0
    assert max(f["seq"] for f in reads) < posts[0]["seq"]
    assert {s["origin"]["type"] for s in report["stages"]} >= {"file", "memory", "network"}
    assert report["stages"][3]["name"] == "iconic.dll" and report["stages"][2]["name"] == "samcli.dll"
