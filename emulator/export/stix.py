"""``stix-bundle.json``: a STIX 2.1 bundle of the replay, made with the ``stix2`` library.

A ``malware-analysis`` object (chainreplay, its version, Speakeasy as the analysis engine, the
result, the observed objects it saw), a ``malware`` object per stage with its ``file`` and hashes,
``indicator`` objects with STIX patterns for the domains, URLs and hashes, ``attack-pattern``
objects with their ATT&CK references, and relationships that follow the stage graph. Every id is
derived from content (uuid5; SCOs use STIX's own deterministic ids) and every timestamp is the
replay's virtual start time, so two replays of the same scenario give the same bundle.

``result`` is ``suspicious`` when an ATT&CK technique was matched and ``unknown`` otherwise:
chainreplay records behaviour, it does not judge maliciousness.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import stix2

from emulator.export._common import iter_blobs, stable_uuid
from emulator.export.attack_meta import attack_release, technique_url
from emulator.export.iocs import collect_iocs
from emulator.report import Report

# Graph edge types between two stages that read as STIX malware -> malware relationships.
_DOWNLOAD_ORIGINS = ("network",)
# The observable each kind of indicator of compromise names (a hash has none of its own).
_OBSERVABLES: dict[str, Any] = {"domain": stix2.DomainName, "url": stix2.URL, "ipv4": stix2.IPv4Address}


# The one-comparison patterns this module writes, when the quoted value is printable ASCII
# (escaped by _quote) and a hash is 64 hex digits: every such pattern is valid STIX 2.1 (the
# grammar's StringLiteral is any character but ' and \, or \' and \\; the validator's only other
# check on these is the SHA-256 value's form). tests/test_exports.py holds it to stix2's
# validator.
_KNOWN_VALID_PATTERN = re.compile(
    r"\[(?:domain-name|url|ipv4-addr):value = '(?:[\x20-\x26\x28-\x5b\x5d-\x7e]|\\['\\])*'\]"
    r"|\[file:hashes\.'SHA-256' = '[0-9a-fA-F]{64}'\]"
)


def known_valid_pattern(pattern: object) -> bool:
    """``pattern`` is one this module writes and known valid without parsing it."""
    return isinstance(pattern, str) and _KNOWN_VALID_PATTERN.fullmatch(pattern) is not None


class _Indicator(stix2.Indicator):  # type: ignore[misc]
    """stix2's indicator, whose pattern stix2 checks with an ANTLR parser written in Python (about
    1.5 ms a pattern, 40-45 ms of a 3CX bundle): a pattern :func:`known_valid_pattern` accepts is
    not parsed again; every other check, and every other pattern, is stix2's own."""

    def _check_object_constraints(self) -> None:
        if (
            self.get("pattern_type") == "stix"
            and self.get("pattern_version") == "2.1"
            and self.get("valid_until") is None
            and known_valid_pattern(self.get("pattern"))
        ):
            super(stix2.Indicator, self)._check_object_constraints()  # what Indicator adds: the pattern
        else:
            super()._check_object_constraints()


def _sid(kind: str, *parts: str) -> str:
    return f"{kind}--{stable_uuid(kind, *parts)}"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _timestamp(value: str) -> Any:
    """``value`` parsed once as stix2 parses a timestamp (each object's every timestamp property
    would parse the string again: ~250 times per 3CX bundle); as given if it does not parse, so
    the library's own error names the property."""
    try:
        return stix2.utils.parse_into_datetime(value)
    except ValueError:
        return value


class _Plain(dict):  # type: ignore[type-arg]
    """A STIX domain object as the JSON object stix2 serialises it (made by :class:`_PlainMaker`)."""

    @property
    def id(self) -> str:
        return str(self["id"])


