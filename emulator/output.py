"""Writes a replay's output folder: the trace and its blobs, then everything derived from them
(report.json, stage bytes, network bodies, dropped files, the rendered files).

Every path written here is derived from a sha256, never from a name the sample chose, so a
sample cannot steer a write outside the folder (``..\\..\\x``, UNC paths, device names). The
folder may hold anything from an earlier run, or something planted: every file is written
fresh (O_CREAT | O_EXCL | O_NOFOLLOW) after whatever sat at its name is removed, so a symbolic
link, a hard link to a file elsewhere or a symlinked sub-folder is replaced, never written through.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from emulator.analysis.pipeline import Analysis, analyse
from emulator.containment import Guard, install, uninstall
from emulator.document import build_report
from emulator.events import NetworkExchange
from emulator.render import prepare as prepare_renderers
from emulator.render import render_files
from emulator.report import Containment, DroppedFile, Report
from emulator.sanitize import for_display
from emulator.trace import BLOB_DIR, TRACE_FILE, Trace, blob_name, trace_lines


def _clear(path: Path) -> None:
    """Remove whatever sits at ``path`` (file, symbolic or hard link, folder) without following it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _real_folder(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(exist_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    _clear(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_blob(folder: Path, name: str, data: bytes, written: set[Path]) -> None:
    path = folder / name
    if path in written:
        return
    if folder not in written:
        _real_folder(folder)
        written.add(folder)
    _write_new(path, data)
    written.add(path)


def write_trace(out: Path, trace: Trace) -> None:
    """``trace.jsonl`` and ``blobs/``: everything the report is derived from."""
    written: set[Path] = set()
    for digest in trace.header.blobs:
        _write_blob(out / BLOB_DIR, blob_name(digest), trace.blobs[digest], written)
    _write_new(out / TRACE_FILE, "".join(trace_lines(trace)).encode("ascii"))


def _dropped_files(out: Path, trace: Trace, written: set[Path]) -> list[DroppedFile]:
    dropped: list[DroppedFile] = []
    for guest_path, digest in sorted(trace.header.dropped.items()):
        data = trace.blobs.get(digest, b"")
        stored = None
        if digest in trace.blobs:
            _write_blob(out / "dropped", digest, data, written)
            stored = f"dropped/{digest}"
        dropped.append(DroppedFile(path=for_display(guest_path), sha256=digest, size=len(data), stored_as=stored))
    return dropped


def _containment(trace: Trace, guard: Guard, render_errors: list[str]) -> Containment:
    recorded = trace.header.containment
    return Containment(
        host_connects_refused=recorded.connects_refused + guard.sockets_blocked,
        host_name_lookups_refused=recorded.lookups_refused + guard.lookups_blocked,
        writes_outside_outdir_refused=recorded.writes_refused + guard.writes_blocked,
        host_processes_refused=recorded.processes_refused + guard.processes_blocked,
        violations=[*recorded.violations, *guard.violations, *render_errors],
        isolation=recorded.isolation,
    )


def write_outputs(out: Path, trace: Trace, analysis: Analysis, guard: Guard, generated_at: str) -> Report:
    """Stage images, network bodies, dropped files, the rendered files and report.json."""
    written: set[Path] = set()
    for stage in analysis.stages:
        if stage.sha256 in trace.blobs:
            _write_blob(out / "stages", f"{stage.sha256}.bin", trace.blobs[stage.sha256], written)
    for event in trace.events:
        if isinstance(event, NetworkExchange):
            for digest in (event.request.body_sha256, event.response.sha256):
                if digest and digest in trace.blobs:
                    _write_blob(out / "network", f"{digest}.bin", trace.blobs[digest], written)
    dropped = _dropped_files(out, trace, written)
    report = build_report(trace, analysis, dropped, _containment(trace, guard, []), generated_at)
    errors = render_files(report, out, clear=_clear)
    report = report.model_copy(update={"containment": _containment(trace, guard, errors)})
    _write_new(out / "report.json", report.to_json().encode("utf-8"))
    return report


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def produce(out: Path, trace: Trace, *, write_frozen: bool = False, generated_at: str | None = None) -> Report:
    """Analyse ``trace`` and write every derived file into ``out``, writes allowed only there;
    with ``write_frozen`` (a replay), write the trace and its blobs first.

    The one path from a trace to an output folder: a replay and ``chainreplay analyse`` both
    come here.
    """
    out = out.resolve()
    prepare_renderers()
    guard = install(Guard(allowed_write_root=out))
    try:
        if write_frozen:
            write_trace(out, trace)
        analysis = analyse(trace)
        return write_outputs(out, trace, analysis, guard, generated_at or now_utc())
    finally:
        uninstall(guard)
