"""COM's HTTP client, WinHttp.WinHttpRequest.5.1 (winhttpcom.dll), and the OLE Automation
calls a client of it needs (BSTR, VARIANT, SAFEARRAY).

Loaders and script-born downloaders ask COM for an HTTP client instead of importing WinINet or
WinHTTP: ``CoCreateInstance(CLSID_WinHttpRequest, ..., IID_IWinHttpRequest)``, then ``Open``,
``Send``, ``get_Status``, ``get_ResponseBody`` (a SAFEARRAY of bytes) or ``get_ResponseText``.
Speakeasy knows no such class (``REGDB_E_CLASSNOTREG``): the download never happened. Here the
object is the guest's (a vtable of API traps, emulator/backends/speakeasy/comclasses.py creates
it) and each method is a handler below: the request goes to the scenario's responders as
WinHTTP's do (emulator/apis/netapi.py: redirects followed, an exchange per hop), and the body
the guest reads is a network source for lineage.

Method handlers are registered once with the x86 slot count (a VARIANT passed by value takes
four 32-bit slots there; on x64 it is passed by pointer), and read their arguments by the
guest's pointer size. Late binding (``IDispatch::Invoke``, what a script engine uses) is not
implemented (``E_NOTIMPL``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from emulator.apis import netapi
from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

MODULE = "winhttpcom"
INTERFACE = "IWinHttpRequest"
CLSID_WINHTTP_REQUEST = "2087c2f4-2cef-4953-a8ab-66779b670495"
IID_IWINHTTP_REQUEST = "016fe2ec-b2c8-45f8-b23b-39e53a75396b"
IID_IUNKNOWN = "00000000-0000-0000-c000-000000000046"
IID_IDISPATCH = "00020400-0000-0000-c000-000000000046"
USER_AGENT = "Mozilla/4.0 (compatible; Win32; WinHttp.WinHttpRequest.5)"
# MSXML's XMLHTTP classes (msxml6.dll; msxml3.dll's answer the same): IXMLHTTPRequest, and for
# ServerXMLHTTP IServerXMLHTTPRequest(2), which adds four methods.
XML_MODULE = "msxml6"
XML_INTERFACE = "IXMLHTTPRequest"
IID_IXMLHTTP_REQUEST = "ed8c108d-4349-11d2-91a4-00c04f7969e8"
IID_ISERVER_XMLHTTP_REQUEST = "2e9196bf-13ba-4dd4-91ca-6c571f281495"
IID_ISERVER_XMLHTTP_REQUEST2 = "2e01311b-c322-4b0a-bd77-b90cfdc8dce7"
XML_USER_AGENT = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; Win64; x64; Trident/7.0)"
E_PENDING = 0x8000000A
E_FAIL = 0x80004005
INET_E_RESOURCE_NOT_FOUND = 0x800C0005
INET_E_CANNOT_CONNECT = 0x800C0004

S_OK = 0
S_FALSE = 1
E_NOTIMPL = 0x80004001
E_NOINTERFACE = 0x80004002
E_POINTER = 0x80004003
E_INVALIDARG = 0x80070057
DISP_E_BADINDEX = 0x8002000B
# WinHTTP's errors as HRESULTs (FACILITY_WIN32)
WINHTTP_NAME_NOT_RESOLVED = 0x80072EE7
WINHTTP_CANNOT_CONNECT = 0x80072EFD
WINHTTP_INVALID_URL = 0x80072EE5
WINHTTP_UNRECOGNIZED_SCHEME = 0x80072EE6
WINHTTP_INCORRECT_HANDLE_STATE = 0x80072EF3
WINHTTP_HEADER_NOT_FOUND = 0x80072F76
VARIANT_TRUE = 0xFFFF
VT_EMPTY = 0
VT_BSTR = 8
VT_UI1 = 17
VT_ARRAY = 0x2000
FADF_HAVEVARTYPE = 0x0080

# The vtable, in order: IUnknown, IDispatch, then IWinHttpRequest (httprequest.idl).
METHODS = (
    "QueryInterface",
    "AddRef",
    "Release",
    "GetTypeInfoCount",
    "GetTypeInfo",
    "GetIDsOfNames",
    "Invoke",
    "SetProxy",
    "SetCredentials",
    "Open",
    "SetRequestHeader",
    "GetResponseHeader",
    "GetAllResponseHeaders",
    "Send",
    "get_Status",
    "get_StatusText",
    "get_ResponseText",
    "get_ResponseBody",
    "get_ResponseStream",
    "get_Option",
    "put_Option",
    "WaitForResponse",
    "Abort",
    "SetTimeouts",
    "SetClientCertificate",
    "SetAutoLogonPolicy",
)


XML_METHODS = (
    *METHODS[:7],
    "open",
    "setRequestHeader",
    "getResponseHeader",
    "getAllResponseHeaders",
    "send",
    "abort",
    "get_status",
    "get_statusText",
    "get_responseXML",
    "get_responseText",
    "get_responseBody",
    "get_responseStream",
    "get_readyState",
    "put_onreadystatechange",
)
SERVER_XML_METHODS = ("setTimeouts", "waitForResponse", "getOption", "setOption")


def method_name(method: str) -> str:
    """The API name a method's trap is registered under (``winhttpcom.IWinHttpRequest_Open``)."""
    return f"{INTERFACE}_{method}"


