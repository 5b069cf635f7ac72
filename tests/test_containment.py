"""Containment: a replay never touches the host network and writes only inside its output folder.

The full replays run in a subprocess whose ``sitecustomize`` replaces the socket entry points
by functions that shout on stderr and raise, with HOME, the caches and the working
directory inside tmp_path, so the whole tree the replay could touch can be snapshotted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from emulator.containment import ContainmentViolation, Guard, install, uninstall
from emulator.responders.base import HttpRequest, HttpResponse, Responder
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


def _sandbox(tmp_path: Path) -> dict[str, str]:
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
    tmp_path: Path, target: Path, *extra: str, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[str]]:
    """Run ``chainreplay run target`` in the sandbox; return the process, the report and what
    changed in tmp_path outside the output folder."""
    env = _sandbox(tmp_path)
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
    for refused in ("host_connects_refused", "host_name_lookups_refused", "writes_outside_outdir_refused"):
        assert containment[refused] == 0, containment
    assert containment["host_processes_refused"] == 0, containment
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


def test_cold_home_is_not_a_violation(tmp_path: Path) -> None:
    """First use of the renderers with a cold HOME must not count as a write outside the output
    folder (regression: matplotlib, which drew the graph then, built its font cache under the guard)."""
    proc, report, _ = _run_sandboxed(tmp_path, HELLO)
    assert proc.returncode == 0, proc.stderr
    _assert_contained(report)


def test_in_process_replay_opens_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same with the CLI in this process (the emulation child is forked from it)."""
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
    assert report["containment"]["host_connects_refused"] == 0
    assert report["containment"]["writes_outside_outdir_refused"] == 0, report["containment"]


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
    with pytest.raises(ContainmentViolation):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ContainmentViolation):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    assert guard.sockets_blocked >= 2  # create_connection is refused at its name lookup
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


# ---- the guard: every way of changing the file system or starting a process ---------------------


