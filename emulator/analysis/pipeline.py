"""Analysis of a frozen trace: stages and provenance, the stage graph, ATT&CK techniques.

Works on a :class:`emulator.trace.Trace` only, never on the engine, so a replay and
``chainreplay analyse`` run exactly the same code over the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from emulator.analysis.attack import TechniqueHit, match_techniques
from emulator.analysis.graph import GraphContext, build_graph
from emulator.analysis.stages import Stage, derive_stages
from emulator.eventlog import of_type
from emulator.events import Event, RegistryAccess
from emulator.trace import Trace


@dataclass
class Analysis:
    stages: list[Stage]
    graph: nx.DiGraph
    techniques: list[TechniqueHit]


def host_identifiers(machine_names: list[str], events: Sequence[Event]) -> list[str]:
    """Values that identify the victim machine: its names, and registry values the guest read."""
    values = list(machine_names)
    for _, event in of_type(events, RegistryAccess):
        if isinstance(event, RegistryAccess) and event.op == "read" and event.value:
            values.append(event.value)
    return [v for v in values if v]


def analyse(trace: Trace) -> Analysis:
    header = trace.header
    entry = (header.entry_origin.type, header.entry_origin.ref)
    stages = derive_stages(trace.events, trace.blobs, entry)
    context = GraphContext(
        header.host_process_path or header.host_process,
        host_identifiers(header.machine_names, trace.events),
        header.arch,
    )
    graph = build_graph(stages, trace.events, trace.blobs, context)
    techniques = match_techniques(stages, trace.events, graph, trace.blobs)
    return Analysis(stages, graph, techniques)