@dataclass
class WinHttpRequestObject:
    """One HTTP request object (IWinHttpRequest, or MSXML's IXMLHTTPRequest): what open and
    setRequestHeader set, and the exchange send made. ``msxml``: MSXML's error codes."""

    refs: int = 1
    request: netapi.Request | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sent: bool = False
    interfaces: tuple[str, ...] = (IID_IUNKNOWN, IID_IDISPATCH, IID_IWINHTTP_REQUEST)
    msxml: bool = False
    agent: str = USER_AGENT


def create(api: GuestApi, callback: Callable[[str, str], int]) -> int:
    """A new IWinHttpRequest object in guest memory: its address (the interface pointer).
    ``callback(module, method) -> address`` gives the trap of each method."""
    return _create(api, callback, MODULE, [method_name(m) for m in METHODS], WinHttpRequestObject())


def create_xmlhttp(api: GuestApi, callback: Callable[[str, str], int], server: bool = False) -> int:
    """A new MSXML XMLHTTP (``server``: ServerXMLHTTP) object in guest memory."""
    methods = XML_METHODS + (SERVER_XML_METHODS if server else ())
    interfaces: tuple[str, ...] = (IID_IUNKNOWN, IID_IDISPATCH, IID_IXMLHTTP_REQUEST)
    if server:
        interfaces += (IID_ISERVER_XMLHTTP_REQUEST, IID_ISERVER_XMLHTTP_REQUEST2)
    state = WinHttpRequestObject(interfaces=interfaces, msxml=True, agent=XML_USER_AGENT)
    return _create(api, callback, XML_MODULE, [f"{XML_INTERFACE}_{m}" for m in methods], state)


def _create(
    api: GuestApi, callback: Callable[[str, str], int], module: str, names: list[str], state: WinHttpRequestObject
) -> int:
    ptr = api.ptr_size
    traps = [callback(module, name) for name in names]
    vtable = api.alloc(len(names) * ptr, "api.com_vtable")
    api.write(vtable, b"".join(int(t).to_bytes(ptr, "little") for t in traps))
    obj = api.alloc(2 * ptr, "api.com_object")
    api.write_ptr(obj, vtable)
    api.write_ptr(obj + ptr, _services(api).new_handle(state))
    return obj


def _not_ready(api: GuestApi, this: int) -> int:
    """The error of a call the object's state does not allow yet (before open, before send)."""
    obj = _object(api, this)
    return E_PENDING if obj is not None and obj.msxml else WINHTTP_INCORRECT_HANDLE_STATE


def _object(api: GuestApi, this: int) -> WinHttpRequestObject | None:
    try:
        handle = int.from_bytes(api.read(this + api.ptr_size, api.ptr_size), "little")
    except Exception:
        return None
    return _services(api).get(handle, WinHttpRequestObject)


def read_guid(api: GuestApi, address: int) -> str:
    """A GUID in guest memory as lower-case text without braces."""
    data = api.read(address, 16)
    d1 = int.from_bytes(data[0:4], "little")
    d2 = int.from_bytes(data[4:6], "little")
    d3 = int.from_bytes(data[6:8], "little")
    return f"{d1:08x}-{d2:04x}-{d3:04x}-{data[8:10].hex()}-{data[10:16].hex()}"


