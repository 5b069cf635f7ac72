"""A YARA rule per stage, from strings and byte sequences in that stage and nowhere else.

"Nowhere else" is the benign corpus (``emulator/data/benign``: small benign Windows binaries built
here, standing in for system DLLs) and the replay's other stages. Nor is a string that names a
Windows API function or DLL (``GetProcAddress``, ``kernel32.dll``): every system DLL's export
table holds those names and nearly every program's import table or ``GetProcAddress`` call too,
which the four small binaries of the corpus do not show (:func:`windows_api_names`). Nor are a
PE's headers (DOS stub, PE header, section table: up to ``SizeOfHeaders``): they describe the
layout any binary of the same linker shares (``PE\0\0`` and the machine, ``.data``/``.bss``
entries), not what the stage carries (:func:`headers_end`). A stage whose bytes are carried
whole by an ancestor (a DLL embedded in the shellcode that maps it) may have nothing that is not
also in that ancestor; its strings may then come from the ancestor too. Every rule is compiled and
run over the other stages; any it also matches are named in its ``meta`` (``also_matches``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yara

from emulator.export._common import iter_blobs
from emulator.report import Report, StageRecord

MIN_STRING = 6
MAX_STRING = 64
WINDOW = 16
MAX_STRINGS = 8
MIN_STRINGS = 3
MIN_DISTINCT_BYTES = 8
# Runs of at least MIN_STRING printable characters, ASCII and UTF-16LE. Spelt out as MIN_STRING
# single items and then a star, not as a counted repeat {n,}: the same matches (each item is one
# fixed-width class), found 2-4x faster by re, whose counted repeats are slow.
_ASCII = re.compile(rb"[\x20-\x7e]" * MIN_STRING + rb"[\x20-\x7e]*")
_WIDE = re.compile(rb"[\x20-\x7e]\x00" * MIN_STRING + rb"(?:[\x20-\x7e]\x00)*")


@dataclass(frozen=True)
class RuleString:
    ident: str
    text: str  # YARA string definition after '='
    offset: int


@functools.cache
def _benign_corpus() -> tuple[bytes, ...]:
    folder = resources.files("emulator").joinpath("data/benign")
    return tuple(
        p.read_bytes() for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith((".dll", ".exe"))
    )


@functools.cache
def windows_api_names() -> frozenset[str]:
    """The names of Windows API functions and DLLs (DLLs without ``.dll``), lower case: the keys of
    the signature tables shipped in ``emulator/data/speakeasy-signatures.bin`` (every function
    Speakeasy's win32metadata and phnt databases declare, ~19,500, and the DLLs declaring them),
    read without importing the engine (:func:`emulator.signature_tables.api_names`). Empty if
    the file is unreadable."""
    from emulator.signature_tables import api_names

    return api_names()


def is_api_name(text: str) -> bool:
    """Whether ``text`` names a Windows API function (``VirtualAlloc``) or DLL (``KERNEL32.dll``,
    ``ws2_32``): common to every Windows program, never particular to one stage."""
    lowered = text.lower()
    names = windows_api_names()
    return lowered in names or (lowered.endswith(".dll") and lowered[:-4] in names)


def benign_corpus() -> list[bytes]:
    """The benign binaries shipped in the package (read once per process)."""
    return list(_benign_corpus())


def _common_length(a: bytes, i: int, b: bytes, j: int) -> int:
    """How many bytes ``a[i:]`` and ``b[j:]`` have in common from their start."""
    most = min(len(a) - i, len(b) - j)
    same, step = 0, WINDOW
    while same < most:  # gallop in growing chunks, then halve the chunk that differs
        size = min(step, most - same)
        if a[i + same : i + same + size] == b[j + same : j + same + size]:
            same += size
            step *= 2
        elif size == 1:
            break
        else:
            step = max(1, size // 2)
    return same


class _Occurrences:
    """Whether a ``WINDOW``-byte window of one stage occurs anywhere in the excluded files.

    Instead of a set of every window of every excluded file (tens of bytes per byte of input),
    a window is searched for, and once found, the run of bytes the stage shares with that file
    from there is measured: every window inside that run occurs too, without a search. A stage
    carried whole by an ancestor is then a handful of searches, not one per byte."""

    def __init__(self, data: bytes, excluded: list[bytes]) -> None:
        self.data = data
        self.excluded = excluded
        self.until = -1  # every window starting at or before this offset occurs (a shared run)

    def occurs(self, offset: int) -> bool:
        if offset <= self.until:
            return True
        window = self.data[offset : offset + WINDOW]
        for other in self.excluded:
            at = other.find(window)
            if at >= 0:
                self.until = offset + _common_length(self.data, offset, other, at) - WINDOW
                return True
        return False


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule_name(report: Report, stage: StageRecord) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", f"chainreplay_{report.target.name}_{stage.id}_{stage.name}")
    return f"{base[:100]}_{stage.sha256[:8]}"


def _ancestors(report: Report, stage_id: str) -> list[str]:
    parents = {s.id: s.parent for s in report.stages}
    out: list[str] = []
    current = parents.get(stage_id)
    while current and current not in out:
        out.append(current)
        current = parents.get(current)
    return out


def headers_end(data: bytes) -> int:
    """Where a PE's headers end (its ``SizeOfHeaders``, at most the file's size); 0 when ``data``
    is not a PE (no ``MZ``, or no ``PE\0\0`` where ``e_lfanew`` points)."""
    if data[:2] != b"MZ" or len(data) < 0x40:
        return 0
    pe = int.from_bytes(data[0x3C:0x40], "little")
    # SizeOfHeaders: 60 bytes into the optional header (PE32 and PE32+), after the 24-byte
    # signature and file header
    at = pe + 24 + 60
    if data[pe : pe + 4] != b"PE\0\0" or len(data) < at + 4:
        return 0
    return min(int.from_bytes(data[at : at + 4], "little"), len(data))


def _candidates(data: bytes) -> list[tuple[int, int, bytes, bool]]:
    """The strings of ``data`` a rule may use, most varied first: (-distinct bytes, offset,
    bytes, wide); none in a PE's headers."""
    candidates: list[tuple[int, int, bytes, bool]] = []
    start = headers_end(data)
    for pattern, wide in ((_ASCII, False), (_WIDE, True)):
        for match in pattern.finditer(data, start):
            raw = match.group()[: MAX_STRING * (2 if wide else 1)]
            candidates.append((-len(set(raw)), match.start(), raw, wide))
    candidates.sort()
    return candidates