class _PlainMaker:
    """What ``cls(**kwargs)`` (a stix2 domain object or relationship) serialises to, without
    stix2's object machinery (~0.3 ms an object: its property checks, copies and ChainMaps).

    Only for the arguments :func:`_objects` passes (a str-typed id, names, descriptions,
    references, booleans, timestamps stix2 parsed, an indicator's known valid pattern): as stix2
    does, an argument that is None or an empty list is left out, the type and spec version come
    first, a timestamp is formatted with its property's precision (once per property and value:
    every object has the same two), and a STIX pattern gets ``pattern_version`` 2.1.
    tests/test_exports.py holds it to stix2's own bundle."""

    def __init__(self) -> None:
        self.stamps: dict[tuple[int, int], tuple[Any, str]] = {}

    def __call__(self, cls: type[Any], **kwargs: Any) -> _Plain:
        obj = _Plain(type=cls._type, spec_version="2.1")
        properties = cls._properties
        for name, value in kwargs.items():
            if value is None or value == []:
                continue
            prop = properties[name]  # a name stix2 does not know: KeyError, as stix2 would refuse it
            if isinstance(prop, stix2.properties.TimestampProperty):
                value = self._stamp(prop, value)
            obj[name] = value
        if cls is _Indicator and obj.get("pattern_type") == "stix" and not obj.get("pattern_version"):
            obj["pattern_version"] = "2.1"
        return obj

    def _stamp(self, prop: Any, value: Any) -> str:
        key = (id(prop), id(value))
        known = self.stamps.get(key)
        if known is None or known[0] is not value:  # the value is kept: its id stays its own
            known = (value, stix2.utils.format_datetime(prop.clean(value)[0]))
            self.stamps[key] = known
        return known[1]


def _stix2_object(cls: type[Any], **kwargs: Any) -> Any:
    return cls(**kwargs)


def _fast_allowed(found: list[tuple[str | None, Any]], created: Any) -> bool:
    """Whether every domain object of ``report``'s bundle can be made by :class:`_PlainMaker`: the
    start time parsed, and every indicator's pattern is one :func:`known_valid_pattern` accepts
    (any other is checked by stix2's parser, which may refuse it)."""
    if isinstance(created, str):
        return False
    return all(pattern is None or known_valid_pattern(pattern) for pattern, _ in found)


def _patterns(report: Report) -> list[tuple[str | None, Any]]:
    """Each indicator of compromise with its STIX pattern (None for a kind with none)."""
    found: list[tuple[str | None, Any]] = []
    for ioc in collect_iocs(report):
        pattern = None
        if ioc.type == "domain":
            pattern = f"[domain-name:value = {_quote(ioc.value)}]"
        elif ioc.type == "url":
            pattern = f"[url:value = {_quote(ioc.value)}]"
        elif ioc.type == "ipv4":
            pattern = f"[ipv4-addr:value = {_quote(ioc.value)}]"
        elif ioc.type == "sha256":
            pattern = f"[file:hashes.'SHA-256' = {_quote(ioc.value)}]"
        found.append((pattern, ioc))
    return found


def stix_bundle(report: Report, outdir: Path | None) -> stix2.Bundle:
    """The bundle, every object made by stix2."""
    created = _timestamp(report.virtual_time.start)
    objects, bundle_id = _objects(report, outdir, created, _stix2_object, _patterns(report))
    return stix2.Bundle(objects=objects, id=bundle_id, allow_custom=False)