def _variant(api: GuestApi, argv: list[int], index: int) -> tuple[int, int]:
    """(vt, value) of a VARIANT argument starting at slot ``index``: by pointer on x64, by value
    (four slots) on x86."""
    if api.ptr_size == 8:
        address = argv[index]
        if not address:
            return VT_EMPTY, 0
        data = api.read(address, 16)
    else:
        data = b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in argv[index : index + 4])
    return int.from_bytes(data[0:2], "little"), int.from_bytes(data[8 : 8 + api.ptr_size], "little")


def _after_variant(api: GuestApi, index: int) -> int:
    """The slot after a VARIANT argument starting at ``index``."""
    return index + (1 if api.ptr_size == 8 else 4)


def alloc_bstr(api: GuestApi, text: str) -> int:
    """A BSTR holding ``text``: its length prefix, UTF-16 characters and terminator."""
    data = text.encode("utf-16-le")
    block = api.alloc(len(data) + 6, "api.bstr")
    api.write(block, len(data).to_bytes(4, "little") + data + b"\0\0")
    return block + 4


def _bstr_text(api: GuestApi, bstr: int) -> str:
    return api.read_string(bstr, True) if bstr else ""


def _write_bstr_out(api: GuestApi, out: int, text: str) -> int:
    if not out:
        return E_POINTER
    api.write_ptr(out, alloc_bstr(api, text))
    return S_OK


def _safearray_fields(api: GuestApi) -> tuple[int, int, int]:
    """Offsets of pvData and rgsabound in a SAFEARRAY, and its size with one dimension."""
    return (16, 24, 32) if api.ptr_size == 8 else (12, 16, 24)


def byte_safearray(api: GuestApi, data: bytes) -> tuple[int, int]:
    """A one-dimensional SAFEARRAY of VT_UI1 holding ``data``: (the array, its data)."""
    data_at, bound_at, size = _safearray_fields(api)
    array = api.alloc(size, "api.safearray")
    content = api.alloc(max(len(data), 1), "api.safearray_data")
    api.write(content, data)
    header = bytearray(size)
    header[0:2] = (1).to_bytes(2, "little")  # cDims
    header[2:4] = FADF_HAVEVARTYPE.to_bytes(2, "little")
    header[4:8] = (1).to_bytes(4, "little")  # cbElements
    header[data_at : data_at + api.ptr_size] = content.to_bytes(api.ptr_size, "little")
    header[bound_at : bound_at + 4] = len(data).to_bytes(4, "little")  # cElements; lLbound 0
    api.write(array, bytes(header))
    return array, content


# ---- IUnknown, IDispatch --------------------------------------------------------------------


@apihook(MODULE, method_name("QueryInterface"), argc=3)
def query_interface(api: GuestApi, argv: list[int]) -> int:
    this, riid, out = argv[:3]
    if not out:
        return E_POINTER
    obj = _object(api, this)
    if obj is None or read_guid(api, riid) not in obj.interfaces:
        api.write_ptr(out, 0)
        return E_NOINTERFACE
    obj.refs += 1
    api.write_ptr(out, this)
    return S_OK


@apihook(MODULE, method_name("AddRef"), argc=1)
def add_ref(api: GuestApi, argv: list[int]) -> int:
    obj = _object(api, argv[0])
    if obj is None:
        return 0
    obj.refs += 1
    return obj.refs


@apihook(MODULE, method_name("Release"), argc=1)
def release(api: GuestApi, argv: list[int]) -> int:
    obj = _object(api, argv[0])
    if obj is None:
        return 0
    obj.refs = max(obj.refs - 1, 0)
    return obj.refs


@apihook(MODULE, method_name("GetTypeInfoCount"), argc=2)
def get_type_info_count(api: GuestApi, argv: list[int]) -> int:
    if argv[1]:
        api.write_u32(argv[1], 0)
    return S_OK


@apihook(MODULE, method_name("GetTypeInfo"), argc=4)
def get_type_info(api: GuestApi, argv: list[int]) -> int:
    if argv[3]:
        api.write_ptr(argv[3], 0)
    return DISP_E_BADINDEX


@apihook(MODULE, method_name("GetIDsOfNames"), argc=6)
def get_ids_of_names(api: GuestApi, argv: list[int]) -> int:
    return E_NOTIMPL


@apihook(MODULE, method_name("Invoke"), argc=9)
def invoke(api: GuestApi, argv: list[int]) -> int:
    return E_NOTIMPL


