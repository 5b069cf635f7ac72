"""Indicators of compromise collected from a report: ``collect_iocs(report)`` and ``iocs.csv``.

The CSV columns extend Volexity's published ``value,entity_type,description`` with the stage that
produced the indicator and the trace events (``seq``) that prove it.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from emulator.export._common import header, http_exchanges
from emulator.report import Note, Report

IOC_COLUMNS = ("value", "type", "stage", "evidence", "description")
# File operations that name a file the chain touched (reads of its own modules are included:
# the side-loaded and encrypted files are indicators too).
FILE_OPS = ("open", "read", "create", "write", "delete", "rename", "copy", "move")
REGISTRY_OPS = ("open", "read", "create", "write", "set", "delete")


@dataclass
class Ioc:
    value: str
    type: str  # domain, ipv4, url, sha256, sync_object, file_path, registry_key, user_agent, cookie
    description: str
    stages: list[str] = field(default_factory=list)
    evidence: list[int] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return ";".join(self.stages)

    def row(self) -> tuple[str, str, str, str, str]:
        return (self.value, self.type, self.stage, ";".join(str(s) for s in self.evidence), self.description)


class _Collector:
    def __init__(self) -> None:
        self.iocs: dict[tuple[str, str], Ioc] = {}

    def add(self, value: str | None, kind: str, stage: str, seqs: list[int] | int | None, description: str) -> None:
        if not value:
            return
        key = (value, kind)
        ioc = self.iocs.setdefault(key, Ioc(value=value, type=kind, description=description))
        if stage and stage not in ioc.stages:
            ioc.stages.append(stage)
        for seq in [seqs] if isinstance(seqs, int) else seqs or []:
            if seq not in ioc.evidence:
                ioc.evidence.append(seq)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def collect_iocs(report: Report) -> list[Ioc]:
    """Every indicator the replay observed, one per (value, type), in the order first seen."""
    out = _Collector()
    for stage in report.stages:
        out.add(
            stage.sha256, "sha256", stage.id, stage.origin.evidence, f"stage {stage.id} ({stage.kind}) {stage.name}"
        )
    for record in report.network:
        host = record.host.lower().rstrip(".")
        if record.kind == "dns":
            out.add(host, "ipv4" if _is_ip(host) else "domain", record.stage, record.seq, "DNS query")
            answer = record.response.headers.get("A")
            if answer:
                out.add(
                    answer, "ipv4", record.stage, record.seq, f"DNS answer for {host} (synthetic responder address)"
                )
            continue
        what = "contacted" + (" (blocked)" if record.blocked else "")
        if host:
            out.add(host, "ipv4" if _is_ip(host) else "domain", record.stage, record.seq, f"host {what}")
        if record.url:
            out.add(record.url, "url", record.stage, record.seq, f"{record.method or record.kind.upper()} {what}")
    for record in http_exchanges(report):
        user_agent = header(record.request.headers, "User-Agent")
        out.add(user_agent, "user_agent", record.stage, record.seq, f"User-Agent sent to {record.host}")
        cookie = header(record.request.headers, "Cookie")
        out.add(cookie, "cookie", record.stage, record.seq, f"Cookie sent to {record.host}")
        if record.request.sha256:
            out.add(
                record.request.sha256,
                "sha256",
                record.stage,
                record.seq,
                f"request body of {record.method} {record.url}",
            )
        if record.response.sha256:
            out.add(
                record.response.sha256,
                "sha256",
                record.stage,
                record.seq,
                f"response body of {record.method} {record.url}",
            )
    for url, host, note in command_line_urls(report):
        seen = f"named in a command line ({note.what}), not contacted"
        if host:
            out.add(host, "ipv4" if _is_ip(host) else "domain", note.stage, note.seq, f"host {seen}")
        out.add(url, "url", note.stage, note.seq, f"URL {seen}")
    writers = {f.sha256: f for f in report.files if f.sha256 and f.op == "write"}
    for dropped in report.dropped:
        writer = writers.get(dropped.sha256)
        out.add(
            dropped.sha256,
            "sha256",
            writer.stage if writer else "",
            writer.seq if writer else None,
            f"dropped file {dropped.path}",
        )
    for sync in report.sync_objects:
        out.add(sync.name, "sync_object", sync.stage, sync.seq, f"{sync.object_type} ({sync.op})")
    for file in report.files:
        if file.op in FILE_OPS:
            out.add(file.path, "file_path", file.stage, file.seq, f"file {file.op}")
    for reg in report.registry:
        if reg.op in REGISTRY_OPS:
            value = f"{reg.path}\\{reg.value_name}" if reg.value_name else reg.path
            out.add(value, "registry_key", reg.stage, reg.seq, f"registry {reg.op}")
    return list(out.iocs.values())


def command_line_urls(report: Report) -> list[tuple[str, str, Note]]:
    """(URL, its host lower-case, the note) for each URL a note names without the replay having
    contacted it: a script host's command line (``script_command``: PowerShell's decoded command,
    mshta's URL) the replay read but did not run."""
    found: list[tuple[str, str, Note]] = []
    for note in report.notes:
        for url in note.urls or ():
            found.append((url, url_host(url).rstrip("."), note))
    return found


def hosts_of(report: Report) -> list[str]:
    """Domain names the chain contacted or resolved, in the order first seen (not those only
    named in a command line)."""
    named = {host for _, host, _ in command_line_urls(report)}
    contacted = {r.host.lower().rstrip(".") for r in report.network}
    return [
        i.value for i in collect_iocs(report) if i.type == "domain" and (i.value in contacted or i.value not in named)
    ]


def url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def iocs_csv(report: Report) -> str:
    """``iocs.csv``: a header line and one row per indicator."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(IOC_COLUMNS)
    for ioc in collect_iocs(report):
        writer.writerow(ioc.row())
    return buffer.getvalue()
