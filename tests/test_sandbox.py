"""The kernel layers of emulator/sandbox.py, one at a time, with no audit hook: each is applied in
a forked process that then tries what the layer must stop (and what it must still allow), and
sends back what happened."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator import sandbox

Attempts = dict[str, Callable[[], object]]


def _in_confined_child(layer: Callable[[], sandbox.LayerState], attempts: Attempts) -> dict[str, object]:
    """Fork; apply ``layer``; run each attempt; return {name: "ok" | errno name} and the layer state."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        results: dict[str, object] = {}
        try:
            state = layer()
            results["_layer"] = [state.active, state.detail]
            for name, attempt in attempts.items():
                try:
                    attempt()
                    results[name] = "ok"
                except OSError as err:
                    results[name] = errno.errorcode.get(err.errno or 0, str(err))
        finally:
            os.write(write, json.dumps(results).encode())
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


@pytest.fixture
def listener() -> object:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _connect(port: int) -> Callable[[], object]:
    def attempt() -> object:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", port))
        return None

    return attempt


def _accepted(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except OSError:
        return False
    conn.close()
    return True


def test_network_namespace_reaches_nothing(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    results = _in_confined_child(sandbox.private_network, {"connect": _connect(port)})
    assert results["_layer"][0] is True, results
    assert results["connect"] == "ENETUNREACH", results
    assert not _accepted(listener)


def test_without_the_layer_the_connect_would_succeed(listener: socket.socket) -> None:
    """The control: the same attempt, no layer, reaches the listener (so the test above means something)."""
    port = listener.getsockname()[1]
    results = _in_confined_child(lambda: sandbox.LayerState("none", True, ""), {"connect": _connect(port)})
    assert results["connect"] == "ok"
    assert _accepted(listener)


def test_landlock_refuses_writes(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    results = _in_confined_child(
        lambda: sandbox.restrict_writes([allowed]),
        {
            "create": lambda: (tmp_path / "new.txt").write_text("x", encoding="utf-8"),
            "overwrite": lambda: victim.write_text("gone", encoding="utf-8"),
            "unlink": lambda: victim.unlink(),
            "mkdir": lambda: (tmp_path / "d").mkdir(),
            "truncate": lambda: os.truncate(victim, 0),
            "read": lambda: victim.read_text(encoding="utf-8"),
            "write_inside": lambda: (allowed / "ok.txt").write_text("fine", encoding="utf-8"),
        },
    )
    if results["_layer"][0] is not True:
        pytest.skip(f"Landlock refused by this kernel: {results['_layer'][1]}")
    for name in ("create", "overwrite", "unlink", "mkdir", "truncate"):
        assert results[name] == "EACCES", (name, results)
    assert results["read"] == "ok" and results["write_inside"] == "ok"
    assert victim.read_text(encoding="utf-8") == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allowed", "victim.txt"]


def test_seccomp_refuses_sockets_processes_exec(tmp_path: Path) -> None:
    marker = tmp_path / "spawned"

    def thread() -> object:
        box: list[int] = []
        worker = threading.Thread(target=lambda: box.append(1))
        worker.start()
        worker.join()
        if box != [1]:
            raise OSError(errno.EIO, "thread did not run")
        return None

    results = _in_confined_child(
        sandbox.filter_syscalls,
        {
            "socket_inet": lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
            "socket_unix": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
            "socket_netlink": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),
            "socketpair": lambda: socket.socketpair(),
            "fork": os.fork,
            "subprocess": lambda: subprocess.run(["touch", str(marker)], check=False),
            "execv": lambda: os.execv("/bin/true", ["true"]),
            "setxattr": lambda: os.setxattr(str(tmp_path), "user.x", b"1"),
            "chmod": lambda: os.chmod(tmp_path, 0o777),
            "thread": thread,
        },
    )
    if results["_layer"][0] is not True:
        pytest.skip(f"seccomp layer not active here: {results['_layer'][1]}")
    for name in ("socket_inet", "socket_unix", "socket_netlink", "socketpair", "fork", "subprocess", "execv"):
        assert results[name] == "EPERM", (name, results)
    assert results["setxattr"] == "EPERM" and results["chmod"] == "EPERM"
    assert results["thread"] == "ok"  # Python threads still work
    assert not marker.exists()


def test_seccomp_program_shape() -> None:
    """Every refused syscall number appears once, the program ends by allowing, and it fits the
    kernel's 4096-instruction limit."""
    program = sandbox.seccomp_program()
    numbers = [k for code, _, _, k in program if code == sandbox.BPF_JEQ_K]
    assert len(program) < 4096
    assert program[-1] == (sandbox.BPF_RET_K, 0, 0, sandbox.SECCOMP_RET_ALLOW)
    for number in sandbox.SECCOMP_REFUSED_X86_64.values():
        assert numbers.count(number) == 1


def test_confine_child_reports_every_layer() -> None:
    results = _in_confined_child(
        lambda: sandbox.LayerState("all", True, json.dumps([vars(s) for s in sandbox.confine_child()])), {}
    )
    layers = {layer["name"]: layer for layer in json.loads(results["_layer"][1])}
    assert list(layers) == ["parent_death_signal", "process_group", "network_namespace", "landlock", "seccomp"]
    for layer in layers.values():
        assert layer["detail"], layer  # active or not, it says what or why


def test_network_namespace_unprivileged(listener: socket.socket) -> None:
    """As a user without privileges (what CI may be), through a user namespace where the kernel
    allows one; where it does not, the layer says so and why."""
    port = listener.getsockname()[1]

    def as_nobody() -> sandbox.LayerState:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        import ctypes

        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, which setuid from root cleared
        return sandbox.private_network()

    results = _in_confined_child(as_nobody, {"connect": _connect(port)})
    active, detail = results["_layer"]
    if active:
        assert "user and network namespace" in detail and "not written" not in detail, detail
        assert results["connect"] == "ENETUNREACH", results
        assert not _accepted(listener)
    else:
        assert "unshare(CLONE_NEWUSER|CLONE_NEWNET)" in detail and "E" in detail, detail