# ---- IWinHttpRequest ------------------------------------------------------------------------


@apihook(MODULE, method_name("SetProxy"), argc=10)
def set_proxy(api: GuestApi, argv: list[int]) -> int:
    """SetProxy(setting, VARIANT server, VARIANT bypass): accepted (the responders answer)."""
    return S_OK


@apihook(MODULE, method_name("SetCredentials"), argc=4)
def set_credentials(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook(MODULE, method_name("Open"), argc=7)
def open_request(api: GuestApi, argv: list[int]) -> int:
    """Open(BSTR method, BSTR url, VARIANT async): the request to send."""
    this, method, url = argv[:3]
    obj = _object(api, this)
    if obj is None:
        return E_INVALIDARG
    text = _bstr_text(api, url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return E_INVALIDARG if obj.msxml else WINHTTP_UNRECOGNIZED_SCHEME
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return E_INVALIDARG if obj.msxml else WINHTTP_INVALID_URL
    session = netapi.Session(obj.agent)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = netapi.Connection(session, parts.hostname, port)
    obj.request = netapi.Request(connection, _bstr_text(api, method) or "GET", path, scheme == "https")
    obj.headers = {}
    obj.sent = False
    return S_OK


@apihook(MODULE, method_name("SetRequestHeader"), argc=3)
def set_request_header(api: GuestApi, argv: list[int]) -> int:
    obj = _object(api, argv[0])
    if obj is None or obj.request is None:
        return _not_ready(api, argv[0])
    name = _bstr_text(api, argv[1]).strip()
    if name:
        obj.request.headers[name] = _bstr_text(api, argv[2])
    return S_OK


def _response_of(api: GuestApi, this: int) -> tuple[WinHttpRequestObject, netapi.Request] | None:
    obj = _object(api, this)
    if obj is None or obj.request is None or not obj.sent or obj.request.response is None:
        return None
    return obj, obj.request


@apihook(MODULE, method_name("GetResponseHeader"), argc=3)
def get_response_header(api: GuestApi, argv: list[int]) -> int:
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    response = found[1].response
    assert response is not None
    name = _bstr_text(api, argv[1]).lower()
    value = next((v for k, v in response.headers.items() if k.lower() == name), None)
    if value is None:
        return WINHTTP_HEADER_NOT_FOUND
    return _write_bstr_out(api, argv[2], value)


@apihook(MODULE, method_name("GetAllResponseHeaders"), argc=2)
def get_all_response_headers(api: GuestApi, argv: list[int]) -> int:
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    response = found[1].response
    assert response is not None
    return _write_bstr_out(api, argv[1], "".join(f"{k}: {v}\r\n" for k, v in response.headers.items()))


@apihook(MODULE, method_name("Send"), argc=5)
def send(api: GuestApi, argv: list[int]) -> int:
    """Send(VARIANT body): the exchange (a string body is sent as UTF-8, a byte array as it is)."""
    obj = _object(api, argv[0])
    if obj is None or obj.request is None:
        return _not_ready(api, argv[0])
    vt, value = _variant(api, argv, 1)
    body = b""
    if vt == VT_BSTR and value:
        body = _bstr_text(api, value).encode("utf-8")
    elif vt == VT_ARRAY | VT_UI1 and value:
        data_at, bound_at, _ = _safearray_fields(api)
        content = int.from_bytes(api.read(value + data_at, api.ptr_size), "little")
        body = api.read(content, api.read_u32(value + bound_at))
    request = obj.request
    if not netapi.send(api, request, body):
        reachable = _services(api).network.accepts_connection(request.connection.host)
        if obj.msxml:
            return INET_E_CANNOT_CONNECT if reachable else INET_E_RESOURCE_NOT_FOUND
        return WINHTTP_CANNOT_CONNECT if reachable else WINHTTP_NAME_NOT_RESOLVED
    obj.sent = True
    return S_OK


@apihook(MODULE, method_name("get_Status"), argc=2)
def get_status(api: GuestApi, argv: list[int]) -> int:
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    if not argv[1]:
        return E_POINTER
    response = found[1].response
    assert response is not None
    api.write_u32(argv[1], response.status)
    return S_OK


@apihook(MODULE, method_name("get_StatusText"), argc=2)
def get_status_text(api: GuestApi, argv: list[int]) -> int:
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    response = found[1].response
    assert response is not None
    return _write_bstr_out(api, argv[1], response.reason)


@apihook(MODULE, method_name("get_ResponseText"), argc=2)
def get_response_text(api: GuestApi, argv: list[int]) -> int:
    """The body as text (UTF-8 decoded) in a BSTR: a network source for lineage."""
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    if not argv[1]:
        return E_POINTER
    request = found[1]
    text = request.body.decode("utf-8", "replace")
    bstr = alloc_bstr(api, text)
    api.write_ptr(argv[1], bstr)
    if text:
        _services(api).recorder.remember_buffer(
            "network_read", bstr, text.encode("utf-16-le"), ref=request.url, api=api.qualified_name
        )
    return S_OK


@apihook(MODULE, method_name("get_ResponseBody"), argc=2)
def get_response_body(api: GuestApi, argv: list[int]) -> int:
    """The body as a VARIANT holding a SAFEARRAY of bytes: a network source for lineage."""
    found = _response_of(api, argv[0])
    if found is None:
        return _not_ready(api, argv[0])
    out = argv[1]
    if not out:
        return E_POINTER
    request = found[1]
    array, content = byte_safearray(api, request.body)
    api.write(out, (VT_ARRAY | VT_UI1).to_bytes(2, "little") + bytes(6))
    api.write_ptr(out + 8, array)
    if request.body:
        _services(api).recorder.remember_buffer(
            "network_read", content, request.body, ref=request.url, api=api.qualified_name
        )
    return S_OK


@apihook(MODULE, method_name("get_ResponseStream"), argc=2)
def get_response_stream(api: GuestApi, argv: list[int]) -> int:
    return E_NOTIMPL


@apihook(MODULE, method_name("get_Option"), argc=3)
def get_option(api: GuestApi, argv: list[int]) -> int:
    if argv[2]:
        api.write(argv[2], bytes(8))  # VT_EMPTY
    return S_OK


@apihook(MODULE, method_name("put_Option"), argc=6)
def put_option(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook(MODULE, method_name("WaitForResponse"), argc=6)
def wait_for_response(api: GuestApi, argv: list[int]) -> int:
    """WaitForResponse(VARIANT timeout, VARIANT_BOOL *succeeded): the exchange was made in Send."""
    out = argv[_after_variant(api, 1)]
    if out:
        api.write(out, VARIANT_TRUE.to_bytes(2, "little"))
    return S_OK


@apihook(MODULE, method_name("Abort"), argc=1)
def abort(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook(MODULE, method_name("SetTimeouts"), argc=5)
def set_timeouts(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook(MODULE, method_name("SetClientCertificate"), argc=2)
def set_client_certificate(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook(MODULE, method_name("SetAutoLogonPolicy"), argc=2)
def set_auto_logon_policy(api: GuestApi, argv: list[int]) -> int:
    return S_OK


# ---- MSXML's XMLHTTP: the same object behind IXMLHTTPRequest's names ------------------------


def get_ready_state(api: GuestApi, argv: list[int]) -> int:
    """get_readyState(long *): 0 before open, 1 opened, 4 once send has the response."""
    obj = _object(api, argv[0])
    if not argv[1]:
        return E_POINTER
    state = 0 if obj is None or obj.request is None else 4 if obj.sent else 1
    api.write_u32(argv[1], state)
    return S_OK


def get_response_xml(api: GuestApi, argv: list[int]) -> int:
    """get_responseXML(IDispatch **): no DOM here (a NULL document)."""
    if argv[1]:
        api.write_ptr(argv[1], 0)
    return E_NOTIMPL


def accepted(api: GuestApi, argv: list[int]) -> int:
    return S_OK


# IXMLHTTPRequest's methods: name, handler, slots (x86: a VARIANT by value is four).
XML_HANDLERS = (
    ("QueryInterface", query_interface, 3),
    ("AddRef", add_ref, 1),
    ("Release", release, 1),
    ("GetTypeInfoCount", get_type_info_count, 2),
    ("GetTypeInfo", get_type_info, 4),
    ("GetIDsOfNames", get_ids_of_names, 6),
    ("Invoke", invoke, 9),
    ("open", open_request, 15),  # (method, url, VARIANT async, VARIANT user, VARIANT password)
    ("setRequestHeader", set_request_header, 3),
    ("getResponseHeader", get_response_header, 3),
    ("getAllResponseHeaders", get_all_response_headers, 2),
    ("send", send, 5),
    ("abort", accepted, 1),
    ("get_status", get_status, 2),
    ("get_statusText", get_status_text, 2),
    ("get_responseXML", get_response_xml, 2),
    ("get_responseText", get_response_text, 2),
    ("get_responseBody", get_response_body, 2),
    ("get_responseStream", get_response_stream, 2),
    ("get_readyState", get_ready_state, 2),
    ("put_onreadystatechange", accepted, 2),
    ("setTimeouts", accepted, 5),
    ("waitForResponse", wait_for_response, 6),
    ("getOption", get_option, 3),
    ("setOption", accepted, 6),
)
for _name, _handler, _argc in XML_HANDLERS:
    apihook(XML_MODULE, f"{XML_INTERFACE}_{_name}", argc=_argc)(_handler)


# ---- OLE Automation: what a client of the object calls (Speakeasy has none of these) ---------


@apihook("oleaut32", "SafeArrayAccessData", argc=2)
def safe_array_access_data(api: GuestApi, argv: list[int]) -> int:
    """SafeArrayAccessData(psa, ppvData): the array's data, locked."""
    array, out = argv
    if not array or not out:
        return E_INVALIDARG
    data_at, _, _ = _safearray_fields(api)
    api.write_ptr(out, int.from_bytes(api.read(array + data_at, api.ptr_size), "little"))
    api.write_u32(array + 8, api.read_u32(array + 8) + 1)  # cLocks
    return S_OK


@apihook("oleaut32", "SafeArrayUnaccessData", argc=1)
def safe_array_unaccess_data(api: GuestApi, argv: list[int]) -> int:
    if not argv[0]:
        return E_INVALIDARG
    locks = api.read_u32(argv[0] + 8)
    api.write_u32(argv[0] + 8, max(locks - 1, 0))
    return S_OK


def _bound(api: GuestApi, array: int, dimension: int) -> tuple[int, int] | None:
    """(cElements, lLbound) of a dimension (1-based; rgsabound holds the last dimension first)."""
    if not array:
        return None
    dims = int.from_bytes(api.read(array, 2), "little")
    if not 1 <= dimension <= dims:
        return None
    _, bound_at, _ = _safearray_fields(api)
    at = bound_at + 8 * (dims - dimension)
    count = api.read_u32(array + at)
    lower = int.from_bytes(api.read(array + at + 4, 4), "little", signed=True)
    return count, lower


@apihook("oleaut32", "SafeArrayGetLBound", argc=3)
def safe_array_get_lbound(api: GuestApi, argv: list[int]) -> int:
    bound = _bound(api, argv[0], argv[1] & 0xFFFFFFFF)
    if bound is None or not argv[2]:
        return DISP_E_BADINDEX if bound is None else E_INVALIDARG
    api.write_u32(argv[2], bound[1])
    return S_OK


@apihook("oleaut32", "SafeArrayGetUBound", argc=3)
def safe_array_get_ubound(api: GuestApi, argv: list[int]) -> int:
    bound = _bound(api, argv[0], argv[1] & 0xFFFFFFFF)
    if bound is None or not argv[2]:
        return DISP_E_BADINDEX if bound is None else E_INVALIDARG
    api.write_u32(argv[2], bound[1] + bound[0] - 1)
    return S_OK


@apihook("oleaut32", "SafeArrayGetDim", argc=1)
def safe_array_get_dim(api: GuestApi, argv: list[int]) -> int:
    return int.from_bytes(api.read(argv[0], 2), "little") if argv[0] else 0


@apihook("oleaut32", "SafeArrayDestroy", argc=1)
def safe_array_destroy(api: GuestApi, argv: list[int]) -> int:
    return S_OK


@apihook("oleaut32", "VariantClear", argc=1)
def variant_clear(api: GuestApi, argv: list[int]) -> int:
    """VariantClear(pvarg): VT_EMPTY (what it held is not freed: guest memory is not reclaimed)."""
    if argv[0]:
        api.write(argv[0], bytes(8))
    return S_OK


@apihook("oleaut32", ["SysStringLen", "SysStringByteLen"], argc=1)
def sys_string_len(api: GuestApi, argv: list[int]) -> int:
    if not argv[0]:
        return 0
    size = api.read_u32(argv[0] - 4)
    return size if api.api_name == "SysStringByteLen" else size // 2
