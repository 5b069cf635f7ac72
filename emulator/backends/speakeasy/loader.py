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

A DLL in the application's folder is taken first even under the name of a DLL the emulator
provides itself (a system DLL that is not a KnownDLL: version.dll, winmm.dll, ...): DLL
side-loading / search-order hijacking. Once mapped, it is the module of that name for every later
import, LoadLibrary and GetModuleHandle, as Windows' loader finds a loaded module by name. Its
exports forwarded to the genuine DLL (to a full path in the system folders, to its own name, or to
a renamed copy of the system DLL staged beside it) resolve to the emulator's module, and its first
execution is a ``module`` stage that carries the note ``dll_search_hijack``.
"""

from __future__ import annotations

import logging
import ntpath
from collections.abc import Callable
from typing import Any

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat, compat_load
from emulator.backends.speakeasy.compat_load import dll_stem, emulator_provides, is_guest_image, module_names
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.sources import read_c_string
from emulator.events import FileAccess
from emulator.recorder import Recorder

LOAD_LIBRARY_NAMES = ("LoadLibraryA", "LoadLibraryW", "LoadLibraryExA", "LoadLibraryExW")
MODULE_HANDLE_NAMES = ("GetModuleHandleA", "GetModuleHandleW", "GetModuleHandleExA", "GetModuleHandleExW")
# GetModuleHandleEx's flag that names the module by an address in it, not by its name.
GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS = 0x4
MAX_LIBRARY_NAME = 520
# Windows' last error for a module that is not there, and for a file that is not a PE image.
ERROR_MOD_NOT_FOUND = 126
ERROR_BAD_EXE_FORMAT = 193
# The system folders searched after the application's folder (Windows' standard search order,
# SafeDllSearchMode: the application's folder, System32, the Windows folder; the current
# folder, usually the application's, and %PATH% are not searched).
SYSTEM_FOLDERS = ("C:\\Windows\\System32", "C:\\Windows")
# Where the emulator's system DLLs live (their loader entries and GetModuleFileName).
SYSTEM_DLL_DIRECTORY = "C:\\Windows\\system32"
# Folders whose DLLs are the system's own (a forwarder or a LoadLibrary naming one by its full path
# means the genuine DLL).
SYSTEM_DLL_FOLDERS = frozenset(f.lower() for f in (*SYSTEM_FOLDERS, "C:\\Windows\\SysWOW64"))
# LoadLibraryEx's flag that searches System32 alone.
LOAD_LIBRARY_SEARCH_SYSTEM32 = 0x800
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
        # Notes (what, detail) made before the recorder exists wait here for ``on_note``.
        self.pending_notes: list[tuple[str, str]] = []
        self.on_note: Callable[[str, str], None] | None = None
        # DLL stem -> the module mapped from outside the system folders under a name the
        # emulator also provides: the module of that name from then on.
        self.planted: dict[str, Any] = {}
        # Guest path (lower-cased) -> the module mapped from it.
        self.mapped: dict[str, Any] = {}
        # Module base -> the note its first execution carries (a system DLL's name taken over).
        self.stage_notes: dict[int, tuple[str, str]] = {}
        self._emulator_load: Callable[..., Any] | None = None
        self._names: frozenset[str] = frozenset()
        self._names_at: tuple[int, int] = (-1, 0)

    def install(self) -> None:
        self._emulator_load = compat_load.modules_from_guest_files(
            self.emu, self.candidates, self.load, self.system_path
        )
        compat_load.imports_bound_through(self.emu, self.override)
        compat_load.forwarders_resolved_by(self.emu, self.forwarder_target)

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

    def system_path(self, name: str) -> str | None:
        """Where a system DLL the emulator provides lives (``C:\\Windows\\system32\\NAME.dll``, as
        its other decoys), for a known DLL loaded by name; None for any other name."""
        if not name or "\\" in name or "/" in name:
            return None
        stem = dll_stem(name)
        return f"{SYSTEM_DLL_DIRECTORY}\\{stem}.dll" if stem in KNOWN_DLLS else None

    def load(self, path: str) -> Any:
        """The module mapped from the guest's file ``path``, or None (no such file, not a PE of
        the guest's architecture, or a PE the emulator cannot map)."""
        if self.system_file(path):
            return None  # the system's own DLL: the emulator's module of that name
        known = self.mapped.get(path.lower())
        if known is not None:
            return known
        data = compat.guest_file_data(self.emu, path)
        if data is None or data[:2] != b"MZ":
            return None
        try:
            headers = pe.check_file(data)
        except pe.PeError:
            return None
        if headers.arch != (self.arch or ("x64" if self.emu.get_ptr_size() == 8 else "x86")):
            return None  # Windows skips a DLL of the other architecture and searches on
        stem = dll_stem(ntpath.basename(path))
        shadows = not self.in_system_folder(path) and emulator_provides(self.emu, stem)
        if shadows:
            # The emulator's own module of that name is loaded first: the genuine DLL the planted
            # one forwards to (a fresh Windows process would load it from System32 then).
            self.genuine(stem)
        try:
            module = compat.map_guest_pe(self.emu, data, path)
        except Exception as err:  # a malformed PE is the emulator's own module, not a crash
            logger.debug("cannot map %s: %s", path, err)
            return None
        self.mapped[path.lower()] = module
        if shadows:
            if not self.planted:
                # From now on a lookup by name finds the planted DLLs first (installed with the
                # first: every other replacement of Speakeasy's lookup is in place by then).
                compat_load.names_found_first(self.emu, lambda name: self.planted.get(dll_stem(name)))
            self.planted[stem] = module
            self.stage_notes[int(module.base)] = (
                "dll_search_hijack",
                f"{path}: loaded for the bare name {stem}.dll, the name of a system DLL the "
                "emulator provides, from outside the system folders",
            )
        mapped = (int(module.base), int(module.image_size), ntpath.basename(path), path, data)
        if self.on_mapped is None:
            self.pending.append(mapped)
        else:
            self.on_mapped(*mapped)
        return module

    def override(self, name: str) -> Any:
        """The module an import or a LoadLibrary of the bare ``name`` (a DLL stem) binds to
        ahead of the emulator's module of that name: a PE of the guest's architecture in the
        application's folder (mapped now), or the one mapped so before. None: the emulator's
        binding (which searches the guest's files for a name it has not loaded)."""
        found = self.planted.get(name)
        if found is not None:
            return found
        paths = self.candidates(name) if self.app_folder else []
        if not paths or ntpath.dirname(paths[0]) != self.app_folder:
            return None  # a KnownDLL or an API set
        if name not in self._emulator_names():
            return None  # no module of the emulator's of that name is loaded: the search applies
        module = self.load(paths[0])
        return module if module is not None and self.planted.get(name) is module else None

    def _emulator_names(self) -> frozenset[str]:
        """The names of the emulator's own modules loaded (worked out again when the list of
        modules changed: its length or its last module)."""
        modules = self.emu.modules
        key = (len(modules), id(modules[-1]) if modules else 0)
        if self._names_at != key:
            self._names = frozenset(n for m in modules if not is_guest_image(m) for n in module_names(m) if n)
            self._names_at = key
        return self._names

    def genuine(self, name: str) -> Any:
        """The emulator's own module of ``name`` (a DLL stem), loaded if need be; never a DLL
        mapped from the guest's files."""
        for module in self.emu.modules:
            if not is_guest_image(module) and name in module_names(module):
                return module
        if self._emulator_load is None or name in self.planted:
            return None
        try:
            module = self._emulator_load(name)
        except Exception as err:  # Speakeasy cannot build it: nothing to bind to
            logger.debug("cannot load the emulator's %s: %s", name, err)
            return None
        return None if module is None or is_guest_image(module) else module

    def in_system_folder(self, path: str) -> bool:
        return ntpath.dirname(ntpath.normpath(path)).lower() in SYSTEM_DLL_FOLDERS

    def system_module(self, path: str) -> Any:
        """For a LoadLibrary of a full path: the emulator's module when ``path`` is a system
        folder's DLL whose name a planted module took over (Speakeasy's lookup by name would
        give the planted one), else None."""
        stem = dll_stem(ntpath.basename(path))
        if stem not in self.planted or not self.in_system_folder(path):
            return None
        return self.genuine(stem)

    def forwarder_target(self, module: Any, forwarder: str) -> tuple[Any, str | int] | None:
        """Where an export of a guest DLL forwarded to ``forwarder`` (``DLL.Name``,
        ``DLL.#ordinal``, ``C:\\path\\DLL.Name``) resolves: a system folder's DLL, a planted
        DLL's own name (Windows would find the planted DLL itself, a loop: proxy DLLs mean the
        genuine) and a renamed copy of a system DLL in the search path are the emulator's module;
        another DLL's own name is that DLL; any other name binds as an import would."""
        dll, _, symbol = forwarder.rpartition(".")
        reference: str | int = int(symbol[1:]) if symbol.startswith("#") and symbol[1:].isdigit() else symbol
        stem = dll_stem(dll)
        if ntpath.dirname(dll):
            path = dll if ntpath.splitext(dll)[1] else f"{dll}.dll"
            target = self.genuine(stem) if self.in_system_folder(path) else self.load(path)
        elif stem in module_names(module):
            # The planted DLL's own name means the genuine; any other DLL's, itself.
            target = self.genuine(stem) if self.planted.get(stem) is module else module
        else:
            copy_of = self.renamed_system_dll(stem)
            target = self.genuine(copy_of) if copy_of else self._bind(stem)
        return None if target is None else (target, reference)

    def renamed_system_dll(self, name: str) -> str | None:
        """The system DLL (stem) whose renamed copy the search finds for ``name``, outside the
        system folders: a PE whose export directory names another DLL the emulator provides (a
        copy keeps the name it was linked as). Noted; None if it is not one."""
        path = self.find(name)
        if path is None or self.in_system_folder(path) or path.lower() in self.mapped:
            return None
        data = compat.guest_file_data(self.emu, path)
        linked = pe.export_name(data) if data and data[:2] == b"MZ" else None
        original = dll_stem(linked) if linked else None
        if not original or original == name or not emulator_provides(self.emu, original):
            return None
        self._note(
            "renamed_system_dll",
            f"{path}: a renamed copy of {linked} (its export directory's name); bound to the "
            f"emulator's {original}.dll, whose code stands in for it",
        )
        return original

    def _bind(self, name: str) -> Any:
        planted = self.override(name)
        if planted is not None:
            return planted
        found = self.emu.get_mod_by_name(name)
        if found is not None:
            return found
        try:
            return self.emu.load_module_by_name(name)
        except Exception as err:
            logger.debug("cannot load %s for a forwarder: %s", name, err)
            return None

    def _note(self, what: str, detail: str) -> None:
        if self.on_note is None:
            self.pending_notes.append((what, detail))
        else:
            self.on_note(what, detail)

    def find(self, name: str) -> str | None:
        """The first guest path of ``name``'s candidates that holds a file."""
        for path in self.candidates(name):
            if not self.system_file(path) and compat.guest_file_data(self.emu, path) is not None:
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
            for what, detail in self.search.pending_notes:
                self.recorder.note(what, detail)
            self.search.pending_notes.clear()
            self.search.on_note = self.recorder.note
        compat_load.relink_peb_fast(self.emu)
        compat_load.build_structs_from_prototypes()
        for name in LOAD_LIBRARY_NAMES:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                return self._load_library(_name, orig, list(argv))

            self.se.add_api_hook(hook, "kernel32", name)
        if self.search is not None:
            for name in MODULE_HANDLE_NAMES:

                def handle_hook(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                    return self._module_handle(_name, orig, list(argv))

                self.se.add_api_hook(handle_hook, "kernel32", name)

    def _searched_module(self, base: int, size: int, name: str, path: str, data: bytes) -> None:
        # The loader reads the DLL's file (a read the lineage ties the module's image to), and
        # the module's first execution is a stage.
        digest = self.recorder.put_blob(data)
        self.recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest)
        self.recorder.remember_buffer("file_read", base, data, ref=path)
        note = self.search.stage_notes.get(base) if self.search is not None else None
        self.watch.arm_module(base, size, name, note=note)

    def _load_library(self, name: str, orig: Any, argv: list[int]) -> int:
        if self.search is not None and argv and argv[0]:
            path = self._string(argv[0], wide=name.endswith("W"))
            flags = argv[2] if name.startswith("LoadLibraryEx") and len(argv) > 2 else 0
            if path and "\\" not in path and "/" not in path:
                if not flags & LOAD_LIBRARY_SEARCH_SYSTEM32:
                    self.search.override(dll_stem(path))  # a DLL beside the program comes first
            elif path:
                system = self.search.system_module(path)
                if system is not None:
                    return int(system.base)
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

    def _module_handle(self, name: str, orig: Any, argv: list[int]) -> int:
        rv = self._module_handle_of(name, orig, argv)
        if not rv:
            self.memory.set_last_error(ERROR_MOD_NOT_FOUND)  # Speakeasy's set none
        return rv

    def _module_handle_of(self, name: str, orig: Any, argv: list[int]) -> int:
        # Speakeasy walks the loader list by file name, where the emulator's module of a name a
        # planted DLL took over comes first.
        if self.search is None or not self.search.planted:
            return int(orig(argv) or 0)  # no DLL took a name over: Speakeasy's answer is right
        ex = name.startswith("GetModuleHandleEx")
        if ex:
            named = argv[1] if len(argv) > 2 and not argv[0] & GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS else 0
        else:
            named = argv[0] if argv else 0
        module = self._named_module(self._string(named, wide=name.endswith("W"))) if named else None
        if module is None:
            return int(orig(argv) or 0)
        if not ex:
            return int(module.base)
        if argv[2]:
            self.memory.write(argv[2], int(module.base).to_bytes(self.memory.ptr_size, "little"))
        return 1

    def _named_module(self, path: str) -> Any:
        """The module a planted DLL's name (or the system path of the DLL it took over) names,
        when it is not the one Speakeasy's walk of the loader list would find; else None."""
        if self.search is None or not path:
            return None
        if "\\" not in path and "/" not in path:
            return self.search.planted.get(dll_stem(path))
        return self.search.system_module(path)

    def _not_loaded(self, api: str, path: str, why: str) -> None:
        self.recorder.note("library_not_loaded", f"{api}({path!r}): {why}")

    def _string(self, address: int, wide: bool) -> str:
        raw = read_c_string(self.memory, address, wide, MAX_LIBRARY_NAME * (2 if wide else 1))
        return raw.decode("utf-16-le" if wide else "latin-1", "replace")
