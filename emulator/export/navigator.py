"""``attack-navigator-layer.json``: the replay's ATT&CK techniques as an ATT&CK Navigator layer (format 4.5)."""

from __future__ import annotations

from typing import Any

from emulator.export.attack_meta import attack_release
from emulator.report import Report

LAYER_FORMAT = "4.5"
NAVIGATOR_VERSION = "5.1.0"
DOMAIN = "enterprise-attack"
COLOR = "#e8684a"


def navigator_layer(report: Report) -> dict[str, Any]:
    by_technique: dict[str, list[tuple[str, list[int]]]] = {}
    names = {s.id: s.name for s in report.stages}
    for hit in report.attack:
        by_technique.setdefault(hit.technique, []).append((hit.stage, hit.evidence))
    techniques = []
    for technique in sorted(by_technique):
        hits = by_technique[technique]
        comment = "; ".join(
            f"stage {stage} ({names.get(stage, '?')}): evidence seq {evidence}" for stage, evidence in hits
        )
        techniques.append(
            {
                "techniqueID": technique,
                "score": len(hits),
                "color": COLOR,
                "comment": comment,
                "enabled": True,
                "metadata": [{"name": "stage", "value": stage} for stage, _ in hits],
                "links": [],
                "showSubtechniques": False,
            }
        )
    return {
        "name": f"chainreplay: {report.target.name}",
        "versions": {"attack": attack_release(report), "navigator": NAVIGATOR_VERSION, "layer": LAYER_FORMAT},
        "domain": DOMAIN,
        "description": f"Techniques chainreplay {report.tool.version} observed replaying {report.target.name} "
        f"(sha256 {report.target.sha256}); outcome {report.outcome.status}.",
        "filters": {"platforms": ["Windows"]},
        "sorting": 0,
        "layout": {"layout": "side", "aggregateFunction": "average", "showID": True, "showName": True},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {
            "colors": ["#ffffff", COLOR],
            "minValue": 0,
            "maxValue": max((len(h) for h in by_technique.values()), default=1),
        },
        "legendItems": [],
        "metadata": [{"name": "sha256", "value": report.target.sha256}],
        "links": [],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
    }
