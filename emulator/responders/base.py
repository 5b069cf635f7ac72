"""The responder interface: a request in, a response out, state kept per replay.

A user-written responder is a subclass of :class:`Responder` named in ``scenario.toml`` by
dotted path (``type = "python"``, ``class = "package.module:ClassName"``). One instance is made
per replay, so instance attributes are the responder's per-replay state.

Example::

    class Echo(Responder):
        def handles(self, request):
            return request.host == "echo.test"

        def respond(self, request):
            return HttpResponse(200, {"Content-Type": "text/plain"}, request.body)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpRequest:
    method: str
    scheme: str
    host: str
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def url(self) -> str:
        default_port = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default_port else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def cookies(self) -> dict[str, str]:
        raw = self.header("Cookie") or ""
        jar: dict[str, str] = {}
        for part in raw.split(";"):
            if "=" in part:
                key, _, value = part.strip().partition("=")
                jar[key.strip()] = value.strip()
        return jar

    @classmethod
    def from_url(cls, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> HttpRequest:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(method.upper(), scheme, (parts.hostname or "").lower(), port, path, dict(headers or {}), body)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def reason(self) -> str:
        return HTTP_REASONS.get(self.status, "Unknown")


HTTP_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Responder:
    """Base class of every responder. ``name`` is what the report's ``network[].responder`` shows."""

    kind = "python"

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        self.name = name
        self.options = options
        self.scenario_dir = scenario_dir

    def handles_host(self, host: str) -> bool:
        """Whether this responder answers for ``host`` at all (decides DNS and connects)."""
        return False

    def handles(self, request: HttpRequest) -> bool:
        return self.handles_host(request.host)

    def respond(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    def txt(self, host: str) -> list[bytes] | None:
        """The strings of ``host``'s DNS TXT record (``DnsQuery`` with ``DNS_TYPE_TEXT``); None:
        no TXT record (the query fails as for a name that does not exist)."""
        return None

    def stream(self, host: str, port: int, sent: bytes, turn: int) -> bytes | None:
        """Bytes for a TCP client that speaks no HTTP (a stager reading its next stage).

        Called when the guest reads from a connection to ``host:port`` with nothing queued;
        ``sent`` is what it sent since the previous answer, ``turn`` counts this connection's
        answers from 0. None or empty: nothing to send (the read returns 0, as after a close).
        """
        return None


def glob_matches(name: str, pattern: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)``, without compiling a regular expression for a
    pattern that has no wildcard (only the same string matches it) or is ``*`` (every string
    does): fnmatch compiles each new pattern once per process (~0.4 ms), and most of a scenario's
    host, path, method and state patterns are plain names, first seen in the emulation child."""
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        return name == pattern
    if pattern == "*":
        return True
    return fnmatch.fnmatchcase(name, pattern)


def host_matches(host: str, patterns: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(glob_matches(host, pattern.lower()) for pattern in patterns)
