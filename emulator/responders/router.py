"""Routes every network attempt of the guest to a responder and records the exchange."""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from emulator.containment import ContainmentViolation, refused_by_kernel
from emulator.events import NetRequest, NetResponse, NetworkExchange
from emulator.limits import MAX_RESPONSE_BODY, MAX_TXT_BYTES, MAX_TXT_STRINGS
from emulator.recorder import Recorder
from emulator.responders.base import HttpRequest, HttpResponse, Responder
from emulator.responders.c2 import C2Responder
from emulator.responders.github import GithubResponder
from emulator.responders.static import StaticResponder

BUILTIN_RESPONDERS: dict[str, type[Responder]] = {
    "github": GithubResponder,
    "c2": C2Responder,
    "static": StaticResponder,
}

DefaultPolicy = Literal["nxdomain", "refused", "404"]
# Synthetic addresses handed out for hosts a responder answers: the documentation networks of
# RFC 5737 (TEST-NET-3 first), hosts .10 to .254 of each. One address per host, never reused.
SYNTHETIC_NETS = tuple(ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"))
FIRST_SYNTHETIC_HOST = 10
LAST_SYNTHETIC_HOST = 254


HOSTS_PER_NET = LAST_SYNTHETIC_HOST - FIRST_SYNTHETIC_HOST + 1
SYNTHETIC_POOL_SIZE = len(SYNTHETIC_NETS) * HOSTS_PER_NET


def synthetic_address(index: int) -> str | None:
    """The ``index``-th address of the pool (from 0), None past its end."""
    if not 0 <= index < SYNTHETIC_POOL_SIZE:
        return None
    net, host = divmod(index, HOSTS_PER_NET)
    return str(SYNTHETIC_NETS[net].network_address + FIRST_SYNTHETIC_HOST + host)


DEFAULT_RESPONDER_NAME = "default"


class ResponderLoadError(ValueError):
    """A responder could not be built from its configuration."""


def build_responder(
    kind: str, name: str, options: dict[str, Any], scenario_dir: Path, class_path: str | None = None
) -> Responder:
    if kind == "python":
        if not class_path:
            raise ResponderLoadError("type 'python' needs 'class' = 'package.module:ClassName'")
        module_name, _, attr = class_path.replace(":", ".").rpartition(".")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, attr)
        except (ImportError, AttributeError, ValueError) as err:
            raise ResponderLoadError(f"cannot import {class_path!r}: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, Responder)):
            raise ResponderLoadError(f"{class_path!r} is not a subclass of emulator.responders.Responder")
        return cls(name, options, scenario_dir)
    try:
        builtin = BUILTIN_RESPONDERS[kind]
    except KeyError as err:
        known = ", ".join(sorted([*BUILTIN_RESPONDERS, "python"]))
        raise ResponderLoadError(f"unknown responder type {kind!r} (known: {known})") from err
    return builtin(name, options, scenario_dir)


@dataclass
class NetworkRouter:
    responders: list[Responder]
    recorder: Recorder
    default: DefaultPolicy = "nxdomain"
    max_exchanges: int = 1000
    _addresses: dict[str, str] = field(default_factory=dict)
    _hosts_by_address: dict[str, str] = field(default_factory=dict)
    _pool_exhausted: bool = False
    exchanges: int = 0

    # ---- name resolution ----------------------------------------------------------------

    def responder_for_host(self, host: str) -> Responder | None:
        return next((r for r in self.responders if r.handles_host(host)), None)

    def resolve(self, host: str, *, record: bool = True, api: str = "dns") -> str | None:
        """The synthetic address of ``host``, or None (NXDOMAIN) when no responder serves it."""
        host = host.lower().rstrip(".")
        if _is_ip(host):
            return host
        responder = self.responder_for_host(host)
        address: str | None = None
        if responder is not None or self.default != "nxdomain":
            address = self._address_of(host)
        if record:
            self._count()
            self.recorder.emit(
                NetworkExchange,
                kind="dns",
                host=host,
                method=api,
                response=NetResponse(headers={"A": address} if address else {}),
                responder=responder.name if responder else DEFAULT_RESPONDER_NAME,
                blocked=responder is None,
            )
        return address

    def resolve_txt(self, host: str, *, api: str = "dns") -> list[bytes] | None:
        """The strings of ``host``'s TXT record, or None (no such record: NXDOMAIN). Recorded as a
        DNS exchange whose response body is the strings one after the other. A user responder that
        raises or answers something else than a list of bytes answers no record (the error is
        recorded)."""
        host = host.lower().rstrip(".")
        responder = self.responder_for_host(host)
        strings: list[bytes] | None = None
        error: str | None = None
        self._count()
        if responder is not None:
            try:
                answer = responder.txt(host)
                if answer is not None:
                    if not isinstance(answer, list) or not all(isinstance(x, bytes | bytearray) for x in answer):
                        raise TypeError(f"txt() returned {_short(answer)}, not a list of bytes")
                    strings = [bytes(x[:MAX_TXT_BYTES]) for x in answer[:MAX_TXT_STRINGS]]
            except ContainmentViolation:
                raise
            except OSError as err:
                if refused_by_kernel(err):
                    raise ContainmentViolation(
                        safe_text(f"containment: kernel refused {type(err).__name__}: {err}")
                    ) from err
                error = safe_text(f"{type(err).__name__}: {err}")
            except Exception as err:  # a user responder's bug must not end the replay
                error = safe_text(f"{type(err).__name__}: {err}")
        body = b"".join(strings or [])
        self.recorder.emit(
            NetworkExchange,
            kind="dns",
            host=host,
            method=api,
            response=NetResponse(
                headers={"TXT": f"{len(strings)} strings"} if strings is not None else {},
                size=len(body),
                sha256=self.recorder.put_blob(body) if body else None,
            ),
            responder=responder.name if responder else DEFAULT_RESPONDER_NAME,
            blocked=responder is None,
            error=error,
        )
        return strings

    def host_of_address(self, address: str) -> str:
        return self._hosts_by_address.get(address, address)

    def _address_of(self, host: str) -> str | None:
        """The host's synthetic address; None (the name does not resolve) once the pool is used up."""
        if host not in self._addresses:
            address = synthetic_address(len(self._addresses))
            if address is None:
                if not self._pool_exhausted:
                    self._pool_exhausted = True
                    self.recorder.note(
                        "synthetic address pool exhausted",
                        f"all {SYNTHETIC_POOL_SIZE} addresses are in use; {host} and later new hosts do not resolve",
                    )
                return None
            self._addresses[host] = address
            self._hosts_by_address[address] = host
        return self._addresses[host]

    def accepts_connection(self, host: str) -> bool:
        return self.responder_for_host(host) is not None or self.default == "404"

    # ---- HTTP ---------------------------------------------------------------------------

    def http(self, request: HttpRequest) -> HttpResponse | None:
        """Answer an HTTP(S) request; None means the connection was refused / name not found."""
        self._count()
        responder = next((r for r in self.responders if r.handles(request)), None)
        error: str | None = None
        blocked = responder is None
        response: HttpResponse | None
        if responder is None:
            response = (
                HttpResponse(404, {"Content-Type": "text/plain"}, b"Not Found") if self.default == "404" else None
            )
        else:
            try:
                response = checked_response(responder.respond(request))
            except ContainmentViolation as err:
                # The responder tried to reach the host: recorded, then the run ends (outcome "containment").
                self._record_http(request, None, responder.name, blocked, safe_text(str(err)))
                raise
            except OSError as err:
                if refused_by_kernel(err):  # the kernel layers refused what the audit hook did not see
                    text = safe_text(f"containment: kernel refused {type(err).__name__}: {err}")
                    self._record_http(request, None, responder.name, blocked, text)
                    raise ContainmentViolation(text) from err
                error = safe_text(f"{type(err).__name__}: {err}")
                response = HttpResponse(500, {"Content-Type": "text/plain"}, b"responder error")
            except Exception as err:  # a user responder's bug must not end the replay
                error = safe_text(f"{type(err).__name__}: {err}")
                response = HttpResponse(500, {"Content-Type": "text/plain"}, b"responder error")
        if response is not None and len(response.body) > MAX_RESPONSE_BODY:
            response = HttpResponse(response.status, response.headers, response.body[:MAX_RESPONSE_BODY])
            self.recorder.note("response_truncated", f"{request.url}: body cut to {MAX_RESPONSE_BODY} bytes")
        self._record_http(request, response, responder.name if responder else DEFAULT_RESPONDER_NAME, blocked, error)
        return response

    # ---- raw TCP ------------------------------------------------------------------------

    def stream(self, host: str, port: int, sent: bytes, turn: int) -> bytes:
        """The answer of the host's responder to a non-HTTP TCP client (recorded as one
        exchange: what the client sent since the last answer, and the answer); b"" for none."""
        responder = self.responder_for_host(host)
        if responder is None:
            return b""
        error: str | None = None
        try:
            reply = responder.stream(host, port, sent, turn) or b""
            if not isinstance(reply, bytes | bytearray):
                raise TypeError(f"stream() returned {type(reply).__name__}, not bytes")
            reply = bytes(reply)
        except ContainmentViolation as err:
            self.record_raw("tcp", host, port, sent, b"", responder.name, blocked=False, error=safe_text(str(err)))
            raise
        except OSError as err:
            if refused_by_kernel(err):  # the kernel layers refused what the audit hook did not see
                text = safe_text(f"containment: kernel refused {type(err).__name__}: {err}")
                self.record_raw("tcp", host, port, sent, b"", responder.name, blocked=False, error=text)
                raise ContainmentViolation(text) from err
            error, reply = safe_text(f"{type(err).__name__}: {err}"), b""
        except Exception as err:  # a user responder's bug must not end the replay
            error, reply = safe_text(f"{type(err).__name__}: {err}"), b""
        if not reply and error is None:
            return b""
        if len(reply) > MAX_RESPONSE_BODY:
            reply = reply[:MAX_RESPONSE_BODY]
            self.recorder.note("response_truncated", f"tcp://{host}:{port}: answer cut to {MAX_RESPONSE_BODY} bytes")
        self.record_raw("tcp", host, port, sent, reply, responder.name, blocked=False, error=error)
        return reply

    def _record_http(
        self, request: HttpRequest, response: HttpResponse | None, responder: str, blocked: bool, error: str | None
    ) -> None:
        req_digest = self.recorder.put_blob(request.body) if request.body else None
        net_response = NetResponse()
        if response is not None:
            net_response = NetResponse(
                status=response.status,
                headers=dict(response.headers),
                size=len(response.body),
                sha256=self.recorder.put_blob(response.body) if response.body else hashlib.sha256(b"").hexdigest(),
            )
        self.recorder.emit(
            NetworkExchange,
            kind="http",
            host=request.host,
            port=request.port,
            method=request.method,
            url=request.url,
            request=NetRequest(headers=dict(request.headers), body_size=len(request.body), body_sha256=req_digest),
            response=net_response,
            responder=responder,
            blocked=blocked,
            error=error,
        )

    def record_raw(
        self,
        kind: Literal["tcp", "udp"],
        host: str,
        port: int,
        sent: bytes,
        received: bytes,
        responder: str,
        blocked: bool,
        error: str | None = None,
    ) -> None:
        self._count()
        self.recorder.emit(
            NetworkExchange,
            kind=kind,
            host=host,
            port=port,
            request=NetRequest(body_size=len(sent), body_sha256=self.recorder.put_blob(sent) if sent else None),
            response=NetResponse(size=len(received), sha256=self.recorder.put_blob(received) if received else None),
            responder=responder,
            blocked=blocked,
            error=error,
        )

    def _count(self) -> None:
        self.exchanges += 1
        if self.exchanges > self.max_exchanges:
            raise NetworkLimitReached(self.max_exchanges)


class BadResponse(TypeError):
    """A responder answered with something that is not a well-formed HTTP response."""


def _short(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_response(response: object) -> HttpResponse:
    """``response`` as a clean :class:`HttpResponse`, or :class:`BadResponse` naming what is wrong.

    A responder's answer reaches the guest's memory (status line, header block) and the report,
    so it must be what a server could have sent: an int status 100..599, a dict of str headers
    without CR, LF or NUL (no header injection into the block the guest parses) that encode as
    Latin-1 (the bytes of an HTTP header), and a bytes body.
    """
    if not isinstance(response, HttpResponse):
        raise BadResponse(f"respond() returned {type(response).__name__}, not HttpResponse")
    status, headers, body = response.status, response.headers, response.body
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadResponse(f"status {_short(status)} is not an int from 100 to 599")
    if not isinstance(headers, dict):
        raise BadResponse(f"headers is {type(headers).__name__}, not dict[str, str]")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadResponse(f"header {_short(name)}: {_short(value)} is not str: str")
        if not name or any(c in name for c in ":\r\n\0"):
            raise BadResponse(f"header name {_short(name)} is empty or holds ':', CR, LF or NUL")
        if any(c in value for c in "\r\n\0"):
            raise BadResponse(f"header {_short(name)} value holds CR, LF or NUL")
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except UnicodeEncodeError as err:
            raise BadResponse(f"header {_short(name)}: {_short(value)} does not encode as Latin-1") from err
        clean[name] = value
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes):
        raise BadResponse(f"body is {type(body).__name__}, not bytes")
    return HttpResponse(status, clean, body)


def safe_text(text: str) -> str:
    """``text`` with lone surrogates escaped, so it always serialises as UTF-8 JSON."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class NetworkLimitReached(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} network exchanges")
        self.limit = limit


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
