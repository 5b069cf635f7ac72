"""Running the CLI in-process from tests: one result type and runner shared by every test file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import main


class CliResult:
    """Exit code and captured output of one ``chainreplay`` invocation."""

    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    def error_line(self) -> str:
        """The one stderr line of a usage error (asserted to be exactly one, exit code 2)."""
        assert self.rc == 2, (self.rc, self.out, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("chainreplay: error:"), self.err
        return lines[0]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> CliResult:
    """``chainreplay ARGV...`` in this process; never a traceback on either stream."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "Traceback" not in captured.out
    return CliResult(rc, captured.out, captured.err)


def report_without_time(report_path: Path) -> dict[str, object]:
    """A written report.json without its one field that differs between two identical replays."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report.pop("generated_at")
    return report


def assert_same_replay(ours: Path, theirs: Path) -> None:
    """Two output folders hold the same replay: the trace byte for byte, the report but for its time."""
    assert (ours / "trace.jsonl").read_bytes() == (theirs / "trace.jsonl").read_bytes()
    assert report_without_time(ours / "report.json") == report_without_time(theirs / "report.json")


CHECKOUT = Path(__file__).resolve().parent.parent


def python_stdout(script: str, *args: str, timeout: int = 300) -> str:
    """Run ``script`` in a fresh interpreter on this checkout with ``args``; its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=CHECKOUT,
        env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return done.stdout
