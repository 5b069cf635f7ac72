"""A YARA rule per stage, from strings and byte sequences in that stage and nowhere else.

"Nowhere else" is the benign corpus (``emulator/data/benign``: small benign Windows binaries built
here, standing in for system DLLs) and the replay's other stages. A stage whose bytes are carried
whole by an ancestor (a DLL embedded in the shellcode that maps it) may have nothing that is not
also in that ancestor; its strings may then come from the ancestor too. Every rule is compiled and
run over the other stages; any it also matches are named in its ``meta`` (``also_matches``).
"""

from __future__ import annotations

import re
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
_ASCII = re.compile(rb"[\x20-\x7e]{%d,}" % MIN_STRING)
_WIDE = re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_STRING)


@dataclass(frozen=True)
class RuleString:
    ident: str
    text: str  # YARA string definition after '='
    offset: int


def benign_corpus() -> list[bytes]:
    folder = resources.files("emulator").joinpath("data/benign")
    return [p.read_bytes() for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith((".dll", ".exe"))]


def _windows(data: bytes) -> set[bytes]:
    return {data[i : i + WINDOW] for i in range(0, max(len(data) - WINDOW + 1, 0))}


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


def _pick(data: bytes, excluded: list[bytes], excluded_windows: set[bytes]) -> list[RuleString]:
    picked: list[RuleString] = []
    candidates: list[tuple[int, int, bytes, bool]] = []
    for pattern, wide in ((_ASCII, False), (_WIDE, True)):
        for match in pattern.finditer(data):
            raw = match.group()[: MAX_STRING * (2 if wide else 1)]
            candidates.append((-len(set(raw)), match.start(), raw, wide))
    seen: set[bytes] = set()
    for _, offset, raw, wide in sorted(candidates):
        if raw in seen or any(raw in other for other in excluded):
            continue
        seen.add(raw)
        text = raw.decode("utf-16-le" if wide else "ascii")
        ident = f"$w{len(picked)}" if wide else f"$s{len(picked)}"
        picked.append(RuleString(ident, f"{_quote(text)} {'wide' if wide else 'ascii'}", offset))
        if len(picked) >= MAX_STRINGS:
            return picked
    # Byte sequences: varied 16-byte windows (code, tables) that no excluded file contains.
    offset = 0
    while len(picked) < MAX_STRINGS and offset + WINDOW <= len(data):
        window = data[offset : offset + WINDOW]
        if len(set(window)) >= MIN_DISTINCT_BYTES and window not in excluded_windows and window not in seen:
            seen.add(window)
            picked.append(RuleString(f"$b{len(picked)}", "{ " + window.hex(" ") + " }", offset))
            offset += WINDOW * 16  # spread the sequences over the stage
        else:
            offset += 1
    return picked


def stage_rules(report: Report, outdir: Path) -> dict[str, str]:
    """Stage id -> the text of its YARA rule (stages whose bytes are in ``outdir``)."""
    stages = {b.target: b.data for b in iter_blobs(report, outdir) if b.kind == "stage"}
    benign = benign_corpus()
    benign_windows: set[bytes] = set()
    for data in benign:
        benign_windows |= _windows(data)
    window_sets = {sid: _windows(data) for sid, data in stages.items()}
    rules: dict[str, str] = {}
    for stage in report.stages:
        if stage.id not in stages:
            continue
        data = stages[stage.id]
        others = [sid for sid in stages if sid != stage.id and stages[sid] != data]
        excluded = benign + [stages[s] for s in others]
        windows = benign_windows.union(*(window_sets[s] for s in others))
        strings = _pick(data, excluded, windows)
        if len(strings) < MIN_STRINGS:  # carried whole by an ancestor: allow the ancestors
            carriers = [s for s in _ancestors(report, stage.id) if s in stages]
            kept = [s for s in others if s not in carriers]
            strings = _pick(
                data, benign + [stages[s] for s in kept], benign_windows.union(*(window_sets[s] for s in kept))
            )
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
        text = _render(_rule_name(report, stage), meta, strings, condition)
        compiled = yara.compile(source=text)
        also = [sid for sid in others if compiled.match(data=stages[sid])]
        if also:  # said, not hidden: the rule is checked against every other stage
            meta.append(("also_matches", "stages that carry these bytes: " + ", ".join(also)))
            text = _render(_rule_name(report, stage), meta, strings, condition)
        rules[stage.id] = text
    return rules


def _render(name: str, meta: list[tuple[str, str]], strings: list[RuleString], condition: str) -> str:
    lines = [f"rule {name}", "{", "    meta:"]
    lines += [f"        {k} = {_quote(v)}" for k, v in meta]
    lines.append("    strings:")
    lines += [f"        {s.ident} = {s.text}  // offset {s.offset:#x}" for s in strings]
    lines += ["    condition:", f"        {condition}", "}", ""]
    return "\n".join(lines)
