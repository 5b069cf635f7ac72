"""OUTDIR/report.html: one self-contained page (no CDN, no font, no network) a newcomer can read.

The outcome and a summary, the chain told step by step, the stage graph inline (nodes and edges
clickable for their evidence), events per stage over virtual time, a paged, filterable timeline
of every event (rendered in the browser from embedded JSON, so a 100,000-event trace stays a few
megabytes and one page of rows in the DOM), every network exchange with its request and response,
ATT&CK techniques linked to their evidence, IOCs (and YARA matches when the report has them),
files, registry and dropped files. Pure: the report (and saved bodies) in, one string out.
Every sample string is cleaned of control characters and HTML-escaped; the embedded JSON has
``<``, ``>`` and ``&`` escaped so no string can close its script element.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from importlib import resources
from typing import Any

from emulator.render.layout import STAGE_KIND_TEXT, build_layout
from emulator.render.model import (
    EVENT_KINDS,
    api_calls_cut,
    clean,
    graph_parts,
    hosts_contacted,
    iocs,
    plural,
    timeline,
    virtual_times,
)
from emulator.render.narrate import Step, body_preview, is_header, narrate
from emulator.render.svg import render_svg
from emulator.report import Report

BODY_TEXT_PREVIEW = 2000  # characters of a text body shown
BODY_HEX_PREVIEW = 256  # bytes of a binary body shown as hex
MAX_TABLE_ROWS = 500  # rows of the files/registry/IOC tables; the timeline has everything
MAX_EXCHANGES = 200  # network exchanges shown in full
PLOT_BINS = 60
PLOT_GAP_MS = 1000  # a stretch of virtual time longer than this with no event is cut out of the plot
STAGE_PALETTE = ("#c62828", "#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e", "#9e9d24")
ATTACK_URL = "https://attack.mitre.org/techniques/"


def _e(text: object, limit: int = 4000) -> str:
    return escape(clean(text, limit), quote=True)


def _asset(name: str) -> str:
    return resources.files("emulator.render").joinpath("static", name).read_text(encoding="utf-8")


def _json_script(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ev_links(seqs: list[int] | tuple[int, ...], limit: int = 12) -> str:
    seqs = sorted(set(seqs))
    links = "".join(f'<a class="ev" href="#ev-{s}" data-seq="{s}">[{s}]</a>' for s in seqs[:limit])
    return links + (f' <span class="muted">+{len(seqs) - limit}</span>' if len(seqs) > limit else "")


def _duration(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.3f} s"


def hex_preview(data: bytes, limit: int = BODY_HEX_PREVIEW) -> str:
    lines = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off : off + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {chunk.hex(' '):<47}  {text}")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit:,} more bytes")
    return "\n".join(lines)


def _body(data: bytes | None, size: int, sha256: str | None, folder: str = "network") -> str:
    if not size:
        return '<p class="muted">no body</p>'
    saved = f'<a href="{folder}/{escape(sha256)}.bin">{folder}/{escape(sha256[:16])}....bin</a>' if sha256 else ""
    head = f'<p class="muted">{plural(size, "byte")}{" &middot; saved as " + saved if saved else ""}</p>'
    if data is None:
        return head + '<p class="muted">body not available beside this report</p>'
    text = body_preview(data, BODY_TEXT_PREVIEW)
    if text is not None:
        # Line breaks stay line breaks in the <pre>; every other control character is escaped.
        lines = data[: BODY_TEXT_PREVIEW * 4].decode("utf-8", "replace").split("\n")
        shown = "\n".join(clean(line.removesuffix("\r"), BODY_TEXT_PREVIEW) for line in lines)[:BODY_TEXT_PREVIEW]
        return head + f'<pre class="body">{escape(shown)}</pre>'
    return head + f'<pre class="body">{escape(hex_preview(data))}</pre>'


def _headers(headers: dict[str, str]) -> str:
    if not headers:
        return '<p class="muted">no headers</p>'
    rows = "".join(f'<tr><th>{_e(k, 200)}</th><td class="mono">{_e(v, 2000)}</td></tr>' for k, v in headers.items())
    return f"<table>{rows}</table>"


def events_plot(report: Report, rows: list[tuple[int, int, int]], stage_ids: list[str]) -> str:
    """Stacked bars of events per stage over virtual time, as inline SVG. ``rows`` are
    (virtual ms, stage index, kind index). Long idle stretches (sleeps) are cut out of the axis
    and marked, so a week's sleep does not squeeze all the activity into two lines."""
    if not rows:
        return '<p class="muted">no events</p>'
    times = sorted({t for t, _, _ in rows})
    segments: list[list[int]] = [[times[0], times[0]]]
    for t in times[1:]:
        if t - segments[-1][1] > PLOT_GAP_MS:
            segments.append([t, t])
        else:
            segments[-1][1] = t
    width, height, left, top, bottom = 960.0, 260.0, 50.0, 14.0, 44.0
    gap_w = 46.0
    plot_w = width - left - 10 - gap_w * (len(segments) - 1)
    spans = [max(s[1] - s[0], 1) for s in segments]
    total = sum(spans)
    seg_w = [max(plot_w * sp / total, 40.0) for sp in spans]
    scale = plot_w / sum(seg_w)
    seg_w = [w * scale for w in seg_w]
    bins_per = [max(1, round(PLOT_BINS * w / plot_w)) for w in seg_w]
    counts: list[list[list[int]]] = [[[0] * len(stage_ids) for _ in range(b)] for b in bins_per]
    seg_index = 0
    for t, stage, _ in sorted(rows):
        while t > segments[seg_index][1]:
            seg_index += 1
        start, end = segments[seg_index]
        nb = bins_per[seg_index]
        b = min(nb - 1, int((t - start) / max(end - start, 1) * nb)) if end > start else 0
        if stage >= 0:
            counts[seg_index][b][stage] += 1
    peak = max((sum(c) for seg in counts for c in seg), default=1) or 1
    plot_h = height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11" '
        'role="img" aria-label="events per stage over virtual time">'
    ]
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#9e9e9e"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9e9e9e"/>'
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{peak}</text>'
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>'
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        'text-anchor="middle">events</text>'
    )
    x = left
    for i, seg in enumerate(segments):
        w = seg_w[i]
        bw = w / bins_per[i]
        for b, stack in enumerate(counts[i]):
            y = top + plot_h
            for s, n in enumerate(stack):
                if not n:
                    continue
                h = plot_h * n / peak
                y -= h
                out.append(
                    f'<rect x="{x + b * bw:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" '
                    f'fill="{STAGE_PALETTE[s % len(STAGE_PALETTE)]}"><title>{escape(stage_ids[s])}: {n} events'
                    "</title></rect>"
                )
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}">+{escape(_duration(seg[0]))}</text>')
        x += w
        if i + 1 < len(segments):
            idle = segments[i + 1][0] - seg[1]
            mid = x + gap_w / 2
            out.append(
                f'<rect x="{x + 4:.1f}" y="{top}" width="{gap_w - 8:.1f}" height="{plot_h}" fill="#eceff1"/>'
                f'<text x="{mid:.1f}" y="{top + plot_h / 2}" text-anchor="middle" fill="#455a64">idle</text>'
                f'<text x="{mid:.1f}" y="{top + plot_h / 2 + 14}" text-anchor="middle" fill="#455a64">'
                f"{escape(_duration(idle))}</text>"
            )
            x += gap_w
    out.append(f'<text x="{width - 10}" y="{top + plot_h + 14}" text-anchor="end">+{_duration(times[-1])}</text>')
    lx = left
    for s, sid in enumerate(stage_ids):
        out.append(
            f'<rect x="{lx:.0f}" y="{height - 16}" width="12" height="10" '
            f'fill="{STAGE_PALETTE[s % len(STAGE_PALETTE)]}"/>'
            f'<text x="{lx + 16:.0f}" y="{height - 7}">{escape(sid)}</text>'
        )
        lx += 30 + 7 * len(sid)
    out.append(
        f'<text x="{width - 10}" y="{height - 7}" text-anchor="end" fill="#616161">virtual time since the start '
        "(idle stretches cut out)</text></svg>"
    )
    return "".join(out)


