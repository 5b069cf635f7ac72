"""CI use: [expect] validated and evaluated, baselines and drift, run --expect / --fail-on, JUnit XML.

Replays are shared: the committed-baseline test uses the session's ``scenario_report`` replays;
the CLI tests replay the small benign-dll scenario or a one-instruction shellcode.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import CliResult
from junitparser import Failure, JUnitXml, Skipped

from emulator.check import (
    BASELINE_FILE,
    compare,
    dumps_baseline,
    load_baseline,
    normalise,
    render_drift,
)
from emulator.expect import Expect, evaluate
from emulator.report import Report
from emulator.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
COMMITTED = sorted(p.parent.name for p in SCENARIOS.glob(f"*/{BASELINE_FILE}"))


def _scenario_copy(tmp_path: Path, name: str, expect_table: str | None = None) -> Path:
    """A copy of scenarios/<name> whose [expect] table is replaced by ``expect_table``."""
    folder = tmp_path / name
    shutil.copytree(SCENARIOS / name, folder, ignore=shutil.ignore_patterns(BASELINE_FILE))
    if expect_table is not None:
        text = (folder / "scenario.toml").read_text(encoding="utf-8")
        head = text[: text.index("[expect]")]
        (folder / "scenario.toml").write_text(head + "[expect]\n" + expect_table, encoding="utf-8")
    return folder


def _model(report: dict[str, Any]) -> Report:
    return Report.model_validate(report)


# ---- [expect] validated at load ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('contcts = ["a.example"]\n', "expect.contcts: unknown key"),
        ('techniques = ["T9999"]\n', "expect.techniques: T9999 is not matched by any pattern"),
        ('techniques = ["exec"]\n', "expect.techniques: 'exec' is not an ATT&CK technique id"),
        ('edges = ["s0 loads s1"]\n', "expect.edges: 's0 loads s1' is not 'source -type-> target'"),
        ('apis = { stage2 = ["Sleep"] }\n', "expect.apis: 'stage2' is not a stage id"),
        ('outcome = "finished"\n', "expect.outcome"),
        ("min_stages = -1\n", "expect.min_stages"),
    ],
)
def test_a_bad_expect_table_is_one_line_naming_file_and_key(
    table: str, named: str, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    folder = _scenario_copy(tmp_path, "benign-dll", table)
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(folder / "scenario.toml")), message
    assert named in message, message
    line = cli("run", folder, "--expect", "-o", tmp_path / "out").error_line()
    assert named in line
    assert not (tmp_path / "out" / "report.json").exists()


def test_every_committed_scenario_expect_table_is_valid() -> None:
    for path in sorted(SCENARIOS.glob("*/scenario.toml")):
        load_scenario(path.parent)  # raises on a bad [expect]


# ---- [expect] evaluated -----------------------------------------------------------------------------


def test_expectations_hold_and_fail_with_evidence(scenario_report: Callable[[str], dict[str, Any]]) -> None:
    report = _model(scenario_report("3cx"))
    holding = Expect(
        min_stages=4,
        contacts=["pbxcloudeservices.com"],
        contacts_only=["raw.githubusercontent.com", "PBXcloudeservices.com"],
        apis={"s2": ["InternetOpenUrlW", "bcrypt.BCryptDecrypt"]},
        techniques=["T1620"],
        writes_only_under=[
            "C:\\Users\\analyst\\AppData\\Local\\Programs\\3CXDesktopApp",
            "C:\\Users\\analyst\\AppData\\Roaming\\Microsoft",
        ],
    )
    results = evaluate(holding, report)
    assert [r.status for r in results] == ["pass"] * len(results), results
    assert len(results) == 8

    failing = Expect(
        outcome="fault",
        stages=3,
        contacts=["c2.example"],
        contacts_only=["raw.githubusercontent.com"],
        apis={"s2": ["WinHttpOpen"], "s9": ["Sleep"]},
        techniques=["T1055"],
        writes_only_under=["C:\\Temp"],
    )
    by_name = {r.name: r for r in evaluate(failing, report)}
    assert all(r.status == "fail" for r in by_name.values()), by_name
    assert by_name["outcome is fault"].evidence == "outcome was completed"
    assert "5 stages: s0 pe ffmpeg.dll" in by_name["exactly 3 stages"].evidence
    assert "pbxcloudeservices.com" in by_name["contacts c2.example"].evidence
    only = by_name["contacts no host outside ['raw.githubusercontent.com']"]
    assert "contacted pbxcloudeservices.com (seq" in only.evidence
    assert by_name["WinHttpOpen called in s2"].evidence.endswith("not WinHttpOpen; closest: wininet.InternetOpenW")
    assert by_name["Sleep called in s9"].evidence == "there is no stage s9 (5 stages)"
    assert "T1620" in by_name["technique T1055 present"].evidence
    written = by_name["no file written outside ['C:\\\\Temp']"].evidence
    assert "3CXDesktopApp\\app\\manifest" in written and "stage s2" in written


def test_xfail_counts_a_known_failure_and_fails_once_met(scenario_report: Callable[[str], dict[str, Any]]) -> None:
    report = _model(scenario_report("benign-dll"))
    known = evaluate(Expect(edges=["s0 -drops-> file:c:\\x"], xfail="bug 1"), report)
    assert [r.status for r in known] == ["pass", "xfail"]
    met = evaluate(Expect(edges=[], xfail="bug 1"), report)
    assert met[1].status == "fail" and "remove xfail" in met[1].evidence


# ---- baselines -------------------------------------------------------------------------------------


def test_baselines_are_committed_for_every_scenario() -> None:
    scenarios = sorted(p.parent.name for p in SCENARIOS.glob("*/scenario.toml"))
    assert scenarios == COMMITTED


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_baseline_matches_a_replay(name: str, scenario_report: Callable[[str], dict[str, Any]]) -> None:
    """`check` passes on every committed scenario: its replay normalises to the committed file, byte for byte."""
    path = SCENARIOS / name / BASELINE_FILE
    current = normalise(_model(scenario_report(name)))
    drift = compare(load_baseline(path), current)
    assert not drift.drifted, render_drift(drift, title=name)
    assert dumps_baseline(current) == path.read_text(encoding="utf-8")


def test_baseline_has_no_addresses_seqs_or_host_paths(scenario_report: Callable[[str], dict[str, Any]]) -> None:
    report = scenario_report("3cx")
    text = dumps_baseline(normalise(_model(report)))
    assert "generated_at" not in text and '"seq":' not in text and '"entry":' not in text and '"base":' not in text
    for stage in report["stages"]:
        assert f'"{stage["base"]}"' not in text
    assert str(REPO) not in text and "/tmp/" not in text
    assert "shellcode@0x?" in text  # the shellcode stage is named by its address: masked


def test_drift_is_grouped_by_stage_with_appeared_vanished_changed(
    scenario_report: Callable[[str], dict[str, Any]],
) -> None:
    baseline = normalise(_model(scenario_report("3cx")))
    current = copy.deepcopy(baseline)
    s2 = current["stages"][2]
    s2["apis"][s2["apis"].index("wininet.InternetOpenUrlW")] = "winhttp.WinHttpOpenRequest"
    s2["network"][0]["response"]["status"] = 404
    del s2["registry"][0]
    current["stages"][3]["sha256"] = "0" * 64
    current["graph"].append("s3 -drops-> file:c:\\x")
    current["outcome"]["status"] = "fault"
    drift = compare(baseline, current)
    lines = render_drift(drift, title="3cx").splitlines()
    assert lines[0] == "3cx: drift, 7 changes"
    assert lines[1] == "stage s2 samcli.dll"
    assert "  - apis: wininet.InternetOpenUrlW: after msvcrt.rand" in lines
    assert "  + apis: winhttp.WinHttpOpenRequest: after msvcrt.rand" in lines
    assert any(
        ln.startswith("  ~ network: GET https://raw.githubusercontent.com/") and "response.status 200 -> 404" in ln
        for ln in lines
    )
    assert any(ln.startswith("  - registry: open HKEY_LOCAL_MACHINE") for ln in lines)
    s3 = lines.index("stage s3 iconic.dll")
    assert lines[s3 + 1].startswith("  ~ stage: sha256: ")
    chain = lines.index("chain")
    assert chain > s3
    assert "  ~ outcome: status: completed -> fault" in lines[chain:]
    assert "  + graph: s3 -drops-> file:c:\\x" in lines[chain:]
    assert not compare(baseline, copy.deepcopy(baseline)).drifted


# ---- check on the command line ------------------------------------------------------------------------


def test_check_update_then_same_then_drift_with_junit(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = _scenario_copy(tmp_path, "benign-dll")
    out = tmp_path / "reports"
    updated = cli("check", folder, "--update", "-o", out, "-q")
    assert updated.rc == 0, updated.err
    written = folder / BASELINE_FILE
    assert written.read_text(encoding="utf-8") == (SCENARIOS / "benign-dll" / BASELINE_FILE).read_text(encoding="utf-8")

    baseline = json.loads(written.read_text(encoding="utf-8"))
    baseline["stages"][0]["apis"].append("kernel32.ExitProcess")
    baseline["graph"].append("s0 -reads-> file:c:\\secret")
    drifted = tmp_path / "drifted.json"
    drifted.write_text(dumps_baseline(baseline), encoding="utf-8")
    junit = tmp_path / "junit.xml"
    result = cli("check", folder, "--baseline", drifted, "-o", out, "--junit", junit)
    assert result.rc == 1, result.err
    assert "benign-dll (against" in result.out and "drift, 2 changes" in result.out
    assert "  - apis: kernel32.ExitProcess" in result.out
    assert "  - graph: s0 -reads-> file:c:\\secret" in result.out

    xml = JUnitXml.fromfile(str(junit))
    cases = [case for suite in xml for case in suite]
    names = [c.name for c in cases]
    assert names[0] == f"replay {folder}"
    assert len(cases) == 1 + 6  # one per target, one per expectation of benign-dll's [expect]
    assert all(c.classname == "benign-dll" for c in cases)
    failures = [r for r in cases[0].result if isinstance(r, Failure)]
    assert failures and "drift against" in failures[0].message
    assert all(not c.result for c in cases[1:])

    same = cli("check", folder, "-o", out, "-q")
    assert same.rc == 0, same.out + same.err
    assert same.out == ""


def test_check_bad_inputs_exit_2(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = _scenario_copy(tmp_path, "benign-dll")
    assert "no such baseline" in cli("check", folder, "-o", tmp_path / "o").error_line()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in cli("check", folder, "--baseline", bad).error_line()
    bad.write_text('{"format": "other"}', encoding="utf-8")
    assert "not a chainreplay baseline" in cli("check", folder, "--baseline", bad).error_line()
    assert "no such file or folder" in cli("check", tmp_path / "nothing").error_line()
    sample = REPO / "tests" / "bins" / "hello.dll"
    assert "give --baseline FILE" in cli("check", sample).error_line()
    two = cli("check", folder, folder, "--baseline", bad).error_line()
    assert "--baseline applies to one target" in two
    assert not (tmp_path / "o").exists()


def test_bare_sample_baseline_does_not_depend_on_its_host_folder(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    first, second = tmp_path / "a" / "deep", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir(parents=True)
        shutil.copy(REPO / "tests" / "bins" / "hello.dll", folder / "hello.dll")
    baseline = tmp_path / "hello.baseline.json"
    assert cli("check", first / "hello.dll", "--baseline", baseline, "--update", "-o", tmp_path / "r1").rc == 0
    assert str(tmp_path) not in baseline.read_text(encoding="utf-8")
    result = cli("check", second / "hello.dll", "--baseline", baseline, "-o", tmp_path / "r2")
    assert result.rc == 0, result.out


def test_a_folder_of_scenarios_stands_for_them_and_a_glob_naming_a_non_scenario_is_refused(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """The documented CI command names every scenario: `scenarios/*/` also names the shared
    sources of scenarios/lineage-common, so the folder itself is the way to say "every scenario"."""
    from emulator.cli.targets import expand_targets

    parent = tmp_path / "scenarios"
    for name in ("negative-control", "benign-dll"):
        _scenario_copy(parent, name)
    (parent / "common").mkdir()
    (parent / "common" / "rules.mk").write_text("all:\n", encoding="utf-8")
    assert expand_targets([str(parent)]) == [parent / "benign-dll", parent / "negative-control"]
    assert expand_targets([str(REPO / "scenarios")]) == [SCENARIOS / name for name in COMMITTED]

    line = cli("check", *sorted(parent.glob("*/")), "--update", "-o", tmp_path / "o").error_line()
    assert line.endswith(
        f"{parent / 'common'}: not a scenario folder (no scenario.toml); "
        f"to take every scenario folder beside it, give {parent} itself"
    ), line
    assert not (tmp_path / "o").exists()
    updated = cli("check", parent, "--update", "-o", tmp_path / "o", "-q")
    assert updated.rc == 0, updated.err
    assert updated.out.splitlines() == [
        f"benign-dll: wrote {parent / 'benign-dll' / BASELINE_FILE}",
        f"negative-control: wrote {parent / 'negative-control' / BASELINE_FILE}",
    ]
    assert "no such file or folder" in cli("batch", parent / "nothing", "--check").error_line()


# ---- run --expect / --fail-on / --junit ----------------------------------------------------------------


def test_run_expect_names_each_failing_expectation(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = _scenario_copy(
        tmp_path,
        "benign-dll",
        'stages = 1\ncontacts = ["update.example"]\napis = { s0 = ["kernel32.CreateFileW"] }\n',
    )
    junit = tmp_path / "run.xml"
    result = cli("run", folder, "--expect", "-q", "-o", tmp_path / "out", "--junit", junit)
    assert result.rc == 1, result.err
    lines = result.out.splitlines()
    assert lines == [
        "benign-dll: FAIL contacts update.example: hosts contacted: none",
        lines[1],
    ]
    assert lines[1].startswith("benign-dll: FAIL kernel32.CreateFileW called in s0: s0 (benign.dll) called ")
    assert lines[1].endswith("distinct APIs, not kernel32.CreateFileW")
    cases = [case for suite in JUnitXml.fromfile(str(junit)) for case in suite]
    assert [c.name for c in cases][1:] == [
        "expect: outcome is completed",
        "expect: exactly 1 stages",
        "expect: contacts update.example",
        "expect: kernel32.CreateFileW called in s0",
    ]
    assert [bool(c.result) for c in cases] == [False, False, False, True, True]

    assert cli("run", SCENARIOS / "benign-dll", "--expect", "-q", "-o", tmp_path / "out2").rc == 0
    no_table = _scenario_copy(tmp_path / "x", "benign-dll")
    text = (no_table / "scenario.toml").read_text(encoding="utf-8")
    (no_table / "scenario.toml").write_text(text[: text.index("[expect]")], encoding="utf-8")
    assert "has no [expect] table" in cli("run", no_table, "--expect").error_line()
    assert (
        "--expect needs a scenario folder" in cli("run", REPO / "tests" / "bins" / "hello.dll", "--expect").error_line()
    )


def test_fail_on_turns_an_outcome_into_exit_1(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    sample = tmp_path / "ud2.bin"
    sample.write_bytes(b"\x0f\x0b")
    base = ("run", sample, "--shellcode", "--arch", "x64", "--timeout", "10", "-q")
    assert cli(*base, "-o", tmp_path / "a").rc == 0
    junit = tmp_path / "fail.xml"
    failed = cli(*base, "-o", tmp_path / "b", "--fail-on", "limit,fault", "--junit", junit)
    assert failed.rc == 1
    assert "FAIL outcome fault (--fail-on fault)" in failed.out
    case = next(case for suite in JUnitXml.fromfile(str(junit)) for case in suite)
    assert isinstance(case.result[0], Failure) and "--fail-on fault" in case.result[0].message
    assert cli(*base, "-o", tmp_path / "c", "--fail-on", "unsupported_api,limit").rc == 0
    assert "unknown category 'crash'" in cli(*base, "--fail-on", "fault,crash").error_line()


def test_junit_marks_xfail_as_skipped(scenario_report: Callable[[str], dict[str, Any]], tmp_path: Path) -> None:
    from emulator.check import judge
    from emulator.junit import write_junit

    report = _model(scenario_report("benign-dll"))
    result = judge(report, target="x", outdir="o", expect=Expect(edges=["s0 -drops-> file:c:\\x"], xfail="bug"))
    write_junit([result], tmp_path / "j.xml")
    cases = [case for suite in JUnitXml.fromfile(str(tmp_path / "j.xml")) for case in suite]
    assert isinstance(cases[-1].result[0], Skipped)
    assert not result.failed


def test_junit_and_terminal_escape_what_the_sample_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Drift and evidence quote the sample (paths, hosts, names): one control character made the
    JUnit file unreadable to every parser, and reached the terminal as is."""
    import xml.etree.ElementTree as ET

    from emulator.check import Change, Drift, TargetResult
    from emulator.cli.ci import _print_result_lines
    from emulator.expect import ExpectResult
    from emulator.junit import MAX_MESSAGE, write_junit

    raw = "evil\x00\x01\x1b[31m\x7f\ufffe\ud800\u202e.example"
    drift = Drift(
        changes=[
            Change("s0", "files", "appeared", f"write C:\\{raw}"),
            Change("chain", "graph", "vanished", "x" * 50_000),
        ],
        stage_names={"s0": f"stage\x08{raw}"},
    )
    result = TargetResult(
        target="t",
        name="n",
        outdir="o",
        outcome="fault",
        expectations=[
            ExpectResult(f"contacts {raw}", "fail", f"hosts contacted: {raw}"),
            ExpectResult("l", "fail", "y" * 50_000),
        ],
        drift=drift,
        baseline="b.json",
        fail_reasons=[f"outcome fault (--fail-on fault): {raw}"],
    )
    path = tmp_path / "junit.xml"
    write_junit([result], path)
    ET.parse(path)  # well-formed XML 1.0
    cases = [case for suite in JUnitXml.fromfile(str(path)) for case in suite]
    assert [c.name for c in cases] == [
        "replay t",
        "expect: contacts evil\\u0000\\u0001\\u001b[31m\\u007f\\ufffe\\ud800\\u202e.example",
        "expect: l",
    ]
    replay_failure = cases[0].result[0]
    assert isinstance(replay_failure, Failure)
    assert "+ files: write C:\\evil\\u0000\\u0001\\u001b[31m" in replay_failure.text
    assert "x" * 50_000 in replay_failure.text
    long_failure = cases[2].result[0]
    assert len(long_failure.message) == MAX_MESSAGE and long_failure.text.endswith("y" * 50_000)

    _print_result_lines(result)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x00" not in out and "\u202e" not in out
    assert "n: FAIL outcome fault (--fail-on fault): evil\\u0000\\u0001\\u001b[31m" in out
    assert "stage s0 stage\\u0008evil" in out


