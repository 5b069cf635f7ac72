"""The C runtime's file I/O over Speakeasy's files: the low-level descriptors (``_open``,
``_read``, ``_lseek``, ...) and the stream functions Speakeasy lacks (``fwrite``, ``fputs``,
``fgets``, ``fgetc``, ``fflush``, ``_fileno``, ``vfprintf``, ...).

Speakeasy emulates msvcrt's stream functions (``fopen``, ``fread``) but not the file
descriptors under them, and msvcrt functions have no signatures: a program calling ``_open``
(Python's launchers read the script appended to themselves that way) ended the replay as
``unsupported_api``. Here a descriptor names one of Speakeasy's file objects, opened, read,
written and positioned as ``CreateFile`` / ``ReadFile`` / ``WriteFile`` / ``SetFilePointer``
do, and recorded as they are (file events, read buffers for lineage, dropped files).
A failure returns -1 with ``errno`` set as msvcrt sets it (``ENOENT`` for a path naming nothing,
``EEXIST`` for one that exists, ``EACCES`` for a folder where a file is wanted, ``ENOTEMPTY``,
``EBADF``): libstdc++'s ``std::filesystem`` reads it to tell "not found" from an error. ``errno``
starts at 0 (Speakeasy's ``_errno`` started it at ``ENOMEM``).

The file system functions (``_access``, the ``_stat`` family, ``_mkdir``, ``_rmdir``,
``remove`` / ``_unlink``, ``rename``, ``_getcwd``, ``_chdir``) work on the same files and on the
guest's folders (emulator/backends/speakeasy/guestdirs.py), recorded as the kernel32 calls msvcrt
makes are: ``rename`` as ``MoveFile`` (the new file created and written), the others record no
file event (neither does ``GetFileAttributesEx``, ``CreateDirectory`` nor ``DeleteFile``).

Speakeasy's ``fopen`` makes a stream (``FILE *``) of a file handle, and its ``fread``, ``fseek``,
``ftell`` and ``fclose`` use it, but ``fwrite`` (a dropper's way to write its stage) was an
unsupported API that ended the replay, and ``fputc`` / ``fprintf`` wrote nothing to a file. Here a
stream of ``fopen`` is written and read like the file behind it (recorded as ``WriteFile`` and
``ReadFile`` are: dropped files, read buffers for lineage); a standard stream (``stdout`` /
``stderr``: msvcrt's ``_iob`` entries, ``__iob_func``'s, ``__acrt_iob_func``'s) takes what is
written and records nothing, as a console does; stdin is at its end.
"""

from __future__ import annotations

import functools
import io
import ntpath
import struct
from collections.abc import Callable
from typing import Any

from speakeasy.profiler_events import FILE_CREATE, FILE_OPEN, FILE_READ, FILE_WRITE
from speakeasy.winenv.arch import CALL_CONV_CDECL, X86_REG_EDX

from emulator.apis.core import GuestMemory
from emulator.apis.crt import FILE_LAYOUT
from emulator.backends.speakeasy import compat
from emulator.backends.speakeasy.printf import formatted
from emulator.backends.speakeasy.sources import read_c_string
from emulator.backends.speakeasy.sysfiles import normal_path