def _pick(data: bytes, excluded: list[bytes], candidates: list[tuple[int, int, bytes, bool]]) -> list[RuleString]:
    picked: list[RuleString] = []
    seen: set[bytes] = set()
    for _, offset, raw, wide in candidates:
        if raw in seen or any(raw in other for other in excluded):
            continue
        seen.add(raw)
        text = raw.decode("utf-16-le" if wide else "ascii")
        if is_api_name(text):
            continue
        ident = f"$w{len(picked)}" if wide else f"$s{len(picked)}"
        picked.append(RuleString(ident, f"{_quote(text)} {'wide' if wide else 'ascii'}", offset))
        if len(picked) >= MAX_STRINGS:
            return picked
    # Byte sequences: varied 16-byte windows (code, tables) that no excluded file contains.
    occurrences = _Occurrences(data, excluded)
    offset, last = headers_end(data), len(data) - WINDOW
    while len(picked) < MAX_STRINGS:
        if offset <= occurrences.until:  # inside a run an excluded file shares: none of these
            offset = occurrences.until + 1
        if offset > last:
            break
        window = data[offset : offset + WINDOW]
        distinct = len(set(window))
        if distinct < MIN_DISTINCT_BYTES:  # one step adds at most one byte value: these fall short too
            offset += MIN_DISTINCT_BYTES - distinct
        elif window not in seen and not occurrences.occurs(offset):
            seen.add(window)
            picked.append(RuleString(f"$b{len(picked)}", "{ " + window.hex(" ") + " }", offset))
            offset += WINDOW * 16  # spread the sequences over the stage
        else:
            offset += 1
    return picked


