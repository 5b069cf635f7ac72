"""The ATT&CK pattern table: validated at load, linted, and exercised by matcher fixtures.

Every ``tests/fixtures/matcher/*.toml`` is a case (see the README there): a few events and the
bytes they cite go through the same analysis as a replay (stages, graph, techniques), and the
techniques found must be exactly the expected ones.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emulator.analysis.attack import _MATCHERS, PatternError, load_patterns, parse_patterns
from emulator.analysis.pipeline import analyse
from emulator.events import EVENT_ADAPTER
from emulator.trace import EntryOrigin, Trace, TraceHeader

FIXTURES = Path(__file__).parent / "fixtures" / "matcher"
CASES = sorted(FIXTURES.glob("*.toml"))
PATTERN_FILE = Path(__file__).resolve().parent.parent / "emulator" / "data" / "attack.toml"


def _blob_bytes(value: Any) -> bytes:
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) else str(value).encode("utf-8")


def _resolve(value: Any, digests: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("blob:"):
        return digests[value[5:]]
    if isinstance(value, dict):
        return {k: _resolve(v, digests) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, digests) for v in value]
    return value


def load_case(path: Path) -> tuple[Trace, list[dict[str, Any]]]:
    case = tomllib.loads(path.read_text(encoding="utf-8"))
    blobs = {name: _blob_bytes(value) for name, value in case.get("blobs", {}).items()}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    by_digest = {digests[name]: data for name, data in blobs.items()}
    events = []
    for seq, raw in enumerate(case.get("event", [])):
        fields = {"seq": seq, "stage": "s0", **_resolve(raw, digests)}
        if fields["type"] in ("buffer", "stage_start") and "size" not in fields:
            fields["size"] = len(by_digest[fields["sha256"]])
        events.append(EVENT_ADAPTER.validate_python(fields))
    header = TraceHeader(
        engine="fixture",
        name=path.stem,
        scenario=path.stem if case.get("host_process") else None,
        target_path=path.name,
        target_sha256="0" * 64,
        entry_origin=EntryOrigin(type="scenario", ref=case["host_process"])
        if case.get("host_process")
        else EntryOrigin(type="file", ref=f"C:\\{path.stem}.exe"),
        host_process=case.get("host_process"),
        machine_names=case.get("machine_names", []),
        seed=1,
        start_time=0,
        status="completed",
        events=len(events),
        blobs=sorted(by_digest),
    )
    return Trace(header, events, by_digest), case["expect"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matcher_fixture(path: Path) -> None:
    trace, expected = load_case(path)
    found = [{"technique": h.technique, "stage": h.stage, "evidence": h.evidence} for h in analyse(trace).techniques]
    key = lambda hit: (hit["technique"], hit["stage"])  # noqa: E731
    assert sorted(found, key=key) == sorted(expected, key=key), f"{path.name}: found {found}"


def test_every_pattern_and_matcher_is_exercised_by_a_fixture() -> None:
    expected = {hit["technique"] for path in CASES for hit in load_case(path)[1]}
    # ... or by a scenario's [expect] stage_techniques, checked on a real replay by tests/test_lineage.py.
    for toml_path in (Path(__file__).resolve().parent.parent / "scenarios").glob("*/scenario.toml"):
        pairs = tomllib.loads(toml_path.read_text(encoding="utf-8")).get("expect", {}).get("stage_techniques", [])
        expected |= {pair.split()[1] for pair in pairs}
    patterns = load_patterns()
    untested = sorted({p.technique for p in patterns} - expected)
    assert untested == [], f"no matcher fixture expects {untested}: add one to tests/fixtures/matcher"
    assert {p.match for p in patterns} == set(_MATCHERS), "a matcher no pattern uses is dead code"


def test_committed_patterns_lint_clean() -> None:
    patterns = load_patterns(PATTERN_FILE)
    assert patterns == load_patterns()
    names: dict[str, str] = {}
    for pattern in patterns:
        # One name per technique id, and no pattern listed twice.
        assert names.setdefault(pattern.technique, pattern.name) == pattern.name, pattern.technique
    dumped = [p.model_dump_json() for p in patterns]
    assert len(dumped) == len(set(dumped)), "a pattern is listed twice"


PATTERN = '[[pattern]]\ntechnique = "T1111"\nname = "Some Technique"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PATTERN + 'match = "edge"\nedge = "readz"\n', "pattern[0].edge (T1111): Value error, unknown edge type"),
        (PATTERN + 'match = "edge"\nedge = "reads"\nfrom_kind = "fil"\n', "pattern[0].from_kind (T1111)"),
        (PATTERN + 'match = "edgy"\n', "pattern[0] (T1111): Input tag 'edgy'"),
        (PATTERN + 'match = "api"\napi = ["kernel32.Sleep"]\n', "pattern[0].apis (T1111): Field required"),
        (PATTERN + 'match = "long_sleep"\nmin_ms = "60000"\n', "pattern[0].min_ms (T1111)"),
        (PATTERN + 'match = "decrypt_from_magic"\nmagics = ["0g"]\n', "pattern[0].magics[0] (T1111)"),
        (PATTERN + 'match = "stage_kind"\nstage_kind = "dll"\n', "pattern[0].stage_kind (T1111)"),
        (PATTERN.replace("T1111", "1111") + 'match = "registry_read"\n', "pattern[0].technique (1111)"),
        ('[[pattern]]\nname = "x"\nmatch = "registry_read"\n', "pattern[0].technique: Field required"),
        ("pattern = 3\n", "pattern: Input should be a valid list"),
        ("[[pattern\n", "not TOML"),
    ],
)
def test_a_bad_pattern_is_one_line_naming_file_and_key(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "attack.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PatternError) as caught:
        load_patterns(path)
    shown = str(caught.value)
    assert shown.startswith(f"{path}: ") and message in shown and "\n" not in shown, shown


def test_parse_patterns_reads_the_shipped_table() -> None:
    assert parse_patterns(PATTERN_FILE.read_text(encoding="utf-8"), "x") == load_patterns()


GLOBS = ["kernel32.createprocess*", "*.exe", "c:\\users\\*\\appdata\\*", "[a-c]?x", "[!a]*", "x[*]y", "a.b+c", "", "*"]
NAMES = [
    "kernel32.createprocessw",
    "KERNEL32.CreateProcessW",
    "a.exe",
    "a.exe.bak",
    "bx",
    "abx",
    "cyx",
    "x*y",
    "xzy",
    "a.b+c",
    "abbc",
    "",
    "c:\\users\\bob\\appdata\\x",
    "c:\\users\\appdata",
    "\n",
    "a\nb.exe",
]


def test_compiled_globs_match_as_fnmatchcase() -> None:
    import fnmatch

    from emulator.analysis.attack import _glob

    for pattern in GLOBS:
        for name in NAMES:
            assert _glob(pattern)(name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


def test_prepared_analysis_compiles_nothing_more() -> None:
    """attack.prepare() (run beside the child) compiles every glob the shipped table's matchers
    test, so analysing a replay compiles none."""
    from emulator.analysis.attack import _glob, prepare
    from emulator.trace import read_trace

    _glob.cache_clear()
    prepare()
    before = _glob.cache_info()
    trace = read_trace(Path(__file__).parent / "data" / "frozen" / "3cx")
    assert analyse(trace).techniques
    after = _glob.cache_info()
    assert after.misses == before.misses and after.hits > before.hits


def test_prepared_report_reads_the_attack_release_once() -> None:
    """attack.prepare() reads the shipped table's ATT&CK release (beside the child): building a
    report after it parses no TOML, and names the release the table holds."""
    from emulator.analysis.attack import attack_release, prepare
    from emulator.containment import Guard
    from emulator.document import build_report
    from emulator.output import _containment
    from emulator.trace import read_trace

    attack_release.cache_clear()
    prepare()
    before = attack_release.cache_info()
    trace = read_trace(Path(__file__).parent / "data" / "frozen" / "3cx")
    report = build_report(trace, analyse(trace), [], _containment(trace, Guard(None), []), "SNAPSHOT")
    after = attack_release.cache_info()
    assert after.misses == before.misses == 1 and after.hits > before.hits
    assert report.attack_release == tomllib.loads(PATTERN_FILE.read_text(encoding="utf-8"))["release"]
