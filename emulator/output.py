"""Writes a replay's output folder: report.json, stage bytes, network bodies, dropped files, graph.

Every path written here is derived from a sha256, never from a name the sample chose, so a
sample cannot steer a write outside the folder (``..\\..\\x``, UNC paths, device names). The
folder may hold anything from an earlier run, or something planted: every file is written
fresh (O_CREAT | O_EXCL | O_NOFOLLOW) after whatever sat at its name is removed, so a symbolic
link, a hard link to a file elsewhere or a symlinked sub-folder is replaced, never written through.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from emulator.analysis.stages import Stage
from emulator.containment import Guard
from emulator.events import NetworkExchange
from emulator.plan import ReplayPlan
from emulator.report import Containment, DroppedFile, Report
from emulator.sanitize import for_display

log = logging.getLogger(__name__)


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


def write_outputs(
    out: Path,
    *,
    plan: ReplayPlan,
    recording: Any,
    stages: list[Stage],
    graph: nx.DiGraph,
    report_factory: Callable[[list[DroppedFile], Containment], Report],
    guard: Guard,
) -> Report:
    from emulator.render.files import RENDERED_FILES, render_files

    blobs: dict[str, bytes] = recording.blobs
    written: set[Path] = set()
    for stage in stages:
        if stage.sha256 in blobs:
            _write_blob(out / "stages", f"{stage.sha256}.bin", blobs[stage.sha256], written)
    for event in recording.events:
        if isinstance(event, NetworkExchange):
            for digest in (event.request.body_sha256, event.response.sha256):
                if digest and digest in blobs:
                    _write_blob(out / "network", f"{digest}.bin", blobs[digest], written)
    dropped: list[DroppedFile] = []
    for guest_path, digest in sorted(recording.dropped.items()):
        data = blobs.get(digest, b"")
        stored = None
        if digest in blobs:
            _write_blob(out / "dropped", digest, data, written)
            stored = f"dropped/{digest}"
        dropped.append(DroppedFile(path=for_display(guest_path), sha256=digest, size=len(data), stored_as=stored))
    bodies = {
        digest: blobs[digest]
        for event in recording.events
        if isinstance(event, NetworkExchange)
        for digest in (event.request.body_sha256, event.response.sha256)
        if digest and digest in blobs
    }

    def make_containment(graph_error: str | None) -> Containment:
        return Containment(
            host_connects_refused=recording.sockets_blocked + guard.sockets_blocked,
            host_name_lookups_refused=recording.lookups_blocked + guard.lookups_blocked,
            writes_outside_outdir_refused=recording.writes_blocked + guard.writes_blocked,
            host_processes_refused=recording.processes_blocked + guard.processes_blocked,
            violations=[*recording.violations, *guard.violations] + ([graph_error] if graph_error else []),
            isolation=recording.isolation,
        )

    report = report_factory(dropped, make_containment(None))
    for name in RENDERED_FILES:
        _clear(out / name)
    started = time.perf_counter()
    try:
        rendered = render_files(report, bodies)
    except Exception as err:  # a drawing problem must not lose the report
        log.debug("rendering failed", exc_info=True)
        rendered = {}
        report = report_factory(dropped, make_containment(f"rendering failed: {type(err).__name__}: {err}"))
    for name, data in rendered.items():
        _write_new(out / name, data)
    log.debug("rendered %s in %.3f s", ", ".join(rendered) or "nothing", time.perf_counter() - started)
    _write_new(out / "report.json", report.to_json().encode("utf-8"))
    return report
