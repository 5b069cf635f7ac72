"""A scenario may read data from a scenario beside it (scenarios/3cx-x86 shares ../3cx's icons,
C2 reply and victim files), verified by that scenario's SHA256SUMS; nothing else outside its
folder is reachable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emulator.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def test_the_x86_variant_keeps_only_its_own_builds() -> None:
    folder = SCENARIOS / "3cx-x86"
    files = [p.relative_to(folder) for p in folder.rglob("*") if p.is_file()]
    data = sorted(p.as_posix() for p in files if p.parts[0] in ("samples", "c2", "github", "files"))
    assert data == ["c2/guard64.dll", "c2/stage3.bin", "samples/d3dcompiler_47.dll", "samples/ffmpeg.dll"]
    plan = load_scenario(SCENARIOS / "3cx-x86")
    shared = [Path(f.host_path) for f in plan.files[1:]]
    assert shared and all(p.is_relative_to(SCENARIOS / "3cx" / "files") for p in shared)


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    """Copies of scenarios/3cx and scenarios/3cx-x86 side by side; returns the scenarios folder."""
    folder = tmp_path / "scenarios"
    for name in ("3cx", "3cx-x86"):
        shutil.copytree(SCENARIOS / name, folder / name, ignore=shutil.ignore_patterns("build", "src", "tools"))
    return folder


def test_a_shared_file_is_verified_by_its_own_scenario(pair: Path) -> None:
    with (pair / "3cx" / "files" / "config.json").open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(ScenarioError, match=r"^\.\./3cx/files/config\.json: sha256 .* does not match SHA256SUMS"):
        load_scenario(pair / "3cx-x86")
    assert load_scenario(pair / "3cx-x86", verify=False).name == "3cx-x86"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('path = "../3cx/files/config.json"', 'path = "../loose.txt"', "files[1].path"),
        ('path = "../3cx/files/config.json"', 'path = "../notascenario/loose.txt"', "files[1].path"),
        ('path = "../3cx/files/config.json"', 'path = "../../outside.txt"', "files[1].path"),
        ('path = "../3cx/files/config.json"', 'path = "../link/config.json"', "files[1].path"),
        ('body_file = "../3cx/c2/beacon_reply.txt"', 'body_file = "../loose.txt"', "responders[1]"),
        ('root = "../3cx/github"', 'root = "../notascenario"', "responders[0]"),
    ],
)
def test_nothing_else_outside_the_folder_is_reachable(pair: Path, old: str, new: str, key: str) -> None:
    (pair / "loose.txt").write_text("loose")
    (pair.parent / "outside.txt").write_text("outside")
    (pair / "notascenario").mkdir()
    (pair / "notascenario" / "loose.txt").write_text("loose")
    (pair / "link").symlink_to(pair.parent, target_is_directory=True)
    (pair.parent / "config.json").write_text("{}")
    toml = pair / "3cx-x86" / "scenario.toml"
    text = toml.read_text(encoding="utf-8")
    assert old in text
    toml.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(pair / "3cx-x86", verify=False)
    shown = str(caught.value)
    assert key in shown and "outside the scenario folder" in shown and "\n" not in shown, shown
