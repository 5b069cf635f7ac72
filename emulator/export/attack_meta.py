"""Which ATT&CK release a report's technique IDs come from."""

from __future__ import annotations

from emulator.report import Report

# The release the project's technique table is pinned to (issue 12 pins v18); used when the
# report does not name one itself.
ATTACK_RELEASE = "18"
# Report fields, present in newer schemas, that may name the release.
_RELEASE_FIELDS = ("attack_release", "attack_version")


def attack_release(report: Report) -> str:
    data = report.model_dump()
    for name in _RELEASE_FIELDS:
        value = data.get(name)
        if isinstance(value, str | int) and str(value).strip():
            return str(value).strip().lstrip("vV")
    return ATTACK_RELEASE


def technique_url(technique: str) -> str:
    return "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"
