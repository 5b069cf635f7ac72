"""Every limit of issue 6 has a CLI flag and a ``[limits]`` key, and names itself when it fires.

The ones that fire on runaway samples (timeout, instructions, API calls, single allocation) are in
tests/test_bad_inputs.py; the rest are here, on the scenarios and robustness samples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import LIMIT_FLAGS, build_parser, main
from emulator.limits import Limits
from emulator.scenario import LimitsSpec, load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
ROBUST = REPO / "tests" / "bins" / "robust"
# The limits issue 6 asks for, by the name report.outcome.limit uses.
ISSUE_LIMITS = {
    "timeout": "2.5",
    "max_instructions": "1000",
    "max_api_calls": "10",
    "max_mapped_memory": "1048576",
    "max_allocation": "65536",
    "max_stages": "3",
    "max_network_exchanges": "7",
    "max_dropped_bytes": "4096",
}


def test_every_limit_has_a_flag_and_a_scenario_key() -> None:
    assert set(Limits.model_fields) == set(ISSUE_LIMITS)
    assert set(LIMIT_FLAGS) == set(ISSUE_LIMITS)
    assert set(LimitsSpec.model_fields) == set(ISSUE_LIMITS)
    argv = ["run", "x"]
    for name, value in ISSUE_LIMITS.items():
        argv += [f"--{name.replace('_', '-')}", value]
    args = build_parser().parse_args(argv)
    for name, value in ISSUE_LIMITS.items():
        assert getattr(args, name) == LIMIT_FLAGS[name](value)


def test_scenario_limits_and_flags_reach_the_plan(tmp_path: Path) -> None:
    folder = tmp_path / "scenario"
    shutil.copytree(SCENARIOS / "winhttp-downloader", folder, ignore=shutil.ignore_patterns("build"))
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    table = "".join(f"{name} = {value}\n" for name, value in ISSUE_LIMITS.items())
    (folder / "scenario.toml").write_text(text.replace("[limits]\ntimeout = 30\n", "[limits]\n" + table))
    plan = load_scenario(folder)
    for name, value in ISSUE_LIMITS.items():
        assert getattr(plan.limits, name) == LIMIT_FLAGS[name](value), name
    # a flag wins over the scenario's key
    plan = load_scenario(folder, limit_overrides={"max_stages": 9, "timeout": None})
    assert plan.limits.max_stages == 9 and plan.limits.timeout == 2.5


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    outdir = tmp_path / "out"
    rc = main(["run", *argv, "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err, err
    return json.loads((outdir / "report.json").read_text(encoding="utf-8"))


LIMIT_CASES: list[Any] = [
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
]


def _case_id(case: Any) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])


@pytest.mark.parametrize(("limit", "argv", "detail"), LIMIT_CASES, ids=[_case_id(c) for c in LIMIT_CASES])
def test_limit_fires_and_names_itself(
    limit: str, argv: list[str], detail: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _run(tmp_path, capsys, *argv)
    assert report["outcome"] == {"status": "limit", "detail": detail, "limit": limit}


def test_limits_table_in_docs_lists_every_limit() -> None:
    """docs/containment.md has a row per limit naming its flag."""
    text = (REPO / "docs" / "containment.md").read_text(encoding="utf-8")
    for name in ISSUE_LIMITS:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"docs/containment.md has no row for {name}"
        assert f"`--{name.replace('_', '-')}`" in row, row
