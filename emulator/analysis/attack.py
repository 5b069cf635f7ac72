"""ATT&CK techniques matched from a table of behaviour patterns (``emulator/data/attack.toml``).

Each pattern names one matcher kind (``match``) and its parameters; there is no code per
technique. The table is validated when it is loaded: every pattern is one of the typed models
below, so a typo is a one-line :class:`PatternError` naming the file and the key, never a
``KeyError`` in the middle of a replay.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from emulator.analysis.graph import EDGE_TYPES, iter_edges
from emulator.analysis.lineage import DECODING_TRANSFORMS
from emulator.analysis.stages import Stage, decoded_trailers
from emulator.eventlog import api_calls_where, of_type, stage_lookup
from emulator.events import DataBuffer, Event, FileAccess, NetworkExchange, Note, RegistryAccess

PATTERN_FILE = "data/attack.toml"
# Kinds of graph node a pattern may name (emulator/analysis/graph.py makes them).
NODE_KINDS = ("stage", "process", "file", "url", "host", "registry", "environment", "sync", "image")
STAGE_KINDS = ("pe", "shellcode", "pe_in_memory", "module")
# Where a stage's lineage can start (emulator/analysis/stages.py ORIGIN_TYPES).
LINEAGE_ORIGINS = ("file", "network", "memory", "scenario", "registry", "environment", "resource", "image", "process")
LINEAGE_TRANSFORMS = (*sorted(DECODING_TRANSFORMS), "copy", "process_write", "file_write", "registry_write")
# What SleepEx returns when an APC ended an alertable sleep (the report's rendering of the value).
WAIT_IO_COMPLETION = "0xc0"
SLEEP_APIS = ("kernel32.sleep", "kernel32.sleepex")


class PatternError(Exception):
    """The pattern table is invalid: one line naming the file and the key."""


class _Pattern(BaseModel):
    # strict: TOML has types, so "60000" for an integer is a mistake, not something to convert.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    technique: str = Field(pattern=r"^T\d{4}(\.\d{3})?$", description="ATT&CK id, e.g. T1140 or T1027.013.")
    name: str = Field(min_length=1, description="ATT&CK name of the technique.")


class ApiPattern(_Pattern):
    """A call to one of ``apis`` (module.Function, fnmatch globs, case-insensitive)."""

    match: Literal["api"]
    apis: list[Annotated[str, Field(pattern=r"^[^.]+\..+$")]] = Field(min_length=1)
    # A stage must call this many of the ``apis`` globs (each one at least once): one of them
    # alone is ordinary (a memory size, an uptime), several together are a check of the machine.
    min_distinct: int = Field(default=1, ge=1)


class EdgePattern(_Pattern):
    """A stage-graph edge of type ``edge``, optionally between nodes of the given kinds."""

    match: Literal["edge"]
    edge: str
    from_kind: str | None = None
    to_kind: str | None = None
    to_stage_kind: str | None = None
    scheme: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9+.-]*$")
    to_glob: str | None = Field(default=None, description="fnmatch glob on the target node id (lower-cased).")
    methods: list[str] | None = Field(default=None, description="injects_into: one of these injection methods.")

    @field_validator("edge")
    @classmethod
    def _edge_type(cls, value: str) -> str:
        if value not in EDGE_TYPES:
            raise ValueError(f"unknown edge type {value!r} (known: {', '.join(EDGE_TYPES)})")
        return value

    @field_validator("from_kind", "to_kind")
    @classmethod
    def _node_kind(cls, value: str | None) -> str | None:
        if value is not None and value not in NODE_KINDS:
            raise ValueError(f"unknown node kind {value!r} (known: {', '.join(NODE_KINDS)})")
        return value

    @field_validator("to_stage_kind")
    @classmethod
    def _stage_kind(cls, value: str | None) -> str | None:
        if value is not None and value not in STAGE_KINDS:
            raise ValueError(f"unknown stage kind {value!r} (known: {', '.join(STAGE_KINDS)})")
        return value


class DeadDropPattern(_Pattern):
    """Content fetched from a public service, then contact with a host named only in it."""

    match: Literal["dead_drop"]
    public_hosts: list[str] = Field(min_length=1)


class FileReadPattern(_Pattern):
    """A file opened or read whose guest path matches one of ``paths`` (fnmatch, case-insensitive)."""

    match: Literal["file_read"]
    paths: list[str] = Field(min_length=1)


class FileWritePattern(_Pattern):
    """A file created or written whose guest path matches one of ``paths`` (fnmatch, case-insensitive)."""

    match: Literal["file_write"]
    paths: list[str] = Field(min_length=1)


class RegistryReadPattern(_Pattern):
    """Any registry value read."""

    match: Literal["registry_read"]


class RegistryWritePattern(_Pattern):
    """A registry value written under a key matching one of ``keys`` (fnmatch,
    case-insensitive, on the full key path, e.g. ``hkey_current_user\\software\\...``)."""

    match: Literal["registry_write"]
    keys: list[str] = Field(min_length=1)


class LongSleepPattern(_Pattern):
    """A Sleep / SleepEx of at least ``min_ms`` milliseconds."""

    match: Literal["long_sleep"]
    min_ms: int = Field(gt=0)


class DecryptFromMagicPattern(_Pattern):
    """Decryption input found in a network body that starts with one of ``magics`` (hex), or a
    stage decoded from a download, file or resource that starts so (a picture's pixels)."""

    match: Literal["decrypt_from_magic"]
    magics: list[Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})+$")]] = Field(min_length=1)