def test_guard_refuses_file_changes_outside(guard: Guard, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    victim = outside / "victim.txt"
    uninstall(guard)
    outside.mkdir()
    victim.write_text("keep", encoding="utf-8")
    install(guard)
    attempts = [
        lambda: os.remove(victim),
        lambda: os.rename(victim, outside / "renamed.txt"),
        lambda: os.replace(victim, tmp_path / "allowed" / "stolen.txt"),  # source outside
        lambda: os.mkdir(outside / "new"),
        lambda: os.symlink("/etc/passwd", outside / "link"),
        lambda: os.link(victim, outside / "hard"),
        lambda: os.truncate(victim, 0),
        lambda: os.chmod(victim, 0o777),
        lambda: os.utime(victim, (0, 0)),
        lambda: shutil.rmtree(outside),
    ]
    for attempt in attempts:
        with pytest.raises(ContainmentViolation):
            attempt()
    assert guard.writes_blocked == len(attempts)
    assert victim.read_text(encoding="utf-8") == "keep"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_guard_allows_file_changes_inside(guard: Guard, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    os.mkdir(allowed / "d")
    (allowed / "d" / "a").write_text("x", encoding="utf-8")
    os.rename(allowed / "d" / "a", allowed / "d" / "b")
    os.chmod(allowed / "d" / "b", 0o600)
    os.remove(allowed / "d" / "b")
    os.rmdir(allowed / "d")
    # a link inside that points out may be removed (that acts on the link), not written through
    (allowed / "link").symlink_to(HELLO)
    with pytest.raises(ContainmentViolation):
        open(allowed / "link", "ab")  # noqa: SIM115
    os.remove(allowed / "link")
    assert HELLO.is_file()
    assert guard.writes_blocked == 1


def test_a_folder_inside_is_cleared_under_the_guard_without_following_links(tmp_path: Path) -> None:
    """The output folder's clearing (an earlier run's detections/, or exports the copy wrote that
    the parent replaces) runs under the guard: every entry goes, nested folders too, a link to a
    folder outside is removed as a link and what it points to is left alone. It was
    ``shutil.rmtree``, which removes entries relative to a descriptor: refused by the guard."""
    from emulator.output import _clear

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "victim.txt").write_text("keep", encoding="utf-8")
    folder = allowed / "detections"
    (folder / "yara" / "deeper").mkdir(parents=True)
    (folder / "suricata.rules").write_text("x", encoding="utf-8")
    (folder / "yara" / "a.yar").write_text("x", encoding="utf-8")
    (folder / "yara" / "deeper" / "b").write_text("x", encoding="utf-8")
    (folder / "out").symlink_to(outside / "keep", target_is_directory=True)
    (folder / "yara" / "file-link").symlink_to(outside / "keep" / "victim.txt")
    guard = install(Guard(allowed_write_root=allowed.resolve()))
    try:
        _clear(folder)
    finally:
        uninstall(guard)
    assert not folder.exists() and sorted(p.name for p in allowed.iterdir()) == []
    assert (outside / "keep" / "victim.txt").read_text(encoding="utf-8") == "keep"
    assert guard.writes_blocked == 0 and guard.violations == []


def test_guard_checks_where_a_descriptor_points(guard: Guard, tmp_path: Path) -> None:
    """fchmod / ftruncate on a descriptor opened for reading outside the folder are refused."""
    with open(HELLO, "rb") as handle:
        with pytest.raises(ContainmentViolation):
            os.chmod(handle.fileno(), 0o777)
        with pytest.raises(ContainmentViolation):
            os.truncate(handle.fileno(), 0)
    assert HELLO.read_bytes()[:2] == b"MZ"


def test_guard_refuses_processes(guard: Guard) -> None:
    with pytest.raises(ContainmentViolation):
        subprocess.run(["true"], check=False)
    with pytest.raises(ContainmentViolation):
        os.system("true")
    assert guard.processes_blocked == 2


def test_guard_turns_off_bytecode_writing_while_active(tmp_path: Path) -> None:
    """A module first imported during the replay must not try to write its __pycache__ entry."""
    before = sys.dont_write_bytecode
    active = install(Guard(allowed_write_root=None))
    try:
        assert sys.dont_write_bytecode is True
    finally:
        uninstall(active)
    assert sys.dont_write_bytecode is before


# ---- a user responder that reaches for the host: refused, the replay stops, the report says so ---

WINHTTP = REPO / "scenarios" / "winhttp-downloader"


class _Hostile(Responder):
    """Answers every host; before answering it does what ``attempt`` does."""

    def handles_host(self, host: str) -> bool:
        return True

    def attempt(self) -> None:
        raise NotImplementedError

    def respond(self, request: HttpRequest) -> HttpResponse:
        self.attempt()
        return HttpResponse(200, {"Content-Type": "application/octet-stream"}, b"\xc3")


class ConnectingResponder(_Hostile):
    def attempt(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.connect(("127.0.0.1", 9))


class ResolvingResponder(_Hostile):
    def attempt(self) -> None:
        socket.create_connection(("example.com", 80), timeout=1)


class WritingResponder(_Hostile):
    def attempt(self) -> None:
        with open(str(self.options["path"]), "w", encoding="utf-8") as handle:
            handle.write("escaped")


class SwallowingResponder(_Hostile):
    """Catches the refusal and answers anyway: the attempt is still counted and named."""

    def attempt(self) -> None:
        try:
            with open(str(self.options["path"]), "w", encoding="utf-8") as handle:
                handle.write("escaped")
        except OSError:
            pass


class SpawningResponder(_Hostile):
    def attempt(self) -> None:
        subprocess.run(["touch", str(self.options["path"])], check=False)


class WritingAtLoadResponder(_Hostile):
    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        super().__init__(name, options, scenario_dir)
        with open(str(options["path"]), "w", encoding="utf-8") as handle:
            handle.write("escaped")


HOSTILE_RESPONDERS = [
    ("ConnectingResponder", "host_connects_refused", "socket AF_INET"),
    ("ResolvingResponder", "host_name_lookups_refused", "socket.getaddrinfo"),
    ("WritingResponder", "writes_outside_outdir_refused", "write to"),
    ("SwallowingResponder", "writes_outside_outdir_refused", "write to"),
    ("SpawningResponder", "host_processes_refused", "subprocess.Popen"),
]
COUNTS = [
    "host_connects_refused",
    "host_name_lookups_refused",
    "writes_outside_outdir_refused",
    "host_processes_refused",
]


def _hostile_scenario(tmp_path: Path, class_name: str, escape: Path) -> Path:
    folder = tmp_path / "scenario"
    shutil.copytree(WINHTTP, folder, ignore=shutil.ignore_patterns("__pycache__", "build"))
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    start, end = text.index("[[responders]]"), text.index("[limits]")
    responder = (
        f'[[responders]]\ntype = "python"\nname = "hostile"\nclass = "{__name__}:{class_name}"\n'
        f"options = {{ path = {json.dumps(str(escape))} }}\n\n"
    )
    (folder / "scenario.toml").write_text(text[:start] + responder + text[end:], encoding="utf-8")
    return folder


@pytest.mark.parametrize(("class_name", "count", "named"), HOSTILE_RESPONDERS, ids=[h[0] for h in HOSTILE_RESPONDERS])
def test_hostile_user_responder_is_refused_and_reported(
    class_name: str, count: str, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.cli import E_CONTAINMENT, main

    escape = tmp_path / "escape.txt"
    folder = _hostile_scenario(tmp_path, class_name, escape)
    outdir = tmp_path / "out"
    rc = main(["run", str(folder), "-o", str(outdir), "-q"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert rc == E_CONTAINMENT, captured.err
    assert not escape.exists()
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "containment", report["outcome"]
    assert named in report["outcome"]["detail"], report["outcome"]
    containment = report["containment"]
    assert containment[count] == 1, containment
    assert all(containment[other] == 0 for other in COUNTS if other != count), containment
    assert containment["violations"] and named in containment["violations"][0]
    assert containment["isolation"] == "child process"
    # the exchange that triggered it is in the report, with the refusal as its error
    [exchange] = [n for n in report["network"] if n["kind"] == "http"]
    assert exchange["responder"] == "hostile"
    if class_name != "SwallowingResponder":
        assert exchange["error"] and "containment: refused" in exchange["error"], exchange
        # the run that made the request ended there: the downloaded stage never ran
        assert len(report["stages"]) == 1, report["stages"]


def test_hostile_responder_in_process(tmp_path: Path) -> None:
    """The same refusal and counts when emulating in this process (no child)."""
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    escape = tmp_path / "escape.txt"
    plan = load_scenario(_hostile_scenario(tmp_path, "WritingResponder", escape))
    result = replay_target(plan, tmp_path / "out", isolate=False)
    assert result.status == "containment"
    assert not escape.exists()
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    assert report["containment"]["writes_outside_outdir_refused"] == 1
    assert report["containment"]["isolation"] == "in-process"


def test_responder_writing_at_load_is_refused_in_the_child(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user responder is never built in the CLI: its constructor runs in the contained child,
    where the write is refused and the replay's outcome says so (exit 3)."""
    from emulator.cli import E_CONTAINMENT, main

    escape = tmp_path / "escape.txt"
    folder = _hostile_scenario(tmp_path, "WritingAtLoadResponder", escape)
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == E_CONTAINMENT, err
    assert "Traceback" not in err
    assert not escape.exists()
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "containment", report["outcome"]
    assert report["containment"]["writes_outside_outdir_refused"] == 1


def test_unimportable_user_responder_is_the_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A class that cannot be imported is found in the child, where user code runs: outcome
    error naming it, one line, exit 0 (the replay ran and says why it stopped)."""
    from emulator.cli import main

    folder = _hostile_scenario(tmp_path, "X", tmp_path / "unused")
    text = (folder / "scenario.toml").read_text(encoding="utf-8").replace(f"{__name__}:X", "no.such.module:X")
    (folder / "scenario.toml").write_text(text, encoding="utf-8")
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "error"
    assert "no.such.module" in report["outcome"]["detail"] and "\n" not in report["outcome"]["detail"]


def test_cli_never_imports_a_user_responder(tmp_path: Path) -> None:
    """Loading a scenario with a python responder imports nothing: the module would shout."""
    from emulator.scenario import load_scenario

    module = tmp_path / "shouting_responder.py"
    module.write_text("raise SystemExit('imported in the CLI')\n", encoding="utf-8")
    folder = _hostile_scenario(tmp_path, "X", tmp_path / "unused")
    text = (folder / "scenario.toml").read_text(encoding="utf-8").replace(f"{__name__}:X", "shouting_responder:X")
    (folder / "scenario.toml").write_text(text, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        plan = load_scenario(folder)
    finally:
        sys.path.remove(str(tmp_path))
    assert "shouting_responder" not in sys.modules
    assert plan.responders[0].class_path == "shouting_responder:X"


# ---- hostile user responders that go around the audit hook: the kernel layers refuse ----------


class _Listener:
    """A loopback TCP listener in the test process: did anything connect?"""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except (TimeoutError, OSError):
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


def _ctypes_connect(port: int) -> None:
    import ctypes
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(2, 1, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket refused")
    address = struct.pack("<HH4s8x", 2, socket.htons(port), socket.inet_aton("127.0.0.1"))
    if libc.connect(fd, address, len(address)) != 0:
        raise OSError(ctypes.get_errno(), "connect refused")


class CtypesConnectResponder(_Hostile):
    def attempt(self) -> None:
        _ctypes_connect(int(self.options["port"]))


class ForkExecResponder(_Hostile):
    def attempt(self) -> None:
        import _posixsubprocess  # type: ignore[import-not-found]

        args = [b"/usr/bin/touch", os.fsencode(str(self.options["path"]))]
        errpipe_read, errpipe_write = os.pipe()
        try:
            _posixsubprocess.fork_exec(
                args, [args[0]], True, (errpipe_write,), None, None,
                -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write,
                False, False, -1, None, None, None, -1, None, True,
            )  # fmt: skip
        finally:
            os.close(errpipe_read)
            os.close(errpipe_write)


class ForkResponder(_Hostile):
    def attempt(self) -> None:
        pid = os.fork()
        if pid == 0:
            Path(str(self.options["path"])).write_text("child", encoding="utf-8")
            os._exit(0)


class SqliteResponder(_Hostile):
    def attempt(self) -> None:
        import sqlite3

        sqlite3.connect(str(self.options["path"])).execute("create table t (x)")


class XattrResponder(_Hostile):
    def attempt(self) -> None:
        os.setxattr(str(self.options["victim"]), "user.chainreplay", b"1")


class ThreadAtLoadResponder(_Hostile):
    """Starts a thread in __init__ that acts when the first request comes (later, mid-replay)."""

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        import threading

        super().__init__(name, options, scenario_dir)
        self.go = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._later, daemon=True).start()

    def _later(self) -> None:
        self.go.wait()
        try:
            Path(str(self.options["path"])).write_text("escaped", encoding="utf-8")
        finally:
            self.done.set()

    def attempt(self) -> None:
        self.go.set()
        self.done.wait(10)


class NonDaemonThreadResponder(_Hostile):
    """A non-daemon thread that never ends: the CLI must exit anyway."""

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        import threading
        import time

        super().__init__(name, options, scenario_dir)
        threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)], daemon=False).start()

    def attempt(self) -> None:
        pass


NATIVE_HOSTILE = [
    ("CtypesConnectResponder", "host_connects_refused", "ctypes socket()"),
    ("ForkExecResponder", None, "kernel refused"),
    ("ForkResponder", "host_processes_refused", "os.fork"),
    ("SqliteResponder", "writes_outside_outdir_refused", "sqlite3.connect"),
    ("XattrResponder", "writes_outside_outdir_refused", "os.setxattr"),
    ("ThreadAtLoadResponder", "writes_outside_outdir_refused", "write to"),
]


@pytest.mark.parametrize(("class_name", "count", "named"), NATIVE_HOSTILE, ids=[h[0] for h in NATIVE_HOSTILE])
def test_native_hostile_responder_is_refused(
    class_name: str, count: str | None, named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emulator.cli import E_CONTAINMENT, main

    escape = tmp_path / "escape.txt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    listener = _Listener()
    try:
        folder = _hostile_scenario(tmp_path, class_name, escape)
        text = (folder / "scenario.toml").read_text(encoding="utf-8")
        text = text.replace(
            "options = { path = ", f"options = {{ port = {listener.port}, victim = {json.dumps(str(victim))}, path = "
        )
        (folder / "scenario.toml").write_text(text, encoding="utf-8")
        outdir = tmp_path / "out"
        rc = main(["run", str(folder), "-o", str(outdir), "-q"])
        captured = capsys.readouterr()
        assert not listener.connected(), "the responder reached the loopback listener"
    finally:
        listener.close()
    assert "Traceback" not in captured.err, captured.err
    assert rc == E_CONTAINMENT, captured.err
    assert not escape.exists()
    assert os.listxattr(victim) == [] and victim.read_text(encoding="utf-8") == "keep"
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "containment", report["outcome"]
    containment = report["containment"]
    assert named in report["outcome"]["detail"], report["outcome"]
    if count is not None:
        assert containment[count] >= 1, containment
    else:
        assert containment["kernel_refusals"] >= 1, containment
    assert {layer["name"]: layer["active"] for layer in containment["layers"]} == {
        "parent_death_signal": True,
        "process_group": True,
        "network_namespace": True,
        "landlock": True,
        "seccomp": True,
    }


def test_non_daemon_thread_does_not_keep_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from emulator.cli import main

    folder = _hostile_scenario(tmp_path, "NonDaemonThreadResponder", tmp_path / "unused")
    began = time.monotonic()
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert time.monotonic() - began < 60
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed"
    # the CLI's own process never ran the responder: no thread of it here
    import threading

    assert not [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]


# ---- dropped files: stored under their sha256, the guest's name kept only sanitised ------------

DROPNAMES = REPO / "tests" / "bins" / "robust" / "dropnames.exe"
HOSTILE_NAMES = [
    "..\\..\\x",
    "C:\\..\\..\\x",
    "/etc/passwd",
    "\\\\evil-server\\share\\x.txt",
    "\\\\?\\UNC\\evil-server\\share\\x.txt",
    "CON",
    "C:\\Users\\Public\\NUL.txt",
    "C:\\Users\\Public\\a\x00b.txt",
    "C:\\Users\\Public\\" + "A" * 300,
    "C:\\Users\\Public\\invoice\u202etxt.exe",
    "C:\\Users\\Public\\bad\ud800surrogate.txt",
    "C:\\Users\\Public\\line\r\nbreak\x1b[31m.txt",
]


def _assert_safe_display(name: str) -> None:
    import unicodedata

    assert len(name) <= 260, name
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name), ascii(name)
    name.encode("utf-8")  # serialises


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_for_display_makes_hostile_names_inert(name: str) -> None:
    from emulator.sanitize import for_display

    shown = for_display(name)
    _assert_safe_display(shown)
    if name.isprintable() and len(name) <= 260:
        assert shown == name  # plain names are shown as they are


def _fake_outputs(out: Path, dropped: dict[str, bytes]) -> Any:
    """The output folder of a trace with no events that dropped ``dropped`` (guest path -> bytes)."""
    import hashlib

    from emulator.output import produce
    from emulator.trace import EntryOrigin, Trace, TraceContainment, TraceHeader

    blobs = {hashlib.sha256(data).hexdigest(): data for data in dropped.values()}
    header = TraceHeader(
        engine="test",
        name="t",
        target_path="t",
        target_sha256="0" * 64,
        entry_origin=EntryOrigin(type="file", ref="C:\\t.exe"),
        seed=1,
        start_time=0,
        status="completed",
        dropped={path: hashlib.sha256(data).hexdigest() for path, data in dropped.items()},
        containment=TraceContainment(isolation="in-process"),
        events=0,
        blobs=sorted(blobs),
    )
    out.mkdir(parents=True, exist_ok=True)
    return produce(out, Trace(header, [], blobs))


def test_hostile_dropped_names_are_stored_by_sha256(tmp_path: Path) -> None:
    import hashlib

    dropped = {name: f"content {i}".encode() for i, name in enumerate(HOSTILE_NAMES)}
    out = tmp_path / "out"
    report = _fake_outputs(out, dropped)
    json.loads((out / "report.json").read_text(encoding="utf-8"))  # the report serialises
    assert len(report.dropped) == len(HOSTILE_NAMES)
    for record in report.dropped:
        _assert_safe_display(record.path)
        assert record.stored_as == f"dropped/{record.sha256}"
        assert hashlib.sha256((out / record.stored_as).read_bytes()).hexdigest() == record.sha256
    from emulator.export import DETECTIONS_DIR, EXPORT_FILES

    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    exports = {n for n in names if n in EXPORT_FILES or n.split("/")[0] == DETECTIONS_DIR}
    assert exports >= set(EXPORT_FILES)  # the exports too are written under fixed names
    assert names - exports == {"dropped", "report.json", *GRAPH_FILES, *(r.stored_as for r in report.dropped)}
    assert report.containment.writes_outside_outdir_refused == 0


from emulator.render import RENDERED_FILES as GRAPH_FILES  # noqa: E402 - every rendered file


def _plant(out: Path, outside: Path, digests: list[str]) -> dict[Path, bytes]:
    """Links left in the output folder before the replay; returns the outside files and their bytes."""
    outside.mkdir()
    (out / "dropped").mkdir(parents=True)
    (outside / "stages").mkdir()
    planted = {}
    for name in ("symlinked.txt", "hardlinked.txt", "report.txt", "graph.txt"):
        (outside / name).write_bytes(f"outside {name}\n".encode())
        planted[outside / name] = (outside / name).read_bytes()
    (out / "dropped" / digests[0]).symlink_to(outside / "symlinked.txt")
    os.link(outside / "hardlinked.txt", out / "dropped" / digests[1])
    os.link(outside / "report.txt", out / "report.json")
    (out / "stage_graph.png").symlink_to(outside / "graph.txt")
    (out / "stages").symlink_to(outside / "stages", target_is_directory=True)
    return planted


def test_planted_links_in_outdir_are_replaced_not_followed(tmp_path: Path) -> None:
    import hashlib

    dropped = {"C:\\a.txt": b"first", "C:\\b.txt": b"second"}
    digests = [hashlib.sha256(d).hexdigest() for d in dropped.values()]
    out, outside = tmp_path / "out", tmp_path / "outside"
    planted = _plant(out, outside, digests)
    report = _fake_outputs(out, dropped)
    for path, data in planted.items():
        assert path.read_bytes() == data, f"{path} was written through a link"
    assert list((outside / "stages").iterdir()) == []
    for digest, data in zip(digests, dropped.values(), strict=True):
        stored = out / "dropped" / digest
        assert not stored.is_symlink() and stored.stat().st_nlink == 1 and stored.read_bytes() == data
    assert (out / "report.json").stat().st_nlink == 1
    assert not (out / "stage_graph.png").is_symlink()
    assert report.containment.writes_outside_outdir_refused == 0 and report.containment.violations == []


def test_symlinked_dropped_folder_is_replaced(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "dropped").symlink_to(outside, target_is_directory=True)
    report = _fake_outputs(out, {"..\\..\\x": b"payload"})
    assert list(outside.iterdir()) == []
    assert (out / "dropped").is_dir() and not (out / "dropped").is_symlink()
    assert (out / report.dropped[0].stored_as).read_bytes() == b"payload"


def test_real_sample_dropping_hostile_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tests/bins/robust/dropnames.exe drops files named ..\\..\\x, C:\\..\\..\\x, /etc/passwd, a UNC
    path, CON, 300 characters and a right-to-left override, into an output folder where links
    were planted beforehand: every file lands in OUTDIR/dropped/<sha256>, nothing is followed."""
    import hashlib

    from emulator.cli import main

    contents = [f"dropped file #{i:02d}\n".encode() for i in range(7)]
    digests = [hashlib.sha256(c).hexdigest() for c in contents]
    out, outside = tmp_path / "out", tmp_path / "outside"
    planted = _plant(out, outside, digests)
    (out / ".chainreplay").write_text("an earlier run's folder, links planted in it since\n", encoding="utf-8")
    rc = main(["run", str(DROPNAMES), "-o", str(out), "-q"])
    captured = capsys.readouterr()
    assert rc == 0 and "Traceback" not in captured.err, captured.err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed", report["outcome"]
    _assert_contained(report)
    for path, data in planted.items():
        assert path.read_bytes() == data, f"{path} was written through a link"
    assert list((outside / "stages").iterdir()) == []
    shown = {d["path"]: d for d in report["dropped"]}
    long_name = "C:\\Users\\Public\\" + "A" * 300 + ".txt"
    assert sorted(shown) == sorted(
        [
            "..\\..\\dotdot.txt",
            "C:\\..\\..\\drive-dotdot.txt",
            "/etc/passwd",
            "\\\\evil-server\\share\\unc.txt",
            "CON",
            "C:\\Users\\Public\\invoice\\u202etxt.exe",
            long_name[:257] + "...",
        ]
    )
    assert {d["sha256"] for d in report["dropped"]} == set(digests)
    for record in report["dropped"]:
        _assert_safe_display(record["path"])
        stored = out / record["stored_as"]
        assert record["stored_as"] == f"dropped/{record['sha256']}"
        assert not stored.is_symlink() and stored.stat().st_nlink == 1
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == record["sha256"]
    # nothing else appeared in or beside the output folder
    assert sorted(p.name for p in (out / "dropped").iterdir()) == sorted(digests)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside"]


# ---- what a user responder reports about itself always serialises --------------------------------


class WeirdStateResponder(_Hostile):
    def attempt(self) -> None:
        pass

    def state_summary(self) -> dict[Any, Any]:
        return {"h": "a\udc80b", 1: b"\x00\xff", "s": {3, 1}, "t": (1, "x"), "o": Path("/p")}


class RaisingStateResponder(_Hostile):
    def attempt(self) -> None:
        pass

    def state_summary(self) -> dict[str, Any]:
        raise ValueError("bad \udc80 state")


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        (
            "WeirdStateResponder",
            {"h": "a\\udc80b", "1": "00ff", "s": [1, 3], "t": [1, "x"], "o": "PosixPath('/p')"},
        ),
        ("RaisingStateResponder", {"error": "ValueError: bad \\udc80 state"}),
    ],
)
def test_user_responder_state_always_serialises(class_name: str, expected: dict[str, Any], tmp_path: Path) -> None:
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    plan = load_scenario(_hostile_scenario(tmp_path, class_name, tmp_path / "unused"))
    result = replay_target(plan, tmp_path / "out", isolate=False)
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    assert report["responders"]["hostile"] == expected
    assert report["outcome"]["status"] != "containment", report["outcome"]


# ---- nothing written outside OUTDIR by anything, libraries included: strace proves it ---------

STRACE_WRITE_CALLS = {
    "creat",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "truncate",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "mknod",
    "mknodat",
}
STRACE_NETWORK_CALLS = {"socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg"}
WRITE_OPEN_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")


def _strace_findings(log: Path, outdir: Path) -> tuple[list[str], list[str]]:
    """(successful writes outside ``outdir``, network syscalls) in an ``strace -f -y`` log."""
    import re

    line_re = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
    writes, network = [], []
    inside = str(outdir)
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = line_re.match(line)
        if not match:
            continue
        call, args, ret = match.groups()
        if call in STRACE_NETWORK_CALLS:
            network.append(line)
            continue
        is_open_write = call in ("open", "openat", "openat2") and any(f in args for f in WRITE_OPEN_FLAGS)
        if not (call in STRACE_WRITE_CALLS or is_open_write) or ret.startswith("-"):
            continue
        # -y shows a descriptor argument as 4</its/path>: a relative name is joined to it
        fd_dirs = re.findall(r"\d+<([^>]*)>", args)
        names = re.findall(r'"([^"]*)"', args)
        targets = [n if n.startswith("/") or not fd_dirs else f"{fd_dirs[0]}/{n}" for n in names] or fd_dirs
        if any(not (t == inside or t.startswith(inside + "/") or t == "/dev/null") for t in targets):
            writes.append(line)
    return writes, network


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (.ci/run installs it)")
def test_strace_fresh_home_no_write_outside_outdir_no_network(tmp_path: Path) -> None:
    """The CLI and everything it loads (matplotlib and its font cache included), and the emulation
    child, on a fresh HOME: no file system change outside OUTDIR, no network syscall at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPL", "XDG_"))}
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "emulator", "run", str(HELLO), "--export", "Greet", "--arg", "str:x", "--arg", "1"]
    # A first run compiles the interpreter's bytecode caches of this checkout (Python's, not the replay's).
    warm = tmp_path / "warm"
    warm.mkdir()
    subprocess.run([*command, "-o", str(warm / "out"), "-q"], env={**env, "HOME": str(warm)}, check=True, timeout=300)
    home = tmp_path / "home"
    home.mkdir()
    outdir = tmp_path / "out"
    log = tmp_path / "strace.log"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-e", "trace=%file,%network", "-o", str(log), *command, "-o", str(outdir), "-q"],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    writes, network = _strace_findings(log, outdir)
    assert writes == [], "\n".join(writes[:20])
    assert network == [], "\n".join(network[:20])
    assert list(home.iterdir()) == [], "the replay wrote under a fresh HOME"
    assert not (outdir / ".matplotlib").exists()
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed"


def test_strace_parser_sees_writes_and_sockets(tmp_path: Path) -> None:
    """The parser above finds what it must (so an empty finding means something)."""
    log = tmp_path / "log"
    log.write_text(
        '10 openat(AT_FDCWD</x>, "/home/u/.cache/matplotlib/f.json", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</home/u/f>\n'
        '10 mkdir("/home/u/.config/matplotlib", 0777) = 0\n'
        '10 unlinkat(4</elsewhere>, "victim", 0) = 0\n'
        '10 unlinkat(4</out/.matplotlib>, "fontlist.json", 0) = 0\n'
        '10 openat(AT_FDCWD</x>, "/out/report.json", O_WRONLY|O_CREAT|O_EXCL, 0644) = 3</out/report.json>\n'
        '10 openat(AT_FDCWD</x>, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3</etc/passwd>\n'
        '10 mkdir("/tmp/refused", 0777) = -1 EACCES (Permission denied)\n'
        "11 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = -1 EPERM (Operation not permitted)\n",
        encoding="utf-8",
    )
    writes, network = _strace_findings(log, Path("/out"))
    assert len(writes) == 3 and "victim" in writes[2]
    assert len(network) == 1


def _lookup_in(thread_start: threading.Event | None, results: list[str]) -> threading.Thread:
    """A thread that looks up a numeric address (no resolver, no network) once told to, and
    records whether the guard refused it."""

    def look_up() -> None:
        if thread_start is not None:
            thread_start.wait(10)
        try:
            socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
            results.append("allowed")
        except ContainmentViolation:
            results.append("refused")

    return threading.Thread(target=look_up)


@pytest.mark.parametrize("spare", [True, False])
def test_a_host_processs_own_threads_are_spared_only_when_asked(tmp_path: Path, spare: bool) -> None:
    """A guard installed in a host process (a Dask worker) leaves the threads already running
    there alone when asked (their lookups are the host's, not the replay's), and still refuses
    the installing thread and every thread started after it."""
    go = threading.Event()
    host_results: list[str] = []
    host = _lookup_in(go, host_results)
    host.start()
    active = install(Guard(allowed_write_root=tmp_path, spare_host_threads=spare))
    try:
        go.set()
        host.join(10)
        later_results: list[str] = []
        later = _lookup_in(None, later_results)
        later.start()
        later.join(10)
        with pytest.raises(ContainmentViolation):
            socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
    finally:
        uninstall(active)
    assert host_results == (["allowed"] if spare else ["refused"])
    assert later_results == ["refused"]
    assert active.lookups_blocked == (2 if spare else 3)