def test_guest_paths_and_hosts_compare_as_windows_resolves_them(
    scenario_report: Callable[[str], dict[str, Any]],
) -> None:
    """writes_only_under: '..' cannot climb out of a folder unseen, the NT prefixes \\\\?\\ and \\??\\,
    either slash and any case name the same file; contacts: a.example. is a.example."""
    report = _model(scenario_report("tcp-stager-x86"))
    allowed = ["c:/users/PUBLIC/"]

    def written(path: str) -> str:
        files = [report.files[0].model_copy(update={"op": "write", "path": path})]
        (result,) = evaluate(
            Expect(writes_only_under=allowed), report.model_copy(update={"files": files, "dropped": []})
        )[1:]
        return result.status

    assert written("C:\\Users\\Public\\..\\..\\Windows\\System32\\evil.dll") == "fail"
    assert written("C:\\Users\\Public\\x\\..\\..\\PublicX\\y.txt") == "fail"
    assert written("C:\\Users\\PublicX\\y.txt") == "fail"
    for inside in ("\\\\?\\C:\\Users\\Public\\x.txt", "\\??\\c:\\users\\public\\x.txt", "C:/USERS/Public//a/./b.txt"):
        assert written(inside) == "pass", inside

    dotted = report.model_copy(
        update={"network": [n.model_copy(update={"host": n.host + "."}) for n in report.network]}
    )
    results = evaluate(Expect(contacts=["Relay.example-c2.net"], contacts_only=["relay.example-c2.net"]), dotted)
    assert [r.status for r in results] == ["pass", "pass", "pass"], results
    only = evaluate(
        Expect(contacts_only=[]), report.model_copy(update={"network": [n for n in report.network if n.kind == "dns"]})
    )
    assert only[1].status == "fail" and "relay.example-c2.net (seq" in only[1].evidence


