"""The stage graph as GraphML, PNG and SVG: stages left to right in the order they ran."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "chainreplay"
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from emulator.report import Report  # noqa: E402
from emulator.sanitize import for_display  # noqa: E402

NODE_COLORS = {
    "stage": "#d62728",
    "process": "#7f7f7f",
    "file": "#1f77b4",
    "url": "#2ca02c",
    "host": "#17becf",
    "registry": "#9467bd",
    "sync": "#8c564b",
}
EDGE_COLORS = {
    "loads": "#7f7f7f",
    "reads": "#1f77b4",
    "decrypts_to": "#ff7f0e",
    "delivers": "#bcbd22",
    "maps": "#e377c2",
    "executes": "#d62728",
    "fetches": "#2ca02c",
    "beacons_to": "#9467bd",
    "exfiltrates_to": "#8c564b",
    "drops": "#17becf",
    "writes": "#17becf",
    "creates": "#7f7f7f",
    "resolves": "#aec7e8",
}
STAGE_SPACING = 4.0
ARTIFACT_SPACING = 1.1
LABEL_WIDTH = 28


def graph_from_report(report: Report) -> nx.DiGraph:
    """The report's stage graph as a networkx graph; attributes that are null are left out."""
    graph = nx.DiGraph()
    for node in report.graph.nodes:
        graph.add_node(node.id, **node.model_dump(exclude={"id"}, exclude_none=True))
    for edge in report.graph.edges:
        graph.add_edge(edge.source, edge.target, type=edge.type, evidence=list(edge.evidence))
    return graph


def layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    stages = sorted(
        (n for n, d in graph.nodes(data=True) if d.get("kind") == "stage"), key=lambda n: graph.nodes[n].get("order", 0)
    )
    positions: dict[str, tuple[float, float]] = {}
    column: dict[str, int] = {}
    for index, stage in enumerate(stages):
        positions[stage] = (index * STAGE_SPACING, 0.0)
        column[stage] = index
    stacks: dict[int, list[str]] = {}
    for node in graph.nodes:
        if node in positions:
            continue
        # Beside the first stage that touched it (by evidence order).
        touching = []
        for src, dst, data in list(graph.in_edges(node, data=True)) + list(graph.out_edges(node, data=True)):
            other = src if dst == node else dst
            if other in column:
                touching.append((min(data.get("evidence") or [0]), column[other]))
        col = min(touching)[1] if touching else 0
        stacks.setdefault(col, []).append(node)
    for col, nodes in stacks.items():
        for i, node in enumerate(sorted(nodes)):
            side = 1 if i % 2 == 0 else -1
            level = i // 2 + 1
            positions[node] = (col * STAGE_SPACING + 0.9 * side, side * level * ARTIFACT_SPACING)
    return positions


def _label(graph: nx.DiGraph, node: str) -> str:
    data = graph.nodes[node]
    text = str(data.get("label", node))
    if data.get("kind") == "stage":
        text = f"{node}: {text}\n[{data.get('stage_kind', '')}]"
    elif data.get("kind") in ("file", "registry"):
        text = text.replace("/", "\\").split("\\")[-1] or text
    elif data.get("kind") == "url":
        text = text.split("://", 1)[-1]
    text = for_display(text, 80)
    lines = [text[i : i + LABEL_WIDTH] for i in range(0, len(text), LABEL_WIDTH)]
    return "\n".join(lines[:3])


def draw(graph: nx.DiGraph, title: str = "chainreplay stage graph") -> plt.Figure:
    positions = layout(graph)
    n_stages = sum(1 for _, d in graph.nodes(data=True) if d.get("kind") == "stage")
    height = max(4.0, 1.2 * max((abs(y) for _, y in positions.values()), default=1) * 2 + 2)
    fig, ax = plt.subplots(figsize=(max(8.0, 4.2 * n_stages + 3), min(height, 24.0)))
    ax.set_title(title)
    ax.axis("off")
    colors = [NODE_COLORS.get(graph.nodes[n].get("kind", ""), "#cccccc") for n in graph.nodes]
    sizes = [1600 if graph.nodes[n].get("kind") == "stage" else 500 for n in graph.nodes]
    nx.draw_networkx_nodes(graph, positions, ax=ax, node_color=colors, node_size=sizes, alpha=0.9)
    nx.draw_networkx_labels(graph, positions, ax=ax, labels={n: _label(graph, n) for n in graph.nodes}, font_size=7)
    edge_colors = [EDGE_COLORS.get(d.get("type", ""), "#333333") for _, _, d in graph.edges(data=True)]
    nx.draw_networkx_edges(
        graph,
        positions,
        ax=ax,
        edge_color=edge_colors,
        arrows=True,
        arrowsize=14,
        node_size=sizes,
        connectionstyle="arc3,rad=0.08",
    )
    nx.draw_networkx_edge_labels(
        graph,
        positions,
        ax=ax,
        font_size=6,
        edge_labels={(u, v): d.get("type", "") for u, v, d in graph.edges(data=True)},
    )
    used_kinds = {graph.nodes[n].get("kind") for n in graph.nodes}
    used_edges = {d.get("type") for _, _, d in graph.edges(data=True)}
    handles: list[Any] = [Patch(color=c, label=k) for k, c in NODE_COLORS.items() if k in used_kinds]
    handles += [Line2D([0], [0], color=c, label=k) for k, c in EDGE_COLORS.items() if k in used_edges]
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=True, ncol=2)
    fig.tight_layout()
    return fig


def _graphml_safe(graph: nx.DiGraph) -> nx.DiGraph:
    """GraphML holds scalars only: a list attribute (an edge's ``evidence``) is written as its JSON
    text, ``"[102, 115]"``, which ``json.loads`` turns back into the list."""
    safe = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        safe.add_node(node, **{k: _scalar(v) for k, v in data.items() if v is not None})
    for src, dst, data in graph.edges(data=True):
        safe.add_edge(src, dst, **{k: _scalar(v) for k, v in data.items() if v is not None})
    return safe


def _scalar(value: object) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


@functools.cache
def warm_up() -> None:
    """Load the fonts and the PNG and SVG back ends by drawing a throw-away figure in memory.

    The first figure a process draws pays for them (about 0.15 s); a replay does it while
    its emulation child runs, so the real drawing does not. Once per process is enough.
    """
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.text(0.5, 0.5, "chainreplay", fontsize=7)
    ax.set_title("warm")
    try:
        for fmt in ("png", "svg"):
            fig.savefig(io.BytesIO(), format=fmt, dpi=20)
    finally:
        plt.close(fig)


def write_graph_files(graph: nx.DiGraph, out: Path, title: str = "chainreplay stage graph") -> None:
    nx.write_graphml(_graphml_safe(graph), str(out / "stage_graph.graphml"))
    fig = draw(graph, title)
    try:
        # Fixed metadata so two replays of the same scenario give the same image bytes.
        fig.savefig(out / "stage_graph.png", dpi=110, metadata={"Software": None})
        fig.savefig(out / "stage_graph.svg", metadata={"Date": None, "Creator": None})
    finally:
        plt.close(fig)
