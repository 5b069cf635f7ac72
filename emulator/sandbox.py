"""Kernel layers that contain the emulation child: what the kernel enforces, not Python.

``confine_child()`` runs first thing in the forked emulation child, before any user code (a
scenario's Python responder) is imported. It applies, in order:

1. **lifecycle**: ``PR_SET_PDEATHSIG`` (the child is killed when the CLI dies, however it dies)
   and a process group of its own (a terminal's Ctrl-C reaches the CLI, which ends the child).
2. **network namespace**: ``unshare(CLONE_NEWNET)`` (root) or ``CLONE_NEWUSER | CLONE_NEWNET``
   (unprivileged, where user namespaces are allowed): a network stack with no interface but a
   loopback that is down, so no address, not even 127.0.0.1, is reachable; abstract Unix sockets
   are per namespace too.
3. **landlock**: no file may be created, written, truncated, removed, renamed or linked
   anywhere except under the allowed roots (the child has none: it streams what it records to
   the parent); from ABI 4 no TCP bind or connect; from ABI 6 no signal to a process outside
   the sandbox and no abstract Unix socket outside it.
4. **seccomp** (a classic-BPF filter loaded with ``prctl``): ``socket``/``socketpair`` for every family,
   ``execve``/``execveat``, ``fork``/``vfork``, ``clone`` without ``CLONE_THREAD`` (new
   processes; Python threads are allowed), ``clone3`` (answered ENOSYS, so the C library falls
   back to ``clone``, whose flags the filter can read), ``ptrace``, ``process_vm_*``, extended
   attributes, permission/ownership/time changes, mounts, namespaces, ``io_uring`` (which would
   bypass the socket rule), BPF, keyrings, kernel modules, ``perf_event_open``: all answered
   ``EPERM``. Syscalls of another ABI (``int 0x80`` from x86-64) kill the process.

Each layer reports whether it is active and, if the kernel refused it, why. The Python audit
hook (:mod:`emulator.containment`) stays as the inner layer that names and counts attempts.
See docs/containment.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_THREAD = 0x00010000

# Landlock (include/uapi/linux/landlock.h); the three syscalls have the same number everywhere.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6
FS_WRITE_ACCESS_V1 = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_CHAR
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_BLOCK
    | FS_MAKE_SYM
)

# Syscalls the filter answers with EPERM, by number on x86-64 (asm/unistd_64.h).
SECCOMP_REFUSED_X86_64 = {
    "socket": 41,
    "socketpair": 53,
    "execve": 59,
    "execveat": 322,
    "fork": 57,
    "vfork": 58,
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "setxattr": 188,
    "lsetxattr": 189,
    "fsetxattr": 190,
    "removexattr": 197,
    "lremovexattr": 198,
    "fremovexattr": 199,
    "setxattrat": 463,
    "removexattrat": 466,
    "chmod": 90,
    "fchmod": 91,
    "fchmodat": 268,
    "fchmodat2": 452,
    "chown": 92,
    "fchown": 93,
    "lchown": 94,
    "fchownat": 260,
    "utime": 132,
    "utimes": 235,
    "utimensat": 280,
    "futimesat": 261,
    "file_setattr": 469,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "setns": 308,
    "unshare": 272,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "move_mount": 429,
    "open_tree": 428,
    "open_tree_attr": 467,
    "mount_setattr": 442,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "bpf": 321,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "acct": 163,
    "quotactl": 179,
}
SYS_CLONE_X86_64 = 56
SYS_CLONE3_X86_64 = 435
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
# classic BPF opcodes
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_DATA_ARG0_LOW = 16  # little-endian: the low 32 bits of args[0]


@dataclass(frozen=True)
class LayerState:
    """One containment layer: whether it is in force and, if not, why the kernel refused it."""

    name: str
    active: bool
    detail: str


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _oserror(what: str) -> str:
    err = ctypes.get_errno()
    return f"{what}: {errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def set_parent_death_signal(sig: int = signal.SIGKILL) -> LayerState:
    libc = _libc()
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        return LayerState("parent_death_signal", False, _oserror("prctl(PR_SET_PDEATHSIG)"))
    return LayerState("parent_death_signal", True, f"{signal.Signals(sig).name} when the CLI process dies")


def end_with_parent() -> None:
    """Have this process killed when its parent dies (a batch's fork server and workers); if the
    parent died before the signal was armed (this process was re-parented meanwhile), end now.
    The parent may itself be pid 1 (a container's entry point): what counts is a change of
    parent, not its number. Without the parent-death signal (not Linux) nothing is done."""
    with contextlib.suppress(Exception):
        parent = os.getppid()
        if set_parent_death_signal().active and os.getppid() != parent:
            os._exit(1)


def own_process_group() -> LayerState:
    try:
        os.setpgid(0, 0)
    except OSError as err:
        return LayerState("process_group", False, f"setpgid: {err.strerror}")
    return LayerState("process_group", True, "own process group: a terminal's signals reach the CLI, which ends it")


def _write_id_map(path: str, inner: int, outer: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, f"{inner} {outer} 1\n".encode())
    finally:
        os.close(fd)


def private_network() -> LayerState:
    """A network namespace of this process's own: no interface up, nothing reachable."""
    libc = _libc()
    if os.geteuid() == 0 and libc.unshare(CLONE_NEWNET) == 0:
        return LayerState("network_namespace", True, "own network namespace (no interface up)")
    first = _oserror("unshare(CLONE_NEWNET)") if os.geteuid() == 0 else "not root"
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return LayerState("network_namespace", False, f"{first}; {_oserror('unshare(CLONE_NEWUSER|CLONE_NEWNET)')}")
    try:  # keep the same ids inside the user namespace, so files read as before
        fd = os.open("/proc/self/setgroups", os.O_WRONLY)
        try:
            os.write(fd, b"deny")
        finally:
            os.close(fd)
        _write_id_map("/proc/self/uid_map", uid, uid)
        _write_id_map("/proc/self/gid_map", gid, gid)
    except OSError as err:
        return LayerState("network_namespace", True, f"own user and network namespace (id map not written: {err})")
    return LayerState("network_namespace", True, "own user and network namespace (no interface up)")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # struct landlock_path_beneath_attr is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when the kernel has none (or it is disabled)."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = int(
        libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    )
    return max(version, 0)


def restrict_writes(write_roots: list[Path]) -> LayerState:
    """Landlock: no file system change outside ``write_roots`` (none: no change anywhere)."""
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = landlock_abi()
    if abi == 0:
        reason = {errno.ENOSYS: "kernel built without Landlock", errno.EOPNOTSUPP: "Landlock disabled at boot"}
        return LayerState("landlock", False, reason.get(ctypes.get_errno(), _oserror("landlock_create_ruleset")))
    fs = FS_WRITE_ACCESS_V1
    if abi >= 2:
        fs |= FS_REFER
    if abi >= 3:
        fs |= FS_TRUNCATE
    if abi >= 5:
        fs |= FS_IOCTL_DEV
    attr = _RulesetAttr(fs=fs)
    size = 8
    extras = []
    if abi >= 4:
        attr.net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
        extras.append("no TCP bind or connect")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        extras.append("no signal or abstract Unix socket outside the sandbox")
    ruleset = int(
        libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), 0)
    )
    if ruleset < 0:
        return LayerState("landlock", False, _oserror(f"landlock_create_ruleset (ABI {abi})"))
    try:
        for root in write_roots:
            fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(allowed_access=fs & ~FS_IOCTL_DEV, parent_fd=fd)
                if (
                    libc.syscall(
                        ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
                    )
                    != 0
                ):
                    return LayerState("landlock", False, _oserror(f"landlock_add_rule {root}"))
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return LayerState("landlock", False, _oserror("prctl(PR_SET_NO_NEW_PRIVS)"))
        if libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ruleset, 0) != 0:
            return LayerState("landlock", False, _oserror("landlock_restrict_self"))
    finally:
        os.close(ruleset)
    where = "outside " + ", ".join(str(r) for r in write_roots) if write_roots else "anywhere"
    return LayerState("landlock", True, "; ".join([f"ABI {abi}: no file created, written or removed {where}", *extras]))


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program() -> list[tuple[int, int, int, int]]:
    """The classic-BPF program of the filter (x86-64), as (code, jt, jf, k) instructions."""
    errno_eperm = SECCOMP_RET_ERRNO | errno.EPERM
    refused = sorted(set(SECCOMP_REFUSED_X86_64.values()))
    prog: list[tuple[int, int, int, int]] = [
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        (BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),  # another ABI (int 0x80): kill
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        (BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),  # the x32 ABI: kill
    ]
    for number in refused:
        prog.append((BPF_JEQ_K, 0, 1, number))
        prog.append((BPF_RET_K, 0, 0, errno_eperm))
    prog += [
        (BPF_JEQ_K, 0, 1, SYS_CLONE3_X86_64),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        (BPF_JEQ_K, 0, 4, SYS_CLONE_X86_64),
        (BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARG0_LOW),
        (BPF_JSET_K, 1, 0, CLONE_THREAD),
        (BPF_RET_K, 0, 0, errno_eperm),  # clone without CLONE_THREAD: a new process
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return prog


def filter_syscalls() -> LayerState:
    """seccomp: no socket, no exec, no new process, no ptrace, and the rest of SECCOMP_REFUSED_X86_64."""
    machine = os.uname().machine
    if machine != "x86_64":
        return LayerState("seccomp", False, f"no syscall table for {machine}")
    prog = seccomp_program()
    array = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), array)
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return LayerState("seccomp", False, _oserror("prctl(PR_SET_NO_NEW_PRIVS)"))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return LayerState("seccomp", False, _oserror("prctl(PR_SET_SECCOMP)"))
    return LayerState(
        "seccomp",
        True,
        "socket (every family), exec, new processes, ptrace, xattr/chmod/chown/utime, mounts, namespaces,"
        " io_uring, bpf, keyrings, modules refused; other ABIs killed",
    )


def confine_child(write_roots: list[Path] | None = None) -> list[LayerState]:
    """Apply every layer to this (single-threaded, freshly forked) process, innermost last."""
    roots = write_roots or []
    layers = [set_parent_death_signal(), own_process_group(), private_network()]
    layers.append(restrict_writes(roots))
    layers.append(filter_syscalls())
    return layers
