"""cmd's ``&&``, ``||``, ``&`` and groups, run by the commands' exit codes (lolbins.cmd_chain,
cmd_steps; children.py runs one command at a time and records each child's exit code).

The scenarios cmd-chain (x64) and cmd-chain-x86 drop one program (src/helper.c) and run
``cmd.exe /c H fail && H skipped || H recover || H retry & (whoami && H last) || H never``: fail
exits 3 (ExitProcess), recover returns 4 from its entry point, last ends itself with
TerminateProcess; each run writes C:\\Users\\Public\\chain_<word>.txt. Before, every command ran
whatever the exit codes (skipped and never too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulator.backends.speakeasy import lolbins

Report = dict[str, Any]


def _run(line: str, codes: dict[str, int]) -> tuple[list[str], int]:
    """What cmd runs of ``line`` when each command (its text) exits with ``codes`` (else 0):
    ``run X`` and ``skip X,Y after OP CODE`` in order, and the line's exit code."""
    node = lolbins.cmd_chain("cmd.exe", f"cmd.exe /c {line}", "x64", lambda text: text)
    assert node is not None
    steps = lolbins.cmd_steps(node)
    seen: list[str] = []
    try:
        step = next(steps)
        while True:
            if isinstance(step, lolbins.CmdSkipped):
                seen.append(f"skip {','.join(step.commands)} after {step.op} {step.code}")
                step = steps.send(None)
            else:
                seen.append(f"run {step.text}")
                step = steps.send(codes.get(step.text, 0))
    except StopIteration as done:
        return seen, int(done.value)


def test_and_runs_after_success_or_after_failure() -> None:
    assert _run("a && b || c", {"a": 3}) == (["run a", "skip b after && 3", "run c"], 0)
    assert _run("a && b || c", {}) == (["run a", "run b", "skip c after || 0"], 0)
    assert _run("a && b || c", {"b": 2, "c": 5}) == (["run a", "run b", "run c"], 5)
    assert _run("a & b", {"a": 1}) == (["run a", "run b"], 0)
    assert _run("a && b", {"a": 7}) == (["run a", "skip b after && 7"], 7)


def test_cmd_precedence_and_groups() -> None:
    # && binds tighter than ||, || than &: a || (b && c); (a || b) & c
    assert _run("a || b && c", {}) == (["run a", "skip b,c after || 0"], 0)
    assert _run("a || b & c", {}) == (["run a", "skip b after || 0", "run c"], 0)
    assert _run("(a || b) && c", {"a": 1, "b": 2}) == (["run a", "run b", "skip c after && 2"], 2)
    assert _run("a & (b && c) || d", {"b": 1}) == (["run a", "run b", "skip c after && 1", "run d"], 0)
    # a pipe runs both sides
    assert _run("a | b && c", {}) == (["run a", "run b", "run c"], 0)


def test_quotes_and_stray_operators() -> None:
    assert _run('"x && y.exe" -q || z', {'"x && y.exe" -q': 1}) == (['run "x && y.exe" -q', "run z"], 0)
    assert _run("a && ", {}) == (["run a"], 0)
    assert _run("&& a", {}) == (["run a"], 0)
    assert _run("x ( y )", {}) == (["run x ( y )"], 0)  # a ( inside a command is no group
    assert lolbins.cmd_chain("cmd.exe", "cmd.exe /c", "x64", lambda t: t) is None
    assert lolbins.cmd_chain("rundll32.exe", "rundll32 a.dll,B", "x64", lambda t: t) is None


@pytest.mark.parametrize("name", ["cmd-chain", "cmd-chain-x86"])
def test_a_cmd_one_liner_runs_each_command_as_its_condition_says(
    name: str, scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    assert report["outcome"]["status"] == "completed"
    written = [f["path"].rsplit("\\", 1)[-1] for f in report["files"] if "chain_" in f["path"]]
    # In the wait for cmd: fail exited 3 (ExitProcess): skipped (&&) did not run, recover (||)
    # did; recover returned 4 from its entry point: retry (||) ran; it exited 0: nope (||) did
    # not; whoami (not emulated) counts as 0: last ran; it ended itself with TerminateProcess
    # (self, 5): never (&&) did not, and GetExitCodeProcess(cmd) answered 5 (chain_waited).
    # After the dropper: fail again, skipped not, late.
    assert sorted(set(written)) == [
        "chain_fail.txt",
        "chain_last.txt",
        "chain_late.txt",
        "chain_recover.txt",
        "chain_retry.txt",
        "chain_waited.txt",
    ]
    notes = [n["detail"] for n in report["notes"] if n["what"] == "cmd_command_skipped"]
    expected = [("skipped", "&&", "exit code 3, not 0"), ("nope", "||", "exit code 0"), ("never", "&&", "exit code 5")]
    expected.append(expected[0])
    assert len(notes) == len(expected)
    for note, (word, op, code) in zip(notes, expected, strict=True):
        assert f"helper.exe {word}`" in note and f"follows {op} " in note and code in note
    helpers = [s for s in report["stages"] if s["name"] == "helper.exe"]
    assert len(helpers) == 6 and all(s["via"] == "process" for s in helpers)
    # the waited line's commands ran inside the wait, before the dropper went on
    waited = next(c["seq"] for c in report["api_calls"] if c["api"] == "kernel32.GetExitCodeProcess")
    assert [s for s in helpers if s["seq_range"][0] < waited] == helpers[:4]
