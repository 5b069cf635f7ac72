"""Where a scenario may take its data from: its own folder, or another scenario beside it.

A path in scenario.toml (a sample, a mapped file, a responder's folder or body file) is relative
to the scenario folder. It may lead into a sibling scenario (``../3cx/files/config.json``), so
variants of one chain share its data instead of copying it; the sibling must be a scenario (a
folder with scenario.toml directly under the same parent), and its own SHA256SUMS vouches for
the file. Nothing else outside the folder is reachable: not the parent itself, not a symbolic
link out of it, not any other host path.
"""

from __future__ import annotations

from pathlib import Path

SCENARIO_FILE = "scenario.toml"


class OutsideScenario(ValueError):
    """The path leaves the scenario folder and does not lead into a sibling scenario."""


def owning_scenario(scenario_dir: Path, path: Path) -> Path | None:
    """The scenario folder that holds ``path`` (resolved): ``scenario_dir`` or a sibling scenario."""
    folder = scenario_dir.resolve()
    if path.is_relative_to(folder):
        return folder
    root = folder.parent
    if not path.is_relative_to(root) or path == root:
        return None
    sibling = root / path.relative_to(root).parts[0]
    if (sibling / SCENARIO_FILE).is_file():
        return sibling
    return None


def scenario_data_path(scenario_dir: Path, relative: str) -> Path:
    """``relative`` resolved against ``scenario_dir``; :class:`OutsideScenario` if it may not be read.

    ``ValueError`` / ``OSError`` for a path that cannot be resolved at all (NUL bytes, loops).
    """
    candidate = (scenario_dir.resolve() / relative).resolve()
    if owning_scenario(scenario_dir, candidate) is None:
        raise OutsideScenario(f"{relative}: outside the scenario folder (and not in a scenario beside it)")
    return candidate
