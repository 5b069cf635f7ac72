"""Regression checks: a report normalised into a baseline, two baselines compared, the drift rendered.

``normalise(report)`` keeps what a chain *did* and drops everything that differs between two
identical replays or two machines: addresses, handles, sequence numbers, timestamps, host
paths, call arguments and return values. What remains is grouped by stage: each stage's kind,
name, hashes and origin, its API sequence (runs of one API folded into ``api xN``), and the
network exchanges, file, registry and sync-object operations and threads it made; then, for the
whole chain, the outcome, the techniques, the graph's edges, dropped files and containment.

The baseline file (``scenarios/<name>/baseline.json``) is that document as JSON with sorted keys,
two-space indent and one item per line, so its git diff reads like the drift itself. Its format
is documented in docs/ci.md.

``compare(baseline, current)`` returns a :class:`Drift`: a list of :class:`Change` (appeared,
vanished, changed), each attached to a stage or to the chain; ``render_drift`` prints them
grouped by stage.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from emulator.expect import Expect, ExpectResult, evaluate
from emulator.inputs import NO_SUCH_FILE, InputFileError, read_input
from emulator.limits import MAX_BASELINE_FILE_SIZE
from emulator.report import Report, api_call_rows

BASELINE_FORMAT = "chainreplay/baseline/1"
BASELINE_FILE = "baseline.json"
# Hex numbers this long or longer are addresses or handles, never behaviour.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
# Sections recorded per stage, with the fields that identify a record (the rest may "change").
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "network": ("kind", "method", "host", "path"),
    "files": ("op", "path"),
    "registry": ("op", "path", "value_name"),
    "sync_objects": ("op", "object_type", "name"),
    "threads": ("api",),
    "techniques": ("technique",),
}
STAGE_FIELDS = ("kind", "name", "sha256", "size", "origin", "parent", "via")
CHAIN_SECTIONS: dict[str, tuple[str, ...]] = {
    "dropped": ("path",),
    "processes": ("name",),
}
# Lines of one API-sequence difference shown before "... N more".
MAX_API_LINES = 40
UNATTRIBUTED = "-"

ChangeKind = Literal["appeared", "vanished", "changed"]


class BaselineError(ValueError):
    """A baseline file cannot be used; the message is one line naming the file."""


# ---- normalisation ------------------------------------------------------------------------------


def _scrubber(report: Report) -> Any:
    """Text cleaner for this report: addresses masked, host paths of the target reduced."""
    host_dirs: list[str] = []
    target = report.target.path
    if target.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", target):
        host_dirs.append(str(PurePosixPath(target).parent) + "/")

    def scrub(text: str | None) -> str | None:
        if text is None:
            return None
        for prefix in host_dirs:
            text = text.replace(prefix, "")
        return _ADDRESS.sub("0x?", text)

    return scrub


def _host_name(path: str) -> str:
    """A host path reduced to its file name (host folders differ between machines)."""
    if path.startswith("/"):
        return PurePosixPath(path).name
    return path


def _fold(apis: list[str]) -> list[str]:
    """Consecutive calls of one API folded into 'api xN'."""
    folded: list[str] = []
    last, count = None, 0
    for api in [*apis, None]:
        if api == last:
            count += 1
            continue
        if last is not None:
            folded.append(last if count == 1 else f"{last} x{count}")
        last, count = api, 1
    return folded


def _url_path(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def normalise(report: Report) -> dict[str, Any]:
    """The baseline document of ``report``: see the module docstring and docs/ci.md."""
    scrub = _scrubber(report)
    stage_ids = [s.id for s in report.stages]
    per_stage: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))

    def group(stage: str) -> dict[str, list[Any]]:
        return per_stage[stage if stage in stage_ids else UNATTRIBUTED]

    for _, stage, api, _, _ in api_call_rows(report):
        group(stage)["apis"].append(api)
    for n in report.network:
        group(n.stage)["network"].append(
            {
                "kind": n.kind,
                "host": n.host.lower(),
                "port": n.port,
                "method": n.method,
                "path": _url_path(n.url),
                "url": n.url,
                "request": {
                    "headers": dict(sorted(n.request.headers.items())),
                    "size": n.request.size,
                    "sha256": n.request.sha256,
                },
                "response": {
                    "status": n.response.status,
                    "size": n.response.size,
                    "sha256": n.response.sha256,
                },
                "responder": n.responder,
                "blocked": n.blocked,
                "error": scrub(n.error),
            }
        )
    for f in report.files:
        group(f.stage)["files"].append(
            {"op": f.op, "path": f.path, "size": f.size, "sha256": f.sha256},
        )
    for r in report.registry:
        group(r.stage)["registry"].append(
            {"op": r.op, "path": r.path, "value_name": r.value_name, "value": scrub(r.value)},
        )
    for o in report.sync_objects:
        group(o.stage)["sync_objects"].append(
            {"op": o.op, "object_type": o.object_type, "name": o.name, "existed": o.existed},
        )
    for t in report.threads:
        group(t.stage)["threads"].append({"api": t.api})
    for technique in report.attack:
        group(technique.stage)["techniques"].append({"technique": technique.technique, "name": technique.name})
    for records in per_stage.values():
        records["techniques"].sort(key=lambda t: t["technique"])

    stages: list[dict[str, Any]] = []
    for s in report.stages:
        records = per_stage.get(s.id, {})
        entry: dict[str, Any] = {
            "id": s.id,
            "kind": s.kind,
            "name": scrub(s.name),
            "sha256": s.sha256,
            "size": s.size,
            "origin": {
                "type": s.origin.type,
                "ref": scrub(_host_name(s.origin.ref)),
                "how": s.origin.how,
                "via_api": s.origin.via_api,
            },
            "parent": s.parent,
            "via": s.via,
            "apis": _fold(records.get("apis", [])),
        }
        for section in STAGE_SECTIONS:
            entry[section] = list(records.get(section, []))
        stages.append(entry)
    unattributed = per_stage.get(UNATTRIBUTED)
    if unattributed:
        entry = {"id": UNATTRIBUTED, "apis": _fold(unattributed.get("apis", []))}
        for section in STAGE_SECTIONS:
            entry[section] = list(unattributed.get(section, []))
        stages.append(entry)

    processes = sorted({n.label for n in report.graph.nodes if n.kind == "process"})
    edges = sorted(f"{e.source} -{e.type}-> {e.target}" for e in report.graph.edges)
    c = report.containment
    return {
        "format": BASELINE_FORMAT,
        "scenario": report.scenario or report.target.name,
        "target": {"kind": report.target.kind, "arch": report.target.arch},
        "outcome": {
            "status": str(report.outcome.status),
            "limit": report.outcome.limit,
            "detail": scrub(report.outcome.detail),
        },
        "stages": stages,
        "graph": edges,
        "dropped": sorted(
            ({"path": d.path, "sha256": d.sha256, "size": d.size} for d in report.dropped),
            key=lambda d: (d["path"], d["sha256"]),
        ),
        "processes": [{"name": p} for p in processes],
        "containment": {
            "host_connects_refused": c.host_connects_refused,
            "host_name_lookups_refused": c.host_name_lookups_refused,
            "writes_outside_outdir_refused": c.writes_outside_outdir_refused,
            "host_processes_refused": c.host_processes_refused,
        },
    }


def dumps_baseline(baseline: dict[str, Any]) -> str:
    """The baseline as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(baseline, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_baseline(baseline: dict[str, Any], path: Path) -> None:
    path.write_text(dumps_baseline(baseline), encoding="utf-8")


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        text = read_input(path, limit=MAX_BASELINE_FILE_SIZE)
    except InputFileError as err:
        if err.problem == NO_SUCH_FILE:
            raise BaselineError(f"{path}: no such baseline (write one with `chainreplay check --update`)") from err
        raise BaselineError(str(err)) from err
    try:
        data = json.loads(text.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BaselineError(f"{path}: not valid JSON: {err}") from err
    except (ValueError, RecursionError) as err:  # nested too deeply, a number too long
        raise BaselineError(f"{path}: not valid JSON: {str(err).splitlines()[0] or type(err).__name__}") from err
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BaselineError(f"{path}: not a chainreplay baseline (format {found!r}, expected {BASELINE_FORMAT!r})")
    for key, kind in (("stages", list), ("graph", list), ("outcome", dict), ("target", dict)):
        if not isinstance(data.get(key), kind):
            raise BaselineError(f"{path}: key {key!r} missing or not a {kind.__name__}")
    for i, stage in enumerate(data["stages"]):
        if not isinstance(stage, dict) or not isinstance(stage.get("id"), str):
            raise BaselineError(f"{path}: stages[{i}] is not a stage with an 'id'")
    problem = _shape_problem(data)
    if problem is not None:
        raise BaselineError(f"{path}: not a chainreplay baseline: {problem}")
    return data


def _shape_problem(data: dict[str, Any]) -> str | None:
    """Where ``data`` departs from the shape :func:`compare` reads (docs/ci.md, "Baseline
    format"), or None: every list and table it walks, every item it hashes or looks into."""

    def records(value: Any, where: str) -> str | None:
        if value is not None and not (isinstance(value, list) and all(isinstance(r, dict) for r in value)):
            return f"{where}: expected a list of tables"
        return None

    if not all(isinstance(edge, str) for edge in data["graph"]):
        return "graph: expected a list of strings"
    if not isinstance(data.get("containment", {}), dict):
        return "containment: expected a table"
    for section in CHAIN_SECTIONS:
        problem = records(data.get(section), section)
        if problem:
            return problem
    for i, stage in enumerate(data["stages"]):
        apis = stage.get("apis", [])
        if not (isinstance(apis, list) and all(isinstance(api, str) for api in apis)):
            return f"stages[{i}].apis: expected a list of strings"
        for section in STAGE_SECTIONS:
            problem = records(stage.get(section), f"stages[{i}].{section}")
            if problem:
                return problem
        for j, exchange in enumerate(stage.get("network") or []):
            if not isinstance(exchange.get("response", {}), dict):
                return f"stages[{i}].network[{j}].response: expected a table"
    return None


# ---- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference. ``group`` is a stage id or 'chain'; ``section`` what kind of thing changed."""

    group: str
    section: str
    kind: ChangeKind
    subject: str
    detail: str = ""

    def line(self) -> str:
        mark = {"appeared": "+", "vanished": "-", "changed": "~"}[self.kind]
        text = f"{mark} {self.section}: {self.subject}"
        return text + (f": {self.detail}" if self.detail else "")


@dataclass
class Drift:
    changes: list[Change] = field(default_factory=list)
    stage_names: dict[str, str] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return bool(self.changes)

    def sections(self, group: str | None = None) -> set[str]:
        return {c.section for c in self.changes if group is None or c.group == group}

    def groups(self) -> list[str]:
        """Stage ids in stage order, then 'chain'."""
        found = set(c.group for c in self.changes)
        order = [*self.stage_names, UNATTRIBUTED, "chain"]
        return [g for g in order if g in found] + sorted(found - set(order))

    def to_json(self) -> list[dict[str, str]]:
        return [asdict(c) for c in self.changes]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, sub in value.items():
            flat.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return text[:12] + "…"
    return text if len(text) <= 80 else text[:77] + "..."


def _field_changes(old: Any, new: Any, skip: tuple[str, ...] = ()) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in skip or a.get(key) == b.get(key):
            continue
        out.append(f"{key} {_short(a.get(key))} -> {_short(b.get(key))}")
    return out


def _describe(section: str, record: dict[str, Any]) -> str:
    if section == "network":
        what = record.get("url") or f"{record.get('host')}:{record.get('port')}"
        status = record.get("response", {}).get("status")
        method = record.get("method") or record.get("kind", "")
        return f"{method} {what}" + (f" -> {status}" if status is not None else "")
    if section == "files":
        return f"{record.get('op')} {record.get('path')}"
    if section == "registry":
        value = f" [{record['value_name']}]" if record.get("value_name") else ""
        return f"{record.get('op')} {record.get('path')}{value}"
    if section == "sync_objects":
        return f"{record.get('op')} {record.get('object_type')} {record.get('name')}"
    if section == "techniques":
        return f"{record.get('technique')} {record.get('name', '')}".strip()
    if section == "dropped":
        return f"{record.get('path')} ({_short(record.get('sha256'))})"
    return " ".join(str(v) for v in record.values())


def _keyed(records: list[dict[str, Any]], key_fields: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Records by identity (their key fields plus the occurrence number of that key)."""
    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    keyed = {}
    for record in records:
        key = tuple(json.dumps(record.get(f), sort_keys=True) for f in key_fields)
        keyed[(*key, seen[key])] = record
        seen[key] += 1
    return keyed


def _compare_records(
    group: str, section: str, old: list[Any], new: list[Any], key_fields: tuple[str, ...]
) -> list[Change]:
    a, b = _keyed(old, key_fields), _keyed(new, key_fields)
    changes: list[Change] = []
    for key, record in b.items():
        if key not in a:
            changes.append(Change(group, section, "appeared", _describe(section, record)))
        elif a[key] != record:
            detail = "; ".join(_field_changes(a[key], record))
            changes.append(Change(group, section, "changed", _describe(section, a[key]), detail))
    for key, record in a.items():
        if key not in b:
            changes.append(Change(group, section, "vanished", _describe(section, record)))
    return changes


def _compare_apis(group: str, old: list[str], new: list[str]) -> list[Change]:
    changes: list[Change] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        context = f"after {old[i1 - 1]}" if i1 > 0 else "at the start"
        for api in old[i1:i2]:
            changes.append(Change(group, "apis", "vanished", api, context))
        for api in new[j1:j2]:
            changes.append(Change(group, "apis", "appeared", api, context))
    if len(changes) > MAX_API_LINES:
        rest = len(changes) - MAX_API_LINES
        changes = changes[:MAX_API_LINES]
        changes.append(Change(group, "apis", "changed", f"... {rest} more API differences", ""))
    return changes


def _stage_key(stage: dict[str, Any]) -> tuple[Any, ...]:
    """What names a stage across two replays, its id apart: ids shift when a stage appears or
    vanishes earlier in the chain."""
    origin = stage.get("origin") or {}
    return (stage.get("kind"), stage.get("name"), origin.get("type"), origin.get("how"))


def pair_stages(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, str]:
    """Baseline stage id -> current stage id of the same stage: the two chains aligned in order
    by kind, name and origin; within a run that differs, stages pair by position when both runs
    are as long (a stage changed in place), else they vanished and appeared."""
    olds = [st for st in old if st.get("id") != UNATTRIBUTED]
    news = [st for st in new if st.get("id") != UNATTRIBUTED]
    keys_old, keys_new = [_stage_key(st) for st in olds], [_stage_key(st) for st in news]
    matcher = difflib.SequenceMatcher(a=keys_old, b=keys_new, autojunk=False)
    pairs: dict[str, str] = {}
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            pairs.update((olds[i1 + k]["id"], news[j1 + k]["id"]) for k in range(i2 - i1))
    if any(st.get("id") == UNATTRIBUTED for st in old) and any(st.get("id") == UNATTRIBUTED for st in new):
        pairs[UNATTRIBUTED] = UNATTRIBUTED
    return pairs


_EDGE = re.compile(r"^(?P<source>.*) -(?P<type>[a-z_]+)-> (?P<target>.*)$")


def _renamed_baseline(baseline: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    """``baseline`` with its stage ids as ``rename`` says, wherever a stage id stands: a stage's
    id, its parent, a memory origin's ref, the graph's edges."""
    if all(old == new for old, new in rename.items()):
        return baseline

    def stage_id(value: Any) -> Any:
        return rename.get(value, value) if isinstance(value, str) else value

    stages = []
    for stage in baseline.get("stages", []):
        stage = {**stage, "id": stage_id(stage.get("id")), "parent": stage_id(stage.get("parent"))}
        origin = stage.get("origin")
        if isinstance(origin, dict) and origin.get("type") == "memory":
            stage["origin"] = {**origin, "ref": stage_id(origin.get("ref"))}
        stages.append(stage)
    edges = []
    for edge in baseline.get("graph", []):
        match = _EDGE.match(edge) if isinstance(edge, str) else None
        edges.append(f"{stage_id(match['source'])} -{match['type']}-> {stage_id(match['target'])}" if match else edge)
    return {**baseline, "stages": stages, "graph": edges}


def compare(baseline: dict[str, Any], current: dict[str, Any]) -> Drift:
    """What differs between ``baseline`` and ``current`` (both from :func:`normalise`).

    Stages are paired by :func:`pair_stages`, not by id: a stage that vanished or appeared
    mid-chain is that one change (and a stage whose id it shifted says so, ``id s2 -> s1``),
    not a difference in every later stage."""
    drift = Drift()
    changes = drift.changes
    pairs = pair_stages(list(baseline.get("stages", [])), list(current.get("stages", [])))
    current_ids = {st.get("id") for st in current.get("stages", [])}
    rename = dict(pairs)
    for stage in baseline.get("stages", []):
        sid = stage.get("id")
        if sid not in pairs:  # vanished: never in the group of the current stage that took its id
            rename[sid] = f"{sid} (baseline)" if sid in current_ids else sid
    baseline = _renamed_baseline(baseline, rename)
    for old_id, new_id in pairs.items():
        if old_id != new_id:
            changes.append(Change(new_id, "stage", "changed", "id", f"{old_id} -> {new_id}"))
    for key in ("target", "outcome", "containment"):
        for detail in _field_changes(baseline.get(key, {}), current.get(key, {})):
            field_name, _, rest = detail.partition(" ")
            changes.append(Change("chain", key, "changed", field_name, rest))

    old_stages = {s["id"]: s for s in baseline.get("stages", [])}
    new_stages = {s["id"]: s for s in current.get("stages", [])}
    for stage in [*baseline.get("stages", []), *current.get("stages", [])]:
        drift.stage_names.setdefault(stage["id"], str(stage.get("name", "")))
    for sid in dict.fromkeys([*old_stages, *new_stages]):
        old, new = old_stages.get(sid), new_stages.get(sid)
        if old is None or new is None:
            record = new if new is not None else old
            assert record is not None
            what = f"{record.get('kind', '')} {record.get('name', '')} sha256 {_short(record.get('sha256', ''))}"
            changes.append(Change(sid, "stage", "appeared" if old is None else "vanished", what.strip()))
            continue
        for field_name in STAGE_FIELDS:
            if old.get(field_name) != new.get(field_name):
                for detail in _field_changes({field_name: old.get(field_name)}, {field_name: new.get(field_name)}):
                    name, _, rest = detail.partition(" ")
                    changes.append(Change(sid, "stage", "changed", name, rest))
        changes.extend(_compare_apis(sid, list(old.get("apis", [])), list(new.get("apis", []))))
        for section, key_fields in STAGE_SECTIONS.items():
            changes.extend(
                _compare_records(sid, section, list(old.get(section, [])), list(new.get(section, [])), key_fields)
            )

    old_edges, new_edges = set(baseline.get("graph", [])), set(current.get("graph", []))
    changes.extend(Change("chain", "graph", "appeared", e) for e in sorted(new_edges - old_edges))
    changes.extend(Change("chain", "graph", "vanished", e) for e in sorted(old_edges - new_edges))
    for section, key_fields in CHAIN_SECTIONS.items():
        changes.extend(
            _compare_records(
                "chain", section, list(baseline.get(section, [])), list(current.get(section, [])), key_fields
            )
        )
    return drift


def render_drift(drift: Drift, *, title: str = "") -> str:
    """The drift as text, grouped by stage then the chain: '+' appeared, '-' vanished, '~' changed."""
    if not drift.drifted:
        return f"{title}: no drift" if title else "no drift"
    lines = [f"{title}: drift, {len(drift.changes)} changes" if title else f"drift, {len(drift.changes)} changes"]
    for group in drift.groups():
        name = drift.stage_names.get(group, "")
        lines.append("chain" if group == "chain" else f"stage {group} {name}".rstrip())
        lines.extend("  " + c.line() for c in drift.changes if c.group == group)
    return "\n".join(lines)


# ---- one target's verdict -----------------------------------------------------------------------


@dataclass
class TargetResult:
    """What ``run --expect``, ``check`` and ``batch`` conclude about one target."""

    target: str
    name: str
    outdir: str
    outcome: str
    detail: str = ""
    stages: int = 0
    seconds: float = 0.0
    expectations: list[ExpectResult] = field(default_factory=list)
    drift: Drift | None = None
    baseline: str | None = None
    fail_reasons: list[str] = field(default_factory=list)
    resumed: bool = False
    worker: str = ""

    @property
    def failed_expectations(self) -> list[ExpectResult]:
        return [e for e in self.expectations if e.failed]

    @property
    def failed(self) -> bool:
        return bool(self.fail_reasons or self.failed_expectations or (self.drift is not None and self.drift.drifted))

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "outdir": self.outdir,
            "outcome": self.outcome,
            "detail": self.detail,
            "stages": self.stages,
            "seconds": round(self.seconds, 3),
            "drift": None if self.drift is None else len(self.drift.changes),
            "baseline": self.baseline,
            "expectations_failed": [f"{e.name}: {e.evidence}" for e in self.failed_expectations],
            "fail_reasons": self.fail_reasons,
            "resumed": self.resumed,
            "worker": self.worker,
            "failed": self.failed,
        }


# Outcome statuses each --fail-on category names.
FAIL_ON_CATEGORIES: dict[str, tuple[str, ...]] = {
    "unsupported_api": ("unsupported_api",),
    "limit": ("timeout", "instruction_limit", "api_limit", "limit"),
    "fault": ("fault",),
    "error": ("error",),
    "containment": ("containment",),
}


def parse_fail_on(text: str) -> tuple[str, ...]:
    """'unsupported_api,limit' -> the categories; ValueError naming an unknown one."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in FAIL_ON_CATEGORIES:
            raise ValueError(f"unknown category {name!r} (expected some of {', '.join(FAIL_ON_CATEGORIES)})")
    return names


def fail_on_reason(outcome: str, detail: str, categories: tuple[str, ...]) -> str | None:
    for category in categories:
        if outcome in FAIL_ON_CATEGORIES[category]:
            return f"outcome {outcome} (--fail-on {category})" + (f": {detail}" if detail else "")
    return None


def judge(
    report: Report,
    *,
    target: str,
    outdir: str,
    seconds: float = 0.0,
    expect: Expect | None = None,
    baseline: dict[str, Any] | None = None,
    baseline_path: str | None = None,
    fail_on: tuple[str, ...] = (),
) -> TargetResult:
    """Evaluate a finished replay: expectations, drift against a baseline, --fail-on."""
    result = TargetResult(
        target=target,
        name=report.scenario or report.target.name,
        outdir=outdir,
        outcome=str(report.outcome.status),
        detail=report.outcome.detail,
        stages=len(report.stages),
        seconds=seconds,
        baseline=baseline_path,
    )
    if expect is not None:
        result.expectations = evaluate(expect, report)
    if baseline is not None:
        result.drift = compare(baseline, normalise(report))
    reason = fail_on_reason(report.outcome.status, report.outcome.detail, fail_on)
    if reason:
        result.fail_reasons.append(reason)
    return result
