"""Every rendered file of an output folder, from the report (and the network bodies saved beside it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from emulator.render.graph_files import graph_files
from emulator.render.html import render_html
from emulator.render.model import timeline_shared
from emulator.render.narrate import narrate, render_markdown
from emulator.report import Report


def rendered_bytes(report: Report, bodies: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """Name -> bytes of every rendered file. Pure."""
    with timeline_shared():  # the layout (twice) and the HTML read the same timeline
        files = graph_files(report)
        files["report.html"] = render_html(report, bodies).encode("utf-8")
        files["narration.md"] = render_markdown(report, narrate(report, bodies)).encode("utf-8")
    return files


def saved_bodies(report: Report, outdir: Path) -> dict[str, bytes]:
    """The request and response bodies a replay saved under ``outdir/network``, by sha256."""
    bodies: dict[str, bytes] = {}
    for exchange in report.network:
        for digest in (exchange.request.sha256, exchange.response.sha256):
            if digest and digest not in bodies and all(c in "0123456789abcdef" for c in digest):
                path = outdir / "network" / f"{digest}.bin"
                if path.is_file() and not path.is_symlink():
                    bodies[digest] = path.read_bytes()
    return bodies
