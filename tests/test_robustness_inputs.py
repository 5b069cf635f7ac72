"""Every hostile input is answered: exit 2 and one line, or a report whose outcome names the
cause; never a traceback (in the console or in report.json). One test per class bench/fuzz.py
and issue 14 found. The output folder is trusted: locked, emptied first, written atomically,
and I/O errors name the path.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import E_BAD_INPUT, E_ERROR, main
from emulator.limits import MAX_BODY_FILE_SIZE, MAX_DRAWN_NODES, MAX_INPUT_NESTING

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "bins" / "hello.dll"
HELLO32 = REPO / "tests" / "bins" / "hello32.dll"
WINHTTP = REPO / "scenarios" / "winhttp-downloader"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def _scenario(tmp_path: Path, edit: str, replacement: str) -> Path:
    folder = tmp_path / "scenario"
    shutil.copytree(WINHTTP, folder, ignore=shutil.ignore_patterns("__pycache__", "build"))
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    assert edit in text
    (folder / "scenario.toml").write_text(text.replace(edit, replacement), encoding="utf-8")
    return folder


# ---- scenario.toml --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "edit", "replacement", "said"),
    [
        ("deep array", "[limits]", "x = " + "[" * 5000 + "]" * 5000 + "\n[limits]", "nested deeper"),
        (
            "deep inline table",
            "[limits]",
            "[expect.q]\nv = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n[limits]",
            "nested",
        ),
        (
            "nested past the limit",
            "[limits]",
            "[expect.q]\nv = " + "[" * (MAX_INPUT_NESTING + 5) + "]" * (MAX_INPUT_NESTING + 5) + "\n[limits]",
            f"nested deeper than {MAX_INPUT_NESTING}",
        ),
        ("timeout inf", "timeout = 30", "timeout = inf", "limits.timeout: inf is not a finite number"),
        ("timeout nan", "timeout = 30", "timeout = nan", "limits.timeout: nan is not a finite number"),
        ("start_time -inf", "seed = 1", "seed = 1\nstart_time = -inf", "start_time: -inf is not a finite number"),
        ("option nan", 'name = "cdn"', 'name = "cdn"\nratio = nan', "ratio: nan is not a finite number"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_hostile_scenario_toml_is_one_line(
    name: str, edit: str, replacement: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _scenario(tmp_path, edit, replacement)
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT, err
    assert said in err, err
    assert not (tmp_path / "out").exists()


def test_huge_body_file_refused_by_size_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _scenario(tmp_path, 'body_file = "payload/sc.bin"', 'body_file = "payload/huge.bin"')
    with (folder / "payload" / "huge.bin").open("wb") as handle:  # sparse: no disk, no memory
        handle.truncate(1 << 30)
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q", "--allow-unverified"])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT
    assert f"larger than the {MAX_BODY_FILE_SIZE}-byte limit" in err and "huge.bin" in err, err


def test_timeout_inf_flag_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", str(HELLO), "--timeout", "inf", "-o", str(tmp_path / "out")])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT and "--timeout" in err and "finite" in err, err


def test_huge_mapped_file_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(1 << 30)
    rc = main(["run", str(HELLO), "--file", f"C:\\big.bin={big}", "-o", str(tmp_path / "out")])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT and "larger than the" in err, err


# ---- contradictory PE headers: a named outcome, one line, no traceback in report.json ---------


def _patched(source: Path, tmp_path: Path, name: str, patch: tuple[int, str, int]) -> Path:
    data = bytearray(source.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    offset, fmt, value = patch
    struct.pack_into(fmt, data, pe + offset, value)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("source", "patch"),
    [
        (HELLO32, (4, "<H", 0x8664)),  # PE32 optional header, AMD64 machine
        (HELLO, (4, "<H", 0x14C)),  # PE32+ optional header, i386 machine
        (HELLO, (24 + 60, "<I", 0x7FFFFFFF)),  # SizeOfHeaders far past the file
    ],
    ids=["pe32-amd64", "pe32plus-i386", "huge-sizeofheaders"],
)
def test_contradictory_pe_headers_end_without_traceback(
    source: Path, patch: tuple[int, str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = _patched(source, tmp_path, "bad.dll", patch)
    outdir = tmp_path / "out"
    rc = main(["run", str(sample), "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == E_BAD_INPUT:
        assert err.count("\n") == 1
        return
    assert rc == 0, err
    text = (outdir / "report.json").read_text(encoding="utf-8")
    assert "Traceback" not in text and 'File "' not in text
    report = json.loads(text)
    assert report["outcome"]["status"] in ("error", "fault"), report["outcome"]
    assert "\n" not in report["outcome"]["detail"]
    for run in report["runs"]:
        assert "\n" not in (run.get("error_detail") or "")


# ---- render: a hostile report.json ------------------------------------------------------------


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real report.json of this schema (hello.dll's replay), to mutate."""
    from emulator.plan import ReplayPlan
    from emulator.replay import replay_target

    out = tmp_path_factory.mktemp("base") / "out"
    plan = ReplayPlan(name="hello", target_path=str(HELLO), emu_path="C:\\hello.dll")
    result = replay_target(plan, out, isolate=False)
    return json.loads(Path(result.report_path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _with_graph(report: dict[str, Any], graph: Any) -> str:
    return json.dumps({**report, "graph": graph})


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda r: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (lambda r: _with_graph(r, None).replace('"graph": null', '"graph": ' + "[" * 5000 + "]" * 5000), "nested"),
        (lambda r: _with_graph(r, []), "not a chainreplay report: graph"),
        (lambda r: "[1, 2]", "not a chainreplay report"),
        (lambda r: _with_graph(r, {"nodes": 5, "edges": "x"}), "not a chainreplay report: graph"),
        (lambda r: _with_graph(r, {"nodes": [{"id": 1}], "edges": [{"source": 1}]}), "not a chainreplay report"),
        (lambda r: _with_graph(r, {"nodes": [], "edges": [], "x": float("nan")}), "not a chainreplay report"),
        (lambda r: json.dumps({**r, "schema": "chainreplay/report/999"}), "this chainreplay reads"),
        (lambda r: "\udcff", "not JSON"),
    ],
    ids=["deep-list", "deep-graph", "graph-list", "top-list", "bad-nodes", "edge-no-target", "nan", "schema", "utf8"],
)
def test_render_hostile_report_is_one_line(
    make: Any, said: str, real_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(make(real_report).encode("utf-8", "surrogateescape"))
    rc = main(["render", str(path), "-o", str(tmp_path / "draw")])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT and said in err, err


def test_render_refuses_a_graph_too_large_to_draw(
    real_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = [{"id": f"file:c:\\f{i}", "kind": "file", "label": f"f{i}"} for i in range(MAX_DRAWN_NODES + 1)]
    path = tmp_path / "report.json"
    path.write_text(_with_graph(real_report, {**real_report["graph"], "nodes": nodes, "edges": []}), encoding="utf-8")
    rc = main(["render", str(path), "-o", str(tmp_path / "draw")])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT and f"more than the {MAX_DRAWN_NODES} drawn" in err, err


def test_render_huge_labels_are_cut_not_a_hang(
    real_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/fuzz.py found it: a 100,000-character label kept matplotlib laying out text for
    minutes. Strings are cut to MAX_RENDERED_STRING before drawing."""
    import time

    graph = real_report["graph"]
    huge = "x" * 100_000
    nodes = [{**n, "label": huge} for n in graph["nodes"]]
    path = tmp_path / "report.json"
    path.write_text(_with_graph(real_report, {**graph, "nodes": nodes}), encoding="utf-8")
    began = time.monotonic()
    rc = main(["render", str(path), "-o", str(tmp_path / "draw")])
    assert rc == 0, capsys.readouterr().err
    assert time.monotonic() - began < 60
    assert (tmp_path / "draw" / "stage_graph.png").is_file()


# ---- OUTDIR you can trust ---------------------------------------------------------------------


def test_outdir_not_ours_is_refused_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "mine"
    outdir.mkdir()
    (outdir / "thesis.txt").write_text("precious", encoding="utf-8")
    rc = main(["run", str(HELLO), "-o", str(outdir), "-q"])
    err = _one_line_error(capsys)
    assert rc == E_BAD_INPUT and "--force" in err, err
    assert (outdir / "thesis.txt").read_text(encoding="utf-8") == "precious"


def test_earlier_run_leftovers_are_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "out"
    assert main(["run", str(HELLO), "--export", "Greet", "--arg", "str:a", "--arg", "1", "-o", str(outdir), "-q"]) == 0
    (outdir / "dropped" / "stale-from-an-old-version").write_bytes(b"old")
    (outdir / "trace.old").write_bytes(b"old")
    assert main(["run", str(HELLO), "-o", str(outdir), "-q"]) == 0, capsys.readouterr().err
    assert not (outdir / "trace.old").exists()
    assert not (outdir / "dropped").exists()  # this run dropped nothing
    assert not list(outdir.glob(".*.partial")) and not (outdir / ".matplotlib").exists()
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["dropped"] == []


def test_force_replaces_a_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "mine"
    outdir.mkdir()
    (outdir / "junk.txt").write_text("x", encoding="utf-8")
    assert main(["run", str(HELLO), "-o", str(outdir), "-q", "--force"]) == 0, capsys.readouterr().err
    assert not (outdir / "junk.txt").exists() and (outdir / "report.json").is_file()


def test_io_error_names_the_path(tmp_path: Path) -> None:
    """A file-size limit makes every write past 1 KiB fail (EFBIG, as ENOSPC would): one line
    naming the file, exit 1, no traceback, no half-written report.json."""
    outdir = tmp_path / "out"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "from emulator.cli import main\n"
        f"sys.exit(main(['run', {str(HELLO)!r}, '-o', {str(outdir)!r}, '-q']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == E_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert str(outdir) in proc.stderr and "File too large" in proc.stderr, proc.stderr
    assert not (outdir / "report.json").exists()


def _without_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without_key(v, key) for v in value]
    return value


def test_a_report_of_the_schema_this_one_only_added_to_still_renders(
    real_report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Schema 4 only added optional fields (stages' origin and lineage `pieces`) and a value
    (`via: apc`): a schema-3 report.json, as chainreplay wrote it before, renders and reads as
    schema 4; an older or unknown schema is refused in one line naming what this one reads."""
    from emulator.report import SCHEMA, Report

    old = _without_key({**real_report, "schema": "chainreplay/report/3"}, "pieces")
    assert "pieces" not in json.dumps(old)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    assert Report.from_file(path).schema_ == SCHEMA
    assert main(["render", str(path), "-o", str(tmp_path / "draw")]) == 0
    assert (tmp_path / "draw" / "stage_graph.svg").is_file()
    path.write_text(json.dumps({**old, "schema": "chainreplay/report/2"}), encoding="utf-8")
    capsys.readouterr()
    assert main(["render", str(path), "-o", str(tmp_path / "draw2")]) == E_BAD_INPUT
    err = _one_line_error(capsys)
    assert "chainreplay/report/3" in err and "chainreplay/report/4" in err, err
