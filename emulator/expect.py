"""Expectations as data: the ``[expect]`` table of a scenario, validated at load and evaluated
against a report.

Every key is optional. A misspelt key is an error when the scenario is loaded (never a check
silently skipped). ``evaluate(expect, report)`` returns one :class:`ExpectResult` per
expectation, each naming what was expected and, when it fails, the evidence from the report.
``chainreplay run --expect``, ``chainreplay check`` and ``tests/test_scenarios.py`` all use it.
"""

from __future__ import annotations

import difflib
import ntpath
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulator.outcome import Status
from emulator.report import GraphEdge, Report, api_call_rows

EDGE_PATTERN = re.compile(r"^(?P<source>.+?) -(?P<type>[a-z_]+)-> (?P<target>.+)$")
TECHNIQUE_PATTERN = re.compile(r"^T\d{4}(\.\d{3})?$")
STAGE_ID_PATTERN = re.compile(r"^s\d+$")
# The shipped ATT&CK pattern table (emulator.analysis.attack.PATTERN_FILE, read by the analysis).
PATTERN_FILE = "data/attack.toml"
# File operations that change the guest's file system.
WRITE_OPS = frozenset({"create", "write", "delete", "copy", "move"})
# Checks that the ``xfail`` key covers (a known emulator bug makes them fail).
XFAIL_CHECKS = ("stage_origins", "edges")

ResultStatus = Literal["pass", "fail", "xfail"]


class Expect(BaseModel):
    """The ``[expect]`` table of scenario.toml. See docs/scenarios.md and docs/ci.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Status = Field(Status.COMPLETED, description="Outcome status of the replay.")
    stage_kinds: list[str] | None = Field(None, description="Exact list of stage kinds, in order.")
    stage_origins: (
        list[
            Literal["file", "network", "memory", "scenario", "registry", "environment", "resource", "image", "process"]
        ]
        | None
    ) = Field(None, description="Exact list of stage origin types, in order.")
    edges: list[str] | None = Field(
        None, description="Exact set of graph edges, each 'source -type-> target' with node ids as in report.json."
    )
    stages: int | None = Field(None, ge=0, description="Exactly this many stages.")
    min_stages: int | None = Field(None, ge=0, description="At least this many stages.")
    contacts: list[str] = Field(default_factory=list, description="Hosts the replay must contact.")
    contacts_only: list[str] | None = Field(
        None, description="No host outside this list is contacted ([] means no network at all)."
    )
    apis: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Stage id -> APIs that stage calls ('wininet.InternetOpenUrlW' or 'InternetOpenUrlW').",
    )
    techniques: list[str] = Field(default_factory=list, description="ATT&CK technique ids that must be reported.")
    writes_only_under: list[str] | None = Field(
        None, description="Guest folders: no file is created, written, moved or deleted outside them."
    )
    lineage: dict[str, list[str]] | None = Field(
        None,
        description="Stage id -> its lineage hops, origin first: where the bytes were found (registry, file, "
        "network, image, ...) then each transform (decode, xor, decrypt, guest_code, process_write, ...). "
        "Checked by tests/test_lineage.py.",
    )
    stage_techniques: list[str] | None = Field(
        None,
        description="Exact set of 'stage technique' pairs, e.g. 's0 T1140'. Checked by tests/test_lineage.py.",
    )
    xfail: str | None = Field(
        None,
        description="A known emulator bug makes the stage_origins / edges checks fail: the reason. They then "
        "count as expected failures, and as failures once they pass (remove the key).",
    )

    @field_validator("edges")
    @classmethod
    def _edges_well_formed(cls, edges: list[str] | None) -> list[str] | None:
        for edge in edges or []:
            if not EDGE_PATTERN.match(edge):
                raise ValueError(f"{edge!r} is not 'source -type-> target'")
        return edges

    @field_validator("techniques")
    @classmethod
    def _known_techniques(cls, techniques: list[str]) -> list[str]:
        for technique in techniques:
            if not TECHNIQUE_PATTERN.match(technique):
                raise ValueError(f"{technique!r} is not an ATT&CK technique id like T1620 or T1574.002")
        known = matchable_techniques()
        for technique in techniques:
            if known and technique not in known:
                raise ValueError(
                    f"{technique} is not matched by any pattern of emulator/data/attack.toml, so it can never be found"
                )
        return techniques

    @field_validator("apis")
    @classmethod
    def _stage_ids(cls, apis: dict[str, list[str]]) -> dict[str, list[str]]:
        for stage in apis:
            if not STAGE_ID_PATTERN.match(stage):
                raise ValueError(f"{stage!r} is not a stage id like s0, s1")
        return apis


def matchable_techniques() -> set[str]:
    """Technique ids of the shipped ATT&CK pattern table (empty if it cannot be read).

    Read from the table itself, not through the analysis (emulator.analysis.attack validates
    it when a replay is analysed): checking a scenario must not import the analysis, which
    a ``run`` otherwise imports while its emulation child works."""
    try:
        text = resources.files("emulator").joinpath(PATTERN_FILE).read_text(encoding="utf-8")
        return {str(p["technique"]) for p in tomllib.loads(text)["pattern"]}
    except Exception:  # noqa: BLE001 - the table is validated by its own loader; do not fail here
        return set()


@dataclass(frozen=True)
class ExpectResult:
    """One evaluated expectation: ``name`` says what was expected, ``evidence`` what the report shows."""

    name: str
    status: ResultStatus
    evidence: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def edge_string(edge: GraphEdge) -> str:
    return f"{edge.source} -{edge.type}-> {edge.target}"


def report_edges(report: Report) -> set[str]:
    return {edge_string(e) for e in report.graph.edges}


def api_matches(called: str, wanted: str) -> bool:
    """``wanted`` names an API with or without its module: 'InternetOpenUrlW' matches 'wininet.InternetOpenUrlW'."""
    called, wanted = called.lower(), wanted.lower()
    return called == wanted or called.endswith("." + wanted) or wanted.endswith("." + called)


# Prefixes of the NT namespace a Win32 path may be written with (\\?\C:\..., \??\C:\..., \\.\C:\...).
_NT_PREFIX = re.compile(r"^(?:\\\\\?\\|\\\?\?\\|\\\\\.\\)(?=[A-Za-z]:)")


def guest_path_key(path: str) -> str:
    r"""A guest path as Windows resolves it, for comparing: either slash, any case, the NT
    prefixes \\?\ and \??\ dropped, '.' and '..' resolved (C:\A\..\B is C:\B), doubled
    separators folded."""
    text = _NT_PREFIX.sub("", path.replace("/", "\\"))
    return ntpath.normpath(text).lower() if text else ""


def host_key(host: str) -> str:
    """A host name for comparing: any case, without the root's trailing dot (a.example. is a.example)."""
    return host.lower().rstrip(".")


