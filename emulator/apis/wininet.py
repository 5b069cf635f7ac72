"""WinINet routed to the scenario's responders (replaces Speakeasy's canned answers)."""

from __future__ import annotations

from urllib.parse import urlsplit

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook, is_wide
from emulator.apis.netapi import (
    ERROR_CANNOT_CONNECT,
    ERROR_HEADER_NOT_FOUND,
    ERROR_INVALID_HANDLE,
    ERROR_NAME_NOT_RESOLVED,
    FLAG_SECURE,
    Connection,
    Request,
    Session,
    data_available,
    parse_header_block,
    query_header,
    read_data,
    send,
    write_query_result,
)

INTERNET_DEFAULT_HTTPS_PORT = 443
INTERNET_DEFAULT_HTTP_PORT = 80


def _unreachable(api: GuestApi, host: str) -> int:
    reachable = _services(api).network.accepts_connection(host)
    api.set_last_error(ERROR_CANNOT_CONNECT if reachable else ERROR_NAME_NOT_RESOLVED)
    return 0


@apihook("wininet", ["InternetOpenA", "InternetOpenW"], argc=5)
def internet_open(api: GuestApi, argv: list[int]) -> int:
    agent = api.read_string(argv[0], is_wide(api))
    return _services(api).new_handle(Session(agent))


@apihook("wininet", ["InternetConnectA", "InternetConnectW"], argc=8)
def internet_connect(api: GuestApi, argv: list[int]) -> int:
    session = _services(api).get(argv[0], Session)
    if session is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    host = api.read_string(argv[1], is_wide(api))
    port = argv[2] & 0xFFFF or INTERNET_DEFAULT_HTTP_PORT
    return _services(api).new_handle(Connection(session, host, port))


@apihook("wininet", ["HttpOpenRequestA", "HttpOpenRequestW"], argc=8)
def http_open_request(api: GuestApi, argv: list[int]) -> int:
    connection = _services(api).get(argv[0], Connection)
    if connection is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    wide = is_wide(api)
    verb = api.read_string(argv[1], wide) or "GET"
    path = api.read_string(argv[2], wide) or "/"
    secure = bool(argv[6] & FLAG_SECURE) or connection.port == INTERNET_DEFAULT_HTTPS_PORT
    return _services(api).new_handle(Request(connection, verb, path, secure))


@apihook("wininet", ["HttpAddRequestHeadersA", "HttpAddRequestHeadersW"], argc=4)
def http_add_request_headers(api: GuestApi, argv: list[int]) -> int:
    request = _services(api).get(argv[0], Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    request.headers.update(parse_header_block(api.read_counted_string(argv[1], argv[2], is_wide(api))))
    return 1


@apihook("wininet", ["HttpSendRequestA", "HttpSendRequestW"], argc=5)
def http_send_request(api: GuestApi, argv: list[int]) -> int:
    handle, headers, headers_len, optional, optional_len = argv
    request = _services(api).get(handle, Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    if headers:
        request.headers.update(parse_header_block(api.read_counted_string(headers, headers_len, is_wide(api))))
    body = api.read(optional, optional_len) if optional else b""
    if send(api, request, body) is None:
        return _unreachable(api, request.connection.host)
    return 1


@apihook("wininet", ["InternetOpenUrlA", "InternetOpenUrlW"], argc=6)
def internet_open_url(api: GuestApi, argv: list[int]) -> int:
    services = _services(api)
    session = services.get(argv[0], Session)
    if session is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    wide = is_wide(api)
    url = api.read_string(argv[1], wide)
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "https"
    try:
        port = parts.port or (INTERNET_DEFAULT_HTTPS_PORT if secure else INTERNET_DEFAULT_HTTP_PORT)
    except ValueError:
        port = INTERNET_DEFAULT_HTTP_PORT
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = Request(Connection(session, parts.hostname or "", port), "GET", path, secure)
    if argv[2]:
        request.headers.update(parse_header_block(api.read_counted_string(argv[2], argv[3], wide)))
    if send(api, request, b"") is None:
        return _unreachable(api, request.connection.host)
    return services.new_handle(request)


@apihook("wininet", ["HttpQueryInfoA", "HttpQueryInfoW"], argc=5)
def http_query_info(api: GuestApi, argv: list[int]) -> int:
    handle, level, buffer, length_ptr, _index = argv
    request = _services(api).get(handle, Request)
    if request is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    custom = api.read_string(buffer, is_wide(api), max_chars=256) if (level & 0xFFFF) == 65 and buffer else ""
    text = query_header(request, level, custom)
    if text is None:
        api.set_last_error(ERROR_HEADER_NOT_FOUND)
        return 0
    return int(write_query_result(api, text, level, buffer, length_ptr, is_wide(api)))


@apihook("wininet", "InternetQueryDataAvailable", argc=4)
def internet_query_data_available(api: GuestApi, argv: list[int]) -> int:
    return data_available(api, argv[0], argv[1])


@apihook("wininet", "InternetReadFile", argc=4)
def internet_read_file(api: GuestApi, argv: list[int]) -> int:
    return read_data(api, argv)


@apihook("wininet", "InternetCloseHandle", argc=1)
def internet_close_handle(api: GuestApi, argv: list[int]) -> int:
    return int(_services(api).close(argv[0]))


@apihook("wininet", ["InternetSetOptionA", "InternetSetOptionW"], argc=4)
def internet_set_option(api: GuestApi, argv: list[int]) -> int:
    return 1
