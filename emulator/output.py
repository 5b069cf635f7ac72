"""Writes a replay's output folder: the trace and its blobs, then everything derived from them
(report.json, stage bytes, network bodies, dropped files, the rendered files).

Every path written here is derived from a sha256, never from a name the sample chose, so a
sample cannot steer a write outside the folder (``..\\..\\x``, UNC paths, device names). The
folder may hold anything from an earlier run, or something planted: every file is written
fresh (O_CREAT | O_EXCL | O_NOFOLLOW) after whatever sat at its name is removed, so a symbolic
link, a hard link to a file elsewhere or a symlinked sub-folder is replaced, never written through.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from emulator import outcome as outcome_model
from emulator.containment import Guard, install, uninstall
from emulator.eventlog import of_type
from emulator.events import NetworkExchange
from emulator.lifecycle import DeadlineReached, Interrupted, RunControl
from emulator.limits import INTERRUPTED_ANALYSIS_SECONDS, MAX_DRAWN_NODES, MAX_GRAPH_NODES
from emulator.outcome import Status
from emulator.report import Containment, ContainmentLayer, DroppedFile, Note, Outcome, Report
from emulator.sanitize import for_display
from emulator.trace import BLOB_DIR, TRACE_FILE, Trace, blob_name, header_line, iter_event_lines, iter_trace_lines

if TYPE_CHECKING:
    from emulator.analysis.pipeline import Analysis
    from emulator.eventlog import EventLog
    from emulator.export import BackgroundExports

# The analysis (networkx), the report builder, the renderers and the exporters are imported
# where they are used: a replay imports them while its emulation child runs (replay.py's
# _prepare_outputs), not before the child starts.

LOCK_FILE = ".lock"
MARKER_FILE = ".chainreplay"
REPORT_FILE = "report.json"
REPORT_SCHEMA_PREFIX = b'"schema": "chainreplay/report/'
# Large files (trace.jsonl, report.json) are written through a buffer of this many bytes.
WRITE_CHUNK = 1 << 20
# The exports are written by a forked copy beside the drawing (emulator.export.BackgroundExports)
# when a core is free for it. A batch whose workers and their children outnumber the cores turns
# it off in its workers (emulator/batch_preload_outputs.py): there the copy would only add its
# fork and copied pages (~30 ms of CPU per 3CX replay) to a busy machine.
EXPORTS_BESIDE_DRAWING = True
# The exports' copy also writes the frozen trace (trace.jsonl and blobs/, ~18 ms for 3CX, ~40
# files) before the exports: with the STIX bundle made without stix2's objects, the exports
# alone were ~30 ms shorter than the drawing, and the two sides are now about even.
TRACE_BESIDE_DRAWING = True
# And, first of all, the stage, network and dropped files the exports read (~22 files for 3CX,
# ~6 ms on ext4): written before the copy was forked, they were on both sides' path. The
# drawing's body previews come from the trace meanwhile (the same bytes).
STORED_BESIDE_DRAWING = True
# While the parent waits for its emulation child it writes what is already known of the folder
# (EarlyTrace): every blob the child sent (blobs/), the network bodies (network/) and the
# trace's event lines, kept aside in EARLY_TRACE_FILE until the header is known at the end.
EARLY_TRACE = True
EARLY_TRACE_FILE = ".trace.jsonl.early"
# A blob or body name the child sent is written early only if it is a sha256 in hex (what the
# recorder names them); anything else is left to the end, under the output guard.
SHA256_HEX_CHARS = 64


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
def locked_folder(out: Path) -> Iterator[Path]:
    """Hold ``out`` against a second run: ``flock`` on ``out/.lock``, released when this process
    ends however it ends (:class:`OutputBusy` if another run holds it)."""
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
        yield out
    finally:
        os.close(lock_fd)


@contextlib.contextmanager
def output_folder(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run: locked against a second run, emptied of what an earlier run left.

    The lock is :func:`locked_folder`'s.
    A folder that holds files and is not a chainreplay output folder is refused unless ``force``.
    """
    with locked_folder(out):
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


