"""State shared by the WinINet and WinHTTP handlers: sessions, connections, requests."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi
from emulator.limits import MAX_HTTP_REDIRECTS, MAX_REQUEST_BODY, MAX_RESPONSE_BODY
from emulator.responders.base import HttpRequest, HttpResponse

ERROR_INSUFFICIENT_BUFFER = 122
ERROR_INVALID_HANDLE = 6
ERROR_NAME_NOT_RESOLVED = 12007  # same code in WinINet and WinHTTP
ERROR_CANNOT_CONNECT = 12029
ERROR_HEADER_NOT_FOUND = 12150
ERROR_INCORRECT_HANDLE_STATE = 12019

QUERY_CONTENT_TYPE = 1
QUERY_CONTENT_LENGTH = 5
QUERY_STATUS_CODE = 19
QUERY_STATUS_TEXT = 20
QUERY_RAW_HEADERS = 21
QUERY_RAW_HEADERS_CRLF = 22
QUERY_CUSTOM = 65
QUERY_FLAG_NUMBER = 0x20000000
QUERY_FLAG_REQUEST_HEADERS = 0x80000000
QUERY_MODIFIER_MASK = 0xFFFF0000

FLAG_SECURE = 0x00800000  # INTERNET_FLAG_SECURE == WINHTTP_FLAG_SECURE
# Answers WinINet, WinHTTP and URLMon follow by themselves (to the Location header's URL); a 303,
# and a 301 / 302 to a POST, turn the request into a GET without a body, as browsers and these
# libraries do.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass
class Session:
    agent: str
    # Undo a gzip / deflate Content-Encoding before the guest reads the body (WinHTTP's
    # WINHTTP_OPTION_DECOMPRESSION, WinINet's INTERNET_OPTION_HTTP_DECODING; URLMon always).
    decoding: bool = False


@dataclass
class Connection:
    session: Session
    host: str
    port: int
    decoding: bool | None = None  # None: the session's


@dataclass
class Request:
    connection: Connection
    method: str
    path: str
    secure: bool
    headers: dict[str, str] = field(default_factory=dict)
    response: HttpResponse | None = None
    offset: int = 0
    # Follow redirects (WinINet unless INTERNET_FLAG_NO_AUTO_REDIRECT, WinHTTP unless its option
    # turns them off, URLMon always); never from https to http (both libraries refuse that by default).
    follow_redirects: bool = True
    decoding: bool | None = None  # None: the connection's
    # The body as the guest reads it: the response's, its Content-Encoding undone when decoding.
    body: bytes = b""

    @property
    def decodes(self) -> bool:
        for setting in (self.decoding, self.connection.decoding, self.connection.session.decoding):
            if setting is not None:
                return setting
        return False

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def url(self) -> str:
        default = 443 if self.secure else 80
        port = self.connection.port
        host = self.connection.host if port == default else f"{self.connection.host}:{port}"
        return f"{self.scheme}://{host}{self.path}"


def parse_header_block(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


def _send_once(api: GuestApi, request: Request, body: bytes) -> int:
    """One exchange with the responders: 1, or 0 with the last error set when unreachable."""
    services = _services(api)
    headers = {"User-Agent": request.connection.session.agent, "Host": request.connection.host}
    if request.decodes:
        headers["Accept-Encoding"] = "gzip, deflate"
    headers.update(request.headers)
    http_request = HttpRequest(
        method=request.method.upper(),
        scheme=request.scheme,
        host=request.connection.host.lower(),
        port=request.connection.port,
        path=request.path or "/",
        headers=headers,
        body=body[:MAX_REQUEST_BODY],
    )
    request.response = services.network.http(http_request)
    request.offset = 0
    request.body = b""
    if request.response is not None:
        request.body = content_decoded(request.response) if request.decodes else request.response.body
    if request.response is None:
        reachable = services.network.accepts_connection(request.connection.host)
        api.set_last_error(ERROR_CANNOT_CONNECT if reachable else ERROR_NAME_NOT_RESOLVED)
        return 0
    return 1


def send(api: GuestApi, request: Request, body: bytes) -> int:
    """Hand the request to the responders, following redirects as the library does: 1, or 0 with
    the last error set when a host is unreachable. Each hop is an exchange of its own; the request
    then stands for the last one (its URL is the one the body came from)."""
    for _ in range(MAX_HTTP_REDIRECTS + 1):
        if not _send_once(api, request, body):
            return 0
        target = redirect_target(request)
        if target is None:
            return 1
        host, port, path, secure = target
        status = request.response.status if request.response is not None else 0
        if status == 303 or (status in (301, 302) and request.method.upper() == "POST"):
            request.method, body = "GET", b""
        request.connection = Connection(request.connection.session, host, port)
        request.path, request.secure = path, secure
        request.headers.pop("Host", None)
    return 1


def content_decoded(response: HttpResponse) -> bytes:
    """The body with its gzip / deflate Content-Encoding undone (at most MAX_RESPONSE_BODY bytes),
    as the libraries hand it over when asked to decode; a body that does not decode, or another
    encoding, as it came."""
    encoding = next((v for k, v in response.headers.items() if k.lower() == "content-encoding"), "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        # zlib-wrapped as the RFC says, or raw deflate as some servers send it
        wbits = zlib.MAX_WBITS if response.body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        return response.body
    try:
        inflater = zlib.decompressobj(wbits)
        return inflater.decompress(response.body, MAX_RESPONSE_BODY)
    except zlib.error:
        return response.body


def redirect_target(request: Request) -> tuple[str, int, str, bool] | None:
    """(host, port, path, secure) a redirect answer sends the request to, or None to stay."""
    response = request.response
    if not request.follow_redirects or response is None or response.status not in REDIRECT_STATUSES:
        return None
    location = next((v for k, v in response.headers.items() if k.lower() == "location"), "")
    if not location:
        return None
    parts = urlsplit(urljoin(request.url, location))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or (request.secure and scheme == "http"):
        return None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path, scheme == "https"


def add_headers(api: GuestApi, handle: int, text: int, length: int, wide: bool) -> int:
    """HttpAddRequestHeaders / WinHttpAddRequestHeaders."""
    request = _services(api).get(handle, Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    request.headers.update(parse_header_block(api.read_counted_string(text, length, wide)))
    return 1


def send_request(
    api: GuestApi, handle: int, headers: int, headers_len: int, optional: int, optional_len: int, wide: bool
) -> int:
    """HttpSendRequest / WinHttpSendRequest: extra headers, optional body, then the exchange."""
    request = _services(api).get(handle, Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    if headers:
        request.headers.update(parse_header_block(api.read_counted_string(headers, headers_len, wide)))
    return send(api, request, api.read(optional, optional_len) if optional else b"")


def query_info(
    api: GuestApi, handle: int, level: int, custom_name: str, buffer: int, length_ptr: int, wide: bool
) -> int:
    """HttpQueryInfo / WinHttpQueryHeaders: the responder's status and headers, truthfully."""
    request = _services(api).get(handle, Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    text = query_header(request, level, custom_name)
    if text is None:
        api.set_last_error(ERROR_HEADER_NOT_FOUND)
        return 0
    return int(write_query_result(api, text, level, buffer, length_ptr, wide))


def read_body(api: GuestApi, request: Request, buffer: int, size: int) -> bytes:
    """Copy the next part of the response body to the guest and remember it for provenance."""
    assert request.response is not None
    chunk = request.body[request.offset : request.offset + size]
    request.offset += len(chunk)
    if chunk:
        api.write(buffer, chunk)
        _services(api).recorder.remember_buffer("network_read", buffer, chunk, ref=request.url, api=api.qualified_name)
    return chunk


def data_available(api: GuestApi, handle: int, out_ptr: int) -> int:
    """InternetQueryDataAvailable / WinHttpQueryDataAvailable: bytes left in the response body."""
    request = _services(api).get(handle, Request)
    if request is None or request.response is None:
        api.set_last_error(ERROR_INCORRECT_HANDLE_STATE)
        return 0
    api.write_u32(out_ptr, len(request.body) - request.offset)
    return 1


def read_data(api: GuestApi, argv: list[int]) -> int:
    """InternetReadFile / WinHttpReadData (handle, buffer, size, bytes_read)."""
    handle, buffer, size, read_ptr = argv[:4]
    request = _services(api).get(handle, Request)
    if request is None or request.response is None:
        api.set_last_error(ERROR_INCORRECT_HANDLE_STATE)
        return 0
    chunk = read_body(api, request, buffer, size & 0xFFFFFFFF)
    api.write_u32(read_ptr, len(chunk))
    return 1


def query_header(request: Request, level: int, custom_name: str = "") -> str | None:
    """The text of a header query, or None when the header does not exist."""
    info = level & ~QUERY_MODIFIER_MASK
    if level & QUERY_FLAG_REQUEST_HEADERS:
        source = request.headers
        status = None
    else:
        if request.response is None:
            return None
        source = request.response.headers
        status = request.response
    if info == QUERY_STATUS_CODE and status is not None:
        return str(status.status)
    if info == QUERY_STATUS_TEXT and status is not None:
        return status.reason
    if info in (QUERY_RAW_HEADERS, QUERY_RAW_HEADERS_CRLF):
        lines = [f"HTTP/1.1 {status.status} {status.reason}"] if status is not None else []
        lines += [f"{k}: {v}" for k, v in source.items()]
        separator = "\r\n" if info == QUERY_RAW_HEADERS_CRLF else "\0"
        return separator.join(lines) + separator + separator
    wanted = {QUERY_CONTENT_TYPE: "Content-Type", QUERY_CONTENT_LENGTH: "Content-Length"}.get(info)
    if info == QUERY_CUSTOM:
        wanted = custom_name
    if wanted is None:
        return None
    for key, value in source.items():
        if key.lower() == wanted.lower():
            return value
    if wanted == "Content-Length" and status is not None:
        return str(len(status.body))
    return None


def write_query_result(api: GuestApi, text: str, level: int, buffer: int, length_ptr: int, wide: bool) -> bool:
    """Write a query answer as Windows does: a DWORD with FLAG_NUMBER, else a string."""
    available = api.read_u32(length_ptr) if length_ptr else 0
    if level & QUERY_FLAG_NUMBER:
        try:
            number = int(text)
        except ValueError:
            api.set_last_error(ERROR_HEADER_NOT_FOUND)
            return False
        if available < 4 or not buffer:
            api.write_u32(length_ptr, 4)
            api.set_last_error(ERROR_INSUFFICIENT_BUFFER)
            return False
        api.write_u32(buffer, number)
        api.write_u32(length_ptr, 4)
        return True
    unit = 2 if wide else 1
    needed = (len(text) + 1) * unit
    if available < needed or not buffer:
        api.write_u32(length_ptr, needed)
        api.set_last_error(ERROR_INSUFFICIENT_BUFFER)
        return False
    api.write_string(buffer, text, wide)
    api.write_u32(length_ptr, needed - unit)
    return True
