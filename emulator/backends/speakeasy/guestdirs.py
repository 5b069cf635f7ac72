"""The guest's folders: the ones every Windows machine has, and those its files are in.

Speakeasy knows files only. ``GetFileAttributes("C:\\Windows")`` answered
INVALID_FILE_ATTRIBUTES, ``CreateDirectory`` of ``%TEMP%`` succeeded as if it were new,
``FindFirstFile`` listed only the scenario's files (lower-cased, never a file the guest wrote,
nothing in ``System32``, no ``.`` / ``..``): each a one-call emulator tell, and a loader that
walks a folder for its payload found nothing. Here the standard tree (Windows, System32,
SysWOW64, Program Files, ProgramData, Users, the user's profile folders), the folders of every
file the guest has (the scenario's, those it wrote, the system DLLs of sysfiles.py) and those the
guest created are folders: attributes FILE_ATTRIBUTE_DIRECTORY, ``CreateDirectory`` of one fails
with ERROR_ALREADY_EXISTS, and a listing yields its folders and files with their own case.
"""

from __future__ import annotations

import fnmatch
import ntpath
from collections.abc import Callable, Iterator
from typing import Any

from speakeasy.windows.export_manifest import get_manifest_names

from emulator.backends.speakeasy.compat_load import emulator_provides
from emulator.backends.speakeasy.sysfiles import PATH_PREFIXES, normal_path

FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20
GET_FILE_EX_INFO_STANDARD = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_INVALID_PARAMETER = 87
ERROR_INVALID_HANDLE = 6
ERROR_ALREADY_EXISTS = 183
ERROR_PATH_NOT_FOUND = 3
INVALID_FILE_ATTRIBUTES = 0xFFFFFFFF
# The emulator attribute naming its GuestDirectories (for not_found_error).
FOLDERS_ATTR = "_chainreplay_folders"
# Folders every Windows 10 machine has; {profile} is the user's, from the guest's variables.
STANDARD_FOLDERS = (
    "C:\\Windows\\System32\\drivers\\etc",
    "C:\\Windows\\System32\\config",
    "C:\\Windows\\System32\\Tasks",
    "C:\\Windows\\SysWOW64",
    "C:\\Windows\\Temp",
    "C:\\Windows\\Fonts",
    "C:\\Windows\\Microsoft.NET\\Framework64",
    "C:\\Program Files\\Common Files",
    "C:\\Program Files\\Windows Defender",
    "C:\\Program Files\\Internet Explorer",
    "C:\\Program Files (x86)\\Microsoft\\Edge\\Application",
    "C:\\ProgramData\\Microsoft\\Windows\\Start Menu\\Programs\\Startup",
    "C:\\Users\\Public\\Desktop",
    "C:\\Users\\Public\\Documents",
    "C:\\Users\\Public\\Downloads",
    "C:\\Users\\Default",
    "{profile}\\Desktop",
    "{profile}\\Documents",
    "{profile}\\Downloads",
    "{profile}\\Pictures",
    "{profile}\\Music",
    "{profile}\\Videos",
    "{profile}\\Favorites",
    "{profile}\\AppData\\Local\\Temp",
    "{profile}\\AppData\\Local\\Microsoft\\Windows\\INetCache",
    "{profile}\\AppData\\LocalLow",
    "{profile}\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\Programs\\Startup",
)
# The system folders whose DLLs sysfiles.py serves, and whose architecture's names they list.
SYSTEM_DLL_FOLDERS = {"c:\\windows\\system32": None, "c:\\windows\\syswow64": "x86"}
# The longest folder path read from the guest (Windows' long-path limit).
MAX_GUEST_PATH = 32767