class StageKindPattern(_Pattern):
    """A stage of kind ``stage_kind``."""

    match: Literal["stage_kind"]
    stage_kind: str

    @field_validator("stage_kind")
    @classmethod
    def _stage_kind(cls, value: str) -> str:
        if value not in STAGE_KINDS:
            raise ValueError(f"unknown stage kind {value!r} (known: {', '.join(STAGE_KINDS)})")
        return value


class LineagePattern(_Pattern):
    """A hop of a stage's lineage: one of ``transforms`` (any decoding one if empty), or, with
    ``origins``, a lineage starting there (and ``decoded`` if required). The technique goes to
    the stage that performed the hop (``on = "actor"``) or the one that brought the origin's
    bytes in (``on = "origin"``)."""

    match: Literal["lineage"]
    origins: list[Literal[LINEAGE_ORIGINS]] = Field(default_factory=list)  # type: ignore[valid-type]
    transforms: list[Literal[LINEAGE_TRANSFORMS]] = Field(default_factory=list)  # type: ignore[valid-type]
    decoded: bool = False
    on: Literal["actor", "origin"] = "actor"


class NotePattern(_Pattern):
    """A note the emulator recorded of the stage's behaviour, one of ``notes`` (its ``what``)."""

    match: Literal["note"]
    notes: list[str] = Field(min_length=1)
    # When given, only notes whose detail holds one of these (ignoring case).
    details: list[str] = Field(default_factory=list)


Pattern = Annotated[
    ApiPattern
    | EdgePattern
    | DeadDropPattern
    | FileReadPattern
    | FileWritePattern
    | RegistryReadPattern
    | RegistryWritePattern
    | LongSleepPattern
    | DecryptFromMagicPattern
    | StageKindPattern
    | LineagePattern
    | NotePattern,
    Field(discriminator="match"),
]


class PatternTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    release: str = Field("", description="The ATT&CK release the technique IDs come from.")
    pattern: list[Pattern] = Field(min_length=1)


_TABLE = TypeAdapter(PatternTable)