def _under(path: str, folders: list[str]) -> bool:
    norm = guest_path_key(path)
    for folder in folders:
        prefix = guest_path_key(folder).rstrip("\\") + "\\"
        if norm.startswith(prefix):
            return True
    return False


def _short(items: list[str], limit: int = 8) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def contacted_hosts(report: Report) -> list[str]:
    """Hosts the replay reached for (DNS, HTTP, TCP, UDP; blocked or not), in order, once each."""
    seen: dict[str, None] = {}
    for record in report.network:
        if host_key(record.host):
            seen.setdefault(host_key(record.host), None)
    return list(seen)


def evaluate(expect: Expect, report: Report) -> list[ExpectResult]:
    """Evaluate every expectation of ``expect`` against ``report``."""
    results: list[ExpectResult] = []

    def add(name: str, ok: bool, evidence: str, check: str = "") -> None:
        if expect.xfail and check in XFAIL_CHECKS:
            if ok:
                evidence = f"now met, but [expect] xfail says it fails: remove xfail ({expect.xfail})"
                results.append(ExpectResult(name, "fail", evidence))
            else:
                results.append(ExpectResult(name, "xfail", f"{evidence} (known: {expect.xfail})"))
            return
        results.append(ExpectResult(name, "pass" if ok else "fail", "" if ok else evidence))

    outcome = report.outcome
    detail = f" ({outcome.detail})" if outcome.detail else ""
    add(f"outcome is {expect.outcome}", outcome.status == expect.outcome, f"outcome was {outcome.status}{detail}")

    stages = report.stages
    n = len(stages)
    if expect.stages is not None:
        add(f"exactly {expect.stages} stages", n == expect.stages, f"{n} stages: {_stage_list(report)}")
    if expect.min_stages is not None:
        add(f"at least {expect.min_stages} stages", n >= expect.min_stages, f"{n} stages: {_stage_list(report)}")
    if expect.stage_kinds is not None:
        kinds = [s.kind for s in stages]
        add(f"stage kinds {expect.stage_kinds}", kinds == expect.stage_kinds, f"stage kinds were {kinds}")
    if expect.stage_origins is not None:
        origins = [s.origin.type for s in stages]
        add(
            f"stage origins {list(expect.stage_origins)}",
            origins == list(expect.stage_origins),
            f"stage origins were {origins}",
            "stage_origins",
        )
    if expect.edges is not None:
        actual, wanted = report_edges(report), set(expect.edges)
        missing, unexpected = sorted(wanted - actual), sorted(actual - wanted)
        add(
            f"graph has exactly the {len(wanted)} expected edges",
            not missing and not unexpected,
            f"missing: {_short(missing)}; unexpected: {_short(unexpected)}",
            "edges",
        )

    hosts = contacted_hosts(report)
    for host in expect.contacts:
        add(f"contacts {host}", host_key(host) in hosts, f"hosts contacted: {_short(hosts)}")
    if expect.contacts_only is not None:
        allowed = {host_key(h) for h in expect.contacts_only}
        outside = [
            f"{r.host} (seq {r.seq}, stage {r.stage})"
            for r in report.network
            if host_key(r.host) and host_key(r.host) not in allowed
        ]
        add(
            f"contacts no host outside {sorted(allowed)}",
            not outside,
            f"contacted {_short(outside)}",
        )

    by_stage = {s.id: s for s in stages}
    for stage_id, apis in expect.apis.items():
        called = [api for _, stage, api, _, _ in api_call_rows(report) if stage == stage_id]
        for api in apis:
            if stage_id not in by_stage:
                add(f"{api} called in {stage_id}", False, f"there is no stage {stage_id} ({n} stages)")
                continue
            ok = any(api_matches(c, api) for c in called)
            add(f"{api} called in {stage_id}", ok, _api_evidence(stage_id, by_stage[stage_id].name, called, api))

    found = sorted({t.technique for t in report.attack})
    for technique in expect.techniques:
        add(f"technique {technique} present", technique in found, f"techniques found: {_short(found, 20)}")

    if expect.writes_only_under is not None:
        written = [(f.path, f"seq {f.seq}, stage {f.stage}, {f.op}") for f in report.files if f.op in WRITE_OPS]
        written += [(d.path, "dropped") for d in report.dropped]
        outside = [f"{path} ({how})" for path, how in written if not _under(path, expect.writes_only_under)]
        add(
            f"no file written outside {expect.writes_only_under}",
            not outside,
            f"wrote {_short(outside, 5)}",
        )
    return results


def _api_evidence(stage_id: str, stage_name: str, called: list[str], api: str) -> str:
    distinct = list(dict.fromkeys(called))
    bare = {c.rpartition(".")[2].lower(): c for c in distinct}
    closest = [bare[m] for m in difflib.get_close_matches(api.rpartition(".")[2].lower(), list(bare), n=5, cutoff=0.6)]
    text = f"{stage_id} ({stage_name}) called {len(distinct)} distinct APIs, not {api}"
    return text + (f"; closest: {', '.join(closest)}" if closest else "")


def _stage_list(report: Report) -> str:
    return ", ".join(f"{s.id} {s.kind} {s.name}" for s in report.stages) or "none"


def failures(results: list[ExpectResult]) -> list[ExpectResult]:
    return [r for r in results if r.failed]


def format_results(results: list[ExpectResult], *, verbose: bool = False) -> list[str]:
    """One line per failing (and, when ``verbose``, per passing) expectation."""
    lines = []
    for r in results:
        if r.status == "pass" and not verbose:
            continue
        mark = {"pass": "ok  ", "fail": "FAIL", "xfail": "xfail"}[r.status]
        lines.append(f"{mark} {r.name}" + (f": {r.evidence}" if r.evidence else ""))
    return lines
