"""The stage graph as files: SVG (tooltips, links into report.html), PNG for slides, GraphML and DOT
for other tools. Pure functions over the report; :func:`write_graph_files` writes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from emulator.render.layout import Layout, build_layout, edge_color, node_color
from emulator.render.model import clean, graph_parts
from emulator.render.png import render_png
from emulator.render.svg import render_svg
from emulator.report import Report

GRAPH_FILES = ("stage_graph.svg", "stage_graph.png", "stage_graph.graphml", "stage_graph.dot")


def graph_from_node_link(data: dict[str, Any]) -> nx.DiGraph:
    graph: nx.DiGraph = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    return graph


def _graphml_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return clean(value, 100_000)


def render_graphml(report: Report) -> str:
    """GraphML of the stage graph (every attribute a string or number; evidence as ``"102,115"``)."""
    nodes, edges = graph_parts(report)
    graph = nx.DiGraph()
    for node in nodes:
        attrs = {k: _graphml_value(v) for k, v in node.attrs.items() if v is not None}
        graph.add_node(node.id, kind=node.kind, label=clean(node.label, 100_000), **attrs)
    for edge in edges:
        attrs = {k: _graphml_value(v) for k, v in edge.attrs.items() if v is not None}
        graph.add_edge(edge.source, edge.target, type=edge.type, evidence=_graphml_value(edge.evidence), **attrs)
    return "\n".join(nx.generate_graphml(graph)) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(report: Report, layout: Layout | None = None) -> str:
    """Graphviz DOT, left to right, with the same labels and colours as the SVG."""
    layout = layout or build_layout(report)
    _, edges = graph_parts(report)
    lines = [
        f"digraph {_dot_string(layout.title)} {{",
        "  rankdir=LR;",
        f"  label={_dot_string(layout.title + ': ' + layout.subtitle)}; labelloc=t;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for box in layout.boxes:
        color = node_color(box.kind)
        lines.append(
            f"  {_dot_string(box.id)} [label={_dot_string(chr(10).join(box.lines))}, color={_dot_string(color)}, "
            f"fillcolor={_dot_string(color + '22')}, tooltip={_dot_string(box.tooltip)}];"
        )
    shown = {b.id for b in layout.boxes}
    for edge in edges:
        if edge.source in shown and edge.target in shown:
            evidence = ",".join(str(s) for s in edge.evidence)
            lines.append(
                f"  {_dot_string(edge.source)} -> {_dot_string(edge.target)} [label={_dot_string(edge.type)}, "
                f"color={_dot_string(edge_color(edge.type))}, evidence={_dot_string(evidence)}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_files(report: Report) -> dict[str, bytes]:
    """Every graph file's name and bytes."""
    layout = build_layout(report)
    return {
        "stage_graph.svg": render_svg(layout).encode("utf-8"),
        "stage_graph.png": render_png(layout),
        "stage_graph.graphml": render_graphml(report).encode("utf-8"),
        "stage_graph.dot": render_dot(report, layout).encode("utf-8"),
    }


def write_graph_files(report: Report, out: Path, write: Callable[[Path, bytes], None] | None = None) -> list[Path]:
    """Write the graph files into ``out`` (through ``write``, which must replace what is there)."""
    paths = []
    for name, data in graph_files(report).items():
        path = out / name
        if write is None:
            path.write_bytes(data)
        else:
            write(path, data)
        paths.append(path)
    return paths
