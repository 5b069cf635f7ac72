"""URLMon's one-call downloads routed to the scenario's responders.

Speakeasy answers ``URLDownloadToFile`` with success and writes nothing, so a dropper's next
step (``LoadLibrary`` or ``CreateFile`` of the downloaded file) found no file. Here the request
goes to the responders like a WinINet one, and a 2xx body becomes the named file in the guest's
file system, recorded as a write: the lineage then runs from the file back to the response.
"""

from __future__ import annotations

import hashlib
import posixpath
from urllib.parse import unquote, urlsplit

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook, is_wide
from emulator.apis.netapi import Connection, Request, Session, send

S_OK = 0
E_INVALIDARG = 0x80070057
E_OUTOFMEMORY = 0x8007000E
INET_E_CANNOT_CONNECT = 0x800C0004
INET_E_RESOURCE_NOT_FOUND = 0x800C0005
INET_E_DOWNLOAD_FAILURE = 0x800C0008

# URLMon's own User-Agent (the caller cannot set one through these two calls).
URLMON_AGENT = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; Win64; x64; Trident/7.0)"
# Where URLDownloadToCacheFile puts a download, under %LOCALAPPDATA%.
CACHE_FOLDER = "Microsoft\\Windows\\INetCache\\IE"
DEFAULT_LOCAL_APPDATA = "C:\\Users\\user\\AppData\\Local"
DEFAULT_PORTS = {"http": 80, "https": 443}


def _fetch(api: GuestApi, url: str) -> tuple[int, bytes]:
    """(HRESULT, body): the responders' answer to a GET of ``url``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return E_INVALIDARG, b""
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return E_INVALIDARG, b""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # URLMon (Internet Explorer's stack) asks for and undoes gzip / deflate by itself.
    session = Session(URLMON_AGENT, decoding=True)
    request = Request(Connection(session, parts.hostname, port), "GET", path, scheme == "https")
    if not send(api, request, b""):
        reachable = _services(api).network.accepts_connection(parts.hostname)
        return (INET_E_CANNOT_CONNECT if reachable else INET_E_RESOURCE_NOT_FOUND), b""
    response = request.response
    assert response is not None
    if not 200 <= response.status < 300:
        return INET_E_DOWNLOAD_FAILURE, b""
    return S_OK, request.body


@apihook("urlmon", ["URLDownloadToFileA", "URLDownloadToFileW"], argc=5)
def url_download_to_file(api: GuestApi, argv: list[int]) -> int:
    """URLDownloadToFile(caller, url, file name, reserved, callback)."""
    wide = is_wide(api)
    url = api.read_string(argv[1], wide)
    path = api.read_string(argv[2], wide)
    if not url or not path:
        return E_INVALIDARG
    result, body = _fetch(api, url)
    if result == S_OK:
        api.write_file(path, body)
    return result


@apihook("urlmon", ["URLDownloadToCacheFileA", "URLDownloadToCacheFileW"], argc=6)
def url_download_to_cache_file(api: GuestApi, argv: list[int]) -> int:
    """URLDownloadToCacheFile(caller, url, file name buffer, its size in characters, reserved,
    callback): the download goes to the cache folder and its path into the buffer."""
    wide = is_wide(api)
    url = api.read_string(argv[1], wide)
    buffer, chars = argv[2], argv[3] & 0xFFFFFFFF
    if not url or not buffer or not chars:
        return E_INVALIDARG
    local = _services(api).variables.get("localappdata", DEFAULT_LOCAL_APPDATA)
    path = cache_path(url, local)
    if len(path) + 1 > chars:
        return E_OUTOFMEMORY
    result, body = _fetch(api, url)
    if result == S_OK:
        api.write_file(path, body)
        api.write_string(buffer, path, wide)
    return result


def cache_path(url: str, local_appdata: str) -> str:
    """The cache file of ``url``: a folder named from the URL's hash, then ``name[1].ext`` as
    Internet Explorer's cache names its entries."""
    name = posixpath.basename(unquote(urlsplit(url).path)) or "index.html"
    stem, dot, ext = name.rpartition(".")
    entry = f"{stem}[1].{ext}" if dot and stem else f"{name}[1]"
    folder = hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()[:8].upper()
    return f"{local_appdata.rstrip(chr(92))}\\{CACHE_FOLDER}\\{folder}\\{entry}"
