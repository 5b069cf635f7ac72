"""Inputs too large to read whole: each is refused before it is read, exit 2, one line naming the
file, its size and the limit (and the flag that raises it, where there is one).

The large files are sparse (``truncate``): nothing is written, so each test stays fast; a test
that read one would take seconds and gigabytes, and the time bound fails it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import emulator.cli.files as files
import emulator.trace as trace_module
from emulator.cli import E_BAD_INPUT, main
from emulator.limits import (
    MAX_BASELINE_FILE_SIZE,
    MAX_BLOBS_SIZE,
    MAX_SCENARIO_FILE_SIZE,
    MAX_TRACE_FILE_SIZE,
)

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "bins" / "hello.dll"
# A refusal reads nothing: well under what reading a gigabyte would take.
REFUSED_WITHIN_SECONDS = 5.0


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hello.dll's output folder (trace.jsonl, blobs/, report.json), to copy and break."""
    from emulator.plan import ReplayPlan
    from emulator.replay import replay_target

    out = tmp_path_factory.mktemp("hello") / "out"
    replay_target(ReplayPlan(name="hello", target_path=str(HELLO), emu_path="C:\\hello.dll"), out, isolate=False)
    return out


def _copy(replayed: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(replayed, out)
    return out


def _sparse(path: Path, size: int) -> Path:
    with path.open("r+b" if path.exists() else "wb") as handle:
        handle.truncate(size)
    return path


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    began = time.monotonic()
    rc = main(argv)
    took = time.monotonic() - began
    err = capsys.readouterr().err
    assert rc == E_BAD_INPUT, (rc, err)
    assert err.count("\n") == 1 and err.startswith("chainreplay: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert took < REFUSED_WITHIN_SECONDS, f"refused after {took:.1f} s: the file was read"
    return err


# ---- analyse: the trace and its blobs ---------------------------------------------------------


def test_analyse_refuses_a_trace_larger_than_the_limit_unread(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(replayed, tmp_path)
    size = MAX_TRACE_FILE_SIZE + 1
    _sparse(out / "trace.jsonl", size)
    _refused(
        ["analyse", str(out), "-q"],
        capsys,
        str(out / "trace.jsonl"),
        f"file is {size} bytes",
        f"larger than the {MAX_TRACE_FILE_SIZE}-byte limit",
        "raise it with --max-trace-size",
    )


def test_analyse_max_trace_size_lowers_and_raises_the_limit(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(replayed, tmp_path)
    size = (out / "trace.jsonl").stat().st_size
    _refused(["analyse", str(out), "-q", "--max-trace-size", str(size - 1)], capsys, f"{size - 1}-byte limit")
    assert main(["analyse", str(out), "-q", "--max-trace-size", str(size)]) == 0, capsys.readouterr().err


def test_analyse_refuses_blobs_larger_than_the_limit_together_unread(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(replayed, tmp_path)
    blobs = sorted((out / "blobs").iterdir())
    assert blobs, "the replay cites no blob"
    _sparse(blobs[0], MAX_BLOBS_SIZE + 1)
    _refused(
        ["analyse", str(out), "-q"],
        capsys,
        str(out / "blobs"),
        f"larger than the {MAX_BLOBS_SIZE}-byte limit",
        "raise it with --max-blobs-size",
    )


def test_analyse_max_blobs_size_counts_every_blob(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(replayed, tmp_path)
    total = sum(p.stat().st_size for p in (out / "blobs").iterdir())
    _refused(["analyse", str(out), "-q", "--max-blobs-size", str(total - 1)], capsys, f"are {total} bytes together")
    assert main(["analyse", str(out), "-q", "--max-blobs-size", str(total)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "1e9", "many"])
def test_analyse_size_flags_refuse_what_is_not_a_byte_count(
    value: str, replayed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["analyse", str(replayed), f"--max-trace-size={value}"])
    err = capsys.readouterr().err
    assert rc == E_BAD_INPUT and err.count("\n") == 1, (rc, err)
    assert "--max-trace-size" in err and "expected a number of bytes" in err, err


def test_analyse_refuses_a_trace_line_longer_than_the_limit(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line is read at most up to the limit (a file of one 2 GB line is never one string)."""
    monkeypatch.setattr(trace_module, "MAX_TRACE_LINE_SIZE", 4096)
    out = _copy(replayed, tmp_path)
    lines = (out / "trace.jsonl").read_text(encoding="ascii").splitlines(keepends=True)
    lines.insert(1, '{"pad": "' + "x" * 5000 + '"}\n')
    (out / "trace.jsonl").write_text("".join(lines), encoding="ascii")
    _refused(["analyse", str(out), "-q"], capsys, "trace.jsonl: line 2 is longer than the 4096-byte limit")


# ---- check: a baseline; run: a scenario.toml --------------------------------------------------


def test_check_refuses_a_baseline_larger_than_the_limit_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sparse(tmp_path / "baseline.json", MAX_BASELINE_FILE_SIZE + 1)
    outdir = tmp_path / "o"
    _refused(
        ["check", str(REPO / "scenarios" / "3cx"), "--baseline", str(path), "-o", str(outdir), "-q"],
        capsys,
        str(path),
        f"file is {MAX_BASELINE_FILE_SIZE + 1} bytes",
        f"larger than the {MAX_BASELINE_FILE_SIZE}-byte limit",
    )
    assert not outdir.exists()


def test_run_refuses_a_scenario_toml_larger_than_the_limit_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scen"
    folder.mkdir()
    size = 3 * MAX_SCENARIO_FILE_SIZE
    _sparse(folder / "scenario.toml", size)
    _refused(
        ["run", str(folder), "-o", str(tmp_path / "o"), "-q"],
        capsys,
        "scenario.toml",
        f"file is {size} bytes",
        f"larger than the {MAX_SCENARIO_FILE_SIZE}-byte limit",
    )


def test_analyse_ends_a_trace_read_at_its_timeout(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trace under the size limits can still take long to read (2 GiB of lines to validate):
    the read is cut at --timeout plus the grace, one line, the folder left as it was."""
    out = _copy(replayed, tmp_path)
    before = (out / "report.json").read_bytes()

    def slow_read(*args: object, **kwargs: object) -> None:
        time.sleep(30)
        raise AssertionError("the read was not cut")

    monkeypatch.setattr(trace_module, "read_trace", slow_read)
    monkeypatch.setattr(files, "WATCHDOG_GRACE_SECONDS", 1.0)
    _refused(
        ["analyse", str(out), "-q", "--timeout", "1"],
        capsys,
        str(out / "trace.jsonl"),
        "not read within --timeout 1 s plus 1 s of grace (raise it with --timeout)",
    )
    assert (out / "report.json").read_bytes() == before


# ---- run --yara: the user's rule files ----------------------------------------------------------


def test_yara_rules_larger_than_the_limit_are_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.limits import MAX_YARA_RULES_SIZE

    rules = tmp_path / "rules"
    rules.mkdir()
    rule = 'rule a { strings: $a = "hello" condition: $a }\n'
    (rules / "a.yar").write_text(rule, encoding="utf-8")
    _sparse(rules / "b.yar", MAX_YARA_RULES_SIZE)
    outdir = tmp_path / "o"
    _refused(
        ["run", str(HELLO), "--yara", str(rules), "-o", str(outdir), "-q"],
        capsys,
        f"--yara {rules}: the 2 rule files are {MAX_YARA_RULES_SIZE + len(rule)} bytes",
        f"larger than the {MAX_YARA_RULES_SIZE}-byte limit",
    )
    assert not outdir.exists()


def test_yara_rules_that_are_a_fifo_are_named_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "rules.yar"
    os.mkfifo(fifo)
    _refused(
        ["run", str(HELLO), "--yara", str(fifo), "-o", str(tmp_path / "o"), "-q"],
        capsys,
        f"--yara {fifo}: a named pipe (FIFO), not a regular file",
    )