# <fcntl.h> flags of _open, and the translation modes of _setmode.
O_WRONLY, O_RDWR, O_APPEND, O_CREAT, O_TRUNC, O_EXCL = 0x1, 0x2, 0x8, 0x100, 0x200, 0x400
O_TEXT, O_BINARY, O_WTEXT, O_U16TEXT, O_U8TEXT = 0x4000, 0x8000, 0x10000, 0x20000, 0x40000
TRANSLATION_MODES = frozenset((O_TEXT, O_BINARY, O_WTEXT, O_U16TEXT, O_U8TEXT))
# What _isatty returns for a console stream (msvcrt's FDEV flag).
FDEV = 0x40
# The first descriptor handed out (0, 1 and 2 are the standard streams).
FIRST_FD = 3
# Bytes one _read / _write moves at most (the C runtime's own limit is INT_MAX).
MAX_TRANSFER = 64 * 1024 * 1024
MAX_PATH_CHARS = 32767
SEEK_WHENCE = {0: io.SEEK_SET, 1: io.SEEK_CUR, 2: io.SEEK_END}
# st_mode of a console stream (descriptors 0-2) and of a read-write file; st_dev of drive C:.
S_IFCHR, S_IFREG, S_IRW = 0x2000, 0x8000, 0x1B6
DRIVE_C = 2
EOF = -1
# The longest line fgets reads and the longest string fputs writes (in characters).
MAX_STREAM_TEXT = 1024 * 1024
# msvcrt's struct _stat layouts, by function: (struct format, whether st_size is 64 bits).
# Fields: st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid, st_rdev, st_size, st_atime,
# st_mtime, st_ctime.
STAT32 = ("<IHHhhh2xIiiii", False)  # struct _stat32: 36 bytes
STAT32I64 = ("<IHHhhh2xI4xqiii4x", True)  # struct _stat32i64: 48 bytes
STAT64I32 = ("<IHHhhh2xIiqqq", False)  # struct _stat64i32: 48 bytes
STAT64 = ("<IHHhhh2xI4xqqqq", True)  # struct _stat64: 56 bytes
STAT_LAYOUTS = {
    "_fstat": STAT32,
    "_fstat32": STAT32,
    "_fstati64": STAT32I64,
    "_fstat32i64": STAT32I64,
    "_fstat64i32": STAT64I32,
    "_fstat64": STAT64,
}
# x64 msvcrt's time_t is 64 bits: its unsuffixed _stat / _fstat fill struct _stat64i32 and its
# _stati64 / _fstati64 struct _stat64.
X64_STAT_LAYOUTS = {"_fstat": STAT64I32, "_fstati64": STAT64}
PATH_STAT_NAMES = {name.replace("_fstat", "_stat"): layout for name, layout in STAT_LAYOUTS.items()}
# st_mode of a folder (read, write and search for everyone) and the execute bits msvcrt adds
# for a program's extension; the access modes _access checks (existence, write, read).
S_IFDIR, S_IEXEC_ALL = 0x4000, 0x49
EXECUTABLE_EXTENSIONS = (".exe", ".com", ".bat", ".cmd")
ACCESS_MODES = frozenset((0, 2, 4, 6))
ENOENT, EBADF, EACCES, EEXIST, EINVAL, ERANGE, ENOTEMPTY = 2, 9, 13, 17, 22, 34, 41
ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, ERROR_NO_MORE_FILES, ERROR_ALREADY_EXISTS = 2, 3, 18, 183
MOVEFILE_REPLACE_EXISTING, MOVEFILE_DELAY_UNTIL_REBOOT = 0x1, 0x4
FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_ARCHIVE = 0x10, 0x20
MAX_FIND_NAME = 260
FIRST_FIND_HANDLE = 0x3F00  # _findfirst's handles (msvcrt's are heap addresses: any non -1 value)
# The _findfirst family -> (bytes of each time, bytes of the size) of its _finddata_t. The plain
# names are msvcrt's 32-bit-time ones (what mingw-w64's x86 _findfirst binds to).
FIND_LAYOUTS = {
    "_findfirst": (4, 4),
    "_findfirst32": (4, 4),
    "_findfirsti64": (4, 8),
    "_findfirst32i64": (4, 8),
    "_findfirst64": (8, 8),
    "_findfirst64i32": (8, 4),
}
X64_FIND_LAYOUTS = {"_findfirst": (8, 4), "_findfirsti64": (8, 8)}  # x64 msvcrt's time_t is 64 bits