class GuestDirectories:
    def __init__(self, emu: Any, profile: str, x64: bool) -> None:
        self.emu = emu
        self.x64 = x64
        self.folders: dict[str, str] = {}  # lower-cased path -> as first spelled
        for folder in STANDARD_FOLDERS:
            self.add(folder.format(profile=profile))

    def absolute(self, path: str) -> str:
        """``path`` as Windows resolves it: a relative one (``*``, ``..\\..\\*``, ``sub``) against
        the process's current directory, a rooted one (``\\x``) on its drive."""
        path = path.replace("/", "\\")
        if path.startswith("\\\\") or path[1:2] == ":":
            return path
        current = str(self.emu.get_cd() or "C:\\")
        if path.startswith("\\"):
            return current[:2] + path
        return ntpath.join(current, path)

    def add(self, path: str) -> None:
        """``path`` and every folder above it exist."""
        path = self.absolute(path).rstrip("\\")
        while len(path) > 2:
            key = normal_path(path)
            if key in self.folders:
                return
            self.folders[key] = path
            path = ntpath.dirname(path).rstrip("\\")

    def _files(self) -> Iterator[str]:
        """Every file path the guest has (the scenario's, those opened or written)."""
        fileman = self.emu.fileman
        for entry in fileman.file_config.files:
            path = getattr(entry, "emu_path", None)
            if path and not any(c in path for c in "*?"):
                yield path
        for file in fileman.files:
            if getattr(file, "path", None):
                yield file.path

    def not_found_error(self, path: str) -> int:
        """Why ``path`` was not found: ERROR_PATH_NOT_FOUND when its folder does not exist
        either, else ERROR_FILE_NOT_FOUND (as CreateFile and GetFileAttributes fail)."""
        folder = ntpath.dirname(self.absolute(path))
        return ERROR_FILE_NOT_FOUND if not folder or self.is_folder(folder) else ERROR_PATH_NOT_FOUND

    def is_folder(self, path: str) -> bool:
        key = normal_path(self.absolute(path))
        if key in self.folders or len(key) == 2:
            return True
        prefix = key + "\\"
        return any(normal_path(f).startswith(prefix) for f in self._files())

    def entries(self, search: str) -> Iterator[tuple[str, bool]]:
        """(name, is folder) of the children of ``search``'s folder its pattern matches:
        ``.`` and ``..`` first (not at a drive's root), then folders, then files."""
        folder, pattern = ntpath.split(self.absolute(search))
        for prefix in PATH_PREFIXES:
            folder = folder.removeprefix(prefix)
        if not pattern or not self.is_folder(folder):
            return
        wanted = pattern.lower()
        if wanted in ("*.*", "*"):
            wanted = "*"
        key = normal_path(folder)
        seen: set[str] = set()
        children: list[tuple[str, bool]] = []
        if len(key) > 2:
            children += [(".", True), ("..", True)]
        for path in self.folders.values():
            if normal_path(ntpath.dirname(path)) == key:
                children.append((ntpath.basename(path), True))
        for path in self._files():
            parent = normal_path(ntpath.dirname(path))
            if parent == key:
                children.append((ntpath.basename(path), False))
            elif parent.startswith(key + "\\"):
                top = parent[len(key) + 1 :].split("\\", 1)[0]
                children.append((top, True))
        if key in SYSTEM_DLL_FOLDERS:
            arch = SYSTEM_DLL_FOLDERS[key] or ("x64" if self.x64 else "x86")
            names = sorted(get_manifest_names(arch))
            children += [(f"{name}.dll", False) for name in names if emulator_provides(self.emu, name, arch)]
        for name, is_folder in children:
            folded = name.lower()
            if folded in seen or not fnmatch.fnmatchcase(folded, wanted):
                continue
            seen.add(folded)
            yield name, is_folder

    def install(
        self,
        se: Any,
        read_path: Callable[[int, bool], str],
        now_filetime: Callable[[], int],
        file_size: Callable[[str], int | None],
        path_of_handle: Callable[[int], str | None],
    ) -> None:
        """Hook the file manager's listing, the folder APIs and the file times on ``se``
        (``read_path(address, wide)``: a guest string; ``now_filetime()``: the virtual clock;
        ``file_size(path)``: a guest file's size, None when there is no such file;
        ``path_of_handle(handle)``: the path of the file a handle names)."""
        self.emu.fileman.find_matching_entries = self.entries
        setattr(self.emu, FOLDERS_ATTR, self)
        # Lower-cased path -> (creation, last access, last write) FILETIMEs SetFileTime gave it.
        times: dict[str, list[int]] = {}

        def times_of(path: str) -> list[int]:
            now = now_filetime()
            return times.get(normal_path(path), [now, now, now])

        def get_file_time(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            # GetFileTime(file, creation*, access*, write*): Speakeasy's gave the host's clock.
            path = path_of_handle(argv[0])
            if path is None:
                emu.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            for out, value in zip(argv[1:4], times_of(path), strict=True):
                if out:
                    emu.mem_write(out, value.to_bytes(8, "little"))
            emu.set_last_error(0)
            return 1

        def set_file_time(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            # SetFileTime(file, creation*, access*, write*): kept, so GetFileTime reads them back
            # (Speakeasy's forgot them: a timestomped file read back the current time).
            path = path_of_handle(argv[0])
            if path is None:
                emu.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            current = list(times_of(path))
            for index, pointer in enumerate(argv[1:4]):
                if pointer:
                    current[index] = int.from_bytes(bytes(emu.mem_read(pointer, 8)), "little")
            times[normal_path(path)] = current
            emu.set_last_error(0)
            return 1

        se.add_api_hook(get_file_time, "kernel32", "GetFileTime", argc=4)
        se.add_api_hook(set_file_time, "kernel32", "SetFileTime", argc=4)

        def attributes_ex(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            # GetFileAttributesEx(name, level, WIN32_FILE_ATTRIBUTE_DATA*): Speakeasy's said every
            # folder was missing and stamped files with the host's clock.
            name, level, out = argv[0], argv[1] & 0xFFFFFFFF, argv[2]
            if level != GET_FILE_EX_INFO_STANDARD or not out:
                emu.set_last_error(ERROR_INVALID_PARAMETER)
                return 0
            path = read_path(name, api_name.endswith("W")) if name else ""
            folder = bool(path) and self.is_folder(path)
            size = None if folder or not path else file_size(path)
            if not folder and size is None:
                emu.set_last_error(ERROR_FILE_NOT_FOUND)
                return 0
            size = size or 0
            data = (FILE_ATTRIBUTE_DIRECTORY if folder else FILE_ATTRIBUTE_ARCHIVE).to_bytes(4, "little")
            data += b"".join(stamp.to_bytes(8, "little") for stamp in times_of(path))
            data += (size >> 32 & 0xFFFFFFFF).to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
            emu.mem_write(out, data)
            emu.set_last_error(0)
            return 1

        for name in ("GetFileAttributesExA", "GetFileAttributesExW"):
            se.add_api_hook(attributes_ex, "kernel32", name, argc=3)

        def attributes(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            path = read_path(argv[0], api_name.endswith("W")) if argv and argv[0] else ""
            if path and self.is_folder(path):
                emu.set_last_error(0)
                return FILE_ATTRIBUTE_DIRECTORY
            rv = int(orig(argv) or 0)
            if rv == INVALID_FILE_ATTRIBUTES and path:
                emu.set_last_error(self.not_found_error(path))  # Speakeasy's set none
            return rv

        for name in ("GetFileAttributesA", "GetFileAttributesW"):
            se.add_api_hook(attributes, "kernel32", name, argc=1)

        def create_directory(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            path = read_path(argv[0], api_name.endswith("W")) if argv and argv[0] else ""
            if not path:
                return int(orig(argv) or 0)
            if self.is_folder(path) or emu.fileman.does_file_exist(path):
                emu.set_last_error(ERROR_ALREADY_EXISTS)
                return 0
            if not self.is_folder(ntpath.dirname(path.rstrip("\\"))):
                emu.set_last_error(ERROR_PATH_NOT_FOUND)
                return 0
            self.add(path)
            emu.set_last_error(0)
            return 1

        for name in ("CreateDirectoryA", "CreateDirectoryW"):
            se.add_api_hook(create_directory, "kernel32", name, argc=2)
        for name in ("CreateDirectoryExA", "CreateDirectoryExW"):

            def create_directory_ex(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
                # CreateDirectoryEx(template, new, security): as CreateDirectory of the new one
                return create_directory(emu, api_name, lambda _argv: orig(argv), [argv[1], argv[2]])

            se.add_api_hook(create_directory_ex, "kernel32", name, argc=3)


def not_found_error(emu: Any, path: str) -> int | None:
    """ERROR_PATH_NOT_FOUND or ERROR_FILE_NOT_FOUND for a ``path`` that does not exist, by
    whether its folder does (None: no folders known for ``emu``)."""
    folders = getattr(emu, FOLDERS_ATTR, None)
    return folders.not_found_error(path) if isinstance(folders, GuestDirectories) and path else None
