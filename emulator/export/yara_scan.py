"""``run --yara RULES``: the user's YARA rules over every stage, dropped file and request/response body.

Rules are compiled with yara-python before the replay starts (``compile_rules``: a rule that does
not compile is a ``YaraError`` naming the file and the line); matches go into ``report.yara``.
"""

from __future__ import annotations

from pathlib import Path

import yara

from emulator.export._common import iter_blobs
from emulator.inputs import NO_SUCH_FILE, file_problem
from emulator.limits import MAX_YARA_RULES_SIZE
from emulator.report import Report, YaraMatch, YaraScan
from emulator.sanitize import for_display

RULE_SUFFIXES = (".yar", ".yara")
MAX_RULE_FILES = 1000
MAX_OFFSETS_PER_MATCH = 32
MAX_YARA_MATCHES = 10000
SCAN_TIMEOUT_SECONDS = 30


class YaraError(Exception):
    """The rules could not be read or compiled (one line)."""


def rule_files(path: str | Path) -> dict[str, str]:
    """Namespace -> rule file for ``path``: the file itself, or every .yar/.yara file under the
    folder; at most :data:`MAX_YARA_RULES_SIZE` bytes together (refused by size, unread)."""
    root = Path(path)
    if root.is_dir():
        found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
        if not found:
            raise YaraError(f"{root}: no .yar or .yara files")
        if len(found) > MAX_RULE_FILES:
            raise YaraError(f"{root}: more than {MAX_RULE_FILES} rule files")
        files = {p.relative_to(root).with_suffix("").as_posix(): p for p in found}
    else:
        problem = file_problem(root)  # a FIFO or a device is named, never read
        if problem is not None:
            raise YaraError(f"{root}: {'no such file or folder' if problem == NO_SUCH_FILE else problem}")
        files = {root.stem: root}
    total = sum(p.stat().st_size for p in files.values())
    if total > MAX_YARA_RULES_SIZE:
        what = "file is" if len(files) == 1 else f"the {len(files)} rule files are"
        raise YaraError(f"{root}: {what} {total} bytes, larger than the {MAX_YARA_RULES_SIZE}-byte limit")
    return {name: str(p) for name, p in files.items()}


def compile_rules(path: str | Path) -> yara.Rules:
    files = rule_files(path)
    try:
        return yara.compile(filepaths=files)
    except yara.SyntaxError as err:
        raise YaraError(f"{path}: {err}") from err
    except yara.Error as err:
        raise YaraError(f"{path}: {err}") from err


def scan(report: Report, outdir: Path, rules_path: str | Path) -> YaraScan:
    """Every match of the rules at ``rules_path`` over the bytes ``report`` names in ``outdir``."""
    rules = compile_rules(rules_path)
    matches: list[YaraMatch] = []
    scanned = 0
    seen: set[tuple[str, str]] = set()
    for blob in iter_blobs(report, outdir):
        if (blob.kind, blob.sha256 + blob.target) in seen:
            continue
        seen.add((blob.kind, blob.sha256 + blob.target))
        scanned += 1
        for match in rules.match(data=blob.data, timeout=SCAN_TIMEOUT_SECONDS):
            offsets = sorted({i.offset for s in match.strings for i in s.instances})
            matches.append(
                YaraMatch(
                    rule=match.rule,
                    namespace=match.namespace,
                    tags=list(match.tags),
                    target_type=blob.kind,  # type: ignore[arg-type]
                    target=blob.target,
                    sha256=blob.sha256,
                    stage=blob.stage or None,
                    strings=sorted({s.identifier for s in match.strings}),
                    offsets=offsets[:MAX_OFFSETS_PER_MATCH],
                )
            )
            if len(matches) >= MAX_YARA_MATCHES:
                break
    return YaraScan(rules=str(rules_path), scanned=scanned, matches=matches)


def summary_line(report: Report) -> str:
    """One console line: how many matches of which rules on what (``report.yara``)."""
    if report.yara is None:
        return ""
    if not report.yara.matches:
        return f"yara: no match in {report.yara.scanned} buffers"
    hits = ", ".join(
        dict.fromkeys(for_display(f"{m.rule} on {m.target_type} {m.target}", 80) for m in report.yara.matches)
    )
    return f"yara: {len(report.yara.matches)} matches in {report.yara.scanned} buffers: {hits}"
