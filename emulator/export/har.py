"""``network.har``: the replay's HTTP exchanges as an HTTP Archive 1.2 that browsers' developer tools load.

Built from ``report.network`` and the bodies in ``OUTDIR/network/``; HTTPS is shown decrypted (see
``emulator/export/pcap.py``). Times are virtual (the guest clock), one millisecond per trace event.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulator import __version__
from emulator.export._common import header, read_body
from emulator.export.pcap import SEQ_TICK, _start_time, server_addresses
from emulator.report import Report

HAR_VERSION = "1.2"


def _headers(headers: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers.items()]


def _cookies(text: str | None) -> list[dict[str, str]]:
    cookies = []
    for part in (text or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies.append({"name": name, "value": value})
    return cookies


def _content(body: bytes, mime: str) -> dict[str, Any]:
    content: dict[str, Any] = {"size": len(body), "mimeType": mime}
    if not body:
        return content
    try:
        content["text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        content["text"] = base64.b64encode(body).decode("ascii")
        content["encoding"] = "base64"
    return content


def _headers_size(first_line: str, headers: dict[str, str]) -> int:
    return len(first_line) + 2 + sum(len(k) + 2 + len(v) + 2 for k, v in headers.items()) + 2


def network_har(report: Report, outdir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The HAR document (a dict; write it as JSON)."""
    start = _start_time(report)
    addresses = server_addresses(report)
    entries = []
    for record in report.network:
        if record.kind != "http" or not record.url:
            continue
        request_body = read_body(outdir, record.request.sha256)
        response_body = read_body(outdir, record.response.sha256)
        method = record.method or "GET"
        parts = urlsplit(record.url)
        status = record.response.status or 0
        request: dict[str, Any] = {
            "method": method,
            "url": record.url,
            "httpVersion": "HTTP/1.1",
            "cookies": _cookies(header(record.request.headers, "Cookie")),
            "headers": _headers(record.request.headers),
            "queryString": [{"name": k, "value": v} for k, v in parse_qsl(parts.query, keep_blank_values=True)],
            "headersSize": _headers_size(f"{method} {parts.path or '/'} HTTP/1.1", record.request.headers),
            "bodySize": len(request_body),
        }
        if request_body:
            mime = header(record.request.headers, "Content-Type") or "application/octet-stream"
            posted = _content(request_body, mime)
            request["postData"] = {"mimeType": mime, "text": posted["text"]}
            if "encoding" in posted:
                request["postData"]["comment"] = "base64-encoded binary body"
        response = {
            "status": status,
            "statusText": http.client.responses.get(status, "") if status else "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _headers(record.response.headers),
            "content": _content(response_body, header(record.response.headers, "Content-Type") or "x-unknown"),
            "redirectURL": header(record.response.headers, "Location") or "",
            "headersSize": _headers_size(f"HTTP/1.1 {status}", record.response.headers) if status else -1,
            "bodySize": len(response_body) if status else -1,
        }
        started = dt.datetime.fromtimestamp(start + record.seq * SEQ_TICK, tz=dt.UTC)
        entries.append(
            {
                "startedDateTime": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "time": 1,
                "request": request,
                "response": response,
                "cache": {},
                "timings": {"send": 0, "wait": 1, "receive": 0},
                "serverIPAddress": addresses.get(record.host.lower(), ""),
                "comment": f"seq {record.seq}, stage {record.stage}, responder {record.responder}"
                + (", blocked" if record.blocked else "")
                + (f", error {record.error}" if record.error else ""),
            }
        )
    return {
        "log": {
            "version": HAR_VERSION,
            "creator": {"name": "chainreplay", "version": __version__},
            "entries": entries,
            "comment": "Synthetic exchanges of an emulated replay; HTTPS shown decrypted; times are virtual.",
        }
    }