def stage_rules(report: Report, outdir: Path) -> dict[str, str]:
    """Stage id -> the text of its YARA rule (stages whose bytes are in ``outdir``)."""
    stages = {b.target: b.data for b in iter_blobs(report, outdir, stages_only=True)}
    benign = benign_corpus()
    drafts: list[_Draft] = []
    for stage in report.stages:
        if stage.id not in stages:
            continue
        data = stages[stage.id]
        others = [sid for sid in stages if sid != stage.id and stages[sid] != data]
        candidates = _candidates(data)
        strings = _pick(data, benign + [stages[s] for s in others], candidates)
        if len(strings) < MIN_STRINGS:  # carried whole by an ancestor: allow the ancestors
            carriers = [s for s in _ancestors(report, stage.id) if s in stages]
            kept = [s for s in others if s not in carriers]
            strings = _pick(data, benign + [stages[s] for s in kept], candidates)
        if not strings:
            continue
        need = max(1, (len(strings) + 1) // 2)
        condition = f"{need} of them"
        if data[:2] == b"MZ":
            condition = f"uint16(0) == 0x5A4D and {condition}"
        meta = [
            (
                "description",
                f"Stage {stage.id} ({stage.kind}) {stage.name} of {report.target.name}, generated by chainreplay",
            ),
            ("sha256", stage.sha256),
            ("stage", stage.id),
            ("origin", f"{stage.origin.type} {stage.origin.how}"),
        ]
        name = _rule_name(report, stage)
        drafts.append(_Draft(stage.id, name, meta, strings, condition, others, _render(name, meta, strings, condition)))
    rules: dict[str, str] = {}
    matched_by = _matched_by(drafts, stages)
    for draft in drafts:
        also = [sid for sid in draft.others if draft.stage in matched_by(sid)]
        text = draft.text
        if also:  # said, not hidden: the rule is checked against every other stage
            draft.meta.append(("also_matches", "stages that carry these bytes: " + ", ".join(also)))
            text = _render(draft.name, draft.meta, draft.strings, draft.condition)
        rules[draft.stage] = text
    return rules


@dataclass
class _Draft:
    """A stage's rule before it is checked against the other stages."""

    stage: str
    name: str
    meta: list[tuple[str, str]]
    strings: list[RuleString]
    condition: str
    others: list[str]
    text: str


def _matched_by(drafts: list[_Draft], stages: dict[str, bytes]) -> Callable[[str], set[str]]:
    """``matched_by(sid)``: the stages (of ``drafts``) whose rule matches stage ``sid``'s bytes.

    Every rule is compiled in one rule set, a namespace per stage (each YARA compilation costs
    ~7 ms however small: one per stage was most of the detections' time); the rules share
    nothing (each names only its own strings), so each matches exactly what it matches alone;
    each is its own source, so a rule that does not compile fails with the error it gives alone."""
    if not drafts:
        return lambda sid: set()
    compiled = yara.compile(sources={draft.stage: draft.text for draft in drafts})
    found: dict[str, set[str]] = {}

    def matched_by(sid: str) -> set[str]:
        if sid not in found:
            found[sid] = {match.namespace for match in compiled.match(data=stages[sid])}
        return found[sid]

    return matched_by


def _render(name: str, meta: list[tuple[str, str]], strings: list[RuleString], condition: str) -> str:
    lines = [f"rule {name}", "{", "    meta:"]
    lines += [f"        {k} = {_quote(v)}" for k, v in meta]
    lines.append("    strings:")
    lines += [f"        {s.ident} = {s.text}  // offset {s.offset:#x}" for s in strings]
    lines += ["    condition:", f"        {condition}", "}", ""]
    return "\n".join(lines)