def _story(steps: list[Step]) -> str:
    out = ['<div class="story">']
    in_list = False
    for step in steps:
        header = is_header(step)
        if header:
            if in_list:
                out.append("</ol>")
                in_list = False
            out.append(f'<div class="stage-title">{escape(step.title)}</div>')
            out += [f"<div>{escape(line)}</div>" for line in step.lines]
            continue
        if not in_list:
            out.append("<ol>")
            in_list = True
        first = escape(step.lines[0] if step.lines else step.title)
        more = "".join(f'<div class="muted">{escape(line.strip())}</div>' for line in step.lines[1:])
        out.append(f"<li>{first}{more}</li>")
    if in_list:
        out.append("</ol>")
    out.append("</div>")
    return "".join(out)


def _table(headers: list[str], rows: list[list[str]], total: int) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    more = f'<p class="muted">{total - len(rows):,} more rows in report.json</p>' if total > len(rows) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _extra_findings(report: Report) -> str:
    """YARA matches when the report has them (``run --yara``), shown field by field whatever the
    match records hold, so a newer report shape still shows."""
    scan = getattr(report, "yara", None)
    if scan is None:
        return ""
    matches = getattr(scan, "matches", scan if isinstance(scan, list) else [])
    items = [m.model_dump() if hasattr(m, "model_dump") else m for m in matches]
    keys = list(dict.fromkeys(k for item in items if isinstance(item, dict) for k in item))
    rows = [
        [
            _e(", ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v), 300)
            for v in (item.get(k) for k in keys)
        ]
        for item in items[:MAX_TABLE_ROWS]
        if isinstance(item, dict)
    ]
    head = ""
    if hasattr(scan, "rules"):
        head = (
            f'<p class="muted">rules {_e(getattr(scan, "rules", ""), 300)}, '
            f"{plural(int(getattr(scan, 'scanned', 0) or 0), 'buffer')} scanned, "
            f"{plural(len(items), 'match', 'matches')}</p>"
        )
    return f'<section id="yara"><h2>YARA matches</h2>{head}{_table(keys, rows, len(items))}</section>'


def render_html(report: Report, bodies: Mapping[str, bytes] | None = None) -> str:
    bodies = bodies or {}
    layout = build_layout(report)
    rows = timeline(report)
    times = virtual_times(report, (r.seq for r in rows))
    stage_ids = [s.id for s in report.stages]
    stage_index = {sid: i for i, sid in enumerate(stage_ids)}
    kind_index = {k: i for i, k in enumerate(EVENT_KINDS)}
    compact: list[tuple[int, int, int, int, str]] = [
        (r.seq, stage_index.get(r.stage, -1), kind_index[r.kind], times[r.seq], r.text) for r in rows
    ]
    nodes, edges = graph_parts(report)
    node_by_id = {n.id: n for n in nodes}
    evidence_of: dict[str, set[int]] = {}
    for e in edges:
        evidence_of.setdefault(e.source, set()).update(e.evidence)
        evidence_of.setdefault(e.target, set()).update(e.evidence)
    for s in report.stages:
        evidence_of.setdefault(s.id, set()).update(s.origin.evidence)
    data = {
        "stages": [{"id": s.id, "name": clean(s.name, 120)} for s in report.stages],
        "kinds": list(EVENT_KINDS),
        "events": compact,
        "nodes": [
            {
                "id": clean(b.id, 400),
                "title": clean(node_by_id[b.id].label, 600) if b.id in node_by_id else " ".join(b.lines),
                "kind": b.kind,
                "tip": b.tooltip,
                "evidence": sorted(evidence_of.get(b.id, set())),
            }
            for b in layout.boxes
        ],
        "edges": [
            {"title": r.tooltip.split("\n", 1)[0], "kind": r.type, "tip": r.tooltip, "evidence": list(r.evidence)}
            for r in layout.routes
        ],
    }
    outcome = report.outcome
    hosts = hosts_contacted(report)
    techniques = list(dict.fromkeys(t.technique for t in report.attack))
    title = clean(report.scenario or report.target.name, 120)
    badge = "completed" if outcome.status == "completed" else "bad"
    steps = narrate(report, bodies)
    kind_counts: dict[str, int] = {}
    for r in rows:
        kind_counts[r.kind] = kind_counts.get(r.kind, 0) + 1

    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
    )
    add(f"<title>{escape(title)}: chainreplay report</title><style>{_asset('report.css')}</style></head><body>")
    add(
        f'<header><h1>{escape(title)}</h1><div class="meta">chainreplay {_e(report.tool.version)} '
        f"({_e(report.tool.engine)}, {_e(report.tool.mode)} mode) &middot; target {_e(report.target.path, 300)} "
        f'&middot; sha256 <span class="mono">{_e(report.target.sha256)}</span> &middot; seed {report.stats.seed} '
        "</div></header>"
    )
    add(
        '<nav><a href="#summary">Summary</a><a href="#story">Step by step</a><a href="#graph">Stage graph</a>'
        '<a href="#stages">Stages</a><a href="#activity">Activity</a><a href="#timeline-section">Timeline</a>'
        '<a href="#network">Network</a><a href="#attack">ATT&amp;CK</a><a href="#notes">Notes</a>'
        '<a href="#iocs">IOCs</a>'
        + ('<a href="#yara">YARA</a>' if getattr(report, "yara", None) is not None else "")
        + '<a href="#artifacts">Files &amp; registry</a></nav><main>'
    )
    detail = f": {_e(outcome.detail, 600)}" if outcome.detail else ""
    limit = f" (limit {_e(outcome.limit)})" if outcome.limit else ""
    cards = [
        (len(report.stages), "stages"),
        (report.stats.api_calls, "API calls"),
        (len(report.network), "network exchanges"),
        (len(hosts), "hosts contacted"),
        (len(techniques), "ATT&CK techniques"),
        (_duration(report.virtual_time.skipped_ms), "virtual time skipped"),
    ]
    add(
        f'<section id="summary"><h2>Outcome <span class="badge {badge}" id="outcome">{_e(outcome.status)}</span></h2>'
        f'<p>{_e(outcome.status)}{detail}{limit}</p><div class="cards">'
        + "".join(
            f'<div class="card"><div class="n">{n if isinstance(n, str) else f"{n:,}"}</div>'
            f'<div class="l">{escape(label)}</div></div>'
            for n, label in cards
        )
        + "</div>"
    )
    chain = " &rarr; ".join(f"<b>{escape(s.id)}</b> {_e(s.name, 80)}" for s in report.stages) or "no stage ran"
    add(f"<h3>Chain</h3><p>{chain}</p>")
    add(f"<h3>Hosts contacted</h3><p>{', '.join(escape(h) for h in hosts) or 'none'}</p>")
    add(
        "<h3>Techniques</h3><p>"
        + (", ".join(f"{escape(t.technique)} {_e(t.name, 120)}" for t in report.attack[:40]) or "none")
        + "</p></section>"
    )
    add(f'<section id="story"><h2>What happened, step by step</h2>{_story(steps)}</section>')
    add(
        '<section id="graph"><h2>Stage graph</h2><p class="muted">Stages run left to right; each artifact hangs '
        "under the stage that touched it first. Click a node or an arrow for its evidence; hover for a summary. "
        '<label><input type="checkbox" id="graph-zoom"> actual size</label>'
        '</p><div class="graph-wrap"><div class="graph-scroll">'
        + render_svg(layout, link_prefix="#", standalone=False)
        + '</div><div id="details"><h3>Details</h3><p class="muted">Click a node or an edge of the graph.</p>'
        "</div></div></section>"
    )
    stage_rows = []
    for s in report.stages:
        origin = s.origin
        stage_rows.append(
            [
                f"<b>{escape(s.id)}</b>",
                _e(s.name, 200),
                escape(STAGE_KIND_TEXT.get(s.kind, s.kind)),
                f'{_e(origin.how)} from {_e(origin.type)} <span class="mono">{_e(origin.ref, 400)}</span>'
                + (f" via {_e(origin.via_api)}" if origin.via_api else "")
                + " "
                + _ev_links(origin.evidence),
                f"{s.size:,}",
                f'<a class="mono" href="{escape(s.file)}">{escape(s.sha256[:16])}...</a>',
                f"{s.seq_range[0]}..{s.seq_range[1]}",
            ]
        )
    add(
        '<section id="stages"><h2>Stages</h2>'
        + _table(
            ["id", "name", "kind", "came from", "bytes", "sha256 (saved bytes)", "events"], stage_rows, len(stage_rows)
        )
        + "</section>"
    )
    add(
        '<section id="activity" class="plot"><h2>Events per stage over virtual time</h2>'
        + events_plot(report, [(c[3] // 1000, c[1], c[2]) for c in compact], stage_ids)
        + "</section>"
    )
    stage_boxes = "".join(
        f'<label><input type="checkbox" name="tl-stage" value="{i}" checked> {escape(sid)}</label>'
        for i, sid in enumerate(stage_ids)
    ) + ('<label><input type="checkbox" name="tl-stage" value="-1" checked> (none)</label>')
    kind_boxes = "".join(
        f'<label><input type="checkbox" name="tl-kind" value="{i}" checked> {escape(k)} '
        f'<span class="muted">({kind_counts.get(k, 0):,})</span></label>'
        for i, k in enumerate(EVENT_KINDS)
    )
    add(
        '<section id="timeline-section"><h2>Timeline</h2><div class="filters">'
        f"<fieldset><legend>stage</legend>{stage_boxes}</fieldset>"
        f"<fieldset><legend>kind</legend>{kind_boxes}</fieldset>"
        '<label>search <input type="search" id="tl-search" placeholder="text in the event"></label>'
        '<button id="tl-all" type="button">show all</button></div>'
        '<div class="pager"><button id="tl-prev" type="button">&larr; previous</button>'
        '<button id="tl-next" type="button">next &rarr;</button><span id="tl-info" class="muted"></span></div>'
        '<table id="timeline"><thead><tr><th>seq</th><th>virtual time</th><th>stage</th><th>kind</th>'
        "<th>event</th></tr></thead><tbody></tbody></table>"
    )
    left_out = api_calls_cut(report)
    if left_out:
        add(
            f'<p class="muted">The timeline shows the first {len(report.api_calls) - left_out:,} API calls; '
            f"the {left_out:,} after them are in report.json (every other event is shown).</p>"
        )
    add("</section>")
    add('<section id="network"><h2>Network</h2>')
    if not report.network:
        add('<p class="muted">no network activity</p>')
    for n in report.network[:MAX_EXCHANGES]:
        status = "blocked (no responder matched)" if n.blocked else f"{n.response.status}"
        what = _e(n.url or f"{n.host}:{n.port}", 1000)
        add(
            f'<div class="exchange" id="net-{n.seq}"><div class="rq">{_ev_links([n.seq])} {escape(n.stage)} '
            f"{_e(n.kind)} {_e(n.method or '')} {what} &rarr; {escape(status)} "
            f'<span class="muted">({_e(n.responder)} responder)</span></div>'
            + (f'<p class="muted">error: {_e(n.error)}</p>' if n.error else "")
            + '<div class="cols"><div><h3>Request</h3>'
            + _headers(n.request.headers)
            + _body(bodies.get(n.request.sha256 or ""), n.request.size, n.request.sha256)
            + "</div><div><h3>Response</h3>"
            + _headers(n.response.headers)
            + _body(bodies.get(n.response.sha256 or ""), n.response.size, n.response.sha256)
            + "</div></div></div>"
        )
    if len(report.network) > MAX_EXCHANGES:
        add(f'<p class="muted">{len(report.network) - MAX_EXCHANGES:,} more exchanges in the timeline</p>')
    add("</section>")
    attack_rows = [
        [
            f'<a href="{ATTACK_URL}{escape(t.technique.replace(".", "/"))}/" rel="noreferrer">'
            f"{escape(t.technique)}</a>",
            _e(t.name, 200),
            escape(t.stage),
            _ev_links(t.evidence),
        ]
        for t in report.attack
    ]
    add(
        '<section id="attack"><h2>ATT&amp;CK techniques</h2>'
        + _table(["technique", "name", "stage", "evidence"], attack_rows, len(attack_rows))
        + "</section>"
    )
    ioc_list = iocs(report)
    ioc_rows = [
        [
            f'<span class="mono">{escape(i["value"])}</span>',
            escape(i["type"]),
            escape(i["stage"]),
            _ev_links([int(s) for s in i["evidence"].split(",") if s]),
            escape(i["description"]),
        ]
        for i in ioc_list[:MAX_TABLE_ROWS]
    ]
    note_rows = [
        [_ev_links([n.seq]), escape(n.stage), escape(n.what), f'<span class="mono">{_e(n.detail, 600)}</span>']
        for n in report.notes[:MAX_TABLE_ROWS]
    ]
    add(
        '<section id="notes"><h2>Notes</h2><p class="muted">What the emulator saw the chain do that it calls out '
        "(patched module code, direct and indirect system calls, a DLL search-order hijack...), or did that the "
        "sample did not ask for.</p>"
        + _table(["event", "stage", "what", "detail"], note_rows, len(report.notes))
        + "</section>"
    )
    add(
        '<section id="iocs"><h2>IOCs</h2><p class="muted">Indicators derived from this replay (the same values as '
        "iocs.csv where the exports are written).</p>"
        + _table(["value", "type", "stage", "evidence", "what"], ioc_rows, len(ioc_list))
        + "</section>"
    )
    add(_extra_findings(report))
    file_rows = [
        [
            _ev_links([f.seq]),
            escape(f.stage),
            escape(f.op),
            f'<span class="mono">{_e(f.path, 600)}</span>',
            "" if f.size is None else f"{f.size:,}",
        ]
        for f in report.files[:MAX_TABLE_ROWS]
    ]
    reg_rows = [
        [
            _ev_links([r.seq]),
            escape(r.stage),
            escape(r.op),
            f'<span class="mono">{_e(r.path, 600)}</span>',
            _e(r.value_name or "", 200),
            f'<span class="mono">{_e(r.value or "", 600)}</span>',
        ]
        for r in report.registry[:MAX_TABLE_ROWS]
    ]
    dropped_rows = [
        [
            f'<span class="mono">{_e(d.path, 600)}</span>',
            f"{d.size:,}",
            f'<a class="mono" href="{escape(d.stored_as)}">{escape(d.sha256[:16])}...</a>'
            if d.stored_as
            else escape(d.sha256[:16]),
        ]
        for d in report.dropped[:MAX_TABLE_ROWS]
    ]
    add(
        '<section id="artifacts"><h2>Files, registry and dropped files</h2><h3>Files</h3>'
        + _table(["event", "stage", "op", "path", "bytes"], file_rows, len(report.files))
        + "<h3>Registry</h3>"
        + _table(["event", "stage", "op", "key", "value name", "value"], reg_rows, len(report.registry))
        + "<h3>Dropped files</h3>"
        + _table(["guest path", "bytes", "saved as"], dropped_rows, len(report.dropped))
        + "</section>"
    )
    c = report.containment
    add(
        f'<section id="containment"><h2>Containment</h2><p>{_e(c.isolation)}: '
        f"{plural(c.host_connects_refused, 'host connect')} refused, "
        f"{plural(c.host_name_lookups_refused, 'host name lookup')} refused, "
        f"{plural(c.writes_outside_outdir_refused, 'write')} outside the output folder refused, "
        f"{plural(c.host_processes_refused, 'host process', 'host processes')} refused.</p>"
        + "".join(f'<p class="mono">{_e(v, 400)}</p>' for v in c.violations[:20])
        + "</section></main>"
    )
    add(f'<script id="report-data" type="application/json">{_json_script(data)}</script>')
    add(f"<script>{_asset('report.js')}</script></body></html>\n")
    return "".join(parts)
