"""The system DLLs' files on the guest's disk.

On Windows ``C:\\Windows\\System32\\ntdll.dll`` always exists. In the guest it did not (only the
scenario's files do), so ``GetFileAttributes`` of a system DLL said INVALID_FILE_ATTRIBUTES and
``CreateFile`` ERROR_FILE_NOT_FOUND: a tell any sample can test in one call, and loaders that
read a clean copy of ntdll from disk to undo hooks (copying its ``.text`` over the loaded one)
stopped there. Here a DLL the emulator provides (one ``LoadLibrary`` can load) exists in the
system folders as a PE file: the module's image as loaded (Speakeasy's modules keep raw
offsets equal to RVAs, so the image is also its file), read when the guest first opens it, so a
copy over the loaded module changes nothing; a module not loaded yet is built for the file
alone, not loaded. ``System32`` holds the guest's architecture (a 32-bit process sees
``SysWOW64`` there), ``SysWOW64`` 32-bit images. These files are the system's: the DLL search
order never takes them for a guest module.
"""

from __future__ import annotations

import ntpath
from typing import Any

import speakeasy.winenv.arch as se_arch
from speakeasy.windows.api_image import ApiModuleLoader
from speakeasy.windows.api_registry import module_name

from emulator.backends.speakeasy import compat_load

# Folder (lower case) -> whose architecture its DLLs are: the guest's, or x86.
SYSTEM_FOLDERS = {
    "c:\\windows\\system32": None,
    "c:\\windows\\sysnative": None,
    "c:\\windows\\syswow64": se_arch.ARCH_X86,
}
# Where a module built for its file alone is based (any address: it is never mapped).
FILE_ONLY_BASE = 0x6F000000
# Name extensions of the system's modules that get a file.
MODULE_EXTENSIONS = (".dll", ".drv", ".cpl", ".ocx")
PATH_PREFIXES = ("\\\\?\\", "\\??\\")


class SystemFiles:
    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.paths: set[str] = set()  # lower-cased paths of the files made so far
        self._modules: dict[str, tuple[str, int] | None] = {}  # lower-cased path -> _module_of

    def install(self) -> None:
        fileman = self.emu.fileman
        original = fileman.get_file_from_path

        def get_file_from_path(path: str) -> Any:
            found = original(path)
            if found is not None or not isinstance(path, str):
                return found
            return self._system_file(fileman, path)

        fileman.get_file_from_path = get_file_from_path

    def is_system_file(self, path: str) -> bool:
        """Whether ``path`` is (or would be) one of these files: not a DLL of the guest's own."""
        return self._module_of(normal_path(path)) is not None

    def _module_of(self, path: str) -> tuple[str, int] | None:
        """(module name, architecture) of a system DLL the emulator provides at ``path``."""
        if path not in self._modules:
            self._modules[path] = self._find_module(path)
        return self._modules[path]

    def _find_module(self, path: str) -> tuple[str, int] | None:
        folder, name = ntpath.split(path)
        if folder not in SYSTEM_FOLDERS or not name.endswith(MODULE_EXTENSIONS):
            return None
        arch = SYSTEM_FOLDERS[folder] or self.emu.get_arch()
        module = module_name(name)
        if not compat_load.emulator_provides(self.emu, module, _arch_name(arch)):
            return None  # a name Speakeasy would not load: no system DLL
        return module, arch

    def _system_file(self, fileman: Any, path: str) -> Any:
        normal = normal_path(path)
        found = self._module_of(normal)
        if found is None:
            return None
        data = self._image(*found, normal)
        if not data:
            return None
        self.paths.add(normal)
        return fileman.add_existing_file(path, data)

    def _image(self, module: str, arch: int, path: str) -> bytes:
        loaded = self.emu.get_mod_by_name(module) if arch == self.emu.get_arch() else None
        if loaded is not None:
            try:
                return bytes(self.emu.mem_read(int(loaded.base), int(loaded.image_size)))
            except Exception:  # noqa: BLE001 - an image that cannot be read has no file
                return b""
        try:
            image = ApiModuleLoader(
                name=module,
                arch=arch,
                base=FILE_ONLY_BASE,
                emu_path=path,
                signature_db=self.emu.get_signature_db(),
                api=self.emu.api.load_api_handler(module),
            ).make_image()
        except Exception:  # noqa: BLE001 - a module Speakeasy cannot build has no file
            return b""
        out = bytearray(image.image_size)
        for region in image.regions:
            offset = region.base - image.image_base
            if 0 <= offset < len(out):
                chunk = region.data[: len(out) - offset]
                out[offset : offset + len(chunk)] = chunk
        return bytes(out)


def _arch_name(arch: int) -> str:
    return "x86" if arch == se_arch.ARCH_X86 else "x64"


def normal_path(path: str) -> str:
    """A guest path as a key: without ``\\\\?\\`` / ``\\??\\``, with backslashes, normalised, lower-cased,
    no trailing backslash (``c:`` for a drive's root)."""
    for prefix in PATH_PREFIXES:
        if path.startswith(prefix):
            path = path[len(prefix) :]
    path = path.replace("/", "\\")
    return ntpath.normpath(path).rstrip("\\").lower() if len(path) > 3 else path[:2].lower()