def parse_patterns(text: str, source: str) -> list[Pattern]:
    """The patterns of a TOML table; :class:`PatternError` naming ``source`` and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PatternError(f"{source}: not TOML: {err}") from err
    try:
        return list(_TABLE.validate_python(data).pattern)
    except ValidationError as err:
        first = err.errors()[0]
        parts = list(first["loc"])
        if len(parts) >= 3 and parts[0] == "pattern" and parts[2] in _MATCH_KINDS:
            del parts[2]  # the union's tag ("edge", "api", ...) is not a key of the file
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        raise PatternError(f"{source}: {where}{_technique_at(data, parts)}: {first['msg']}") from err


def _technique_at(data: dict[str, object], loc: list[int | str]) -> str:
    if len(loc) >= 2 and loc[0] == "pattern" and isinstance(loc[1], int):
        patterns = data.get("pattern")
        if isinstance(patterns, list) and loc[1] < len(patterns) and isinstance(patterns[loc[1]], dict):
            technique = patterns[loc[1]].get("technique")
            if isinstance(technique, str):
                return f" ({technique})"
    return ""


@functools.cache
def attack_release() -> str:
    """The ATT&CK release of the shipped pattern table (its ``release`` key); read once per
    process (every report names it: parsing the table's TOML again took ~4 ms of each report)."""
    text = resources.files("emulator").joinpath(PATTERN_FILE).read_text(encoding="utf-8")
    return str(tomllib.loads(text).get("release", ""))


def load_patterns(path: Path | None = None) -> list[Pattern]:
    """The pattern table in ``path``, or the one shipped with chainreplay (validated once)."""
    if path is not None:
        return parse_patterns(path.read_text(encoding="utf-8"), str(path))
    return list(_shipped_patterns())


@functools.cache
def _shipped_patterns() -> tuple[Pattern, ...]:
    text = resources.files("emulator").joinpath(PATTERN_FILE).read_text(encoding="utf-8")
    return tuple(parse_patterns(text, f"emulator/{PATTERN_FILE}"))


def prepare() -> None:
    """Read and validate the shipped pattern table, read its release and compile its globs now:
    a replay does it while its emulation child runs, so its analysis and report do not (~11 ms
    of CPU for 3CX). A table that does not validate or parse is left for the analysis (or the
    report) to report."""
    try:
        attack_release()
        patterns = _shipped_patterns()
    except (tomllib.TOMLDecodeError, PatternError):
        return
    for pattern in patterns:
        for glob in _globs_of(pattern):
            _glob(glob)


def _globs_of(pattern: Pattern) -> list[str]:
    """The globs a pattern's matcher tests, lower-cased as it tests them."""
    if isinstance(pattern, ApiPattern):
        return [n.lower() for n in pattern.apis]
    if isinstance(pattern, EdgePattern):
        return [pattern.to_glob.lower()] if pattern.to_glob is not None else []
    if isinstance(pattern, DeadDropPattern):
        return [h.lower() for h in pattern.public_hosts]
    if isinstance(pattern, FileReadPattern | FileWritePattern):
        return [g.lower() for g in pattern.paths]
    if isinstance(pattern, RegistryWritePattern):
        return [g.lower() for g in pattern.keys]
    return []


@functools.cache
def _glob(pattern: str) -> Callable[[str], bool]:
    """``fnmatch.fnmatchcase(name, pattern)`` as a function of ``name``, compiled once."""
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda name: match(name) is not None


@dataclass(frozen=True)
class TechniqueHit:
    technique: str
    name: str
    stage: str
    evidence: list[int]


@dataclass(frozen=True)
class Observed:
    """What the matchers look at: one replay's stages, events, graph and blobs."""

    stages: list[Stage]
    events: Sequence[Event]
    graph: nx.DiGraph
    blobs: dict[str, bytes]


Matches = list[tuple[str, list[int]]]


def match_techniques(
    stages: list[Stage],
    events: Sequence[Event],
    graph: nx.DiGraph,
    blobs: dict[str, bytes],
    patterns: list[Pattern] | None = None,
) -> list[TechniqueHit]:
    seen = Observed(stages, events, graph, blobs)
    hits: dict[tuple[str, str], TechniqueHit] = {}
    owner = stage_lookup(events)  # seq -> stage, no model built per API call
    for pattern in patterns if patterns is not None else load_patterns():
        for stage, found in _MATCHERS[pattern.match](pattern, seen):
            # A technique is shown on the stage whose behaviour it describes, with evidence
            # from that stage only.
            evidence = [seq for seq in found if owner(seq) == stage]
            if not evidence:
                continue
            key = (pattern.technique, stage)
            merged = sorted(set(hits[key].evidence) | set(evidence)) if key in hits else sorted(set(evidence))
            hits[key] = TechniqueHit(pattern.technique, pattern.name, stage, merged)
    return sorted(hits.values(), key=lambda h: (h.evidence[0] if h.evidence else 0, h.technique))


def _api(p: ApiPattern, seen: Observed) -> Matches:
    names = [n.lower() for n in p.apis]
    found: dict[str, list[int]] = {}
    matched: dict[str, set[str]] = {}  # stage -> the globs its calls matched
    for e in api_calls_where(seen.events, lambda api: any(_glob(n)(api.lower()) for n in names)):
        found.setdefault(e.stage, []).append(e.seq)
        matched.setdefault(e.stage, set()).update(n for n in names if _glob(n)(e.api.lower()))
    return [(stage, seqs) for stage, seqs in found.items() if len(matched[stage]) >= p.min_distinct]


def _edge(p: EdgePattern, seen: Observed) -> Matches:
    """Edges of a type; the technique goes to the edge's actor, else its stage end (source first)."""
    graph = seen.graph
    found: dict[str, list[int]] = {}
    for src, dst, data in iter_edges(graph):
        if data["type"] != p.edge:
            continue
        if p.from_kind is not None and graph.nodes[src].get("kind") != p.from_kind:
            continue
        if p.to_kind is not None and graph.nodes[dst].get("kind") != p.to_kind:
            continue
        if p.to_stage_kind is not None and graph.nodes[dst].get("stage_kind") != p.to_stage_kind:
            continue
        if p.scheme is not None and not str(dst).startswith(f"url:{p.scheme}://"):
            continue
        if p.to_glob is not None and not _glob(p.to_glob.lower())(str(dst).lower()):
            continue
        if p.methods is not None and not set(p.methods) & set(data.get("methods") or ()):
            continue
        stage = data["actor"] if data.get("actor") else src if graph.nodes[src].get("kind") == "stage" else dst
        found.setdefault(stage, []).extend(data["evidence"])
    return list(found.items())


def _lineage(p: LineagePattern, seen: Observed) -> Matches:
    transforms = set(p.transforms)
    origins = set(p.origins)
    found: dict[str, list[int]] = {}
    for stage in seen.stages:
        link = stage.link
        if link is None or link.how == "entry" or not link.hops:
            continue
        hops = link.hops
        if origins:
            # An origin of several sources (pieces read into one buffer) is each of them.
            sources = [(piece.kind, piece.evidence) for piece in hops[0].pieces] or [
                (hops[0].source_kind, hops[0].evidence)
            ]
            matching = [evidence for kind, evidence in sources if kind in origins]
            if not matching or (p.decoded and not link.decoded):
                continue
            if p.on == "origin":
                if hops[0].actor:
                    found.setdefault(hops[0].actor, []).extend(seq for evidence in matching for seq in evidence)
                continue
        for hop in hops:
            if (hop.transform not in transforms) if transforms else not hop.decodes:
                continue
            if hop.actor:
                found.setdefault(hop.actor, []).extend(hop.evidence)
    return list(found.items())


def _dead_drop(p: DeadDropPattern, seen: Observed) -> Matches:
    public = [h.lower() for h in p.public_hosts]
    found: dict[str, list[int]] = {}
    fetched: list[tuple[NetworkExchange, bytes]] = []
    decrypted: list[DataBuffer] = []
    for _, e in of_type(seen.events, NetworkExchange, DataBuffer):
        if isinstance(e, NetworkExchange) and e.kind == "http":
            if any(_glob(h)(e.host.lower()) for h in public) and e.response.status == 200:
                fetched.append((e, seen.blobs.get(e.response.sha256 or "", b"")))
            elif fetched:
                named_by = [d for d in decrypted if e.host.encode() in seen.blobs.get(d.sha256, b"")]
                plain = [f for f, body in fetched if e.host.encode() in body]
                if named_by or plain:
                    first = fetched[0][0]
                    evidence = [first.seq, e.seq, *(d.seq for d in named_by[:1])]
                    found.setdefault(first.stage, []).extend(evidence)
        elif isinstance(e, DataBuffer) and e.source == "decrypt":
            decrypted.append(e)
    return list(found.items())


def _file_read(p: FileReadPattern, seen: Observed) -> Matches:
    return _file_ops(p.paths, ("open", "read"), seen)


def _file_write(p: FileWritePattern, seen: Observed) -> Matches:
    return _file_ops(p.paths, ("create", "write"), seen)


def _file_ops(paths: list[str], ops: tuple[str, ...], seen: Observed) -> Matches:
    globs = [g.lower() for g in paths]
    found: dict[str, list[int]] = {}
    for _, e in of_type(seen.events, FileAccess):
        if isinstance(e, FileAccess) and e.op in ops:
            path = e.path.lower().replace("/", "\\")
            if any(_glob(g)(path) for g in globs):
                found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _registry_read(p: RegistryReadPattern, seen: Observed) -> Matches:
    found: dict[str, list[int]] = {}
    for _, e in of_type(seen.events, RegistryAccess):
        if isinstance(e, RegistryAccess) and e.op == "read":
            found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _registry_write(p: RegistryWritePattern, seen: Observed) -> Matches:
    globs = [g.lower() for g in p.keys]
    found: dict[str, list[int]] = {}
    for _, e in of_type(seen.events, RegistryAccess):
        if isinstance(e, RegistryAccess) and e.op == "write" and any(_glob(g)(e.path.lower()) for g in globs):
            found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _long_sleep(p: LongSleepPattern, seen: Observed) -> Matches:
    found: dict[str, list[int]] = {}
    for e in api_calls_where(seen.events, lambda api: api.lower() in SLEEP_APIS):
        if e.args:
            try:
                ms = int(e.args[0], 0)
            except ValueError:
                continue
            # An alertable sleep an APC ended at once (WAIT_IO_COMPLETION) waited for the APC, not
            # for the time it named (a completion routine's caller sleeps INFINITE alertably).
            if ms >= p.min_ms and e.ret != WAIT_IO_COMPLETION:
                found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _decrypt_from_magic(p: DecryptFromMagicPattern, seen: Observed) -> Matches:
    magics = [bytes.fromhex(m) for m in p.magics]
    found: dict[str, list[int]] = {}
    carriers: list[tuple[int, bytes]] = []
    for _, e in of_type(seen.events, NetworkExchange, DataBuffer):
        if isinstance(e, NetworkExchange) and e.response.sha256:
            body = seen.blobs.get(e.response.sha256, b"")
            if any(body.startswith(m) for m in magics):
                carriers.append((e.seq, body))
        elif isinstance(e, DataBuffer) and e.source == "decrypt" and carriers:
            ciphertext = seen.blobs.get(e.input_sha256 or "", b"")
            for seq, body in carriers:
                if ciphertext and _hidden_in(ciphertext, body):
                    found.setdefault(e.stage, []).extend([seq, e.seq])
    # A stage decoded (by any transform: guest code taking the pixels' low bits, say) from bytes
    # that came in as a picture (a download, a file, a resource).
    pictures: set[int] = set()
    for _, e in of_type(seen.events, NetworkExchange, DataBuffer):
        if isinstance(e, NetworkExchange) and e.response.sha256:
            data = seen.blobs.get(e.response.sha256, b"")
        elif isinstance(e, DataBuffer) and e.source in ("file_read", "network_read", "resource"):
            data = seen.blobs.get(e.sha256, b"")
        else:
            continue
        if any(data.startswith(m) for m in magics):
            pictures.add(e.seq)
    for stage in seen.stages:
        link = stage.link
        if link is None or not link.decoded or not link.hops or link.how == "entry":
            continue
        origin = link.hops[0]
        evidence = [seq for piece in origin.pieces for seq in piece.evidence] or origin.evidence
        carried = [seq for seq in evidence if seq in pictures]
        if carried and origin.actor:
            found.setdefault(origin.actor, []).extend([*carried, stage.start_seq])
    return list(found.items())


def _hidden_in(ciphertext: bytes, carrier: bytes) -> bool:
    needle = ciphertext[:64]
    return needle in carrier or any(needle in decoded for decoded in decoded_trailers(carrier))


def _stage_kind(p: StageKindPattern, seen: Observed) -> Matches:
    """A kind of stage; the technique goes to the stage that started it (the loader). A stage a
    program its parent started ran (a DLL rundll32 loaded: via process) was not loaded by it."""
    return [(s.parent or s.id, [s.start_seq]) for s in seen.stages if s.kind == p.stage_kind and s.via != "process"]


def _note(p: NotePattern, seen: Observed) -> Matches:
    found: dict[str, list[int]] = {}
    for _, e in of_type(seen.events, Note):
        if isinstance(e, Note) and e.what in p.notes and e.stage and _detail_holds(e.detail, p.details):
            found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _detail_holds(detail: str, wanted: list[str]) -> bool:
    lowered = detail.lower()
    return not wanted or any(w.lower() in lowered for w in wanted)


_MATCHERS: dict[str, Callable[..., Matches]] = {
    "api": _api,
    "note": _note,
    "edge": _edge,
    "dead_drop": _dead_drop,
    "file_read": _file_read,
    "file_write": _file_write,
    "registry_read": _registry_read,
    "registry_write": _registry_write,
    "long_sleep": _long_sleep,
    "decrypt_from_magic": _decrypt_from_magic,
    "stage_kind": _stage_kind,
    "lineage": _lineage,
}
_MATCH_KINDS = frozenset(_MATCHERS)
