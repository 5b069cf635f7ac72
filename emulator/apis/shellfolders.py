"""Known folders (``SHGetKnownFolderPath``): the paths of the guest's user profile and system.

The per-user folders come from the scenario's ``[environment]`` through the guest's variables
(``%USERPROFILE%``, ``%APPDATA%``, ``%LOCALAPPDATA%``, ``%PUBLIC%``, ``%PROGRAMDATA%``), so a
sample finds the same profile whichever way it asks. Without a handler, Speakeasy's signature
emulation returned S_OK and left the output pointer NULL.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

S_OK = 0
E_INVALIDARG = 0x80070057
E_FAIL = 0x80004005
GUID_SIZE = 16
# Longest known-folder path written (a profile path of MAX_PATH plus the longest suffix).
MAX_KNOWN_FOLDER_CHARS = 512
# CoTaskMemAlloc refuses larger requests (NULL, out of memory) rather than mapping them.
MAX_TASK_ALLOCATION = 256 * 1024 * 1024

# FOLDERID_* (KnownFolders.h) -> (variable the path starts from, suffix). "" as the variable:
# the suffix is the whole path ("systemroot" and "programfiles" fall back to Windows' defaults).
_PROFILE, _ROAMING, _LOCAL = "userprofile", "appdata", "localappdata"
_START_MENU = "Microsoft\\Windows\\Start Menu"
KNOWN_FOLDERS: dict[str, tuple[str, str]] = {
    "F1B32785-6FBA-4FCF-9D55-7B8E7F157091": (_LOCAL, ""),  # LocalAppData
    "3EB685DB-65F9-4CF6-A03A-E3EF65729F3D": (_ROAMING, ""),  # RoamingAppData
    "A520A1A4-1780-4FF6-BD18-167343C5AF16": (_PROFILE, "AppData\\LocalLow"),  # LocalAppDataLow
    "5E6C858F-0E22-4760-9AFE-EA3317B67173": (_PROFILE, ""),  # Profile
    "B4BFCC3A-DB2C-424C-B029-7FE99A87C641": (_PROFILE, "Desktop"),  # Desktop
    "FDD39AD0-238F-46AF-ADB4-6C85480369C7": (_PROFILE, "Documents"),  # Documents
    "374DE290-123F-4565-9164-39C4925E467B": (_PROFILE, "Downloads"),  # Downloads
    "33E28130-4E1E-4676-835A-98395C3BC3BB": (_PROFILE, "Pictures"),  # Pictures
    "4BD8D571-6D19-48D3-BE97-422220080E43": (_PROFILE, "Music"),  # Music
    "18989B1D-99B5-455B-841C-AB7C74E4DDFC": (_PROFILE, "Videos"),  # Videos
    "1777F761-68AD-4D8A-87BD-30B759FA33DD": (_PROFILE, "Favorites"),  # Favorites
    "625B53C3-AB48-4EC1-BA1F-A1EF4146FC19": (_ROAMING, _START_MENU),  # StartMenu
    "A77F5D77-2E2B-44C3-A6A2-ABA601054A51": (_ROAMING, f"{_START_MENU}\\Programs"),  # Programs
    "B97D20BB-F46A-4C97-BA10-5E3608430854": (_ROAMING, f"{_START_MENU}\\Programs\\Startup"),  # Startup
    "AE50C081-EBD2-438A-8655-8A092E34987A": (_ROAMING, "Microsoft\\Windows\\Recent"),  # Recent
    "8983036C-27C0-404B-8F08-102D10DCFD74": (_ROAMING, "Microsoft\\Windows\\SendTo"),  # SendTo
    "A63293E8-664E-48DB-A079-DF759E0509F7": (_ROAMING, "Microsoft\\Windows\\Templates"),  # Templates
    "2B0F765D-C0E9-4171-908E-08A611B84FF6": (_ROAMING, "Microsoft\\Windows\\Cookies"),  # Cookies
    "352481E8-33BE-4251-BA85-6007CAEDCF9D": (_LOCAL, "Microsoft\\Windows\\INetCache"),  # InternetCache
    "D9DC8A3B-B784-432E-A781-5A1130A75963": (_LOCAL, "Microsoft\\Windows\\History"),  # History
    "62AB5D82-FDC1-4DC3-A9DD-070D1D495D97": ("programdata", ""),  # ProgramData
    "A4115719-D62E-491D-AA7C-E74B8BE3B067": ("programdata", _START_MENU),  # CommonStartMenu
    "0139D44E-6AFE-49F2-8690-3DAFCAE6FFB8": ("programdata", f"{_START_MENU}\\Programs"),  # CommonPrograms
    "82A5EA35-D9CD-47C5-9629-E15D2F714E6E": ("programdata", f"{_START_MENU}\\Programs\\StartUp"),  # CommonStartup
    "DFDF76A2-C82A-4D63-906A-5644AC457385": ("public", ""),  # Public
    "C4AA340D-F20F-4863-AFEF-F87EF2E6BA25": ("public", "Desktop"),  # PublicDesktop
    "ED4824AF-DCE4-45A8-81E2-FC7965083634": ("public", "Documents"),  # PublicDocuments
    "0762D272-C50A-4BB0-A382-697DCD729B80": ("", "C:\\Users"),  # UserProfiles
    "F38BF404-1D43-42F2-9305-67DE0B28FC23": ("systemroot", ""),  # Windows
    "1AC14E77-02E7-4E5D-B744-2EB1AE5198B7": ("systemroot", "System32"),  # System
    "FD228CB7-AE11-4AE3-864C-16F3910AB8FE": ("systemroot", "Fonts"),  # Fonts
    "905E63B6-C1BF-494E-B29C-65B732D3D21A": ("programfiles", ""),  # ProgramFiles
    "F7F1ED05-9F6D-47A2-AAAE-29D317C6F066": ("programfiles", "Common Files"),  # ProgramFilesCommon
}
# Folders whose path depends on the guest's bitness (an x86 guest runs on a 32-bit Windows).
FOLDERID_PROGRAM_FILES_X86 = "7C5A40EF-A0FB-4BFC-874A-C0F2E0B9FA8E"
FOLDERID_PROGRAM_FILES_X64 = "6D809377-6AF0-444B-8957-A3773F02200E"
FOLDERID_SYSTEM_X86 = "D65231B0-B2F1-4857-A4CE-A8E7C6EA7D27"
DEFAULTS = {"systemroot": "C:\\Windows", "programfiles": "C:\\Program Files"}


def guid_text(data: bytes) -> str:
    """A GUID's 16 bytes as ``XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`` (upper case)."""
    d1 = int.from_bytes(data[:4], "little")
    d2, d3 = int.from_bytes(data[4:6], "little"), int.from_bytes(data[6:8], "little")
    return f"{d1:08X}-{d2:04X}-{d3:04X}-{data[8:10].hex().upper()}-{data[10:16].hex().upper()}"


