"""The stage graph as files: SVG (tooltips, links into report.html), PNG for slides, GraphML and DOT
for other tools. Pure functions over the report; :func:`write_graph_files` writes them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

from emulator.render import GRAPH_FILES  # noqa: F401 - the names these functions write
from emulator.render.layout import Layout, build_layout, edge_color, node_color
from emulator.render.model import clean, graph_parts
from emulator.render.png import render_png
from emulator.render.svg import render_svg
from emulator.report import Report


def graph_from_node_link(data: dict[str, Any]) -> nx.DiGraph:
    graph: nx.DiGraph = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    return graph


def _graphml_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return clean(value, 100_000)


_GRAPHML_TYPES = {bool: "boolean", int: "long", float: "double", str: "string"}


def render_graphml(report: Report) -> str:
    """GraphML of the stage graph, written directly (networkx's writer imports numpy: 0.6 s).
    GraphML holds scalars only: a list (an edge's ``evidence``) is its JSON text, ``"[102, 115]"``,
    which ``json.loads`` turns back into the list."""
    nodes, edges = graph_parts(report)
    node_rows: list[tuple[str, dict[str, str | int | float | bool]]] = [
        (n.id, {"kind": n.kind, "label": clean(n.label, 100_000), **_attrs(n.attrs)}) for n in nodes
    ]
    edge_rows: list[tuple[str, str, dict[str, str | int | float | bool]]] = [
        (e.source, e.target, {"type": e.type, "evidence": _graphml_value(e.evidence), **_attrs(e.attrs)}) for e in edges
    ]
    keys: dict[tuple[str, str], str] = {}
    for domain, rows in (("node", [r[1] for r in node_rows]), ("edge", [r[2] for r in edge_rows])):
        for attrs in rows:
            for name, value in attrs.items():
                kind = _GRAPHML_TYPES[type(value)]
                if keys.setdefault((domain, name), kind) != kind:
                    keys[(domain, name)] = "string"
    ids = {key: f"d{i}" for i, key in enumerate(keys)}
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    for (domain, name), kind in keys.items():
        out.append(f'  <key id="{ids[(domain, name)]}" for="{domain}" attr.name={quoteattr(name)} attr.type="{kind}"/>')
    out.append('  <graph edgedefault="directed">')

    def data(domain: str, attrs: dict[str, str | int | float | bool]) -> str:
        parts = []
        for name, value in attrs.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            parts.append(f'<data key="{ids[(domain, name)]}">{escape(text)}</data>')
        return "".join(parts)

    for node_id, attrs in node_rows:
        out.append(f"    <node id={quoteattr(clean(node_id, 100_000))}>{data('node', attrs)}</node>")
    for source, target, attrs in edge_rows:
        out.append(
            f"    <edge source={quoteattr(clean(source, 100_000))} target={quoteattr(clean(target, 100_000))}>"
            f"{data('edge', attrs)}</edge>"
        )
    out += ["  </graph>", "</graphml>"]
    return "\n".join(out) + "\n"


def _attrs(attrs: dict[str, Any]) -> dict[str, str | int | float | bool]:
    return {k: _graphml_value(v) for k, v in attrs.items() if v is not None and k not in ("kind", "label", "type")}


def _dot_string(text: str) -> str:
    """A DOT quoted string, line by line; the sample's control characters escaped as in the
    GraphML (a NUL or an ESC in a process path went into the file as they were)."""
    lines = (clean(line, 100_000).replace("\\", "\\\\").replace('"', '\\"') for line in text.split("\n"))
    return '"' + "\\n".join(lines) + '"'


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
