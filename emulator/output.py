"""Writes a replay's output folder: report.json, stage bytes, network bodies, dropped files, graph.

Every path written here is derived from a sha256, never from a name the sample chose, so a
sample cannot steer a write outside the folder (``..\\..\\x``, UNC paths, device names).
"""

from __future__ import annotations

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


def _write_blob(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_symlink():
        path.unlink()  # never follow a link someone left in the output folder
    if not path.exists():
        path.write_bytes(data)


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
    from emulator.render.graph_files import write_graph_files

    blobs: dict[str, bytes] = recording.blobs
    for stage in stages:
        if stage.sha256 in blobs:
            _write_blob(out / "stages", f"{stage.sha256}.bin", blobs[stage.sha256])
    for event in recording.events:
        if isinstance(event, NetworkExchange):
            for digest in (event.request.body_sha256, event.response.sha256):
                if digest and digest in blobs:
                    _write_blob(out / "network", f"{digest}.bin", blobs[digest])
    dropped: list[DroppedFile] = []
    for guest_path, digest in sorted(recording.dropped.items()):
        data = blobs.get(digest, b"")
        stored = None
        if digest in blobs:
            _write_blob(out / "dropped", digest, data)
            stored = f"dropped/{digest}"
        dropped.append(DroppedFile(path=for_display(guest_path), sha256=digest, size=len(data), stored_as=stored))
    graph_error = None
    try:
        write_graph_files(graph, out)
    except Exception as err:  # a drawing problem must not lose the report
        graph_error = f"graph drawing failed: {type(err).__name__}: {err}"
    containment = Containment(
        host_connects_refused=recording.sockets_blocked + guard.sockets_blocked,
        host_name_lookups_refused=recording.lookups_blocked + guard.lookups_blocked,
        writes_outside_outdir_refused=recording.writes_blocked + guard.writes_blocked,
        host_processes_refused=recording.processes_blocked + guard.processes_blocked,
        violations=[*recording.violations, *guard.violations] + ([graph_error] if graph_error else []),
        isolation=recording.isolation,
    )
    report = report_factory(dropped, containment)
    report_path = out / "report.json"
    if report_path.is_symlink():
        report_path.unlink()
    report_path.write_text(report.to_json(), encoding="utf-8")
    return report
