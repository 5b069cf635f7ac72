"""The installed version of a distribution, as ``importlib.metadata.version`` gives it, read
without importing ``importlib.metadata`` where the answer is plain.

The emulation child names the engine's version when it imports it (the shipped tables are
checked against it, the report names it). ``importlib.metadata`` brings the e-mail parser, csv,
zipfile and pathlib with it: ~20 ms of CPU on the cold run's critical path for one header line.
:func:`version` looks where ``importlib.metadata`` would look first (the path finder, through
each ``sys.path`` entry in order) and reads the ``Version`` header of the one ``*.dist-info``
matching the name in the first entry that holds any; in every other case (another finder that
lists distributions ahead of the path finder, a zip or egg on the path, two matching folders in
one entry, no ``METADATA``, a header it would have to unfold, no match at all) it asks
``importlib.metadata``, so the answer is the same either way (tests/test_imports.py compares
the two for every distribution installed).
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder
from pathlib import Path

_SEPARATORS = re.compile(r"[-_.]+")
# A header line as the e-mail parser reads it (a name of printable characters but the colon, then
# the colon), or a line folded onto the one before, holding printable ASCII only.
_PLAIN_HEADER = re.compile(r"(?:[\x21-\x39\x3b-\x7e]+:|[ \t])[\x20-\x7e\t]*")
_UNSURE = object()


def version(name: str) -> str | None:
    """``importlib.metadata.version(name)``; None where it raises ``PackageNotFoundError``."""
    found = _from_path(name)
    if isinstance(found, str):
        return found
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    return _SEPARATORS.sub("-", name).lower().replace("-", "_")


def _from_path(name: str) -> object:
    """The version found the way the path finder finds it, or ``_UNSURE``."""
    for finder in sys.meta_path:
        if finder is PathFinder:
            break
        if getattr(finder, "find_distributions", None) is not None:
            return _UNSURE
    else:
        return _UNSURE
    wanted = _normalized(name)
    for entry in sys.path:
        root = Path(entry or ".")
        if not root.is_dir():
            if root.exists():  # a zip file: importlib.metadata reads it
                return _UNSURE
            continue
        if root.name.lower().endswith(".egg"):
            return _UNSURE
        try:
            matches = [child for child in os.listdir(root) if _names(child, wanted)]  # noqa: PTH208 - names only
        except OSError:
            return _UNSURE
        if not matches:
            continue
        if len(matches) != 1 or not matches[0].lower().endswith(".dist-info"):
            return _UNSURE
        return _version_header(root / matches[0] / "METADATA")
    return _UNSURE


def _names(child: str, wanted: str) -> bool:
    """``child`` (a folder name in a ``sys.path`` entry) holds the metadata of ``wanted``."""
    low = child.lower()
    return low.endswith((".dist-info", ".egg-info")) and _normalized(low.rpartition(".")[0].partition("-")[0]) == wanted


def _version_header(path: Path) -> object:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return _UNSURE
    for number, line in enumerate(lines):
        if not line:
            break  # the end of the headers
        if not _PLAIN_HEADER.fullmatch(line) or line.startswith("From "):
            return _UNSURE
        key, colon, value = line.partition(":")
        if colon and key.lower() == "version":
            following = lines[number + 1] if number + 1 < len(lines) else ""
            if following[:1] in (" ", "\t"):  # folded onto the next line
                return _UNSURE
            value = value.lstrip(" \t")
            return value or _UNSURE
    return _UNSURE
