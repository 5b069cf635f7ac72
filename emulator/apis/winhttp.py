"""WinHTTP routed to the scenario's responders."""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook
from emulator.apis.netapi import (
    ERROR_INCORRECT_HANDLE_STATE,
    ERROR_INVALID_HANDLE,
    FLAG_SECURE,
    Connection,
    Request,
    Session,
    add_headers,
    data_available,
    query_info,
    read_data,
    send_request,
)

WINHTTP_OPTION_DISABLE_FEATURE = 63
WINHTTP_DISABLE_REDIRECTS = 0x2
WINHTTP_OPTION_REDIRECT_POLICY = 88
WINHTTP_OPTION_REDIRECT_POLICY_NEVER = 0
WINHTTP_OPTION_DECOMPRESSION = 118


@apihook("winhttp", "WinHttpOpen", argc=5)
def winhttp_open(api: GuestApi, argv: list[int]) -> int:
    return _services(api).new_handle(Session(api.read_string(argv[0], wide=True)))


@apihook("winhttp", "WinHttpConnect", argc=4)
def winhttp_connect(api: GuestApi, argv: list[int]) -> int:
    session = _services(api).get(argv[0], Session)
    if session is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    port = argv[2] & 0xFFFF
    return _services(api).new_handle(Connection(session, api.read_string(argv[1], wide=True), port or 80))


@apihook("winhttp", "WinHttpOpenRequest", argc=7)
def winhttp_open_request(api: GuestApi, argv: list[int]) -> int:
    connection = _services(api).get(argv[0], Connection)
    if connection is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    verb = api.read_string(argv[1], wide=True) or "GET"
    path = api.read_string(argv[2], wide=True) or "/"
    secure = bool(argv[6] & FLAG_SECURE) or connection.port == 443
    return _services(api).new_handle(Request(connection, verb, path, secure))


@apihook("winhttp", "WinHttpAddRequestHeaders", argc=4)
def winhttp_add_request_headers(api: GuestApi, argv: list[int]) -> int:
    return add_headers(api, argv[0], argv[1], argv[2], wide=True)


@apihook("winhttp", "WinHttpSendRequest", argc=7)
def winhttp_send_request(api: GuestApi, argv: list[int]) -> int:
    handle, headers, headers_len, optional, optional_len, _total, _context = argv
    return send_request(api, handle, headers, headers_len, optional, optional_len, wide=True)


@apihook("winhttp", "WinHttpReceiveResponse", argc=2)
def winhttp_receive_response(api: GuestApi, argv: list[int]) -> int:
    request = _services(api).get(argv[0], Request)
    if request is None or request.response is None:
        api.set_last_error(ERROR_INCORRECT_HANDLE_STATE)
        return 0
    return 1


@apihook("winhttp", "WinHttpQueryHeaders", argc=6)
def winhttp_query_headers(api: GuestApi, argv: list[int]) -> int:
    handle, level, name, buffer, length_ptr, _index = argv
    custom = api.read_string(name, wide=True) if name else ""
    return query_info(api, handle, level, custom, buffer, length_ptr, wide=True)


@apihook("winhttp", "WinHttpQueryDataAvailable", argc=2)
def winhttp_query_data_available(api: GuestApi, argv: list[int]) -> int:
    return data_available(api, argv[0], argv[1])


@apihook("winhttp", "WinHttpReadData", argc=4)
def winhttp_read_data(api: GuestApi, argv: list[int]) -> int:
    return read_data(api, argv)


@apihook("winhttp", "WinHttpCloseHandle", argc=1)
def winhttp_close_handle(api: GuestApi, argv: list[int]) -> int:
    return int(_services(api).close(argv[0]))


@apihook("winhttp", "WinHttpSetOption", argc=4)
def winhttp_set_option(api: GuestApi, argv: list[int]) -> int:
    """Options are accepted; those turning redirects off are applied to a request handle, and
    automatic decompression (WINHTTP_OPTION_DECOMPRESSION) to a session or request handle."""
    handle, option, buffer, length = argv
    if option == WINHTTP_OPTION_DECOMPRESSION and buffer and length >= 4:
        # WINHTTP_DECOMPRESSION_FLAG_GZIP | _DEFLATE, on a session or a request
        target = _services(api).handles.get(handle)
        if isinstance(target, (Session, Request)):
            target.decoding = bool(api.read_u32(buffer) & 0x3)
        return 1
    request = _services(api).get(handle, Request)
    if request is not None and buffer and length >= 4:
        value = api.read_u32(buffer)
        if option == WINHTTP_OPTION_DISABLE_FEATURE and value & WINHTTP_DISABLE_REDIRECTS:
            request.follow_redirects = False
        elif option == WINHTTP_OPTION_REDIRECT_POLICY:
            request.follow_redirects = value != WINHTTP_OPTION_REDIRECT_POLICY_NEVER
    return 1


@apihook("winhttp", "WinHttpSetTimeouts", argc=5)
def winhttp_set_timeouts(api: GuestApi, argv: list[int]) -> int:
    return 1
