"""WinINet routed to the scenario's responders (replaces Speakeasy's canned answers)."""

from __future__ import annotations

from urllib.parse import urlsplit

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook, is_wide
from emulator.apis.netapi import (
    ERROR_INVALID_HANDLE,
    FLAG_SECURE,
    QUERY_CUSTOM,
    Connection,
    Request,
    Session,
    add_headers,
    data_available,
    parse_header_block,
    query_info,
    read_data,
    send,
    send_request,
)

INTERNET_DEFAULT_HTTPS_PORT = 443
INTERNET_OPTION_HTTP_DECODING = 65
INTERNET_DEFAULT_HTTP_PORT = 80
INTERNET_FLAG_NO_AUTO_REDIRECT = 0x00200000


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
    request = Request(connection, verb, path, secure)
    request.follow_redirects = not argv[6] & INTERNET_FLAG_NO_AUTO_REDIRECT
    return _services(api).new_handle(request)


@apihook("wininet", ["HttpAddRequestHeadersA", "HttpAddRequestHeadersW"], argc=4)
def http_add_request_headers(api: GuestApi, argv: list[int]) -> int:
    return add_headers(api, argv[0], argv[1], argv[2], is_wide(api))


@apihook("wininet", ["HttpSendRequestA", "HttpSendRequestW"], argc=5)
def http_send_request(api: GuestApi, argv: list[int]) -> int:
    handle, headers, headers_len, optional, optional_len = argv
    return send_request(api, handle, headers, headers_len, optional, optional_len, is_wide(api))


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
    request.follow_redirects = not argv[4] & INTERNET_FLAG_NO_AUTO_REDIRECT
    if argv[2]:
        request.headers.update(parse_header_block(api.read_counted_string(argv[2], argv[3], wide)))
    if not send(api, request, b""):
        return 0
    return services.new_handle(request)


@apihook("wininet", ["HttpQueryInfoA", "HttpQueryInfoW"], argc=5)
def http_query_info(api: GuestApi, argv: list[int]) -> int:
    handle, level, buffer, length_ptr, _index = argv
    wide = is_wide(api)
    # HTTP_QUERY_CUSTOM passes the header's name in the output buffer.
    custom = api.read_string(buffer, wide, max_chars=256) if (level & 0xFFFF) == QUERY_CUSTOM and buffer else ""
    return query_info(api, handle, level, custom, buffer, length_ptr, wide)


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
    """Options are accepted; INTERNET_OPTION_HTTP_DECODING (a BOOL) applies to the session,
    connection or request handle it is set on: a gzip / deflate body is read decoded."""
    handle, option, buffer, length = argv
    if option == INTERNET_OPTION_HTTP_DECODING and buffer and length >= 4:
        target = _services(api).handles.get(handle)
        if isinstance(target, (Session, Connection, Request)):
            target.decoding = bool(api.read_u32(buffer))
    return 1
