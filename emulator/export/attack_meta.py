"""Which ATT&CK release a report's technique IDs come from."""

from __future__ import annotations

import re

from emulator.report import Report

# The release the project's technique table is pinned to (issue 12 pins v18); used when the
# report does not name one itself.
ATTACK_RELEASE = "18"
# The release number in a name such as "ATT&CK Enterprise v18" or "v18.1".
_RELEASE_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*$")


def attack_release(report: Report) -> str:
    """The release number (Navigator's ``versions.attack``) of the report's technique IDs."""
    match = _RELEASE_NUMBER.search(report.attack_release.strip())
    return match.group(1) if match else ATTACK_RELEASE


def technique_url(technique: str) -> str:
    return "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"
