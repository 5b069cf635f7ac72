"""Renderers: pure functions over the report document (:class:`emulator.report.Report`).

:func:`render_files` writes every rendered file of an output folder from the report alone (and
the network bodies saved beside it); a replay, ``chainreplay analyse`` and ``chainreplay render``
all call it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from emulator.report import Report

GRAPH_FILES = ("stage_graph.svg", "stage_graph.png", "stage_graph.graphml", "stage_graph.dot")
RENDERED_FILES = (*GRAPH_FILES, "report.html", "narration.md")

log = logging.getLogger(__name__)


def prepare() -> None:
    """Import the renderers and load Pillow's fonts and PNG writer, before any guard is up and,
    in a replay, while the emulation child runs (off the critical path)."""
    import emulator.render.files  # noqa: F401 - every renderer (graph files, HTML, narration)
    from emulator.render.png import warm_up

    warm_up()


def _write_fresh(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()


def render_files(
    report: Report,
    out: Path,
    clear: Callable[[Path], None] | None = None,
    source: Path | None = None,
    bodies: Mapping[str, bytes] | None = None,
) -> list[str]:
    """Write the rendered files of ``report`` into ``out``; return what failed, one line each.

    ``clear`` removes whatever sits at a file's name first (default: a file or link there);
    every file is then created fresh, never written through a link. Network bodies for the
    previews are ``bodies`` (sha256 -> bytes), or else read from ``source/network`` (default
    ``out``). A rendering problem is
    returned, never raised, so it cannot lose the report.
    """
    started = time.perf_counter()
    remove = clear or _remove
    for name in RENDERED_FILES:
        remove(out / name)
    try:
        from emulator.render.files import rendered_bytes, saved_bodies

        files = rendered_bytes(report, saved_bodies(report, source or out) if bodies is None else bodies)
        for name, data in files.items():
            _write_fresh(out / name, data)
    except Exception as err:  # noqa: BLE001 - a drawing problem must not lose the report
        log.debug("rendering failed", exc_info=True)
        return [f"rendering failed: {type(err).__name__}: {err}"]
    log.debug("rendered %s in %.3f s", ", ".join(files), time.perf_counter() - started)
    return []
