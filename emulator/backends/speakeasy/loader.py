"""LoadLibrary of a PE the guest wrote: mapped by the project when Speakeasy would refuse it.

Speakeasy loads only the system modules it knows. When ``LoadLibrary*`` fails and the path
names a file in the guest's file system that is a PE (a DLL the sample downloaded or dropped),
the file is mapped like a native module, Speakeasy's own LoadLibrary then finds it and runs its
initialisers, and the memory watch turns its first execution into a ``module`` stage. A library
that still cannot be loaded becomes a note in the report naming it and why.
"""

from __future__ import annotations

from typing import Any

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat, compat_load
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.sources import read_c_string
from emulator.recorder import Recorder

LOAD_LIBRARY_NAMES = ("LoadLibraryA", "LoadLibraryW", "LoadLibraryExA", "LoadLibraryExW")
MAX_LIBRARY_NAME = 520
# Windows' last error for a module that is not there, and for a file that is not a PE image.
ERROR_MOD_NOT_FOUND = 126
ERROR_BAD_EXE_FORMAT = 193


class GuestModuleLoader:
    def __init__(self, se: Any, emu: Any, memory: GuestMemory, recorder: Recorder, watch: MemoryWatch) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.recorder = recorder
        self.watch = watch

    def install(self) -> None:
        compat_load.relink_peb_fast(self.emu)
        compat_load.build_structs_from_prototypes()
        for name in LOAD_LIBRARY_NAMES:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                return self._load_library(_name, orig, list(argv))

            self.se.add_api_hook(hook, "kernel32", name)

    def _load_library(self, name: str, orig: Any, argv: list[int]) -> int:
        rv = int(orig(argv) or 0)
        if rv or not argv or not argv[0]:
            return rv
        path = self._string(argv[0], wide=name.endswith("W"))
        if not path:
            return rv
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
