"""More bad inputs (session 28): files that are not regular files, a SHA256SUMS that is not
text, a baseline of the wrong shape. Each is exit 2 and one line naming the file and the cause;
never a traceback, an internal error or a wait that no limit ends.

A named pipe is the hostile case: reading one waits for a writer forever, and neither analyse's
--timeout nor SIGTERM ended that wait (the process sat in open(2)). Those cases run the command
line in a child with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import E_BAD_INPUT, main

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "bins" / "hello.dll"
SCENARIO = """\
[scenario]
name = "more-bad-inputs"

[target]
path = "hello.dll"
emu_path = 'C:\\Users\\analyst\\Desktop\\hello.dll'
"""
FIFO = "a named pipe (FIFO), not a regular file"


def _cli_child(*argv: str | Path, timeout: float = 90) -> tuple[int, str]:
    """``chainreplay ARGV`` in a fresh interpreter: its exit code and stderr (a hang fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "emulator", *map(str, argv)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def _one_line(rc: int, err: str, *needles: str) -> None:
    assert rc == E_BAD_INPUT, (rc, err)
    assert err.count("\n") == 1 and err.startswith("chainreplay: error: "), err
    for needle in needles:
        assert needle in err, err


def _scenario(tmp_path: Path) -> Path:
    folder = tmp_path / "scen"
    folder.mkdir()
    shutil.copy(HELLO, folder / "hello.dll")
    (folder / "scenario.toml").write_text(SCENARIO, encoding="utf-8")
    digest = hashlib.sha256(HELLO.read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  hello.dll\n", encoding="utf-8")
    return folder


def _fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


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


# ---- a path that is not a regular file: named by what it is, never read ---------------------


def test_analyse_with_a_blob_that_is_a_fifo_ends_at_once(replayed: Path, tmp_path: Path) -> None:
    """The hang: a FIFO among the blobs kept analyse in open(2) past --timeout and SIGTERM."""
    out = _copy(replayed, tmp_path)
    blob = sorted((out / "blobs").iterdir())[0]
    _fifo(blob)
    rc, err = _cli_child("analyse", out, "-q", "--timeout", "5", timeout=60)
    _one_line(rc, err, blob.name, "blob cited by the trace cannot be read", FIFO)


def test_analyse_with_a_trace_that_is_a_fifo(replayed: Path, tmp_path: Path) -> None:
    out = _copy(replayed, tmp_path)
    _fifo(out / "trace.jsonl")
    rc, err = _cli_child("analyse", out, "-q", timeout=60)
    _one_line(rc, err, "trace.jsonl", FIFO)


SPECIAL_FILES: list[tuple[str, Any, str]] = [
    ("fifo", lambda p: _fifo(p), FIFO),
    ("folder", lambda p: p.mkdir(), "a folder, not a regular file"),
    ("dev-zero", lambda p: p.symlink_to("/dev/zero"), "a character device, not a regular file"),
    ("symlink-loop", lambda p: p.symlink_to(p.name), "a loop of symbolic links"),
]
# run and render take a folder by design (a scenario, an output folder): not a bad file there.
SPECIAL_CASES = [
    pytest.param(command, make, said, id=f"{command.split()[0]}-{label}")
    for command in ("run", "render", "check --baseline", "analyse")
    for label, make, said in SPECIAL_FILES
    if not (label == "folder" and command in ("run", "render"))
]


@pytest.mark.parametrize(("command", "make", "said"), SPECIAL_CASES)
def test_a_special_file_is_named_by_what_it_is(
    command: str, make: Any, said: str, replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every input a command reads, as a FIFO, a folder, a device or a symlink loop: one line
    saying what it is (it used to be "no such file" for all four). The FIFO is opened without
    blocking, so these run in this process."""
    if command == "run":
        path = tmp_path / "sample.dll"
        argv = ["run", str(path), "-o", str(tmp_path / "o"), "-q"]
    elif command == "render":
        path = tmp_path / "report.json"
        argv = ["render", str(path), "-q"]
    elif command == "check --baseline":
        path = tmp_path / "baseline.json"
        argv = ["check", str(_scenario(tmp_path)), "--baseline", str(path), "-o", str(tmp_path / "o"), "-q"]
    else:
        out = _copy(replayed, tmp_path)
        path = out / "trace.jsonl"
        path.unlink()
        argv = ["analyse", str(out), "-q"]
    make(path)
    rc = main(argv)
    _one_line(rc, capsys.readouterr().err, str(path), said)


@pytest.mark.parametrize("name", ["scenario.toml", "hello.dll", "SHA256SUMS"])
def test_a_scenario_file_that_is_a_fifo_is_named(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scenario.toml as a FIFO was "not a scenario folder (no scenario.toml)"; the sample "not
    found"; SHA256SUMS "missing"."""
    folder = _scenario(tmp_path)
    _fifo(folder / name)
    rc = main(["run", str(folder), "-o", str(tmp_path / "o"), "-q"])
    _one_line(rc, capsys.readouterr().err, name, FIFO)


def test_a_mapped_file_that_is_a_fifo_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = _fifo(tmp_path / "pipe")
    rc = main(["run", str(HELLO), "--file", f"C:\\x.bin={fifo}", "-o", str(tmp_path / "o"), "-q"])
    _one_line(rc, capsys.readouterr().err, "--file", FIFO)


# ---- SHA256SUMS that is not text -----------------------------------------------------------


def test_a_manifest_that_is_not_utf8_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was an internal error (UnicodeDecodeError, exit 1)."""
    folder = _scenario(tmp_path)
    (folder / "SHA256SUMS").write_bytes(b"\xff\xfe\x00 not a manifest\n")
    rc = main(["run", str(folder), "-o", str(tmp_path / "o"), "-q"])
    _one_line(rc, capsys.readouterr().err, "SHA256SUMS", "not UTF-8")


# ---- a baseline of the wrong shape: exit 2 before anything is replayed -----------------------


def _baseline(edit: Any) -> dict[str, Any]:
    baseline = json.loads((REPO / "scenarios" / "3cx" / "baseline.json").read_text(encoding="utf-8"))
    edit(baseline)
    return baseline


def _set(path: str, value: Any) -> Any:
    def edit(baseline: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = baseline
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (_set("stages.0.apis", 5), "stages[0].apis: expected a list of strings"),
        (_set("stages.1.apis", [["nested"]]), "stages[1].apis: expected a list of strings"),
        (_set("stages.0.network", "x"), "stages[0].network: expected a list of tables"),
        (_set("stages.0.files", [5]), "stages[0].files: expected a list of tables"),
        (_set("stages.2.network.0.response", 5), "stages[2].network[0].response: expected a table"),
        (_set("graph", [{"a": 1}]), "graph: expected a list of strings"),
        (_set("dropped", "x"), "dropped: expected a list of tables"),
        (_set("containment", []), "containment: expected a table"),
        (None, "not valid JSON"),  # nested 100,000 deep: RecursionError
    ],
    ids=["apis", "apis-nested", "network-str", "files-int", "response-int", "graph-dict", "dropped", "cont", "deep"],
)
def test_a_baseline_of_the_wrong_shape_is_one_line(
    edit: Any, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong type deep in the baseline was an internal error (TypeError, AttributeError,
    RecursionError; exit 1) after the replay; now it is refused by load_baseline, exit 2,
    naming the file and the place, before anything is replayed."""
    path = tmp_path / "baseline.json"
    if edit is None:
        path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    else:
        path.write_text(json.dumps(_baseline(edit)), encoding="utf-8")
    outdir = tmp_path / "o"
    rc = main(["check", str(REPO / "scenarios" / "3cx"), "--baseline", str(path), "-o", str(outdir), "-q"])
    _one_line(rc, capsys.readouterr().err, str(path), said)
    assert not outdir.exists()


# ---- an output file named on the command line (--junit, schema -o) --------------------------


@pytest.mark.parametrize("command", ["run", "check", "batch"])
def test_a_junit_path_that_cannot_be_a_file_is_refused_before_replaying(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--junit naming a folder was found only after every replay ran, as a raw
    "[Errno 21] Is a directory" line; now it is a usage error before anything runs."""
    folder = _scenario(tmp_path)
    (tmp_path / "j").mkdir()
    outdir = tmp_path / "o"
    target = ["-o", str(outdir / "x")] if command == "run" else ["-o", str(outdir)]
    extra = ["-j", "1"] if command == "batch" else []
    rc = main([command, str(folder), "--junit", str(tmp_path / "j"), *target, *extra, "-q"])
    _one_line(rc, capsys.readouterr().err, "--junit", "a folder, not a file")
    assert not outdir.exists()


def test_a_junit_file_that_cannot_be_written_is_exit_1_and_the_report_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: "the output could not be written (one line naming the file)" is exit 1; it was
    exit 2, "bad input", with the errno text. The replay's report stays."""
    outdir = tmp_path / "o"
    rc = main(["run", str(_scenario(tmp_path)), "--junit", "/proc/chainreplay-junit.xml", "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert rc == 1, (rc, err)
    assert err.count("\n") == 1 and "cannot write --junit /proc/chainreplay-junit.xml" in err, err
    assert (outdir / "report.json").is_file()


def test_schema_to_a_folder_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["schema", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and f"cannot write -o {tmp_path}" in err, (rc, err)


# ---- analyse --timeout: the bounds of run's --timeout ---------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e300", "604801", "nan", "0", "-1"])
def test_analyse_timeout_out_of_range_is_one_line(
    value: str, replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout inf was an internal error (OverflowError from the deadline timer, exit 1)."""
    out = _copy(replayed, tmp_path)
    rc = main(["analyse", str(out), f"--timeout={value}", "-q"])
    _one_line(rc, capsys.readouterr().err, "--timeout", "up to 604800")


def test_an_os_error_names_its_path_first_on_one_line(tmp_path: Path) -> None:
    """The command line's last resort for an OSError: ``PATH: reason``, the path cut when long,
    never Python's ``[Errno N] reason: 'PATH'``."""
    from emulator.cli.app import MAX_PATH_IN_ERROR, os_error_line

    long_name = tmp_path / ("a" * 300)
    rc, err = _cli_child("run", long_name, "-o", tmp_path / "out", "-q")
    assert rc == E_BAD_INPUT, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Errno" not in lines[0], lines
    assert lines[0].startswith(f"chainreplay: error: {str(tmp_path)[:20]}") and lines[0].endswith("File name too long")
    assert len(lines[0]) < MAX_PATH_IN_ERROR + 80
    assert os_error_line(FileExistsError(17, "File exists", "a\nb", None, "c")) == "a\\u000ab -> c: File exists"
    assert os_error_line(FileNotFoundError(2, "No such file", "C:\\Users\\é.bin")) == "C:\\Users\\é.bin: No such file"
    assert os_error_line(OSError("no path here")) == "no path here"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--seed", "-1"], "argument --seed: -1: out of range"),
        (["--seed", str(1 << 70)], "out of range (0 to 2**64 - 1)"),
        (["--hostname", "a" * 300], "--hostname 'aaaa"),
        (["--user", "tab\there"], "not a valid name (holds '\\t')"),
        (["--screen", "0x0"], "--screen: Input should be greater than or equal to 1"),
        (["--screen", "99999999999x10"], "--screen: Input should be less than or equal to 16384"),
        (["--export", "Greet", "--arg", hex(1 << 64)], "--arg 0x10000000000000000: does not fit in a 64-bit argument"),
    ],
)
def test_guest_values_out_of_range_on_the_command_line_are_one_line_usage_errors(
    tmp_path: Path, flags: list[str], expected: str
) -> None:
    rc, err = _cli_child("run", HELLO, "-o", tmp_path / "out", "-q", *flags)
    _one_line(rc, err, expected)
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("seed = 1", "seed = -5"), "scenario.seed: Input should be greater than or equal to 0"),
        (("seed = 1", 'seed = 1\n[environment]\nhostname = "a/b"'), "environment.hostname: 'a/b': not a valid name"),
        (("seed = 1", "seed = 1\n[environment]\nscreen = [0, 0]"), "environment.screen.0: Input should be greater"),
        (("args = [100]", f"args = [{1 << 65}]"), "target.exports.args: argument 0x20000000000000000 does not fit"),
    ],
)
def test_guest_values_out_of_range_in_a_scenario_name_their_key(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    folder = tmp_path / "benign-dll"
    shutil.copytree(REPO / "scenarios" / "benign-dll", folder)
    toml = folder / "scenario.toml"
    text = toml.read_text(encoding="utf-8")
    assert edit[0] in text
    toml.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    rc, err = _cli_child("run", folder, "-o", tmp_path / "out", "-q")
    _one_line(rc, err, expected)


# ---- a hand-edited trace whose values no replay could record -----------------------------------


def _edit_trace(out: Path, kind: str, edit: Any) -> None:
    """Apply ``edit`` to the first event of type ``kind`` in ``out``'s trace.jsonl."""
    lines = (out / "trace.jsonl").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines[1:], start=1):
        event = json.loads(line)
        if event.get("type") == kind:
            edit(event)
            lines[i] = json.dumps(event, separators=(",", ":"))
            break
    else:
        pytest.fail(f"no {kind} event in the trace")
    (out / "trace.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("kind", "field", "value", "needle"),
    [
        ("api", "pc", -1, "api.pc: Input should be greater than or equal to 0"),
        ("api", "pc", 1 << 64, "api.pc: Input should be less than or equal to"),
        ("api", "seq", "SEQ", "seq"),
        ("stage_start", "base", -4096, "base"),
        ("stage_start", "size", 1 << 70, "size"),
        ("stage_start", "seq", "SEQ", "seq"),
    ],
)
def test_a_trace_with_values_no_replay_records_is_refused_by_analyse(
    tmp_path: Path, kind: str, field: str, value: Any, needle: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(REPO / "tests" / "data" / "frozen" / "3cx", out)  # a real trace with API calls

    def edit(event: dict[str, Any]) -> None:
        event[field] = str(event["seq"]) if value == "SEQ" else value  # "SEQ": the right number, as a string

    _edit_trace(out, kind, edit)
    rc, err = _cli_child("analyse", out, "-q")
    _one_line(rc, err, needle)