def _clear(path: Path) -> None:
    """Remove whatever sits at ``path`` (file, symbolic or hard link, folder) without following it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        _remove_tree(path)


def _remove_tree(folder: Path) -> None:
    """Remove ``folder`` and everything in it, each entry by its whole path, never following a
    link (a link is removed, not what it points to). Not ``shutil.rmtree``: it removes entries by
    name relative to an open folder's descriptor, which the output guard cannot place, so under
    the guard (the parent clearing exports the copy wrote, emulator/export) it was refused."""
    found = [folder]  # every folder, each after the one holding it
    for current in found:
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.append(Path(entry.path))
                else:
                    Path(entry.path).unlink()
    for current in reversed(found):
        current.rmdir()


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


def write_atomically(path: Path, data: bytes | Iterable[str]) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename over it.
    ``data``: the bytes, or text in pieces (written as they come, UTF-8)."""
    temporary = path.with_name(f".{path.name}.partial")
    if isinstance(data, bytes):
        _write_new(temporary, data)
    else:
        _write_new_lines(temporary, data)
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


def _write_new_lines(path: Path, pieces: Iterable[str]) -> None:
    """Write ``path`` fresh (as :func:`_write_new`) from pieces of text, as they come: a trace or
    report of a million events is never one string in memory."""
    try:
        _clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="", buffering=WRITE_CHUNK) as handle:
            write = handle.write
            for piece in pieces:
                write(piece)
    except OutputError:
        raise
    except OSError as err:  # ENOSPC, EACCES, EROFS...: name the file
        raise _named(err, path) from err


def _hex_digest(name: str) -> bool:
    return len(name) == SHA256_HEX_CHARS and all(c in "0123456789abcdef" for c in name)


