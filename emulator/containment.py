"""Containment enforced while a replay runs: no host network, no writes outside the output folder.

A Python audit hook refuses socket connects and name lookups, any file opened for writing or
created, removed, renamed, linked, truncated or re-permissioned outside the allowed folder, and
any host process started. The emulation child allows no writes at all: it streams what it
records to the parent, which is the only writer of the output folder. See docs/containment.md.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

NETWORK_EVENTS = {
    "socket.connect",
    "socket.connect_ex",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}
NAME_LOOKUP_EVENTS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Audit events that change the file system: event -> (indexes of the path arguments, index of
# the dir_fd argument or None, whether the call follows a symbolic link in the last component).
# A path relative to a dir_fd cannot be placed, so it is refused. Removing or renaming a link
# acts on the link itself: a link inside the folder that points out of it may be removed.
FILE_CHANGE_EVENTS: dict[str, tuple[tuple[int, ...], int | None, bool]] = {
    "os.remove": ((0,), 1, False),
    "os.rmdir": ((0,), 1, False),
    "os.mkdir": ((0,), 2, False),
    "os.rename": ((0, 1), 2, False),
    "os.link": ((0, 1), 2, False),
    "os.symlink": ((1,), 2, False),
    "os.mkfifo": ((0,), 2, False),
    "os.mknod": ((0,), 3, False),
    "shutil.rmtree": ((0,), 1, False),
    "os.truncate": ((0,), None, True),
    "os.chmod": ((0,), 2, True),
    "os.chown": ((0,), 3, True),
    "os.utime": ((0,), 3, True),
}
PROCESS_EVENTS = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "pty.spawn",
    "os.fork",
    "os.forkpty",
}
# Socket families that reach a network (or the host's kernel interfaces): refused at creation.
# AF_UNIX is refused too: a Unix socket reaches host services (a container runtime's socket).
NETWORK_SOCKET_CREATE = "socket.__new__"
# Extended attributes change a file as surely as a write.
XATTR_EVENTS = {"os.setxattr", "os.removexattr"}
# C library functions that, called through ctypes, would reach the network, start a process or
# change a file without any Python-level audit event: refused when looked up (``ctypes.dlsym``).
# The kernel layers (emulator/sandbox.py) refuse the calls themselves; this names the attempt.
NATIVE_NETWORK = {"socket", "socketpair", "connect", "bind", "sendto", "sendmsg", "getaddrinfo", "gethostbyname"}
NATIVE_PROCESS = {
    "fork",
    "vfork",
    "clone",
    "clone3",
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
    "execlp",
    "execle",
    "fexecve",
    "execveat",
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "ptrace",
    "syscall",
}
NATIVE_WRITE = {
    "open",
    "open64",
    "openat",
    "openat64",
    "creat",
    "creat64",
    "fopen",
    "fopen64",
    "freopen",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "chmod",
    "chown",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
}


class ContainmentViolation(PermissionError):
    """The replay tried to reach the host network or write outside its output folder."""


@dataclass
class Guard:
    allowed_write_root: Path | None
    active: bool = False
    sockets_blocked: int = 0
    lookups_blocked: int = 0
    writes_blocked: int = 0
    processes_blocked: int = 0
    kernel_refusals: int = 0
    violations: list[str] = field(default_factory=list)
    # Leave alone the threads already running when the guard is installed (other than the
    # installing one): in a host process such as a Dask worker they are the host's own (its
    # connections to the scheduler), not the replay's. Threads started later are watched.
    spare_host_threads: bool = False
    host_threads: dict[int, threading.Thread] = field(default_factory=dict)

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active:
            return
        if self.host_threads and self.host_threads.get(threading.get_ident()) is threading.current_thread():
            return
        if event in NETWORK_EVENTS:
            if event in NAME_LOOKUP_EVENTS:
                self.lookups_blocked += 1
            else:
                self.sockets_blocked += 1
            self._refuse(f"{event} {args[1:2]!r}")
        elif event == "open" and len(args) >= 3 and _is_write(args[1], args[2]):
            path = args[0]
            if isinstance(path, int):
                return
            if not self._allowed(path):
                self.writes_blocked += 1
                self._refuse(f"write to {_show(path)}")
        elif event in FILE_CHANGE_EVENTS:
            path_indexes, dir_fd_index, follows = FILE_CHANGE_EVENTS[event]
            dir_fd = args[dir_fd_index] if dir_fd_index is not None and len(args) > dir_fd_index else None
            relative_to_fd = isinstance(dir_fd, int) and dir_fd >= 0
            for index in path_indexes:
                path = args[index] if len(args) > index else None
                if isinstance(path, int):  # an open descriptor (fchmod, ftruncate): where does it point?
                    path = _fd_target(path)
                if (relative_to_fd and not Path(_decode(path)).is_absolute()) or not self._allowed(path, follows):
                    self.writes_blocked += 1
                    self._refuse(f"{event} {_show(path)}")
        elif event in PROCESS_EVENTS:
            self.processes_blocked += 1
            self._refuse(f"{event} {_show(args[0] if args else '')}")
        elif event == NETWORK_SOCKET_CREATE and len(args) >= 2:
            family = args[1]
            self.sockets_blocked += 1
            self._refuse(f"socket {_family_name(family)}")
        elif event in XATTR_EVENTS and args:
            path = args[0]
            if isinstance(path, int):
                path = _fd_target(path)
            if not self._allowed(path):
                self.writes_blocked += 1
                self._refuse(f"{event} {_show(path)}")
        elif event == "sqlite3.connect" and args:
            database = args[0]
            if _decode(database) not in ("", ":memory:") and not self._allowed(database):
                self.writes_blocked += 1
                self._refuse(f"sqlite3.connect {_show(database)}")
        elif event == "ctypes.dlsym" and len(args) >= 2 and isinstance(args[1], str | bytes):
            name = args[1].decode("ascii", "replace") if isinstance(args[1], bytes) else args[1]
            if name in NATIVE_NETWORK:
                self.sockets_blocked += 1
                self._refuse(f"ctypes {name}()")
            elif name in NATIVE_PROCESS:
                self.processes_blocked += 1
                self._refuse(f"ctypes {name}()")
            elif name in NATIVE_WRITE:
                self.writes_blocked += 1
                self._refuse(f"ctypes {name}()")

    def _allowed(self, path: object, follows: bool = True) -> bool:
        if self.allowed_write_root is None:
            return False
        try:
            given = Path(_decode(path))
            if follows or given.name in ("", ".", ".."):
                resolved = given.resolve()
            else:  # the call acts on the last component itself: resolve only the folder holding it
                resolved = given.parent.resolve() / given.name
        except (OSError, ValueError, TypeError):
            return False
        return resolved.is_relative_to(self.allowed_write_root)

    def _refuse(self, what: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(what)
        raise ContainmentViolation(f"containment: refused {what}")


def _family_name(family: object) -> str:
    import socket

    try:
        return socket.AddressFamily(family).name  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return f"family {family!r}"


def _decode(path: object) -> str:
    return os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)


def _fd_target(fd: int) -> str:
    link = Path(f"/proc/self/fd/{fd}")
    try:
        return str(link.readlink())
    except OSError:
        return str(link)  # not resolvable: outside any allowed folder, so refused


def _show(path: object) -> str:
    """The path as a repr (no control characters or lone surrogates reach the report), cut short."""
    text = ascii(_decode(path))
    return text if len(text) <= 200 else text[:197] + "..."


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and flags >= 0 and bool(flags & WRITE_FLAGS)


_GUARDS: list[Guard] = []
# Set in the emulation child once emulator/sandbox.py's kernel layers are in force: from then on
# a PermissionError (EPERM/EACCES) is the kernel refusing something the audit hook did not see.
KERNEL_LAYERS_ACTIVE = False
KERNEL_REFUSAL_ERRNOS = (errno.EPERM, errno.EACCES)


def refused_by_kernel(err: OSError) -> bool:
    """Record ``err`` as a kernel-layer refusal in every active guard if it is one; say whether it was."""
    if not KERNEL_LAYERS_ACTIVE or err.errno not in KERNEL_REFUSAL_ERRNOS:
        return False
    what = f"kernel refused: {type(err).__name__}: {err}"
    for guard in _GUARDS:
        guard.kernel_refusals += 1
        if len(guard.violations) < 100:
            guard.violations.append(ascii(what)[1:-1][:300])
    return True


def _dispatch(event: str, args: tuple[object, ...]) -> None:
    for guard in _GUARDS:
        guard(event, args)


_installed = False
_saved_dont_write_bytecode = False


def install(guard: Guard) -> Guard:
    """Activate ``guard`` (audit hooks cannot be removed; one dispatcher serves every guard).

    While a guard is active Python writes no bytecode caches: a module first imported during the
    replay would otherwise try to write its ``__pycache__`` entry outside the allowed folder.
    """
    global _installed, _saved_dont_write_bytecode
    if not _installed:
        sys.addaudithook(_dispatch)
        _installed = True
    if not _GUARDS:
        _saved_dont_write_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
    if guard.spare_host_threads:
        mine = threading.get_ident()
        guard.host_threads = {t.ident: t for t in threading.enumerate() if t.ident is not None and t.ident != mine}
    _GUARDS.append(guard)
    guard.active = True
    return guard


def fork_own_copy() -> int:
    """``os.fork()`` for the project's own code (a copy of this process that runs only project
    code, under the same guards, and never executes another program), with the guards set aside
    for the fork alone: they refuse a fork from anything else. Only from a single-threaded
    process (nothing else can run while they are set aside)."""
    held = [guard for guard in _GUARDS if guard.active]
    for guard in held:
        guard.active = False
    try:
        return os.fork()
    finally:
        for guard in held:
            guard.active = True


def uninstall(guard: Guard) -> None:
    guard.active = False
    if guard in _GUARDS:
        _GUARDS.remove(guard)
        if not _GUARDS:
            sys.dont_write_bytecode = _saved_dont_write_bytecode
