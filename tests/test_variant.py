"""Variants of the 3CX chain built with mingw-w64 and checked against the committed 3CX baseline.

Each variant is built once per session (``variants`` fixture, under tmp) and replayed once.
What `check` must say: a new C2 domain is network drift naming the domain; a new RC4 key changes
stage hashes and nothing in the graph's shape; WinHTTP in place of WinINet changes the APIs of
the stage-2 DLL (and the import resolution of the loader that maps it) and nothing else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.check import BASELINE_FILE, Drift, compare, load_baseline, normalise, render_drift
from emulator.cli import main
from emulator.report import Report
from emulator.variant import VariantError, build_variant, make_variables, parse_settings, read_variant_file

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "scenarios" / "3cx"

needs_mingw = pytest.mark.skipif(
    shutil.which("x86_64-w64-mingw32-gcc") is None or shutil.which("make") is None,
    reason="variant builds need mingw-w64 and make",
)

# The C2-domain variant is also an x86 build: it is compared with the 3cx-x86 baseline.
VARIANTS = {
    "c2": {"c2_domains": "cdn.drift.example,api.drift.example", "arch": "x86"},
    "rc4": {"rc4_key": "another-key-42"},
    "winhttp": {"transport": "winhttp"},
}


@pytest.fixture(scope="session")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Drift]]:
    """``variants(label)``: (folder, drift against the 3CX baseline of its arch), built and replayed once."""
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    cache: dict[str, tuple[Path, Drift]] = {}

    def get(label: str) -> tuple[Path, Drift]:
        if label not in cache:
            folder = tmp_path_factory.mktemp("variants") / f"3cx-{label}"
            build_variant(SOURCE, folder, VARIANTS[label])
            outdir = tmp_path_factory.mktemp(f"replay-variant-{label}")
            result = replay_target(load_scenario(folder), outdir, isolate=False)
            report = Report.model_validate_json(Path(result.report_path).read_text(encoding="utf-8"))
            baseline = (
                REPO / "scenarios" / ("3cx-x86" if VARIANTS[label].get("arch") == "x86" else "3cx") / BASELINE_FILE
            )
            cache[label] = (folder, compare(load_baseline(baseline), normalise(report)))
        return cache[label]

    return get


def _sections(drift: Drift) -> set[tuple[str, str]]:
    return {(c.group, c.section) for c in drift.changes}


@needs_mingw
def test_new_c2_domain_is_network_drift_naming_the_domain(variants: Callable[[str], tuple[Path, Drift]]) -> None:
    folder, drift = variants("c2")
    text = render_drift(drift, title="3cx-c2")
    network = [c for c in drift.changes if c.section == "network"]
    assert any(c.kind == "appeared" and "https://api.drift.example/" in c.subject for c in network), text
    assert any(c.kind == "vanished" and "https://pbxcloudeservices.com/" in c.subject for c in network), text
    assert "+ network: POST https://api.drift.example/phonesystem/api/status -> 200" in text
    assert any(c.section == "graph" and "url:https://api.drift.example/" in c.subject for c in drift.changes)
    # the behaviour is the same chain: same stages, same code, same APIs
    assert not {c for c in drift.changes if c.section in ("apis", "techniques", "outcome")}, text
    assert not [c for c in drift.changes if c.section == "stage" and c.subject.startswith("sha256")], text
    hosts = json.loads((folder / "variant.json").read_text(encoding="utf-8"))["parameters"]["c2_domains"]
    assert hosts == "cdn.drift.example,api.drift.example"


@needs_mingw
def test_new_rc4_key_changes_stage_hashes_and_not_the_graph(variants: Callable[[str], tuple[Path, Drift]]) -> None:
    _, drift = variants("rc4")
    text = render_drift(drift, title="3cx-rc4")
    assert drift.drifted
    assert ("s0", "stage") in _sections(drift) and any(c.subject == "sha256" for c in drift.changes), text
    assert not [c for c in drift.changes if c.section in ("graph", "apis", "network", "techniques")], text
    assert not [c for c in drift.changes if c.group == "chain"], text
    assert not [c for c in drift.changes if c.kind != "changed"], text  # nothing appeared or vanished


@needs_mingw
def test_winhttp_changes_stage_2_apis_and_nothing_else(variants: Callable[[str], tuple[Path, Drift]]) -> None:
    _, drift = variants("winhttp")
    text = render_drift(drift, title="3cx-winhttp")
    api_changes = [c for c in drift.changes if c.section == "apis"]
    stage2 = {(c.kind, c.subject) for c in api_changes if c.group == "s2"}
    assert ("vanished", "wininet.InternetOpenUrlW") in stage2 and ("appeared", "winhttp.WinHttpOpen") in stage2, text
    assert ("appeared", "winhttp.WinHttpReadData x2") in stage2, text
    assert not [c for c in api_changes if c.subject.startswith("wininet.") and c.kind == "appeared"], text
    # outside stage 2's own API sequence, only its bytes changed (and so the loader resolving its imports)
    others = {c for c in drift.changes if c.section not in ("apis", "stage", "files")}
    assert not others, text
    assert {c.group for c in api_changes} <= {"s1", "s2"}, text
    assert not [c for c in drift.changes if c.section == "files" and c.group != "s0"], text


@needs_mingw
def test_variant_build_is_deterministic_and_default_is_the_committed_scenario(
    variants: Callable[[str], tuple[Path, Drift]], tmp_path: Path
) -> None:
    folder, _ = variants("rc4")
    again = build_variant(SOURCE, tmp_path / "again", VARIANTS["rc4"])
    assert (again.folder / "SHA256SUMS").read_bytes() == (folder / "SHA256SUMS").read_bytes()
    assert (again.folder / "samples" / "ffmpeg.dll").read_bytes() == (folder / "samples" / "ffmpeg.dll").read_bytes()
    committed = (SOURCE / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    built = (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    changed = {line.split("  ")[1] for line in set(built) ^ set(committed)}
    assert changed == {"samples/ffmpeg.dll", "samples/d3dcompiler_47.dll"}


def test_parameters_are_validated_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = read_variant_file(SOURCE)
    assert make_variables(spec, {}) == ({}, {})
    assert make_variables(spec, {"transport": "wininet", "arch": "x64"}) == ({}, {})  # defaults change nothing
    variables, changed = make_variables(spec, {"rc4_key": "AB", "transport": "winhttp", "icon_range": "3-5"})
    assert variables["VARIANT_DEFS"] == (
        "-DRC4_KEY_BYTES=0x41,0x42 -DICON_INDEX_MIN=3 -DICON_INDEX_MAX=5 -DDEAD_DROP_WINHTTP"
    )
    assert variables["CARRIER_ARGS"] == "--rc4-key 4142" and variables["VARIANT_LIBS"] == "-lwinhttp"
    assert changed == {"rc4_key": "AB", "icon_range": "3-5", "transport": "winhttp"}
    for settings, message in [
        ({"rc4key": "x"}, "--set rc4key: unknown parameter"),
        ({"aes_key": "00"}, "--set aes_key: expected 32 bytes"),
        ({"carrier_marker": "zz"}, "is not hex"),
        ({"icon_range": "9-3"}, "expected LO-HI with 0 <= LO <= HI <= 15"),
        ({"c2_domains": "a.example,bad_host"}, "got 'bad_host'"),
        ({"transport": "curl"}, "expected one of wininet, winhttp"),
        ({"rc4_key": "caf\u00e9"}, "printable ASCII"),
    ]:
        with pytest.raises(VariantError, match=message):
            make_variables(spec, settings)
    with pytest.raises(VariantError, match="expected NAME=VALUE"):
        parse_settings(["rc4_key"])

    rc = main(["variant", str(SOURCE), "--set", "icon_range=0-16", "-o", str(tmp_path / "v")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1 and "icon_range" in err[0]
    assert not (tmp_path / "v").exists()
    rc = main(["variant", str(REPO / "scenarios" / "benign-dll"), "-o", str(tmp_path / "v")])
    assert rc == 2 and "declares no variant parameters" in capsys.readouterr().err


def test_missing_mingw_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = shutil.which("make")
    if make:
        (bin_dir / "make").symlink_to(make)
    monkeypatch.setenv("PATH", str(bin_dir))
    rc = main(["variant", str(SOURCE), "--arch", "x86", "-o", str(tmp_path / "v")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1, err
    if make:
        assert err[0] == (
            "chainreplay: error: mingw-w64 is missing: i686-w64-mingw32-gcc not found on PATH "
            "(apt-get install mingw-w64) to build x86 variants"
        )
    assert not (tmp_path / "v").exists()
