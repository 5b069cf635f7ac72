"""Containment: a replay never touches the host network and writes only inside its output folder.

The full replays run in a subprocess whose ``sitecustomize`` replaces the socket entry points
by functions that shout on stderr and raise, with HOME, the matplotlib cache and the working
directory inside tmp_path, so the whole tree the replay could touch can be snapshotted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.containment import ContainmentViolation, Guard, install, uninstall
from emulator.responders.base import HttpRequest
from emulator.responders.github import GithubResponder

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "bins" / "hello.dll"
SCENARIO_3CX = REPO / "scenarios" / "3cx"
MARKER = "HOST-SOCKET-ATTEMPT"

SITECUSTOMIZE = f"""
import os
import socket


def _refuse(*args, **kwargs):
    os.write(2, b"{MARKER} %r\\n" % (args[1:2],))
    raise OSError("host network disabled by tests/test_containment.py")


socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.socket.sendto = _refuse
socket.getaddrinfo = _refuse
socket.gethostbyname = _refuse
socket.gethostbyname_ex = _refuse
socket.create_connection = _refuse
"""


# ---- helpers --------------------------------------------------------------------------------


def _sandbox(tmp_path: Path, *, warm_matplotlib: bool) -> dict[str, str]:
    """Environment for a child chainreplay: no network, HOME and caches inside tmp_path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MPL", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        MPLCONFIGDIR=str(tmp_path / "mpl"),
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if warm_matplotlib:
        # What any first use of matplotlib does (build its font cache), done before the replay.
        subprocess.run(
            [sys.executable, "-c", "import matplotlib.pyplot"], env=env, check=True, timeout=120, cwd=tmp_path
        )
    return env


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    state = {}
    for path in root.rglob("*"):
        if path == skip or skip in path.parents:
            continue
        st = path.lstat()
        state[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return state


def _run_sandboxed(
    tmp_path: Path, target: Path, *extra: str, warm_matplotlib: bool = True, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[str]]:
    """Run ``chainreplay run target`` in the sandbox; return the process, the report and what
    changed in tmp_path outside the output folder."""
    env = _sandbox(tmp_path, warm_matplotlib=warm_matplotlib)
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "existing.txt").write_text("untouched\n", encoding="utf-8")
    outdir = tmp_path / "out"
    before = _snapshot(tmp_path, outdir)
    proc = subprocess.run(
        [sys.executable, "-m", "emulator", "run", str(target), "-o", str(outdir), "-q", *extra],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    after = _snapshot(tmp_path, outdir)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert MARKER not in proc.stderr, proc.stderr
    report_path = outdir / "report.json"
    assert report_path.is_file(), (proc.returncode, proc.stderr)
    return proc, json.loads(report_path.read_text(encoding="utf-8")), changed


def _assert_contained(report: dict[str, Any]) -> None:
    containment = report["containment"]
    assert containment["host_sockets_opened"] == 0
    assert containment["host_name_lookups"] == 0
    assert containment["writes_outside_outdir"] == 0, containment
    assert containment["violations"] == [], containment
    assert containment["isolation"] == "child process"


# ---- full replays without a host network ------------------------------------------------------


def test_bare_dll_replay_is_contained(tmp_path: Path) -> None:
    proc, report, changed = _run_sandboxed(tmp_path, HELLO, "--export", "Greet", "--arg", "str:world", "--arg", "3")
    assert proc.returncode == 0, proc.stderr
    assert report["outcome"]["status"] == "completed", report["outcome"]
    _assert_contained(report)
    assert changed == [], f"the replay wrote outside its output folder: {changed}"
    # The guest's file write lands in the report, never on the host path it named.
    assert [d["path"] for d in report["dropped"]] == ["C:\\Users\\Public\\greeting.txt"]
    assert not (tmp_path / "out" / "greeting.txt").exists()


def test_3cx_replay_is_contained(tmp_path: Path) -> None:
    scenario = tmp_path / "3cx"
    shutil.copytree(SCENARIO_3CX, scenario, ignore=shutil.ignore_patterns("__pycache__"))
    proc, report, changed = _run_sandboxed(tmp_path, scenario)
    assert proc.returncode == 0, proc.stderr
    assert report["outcome"]["status"] == "completed", report["outcome"]
    _assert_contained(report)
    assert changed == [], f"the replay wrote outside its output folder: {changed}"
    # The chain did reach the synthetic internet: every exchange was answered in-process.
    http = [n for n in report["network"] if n["kind"] == "http"]
    assert http, report["network"]
    assert {n["responder"] for n in http} <= {"github", "c2"}
    assert all(n["host"] != "" for n in report["network"])


def test_cold_matplotlib_cache_is_not_a_violation(tmp_path: Path) -> None:
    """First use of matplotlib (font cache build under $MPLCONFIGDIR) must not count as a write
    outside the output folder (regression: the drawing used to import it under the guard)."""
    proc, report, _ = _run_sandboxed(tmp_path, HELLO, warm_matplotlib=False)
    assert proc.returncode == 0, proc.stderr
    _assert_contained(report)


def test_in_process_replay_opens_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same with the CLI in this process (the emulation child is forked from it)."""
    import matplotlib.pyplot  # noqa: F401 - font cache built here, outside any guard

    from emulator.cli import main

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("host network disabled by test")

    for name in ("getaddrinfo", "gethostbyname", "create_connection"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    outdir = tmp_path / "out"
    rc = main(
        [
            "run",
            str(HELLO),
            "--in-process",
            "--export",
            "Greet",
            "--arg",
            "str:x",
            "--arg",
            "1",
            "-o",
            str(outdir),
            "-q",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert attempts == []
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["containment"]["isolation"] == "in-process"
    assert report["containment"]["host_sockets_opened"] == 0
    assert report["containment"]["writes_outside_outdir"] == 0, report["containment"]


# ---- the audit-hook guard -----------------------------------------------------------------------


@pytest.fixture
def guard(tmp_path: Path) -> Any:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    active = install(Guard(allowed_write_root=allowed.resolve()))
    try:
        yield active
    finally:
        uninstall(active)


def test_guard_refuses_writes_outside_the_root(guard: Guard, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    with pytest.raises(ContainmentViolation):
        open(other, "w")  # noqa: SIM115
    with pytest.raises(ContainmentViolation):
        open(other, "ab")  # noqa: SIM115
    with pytest.raises(ContainmentViolation):
        os.open(other, os.O_WRONLY | os.O_CREAT)
    assert not other.exists()
    assert guard.writes_blocked == 3
    assert all("other.txt" in v for v in guard.violations)


def test_guard_allows_reads_and_writes_inside(guard: Guard, tmp_path: Path) -> None:
    inside = tmp_path / "allowed" / "sub" / "x.txt"
    inside.parent.mkdir()
    inside.write_text("ok", encoding="utf-8")
    assert inside.read_text(encoding="utf-8") == "ok"
    assert HELLO.read_bytes()[:2] == b"MZ"  # reading anywhere is fine
    assert guard.writes_blocked == 0 and guard.violations == []


def test_guard_sees_through_dotdot_and_symlinks(guard: Guard, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    with pytest.raises(ContainmentViolation):
        open(allowed / ".." / "escape.txt", "w")  # noqa: SIM115
    (allowed / "link").symlink_to(tmp_path)
    with pytest.raises(ContainmentViolation):
        open(allowed / "link" / "escape.txt", "w")  # noqa: SIM115
    assert not (tmp_path / "escape.txt").exists()


def test_guard_refuses_network(guard: Guard) -> None:
    with pytest.raises(ContainmentViolation):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(ContainmentViolation):
        socket.getaddrinfo("example.com", 80)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(ContainmentViolation):
        sock.sendto(b"x", ("127.0.0.1", 9))
    assert guard.sockets_blocked >= 1
    assert guard.lookups_blocked >= 1


def test_guard_off_after_uninstall(tmp_path: Path) -> None:
    active = install(Guard(allowed_write_root=None))
    uninstall(active)
    target = tmp_path / "after.txt"
    target.write_text("fine", encoding="utf-8")
    assert active.writes_blocked == 0 and not active.active


def test_guard_with_no_root_refuses_every_write(tmp_path: Path) -> None:
    active = install(Guard(allowed_write_root=None))
    try:
        with pytest.raises(ContainmentViolation):
            open(tmp_path / "x", "w")  # noqa: SIM115
    finally:
        uninstall(active)


# ---- the github responder cannot be walked out of ----------------------------------------------


@pytest.fixture
def github(tmp_path: Path) -> GithubResponder:
    root = tmp_path / "scen" / "github"
    (root / "o" / "r" / "main").mkdir(parents=True)
    (root / "o" / "r" / "main" / "file.txt").write_text("inside", encoding="utf-8")
    (tmp_path / "scen" / "secret.txt").write_text("secret", encoding="utf-8")
    (root / "o" / "r" / "main" / "link.txt").symlink_to(tmp_path / "scen" / "secret.txt")
    return GithubResponder("github", {"root": "github"}, tmp_path / "scen")


@pytest.mark.parametrize(
    "path",
    [
        "/a/b/c/../../../../etc/passwd",
        "/o/r/main/../../../../secret.txt",
        "/o/r/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/o/r/main/..%2f..%2f..%2f..%2fsecret.txt",
        "//etc/passwd",
        "/o/r/main//etc/passwd",
        "/o/r/main/link.txt",
        "/o/r/main/..\\..\\..\\..\\secret.txt",
        "/o/r/main/file.txt%00.png",
        "/o/r/main/" + "x" * 300,
        "/o/r/" + "x" * 300 + "/file.txt",
    ],
)
def test_github_root_cannot_be_escaped(github: GithubResponder, path: str) -> None:
    response = github.respond(HttpRequest("GET", "https", "raw.githubusercontent.com", 443, path))
    assert response.status == 404, (path, response)
    assert b"secret" not in response.body and b"root:" not in response.body


def test_github_serves_inside(github: GithubResponder) -> None:
    response = github.respond(HttpRequest("GET", "https", "raw.githubusercontent.com", 443, "/o/r/main/file.txt"))
    assert response.status == 200 and response.body == b"inside"
