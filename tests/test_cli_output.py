"""The command line's output options: --json only JSON, -q only errors, --color, -v, --narrate,
render of an OUTDIR, exit codes in --help, 130 on interrupt. Real in-process replays."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_json_prints_only_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ROOT / "scenarios/winhttp-downloader"), "-o", str(tmp_path), "--in-process", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)  # the whole of stdout is the report
    assert report["outcome"]["status"] == "completed"
    assert (tmp_path / "report.html").is_file()


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ROOT / "scenarios/benign-dll"), "-o", str(tmp_path), "--in-process", "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and out == "" and err == ""


def test_narrate_colour_verbose_and_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    code = main(
        [
            "run",
            str(ROOT / "scenarios/winhttp-downloader"),
            "-o",
            str(tmp_path),
            "--in-process",
            "--narrate",
            "--pace",
            "0",
            "--color",
            "always",
            "-v",
            "-d",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert ANSI.search(out)
    plain = ANSI.sub("", out)
    # The story first, then the summary, then the API calls (-v).
    assert plain.index("Stage s0: downloader.exe") < plain.index("Stage s1: shellcode@") < plain.rindex("2 stages")
    assert "fetches https://cdn.example-updates.net/payload/sc.bin" in plain
    assert "kernel32.GetEnvironmentVariable" in plain or "winhttp.WinHttpOpen" in plain
    assert "narration.md" in plain and (tmp_path / "narration.md").is_file()
    # -d: chainreplay's own log lines with timings, no third-party noise.
    names = {r.name for r in caplog.records if r.levelname == "DEBUG"}
    assert {"emulator.replay", "emulator.render"} <= names
    assert all(name.startswith(("emulator", "speakeasy")) for name in names), names


def test_color_never_and_render_outdir(
    scenario_outdir: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "drawn"
    code = main(["render", str(scenario_outdir("3cx")), "-o", str(out_dir), "--color", "never"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not ANSI.search(out) and "report.html" in out
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "__tutmc=6f1c2d3e" in html  # bodies found beside the report.json
    assert (out_dir / "stage_graph.png").stat().st_size > 10_000


def test_render_refuses_a_non_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "report.json"
    bad.write_text('{"schema": 1}', encoding="utf-8")
    assert main(["render", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainreplay: error: ") and err.count("\n") == 1 and "schema" in err


def test_bad_pace_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x", "--pace", "soon"]) == 2
    assert "--pace" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "130" in out and "exit codes" in out and "--color" in out and "--narrate" in out


def test_interrupt_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import emulator.replay

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(emulator.replay, "replay_target", interrupted)
    assert main(["run", str(ROOT / "scenarios/benign-dll"), "-o", str(tmp_path)]) == 130
    assert "interrupted" in capsys.readouterr().err


def _own_command_line(prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``chainreplay ARGS`` as its own process (``main()`` without argv), after ``prelude``."""
    code = f"import sys\n{prelude}\nfrom emulator.cli import main\nsys.exit(main())\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_the_process_ends_as_the_interpreter_would_end_it() -> None:
    """The command line ends its own process without the interpreter's tear-down: the exit
    handlers still run, after the output, every byte of which arrives; the exit code is kept."""
    handler_prelude = "import atexit\natexit.register(lambda: print('exit handler ran'))"
    done = _own_command_line(handler_prelude, "schema")
    assert done.returncode == 0, done.stderr
    schema, handler = done.stdout.rsplit("\n", 2)[:2]
    assert json.loads(schema)["title"] and handler == "exit handler ran"
    bad = _own_command_line(handler_prelude, "render", "/nonexistent")
    assert bad.returncode == 2 and bad.stdout == "exit handler ran\n"
    assert bad.stderr.startswith("chainreplay: error:") and len(bad.stderr.splitlines()) == 1


def test_a_thread_still_running_at_the_end_is_waited_for() -> None:
    prelude = (  # the thread prints once the main thread is over: after the command's output
        "import threading\n"
        "threading.Thread(target=lambda: (threading.main_thread().join(), print('thread done'))).start()"
    )
    done = _own_command_line(prelude, "schema")
    assert done.returncode == 0 and done.stdout.endswith("thread done\n")


def test_a_quiet_run_imports_nothing_to_print_with(tmp_path: Path) -> None:
    """-q prints nothing, so rich and the summary renderer are never imported (~50 ms of CPU
    after the outputs are written); the default run imports them while the replay emulates."""
    prelude = (
        "import atexit\natexit.register(lambda: print('rich' if 'emulator.render.console' in sys.modules else '-'))"
    )
    scenario = str(ROOT / "scenarios/benign-dll")
    quiet = _own_command_line(prelude, "run", scenario, "-o", str(tmp_path / "quiet"), "-q")
    assert quiet.returncode == 0 and quiet.stdout == "-\n", quiet.stderr
    shown = _own_command_line(prelude, "run", scenario, "-o", str(tmp_path / "shown"), "--color", "never")
    assert shown.returncode == 0 and shown.stdout.endswith("rich\n") and "completed" in shown.stdout, shown.stderr
