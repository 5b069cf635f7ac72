"""Writes a replay's output folder: report.json, stage bytes, network bodies, dropped files, graph.

Every path written here is derived from a sha256, never from a name the sample chose, so a
sample cannot steer a write outside the folder (``..\\..\\x``, UNC paths, device names). The
folder may hold anything from an earlier run, or something planted: every file is written
fresh (O_CREAT | O_EXCL | O_NOFOLLOW) after whatever sat at its name is removed, so a symbolic
link, a hard link to a file elsewhere or a symlinked sub-folder is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from emulator.analysis.stages import Stage
from emulator.containment import Guard
from emulator.events import NetworkExchange
from emulator.plan import ReplayPlan
from emulator.report import Containment, ContainmentLayer, DroppedFile, Report
from emulator.sanitize import for_display

GRAPH_FILES = ("stage_graph.png", "stage_graph.svg", "stage_graph.graphml")
LOCK_FILE = ".lock"
MARKER_FILE = ".chainreplay"
REPORT_FILE = "report.json"
REPORT_SCHEMA_PREFIX = b'"schema": "chainreplay/report/'


class OutputError(OSError):
    """The output folder cannot be written: the message names the path and the reason."""


class OutputBusy(OutputError):
    """Another run holds the output folder's lock."""


class OutputNotOurs(OutputError):
    """The output folder holds files no chainreplay run wrote (``--force`` replaces them)."""


def _named(err: OSError, path: Path) -> OutputError:
    where = err.filename if err.filename else path
    return OutputError(err.errno or errno.EIO, f"{where}: {err.strerror or err}")


def _looks_like_ours(folder: Path) -> bool:
    """A folder an earlier run wrote: it has the marker, or a chainreplay report.json."""
    if (folder / MARKER_FILE).is_file():
        return True
    report = folder / REPORT_FILE
    try:
        with report.open("rb") as handle:
            return REPORT_SCHEMA_PREFIX in handle.read(4096)
    except OSError:
        return False


@contextlib.contextmanager
def output_folder(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run: locked against a second run, emptied of what an earlier run left.

    The lock is ``flock`` on ``out/.lock`` (released when this process ends, however it ends).
    A folder that holds files and is not a chainreplay output folder is refused unless ``force``.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise _named(err, out) from err
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise OutputBusy(errno.EBUSY, f"{out}: another chainreplay run is writing to this folder") from err
        leftovers = [p for p in out.iterdir() if p.name != LOCK_FILE]
        if leftovers and not force and not _looks_like_ours(out):
            raise OutputNotOurs(
                errno.EEXIST,
                f"{out}: not empty and not a chainreplay output folder ({len(leftovers)} entries); "
                "use --force to replace its content",
            )
        for path in leftovers:
            try:
                _clear(path)
            except OSError as err:
                raise _named(err, path) from err
        _write_new(out / MARKER_FILE, b"chainreplay output folder: a run empties it first\n")
        yield out
    finally:
        os.close(lock_fd)


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
    try:
        _clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OutputError:
        raise
    except OSError as err:  # ENOSPC, EACCES, EROFS...: name the file
        raise _named(err, path) from err


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename over it."""
    temporary = path.with_name(f".{path.name}.partial")
    _write_new(temporary, data)
    try:
        temporary.replace(path)
    except OSError as err:
        raise _named(err, path) from err


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
    draw: Callable[[nx.DiGraph, Path], str | None] | None = None,
) -> Report:
    """Write every file of the replay; ``draw(graph, out)`` draws the graph files and returns a
    note when the drawing was cut or skipped (default: draw them, unbounded)."""
    if draw is None:
        draw = _draw_unbounded

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
    graph_error = None
    for name in GRAPH_FILES:
        _clear(out / name)
    try:
        graph_error = draw(graph, out)
    except OutputError:
        raise
    except Exception as err:  # a drawing problem must not lose the report
        graph_error = f"graph drawing in {out} failed: {type(err).__name__}: {err}"
    containment = Containment(
        host_connects_refused=recording.sockets_blocked + guard.sockets_blocked,
        host_name_lookups_refused=recording.lookups_blocked + guard.lookups_blocked,
        writes_outside_outdir_refused=recording.writes_blocked + guard.writes_blocked,
        host_processes_refused=recording.processes_blocked + guard.processes_blocked,
        violations=[*recording.violations, *guard.violations],
        isolation=recording.isolation,
        layers=[ContainmentLayer(name=n, active=a, detail=d) for n, a, d in getattr(recording, "layers", [])],
        kernel_refusals=getattr(recording, "kernel_refusals", 0),
    )
    if graph_error:
        recording.notes.append(("graph", graph_error))
    report = report_factory(dropped, containment)
    write_atomically(out / REPORT_FILE, report.to_json().encode("utf-8"))
    return report


def _draw_unbounded(graph: nx.DiGraph, out: Path) -> str | None:
    from emulator.render.graph_files import write_graph_files

    write_graph_files(graph, out)
    return None
