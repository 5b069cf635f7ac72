"""What every renderer reads from the report: the stage graph's nodes and edges, every event as
one timeline row (stage, kind, text, virtual time), and short descriptions of evidence events.

Pure functions over :class:`emulator.report.Report`. Every string that came from a sample goes
through :func:`clean` (control, format and surrogate characters escaped) before it is returned.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from emulator.report import ApiCallRecord, Report, api_call_rows
from emulator.sanitize import for_display
from emulator.vclock import API_CALL_TICK_US

# Event kinds the timeline filters by, in display order.
EVENT_KINDS = ("api", "file", "registry", "network", "process", "memory", "other")
# APIs whose first argument is a delay in milliseconds the virtual clock fast-forwards.
SLEEP_APIS = frozenset({"kernel32.Sleep", "kernel32.SleepEx", "kernelbase.Sleep", "kernelbase.SleepEx"})
# Longest text of one timeline row; the full record is in report.json.
MAX_EVENT_TEXT = 300
MAX_ARG_TEXT = 80
# API calls shown in the timeline (every other event always is); the rest are in report.json.
MAX_TIMELINE_API_CALLS = 100_000


def clean(text: object, limit: int = 4000) -> str:
    """A sample string made safe to show: control/format characters escaped, cut at ``limit``."""
    return for_display("" if text is None else str(text), limit)


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    label: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    type: str
    evidence: tuple[int, ...]
    attrs: dict[str, Any]


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else value


def graph_parts(report: Report) -> tuple[list[Node], list[Edge]]:
    """The stage graph's nodes and edges, whatever their kinds (unknown kinds are kept as they are).
    Inside :func:`timeline_shared` they are built once: a caller must not change the lists."""
    return shared("graph_parts", _graph_parts, report)


def _graph_parts(report: Report) -> tuple[list[Node], list[Edge]]:
    data = _plain(report.graph) or {}
    nodes = []
    for raw in data.get("nodes", []):
        raw = _plain(raw)
        node_id = str(raw.get("id", ""))
        attrs = {k: v for k, v in raw.items() if k not in ("id", "kind", "label") and v is not None}
        nodes.append(Node(node_id, str(raw.get("kind") or "other"), str(raw.get("label") or node_id), attrs))
    edges = []
    known = {n.id for n in nodes}
    for raw in data.get("edges", data.get("links", [])):
        raw = _plain(raw)
        source, target = str(raw.get("source", "")), str(raw.get("target", ""))
        if source not in known or target not in known:
            continue
        evidence = tuple(int(s) for s in raw.get("evidence") or [] if isinstance(s, int) or str(s).isdigit())
        attrs = {k: v for k, v in raw.items() if k not in ("source", "target", "type", "evidence") and v is not None}
        edges.append(Edge(source, target, str(raw.get("type") or "related"), evidence, attrs))
    return nodes, edges


@dataclass(frozen=True)
class TimelineEvent:
    seq: int
    stage: str
    kind: str  # one of EVENT_KINDS
    text: str  # one line, cleaned
    ref: str | None = None  # what it touched (path, URL), cleaned, for linking


def _args(args: Iterable[str]) -> str:
    return ", ".join(clean(a, MAX_ARG_TEXT) for a in args)


# While timeline_shared() lasts: (id of the report, what, its parameters) -> (the report, the value).
_shared_values: list[dict[tuple[int, str, tuple[Any, ...]], tuple[Report, Any]]] = []
_T = TypeVar("_T")


@contextlib.contextmanager
def timeline_shared() -> Iterator[None]:
    """While it lasts, what every renderer reads of a report (:func:`timeline`, :func:`graph_parts`,
    the layout) is built once per report, not once per renderer."""
    _shared_values.append({})
    try:
        yield
    finally:
        _shared_values.pop()


def shared(what: str, make: Callable[..., _T], report: Report, *args: Any) -> _T:
    """``make(report, *args)``, made once per report (and ``args``) while :func:`timeline_shared`
    lasts: the value is shared, callers must not change it. ``what`` names ``make``."""
    if not _shared_values:
        return make(report, *args)
    cache = _shared_values[-1]
    key = (id(report), what, args)
    hit = cache.get(key)
    if hit is not None and hit[0] is report:
        value: _T = hit[1]
        return value
    value = make(report, *args)
    cache[key] = (report, value)
    return value


def timeline(report: Report, max_api_calls: int = MAX_TIMELINE_API_CALLS) -> list[TimelineEvent]:
    """Every recorded event of the report as one row, in the order the replay saw them; of the
    API calls, the first ``max_api_calls`` (:func:`api_calls_cut` says how many are left out).
    Inside :func:`timeline_shared` the rows are shared: a caller must not change the list."""
    return shared("timeline", _timeline, report, max_api_calls)


def _timeline(report: Report, max_api_calls: int) -> list[TimelineEvent]:
    rows: list[TimelineEvent] = []
    add = rows.append
    calls = api_call_rows(report)  # a streamed section: plain tuples, no record each
    texts: dict[tuple[str, tuple[str, ...], str | None], str] = {}  # a repeated call is cleaned once
    for seq, owner, api, args, ret in itertools.islice(calls, max_api_calls):
        key = (api, tuple(args), ret)
        text = texts.get(key)
        if text is None:
            shown = "" if ret is None else f" -> {ret}"
            text = clean(f"{api}({_args(args)}){shown}", MAX_EVENT_TEXT)
            if len(texts) < MAX_TIMELINE_API_CALLS:
                texts[key] = text
        add(TimelineEvent(seq, owner, "api", text))
    for f in report.files:
        size = "" if f.size is None else f" ({plural(f.size, 'byte')})"
        add(TimelineEvent(f.seq, f.stage, "file", clean(f"{f.op} {f.path}{size}", MAX_EVENT_TEXT), clean(f.path)))
    for r in report.registry:
        value = ""
        if r.value_name is not None:
            value = f" [{r.value_name}]" + ("" if r.value is None else f" = {r.value}")
        add(TimelineEvent(r.seq, r.stage, "registry", clean(f"{r.op} {r.path}{value}", MAX_EVENT_TEXT), clean(r.path)))
    for n in report.network:
        what = n.url or f"{n.host}:{n.port}"
        status = "blocked" if n.blocked else (n.response.status if n.response.status is not None else "no answer")
        text = f"{n.kind} {n.method or ''} {what} -> {status} ({n.responder})".replace("  ", " ")
        add(TimelineEvent(n.seq, n.stage, "network", clean(text, MAX_EVENT_TEXT), clean(what)))
    for s in report.sync_objects:
        add(TimelineEvent(s.seq, s.stage, "process", clean(f"{s.op} {s.object_type} {s.name}", MAX_EVENT_TEXT)))
    for t in report.threads:
        add(TimelineEvent(t.seq, t.stage, "process", clean(f"thread at {t.start} ({t.api})", MAX_EVENT_TEXT)))
    for m in report.memory:
        text = f"{m.op} {plural(m.size, 'byte')} at {m.address}" + (f" {m.protect}" if m.protect else "")
        add(TimelineEvent(m.seq, m.stage, "memory", clean(text, MAX_EVENT_TEXT)))
    for b in report.buffers:
        text = f"{b.source.replace('_', ' ')}: {plural(b.size, 'byte')} at {b.address} from {b.ref}"
        add(TimelineEvent(b.seq, b.stage, "memory", clean(text, MAX_EVENT_TEXT), clean(b.ref)))
    for note in report.notes:
        add(TimelineEvent(note.seq, "", "other", clean(f"{note.what}: {note.detail}", MAX_EVENT_TEXT)))
    for stage in report.stages:
        # The stage's first event marks where it started running.
        first = stage.seq_range[0]
        text = f"stage {stage.id} starts: {stage.kind} {stage.name} (via {stage.via}, {stage.origin.how})"
        add(TimelineEvent(first, stage.id, "process", clean(text, MAX_EVENT_TEXT)))
    rows.sort(key=lambda r: (r.seq, EVENT_KINDS.index(r.kind) if r.kind != "process" else -1))
    return rows


def api_calls_cut(report: Report, max_api_calls: int = MAX_TIMELINE_API_CALLS) -> int:
    """API calls the timeline leaves out."""
    return max(0, len(report.api_calls) - max_api_calls)


def calls_to(report: Report, apis: Collection[str]) -> Iterable[ApiCallRecord]:
    """The report's calls to ``apis`` (module.Function), in order; a streamed section (a large
    replay) is asked by name, without building a record per call."""
    where = getattr(report.api_calls, "where", None)
    if callable(where):
        return where(apis.__contains__)  # type: ignore[no-any-return]
    return [call for call in report.api_calls if call.api in apis]


def virtual_times(report: Report, seqs: Iterable[int]) -> dict[int, int]:
    """Virtual microseconds since the replay started, for each seq, rebuilt from the clock's rules:
    every API call advances it ``API_CALL_TICK_US``, a sleep fast-forwards it by its delay (ms)."""
    count_before = getattr(report.api_calls, "count_before", None)
    if callable(count_before):  # a streamed section: count by position, read the sleeps only
        return _virtual_times_streamed(report, seqs, count_before)
    jumps: list[tuple[int, int]] = []  # (seq, ms added after it)
    for call in report.api_calls:
        jumps.append((call.seq, _sleep_ms(call)))
    jumps.sort()
    out: dict[int, int] = {}
    ordered = sorted(set(seqs))
    index = 0
    calls = 0
    slept = 0
    for seq in ordered:
        while index < len(jumps) and jumps[index][0] < seq:
            calls += 1
            slept += jumps[index][1]
            index += 1
        out[seq] = slept * 1000 + calls * API_CALL_TICK_US
    return out


def _sleep_ms(call: ApiCallRecord) -> int:
    if call.api.endswith("SleepEx") and call.ret == "0xc0":
        return 0  # WAIT_IO_COMPLETION: an APC ended the sleep at once
    if call.api in SLEEP_APIS and call.args:
        try:
            return int(call.args[0], 0) & 0xFFFFFFFF
        except ValueError:
            return 0
    return 0


def _virtual_times_streamed(report: Report, seqs: Iterable[int], count_before: Callable[[int], int]) -> dict[int, int]:
    sleeps = [(call.seq, _sleep_ms(call)) for call in calls_to(report, SLEEP_APIS)]
    out: dict[int, int] = {}
    index = 0
    slept = 0
    for seq in sorted(set(seqs)):
        while index < len(sleeps) and sleeps[index][0] < seq:
            slept += sleeps[index][1]
            index += 1
        out[seq] = slept * 1000 + count_before(seq) * API_CALL_TICK_US
    return out


def index_by_seq(rows: Iterable[TimelineEvent]) -> dict[int, TimelineEvent]:
    """One row per seq (the event itself, not the stage-start marker sharing its seq)."""
    out: dict[int, TimelineEvent] = {}
    for row in rows:
        if row.seq not in out or out[row.seq].text.startswith("stage "):
            out[row.seq] = row
    return out


def evidence_text(index: dict[int, TimelineEvent], seqs: Iterable[int], limit: int = 6) -> list[str]:
    """``[seq] text`` lines for the given evidence events (the first ``limit``)."""
    wanted = sorted(set(seqs))
    lines = [f"[{seq}] {index[seq].text}" if seq in index else f"[{seq}]" for seq in wanted[:limit]]
    if len(wanted) > limit:
        lines.append(f"... and {len(wanted) - limit} more")
    return lines


def stage_names(report: Report) -> dict[str, str]:
    return {s.id: clean(s.name, 80) for s in report.stages}


def hosts_contacted(report: Report) -> list[str]:
    seen: dict[str, None] = {}
    for n in report.network:
        seen.setdefault(clean(n.host, 200), None)
    return list(seen)


def counts_by_kind(rows: Iterable[TimelineEvent]) -> Counter[str]:
    return Counter(r.kind for r in rows)


def iocs(report: Report) -> list[dict[str, str]]:
    """Indicators worth handing on, derived from the report: hosts, URLs, hashes, files, registry,
    sync objects, the beacon's user agent and cookies. Each row: value, type, stage, evidence."""
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(value: str | None, kind: str, stage: str, evidence: Iterable[int] = (), what: str = "") -> None:
        if not value or (value, kind) in seen:
            return
        seen.add((value, kind))
        rows.append(
            {
                "value": clean(value, 1000),
                "type": kind,
                "stage": stage,
                "evidence": ",".join(str(s) for s in sorted(set(evidence))[:8]),
                "description": clean(what, 300),
            }
        )

    for n in report.network:
        add(n.host, "domain", n.stage, [n.seq], f"{n.kind} contact")
        add(n.url, "url", n.stage, [n.seq], f"{n.method or n.kind} request")
        agent = next((v for k, v in n.request.headers.items() if k.lower() == "user-agent"), None)
        add(agent, "user-agent", n.stage, [n.seq], "user agent of the request")
        cookie = next((v for k, v in n.request.headers.items() if k.lower() == "cookie"), None)
        add(cookie, "cookie", n.stage, [n.seq], "cookie the request carried")
        add(n.response.sha256, "sha256", n.stage, [n.seq], f"body of the response from {n.host}")
    for note in report.notes:
        for url in note.urls or ():
            seen_in = f"named in a command line ({note.what}), not contacted"
            add((urlsplit(url).hostname or "").lower(), "domain", note.stage, [note.seq], f"host {seen_in}")
            add(url, "url", note.stage, [note.seq], f"URL {seen_in}")
    for s in report.stages:
        add(s.sha256, "sha256", s.id, s.origin.evidence, f"stage {s.id} ({s.kind} {s.name})")
    for d in report.dropped:
        add(d.sha256, "sha256", "", [], f"dropped file {d.path}")
    for f in report.files:
        if f.op in ("write", "create", "delete", "move", "copy"):
            add(f.path, "file", f.stage, [f.seq], f"file {f.op}")
    for r in report.registry:
        if r.op in ("write", "create", "delete"):
            add(r.path, "registry", r.stage, [r.seq], f"registry {r.op}")
    for o in report.sync_objects:
        add(o.name, o.object_type, o.stage, [o.seq], f"{o.object_type} {o.op}")
    return rows
