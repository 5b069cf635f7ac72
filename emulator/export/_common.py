"""Helpers every exporter shares: the bytes a report names in its output folder, stable ids."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from emulator.report import NetworkRecord, Report

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Namespace of every deterministic id chainreplay derives from content (uuid5).
CHAINREPLAY_NAMESPACE = uuid.UUID("6f0c7d1e-2b9a-5c3e-8d41-0a1b2c3d4e5f")


def stable_uuid(*parts: str) -> str:
    """A uuid5 over ``parts``: the same content gives the same id in every replay."""
    return str(uuid.uuid5(CHAINREPLAY_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True)
class Blob:
    """Bytes a report names: a stage, a dropped file, a request or response body."""

    kind: str  # "stage", "dropped", "request", "response"
    target: str  # stage id, guest path of a dropped file, or "<method> <url>"
    sha256: str
    stage: str  # the stage the bytes belong to or were seen by
    seq: int | None
    data: bytes


def _read(outdir: Path, relative: str, sha256: str) -> bytes | None:
    """The bytes at ``outdir/relative`` if its name is a sha256 path inside ``outdir`` and they hash to it."""
    if not _SHA256.match(sha256):
        return None
    root = outdir.resolve()
    path = _resolved_inside(root, relative)
    if path is None:
        path = (outdir / relative).resolve()
    if root not in path.parents or path.is_symlink() or not path.is_file():
        return None
    data = path.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _resolved_inside(root: Path, relative: str) -> Path | None:
    """``(root / relative).resolve()`` for a resolved ``root`` without resolving ``root`` again
    (``resolve`` looks at every component of the path: ~0.3 ms a read, ~15 ms of a 3CX replay's
    exports), when ``relative`` is plain names none of which is a symbolic link: then nothing is
    left to resolve. None otherwise (the caller resolves the whole path)."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    return path


def body_path(sha256: str) -> str:
    return f"network/{sha256}.bin"


def request_label(record: NetworkRecord) -> str:
    return f"{record.method or record.kind.upper()} {record.url or record.host}"


def iter_blobs(report: Report, outdir: Path | None, *, stages_only: bool = False) -> Iterator[Blob]:
    """Every stage, dropped file and request/response body of ``report`` whose bytes are in ``outdir``
    (with ``stages_only``, the stages alone: the other files are not read)."""
    if outdir is None:
        return
    yield from _stage_blobs(report, outdir)
    if stages_only:
        return
    yield from _other_blobs(report, outdir)


def _stage_blobs(report: Report, outdir: Path) -> Iterator[Blob]:
    for stage in report.stages:
        data = _read(outdir, f"stages/{stage.sha256}.bin", stage.sha256)
        if data is not None:
            yield Blob(
                "stage",
                stage.id,
                stage.sha256,
                stage.id,
                stage.origin.evidence[0] if stage.origin.evidence else None,
                data,
            )


def _other_blobs(report: Report, outdir: Path) -> Iterator[Blob]:
    writers = {f.sha256: f for f in report.files if f.sha256 and f.op == "write"}
    for dropped in report.dropped:
        if dropped.stored_as:
            data = _read(outdir, dropped.stored_as, dropped.sha256)
            writer = writers.get(dropped.sha256)
            if data is not None:
                yield Blob(
                    "dropped",
                    dropped.path,
                    dropped.sha256,
                    writer.stage if writer else "",
                    writer.seq if writer else None,
                    data,
                )
    for record in report.network:
        label = request_label(record)
        if record.request.sha256:
            data = _read(outdir, body_path(record.request.sha256), record.request.sha256)
            if data is not None:
                yield Blob("request", label, record.request.sha256, record.stage, record.seq, data)
        if record.response.sha256:
            data = _read(outdir, body_path(record.response.sha256), record.response.sha256)
            if data is not None:
                yield Blob("response", label, record.response.sha256, record.stage, record.seq, data)


def read_body(outdir: Path | None, sha256: str | None) -> bytes:
    """A request or response body from ``outdir/network``, or b"" when there is none."""
    if outdir is None or not sha256:
        return b""
    return _read(outdir, body_path(sha256), sha256) or b""


def http_exchanges(report: Report) -> list[NetworkRecord]:
    """The HTTP exchanges that reached a responder (not blocked, with a URL)."""
    return [r for r in report.network if r.kind == "http" and r.url and not r.blocked]


def url_path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def header(headers: dict[str, str], name: str) -> str | None:
    """A header by case-insensitive name."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
