"""Exports for the tools analysts use, written into OUTDIR after report.json.

Every export is a pure function of the report (``emulator.report.Report``) and the bytes it names
in OUTDIR (``stages/``, ``network/``, ``dropped/``):

- ``iocs.csv`` (``iocs.py``), ``stix-bundle.json`` (``stix.py``),
  ``attack-navigator-layer.json`` (``navigator.py``), ``network.pcap`` / ``network.har``
  (``pcap.py``, ``har.py``);
- ``detections/``: ``yara/<stage>.yar``, ``sigma/*.yml``, ``suricata.rules`` (``detections/``);
- ``run --yara RULES``: the user's rules over every buffer, into ``report.yara`` (``yara_scan.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from emulator.report import Note, Report

EXPORT_FILES = (
    "iocs.csv",
    "stix-bundle.json",
    "attack-navigator-layer.json",
    "network.pcap",
    "network.har",
)
DETECTIONS_DIR = "detections"


def prepare() -> None:
    """Import every exporter and its library (stix2, dpkt, yara, yaml) ahead of time: a replay does
    it while its emulation child runs, so the exports cost only their own work."""
    import emulator.export.detections.sigma
    import emulator.export.detections.suricata
    import emulator.export.detections.yara_rules
    import emulator.export.har
    import emulator.export.iocs
    import emulator.export.navigator
    import emulator.export.pcap
    import emulator.export.stix
    import emulator.export.yara_scan  # noqa: F401

    emulator.export.detections.yara_rules.benign_corpus()  # read once per process, ahead of time
    emulator.export.stix.warm_up()


def _exports(report: Report, out: Path) -> dict[str, Callable[[], bytes | dict[str, bytes]]]:
    from emulator.export.detections.sigma import sigma_rules, sigma_yaml
    from emulator.export.detections.suricata import suricata_text
    from emulator.export.detections.yara_rules import stage_rules
    from emulator.export.har import network_har
    from emulator.export.iocs import iocs_csv
    from emulator.export.navigator import navigator_layer
    from emulator.export.pcap import network_pcap
    from emulator.export.stix import stix_json

    def detections() -> dict[str, bytes]:
        files = {f"yara/{sid}.yar": text.encode() for sid, text in stage_rules(report, out).items()}
        files |= {f"sigma/{name}": sigma_yaml(rule).encode() for name, rule in sigma_rules(report).items()}
        files["suricata.rules"] = suricata_text(report).encode()
        return files

    return {
        "iocs.csv": lambda: iocs_csv(report).encode(),
        "stix-bundle.json": lambda: stix_json(report, out).encode(),
        "attack-navigator-layer.json": lambda: (json.dumps(navigator_layer(report), indent=2) + "\n").encode(),
        "network.pcap": lambda: network_pcap(report, out),
        "network.har": lambda: (json.dumps(network_har(report, out), indent=2) + "\n").encode(),
        DETECTIONS_DIR: detections,
    }


def add_yara_scan(out: Path, report: Report, yara_rules: str) -> Report:
    """``report`` with ``yara`` set to the matches of ``yara_rules`` over the bytes in ``out``;
    a scan that fails (rules changed since the check, a timeout) is a note, never lost data."""
    from emulator.export.yara_scan import scan

    try:
        return report.model_copy(update={"yara": scan(report, out, yara_rules)})
    except Exception as err:  # the report must still be written
        note = Note(
            seq=report.stats.events, stage="", what="export_failed", detail=f"yara: {type(err).__name__}: {err}"
        )
        return report.model_copy(update={"notes": [*report.notes, note]})


def write_exports(out: Path, report: Report, *, yara_rules: str | None = None) -> Report:
    """Scan with the user's YARA rules (into ``report.yara``), write every export, and return the
    report (rewritten in ``out/report.json`` if the scan or a failed export changed it). An export
    that fails is named in ``report.notes`` (``export_failed``); the others are still written."""
    from emulator.output import _clear, _real_folder, _write_new, write_atomically

    notes: list[Note] = []
    seq = report.stats.events
    if yara_rules is not None:  # a replay scans earlier (write_outputs), so report.html shows it
        report = add_yara_scan(out, report, yara_rules)
    for name, produce in _exports(report, out).items():
        try:
            data = produce()
            if isinstance(data, dict):  # a folder of files
                folder = out / name
                _clear(folder)
                _real_folder(folder)
                for relative, content in sorted(data.items()):
                    path = folder / relative
                    if path.parent != folder:
                        _real_folder(path.parent)
                    _write_new(path, content)
            else:
                _write_new(out / name, data)
        except Exception as err:  # an export must never lose the report
            notes.append(Note(seq=seq, stage="", what="export_failed", detail=f"{name}: {type(err).__name__}: {err}"))
    if notes:
        report = report.model_copy(update={"notes": [*report.notes, *notes]})
    if notes or yara_rules is not None:
        write_atomically(out / "report.json", report.json_chunks())
    return report