class EarlyTrace:
    """What a replay's output folder will hold, written while the emulation child still runs
    (the parent only waits for it then): :meth:`advance` writes the blobs received so far into
    ``blobs/``, the network bodies into ``network/`` and the new events' trace lines into
    :data:`EARLY_TRACE_FILE`; at the end :func:`write_trace` and :func:`_write_stored` write only
    what is left (the header line, the last events' lines, the other blobs), and the trace file
    is the header followed by the lines kept aside (copied by the kernel). Every byte is what
    writing it all at the end gives; a blob whose bytes changed since (the child sent the same
    name again) is written again. Nothing is used if a write here failed (the end writes all)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lines = 0  # events whose lines are in the file kept aside
        self.blobs: dict[str, bytes] = {}  # digest -> the bytes written in blobs/
        self.bodies: dict[str, bytes] = {}  # digest -> the bytes written in network/
        self.events: EventLog | None = None
        self.usable = True
        self._blob_count = 0
        self._folders: set[Path] = set()
        self._handle: BinaryIO | None = None
        self._size = 0

    @property
    def kept(self) -> Path:
        return self.out / EARLY_TRACE_FILE

    def advance(self, events: EventLog, blobs: dict[str, bytes]) -> None:
        """Write what arrived since the last call (``events`` and ``blobs`` as they grow)."""
        if not self.usable or (self.events is not None and events is not self.events):
            return
        self.events = events
        guard = install(Guard(allowed_write_root=self.out, spare_host_threads=True))
        try:
            self._advance(events, blobs)
        except Exception:  # a refusal (ContainmentViolation), a full disk...: the end writes everything
            self.usable = False
        finally:
            uninstall(guard)

    def _advance(self, events: EventLog, blobs: dict[str, bytes]) -> None:
        if len(blobs) > self._blob_count:
            for digest, data in itertools.islice(blobs.items(), self._blob_count, None):
                if _hex_digest(digest):
                    _write_blob(self.out / BLOB_DIR, blob_name(digest), data, self._folders)
                    self.blobs[digest] = data
            self._blob_count = len(blobs)
        start, end = self.lines, len(events)
        if end <= start:
            return
        for _, event in events.others(start):
            if isinstance(event, NetworkExchange) and event.seq < end:
                for name in (event.request.body_sha256, event.response.sha256):
                    body = blobs.get(name) if name else None
                    if name and body is not None and name not in self.bodies and _hex_digest(name):
                        _write_blob(self.out / "network", f"{name}.bin", body, self._folders)
                        self.bodies[name] = body
        if self._handle is None:
            _clear(self.kept)
            fd = os.open(self.kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            self._handle = os.fdopen(fd, "wb", buffering=WRITE_CHUNK)
        write = self._handle.write
        for piece in iter_event_lines(events, start):
            data = piece.encode()
            write(data)
            self._size += len(data)
        self.lines = end

    def close(self) -> None:
        """The lines kept aside are complete: flushed and closed (before the end reads them)."""
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                self.usable = False
            self._handle = None

    def discard(self) -> None:
        """Remove the file of lines kept aside (the trace is written)."""
        self.close()
        self.usable = False
        with contextlib.suppress(OSError):
            self.kept.unlink()

    def written(self, trace: Trace) -> bool:
        """Whether what was written early can be used for ``trace`` (its lines: of its events)."""
        return self.usable and self._handle is None and (self.events is None or trace.events is self.events)

    def write_trace_file(self, path: Path, trace: Trace) -> bool:
        """``trace.jsonl``: the header line, the lines kept aside, the rest; False (nothing
        written) if the lines kept aside are not all there."""
        if self.lines == 0:
            return False
        try:
            with self.kept.open("rb") as kept:
                if os.fstat(kept.fileno()).st_size != self._size:
                    return False
                _clear(path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
                with os.fdopen(fd, "wb", buffering=WRITE_CHUNK) as handle:
                    handle.write(header_line(trace.header).encode())
                    handle.flush()
                    _copy_file(kept, handle, self._size)
                    for piece in iter_event_lines(trace.events, self.lines):
                        handle.write(piece.encode())
        except FileNotFoundError:
            return False
        except OutputError:
            raise
        except OSError as err:
            raise _named(err, path) from err
        return True


def _copy_file(source: BinaryIO, target: BinaryIO, size: int) -> None:
    """``size`` bytes from ``source`` (at its start) to ``target`` (flushed), by the kernel where it can."""
    copied = 0
    with contextlib.suppress(OSError):  # not on this file system, or not on this kernel: read and write
        while copied < size:
            step = os.copy_file_range(source.fileno(), target.fileno(), size - copied)
            if step == 0:
                break
            copied += step
    if copied < size:
        source.seek(copied)
        target.seek(0, os.SEEK_END)
        while copied < size and (chunk := source.read(min(WRITE_CHUNK, size - copied))):
            target.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise OSError(errno.EIO, f"{source.name}: shorter than written")


def write_trace(out: Path, trace: Trace, early: EarlyTrace | None = None) -> None:
    """``trace.jsonl`` and ``blobs/``: everything the report is derived from (what ``early``
    wrote already is not written again)."""
    written: set[Path] = set()
    done = early.blobs if early is not None and early.written(trace) else {}
    for digest in trace.header.blobs:
        data = trace.blobs[digest]
        if done.get(digest) is not data:
            _write_blob(out / BLOB_DIR, blob_name(digest), data, written)
    if not (done and early is not None and early.write_trace_file(out / TRACE_FILE, trace)):
        _write_new_lines(out / TRACE_FILE, iter_trace_lines(trace))


def _dropped_files(trace: Trace) -> list[DroppedFile]:
    """The report's records of the dropped files (written by :func:`_write_stored`)."""
    dropped: list[DroppedFile] = []
    for guest_path, digest in sorted(trace.header.dropped.items()):
        data = trace.blobs.get(digest, b"")
        stored = f"dropped/{digest}" if digest in trace.blobs else None
        dropped.append(DroppedFile(path=for_display(guest_path), sha256=digest, size=len(data), stored_as=stored))
    return dropped


