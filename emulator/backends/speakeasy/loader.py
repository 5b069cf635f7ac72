"""DLLs in the guest's file system: loaded as Windows' loader would, for imports and LoadLibrary.

Speakeasy loads only the system modules it knows. When ``LoadLibrary*`` fails and the path
names a file in the guest's file system that is a PE (a DLL the sample downloaded or dropped),
the file is mapped like a native module, Speakeasy's own LoadLibrary then finds it and runs its
initialisers, and the memory watch turns its first execution into a ``module`` stage. A library
that still cannot be loaded becomes a note in the report naming it and why.

A DLL named without a folder (an import, ``LoadLibrary("x.dll")``) is searched for as Windows'
standard search order does (:class:`DllSearch`): the application's folder, then the system
folders, unless it is one of Windows' KnownDLLs (always the system's). The first guest file
there that is a PE of the guest's architecture is the module (a scenario maps one with
``[files]`` / ``--file``, or the sample wrote it); else the emulator's own (a system DLL's
decoy, or for a name it does not know, a module with no code, whose first call ends the replay
as ``unsupported_api``). Such a DLL's DllMain runs before the program's entry point, as its
dependants' would on Windows.
"""

from __future__ import annotations

import logging
import ntpath
from collections.abc import Callable
from typing import Any

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat, compat_load
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.sources import read_c_string
from emulator.events import FileAccess
from emulator.recorder import Recorder

LOAD_LIBRARY_NAMES = ("LoadLibraryA", "LoadLibraryW", "LoadLibraryExA", "LoadLibraryExW")
MAX_LIBRARY_NAME = 520
# Windows' last error for a module that is not there, and for a file that is not a PE image.
ERROR_MOD_NOT_FOUND = 126
ERROR_BAD_EXE_FORMAT = 193
# The system folders searched after the application's folder (Windows' standard search order,
# SafeDllSearchMode: the application's folder, System32, the Windows folder; the current
# folder, usually the application's, and %PATH% are not searched).
SYSTEM_FOLDERS = ("C:\\Windows\\System32", "C:\\Windows")
# HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\KnownDLLs of Windows 10, plus the DLLs
# the loader maps itself (ntdll, kernelbase) and API sets: never loaded from the
# application's folder.
KNOWN_DLLS = frozenset(
    [
        "advapi32",
        "clbcatq",
        "combase",
        "comdlg32",
        "coml2",
        "difxapi",
        "gdi32",
        "gdiplus",
        "imagehlp",
        "imm32",
        "kernel32",
        "kernelbase",
        "msctf",
        "msvcrt",
        "normaliz",
        "nsi",
        "ntdll",
        "ole32",
        "oleaut32",
        "psapi",
        "rpcrt4",
        "sechost",
        "setupapi",
        "shcore",
        "shell32",
        "shlwapi",
        "user32",
        "wldap32",
        "wow64",
        "wow64cpu",
        "wow64win",
        "ws2_32",
    ]
)
API_SET_PREFIXES = ("api-ms-", "ext-ms-")

logger = logging.getLogger(__name__)


class DllSearch:
    """Windows' search for a DLL named without a folder, over the guest's file system.

    Installed on the emulator before the target is loaded (its imports are bound then); the
    modules it maps before the memory watch exists wait in ``pending`` for ``on_mapped``."""

    def __init__(self, emu: Any, app_path: str, arch: str | None = None) -> None:
        self.emu = emu
        self.app_folder = ntpath.dirname(app_path)
        self.arch = arch
        # (base, size, file name, guest path, file bytes) of each module mapped.
        self.pending: list[tuple[int, int, str, str, bytes]] = []
        self.on_mapped: Callable[[int, int, str, str, bytes], None] | None = None
        # Whether a path is one of the system's own DLL files (sysfiles.py): never a guest module.
        self.system_file: Callable[[str], bool] = lambda path: False

    def install(self) -> None:
        compat_load.modules_from_guest_files(self.emu, self.candidates, self.load)

    def candidates(self, name: str) -> list[str]:
        """The guest paths to try for ``name`` (no folder), in Windows' order."""
        if not name or "\\" in name or "/" in name:
            return []
        file_name = name if "." in name else f"{name}.dll"
        stem = file_name.lower().rsplit(".", 1)[0]
        if stem in KNOWN_DLLS or stem.startswith(API_SET_PREFIXES):
            return []
        folders = (self.app_folder, *SYSTEM_FOLDERS) if self.app_folder else SYSTEM_FOLDERS
        return [ntpath.join(folder, file_name) for folder in folders]

    def load(self, path: str) -> Any:
        """The module mapped from the guest's file ``path``, or None (no such file, not a PE of
        the guest's architecture, or a PE the emulator cannot map)."""
        if self.system_file(path):
            return None  # the system's own DLL: the emulator's module of that name
        data = compat.guest_file_data(self.emu, path)
        if data is None or data[:2] != b"MZ":
            return None
        try:
            headers = pe.check_file(data)
        except pe.PeError:
            return None
        if headers.arch != (self.arch or ("x64" if self.emu.get_ptr_size() == 8 else "x86")):
            return None  # Windows skips a DLL of the other architecture and searches on
        try:
            module = compat.map_guest_pe(self.emu, data, path)
        except Exception as err:  # a malformed PE is the emulator's own module, not a crash
            logger.debug("cannot map %s: %s", path, err)
            return None
        mapped = (int(module.base), int(module.image_size), ntpath.basename(path), path, data)
        if self.on_mapped is None:
            self.pending.append(mapped)
        else:
            self.on_mapped(*mapped)
        return module

    def find(self, name: str) -> str | None:
        """The first guest path of ``name``'s candidates that holds a file."""
        for path in self.candidates(name):
            if compat.guest_file_data(self.emu, path) is not None:
                return path
        return None


