"""The terminal summary of a replay: pure, the report in, ``rich`` renderables out (the CLI prints).

Stages with where each came from, network, files, registry and dropped files touched,
techniques, and where the outputs are. Long paths and URLs lose their middle, never their end
(``C:\\Users\\...\\app\\d3dcompiler_47.dll``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from emulator.render.layout import STAGE_KIND_TEXT
from emulator.render.model import MAX_TIMELINE_API_CALLS, api_calls_cut, clean, graph_parts, plural
from emulator.report import Report

PATH_WIDTH = 60  # paths and URLs longer than this lose their middle
MAX_ROWS = 20  # rows per table; the rest is counted
ELLIPSIS = "..."


def elide_middle(text: str, width: int = PATH_WIDTH) -> str:
    """``text`` shortened to about ``width`` by dropping whole path components from its middle; the
    first component (drive, host) and the last (the file name) are always kept whole."""
    if len(text) <= width:
        return text
    scheme = ""
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme += "://"
    parts = re.split(r"([\\/])", text)
    # parts: [comp, sep, comp, sep, ..., comp]
    comps = parts[0::2]
    seps = parts[1::2]
    if len(comps) < 3:
        return (
            scheme + text
            if len(scheme + text) <= width
            else scheme + text[: width // 2] + ELLIPSIS + text[-width // 2 :]
        )
    sep = seps[0] if seps else "\\"
    head = comps[0]
    tail = [comps[-1]]
    budget = width - len(scheme) - len(head) - len(comps[-1]) - 2 * len(sep) - len(ELLIPSIS)
    for comp in reversed(comps[1:-1]):
        if len(comp) + len(sep) > budget:
            break
        tail.insert(0, comp)
        budget -= len(comp) + len(sep)
    if len(tail) == len(comps) - 1:
        return scheme + text
    return scheme + head + sep + ELLIPSIS + sep + sep.join(tail)


def _duration(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:g} s"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_edge=False, pad_edge=False, box=None)
    for name in columns:
        table.add_column(name, overflow="fold", header_style="bold dim")
    return table


def _more(total: int, shown: int) -> Iterator[RenderableType]:
    if total > shown:
        yield Text(f"  ... {total - shown:,} more in report.json", style="dim")


def render_summary(report: Report, *, outdir: Path | None = None, verbose: bool = False) -> RenderableType:
    """The summary as one ``rich`` renderable."""
    parts: list[RenderableType] = []
    outcome = report.outcome
    ok = outcome.status == "completed"
    title = clean(report.scenario or report.target.name, 100)
    head = Text()
    head.append(f"{title}  ", style="bold")
    head.append(outcome.status, style="bold green" if ok else "bold red")
    if outcome.detail:
        head.append(f": {clean(outcome.detail, 300)}")
    if outcome.limit:
        head.append(f" (limit {outcome.limit})", style="yellow")
    parts.append(head)
    stats = [plural(report.stats.api_calls, "API call")]
    if report.stats.instructions is not None:
        stats.append(plural(report.stats.instructions, "instruction"))
    stats.append(plural(report.stats.network_exchanges, "network exchange"))
    vt = report.virtual_time
    if vt.skipped_ms:
        stats.append(f"{_duration(vt.skipped_ms)} of virtual time skipped in {plural(vt.sleeps, 'sleep')}")
    parts.append(
        Text(
            f"{clean(report.target.path, 200)} (sha256 {report.target.sha256[:16]}...), "
            f"chainreplay {report.tool.version}, {report.tool.engine}, {report.tool.mode} mode",
            style="dim",
        )
    )
    parts.append(Text(", ".join(stats)))
    for note in report.notes[:MAX_ROWS]:  # what the emulator did or could not do: rare, and read first
        line = Text("note ", style="yellow")
        line.append(f"{clean(note.what, 60)}: {clean(note.detail, 300)}")
        parts.append(line)
    parts += _more(len(report.notes), MAX_ROWS)

    stages = _table(f"{plural(len(report.stages), 'stage')}", "id", "kind", "name", "came from", "events")
    for s in report.stages[:MAX_ROWS]:
        origin = s.origin
        ref = elide_middle(clean(origin.ref, 1000)) if origin.type != "memory" else f"stage {clean(origin.ref, 40)}"
        came = f"{origin.how.replace('_', ' ')}: {origin.type} {ref}" if origin.how != "entry" else f"entry ({ref})"
        if origin.via_api:
            came += f" via {clean(origin.via_api, 60)}"
        stages.add_row(
            Text(s.id, style="bold"),
            STAGE_KIND_TEXT.get(s.kind, s.kind),
            clean(s.name, 60),
            came,
            f"{s.seq_range[0]}..{s.seq_range[1]}",
        )
    parts += ["", stages, *_more(len(report.stages), MAX_ROWS)]

    if report.network:
        _, edges = graph_parts(report)
        meaning = {seq: e.type for e in edges for seq in e.evidence if e.target.startswith(("url:", "host:"))}
        net = _table(f"{plural(len(report.network), 'network exchange')}", "event", "stage", "what", "url", "answer")
        for n in report.network[:MAX_ROWS]:
            if n.blocked:
                answer = "blocked"
            elif n.kind == "dns":
                found = n.response.headers.get("A") or (
                    f"TXT, {n.response.headers['TXT']}" if n.response.headers.get("TXT") else "no such name"
                )
                answer = f"{found} ({n.responder})"
            else:  # raw TCP / UDP exchanges have no status
                status = f"{n.response.status} " if n.response.status is not None else ""
                answer = f"{status}({plural(n.response.size, 'byte')}, {n.responder})"
            address = n.url or (f"{n.host}:{n.port}" if n.port is not None else n.host)
            net.add_row(
                str(n.seq),
                n.stage,
                meaning.get(n.seq, n.kind).replace("_", " ") + (f" {n.method}" if n.method else ""),
                elide_middle(clean(address, 1000), 70),
                Text(answer, style="red" if n.blocked else ""),
            )
        parts += ["", net, *_more(len(report.network), MAX_ROWS)]

    if report.files or report.dropped:
        touched: dict[str, dict[str, set[str]]] = {}
        for f in report.files:
            entry = touched.setdefault(clean(f.path, 1000), {"ops": set(), "stages": set()})
            entry["ops"].add(f.op)
            entry["stages"].add(f.stage)
        dropped = {clean(d.path, 1000): d for d in report.dropped}
        files = _table(f"{plural(len(touched), 'file')} touched", "path", "ops", "stages")
        for path, entry in list(touched.items())[:MAX_ROWS]:
            ops = ", ".join(sorted(entry["ops"])) + (" (dropped)" if path in dropped else "")
            files.add_row(elide_middle(path), ops, ", ".join(sorted(entry["stages"])))
        parts += ["", files, *_more(len(touched), MAX_ROWS)]
        if report.dropped:
            drops = _table(f"{plural(len(report.dropped), 'dropped file')}", "path", "bytes", "saved as")
            for d in report.dropped[:MAX_ROWS]:
                drops.add_row(elide_middle(clean(d.path, 1000)), f"{d.size:,}", d.stored_as or "not stored")
            parts += ["", drops, *_more(len(report.dropped), MAX_ROWS)]

    if report.registry:
        reg = _table(
            f"{plural(len(report.registry), 'registry access', 'registry accesses')}",
            "event",
            "stage",
            "op",
            "key",
            "value",
        )
        for r in report.registry[:MAX_ROWS]:
            value = ""
            if r.value_name is not None:
                value = clean(r.value_name, 60) + ("" if r.value is None else f" = {clean(r.value, 80)}")
            reg.add_row(str(r.seq), r.stage, r.op, elide_middle(clean(r.path, 1000)), value)
        parts += ["", reg, *_more(len(report.registry), MAX_ROWS)]

    if report.attack:
        by_tech: dict[tuple[str, str], list[str]] = {}
        for t in report.attack:
            by_tech.setdefault((t.technique, t.name), []).append(t.stage)
        tech = _table(f"{plural(len(by_tech), 'ATT&CK technique')}", "id", "name", "stages")
        for (tid, name), where in by_tech.items():
            tech.add_row(tid, clean(name, 100), ", ".join(dict.fromkeys(where)))
        parts += ["", tech]

    if verbose:
        calls = Text()
        for call in itertools.islice(report.api_calls, MAX_TIMELINE_API_CALLS):
            args = ", ".join(clean(a, 80) for a in call.args)
            ret = "" if call.ret is None else f" -> {call.ret}"
            calls.append(f"  [{call.seq}] {call.stage} {call.api}({args}){ret}\n")
        if api_calls_cut(report):
            calls.append(f"  ... and {api_calls_cut(report):,} more (report.json has every call)\n")
        parts += ["", Text(f"{plural(len(report.api_calls), 'API call')}", style="bold"), calls]

    if report.containment.violations:
        parts += [
            "",
            Text("containment: " + "; ".join(clean(v, 200) for v in report.containment.violations[:5]), style="red"),
        ]
    if outdir is not None:
        out = Text("outputs in ", style="dim")
        out.append(str(outdir), style="bold")
        entries = sorted(p for p in outdir.iterdir() if not p.name.startswith(".")) if outdir.is_dir() else []
        first = [n for n in ("report.html", "report.json", "narration.md") if (outdir / n).is_file()]
        graphs = [p.name.split(".", 1)[1] for p in entries if p.name.startswith("stage_graph.")]
        others = [
            p.name for p in entries if p.is_file() and p.name not in first and not p.name.startswith("stage_graph.")
        ]
        names = first + ([f"stage_graph.{{{','.join(graphs)}}}"] if graphs else []) + others
        names += [f"{p.name}/ ({sum(1 for _ in p.iterdir())})" for p in entries if p.is_dir()]
        out.append(": " + ", ".join(names))
        parts += ["", out]
        html = outdir / "report.html"
        if html.exists():
            parts.append(Text(f"open {html.resolve().as_uri()}", style="cyan"))
    return Group(*parts)
