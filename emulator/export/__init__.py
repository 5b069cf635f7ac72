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

import contextlib
import gc
import json
import os
import signal
import threading
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
# The exports' copy also writes report.json (with its notes of failed exports) here; the parent
# renames it into place once the copy reported back and drawing changed nothing it holds.
REPORT_COPY_FILE = ".report.json.copy"


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
    import emulator.sandbox  # noqa: F401 - the exports' copy sets its parent-death signal with it


def _exports(report: Report, out: Path) -> dict[str, Callable[[], bytes | dict[str, bytes]]]:
    """Export name -> what makes it. Each imports its own exporter when it runs, so one that
    cannot be imported (a signal that cut the import short while the child emulated) fails alone,
    as a note, instead of losing every export."""

    def iocs() -> bytes:
        from emulator.export.iocs import iocs_csv

        return iocs_csv(report).encode()

    def stix() -> bytes:
        from emulator.export.stix import stix_json

        return stix_json(report, out).encode()

    def navigator() -> bytes:
        from emulator.export.navigator import navigator_layer

        return (json.dumps(navigator_layer(report), indent=2) + "\n").encode()

    def pcap() -> bytes:
        from emulator.export.pcap import network_pcap

        return network_pcap(report, out)

    def har() -> bytes:
        from emulator.export.har import network_har

        return (json.dumps(network_har(report, out), indent=2) + "\n").encode()

    def detections() -> dict[str, bytes]:
        from emulator.export.detections.sigma import sigma_rules, sigma_yaml
        from emulator.export.detections.suricata import suricata_text
        from emulator.export.detections.yara_rules import stage_rules

        files = {f"yara/{sid}.yar": text.encode() for sid, text in stage_rules(report, out).items()}
        files |= {f"sigma/{name}": sigma_yaml(rule).encode() for name, rule in sigma_rules(report).items()}
        files["suricata.rules"] = suricata_text(report, out).encode()
        return files

    return {
        "iocs.csv": iocs,
        "stix-bundle.json": stix,
        "attack-navigator-layer.json": navigator,
        "network.pcap": pcap,
        "network.har": har,
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


def _write_all(out: Path, report: Report) -> list[tuple[str, str]]:
    """Write every export of ``report`` into ``out``; return (export, error) of each that failed."""
    from emulator.output import _clear, _real_folder, _write_new

    failed: list[tuple[str, str]] = []
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
            failed.append((name, f"{type(err).__name__}: {err}"))
    return failed


def _with_notes(report: Report, failed: list[tuple[str, str]]) -> Report:
    """``report`` with a note per failed export."""
    seq = report.stats.events
    notes = [Note(seq=seq, stage="", what="export_failed", detail=f"{name}: {error}") for name, error in failed]
    return report.model_copy(update={"notes": [*report.notes, *notes]}) if notes else report


def _noted(out: Path, report: Report, failed: list[tuple[str, str]], rewrite: bool) -> Report:
    """``report`` with a note per failed export, rewritten in ``out/report.json`` if it changed
    (or if ``rewrite``)."""
    from emulator.output import write_atomically

    noted = _with_notes(report, failed)
    if noted is not report or rewrite:
        write_atomically(out / "report.json", noted.json_chunks())
    return noted


def write_exports(out: Path, report: Report, *, yara_rules: str | None = None) -> Report:
    """Scan with the user's YARA rules (into ``report.yara``), write every export, and return the
    report (rewritten in ``out/report.json`` if the scan or a failed export changed it). An export
    that fails is named in ``report.notes`` (``export_failed``); the others are still written."""
    if yara_rules is not None:  # a replay scans earlier (write_outputs), so report.html shows it
        report = add_yara_scan(out, report, yara_rules)
    return _noted(out, report, _write_all(out, report), rewrite=yara_rules is not None)


class BackgroundExports:
    """:func:`write_exports` of a report, done by a forked copy of this process while this one
    draws: the exports (STIX, detections, pcap...) and the drawings are each about half of the
    work after a replay's emulation, and the emulation child's core is free by then.

    The copy writes the exports into OUTDIR (under the same audit-hook guard: it is forked from
    inside it), then report.json with the notes of the exports that failed (into
    :data:`REPORT_COPY_FILE`), and sends back which exports failed and why; this process adds
    the same notes, as :func:`write_exports` does, and renames the copy's report.json into
    place. :meth:`finish` is given the report as drawn: the exports and report.json read nothing
    that drawing changes when all went well (the containment counts, the notes and the outcome
    stay as they were); if any of those changed (a drawing error, a signal, a refusal), or the
    copy did not report back, the exports and report.json are written again here, from that
    report, so the output is always what :func:`write_exports` alone would write.
    """

    def __init__(
        self, pid: int, reader: int, out: Path, report: Report, first: Callable[[], None] | None = None
    ) -> None:
        self.pid = pid
        self.reader = reader
        self.out = out
        self.report = report
        self.first = first

    @classmethod
    def start(cls, out: Path, report: Report, first: Callable[[], None] | None = None) -> BackgroundExports | None:
        """Fork the copy; None where forking is unsafe or unavailable (another thread is running:
        a fork copies only this one, and a lock another thread holds would never be released).
        ``first``: what the copy does before the exports (a replay: write the files the exports
        read and the frozen trace, emulator/output.py), so the two sides are about as long;
        once :meth:`finish` returns, it was done, by the copy or, if the copy did not report
        back, by :meth:`finish` itself."""
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return None
        import emulator.sandbox  # noqa: F401 - here, not in the copy (a replay has it: prepare())
        from emulator.containment import fork_own_copy

        reader, writer = os.pipe()
        try:
            pid = fork_own_copy()
        except OSError:
            os.close(reader)
            os.close(writer)
            return None
        if pid == 0:  # the copy: never returns
            os.close(reader)
            _export_in_copy(out, report, writer, first)
        os.close(writer)
        return cls(pid, reader, out, report, first)

    def _collect(self) -> list[tuple[str, str]] | None:
        """What the copy sent once it ended (None if it died or sent nonsense); it is reaped."""
        chunks = []
        try:
            while chunk := os.read(self.reader, 1 << 16):
                chunks.append(chunk)
        except OSError:
            chunks = []
        self._close()
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        finally:
            self.pid = 0  # reaped
        if os.waitstatus_to_exitcode(status) != 0:
            return None
        try:
            failed = json.loads(b"".join(chunks))
        except ValueError:
            return None
        if not (isinstance(failed, list) and all(isinstance(f, list) and len(f) == 2 for f in failed)):
            return None
        return [(str(name), str(error)) for name, error in failed]

    def _close(self) -> None:
        if self.reader >= 0:
            os.close(self.reader)
            self.reader = -1

    def finish(self, drawn: Report, unchanged: bool) -> Report:
        """The exports and report.json are written: return ``drawn`` with the exports' notes
        (:func:`write_exports`'s result). ``unchanged``: drawing left everything the exports and
        report.json read as it was."""
        from emulator.output import _clear

        failed = self._collect() if unchanged else None
        if failed is not None:
            noted = _with_notes(drawn, failed)
            try:
                (self.out / REPORT_COPY_FILE).replace(self.out / "report.json")
            except OSError:  # not there after all: written here
                return _noted(self.out, drawn, failed, rewrite=True)
            return noted
        # not the same report, or the copy died: write them here, afresh
        self.cancel()
        if self.first is not None:  # what the copy did before the exports, done again
            self.first()
        for name in (*EXPORT_FILES, DETECTIONS_DIR, REPORT_COPY_FILE):
            _clear(self.out / name)
        return _noted(self.out, drawn, _write_all(self.out, drawn), rewrite=True)

    def cancel(self) -> None:
        """Stop the copy (a signal, a failure) if it still runs: kill it and reap it."""
        self._close()
        if self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


def _export_in_copy(out: Path, report: Report, writer: int, first: Callable[[], None] | None) -> None:
    """The forked copy of :class:`BackgroundExports`: do ``first``, write the exports and
    report.json (as :data:`REPORT_COPY_FILE`), send what failed, end. A ``first`` that fails
    ends the copy with an error: the parent then does it and writes the exports itself."""
    code = 1
    try:
        from emulator.output import _write_new_lines
        from emulator.sandbox import set_parent_death_signal  # imported before the fork

        gc.disable()  # a short life: the collector would only walk (and copy) the parent's heap
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
        set_parent_death_signal()
        if first is not None:
            first()
        failed = _write_all(out, report)
        _write_new_lines(out / REPORT_COPY_FILE, _with_notes(report, failed).json_chunks())
        message = json.dumps(failed).encode()
        while message:
            message = message[os.write(writer, message) :]
        code = 0
    except BaseException:  # noqa: BLE001 - the parent sees the exit code and writes the exports itself
        code = 1
    finally:
        os._exit(code)