def _write_stored(out: Path, trace: Trace, analysis: Analysis, early: EarlyTrace | None = None) -> None:
    """The bytes the report names: ``stages/``, ``network/`` and ``dropped/`` (the network bodies
    ``early`` wrote already are not written again)."""
    written: set[Path] = set()
    for stage in analysis.stages:
        if stage.sha256 in trace.blobs:
            _write_blob(out / "stages", f"{stage.sha256}.bin", trace.blobs[stage.sha256], written)
    done = early.bodies if early is not None and early.written(trace) else {}
    for digest in _network_digests(trace):
        if done.get(digest) is not trace.blobs[digest]:
            _write_blob(out / "network", f"{digest}.bin", trace.blobs[digest], written)
    for digest in sorted(trace.header.dropped.values()):
        if digest in trace.blobs:
            _write_blob(out / "dropped", digest, trace.blobs[digest], written)


def _network_digests(trace: Trace) -> list[str]:
    """The request and response bodies of the trace's network exchanges it holds, in order."""
    digests: list[str] = []
    for _, event in of_type(trace.events, NetworkExchange):
        if isinstance(event, NetworkExchange):
            for digest in (event.request.body_sha256, event.response.sha256):
                if digest and digest in trace.blobs:
                    digests.append(digest)
    return digests


def _bodies(trace: Trace) -> dict[str, bytes]:
    """The network bodies the renderers preview, from the trace: what
    :func:`emulator.render.files.saved_bodies` reads back from ``network/`` once
    :func:`_write_stored` wrote it (a name of hex digits only), so drawing need not wait for it."""
    return {
        digest: trace.blobs[digest]
        for digest in _network_digests(trace)
        if all(c in "0123456789abcdef" for c in digest)
    }


def _containment(trace: Trace, guard: Guard, render_errors: list[str]) -> Containment:
    recorded = trace.header.containment
    return Containment(
        host_connects_refused=recorded.connects_refused + guard.sockets_blocked,
        host_name_lookups_refused=recorded.lookups_refused + guard.lookups_blocked,
        writes_outside_outdir_refused=recorded.writes_refused + guard.writes_blocked,
        host_processes_refused=recorded.processes_refused + guard.processes_blocked,
        violations=[*recorded.violations, *guard.violations, *render_errors],
        isolation=recorded.isolation,
        layers=[ContainmentLayer(name=n, active=a, detail=d) for n, a, d in recorded.layers],
        kernel_refusals=recorded.kernel_refusals,
    )


@dataclass
class RunNotes:
    """What the run cut (notes for the report) and an outcome that replaces the trace's (a signal
    that arrived after the emulation)."""

    notes: list[tuple[str, str]] = field(default_factory=list)
    outcome: outcome_model.Outcome | None = None


def write_outputs(
    out: Path,
    trace: Trace,
    analysis: Analysis,
    guard: Guard,
    generated_at: str,
    control: RunControl | None = None,
    cut: RunNotes | None = None,
    yara_rules: str | None = None,
) -> Report:
    """Stage images, network bodies, dropped files, the rendered files and report.json (written
    whole or not at all). With ``yara_rules``, the bytes written are scanned before rendering."""
    return _write_outputs(out, trace, analysis, guard, generated_at, control, cut, yara_rules)[0]


