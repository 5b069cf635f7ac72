"""A layered, left-to-right layout of the stage graph, in pixels, shared by the SVG, PNG and HTML.

Stages stand in one row in the order they ran. Each artifact (file, URL, registry key, process,
any kind) stands in a column under the stage that touched it first, hung from that stage's
"trunk"; a node that only feeds the first stage (the host process) stands to its left. Edges are
routed orthogonally through free space only: down a stage's trunk to its artifacts, or out to
the gutter right of a column and along a lane above the stage row, each edge with its own gutter
and lane, so no edge runs through a node. Labels are wrapped at path and word boundaries, never
inside a name; same-named files are told apart by a parent folder (``Chrome\\...\\History``).
Pure: the report in, boxes and polylines out. Unknown node and edge kinds get a default colour.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from emulator.render.model import (
    Edge,
    Node,
    clean,
    evidence_text,
    graph_parts,
    index_by_seq,
    plural,
    shared,
    timeline,
)
from emulator.report import Report

NODE_COLORS = {
    "stage": "#c62828",
    "process": "#616161",
    "file": "#1565c0",
    "url": "#2e7d32",
    "host": "#00838f",
    "registry": "#6a1b9a",
    "environment": "#8e24aa",
    "sync": "#795548",
    "buffer": "#ef6c00",
    "memory": "#ef6c00",
    "image": "#5d4037",
}
EDGE_COLORS = {
    "loads": "#616161",
    "reads": "#1565c0",
    "decrypts_to": "#ef6c00",
    "decodes_to": "#f9a825",
    "delivers": "#9e9d24",
    "maps": "#ad1457",
    "executes": "#c62828",
    "injects": "#d81b60",
    "fetches": "#2e7d32",
    "beacons_to": "#6a1b9a",
    "exfiltrates_to": "#4e342e",
    "drops": "#00838f",
    "writes": "#00838f",
    "creates": "#795548",
    "resolves": "#0277bd",
    "creates_process": "#37474f",
    "writes_memory": "#d84315",
    "injects_into": "#d81b60",
    "hosts": "#546e7a",
    "redirects_to": "#558b2f",
}
DEFAULT_NODE_COLOR = "#757575"
DEFAULT_EDGE_COLOR = "#424242"
STAGE_KIND_TEXT = {
    "pe": "PE image",
    "shellcode": "shellcode",
    "pe_in_memory": "PE mapped in memory",
    "module": "module",
}

FONT_SIZE = 12
SMALL_FONT_SIZE = 10
TITLE_FONT_SIZE = 18
LINE_HEIGHT = 15
PAD_X = 8
PAD_Y = 6
WRAP_CHARS = 30  # wrap labels near this many characters
MAX_LABEL_LINES = 4
MAX_TOKEN_CHARS = 60  # a single name longer than this (no separator in it) is elided in the middle
MAX_ARTIFACTS_PER_COLUMN = 40  # further artifacts of one stage are summarised in one box
MARGIN = 24
TRUNK_OFFSET = 14
BRANCH = 118  # artifact boxes start this far right of their column
ARTIFACT_GAP = 12
GUTTER_PAD = 16
GUTTER_LANE = 10
COLUMN_GAP = 36
MIN_STAGE_GAP = 120  # room for the label of the arrow between two stages
LANE_GAP = 16
LEGEND_ROW = 20
MAX_TOOLTIP_EVIDENCE = 6

_BREAK_AFTER = re.compile(r"[^\\/ ?&=]*[\\/ ?&=]+|[^\\/ ?&=]+")
_NARROW = set("il.,:;'|!()[]{}/\\ jtfrI`")
_WIDE = set("mwMW@%")


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """Estimated rendered width of ``text`` in a sans-serif font (errs on the wide side)."""
    units = 0.0
    for char in text:
        if char in _NARROW:
            units += 0.36
        elif char in _WIDE:
            units += 0.9
        elif char.isupper() or char.isdigit():
            units += 0.68
        else:
            units += 0.58
    return units * size * 1.04


def _elide_token(token: str) -> str:
    if len(token) <= MAX_TOKEN_CHARS:
        return token
    keep = (MAX_TOKEN_CHARS - 1) // 2
    return token[:keep] + "\u2026" + token[-keep:]


def wrap(text: str, width: int = WRAP_CHARS, max_lines: int = MAX_LABEL_LINES) -> list[str]:
    """``text`` in lines of about ``width`` characters, broken only after a path separator, a space
    or a URL query delimiter: a name is never cut. Too many lines lose their middle (whole lines)."""
    lines: list[str] = []
    line = ""
    for token in (_elide_token(t) for t in _BREAK_AFTER.findall(text)):
        if line and len(line) + len(token.rstrip()) > width:
            lines.append(line.rstrip())
            line = token
        else:
            line += token
    if line.strip() or not lines:
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 2], "\u2026", lines[-1]]
    return lines


def _components(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", path) if p]


def short_names(paths: dict[str, str]) -> dict[str, str]:
    """A short display name per node: the last path component, with the nearest parent folder
    that tells it apart when several share that name (``Chrome\\History``, ``Edge\\...\\History``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    parts = {node: _components(path) or [path] for node, path in paths.items()}
    for node, comps in parts.items():
        groups[comps[-1].lower()].append(node)
    out: dict[str, str] = {}
    for members in groups.values():
        for node in members:
            comps = parts[node]
            base = comps[-1]
            if len(members) == 1:
                out[node] = base
                continue
            others = [{c.lower() for c in parts[o][:-1]} for o in members if o != node]
            label = paths[node]
            for depth, ancestor in enumerate(reversed(comps[:-1])):
                if all(ancestor.lower() not in other for other in others):
                    label = ancestor + ("\\" if depth == 0 else "\\\u2026\\") + base
                    break
            out[node] = label
    return out


@dataclass(frozen=True)
class Box:
    index: int
    id: str
    kind: str
    x: float
    y: float
    w: float
    h: float
    lines: tuple[str, ...]
    color: str
    tooltip: str
    bold_first: bool = False

    @property
    def mid_y(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Route:
    index: int
    source: str
    target: str
    type: str
    points: tuple[tuple[float, float], ...]
    label_at: tuple[float, float]
    color: str
    tooltip: str
    evidence: tuple[int, ...]


@dataclass(frozen=True)
class LegendItem:
    label: str
    color: str
    edge: bool
    x: float
    y: float


@dataclass
class Layout:
    title: str
    subtitle: str
    width: float
    height: float
    boxes: list[Box] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    legend: list[LegendItem] = field(default_factory=list)


def node_color(kind: str) -> str:
    return NODE_COLORS.get(kind, DEFAULT_NODE_COLOR)


def edge_color(kind: str) -> str:
    return EDGE_COLORS.get(kind, DEFAULT_EDGE_COLOR)


def _labels(nodes: list[Node]) -> dict[str, list[str]]:
    paths = {n.id: clean(n.label, 1000) for n in nodes if n.kind in ("file", "registry")}
    shorts = short_names(paths)
    out: dict[str, list[str]] = {}
    for node in nodes:
        label = clean(node.label, 1000)
        if node.kind == "stage":
            kind = str(node.attrs.get("stage_kind", ""))
            lines = wrap(f"{node.id}  {label}", WRAP_CHARS, 2) + [STAGE_KIND_TEXT.get(kind, clean(kind, 40))]
        elif node.id in shorts:
            lines = wrap(shorts[node.id])
        elif node.kind == "url" and "://" in label:
            scheme, rest = label.split("://", 1)
            host, slash, path = rest.partition("/")
            lines = [host] + (wrap(slash + path, WRAP_CHARS, MAX_LABEL_LINES - 1) if path else [])
        else:
            lines = wrap(label)
        out[node.id] = [line for line in lines if line] or ["?"]
    return out


def _box_size(lines: list[str], bold_first: bool) -> tuple[float, float]:
    widths = [text_width(line) * (1.08 if bold_first and i == 0 else 1.0) for i, line in enumerate(lines)]
    return max(widths) + 2 * PAD_X, len(lines) * LINE_HEIGHT + 2 * PAD_Y


def build_layout(report: Report) -> Layout:
    """Where every box, route and legend item of the stage graph goes. Inside
    :func:`emulator.render.model.timeline_shared` it is built once per report (the SVG, PNG, DOT
    and the HTML report draw the same layout): callers must not change it."""
    return shared("layout", _build_layout, report)


def _build_layout(report: Report) -> Layout:
    nodes, edges = graph_parts(report)
    rows = timeline(report)
    index = index_by_seq(rows)
    by_id = {n.id: n for n in nodes}
    stages = sorted((n for n in nodes if n.kind == "stage"), key=lambda n: (n.attrs.get("order", 0), n.id))
    column_of: dict[str, int] = {s.id: i for i, s in enumerate(stages)}
    labels = _labels(nodes)

    # Where each artifact goes: beside the stage that touched it first; pure feeders of the first
    # stage stand left of it (column -1).
    first_touch: dict[str, tuple[int, int]] = {}
    for e in edges:
        for end, other in ((e.source, e.target), (e.target, e.source)):
            if end in column_of or other not in column_of:
                continue
            touch = (min(e.evidence) if e.evidence else 1 << 60, column_of[other])
            if end not in first_touch or touch < first_touch[end]:
                first_touch[end] = touch
    in_deg: dict[str, int] = defaultdict(int)
    out_targets: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        in_deg[e.target] += 1
        out_targets[e.source].add(e.target)
    sources: list[str] = []
    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        if node.id in column_of:
            continue
        feeds = out_targets.get(node.id, set())
        if stages and in_deg[node.id] == 0 and feeds and feeds <= set(column_of) and stages[0].id in feeds:
            sources.append(node.id)
        elif node.id in first_touch:
            columns[first_touch[node.id][1]].append(node.id)
    placed = set(column_of) | set(sources) | {n for c in columns.values() for n in c}
    # Nodes linked only to other artifacts: beside a placed neighbour, else in the first column.
    pending = [n.id for n in nodes if n.id not in placed]
    for _ in range(len(pending) + 1):
        if not pending:
            break
        still = []
        for node_id in pending:
            neighbour_cols = [
                col
                for e in edges
                for other in ((e.target,) if e.source == node_id else (e.source,) if e.target == node_id else ())
                for col, members in columns.items()
                if other in members
            ]
            if neighbour_cols:
                columns[min(neighbour_cols)].append(node_id)
            else:
                still.append(node_id)
        if len(still) == len(pending):
            columns[0].extend(still)
            break
        pending = still
    # Order inside a column by first evidence; cap the number of boxes per column.
    overflow: dict[int, list[str]] = {}
    for col, members in columns.items():
        members.sort(key=lambda n: (first_touch.get(n, (1 << 60, 0))[0], labels[n]))
        if len(members) > MAX_ARTIFACTS_PER_COLUMN:
            overflow[col] = members[MAX_ARTIFACTS_PER_COLUMN - 1 :]
            columns[col] = members[: MAX_ARTIFACTS_PER_COLUMN - 1]
    hidden: dict[str, str] = {}
    for col, extra in overflow.items():
        more_id = f"more:{col}"
        extra_kinds = sorted({by_id[n].kind for n in extra})
        labels[more_id] = [f"+ {plural(len(extra), 'more node')}", ", ".join(extra_kinds)]
        by_id[more_id] = Node(more_id, "more", f"{len(extra)} more", {"members": len(extra)})
        columns[col].append(more_id)
        for n in extra:
            hidden[n] = more_id

    def shown(node_id: str) -> str:
        return hidden.get(node_id, node_id)

    sizes = {n: _box_size(labels[n], by_id[n].kind == "stage") for n in labels if n in by_id}

    # Classify edges into routes (merging edges that now join the same shown boxes).
    route_kind: dict[str, str] = {}
    artifact_col: dict[str, int] = {n: c for c, members in columns.items() for n in members}
    artifact_col.update({n: -1 for n in sources})
    merged: dict[tuple[str, str, str], list[Edge]] = defaultdict(list)
    for e in edges:
        s, t = shown(e.source), shown(e.target)
        if s == t:
            continue
        merged[(s, t, e.type)].append(e)
    route_keys = list(merged)
    for key in route_keys:
        s, t, _ = key
        if s in column_of and t in column_of and column_of[t] == column_of[s] + 1:
            route_kind[str(key)] = "adjacent"
        elif s in sources and t == (stages[0].id if stages else None):
            route_kind[str(key)] = "source"
        elif (s in column_of and artifact_col.get(t) == column_of[s]) or (
            t in column_of and artifact_col.get(s) == column_of[t]
        ):
            route_kind[str(key)] = "trunk"
        else:
            route_kind[str(key)] = "channel"
    channel = [k for k in route_keys if route_kind[str(k)] == "channel"]
    gutter_lanes: dict[tuple[int, str], int] = {}  # (column, edge key) -> lane number in that gutter
    gutter_count: dict[int, int] = defaultdict(int)
    for key in channel:
        for end in key[:2]:
            if end in artifact_col:
                col = artifact_col[end]
                gutter_lanes[(col, str(key) + end)] = gutter_count[col]
                gutter_count[col] += 1

    # X positions of the columns.
    col_x: dict[int, float] = {}
    gutter_x: dict[int, float] = {}
    x = float(MARGIN)
    order = ([-1] if sources else []) + list(range(max(len(stages), 1 if columns else 0)))
    stage_w = {s.id: sizes[s.id][0] for s in stages}
    for col in order:
        col_x[col] = x
        if col == -1:
            content = max(sizes[n][0] for n in sources)
        else:
            content = stage_w[stages[col].id] if col < len(stages) else 0.0
            for n in columns.get(col, []):
                content = max(content, (BRANCH if stages else 0) + sizes[n][0])
        gutter_x[col] = x + content + GUTTER_PAD
        next_x = gutter_x[col] + gutter_count[col] * GUTTER_LANE + COLUMN_GAP
        if col >= 0 and col < len(stages):
            next_x = max(next_x, x + stage_w[stages[col].id] + MIN_STAGE_GAP)
        elif col == -1:
            next_x = max(next_x, gutter_x[col] + MIN_STAGE_GAP / 2)
        x = next_x
    width = x - COLUMN_GAP + MARGIN

    # Title, legend, lanes, stage row: y positions.
    title = clean(report.scenario or report.target.name, 120) or "chainreplay"
    outcome = report.outcome.status
    subtitle = (
        f"stage graph: {plural(len(stages), 'stage')}, {plural(len(nodes) - len(stages), 'artifact')}, "
        f"outcome {outcome}"
    )
    y: float = MARGIN + TITLE_FONT_SIZE + 8 + SMALL_FONT_SIZE + 10
    legend: list[LegendItem] = []
    used_nodes = list(dict.fromkeys(by_id[n].kind for n in sizes if n in by_id))
    used_edges = list(dict.fromkeys(k[2] for k in route_keys))
    lx = float(MARGIN)
    width = max(width, 640.0)
    entries = [(k, node_color(k), False) for k in used_nodes] + [(k, edge_color(k), True) for k in used_edges]
    for label, color, is_edge in entries:
        item_w = 26 + text_width(label, SMALL_FONT_SIZE) + 14
        if lx + item_w > width - MARGIN:
            lx = float(MARGIN)
            y += LEGEND_ROW
        legend.append(LegendItem(label, color, is_edge, lx, y))
        lx += item_w
    y += LEGEND_ROW + 10
    lane_y = {str(key): y + i * LANE_GAP for i, key in enumerate(channel)}
    stage_row = y + len(channel) * LANE_GAP + (14 if channel else 0)
    row_h = max([sizes[s.id][1] for s in stages] + [0.0])

    boxes: dict[str, Box] = {}
    tooltips = _tooltips(report, nodes, edges, index)

    def place(node_id: str, bx: float, by: float) -> None:
        w, h = sizes[node_id]
        node = by_id[node_id]
        tip = tooltips.get(node_id) or f"{node.kind}: {' '.join(labels[node_id])}"
        boxes[node_id] = Box(
            len(boxes),
            node_id,
            node.kind,
            bx,
            by,
            w,
            h,
            tuple(labels[node_id]),
            node_color(node.kind),
            tip,
            node.kind == "stage",
        )

    for stage_node in stages:
        place(stage_node.id, col_x[column_of[stage_node.id]], stage_row)
    sy = stage_row
    for source in sources:
        place(source, col_x[-1], sy)
        sy += sizes[source][1] + ARTIFACT_GAP
    bottom = max(stage_row + row_h, sy)
    art_top = stage_row + row_h + 26
    for col, members in sorted(columns.items()):
        ay = art_top if stages else stage_row
        bx = col_x.get(col, float(MARGIN)) + (BRANCH if stages else 0)
        for n in members:
            place(n, bx, ay)
            ay += sizes[n][1] + ARTIFACT_GAP
        bottom = max(bottom, ay)
    height = bottom + MARGIN

    # Routes.
    stage_ports: dict[str, int] = defaultdict(int)
    label_rows: dict[tuple[str, str], int] = defaultdict(int)
    routes: list[Route] = []
    for key in route_keys:
        s, t, etype = key
        kind = route_kind[str(key)]
        a, b = boxes[s], boxes[t]
        if kind == "adjacent":
            yy = min(a.mid_y, b.mid_y)
            pts = [(a.x + a.w, yy), (b.x, yy)]
            label_at = ((a.x + a.w + b.x) / 2, yy - 4)
        elif kind == "source":
            elbow = (a.x + a.w + b.x) / 2
            pts = [(a.x + a.w, a.mid_y), (elbow, a.mid_y), (elbow, b.mid_y), (b.x, b.mid_y)]
            label_at = ((a.x + a.w + elbow) / 2, a.mid_y - 4)
        elif kind == "trunk":
            stage, art = (a, b) if s in column_of else (b, a)
            tx = stage.x + TRUNK_OFFSET
            pts = [(tx, stage.y + stage.h), (tx, art.mid_y), (art.x, art.mid_y)]
            if stage is b:
                pts.reverse()
            label_at = (tx + (art.x - tx) / 2, art.mid_y - 4)
        else:
            ly = lane_y[str(key)]

            def port(box: Box, end: str, ly: float = ly, key: tuple[str, str, str] = key) -> list[tuple[float, float]]:
                if box.id in column_of:
                    k = stage_ports[box.id]
                    stage_ports[box.id] += 1
                    offset = (k // 2 + 1) * 8 * (1 if k % 2 == 0 else -1)
                    px = min(max(box.x + box.w / 2 + offset, box.x + 6), box.x + box.w - 6)
                    return [(px, box.y), (px, ly)]
                col = artifact_col.get(box.id, 0)
                gx = gutter_x.get(col, box.x + box.w + GUTTER_PAD) + gutter_lanes.get((col, str(key) + end), 0) * (
                    GUTTER_LANE
                )
                return [(box.x + box.w, box.mid_y), (gx, box.mid_y), (gx, ly)]

            out_pts = port(a, s)
            in_pts = port(b, t)
            pts = out_pts + list(reversed(in_pts))
            label_at = ((out_pts[-1][0] + in_pts[-1][0]) / 2, ly - 4)
        # Relations between the same two nodes share a path (creates_process, writes_memory,
        # injects_into): their labels are stacked above it, not printed over one another.
        shared_path = label_rows[(s, t)]
        label_rows[(s, t)] += 1
        label_at = (label_at[0], label_at[1] - shared_path * (SMALL_FONT_SIZE + 3))
        group = merged[key]
        evidence = tuple(sorted({seq for e in group for seq in e.evidence}))
        src_name = " ".join(labels[s])
        dst_name = " ".join(labels[t])
        lines = [f"{src_name}  --{etype}-->  {dst_name}"]
        lines += evidence_text(index, evidence, MAX_TOOLTIP_EVIDENCE)
        routes.append(
            Route(len(routes), s, t, etype, tuple(pts), label_at, edge_color(etype), "\n".join(lines), evidence)
        )
    ordered = sorted(boxes.values(), key=lambda b: b.index)
    return Layout(title, subtitle, width, height, ordered, routes, legend)


def _tooltips(report: Report, nodes: list[Node], edges: list[Edge], index: dict) -> dict[str, str]:
    stages = {s.id: s for s in report.stages}
    touching: dict[str, list[Edge]] = defaultdict(list)
    for e in edges:
        touching[e.source].append(e)
        touching[e.target].append(e)
    out: dict[str, str] = {}
    for node in nodes:
        lines = [f"{node.kind}: {clean(node.label, 400)}"]
        stage = stages.get(node.id)
        if stage is not None:
            origin = stage.origin
            lines = [
                f"stage {stage.id}: {clean(stage.name, 200)} ({stage.kind}, {plural(stage.size, 'byte')})",
                f"sha256 {stage.sha256}",
                f"came from {origin.type} {clean(origin.ref, 200)} ({origin.how}"
                + (f" via {origin.via_api}" if origin.via_api else "")
                + ")",
                f"events {stage.seq_range[0]}..{stage.seq_range[1]}",
            ]
        for e in touching[node.id][:8]:
            other = e.target if e.source == node.id else e.source
            arrow = f"--{e.type}--> {other}" if e.source == node.id else f"<--{e.type}-- {other}"
            lines.append(clean(arrow, 200))
            lines += ["   " + t for t in evidence_text(index, e.evidence, 3)]
        out[node.id] = "\n".join(lines)
    return out
