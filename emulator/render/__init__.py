"""Renderers: pure functions over the report document (:class:`emulator.report.Report`).

:func:`render_files` writes every rendered file of an output folder from the report alone; a
replay, ``chainreplay analyse`` and ``chainreplay render`` all call it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emulator.report import Report

GRAPH_FILES = ("stage_graph.png", "stage_graph.svg", "stage_graph.graphml")


def prepare() -> None:
    """Import the drawing library and load its fonts and back ends, before any guard is up.

    matplotlib writes its config and font cache under the user's home on first use, which the
    guard that allows writes only inside OUTDIR would refuse. Costly (imports), so a replay does
    it while its emulation child runs.
    """
    from emulator.render.graph_files import warm_up

    warm_up()


def render_files(report: Report, out: Path, clear: Callable[[Path], None] | None = None) -> list[str]:
    """Write the rendered files of ``report`` into ``out``; return what failed, one line each.

    ``clear`` removes whatever sits at a file's name first (the output folder's link-safe
    remover); a drawing problem is returned, never raised, so it cannot lose the report.
    """
    from emulator.render.graph_files import graph_from_report, write_graph_files

    try:
        if clear is not None:
            for name in GRAPH_FILES:
                clear(out / name)
        write_graph_files(graph_from_report(report), out)
    except Exception as err:  # noqa: BLE001 - a drawing problem must not lose the report
        return [f"graph drawing failed: {type(err).__name__}: {err}"]
    return []