class GuestModuleLoader:
    def __init__(
        self,
        se: Any,
        emu: Any,
        memory: GuestMemory,
        recorder: Recorder,
        watch: MemoryWatch,
        search: DllSearch | None = None,
    ) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.recorder = recorder
        self.watch = watch
        self.search = search

    def install(self) -> None:
        if self.search is not None:
            # DLLs mapped while the target's imports were bound, then those mapped later.
            for mapped in self.search.pending:
                self._searched_module(*mapped)
            self.search.pending.clear()
            self.search.on_mapped = self._searched_module
        compat_load.relink_peb_fast(self.emu)
        compat_load.build_structs_from_prototypes()
        for name in LOAD_LIBRARY_NAMES:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                return self._load_library(_name, orig, list(argv))

            self.se.add_api_hook(hook, "kernel32", name)

    def _searched_module(self, base: int, size: int, name: str, path: str, data: bytes) -> None:
        # The loader reads the DLL's file (a read the lineage ties the module's image to), and
        # the module's first execution is a stage.
        digest = self.recorder.put_blob(data)
        self.recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest)
        self.recorder.remember_buffer("file_read", base, data, ref=path)
        self.watch.arm_module(base, size, name)

    def _load_library(self, name: str, orig: Any, argv: list[int]) -> int:
        rv = int(orig(argv) or 0)
        if rv or not argv or not argv[0]:
            return rv
        path = self._string(argv[0], wide=name.endswith("W"))
        if not path:
            return rv
        if self.search is not None:
            found = self.search.find(path)
            if found is not None:
                # A bare name: Speakeasy knew no such module; the search found the guest's file.
                if self.search.load(found) is not None:
                    rv = int(orig(argv) or 0)
                    if rv:
                        return rv
                path = found
        data = compat.guest_file_data(self.emu, path)
        if data is None:
            self._not_loaded(name, path, "no such file in the guest and not a module the emulator provides")
            self.memory.set_last_error(ERROR_MOD_NOT_FOUND)
            return 0
        if data[:2] != b"MZ":
            self._not_loaded(name, path, f"the file ({len(data)} bytes) is not a PE image")
            self.memory.set_last_error(ERROR_BAD_EXE_FORMAT)
            return 0
        try:
            module = compat.map_guest_pe(self.emu, data, path)
        except Exception as err:  # a malformed PE from the guest is a note, not a crash
            self._not_loaded(name, path, f"the PE cannot be mapped: {type(err).__name__}: {err}")
            return 0
        self.watch.arm_module(int(module.base), int(module.image_size), str(module.name) + ".dll")
        rv = int(orig(argv) or 0)
        if not rv:
            self._not_loaded(name, path, "mapped, but the emulator's loader refused it")
        return rv

    def _not_loaded(self, api: str, path: str, why: str) -> None:
        self.recorder.note("library_not_loaded", f"{api}({path!r}): {why}")

    def _string(self, address: int, wide: bool) -> str:
        raw = read_c_string(self.memory, address, wide, MAX_LIBRARY_NAME * (2 if wide else 1))
        return raw.decode("utf-16-le" if wide else "latin-1", "replace")