def _objects(
    report: Report, outdir: Path | None, created: Any, make: Any, found: list[tuple[str | None, Any]]
) -> tuple[list[Any], str]:
    """The bundle's objects and id; ``make(cls, **kwargs)`` makes each domain object and
    relationship (stix2's class, or :class:`_PlainMaker`); the observables are always stix2's (their
    ids are derived by stix2 from their content)."""
    common = {"created": created, "modified": created}
    stage_bytes = {b.sha256: b.data for b in iter_blobs(report, outdir, stages_only=True)}
    objects: list[Any] = []
    files: dict[str, stix2.File] = {}
    malware: dict[str, Any] = {}
    for stage in report.stages:
        hashes = {"SHA-256": stage.sha256}
        data = stage_bytes.get(stage.sha256)
        if data is not None:
            hashes["MD5"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
            hashes["SHA-1"] = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        file = files.get(stage.sha256) or stix2.File(name=stage.name, hashes=hashes, size=stage.size)
        files[stage.sha256] = file
        malware[stage.id] = make(
            stix2.Malware,
            id=_sid("malware", report.target.sha256, stage.id, stage.sha256),
            name=f"{stage.id}: {stage.name}",
            description=f"Stage {stage.id} ({stage.kind}) of {report.target.name}, origin {stage.origin.type} "
            f"{stage.origin.ref} ({stage.origin.how}), evidence seq {stage.origin.evidence}",
            is_family=False,
            sample_refs=[file.id],
            **common,
        )
    objects += files.values()
    observed: dict[str, Any] = {}
    indicators: list[tuple[Any, str]] = []
    for pattern, ioc in found:
        if ioc.type in _OBSERVABLES:
            observed.setdefault(ioc.value, _OBSERVABLES[ioc.type](value=ioc.value))
        if pattern is None:
            continue
        indicator = make(
            _Indicator,
            id=_sid("indicator", pattern),
            name=f"{ioc.type} {ioc.value}",
            description=f"{ioc.description}; stage {ioc.stage}; evidence seq {ioc.evidence}",
            pattern=pattern,
            pattern_type="stix",
            valid_from=created,
            indicator_types=["malicious-activity"],
            **common,
        )
        indicators.append((indicator, ioc.stages[0] if ioc.stages else ""))
    objects += observed.values()
    entry_file = files[report.stages[0].sha256] if report.stages else None
    result = "suspicious" if report.attack else "unknown"
    analysis_kwargs: dict[str, Any] = {}
    if entry_file is not None:
        analysis_kwargs["sample_ref"] = entry_file.id
    refs = [f.id for f in files.values()] + [o.id for o in observed.values()]
    analysis = make(
        stix2.MalwareAnalysis,
        id=_sid("malware-analysis", report.target.sha256, report.tool.version, str(report.stats.seed)),
        product="chainreplay",
        version=report.tool.version,
        analysis_engine_version=report.tool.engine,
        configuration_version=f"{report.tool.mode} mode, seed {report.stats.seed}",
        result=result,
        result_name=report.outcome.status,
        analysis_sco_refs=refs,
        analysis_started=created,
        analysis_ended=created,
        **analysis_kwargs,
        **common,
    )
    objects.append(analysis)
    objects += malware.values()
    objects += [i for i, _ in indicators]
    release = attack_release(report)
    patterns: dict[str, Any] = {}
    relationships: dict[str, Any] = {}

    def relate(source: str, kind: str, target: str, description: str = "") -> None:
        rid = _sid("relationship", source, kind, target)
        if rid not in relationships:
            extra = {"description": description} if description else {}
            relationships[rid] = make(
                stix2.Relationship,
                id=rid,
                source_ref=source,
                relationship_type=kind,
                target_ref=target,
                **extra,
                **common,
            )

    for technique in report.attack:
        pattern = patterns.get(technique.technique)
        if pattern is None:
            pattern = make(
                stix2.AttackPattern,
                id=_sid("attack-pattern", release, technique.technique),
                name=technique.name,
                external_references=[
                    {
                        "source_name": "mitre-attack",
                        "external_id": technique.technique,
                        "url": technique_url(technique.technique),
                    }
                ],
                **common,
            )
            patterns[technique.technique] = pattern
        if technique.stage in malware:
            relate(malware[technique.stage].id, "uses", pattern.id, f"evidence seq {technique.evidence}")
    objects += patterns.values()
    if report.stages:
        relate(analysis.id, "dynamic-analysis-of", malware[report.stages[0].id].id)
    origins = {s.id: s.origin.type for s in report.stages}
    for edge in report.graph.edges:
        if edge.source in malware and edge.target in malware:
            kind = "downloads" if origins.get(edge.target) in _DOWNLOAD_ORIGINS else "drops"
            relate(malware[edge.source].id, kind, malware[edge.target].id, f"{edge.type}, evidence seq {edge.evidence}")
    for stage in report.stages:  # a parent link the graph did not draw still relates the stages
        if stage.parent in malware:
            kind = "downloads" if stage.origin.type in _DOWNLOAD_ORIGINS else "drops"
            relate(malware[stage.parent].id, kind, malware[stage.id].id, f"parent of {stage.id}")
    for indicator, stage_id in indicators:
        if stage_id in malware:
            relate(indicator.id, "indicates", malware[stage_id].id)
    objects += relationships.values()
    return objects, _sid("bundle", report.target.sha256, str(len(objects)))


_warmed: list[bool] = []


def warm_up() -> None:
    """Make and serialise one object of each kind the bundle holds, with a pattern of each kind
    over every printable character, while a replay's emulation child runs (first objects cost
    more). The patterns are known valid (:class:`_Indicator`): stix2's pattern parser, which
    builds its tables on first use (about 70 ms), is left for a pattern of another form. Once
    per process (a batch worker's later replays skip it)."""
    if _warmed:
        return
    _warmed.append(True)
    created = "2020-01-01T00:00:00Z"
    common = {"created": created, "modified": created}
    text = "".join(chr(c) for c in range(0x20, 0x7F))
    file = stix2.File(name="w", hashes={"SHA-256": "0" * 64, "MD5": "0" * 32, "SHA-1": "0" * 40}, size=1)
    malware = stix2.Malware(name="w", is_family=False, sample_refs=[file.id], **common)
    observed = [stix2.DomainName(value="w.example"), stix2.URL(value="http://w/"), stix2.IPv4Address(value="1.2.3.4")]
    patterns = [f"[{path} = {_quote(text)}]" for path in ("domain-name:value", "url:value", "ipv4-addr:value")]
    patterns.append(f"[file:hashes.'SHA-256' = '{'0123456789abcdef' * 4}']")
    indicators = [
        _Indicator(pattern=pattern, pattern_type="stix", valid_from=created, **common) for pattern in patterns
    ]
    analysis = stix2.MalwareAnalysis(
        product="w", result="unknown", analysis_sco_refs=[file.id], sample_ref=file.id, **common
    )
    technique = stix2.AttackPattern(
        name="w", external_references=[{"source_name": "mitre-attack", "external_id": "T0", "url": "https://w/"}]
    )
    related = stix2.Relationship(source_ref=malware.id, relationship_type="uses", target_ref=technique.id, **common)
    objects = [file, malware, *observed, *indicators, analysis, technique, related]
    json.loads(stix2.Bundle(objects=objects, allow_custom=False).serialize())


def stix_json(report: Report, outdir: Path | None) -> str:
    """The bundle as ``stix-bundle.json`` holds it. Its domain objects and relationships are
    made as plain JSON objects (:class:`_PlainMaker`) when :func:`_fast_allowed` (a 3CX bundle: ~60 ->
    ~15 ms); otherwise every object is stix2's, as :func:`stix_bundle` makes it. Same text either
    way."""
    created = _timestamp(report.virtual_time.start)
    found = _patterns(report)
    if not _fast_allowed(found, created):
        bundle = json.loads(stix_bundle(report, outdir).serialize())
    else:
        objects, bundle_id = _objects(report, outdir, created, _PlainMaker(), found)
        listed = [obj if isinstance(obj, _Plain) else json.loads(obj.serialize()) for obj in objects]
        bundle = {"type": "bundle", "id": bundle_id, "objects": listed}
    return json.dumps(bundle, indent=2, sort_keys=True) + "\n"