def _write_outputs(
    out: Path,
    trace: Trace,
    analysis: Analysis,
    guard: Guard,
    generated_at: str,
    control: RunControl | None = None,
    cut: RunNotes | None = None,
    yara_rules: str | None = None,
    exports_aside: bool = False,
    before_drawing: Callable[[], None] | None = None,
    trace_aside: bool = False,
    early: EarlyTrace | None = None,
) -> tuple[Report, BackgroundExports | None, bool]:
    """:func:`write_outputs`; with ``exports_aside``, the exports are started in a forked copy
    as soon as the report is built (:class:`emulator.export.BackgroundExports`), to run beside
    the drawing, and the copy first writes the stage, network and dropped files
    (:data:`STORED_BESIDE_DRAWING`) and, with ``trace_aside``, ``trace`` (``early``: what was
    written of them while the emulation ran, :class:`EarlyTrace`). ``before_drawing``
    runs once the copy is started, unless the copy was given the trace (what the exports do not
    read: the frozen trace). Returns the report, the copy (None if none was started) and
    whether drawing left the report as the copy saw it; when it returns, the stored files are
    written or the copy writes them (:meth:`~emulator.export.BackgroundExports.finish` makes
    sure)."""
    cut = cut or RunNotes()
    stored_left = STORED_BESIDE_DRAWING and exports_aside and yara_rules is None  # a scan reads them

    def store() -> None:
        _write_stored(out, trace, analysis, early)

    if not stored_left:
        store()
    from emulator.document import build_report

    report = build_report(trace, analysis, _dropped_files(trace), _containment(trace, guard, []), generated_at)
    if yara_rules is not None:
        from emulator.export import add_yara_scan

        report = add_yara_scan(out, report, yara_rules)
    interrupted = (cut.outcome or report.outcome).status == Status.INTERRUPTED
    nodes = analysis.graph.number_of_nodes()
    aside = None
    if exports_aside and not interrupted and nodes <= MAX_DRAWN_NODES and not cut.notes and cut.outcome is None:
        from emulator.export import BackgroundExports

        steps = [*([store] if stored_left else []), *([lambda: write_trace(out, trace, early)] if trace_aside else [])]
        # only what drawing changes could differ
        aside = BackgroundExports.start(out, report, _in_order(steps) if steps else None)
    try:
        if aside is None or aside.first is None:
            if stored_left:
                store()
            if before_drawing is not None:
                before_drawing()
        elif not trace_aside and before_drawing is not None:
            before_drawing()
        return _drawn(out, trace, report, guard, nodes, interrupted, control, cut, aside)
    except BaseException:
        if aside is not None:
            aside.cancel()
            if stored_left and aside.first is not None:  # the copy's part, left unfinished
                store()
        raise


def _in_order(steps: list[Callable[[], None]]) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            step()

    return run


def _drawn(
    out: Path,
    trace: Trace,
    report: Report,
    guard: Guard,
    nodes: int,
    interrupted: bool,
    control: RunControl | None,
    cut: RunNotes,
    aside: BackgroundExports | None,
) -> tuple[Report, BackgroundExports | None, bool]:
    """Draw ``report`` (unless ``interrupted`` or too large) and write report.json (with
    ``aside``, the exports' copy writes it, or its ``finish()`` if the copy cannot)."""
    from emulator.render import render_files

    bodies = _bodies(trace)  # the files in network/ may still be being written (by the copy)
    errors: list[str] = []
    if interrupted:
        cut.notes.append(("graph", "graph not drawn: the replay was interrupted"))
    elif nodes > MAX_DRAWN_NODES:
        cut.notes.append(("graph", f"graph not drawn: {nodes} nodes, more than the {MAX_DRAWN_NODES} drawn"))
    elif control is None:
        errors = render_files(report, out, clear=_clear, bodies=bodies)
    else:
        try:
            with control.bounded():
                errors = render_files(report, out, clear=_clear, bodies=bodies)
        except Interrupted as stop:
            cut.outcome = _interrupted(stop.signum, "while drawing")
            cut.notes.append(("graph", "graph drawing stopped by the signal"))
        except DeadlineReached:
            cut.notes.append(("graph", "graph drawing stopped at the run's deadline"))
    update: dict[str, object] = {"containment": _containment(trace, guard, errors)}
    if cut.notes:
        seq = len(trace.events)
        update["notes"] = [*report.notes, *(Note(seq=seq, stage="", what=w, detail=d) for w, d in cut.notes)]
    if cut.outcome is not None:
        update["outcome"] = Outcome(status=cut.outcome.status, detail=cut.outcome.detail, limit=cut.outcome.limit)
    unchanged = all(getattr(report, name) == value for name, value in update.items())
    report = report.model_copy(update=update)
    if aside is None:  # else the copy writes it, or finish() does if the copy cannot
        write_atomically(out / REPORT_FILE, report.json_chunks())
    return report, aside, unchanged


def _interrupted(signum: int, when: str) -> outcome_model.Outcome:
    import signal

    return outcome_model.interrupted(signal.Signals(signum).name, when)


