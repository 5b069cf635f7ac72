"""Every limit is declared once (emulator/limits.py), reachable as a flag and a ``[limits]`` key,
and names itself when it fires.

The flags and keys are derived from the ``Limits`` model; the cases below make each limit fire on
a scenario, a robustness sample or a few bytes of shellcode, and a test checks no limit lacks one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import build_parser, main
from emulator.limits import Limits, option_of
from emulator.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
ROBUST = REPO / "tests" / "bins" / "robust"
# A value for each limit, as typed on a command line or in scenario.toml.
VALUES = {
    "timeout": "2.5",
    "max_instructions": "1000",
    "max_api_calls": "10",
    "max_mapped_memory": "1048576",
    "max_allocation": "65536",
    "max_stages": "3",
    "max_network_exchanges": "7",
    "max_dropped_bytes": "4096",
    "max_child_processes": "2",
}


def _typed(name: str, text: str) -> float | int:
    return float(text) if Limits.model_fields[name].annotation is float else int(text)


def test_every_limit_is_a_flag() -> None:
    assert set(VALUES) == set(Limits.model_fields)
    argv = ["run", "x"]
    for name, value in VALUES.items():
        argv += [option_of(name), value]
    args = build_parser().parse_args(argv)
    for name, value in VALUES.items():
        assert getattr(args, name) == _typed(name, value)
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    for name, field in Limits.model_fields.items():
        assert option_of(name) in help_text
        assert str(field.description).split()[0] in help_text


def _scenario_with_limits(tmp_path: Path, table: str) -> Path:
    folder = tmp_path / "scenario"
    shutil.copytree(SCENARIOS / "winhttp-downloader", folder, ignore=shutil.ignore_patterns("build"))
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    assert "[limits]\ntimeout = 30\n" in text
    (folder / "scenario.toml").write_text(text.replace("[limits]\ntimeout = 30\n", table), encoding="utf-8")
    return folder


def test_scenario_limits_and_flags_reach_the_plan(tmp_path: Path) -> None:
    table = "[limits]\n" + "".join(f"{name} = {value}\n" for name, value in VALUES.items())
    folder = _scenario_with_limits(tmp_path, table)
    plan = load_scenario(folder)
    for name, value in VALUES.items():
        assert getattr(plan.limits, name) == _typed(name, value), name
    # a flag wins over the scenario's key
    plan = load_scenario(folder, limit_overrides={"max_stages": 9, "timeout": None})
    assert plan.limits.max_stages == 9 and plan.limits.timeout == 2.5


def test_dumped_defaults_are_a_limits_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--dump-default-config"]) == 0
    text = capsys.readouterr().out
    assert tomllib.loads(text) == {"limits": Limits().model_dump()}
    for field in Limits.model_fields.values():
        assert f"# {field.description}" in text
    # pasted into a scenario it gives the default limits, whatever the scenario said before
    plan = load_scenario(_scenario_with_limits(tmp_path, text))
    assert plan.limits == Limits()


def test_dumping_defaults_needs_no_engine() -> None:
    code = "import sys\nsys.modules['speakeasy'] = sys.modules['unicorn'] = None\nfrom emulator.cli import main\n"
    code += "sys.exit(main(['run', '--dump-default-config']))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads(proc.stdout) == {"limits": Limits().model_dump()}


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_non_finite_timeout_flag_is_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", str(SCENARIOS / "winhttp-downloader"), f"--timeout={value}", "-o", "/nonexistent/never"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("chainreplay: error: --timeout:"), err
    assert "finite" in err


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_timeout_key_is_one_line(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _scenario_with_limits(tmp_path, f"[limits]\ntimeout = {value}\n")
    with pytest.raises(ScenarioError, match=r"limits\.timeout: .*finite number$"):
        load_scenario(folder)
    rc = main(["run", str(folder), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "limits.timeout" in err, err
    assert not (tmp_path / "out").exists()


def test_misspelt_limit_key_is_refused(tmp_path: Path) -> None:
    folder = _scenario_with_limits(tmp_path, "[limits]\nmax_api_call = 5\n")
    with pytest.raises(ScenarioError, match=r"limits\.max_api_call: unknown key$"):
        load_scenario(folder)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    outdir = tmp_path / "out"
    rc = main(["run", *argv, "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err, err
    return json.loads((outdir / "report.json").read_text(encoding="utf-8"))


JMP_SELF = "jmp-self.bin"  # written by the test: eb fe, a loop with no API call
LIMIT_CASES: list[Any] = [
    ("timeout", [JMP_SELF, "--timeout", "1", "--max-instructions", str(10**15)], "run shellcode: "),
    ("max_instructions", [JMP_SELF, "--max-instructions", "1000"], "run shellcode: max_instructions"),
    ("max_api_calls", [str(ROBUST / "tickflood.exe"), "--max-api-calls", "50"], "50 API calls (limit 50)"),
    (
        "max_allocation",
        [str(ROBUST / "bigalloc.exe"), "--max-allocation", str(1 << 30)],
        "single allocation of",
    ),
    ("max_stages", [str(SCENARIOS / "winhttp-downloader"), "--max-stages", "1"], "more than 1 stages"),
    (
        "max_network_exchanges",
        [str(SCENARIOS / "3cx"), "--max-network-exchanges", "2"],
        "more than 2 network exchanges",
    ),
    (
        "max_mapped_memory",
        [str(ROBUST / "bigalloc.exe"), "--max-allocation", str(4 << 30), "--max-mapped-memory", str(1 << 30)],
        "mapped memory would exceed 1073741824 bytes",
    ),
    (
        "max_dropped_bytes",
        [str(ROBUST / "dropnames.exe"), "--max-dropped-bytes", "50"],
        "sample wrote more than 50 bytes",
    ),
    (
        "max_child_processes",
        [str(SCENARIOS / "drop-exec-exe"), "--max-child-processes", "0"],
        "more than 0 child processes (CreateProcessA of C:\\Users\\analyst\\AppData\\Local\\Temp\\payload.exe)",
    ),
]


def _case_id(case: Any) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])


# The status of the limits with a status of their own; every other limit is "limit".
STATUS_OF = {"timeout": "timeout", "max_instructions": "instruction_limit", "max_api_calls": "api_limit"}


def test_every_limit_has_a_case() -> None:
    assert sorted(_case_id(c) for c in LIMIT_CASES) == sorted(Limits.model_fields)


@pytest.mark.parametrize(("limit", "argv", "detail"), LIMIT_CASES, ids=[_case_id(c) for c in LIMIT_CASES])
def test_limit_fires_and_names_itself(
    limit: str, argv: list[str], detail: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == JMP_SELF:
        (tmp_path / JMP_SELF).write_bytes(b"\xeb\xfe")
        argv = [str(tmp_path / JMP_SELF), "--shellcode", "--arch", "x64", *argv[1:]]
    outcome = _run(tmp_path, capsys, *argv)["outcome"]
    assert (outcome["status"], outcome["limit"]) == (STATUS_OF.get(limit, "limit"), limit), outcome
    assert outcome["detail"].startswith(detail), outcome


def test_limits_table_in_docs_lists_every_limit() -> None:
    """docs/containment.md has a row per limit naming its flag."""
    text = (REPO / "docs" / "containment.md").read_text(encoding="utf-8")
    for name in Limits.model_fields:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"docs/containment.md has no row for {name}"
        assert f"`{option_of(name)}`" in row, row