def known_folder_path(api: GuestApi, folder: str) -> str | None:
    """The guest's path of the known folder ``folder`` (a GUID's text), or None if it has none."""
    variables = _services(api).variables
    x64 = api.ptr_size == 8

    def var(name: str) -> str:
        return (variables.get(name) or DEFAULTS.get(name, "")).rstrip("\\")

    if folder == FOLDERID_PROGRAM_FILES_X86:
        return var("programfiles") + (" (x86)" if x64 else "")
    if folder == FOLDERID_PROGRAM_FILES_X64:
        return var("programfiles") if x64 else None
    if folder == FOLDERID_SYSTEM_X86:
        return var("systemroot") + ("\\SysWOW64" if x64 else "\\System32")
    entry = KNOWN_FOLDERS.get(folder)
    if entry is None:
        return None
    base, suffix = entry
    if not base:
        return suffix
    root = var(base)
    return f"{root}\\{suffix}" if suffix else root


@apihook("shell32", "SHGetKnownFolderPath", argc=4)
def sh_get_known_folder_path(api: GuestApi, argv: list[int]) -> int:
    """HRESULT SHGetKnownFolderPath(REFKNOWNFOLDERID rfid, DWORD dwFlags, HANDLE hToken, PWSTR *ppszPath).

    The path in a new buffer (the caller frees it with CoTaskMemFree); an unknown folder gives
    E_INVALIDARG and a NULL path, as on Windows."""
    rfid, _flags, _token, out = argv
    if not out:
        return E_INVALIDARG
    api.write_ptr(out, 0)
    try:
        folder = guid_text(api.read(rfid, GUID_SIZE)) if rfid else ""
    except Exception:
        return E_INVALIDARG
    path = known_folder_path(api, folder)
    if path is None:
        return E_INVALIDARG
    path = path[:MAX_KNOWN_FOLDER_CHARS]
    buffer = api.alloc((len(path) + 1) * 2, "api.shell32.SHGetKnownFolderPath")
    if not buffer:
        return E_FAIL
    api.write_string(buffer, path, wide=True)
    api.write_ptr(out, buffer)
    return S_OK


@apihook("ole32", "CoTaskMemAlloc", argc=1)
@apihook("combase", "CoTaskMemAlloc", argc=1)
def co_task_mem_alloc(api: GuestApi, argv: list[int]) -> int:
    """LPVOID CoTaskMemAlloc(SIZE_T cb): zeroed guest memory (NULL for a size the guest cannot have)."""
    size = argv[0] & ((1 << (api.ptr_size * 8)) - 1)
    if size > MAX_TASK_ALLOCATION:
        return 0
    return api.alloc(max(size, 1), "api.ole32.CoTaskMemAlloc")


@apihook("ole32", "CoTaskMemFree", argc=1)
@apihook("combase", "CoTaskMemFree", argc=1)
def co_task_mem_free(api: GuestApi, argv: list[int]) -> int:
    """void CoTaskMemFree(LPVOID pv): the memory stays mapped (a handler cannot unmap it); the
    guest no longer uses it, so nothing it does can tell."""
    return 0