def _cut_graph(analysis: Analysis, cut: RunNotes) -> Analysis:
    graph = analysis.graph
    if graph.number_of_nodes() <= MAX_GRAPH_NODES:
        return analysis
    kept = list(graph.nodes)[:MAX_GRAPH_NODES]
    cut.notes.append(
        ("graph_cut", f"the stage graph has {graph.number_of_nodes()} nodes; kept the first {MAX_GRAPH_NODES}")
    )
    from emulator.analysis.pipeline import Analysis

    return Analysis(analysis.stages, graph.subgraph(kept).copy(), analysis.techniques)


def _analyse_bounded(trace: Trace, control: RunControl | None, cut: RunNotes) -> Analysis:
    """analyse() cut short by a signal or the run's deadline: what is cut is noted."""
    import networkx as nx

    from emulator.analysis.pipeline import Analysis, analyse

    if control is None:
        return _cut_graph(analyse(trace), cut)
    seconds = INTERRUPTED_ANALYSIS_SECONDS if trace.header.status == Status.INTERRUPTED else None
    try:
        with control.bounded(seconds):
            return _cut_graph(analyse(trace), cut)
    except Interrupted as stop:
        cut.outcome = _interrupted(stop.signum, "during analysis")
        cut.notes.append(("analysis_cut", "analysis stopped by the signal: no stages, graph or techniques"))
    except DeadlineReached:
        why = "the signal" if trace.header.status == Status.INTERRUPTED else "the run's deadline"
        cut.notes.append(("analysis_cut", f"analysis stopped at {why}: no stages, graph or techniques"))
    return Analysis([], nx.DiGraph(), [])


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def produce(
    out: Path,
    trace: Trace,
    *,
    write_frozen: bool = False,
    generated_at: str | None = None,
    control: RunControl | None = None,
    yara_rules: str | None = None,
    early: EarlyTrace | None = None,
) -> Report:
    """Analyse ``trace`` and write every derived file into ``out``, writes allowed only there;
    with ``write_frozen`` (a replay), write the trace and its blobs first. With ``control``,
    analysis and drawing stop at its deadline or at a termination signal (noted in the report).
    ``early``: what of the trace and network bodies was written while the emulation ran (its
    file of lines kept aside is removed once the trace is written).

    The one path from a trace to an output folder: a replay and ``chainreplay analyse`` both
    come here.
    """
    from emulator.export import write_exports
    from emulator.render import prepare as prepare_renderers

    out = out.resolve()
    if trace.header.status != Status.INTERRUPTED:
        prepare_renderers()
    cut = RunNotes()
    guard = install(Guard(allowed_write_root=out, spare_host_threads=True))
    frozen_left = [trace] if write_frozen else []
    trace_aside = TRACE_BESIDE_DRAWING and write_frozen

    def write_frozen_trace() -> None:
        if frozen_left:
            write_trace(out, frozen_left.pop(), early)

    try:
        try:
            analysis = _analyse_bounded(trace, control, cut)
            # The trace goes to the exports' copy (TRACE_BESIDE_DRAWING: it reads none of it) or
            # is written here once the copy is started, so the copy starts earlier; or here,
            # whatever happened, once no copy is left writing it.
            report, aside, unchanged = _write_outputs(
                out,
                trace,
                analysis,
                guard,
                generated_at or now_utc(),
                control,
                cut,
                yara_rules,
                exports_aside=EXPORTS_BESIDE_DRAWING,
                before_drawing=write_frozen_trace,
                trace_aside=trace_aside,
                early=early,
            )
            if aside is not None:  # written beside the drawing (the copy is reaped here)
                report = aside.finish(report, unchanged)
                if trace_aside and aside.first is not None:
                    frozen_left.clear()  # written by the copy, or by finish() after it
            else:
                report = write_exports(out, report)  # iocs, STIX, ATT&CK layer, pcap, detections
        finally:
            write_frozen_trace()
            if early is not None:
                early.discard()
        return report
    finally:
        uninstall(guard)