def _without_stage(baseline: dict[str, Any], gone: str) -> dict[str, Any]:
    """``baseline`` as a replay in which stage ``gone`` never ran would normalise: the later
    stages renumbered (ids, parents, memory origins, graph edges), the edges of ``gone`` absent."""
    import re

    kept = [s["id"] for s in baseline["stages"] if s["id"] not in (gone, "-")]
    renumber = {sid: f"s{k}" for k, sid in enumerate(kept)}

    def new_id(value: Any) -> Any:
        return renumber.get(value, "s0" if value == gone else value)

    stages = []
    for stage in baseline["stages"]:
        if stage["id"] == gone:
            continue
        stage = {**stage, "id": new_id(stage["id"]), "parent": new_id(stage.get("parent"))}
        if stage.get("origin", {}).get("type") == "memory":
            stage["origin"] = {**stage["origin"], "ref": new_id(stage["origin"]["ref"])}
        stages.append(stage)
    edge = re.compile(r"^(.*) -([a-z_]+)-> (.*)$")
    graph = sorted(
        f"{new_id(m[1])} -{m[2]}-> {new_id(m[3])}"
        for m in map(edge.match, baseline["graph"])
        if m and gone not in (m[1], m[3])
    )
    return {**copy.deepcopy(baseline), "stages": stages, "graph": graph}


def test_a_stage_vanishing_mid_chain_is_one_change_not_a_shift_of_every_later_stage() -> None:
    """Stages pair by kind, name and origin in order, not by id: 3CX without its shellcode stage
    says that stage vanished and that the later ones were renumbered (before: 263 changes, every
    later stage compared with the one before it)."""
    baseline = load_baseline(SCENARIOS / "3cx" / BASELINE_FILE)
    current = _without_stage(baseline, "s1")
    drift = compare(baseline, current)
    text = render_drift(drift)
    assert len(drift.changes) < 15, text
    assert "- stage: shellcode shellcode@0x? sha256" in text
    for old, new in (("s2", "s1"), ("s3", "s2"), ("s4", "s3")):
        assert f"~ stage: id: {old} -> {new}" in text
    assert not [c for c in drift.changes if c.section == "apis"], text  # every later stage's APIs paired right
    # and the other way round: a stage appearing mid-chain
    back = compare(current, baseline)
    assert len(back.changes) < 15 and "+ stage: shellcode shellcode@0x? sha256" in render_drift(back)
    # an unchanged chain: no drift, ids untouched
    assert not compare(baseline, copy.deepcopy(baseline)).drifted