class CrtFiles:
    """Descriptor -> (Speakeasy file handle, guest path, append mode), per replay."""

    def __init__(
        self, se: Any, emu: Any, memory: GuestMemory, now_unix: Callable[[], float], folders: Any = None
    ) -> None:
        self.se = se
        self.folders = folders  # GuestDirectories: the guest's folders
        self.now_unix = now_unix
        self.emu = emu
        self.memory = memory
        self.x64 = memory.ptr_size == 8
        self.files: dict[int, tuple[int, str, bool]] = {}
        # Translation mode per descriptor (text unless opened or set otherwise).
        self.modes: dict[int, int] = {}
        self.next_fd = FIRST_FD
        self.finds: dict[int, list[tuple[str, bool, str]]] = {}  # _findfirst handle -> matches left
        self.next_find = FIRST_FIND_HANDLE
        self.iob: int | None = None  # msvcrt's _iob export (0: none), looked up once
        # The character ungetc pushed back on a stream the next read gives first.
        self.pushed: dict[int, int] = {}

    def install(self) -> None:
        offset_slots = 1 if self.x64 else 2  # an __int64 argument takes two stack slots on x86
        hooks: list[tuple[str, int, Callable[[list[int]], int]]] = [
            ("_open", 3, lambda argv: self._open(argv, wide=False)),
            ("_wopen", 3, lambda argv: self._open(argv, wide=True)),
            ("_read", 3, self._read),
            ("_write", 3, self._write),
            ("_close", 1, self._close),
            ("_lseek", 3, lambda argv: self._seek(argv[0], _signed(argv[1], 32), argv[2])),
            ("_lseeki64", 2 + offset_slots, self._seek64),
            ("_tell", 1, lambda argv: self._seek(argv[0], 0, 1)),
            ("_telli64", 1, lambda argv: self._wide_result(self._seek(argv[0], 0, 1))),
            ("_filelength", 1, self._length),
            ("_eof", 1, self._eof),
            ("_setmode", 2, self._setmode),
            ("_isatty", 1, lambda argv: FDEV if argv[0] & 0xFFFFFFFF <= 2 else 0),
        ]
        for name, layout in STAT_LAYOUTS.items():
            layout = X64_STAT_LAYOUTS.get(name, layout) if self.x64 else layout
            hooks.append((name, 2, functools.partial(self._fstat, layout=layout)))
        if self.folders is not None:
            for name, layout in PATH_STAT_NAMES.items():
                layout = X64_STAT_LAYOUTS.get(name.replace("_stat", "_fstat"), layout) if self.x64 else layout
                for wide in (False, True):
                    called = name.replace("_stat", "_wstat") if wide else name
                    hooks.append((called, 2, functools.partial(self._stat, layout=layout, wide=wide)))
            for wide, suffix in ((False, ""), (True, "w")):
                hooks += [
                    (f"_{suffix}access", 2, functools.partial(self._access, wide=wide, errno=False)),
                    (f"_{suffix}access_s", 2, functools.partial(self._access, wide=wide, errno=True)),
                    (f"_{suffix}mkdir", 1, functools.partial(self._mkdir, wide=wide)),
                    (f"_{suffix}rmdir", 1, functools.partial(self._rmdir, wide=wide)),
                    ("_wremove" if wide else "remove", 1, functools.partial(self._remove, wide=wide)),
                    (f"_{suffix}unlink", 1, functools.partial(self._remove, wide=wide)),
                    ("_wrename" if wide else "rename", 2, functools.partial(self._rename, wide=wide)),
                    (f"_{suffix}getcwd", 2, functools.partial(self._getcwd, wide=wide)),
                    (f"_{suffix}chdir", 1, functools.partial(self._chdir, wide=wide)),
                    (f"_{suffix}fullpath", 3, functools.partial(self._fullpath, wide=wide)),
                ]
                for name, find_layout in FIND_LAYOUTS.items():
                    find_layout = X64_FIND_LAYOUTS.get(name, find_layout) if self.x64 else find_layout
                    called = name.replace("_find", "_wfind") if wide else name
                    first = functools.partial(self._findfirst, layout=find_layout, wide=wide)
                    hooks.append((called, 2, first))
                    following = functools.partial(self._findnext, layout=find_layout, wide=wide)
                    hooks.append((called.replace("first", "next"), 2, following))
            hooks.append(("_findclose", 1, self._findclose))
        hooks += [
            ("fwrite", 4, self._fwrite),
            ("_fwrite_nolock", 4, self._fwrite),
            ("fputs", 2, lambda argv: self._fputs(argv, wide=False)),
            ("fputws", 2, lambda argv: self._fputs(argv, wide=True)),
            ("puts", 1, lambda argv: 0),
            ("_putws", 1, lambda argv: 0),
            ("putchar", 1, lambda argv: argv[0] & 0xFF),
            ("_fputchar", 1, lambda argv: argv[0] & 0xFF),
            ("fputc", 2, self._fputc),
            ("putc", 2, self._fputc),
            ("_fputc_nolock", 2, self._fputc),
            ("fgetc", 1, self._fgetc),
            ("getc", 1, self._fgetc),
            ("_fgetc_nolock", 1, self._fgetc),
            ("fgets", 3, lambda argv: self._fgets(argv, wide=False)),
            ("fgetws", 3, lambda argv: self._fgets(argv, wide=True)),
            ("feof", 1, self._feof),
            ("ungetc", 2, self._ungetc),
            ("_ungetc_nolock", 2, self._ungetc),
            ("ferror", 1, lambda argv: 0),
            ("clearerr", 1, lambda argv: 0),
            ("fflush", 1, lambda argv: 0),
            ("_flushall", 0, lambda argv: 0),
            ("setvbuf", 4, lambda argv: 0),
            ("rewind", 1, self._rewind),
            ("_fileno", 1, self._fileno),
            ("vfprintf", 3, lambda argv: self._vfprintf(argv, wide=False)),
            ("vfwprintf", 3, lambda argv: self._vfprintf(argv, wide=True)),
        ]
        for name, argc, func in hooks:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _func: Any = func) -> int:
                return int(_func(list(argv))) & (0xFFFFFFFFFFFFFFFF if self.x64 else 0xFFFFFFFF)

            self.se.add_api_hook(hook, "msvcrt", name, argc=argc, call_conv=CALL_CONV_CDECL)
        self.se.add_api_hook(self._errno, "msvcrt", "_errno", argc=0, call_conv=CALL_CONV_CDECL)
        if self.folders is not None:
            for name in ("MoveFileExA", "MoveFileExW"):
                self.se.add_api_hook(self._move_file_ex, "kernel32", name, argc=3)
        for name, wide in (("fprintf", False), ("fwprintf", True)):

            def printed(emu: Any, api_name: str, orig: Any, argv: list[int], _wide: bool = wide) -> int:
                # Speakeasy's handler formats and records the text; a file stream is written too.
                rv = orig(argv)
                stream, fmt = emu.get_func_argv(CALL_CONV_CDECL, 2)
                if self._stream_file(stream) is not None:
                    self._stream_write(stream, self._encoded(formatted(emu, fmt, _wide, None, 2), _wide))
                return int(rv or 0)

            self.se.add_api_hook(printed, "msvcrt", name, argc=2, call_conv=CALL_CONV_CDECL)

    # -- helpers -------------------------------------------------------------------------------

    def _crt(self) -> Any:
        return self.emu.api.mods["msvcrt"]

    def _errno(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """int *_errno(void): Speakeasy's cell, which starts at 0 here (it started at ENOMEM)."""
        fresh = not getattr(self._crt(), "errno_t", 0)
        address = int(orig(argv))
        if fresh and address:
            self.emu.mem_write(address, bytes(4))
        return address

    def _fail(self, errno: int) -> int:
        """errno = ``errno`` (the cell ``_errno()`` returns); -1, what the failing call returns."""
        crt = self._crt()
        address = int(self._errno(self.emu, "_errno", lambda argv: crt._errno(self.emu, argv), []))
        if address:
            self.emu.mem_write(address, errno.to_bytes(4, "little"))
        return -1

    def _file(self, fd: int) -> tuple[Any, str, bool] | None:
        entry = self.files.get(fd & 0xFFFFFFFF)
        if entry is None:
            return None
        fobj = self.emu.file_get(entry[0])
        return (fobj, entry[1], entry[2]) if fobj is not None else None

    def _wide_result(self, value: int) -> int:
        # A 64-bit result on x86 comes back in EDX:EAX.
        if not self.x64:
            self.emu.reg_write(X86_REG_EDX, (value >> 32) & 0xFFFFFFFF)
            return value & 0xFFFFFFFF
        return value

    # -- the functions ------------------------------------------------------------------------

    def _open(self, argv: list[int], wide: bool) -> int:
        """int _open(const char *path, int oflag, int pmode)"""
        path_ptr, oflag = argv[0], argv[1] & 0xFFFFFFFF
        raw = read_c_string(self.memory, path_ptr, wide, MAX_PATH_CHARS * (2 if wide else 1)) if path_ptr else b""
        # "\\?\\C:\\..." (GetFinalPathNameByHandle's form) is the path "C:\\...".
        path = raw.decode("utf-16-le" if wide else "latin-1", "replace").removeprefix("\\\\?\\")
        if not path:
            return self._fail(ENOENT)
        crt = self._crt()
        exists = bool(self.emu.does_file_exist(path))
        if exists and oflag & O_CREAT and oflag & O_EXCL:
            return self._fail(EEXIST)
        if not exists and not oflag & O_CREAT:
            return self._fail(ENOENT)
        handle = crt.file_open(path, create=bool(oflag & O_CREAT), truncate=bool(oflag & O_TRUNC))
        if handle is None:
            return self._fail(ENOENT)
        crt.record_file_access_event(path, FILE_OPEN if exists else FILE_CREATE)
        fd = self.next_fd
        self.next_fd += 1
        self.files[fd] = (int(handle), path, bool(oflag & O_APPEND))
        self.modes[fd] = O_BINARY if oflag & O_BINARY else O_TEXT
        return fd

    def _read(self, argv: list[int]) -> int:
        """int _read(int fd, void *buffer, unsigned int count)"""
        entry = self._file(argv[0])
        buffer, count = argv[1], min(argv[2] & 0xFFFFFFFF, MAX_TRANSFER)
        if entry is None or not buffer:
            return -1
        fobj, path, _append = entry
        data = fobj.get_data(size=count) or b""
        if data:
            try:
                self.memory.write(buffer, data)
            except Exception:
                return -1
            self._crt().record_file_access_event(path, FILE_READ, buffer=buffer, size=len(data))
        return len(data)

    def _write(self, argv: list[int]) -> int:
        """int _write(int fd, const void *buffer, unsigned int count)"""
        entry = self._file(argv[0])
        buffer, count = argv[1], min(argv[2] & 0xFFFFFFFF, MAX_TRANSFER)
        if entry is None or (count and not buffer):
            return -1
        fobj, path, _append = entry
        try:
            data = self.memory.read(buffer, count) if count else b""
        except Exception:
            return -1
        if data:
            fobj.add_data(data)  # as Speakeasy's WriteFile: appended to the file
            self._crt().record_file_access_event(path, FILE_WRITE, data=data, buffer=buffer, size=len(data))
        return len(data)

    def _close(self, argv: list[int]) -> int:
        self.modes.pop(argv[0] & 0xFFFFFFFF, None)
        return 0 if self.files.pop(argv[0] & 0xFFFFFFFF, None) is not None else -1

    def _setmode(self, argv: list[int]) -> int:
        """int _setmode(int fd, int mode): the previous translation mode; -1 for a descriptor
        that is not open or a mode that is not one."""
        fd, mode = argv[0] & 0xFFFFFFFF, argv[1] & 0xFFFFFFFF
        if (fd > 2 and fd not in self.files) or mode not in TRANSLATION_MODES:
            return -1
        previous = self.modes.get(fd, O_TEXT)
        self.modes[fd] = mode
        return previous

    def _seek(self, fd: int, offset: int, origin: int) -> int:
        entry = self._file(fd)
        whence = SEEK_WHENCE.get(origin & 0xFFFFFFFF)
        if entry is None or whence is None:
            return -1
        fobj = entry[0]
        start = {io.SEEK_SET: 0, io.SEEK_CUR: fobj.tell(), io.SEEK_END: fobj.get_size()}[whence]
        if start + offset < 0:
            return -1
        fobj.seek(start + offset, io.SEEK_SET)
        return int(fobj.tell())

    def _seek64(self, argv: list[int]) -> int:
        if self.x64:
            fd, offset, origin = argv[0], _signed(argv[1], 64), argv[2]
        else:
            fd, offset, origin = argv[0], _signed(argv[1] | (argv[2] << 32), 64), argv[3]
        return self._wide_result(self._seek(fd, offset, origin) & 0xFFFFFFFFFFFFFFFF)

    def _length(self, argv: list[int]) -> int:
        entry = self._file(argv[0])
        return int(entry[0].get_size()) if entry is not None else -1

    def _eof(self, argv: list[int]) -> int:
        entry = self._file(argv[0])
        if entry is None:
            return -1
        return 1 if entry[0].tell() >= entry[0].get_size() else 0

    def _fstat(self, argv: list[int], layout: tuple[str, bool]) -> int:
        """int _fstat64(int fd, struct _stat64 *buffer): a console stream for descriptors 0-2
        (character device), else the file's size, as a read-write file on C: stamped now."""
        fd, buffer = argv[0] & 0xFFFFFFFF, argv[1]
        if not buffer:
            return -1
        now = int(self.now_unix())
        if fd <= 2:
            values = (fd, 0, S_IFCHR, 1, 0, 0, fd, 0, now, now, now)
        else:
            entry = self._file(fd)
            if entry is None:
                return -1
            size = int(entry[0].get_size())
            values = (DRIVE_C, 0, S_IFREG | S_IRW, 1, 0, 0, DRIVE_C, size, now, now, now)
        return self._write_stat(buffer, values, layout)

    def _write_stat(self, buffer: int, values: tuple[int, ...], layout: tuple[str, bool]) -> int:
        """Write a struct _stat of ``layout`` (a 32-bit st_size capped); 0, or -1 when the
        buffer cannot be written."""
        layout_format, wide_size = layout
        if not wide_size:
            values = (*values[:7], min(values[7], 0x7FFFFFFF), *values[8:])
        try:
            self.memory.write(buffer, struct.pack(layout_format, *values))
        except Exception:
            return -1
        return 0

    # -- the file system ----------------------------------------------------------------------

    def _path(self, address: int, wide: bool) -> str:
        """The absolute guest path at ``address`` ("" for NULL or an empty one)."""
        if not address:
            return ""
        raw = read_c_string(self.memory, address, wide, MAX_PATH_CHARS * (2 if wide else 1))
        path = raw.decode("utf-16-le" if wide else "latin-1", "replace").removeprefix("\\\\?\\")
        return str(self.folders.absolute(path)) if path else ""

    def _is_file(self, path: str) -> bool:
        return bool(path) and not self.folders.is_folder(path) and bool(self.emu.does_file_exist(path))

    def _stat(self, argv: list[int], layout: tuple[str, bool], wide: bool) -> int:
        """int _stat64(const char *path, struct _stat64 *buffer): 0 with the file's (or
        folder's) size and mode, stamped now; -1 for a path that names nothing."""
        path, buffer = self._path(argv[0], wide), argv[1]
        if not path or not buffer:
            return self._fail(ENOENT if buffer else EINVAL)
        now = int(self.now_unix())
        if self.folders.is_folder(path):
            mode, size = S_IFDIR | S_IRW | S_IEXEC_ALL, 0
        elif self.emu.does_file_exist(path):
            mode, size = S_IFREG | S_IRW, self._size_of(path)
            if path.lower().endswith(EXECUTABLE_EXTENSIONS):
                mode |= S_IEXEC_ALL
        else:
            return self._fail(ENOENT)
        drive = max(ord(path[:1].upper()) - ord("A"), 0) if path[1:2] == ":" else DRIVE_C
        values = (drive, 0, mode, 1, 0, 0, drive, size, now, now, now)
        return self._write_stat(buffer, values, layout)

    def _size_of(self, path: str) -> int:
        handle = self._crt().file_open(path)
        fobj = self.emu.file_get(handle) if handle is not None else None
        return int(fobj.get_size()) if fobj is not None else 0

    def _access(self, argv: list[int], wide: bool, errno: bool) -> int:
        """int _access(const char *path, int mode): 0 when the file or folder exists (every
        guest file is readable and writable), else -1 (_access_s: 0 or ENOENT / EINVAL)."""
        path, mode = self._path(argv[0], wide), argv[1] & 0xFFFFFFFF
        if not path or mode not in ACCESS_MODES:
            return EINVAL if errno else self._fail(EINVAL)
        if self.folders.is_folder(path) or self.emu.does_file_exist(path):
            return 0
        return ENOENT if errno else self._fail(ENOENT)

    def _mkdir(self, argv: list[int], wide: bool) -> int:
        """int _mkdir(const char *path): 0, or -1 when it exists or its parent does not."""
        path = self._path(argv[0], wide).rstrip("\\")
        if not path:
            return self._fail(ENOENT)
        if self.folders.is_folder(path) or self.emu.does_file_exist(path):
            return self._fail(EEXIST)
        if not self.folders.is_folder(ntpath.dirname(path)):
            return self._fail(ENOENT)
        self.folders.add(path)
        return 0

    def _rmdir(self, argv: list[int], wide: bool) -> int:
        """int _rmdir(const char *path): 0 for an empty folder the guest has (not a drive's
        root), -1 otherwise."""
        path = self._path(argv[0], wide).rstrip("\\")
        if len(path) <= 2 or not self.folders.is_folder(path):
            return self._fail(EACCES if len(path) <= 2 else ENOENT)
        if any(True for _ in self.folders.entries(path + "\\*") if _[0] not in (".", "..")):
            return self._fail(ENOTEMPTY)
        self.folders.folders.pop(normal_path(path), None)
        return 0 if not self.folders.is_folder(path) else -1

    def _remove(self, argv: list[int], wide: bool) -> int:
        """int remove(const char *path): 0 when the file was deleted, -1 for a folder or a
        path that names no file."""
        path = self._path(argv[0], wide)
        if not self._is_file(path):
            return self._fail(EACCES if path and self.folders.is_folder(path) else ENOENT)
        self.emu.file_delete(path)
        return 0

    def _rename(self, argv: list[int], wide: bool) -> int:
        """int rename(const char *old, const char *new): 0 when the file moved (its bytes are the
        new file's, recorded as MoveFile: created and written), -1 when ``old`` is no file, ``new``
        exists or its folder does not."""
        old, new = self._path(argv[0], wide), self._path(argv[1], wide)
        if not self._is_file(old) or not new:
            return self._fail(ENOENT)
        if self.folders.is_folder(new) or self.emu.does_file_exist(new):
            return self._fail(EEXIST)
        if not self.folders.is_folder(ntpath.dirname(new)):
            return self._fail(ENOENT)
        return 0 if self._move(old, new) else self._fail(ENOENT)

    def _move(self, old: str, new: str) -> bool:
        """Move the file ``old`` to ``new`` (replaced if it exists), recorded as MoveFile is."""
        crt = self._crt()
        source = self.emu.file_get(crt.file_open(old))
        target_handle = crt.file_open(new, create=True, truncate=True)
        target = self.emu.file_get(target_handle) if target_handle is not None else None
        if source is None or target is None:
            return False
        data = source.get_data(reset_pointer=True) or b""
        target.remove_data()
        target.add_data(data)
        self.emu.file_delete(old)
        crt.record_file_access_event(new, FILE_CREATE)
        crt.record_file_access_event(new, FILE_WRITE, data=data, size=len(data))
        return True

    def _move_file_ex(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """MoveFileEx(existing, new, flags): the file moved as MoveFile moves it; an existing
        ``new`` is replaced only with MOVEFILE_REPLACE_EXISTING (it had no handler: the call
        succeeded from its signature and nothing moved). A NULL ``new`` (delete after reboot)
        is answered as before; folders are not moved."""
        wide = api_name.endswith("W")
        old, new, flags = self._path(argv[0], wide), self._path(argv[1], wide), argv[2] & 0xFFFFFFFF
        if not argv[1] or flags & MOVEFILE_DELAY_UNTIL_REBOOT:
            return 1  # queued for the next boot: nothing moves now
        if not self._is_file(old):
            emu.set_last_error(ERROR_FILE_NOT_FOUND)
            return 0
        if self.folders.is_folder(new) or (self.emu.does_file_exist(new) and not flags & MOVEFILE_REPLACE_EXISTING):
            emu.set_last_error(ERROR_ALREADY_EXISTS)
            return 0
        if not self.folders.is_folder(ntpath.dirname(new)) or not self._move(old, new):
            emu.set_last_error(ERROR_PATH_NOT_FOUND)
            return 0
        emu.set_last_error(0)
        return 1

    def _findfirst(self, argv: list[int], layout: tuple[int, int], wide: bool) -> int:
        """intptr_t _findfirst(const char *filespec, struct _finddata_t *fileinfo) and its
        64-bit-time / 64-bit-size / wide kin: a search handle with the first match written, or
        -1 (ENOENT) when nothing matches (FindFirstFile's matches: the guest's folders and files)."""
        spec, info = self._path(argv[0], wide), argv[1]
        if not spec or not info:
            return self._fail(EINVAL if spec else ENOENT)
        folder = ntpath.dirname(spec)
        found = [(name, is_folder, ntpath.join(folder, name)) for name, is_folder in self.folders.entries(spec)]
        if not found:
            self.emu.set_last_error(ERROR_FILE_NOT_FOUND)
            return self._fail(ENOENT)
        handle = self.next_find
        self.next_find += 1
        self.finds[handle] = found
        self._write_find(info, found.pop(0), layout, wide)
        return handle

    def _findnext(self, argv: list[int], layout: tuple[int, int], wide: bool) -> int:
        """int _findnext(intptr_t handle, struct _finddata_t *fileinfo): 0 with the next match,
        -1 (ENOENT) after the last one."""
        found = self.finds.get(argv[0] & (0xFFFFFFFFFFFFFFFF if self.x64 else 0xFFFFFFFF))
        if found is None:
            return self._fail(EINVAL)
        if not found:
            # FindNextFile's error stays the thread's: mingw-w64's readdir tells the end of a
            # folder from a failure by it (ERROR_NO_MORE_FILES)
            self.emu.set_last_error(ERROR_NO_MORE_FILES)
            return self._fail(ENOENT)
        self._write_find(argv[1], found.pop(0), layout, wide)
        return 0

    def _findclose(self, argv: list[int]) -> int:
        if self.finds.pop(argv[0] & (0xFFFFFFFFFFFFFFFF if self.x64 else 0xFFFFFFFF), None) is None:
            return self._fail(EINVAL)
        return 0

    def _write_find(self, info: int, match: tuple[str, bool, str], layout: tuple[int, int], wide: bool) -> None:
        """A _finddata_t: attrib, time_create / time_access / time_write (``layout[0]`` bytes
        each), size (``layout[1]`` bytes), name[260]; each field at its natural alignment."""
        name, is_folder, path = match
        time_size, size_size = layout
        size = 0 if is_folder or name in (".", "..") else self._size_of(path)
        now = int(self.now_unix())
        out = bytearray()
        out += struct.pack("<I", FILE_ATTRIBUTE_DIRECTORY if is_folder else FILE_ATTRIBUTE_ARCHIVE)
        for _ in range(3):
            out += bytes(-len(out) % time_size) + now.to_bytes(time_size, "little")
        out += bytes(-len(out) % size_size) + min(size, (1 << (8 * size_size)) - 1).to_bytes(size_size, "little")
        unit = 2 if wide else 1
        text = name[: MAX_FIND_NAME - 1].encode("utf-16-le" if wide else "latin-1", "replace")
        out += text + bytes(MAX_FIND_NAME * unit - len(text))
        out += bytes(-len(out) % max(time_size, size_size))
        self.memory.write(info, bytes(out))

    def _fullpath(self, argv: list[int], wide: bool) -> int:
        """char *_fullpath(char *absPath, const char *relPath, size_t maxLength): the absolute
        path (against the current folder) in ``absPath``, or a fresh malloc'd buffer for NULL;
        NULL when it does not fit."""
        buffer, size = argv[0], argv[2] & 0xFFFFFFFF
        full = ntpath.normpath(self._path(argv[1], wide) if argv[1] else self._path_of_cwd())
        unit = 2 if wide else 1
        if not buffer:
            buffer = int(self._crt().heap_alloc((len(full) + 1) * unit, "msvcrt._fullpath") or 0)
        elif size < len(full) + 1:
            return 0
        if not buffer:
            return 0
        self.memory.write(buffer, full.encode("utf-16-le" if wide else "latin-1", "replace") + b"\0" * unit)
        return buffer

    def _path_of_cwd(self) -> str:
        return str(self.folders.absolute("."))

    def _getcwd(self, argv: list[int], wide: bool) -> int:
        """char *_getcwd(char *buffer, int size): the current folder in ``buffer`` (a fresh
        malloc'd one of at least ``size`` for NULL); NULL when it does not fit."""
        buffer, size = argv[0], argv[1] & 0xFFFFFFFF
        current = str(self.emu.get_cd() or "C:\\")
        current = current if len(current) <= 3 else current.rstrip("\\")
        unit = 2 if wide else 1
        if not buffer:
            buffer = int(self._crt().heap_alloc(max(size, len(current) + 1) * unit, "msvcrt._getcwd") or 0)
        elif size < len(current) + 1:
            return 0
        if not buffer:
            return 0
        self.memory.write(buffer, current.encode("utf-16-le" if wide else "latin-1", "replace") + b"\0" * unit)
        return buffer

    def _chdir(self, argv: list[int], wide: bool) -> int:
        """int _chdir(const char *path): 0 when the folder exists (it becomes the current one)."""
        path = self._path(argv[0], wide).rstrip("\\")
        if not path or not self.folders.is_folder(path):
            return -1
        self.emu.set_cd(path + "\\" if len(path) > 2 else path[:2] + "\\")
        return 0

    # -- streams --------------------------------------------------------------------------------

    def _stream_file(self, stream: int) -> tuple[Any, str] | None:
        """(file object, guest path) of a stream fopen made; None for any other stream."""
        handle = self._crt().file_streams.get(stream)
        fobj = self.emu.file_get(handle) if handle is not None else None
        return (fobj, str(fobj.path)) if fobj is not None else None

    def _stream_write(self, stream: int, data: bytes) -> bool:
        """Write ``data`` to the file behind ``stream`` (a console stream takes it unrecorded)."""
        entry = self._stream_file(stream)
        if entry is None or not data:
            return True
        fobj, path = entry
        fobj.add_data(data)  # as Speakeasy's WriteFile: appended to the file
        self._crt().record_file_access_event(path, FILE_WRITE, data=data, size=len(data))
        return True

    def _encoded(self, text: str, wide: bool) -> bytes:
        """What a text-mode stream writes of ``text`` (the wide functions convert to the ANSI
        code page, as msvcrt's text mode does)."""
        return text.encode("cp1252" if wide else "latin-1", "replace")

    def _fwrite(self, argv: list[int]) -> int:
        """size_t fwrite(const void *buffer, size_t size, size_t count, FILE *stream)"""
        buffer, size, count, stream = argv[:4]
        total = size * count
        if not size or not count:
            return 0
        if not buffer or total > MAX_TRANSFER:
            return 0
        try:
            data = self.memory.read(buffer, total)
        except Exception:
            return 0
        entry = self._stream_file(stream)
        if entry is not None:
            fobj, path = entry
            fobj.add_data(data)
            self._crt().record_file_access_event(path, FILE_WRITE, data=data, buffer=buffer, size=len(data))
        return int(count)

    def _fputs(self, argv: list[int], wide: bool) -> int:
        """int fputs(const char *str, FILE *stream): 0, or EOF for an unreadable string."""
        address, stream = argv[:2]
        if not address:
            return EOF
        raw = read_c_string(self.memory, address, wide, MAX_STREAM_TEXT * (2 if wide else 1))
        text = raw.decode("utf-16-le", "replace") if wide else raw.decode("latin-1")
        self._stream_write(stream, self._encoded(text, wide))
        return 0

    def _fputc(self, argv: list[int]) -> int:
        """int fputc(int c, FILE *stream): the character written."""
        self._stream_write(argv[1], bytes([argv[0] & 0xFF]))
        return argv[0] & 0xFF

    def _stream_read(self, stream: int, size: int) -> tuple[bytes, str] | None:
        entry = self._stream_file(stream)
        if entry is None:
            return None  # stdin and the console streams: at their end
        fobj, path = entry
        return fobj.get_data(size=size) or b"", path

    def _ungetc(self, argv: list[int]) -> int:
        """int ungetc(int c, FILE *stream): ``c`` is the next character read from ``stream``
        (the file goes back one byte when that byte is ``c``, so fread sees it too); EOF for EOF."""
        c, stream = argv[0] & 0xFFFFFFFF, argv[1]
        if c == 0xFFFFFFFF or not stream:
            return EOF
        c &= 0xFF
        entry = self._stream_file(stream)
        if entry is not None and stream not in self.pushed and entry[0].tell() > 0:
            fobj = entry[0]
            fobj.seek(fobj.tell() - 1, io.SEEK_SET)
            if (fobj.get_data(size=1) or b"")[:1] == bytes([c]):
                fobj.seek(fobj.tell() - 1, io.SEEK_SET)
                return c
        self.pushed[stream] = c
        return c

    def _fgetc(self, argv: list[int]) -> int:
        """int fgetc(FILE *stream): the next byte, EOF at the end."""
        if argv[0] in self.pushed:
            return self.pushed.pop(argv[0])
        read = self._stream_read(argv[0], 1)
        if not read or not read[0]:
            return EOF
        data, path = read
        self._crt().record_file_access_event(path, FILE_READ, size=1)
        return data[0]

    def _fgets(self, argv: list[int], wide: bool) -> int:
        """char *fgets(char *buffer, int n, FILE *stream): up to n-1 characters, through the
        first newline, terminated; NULL at the end (or for a bad buffer or count)."""
        buffer, count, stream = argv[0], argv[1] & 0xFFFFFFFF, argv[2]
        if not buffer or not 1 < count <= MAX_STREAM_TEXT:
            return 0
        entry = self._stream_file(stream)
        if entry is None:
            return 0
        fobj, path = entry
        pushed = bytes([self.pushed.pop(stream)]) if stream in self.pushed else b""
        start = fobj.tell()
        ahead = b"" if pushed == b"\n" else fobj.get_data(size=count - 1 - len(pushed)) or b""
        line = ahead[: ahead.find(b"\n") + 1] if b"\n" in ahead else ahead
        fobj.seek(start + len(line), io.SEEK_SET)
        line = pushed + line
        if not line:
            return 0
        data = line.decode("latin-1").encode("utf-16-le") if wide else line
        try:
            self.memory.write(buffer, data + (b"\0\0" if wide else b"\0"))
        except Exception:
            return 0
        self._crt().record_file_access_event(path, FILE_READ, buffer=buffer, size=len(line))
        return buffer

    def _feof(self, argv: list[int]) -> int:
        entry = self._stream_file(argv[0])
        if entry is None:
            return 1 if self._standard_fd(argv[0]) == 0 else 0
        return 1 if entry[0].tell() >= entry[0].get_size() else 0

    def _rewind(self, argv: list[int]) -> int:
        entry = self._stream_file(argv[0])
        if entry is not None:
            entry[0].seek(0, io.SEEK_SET)
        return 0

    def _standard_fd(self, stream: int) -> int | None:
        """0, 1 or 2 for a standard stream (``__acrt_iob_func`` gives the descriptor itself as
        the stream; msvcrt's FILEs name theirs in ``_file``), None otherwise."""
        if 0 <= stream <= 2:
            return stream
        size, flag_at = FILE_LAYOUT[self.memory.ptr_size]
        if self.iob is None:  # msvcrt's _iob, as an import of the data binds to it (mingw's x86 stdout)
            module = self.emu.get_mod_by_name("msvcrt")
            self.iob = compat.resolve_export(self.emu, module, "_iob") if module is not None else 0
        if self.iob and stream in (self.iob, self.iob + size, self.iob + 2 * size):
            return (stream - self.iob) // size
        try:
            fd = struct.unpack("<i", self.memory.read(stream + flag_at + 4, 4))[0]
        except Exception:
            return None
        return fd if 0 <= fd <= 2 else None

    def _fileno(self, argv: list[int]) -> int:
        """int _fileno(FILE *stream): the stream's descriptor (a stream fopen made gets one that
        _read / _write / _lseek know); -1 for what is no stream."""
        stream = argv[0]
        handle = self._crt().file_streams.get(stream)
        if handle is None:
            fd = self._standard_fd(stream)
            return -1 if fd is None else fd
        for fd, (known, _path, _append) in self.files.items():
            if known == int(handle):
                return fd
        entry = self._stream_file(stream)
        if entry is None:
            return -1
        fd = self.next_fd
        self.next_fd += 1
        self.files[fd] = (int(handle), entry[1], False)
        self.modes[fd] = O_TEXT
        return fd

    def _vfprintf(self, argv: list[int], wide: bool) -> int:
        """int vfprintf(FILE *stream, const char *format, va_list ap): characters written."""
        stream, fmt, ap = argv[:3]
        text = formatted(self.emu, fmt, wide, ap, 3)
        self._stream_write(stream, self._encoded(text, wide))
        return len(text)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def install(se: Any, emu: Any, memory: GuestMemory, now_unix: Callable[[], float], folders: Any = None) -> CrtFiles:
    files = CrtFiles(se, emu, memory, now_unix, folders)
    files.install()
    return files
