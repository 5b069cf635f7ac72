"""Cold start (issue 18): the pre-started emulation child, the engine's tables read ahead, the PEB
linked once, and [expect] checked without importing the analysis. Each shortcut must leave the
replay exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import python_stdout, report_without_time

from emulator import prestart
from emulator.cli import will_fork_a_replay
from emulator.replay import replay_target
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def _assert_same_memory(loaded: tuple[Any, Any], expected: tuple[Any, Any]) -> None:
    """Two loads (``_loaded_memory``) left the same regions with the same bytes."""
    regions, contents = loaded
    expected_regions, expected_contents = expected
    assert regions == expected_regions
    assert [b for b in contents if contents[b] != expected_contents.get(b)] == []


def test_a_prestarted_child_replays_exactly_as_a_fresh_fork(tmp_path: Path) -> None:
    plan = load_scenario(SCENARIOS / "winhttp-downloader")
    fresh = replay_target(plan, tmp_path / "fresh")
    prestart.start()
    child = prestart._started
    assert child is not None
    early = replay_target(plan, tmp_path / "early")
    assert prestart.take() is None  # used once
    assert child.exitcode is not None  # it was the one that emulated, and it ended
    assert early.status == fresh.status == "completed"
    assert report_without_time(tmp_path / "early" / "report.json") == report_without_time(
        tmp_path / "fresh" / "report.json"
    )
    trace = (tmp_path / "early" / "trace.jsonl").read_bytes()
    assert trace == (tmp_path / "fresh" / "trace.jsonl").read_bytes()


# How long a busy parent waits for its child to finish emulating without being read.
BUSY_PARENT_SECONDS = 120


@pytest.mark.parametrize("prestarted", [True, False], ids=["prestarted", "forked"])
def test_a_child_finishes_its_emulation_while_the_parent_reads_nothing(
    prestarted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent imports the output libraries (~1 s) before it reads the child's events. A child
    whose events fill the pipe (3CX: ~420 KB) must not wait for that: here the parent reads
    nothing until the child has exited, which it can only do once every event is in the pipe."""
    import emulator.replay as replay

    children: list[Any] = []
    start_child = replay._start_child

    def recorded_start(plan: Any) -> Any:
        started = start_child(plan)
        children.append(started[0])
        return started

    monkeypatch.setattr(replay, "_start_child", recorded_start)
    if prestarted:
        prestart.start()
    ended_unread: list[bool] = []

    def busy_parent() -> None:
        pid = children[0].pid
        deadline = time.monotonic() + BUSY_PARENT_SECONDS
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                ended_unread.append(True)
                return
            time.sleep(0.05)

    recording = replay.emulate_isolated(load_scenario(SCENARIOS / "3cx"), while_waiting=busy_parent)
    assert isinstance(children[0], prestart.EngineChild) is prestarted
    assert ended_unread == [True], "the child waited for its parent to read the events pipe"
    assert recording.outcome.status == "completed"
    assert len(recording.events) > 400


def test_a_dead_prestarted_child_is_replaced_by_a_new_fork(tmp_path: Path) -> None:
    prestart.start()
    child = prestart._started
    assert child is not None
    child.kill()
    child.join(timeout=10)
    result = replay_target(load_scenario(SCENARIOS / "benign-dll"), tmp_path / "out")
    assert result.status == "completed"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["outcome"]["status"] == "completed"


def test_an_unused_prestarted_child_ends_when_its_pipe_closes() -> None:
    prestart.start()
    child = prestart.take()
    assert child is not None and child.is_alive()
    child.plans.close()
    child.join(timeout=60)
    assert child.exitcode == 0  # ended on EOF, not killed


def test_a_forked_process_does_not_take_its_parents_child() -> None:
    prestart.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"1" if prestart.take() is None else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    child = prestart.take()
    assert child is not None
    child.discard()


@pytest.mark.parametrize(
    ("args", "forks"),
    [
        (["run", "scenarios/3cx"], True),
        (["run", "-o", "x", "sample.exe"], True),
        (["run", "--in-process", "scenarios/3cx"], False),
        (["run", "--dump-default-config"], False),
        (["run", "-h"], False),
        (["check", "scenarios/3cx", "scenarios/3cx-x86"], True),
        (["check", "-h"], False),
        (["render", "out"], False),
        ([], False),
    ],
)
def test_only_an_isolated_run_prestarts(args: list[str], forks: bool) -> None:
    assert will_fork_a_replay(args) is forks


def test_read_ahead_tables_leave_nothing_for_the_load_to_read() -> None:
    """After the warm-up steps, loading a target reads no export manifest file."""
    script = """
import sys
from pathlib import Path
from emulator.backends.speakeasy import setup, warm_steps
import speakeasy.windows.export_manifest as manifest
from emulator.scenario import load_scenario
for step in warm_steps():
    step()
read = []
original = manifest.ExportManifest.from_path
manifest.ExportManifest.from_path = lambda path: read.append(path) or original(path)
setup.load_target(load_scenario(Path(sys.argv[1])))
print(len(read))
"""
    stdout = python_stdout(script, str(SCENARIOS / "3cx"))
    assert stdout.strip() == "0"


def test_peb_linked_once_gives_the_same_3cx_replay(
    tmp_path: Path, scenario_outdir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 3CX chain's shellcode walks the loader list: with Speakeasy's own per-module linking
    the replay records exactly the same events."""
    from emulator.backends.speakeasy import compat_start

    shared = scenario_outdir("3cx")
    monkeypatch.setattr(compat_start, "link_peb_once", lambda emu: None)
    replay_target(load_scenario(SCENARIOS / "3cx"), tmp_path / "out", isolate=False)
    assert (tmp_path / "out" / "trace.jsonl").read_bytes() == (shared / "trace.jsonl").read_bytes()
    assert report_without_time(tmp_path / "out" / "report.json") == report_without_time(shared / "report.json")


def _loaded_memory(plan: object) -> tuple[list[tuple[int, int, int]], dict[int, bytes]]:
    """Unicorn's regions after loading ``plan``'s target, and each region's bytes (but the
    KUSER_SHARED_DATA clock, which moves between two identical loads); the API registry's
    entries in its address order, as a last pseudo-region."""
    from emulator.backends.speakeasy import setup

    emu = setup.load_target(plan).emu  # type: ignore[arg-type]
    regions = sorted((int(b), int(e), int(p)) for b, e, p in emu.get_mem_regions())
    contents = {
        begin: bytes(emu.mem_read(begin, end - begin + 1))
        for begin, end, _ in regions
        if "KUSER_SHARED_DATA" not in (emu.get_address_tag(begin) or "")
    }
    registry = emu.api_registry
    assert type(registry._addresses) is list
    entries = [
        (a, e.names, e.trap, e.initialized, e.module.name, e.export, e.binding_module, e.binding_name)
        for a in registry._addresses
        for e in [registry.entries[a]]
    ]
    assert len(entries) == len(registry.entries)
    modules = {id(module): module.name for module in emu.modules}  # the lookups, by module name
    lookups = [
        (modules.get(key, "?"), sorted((n, e.address) for n, e in registry.names[key].items()), ordinals)
        for key in registry.names
        for ordinals in [sorted((o, e.address) for o, e in registry.ordinals.get(key, {}).items())]
    ]
    traps = sorted((trap, entry.address) for trap, entry in registry.traps.items())
    contents[-1] = repr((entries, traps, lookups, registry._trap_count, registry.trap_base)).encode()
    return regions, contents


# What the tests below compare: loads of the two 3CX scenarios with the start-up shortcuts on
# ("shipped", as a replay loads) or some of them turned back into Speakeasy's own way. Each
# (scenario, state) is loaded once per module (a load takes about a second and ~12 MB of
# guest memory); the tests only read them. A state is the monkeypatches of one shortcut:
LOAD_STATES = {
    # every shortcut on
    "shipped": {},
    # no decoy registered from its template: the one-loop registration (register_exports)
    "loop": {"register_template": False},
    # no template and not the one loop: Speakeasy's register_module, its stubs written merged
    "loop-speakeasy-registration": {"register_template": False, "registration_matches": False},
    # Speakeasy registers every module itself, stub by stub
    "speakeasy-registration": {"register_modules_at_once": False},
    # each image mapped whole then protected, as Speakeasy does
    "sections-mapped-whole": {"map_sections_apart": False},
    # the decoy images built by Speakeasy, not placed from the shipped templates
    "images-built-by-speakeasy": {"images": False},
    # _load_image walks every registry value for the data exports
    "data-exports-unindexed": {"index_data_entries": False},
}


class Load:
    """One load (``_loaded_memory``) and what the shortcuts were called with while it ran:
    ``templates`` (modules registered from their template), ``registered`` (modules given to
    register_exports), ``merged`` (writes per _write_merged call), ``cuts`` (image_cuts' answers),
    ``placed`` (decoys placed from a shipped template)."""

    def __init__(self, memory: tuple[Any, Any], calls: dict[str, list[Any]]) -> None:
        self.memory, self.calls = memory, calls


def _load(scenario: str, state: str) -> Load:
    from speakeasy.windows.api_image import ApiModuleLoader

    from emulator.backends.speakeasy import compat_start, images

    calls: dict[str, list[Any]] = {key: [] for key in ("templates", "registered", "merged", "cuts", "placed")}
    register_template, register_exports = compat_start.register_template, compat_start.register_exports
    write_merged, image_cuts, place = compat_start._write_merged, compat_start.image_cuts, images.place

    def recorded_register_template(registry: Any, module: Any, writes: list[tuple[int, bytes]]) -> bool:
        done = register_template(registry, module, writes)
        if done:
            calls["templates"].append(module.name)
        return done

    def recorded_register_exports(registry: Any, module: Any, writes: list[tuple[int, bytes]]) -> None:
        calls["registered"].append(module.name)
        register_exports(registry, module, writes)

    def recorded_write_merged(emu: Any, writes: list[tuple[int, bytes]]) -> None:
        calls["merged"].append(len(writes))
        write_merged(emu, writes)

    def recorded_image_cuts(image: object, page_size: int) -> list[int] | None:
        calls["cuts"].append(image_cuts(image, page_size))
        return calls["cuts"][-1]

    def recorded_place(template: images.Template, **where: Any) -> Any:
        calls["placed"].append(where["name"])
        return place(template, **where)

    off = LOAD_STATES[state]
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The recorders change nothing; a shortcut turned off is replaced as its own test did.
        monkeypatch.setattr(compat_start, "register_template", recorded_register_template)
        monkeypatch.setattr(compat_start, "register_exports", recorded_register_exports)
        monkeypatch.setattr(compat_start, "_write_merged", recorded_write_merged)
        monkeypatch.setattr(compat_start, "image_cuts", recorded_image_cuts)
        monkeypatch.setattr(images, "place", recorded_place)
        if "register_template" in off:
            monkeypatch.setattr(compat_start, "register_template", lambda registry, module, writes: False)
        if "registration_matches" in off:
            monkeypatch.setattr(compat_start, "registration_matches", lambda: False)
        if "register_modules_at_once" in off:
            monkeypatch.setattr(compat_start, "register_modules_at_once", lambda emu: None)
        if "map_sections_apart" in off:
            monkeypatch.setattr(compat_start, "map_sections_apart", lambda emu: None)
        if "images" in off:
            monkeypatch.setattr(images, "install", lambda: None)
            monkeypatch.setattr(ApiModuleLoader, "make_image", images._ORIGINAL_MAKE_IMAGE)
        if "index_data_entries" in off:
            monkeypatch.setattr(compat_start, "index_data_entries", lambda emu: None)
        memory = _loaded_memory(load_scenario(SCENARIOS / scenario))
    return Load(memory, calls)


@pytest.fixture(scope="module")
def loads() -> Callable[[str, str], Load]:
    """``loads(scenario, state)``: the :class:`Load` of scenarios/<scenario> in that
    LOAD_STATES state, made once per module."""
    cache: dict[tuple[str, str], Load] = {}

    def get(scenario: str, state: str) -> Load:
        if (scenario, state) not in cache:
            cache[scenario, state] = _load(scenario, state)
        return cache[scenario, state]

    return get


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_stubs_written_at_once_leave_the_same_guest_memory(scenario: str, loads: Callable[[str, str], Load]) -> None:
    """A module's API stubs written in merged runs, and its addresses sorted once, leave the
    same bytes and the same registry as Speakeasy's one write and one insertion per export."""
    loop = loads(scenario, "loop")
    assert sum(loop.calls["merged"]) > 10_000  # the decoys' stubs went through it
    _assert_same_memory(loop.memory, loads(scenario, "speakeasy-registration").memory)


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_exports_registered_in_one_loop_leave_the_same_guest_memory(
    scenario: str, loads: Callable[[str, str], Load]
) -> None:
    """register_exports (used with the Speakeasy it was written from) leaves the same stubs,
    entries, traps and lookups as Speakeasy's own register_module."""
    from emulator.backends.speakeasy import compat_start

    assert compat_start.registration_matches()  # the installed Speakeasy: the one-loop path runs
    loop = loads(scenario, "loop")
    assert len(loop.calls["registered"]) > 45
    _assert_same_memory(loop.memory, loads(scenario, "loop-speakeasy-registration").memory)
    _assert_same_memory(loop.memory, loads(scenario, "speakeasy-registration").memory)


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_decoys_registered_from_their_templates_leave_the_same_guest_memory(
    scenario: str, loads: Callable[[str, str], Load]
) -> None:
    """A decoy placed from a shipped template is registered from what its registration does,
    worked out once (images.registration): the same stubs (one write of its .text), entries,
    traps, lookups, data index and trap count as the one-loop path and Speakeasy's own."""
    shipped = loads(scenario, "shipped")
    assert len(shipped.calls["templates"]) > 45  # the decoys took the template path
    _assert_same_memory(shipped.memory, loads(scenario, "loop").memory)
    _assert_same_memory(shipped.memory, loads(scenario, "speakeasy-registration").memory)


def test_a_decoy_whose_text_is_not_the_templates_is_registered_by_the_loop(
    monkeypatch: pytest.MonkeyPatch, loads: Callable[[str, str], Load]
) -> None:
    """register_template reads the image's .text back before it registers anything: when guest
    memory does not hold what the template maps there, it leaves the registry untouched and
    the one-loop path registers the module, with the same result."""
    import dataclasses

    from emulator.backends.speakeasy import compat_start, images

    plan = load_scenario(SCENARIOS / "3cx-x86")
    regions, contents = loads("3cx-x86", "shipped").memory
    registration = images.registration
    answers: list[bool] = []
    original = compat_start.register_template

    def other_text(template: images.Template, arch: int) -> images.Registration | None:
        found = registration(template, arch)
        return found and dataclasses.replace(found, text=b"\0" + found.text[1:])

    def register_template(registry: Any, module: Any, writes: list[tuple[int, bytes]]) -> bool:
        answers.append(original(registry, module, writes))
        return answers[-1]

    monkeypatch.setattr(images, "registration", other_text)
    monkeypatch.setattr(compat_start, "register_template", register_template)
    loop_regions, loop_contents = _loaded_memory(plan)
    assert len(answers) > 45 and not any(answers)
    _assert_same_memory((regions, contents), (loop_regions, loop_contents))


def test_exports_of_another_speakeasy_are_registered_by_speakeasy(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.backends.speakeasy import compat_start

    assert compat_start.registration_matches()
    monkeypatch.setattr(compat_start, "REGISTRATION_DIGEST", "0" * 64)  # api_registry.py changed
    assert not compat_start.registration_matches()


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_sections_mapped_apart_leave_the_same_guest_memory(scenario: str, loads: Callable[[str, str], Load]) -> None:
    """Every image mapped as the pieces its protections cut it into ends with the same regions,
    protections and bytes as Speakeasy's map-then-protect (the target's own PE and the decoys)."""
    shipped = loads(scenario, "shipped")
    regions, contents = shipped.memory
    assert sum(len(cuts) > 2 for cuts in shipped.calls["cuts"] if cuts) > 50  # the decoys and the target were cut
    plain_regions, plain_contents = loads(scenario, "sections-mapped-whole").memory
    assert regions == plain_regions
    assert contents.keys() == plain_contents.keys()
    assert [b for b in contents if contents[b] != plain_contents[b]] == []


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_shipped_decoy_images_leave_the_same_guest_memory(scenario: str, loads: Callable[[str, str], Load]) -> None:
    shipped = loads(scenario, "shipped")
    assert len(shipped.calls["placed"]) >= 45  # the decoys came from the shipped templates
    _assert_same_memory(shipped.memory, loads(scenario, "images-built-by-speakeasy").memory)


def test_shipped_decoy_images_are_what_the_builder_builds_now() -> None:
    """emulator/data/speakeasy-images.bin is for the installed Speakeasy and holds exactly what
    ``python -m emulator.backends.speakeasy.images`` builds from it now."""
    from emulator.backends.speakeasy import images

    data = images.DATA_FILE.read_bytes()
    assert images.shipped(), "built for another Speakeasy version: rebuild it"
    assert images.decode(data) == images.build()


@pytest.mark.parametrize(
    "data",
    [b"", b"\x90", b"\xcc" * 31, b"\xcc" * 32 * 3, b"\xcc" * 32 * 4, b"\xcc" * (32 * 9 + 5), bytes(range(256)) * 3],
    ids=["empty", "one", "short", "three_blocks", "four_blocks", "run_and_tail", "literal"],
)
def test_a_regions_runs_give_its_bytes_back(data: bytes) -> None:
    """The shipped templates hold each region's bytes as runs (images.runs): joined, they are the
    bytes; a block repeated RUN_MIN times or more is one run."""
    from emulator.backends.speakeasy import images

    found = images.runs(data + b"tail" + data)
    assert b"".join(unit * count for unit, count in found) == data + b"tail" + data
    long_runs = images.runs(b"\x90" * 16 + b"\xcc" * 16)  # one stub slot
    assert images.runs((b"\x90" * 16 + b"\xcc" * 16) * 100) == ((b"\x90" * 16 + b"\xcc" * 16, 100),)
    assert long_runs == ((b"\x90" * 16 + b"\xcc" * 16, 1),)


def test_a_decoy_image_placed_anywhere_equals_speakeasys_own() -> None:
    """Every shipped template, placed at its usual base and at another, gives the image
    Speakeasy's ``make_image`` builds there, field for field and byte for byte."""
    import speakeasy.winenv.arch as se_arch
    from speakeasy.windows.api_image import ApiModuleLoader

    from emulator.backends.speakeasy import images

    compared = 0
    for arch in (se_arch.ARCH_AMD64, se_arch.ARCH_X86):
        emu = images._probe_emulator(arch)
        for name in images.module_names():
            handler = emu.api.load_api_handler(name)
            if handler is not None and name == "ntdll":
                handler._nt_handler = emu.api.load_api_handler("ntoskrnl")
            assert images.template((name, images.arch_name(arch))) is not None
            for base in (0x6F000000, 0x12340000):
                loader = ApiModuleLoader(
                    name=name,
                    api=handler,
                    arch=arch,
                    base=base,
                    emu_path=f"C:\\apps\\{name}.dll",
                    signature_db=emu.get_signature_db(),
                )
                assert images.make_image(loader) == images._ORIGINAL_MAKE_IMAGE(loader), (name, arch, hex(base))
                compared += 1
    assert compared > 200


def test_decoy_images_of_another_speakeasy_or_handler_are_built_by_speakeasy(monkeypatch: pytest.MonkeyPatch) -> None:
    import speakeasy.winenv.arch as se_arch
    from speakeasy.windows.api_image import ApiModuleLoader

    from emulator.backends.speakeasy import images

    emu = images._probe_emulator(se_arch.ARCH_AMD64)
    handler = emu.api.load_api_handler("kernel32")
    loader = ApiModuleLoader(
        name="kernel32",
        api=handler,
        arch=se_arch.ARCH_AMD64,
        base=0x77000000,
        emu_path="k",
        signature_db=emu.get_signature_db(),
    )
    built: list[object] = []
    monkeypatch.setattr(images, "_ORIGINAL_MAKE_IMAGE", lambda loader: built.append(loader))
    images.make_image(loader)
    assert built == []  # the template fits
    monkeypatch.setitem(handler.funcs, "MadeUpForTheTest", handler.funcs["Sleep"])
    images.make_image(loader)
    assert built == [loader]  # the handler declares a name the template was not built with
    monkeypatch.delitem(handler.funcs, "MadeUpForTheTest")
    monkeypatch.setattr(images, "SPEAKEASY_VERSION", "0.0.0-other")
    monkeypatch.setattr(images, "_shipped", None)
    monkeypatch.setattr(images, "_templates", {})
    images.make_image(loader)
    assert built == [loader, loader]


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_indexed_data_exports_leave_the_same_guest_memory(scenario: str, loads: Callable[[str, str], Load]) -> None:
    """_load_image walking the data exports alone initialises the same ones, with the same bytes."""
    _assert_same_memory(loads(scenario, "shipped").memory, loads(scenario, "data-exports-unindexed").memory)


def test_merged_writes_land_as_written_one_by_one() -> None:
    """Nearby writes merged, far ones apart, overlapping ones in their order (the later wins)."""
    from emulator.backends.speakeasy.compat_start import _write_merged

    class Memory:
        def __init__(self) -> None:
            self.data = bytearray(b"\x90" * 4096)
            self.calls = 0

        def mem_read(self, address: int, size: int) -> bytes:
            return bytes(self.data[address : address + size])

        def mem_write(self, address: int, data: bytes) -> None:
            self.calls += 1
            self.data[address : address + len(data)] = data

    def one_by_one(writes: list[tuple[int, bytes]]) -> bytearray:
        memory = Memory()
        for write in writes:
            memory.mem_write(*write)
        return memory.data

    stubs = [(0x30 + 32 * i, bytes([i]) * 16) for i in range(40)][::-1] + [(3000, b"far")]
    memory = Memory()
    _write_merged(memory, stubs)
    assert memory.data == one_by_one(stubs)
    assert memory.calls == 2
    overlapping = [(100, b"aaaa"), (98, b"bbbb"), (200, b"c")]
    memory = Memory()
    _write_merged(memory, overlapping)
    assert memory.data == one_by_one(overlapping)


def test_expect_knows_every_technique_of_the_pattern_table() -> None:
    from emulator.analysis.attack import load_patterns
    from emulator.expect import matchable_techniques

    assert matchable_techniques() == {p.technique for p in load_patterns()}
    assert matchable_techniques()


def test_an_incompatible_engine_in_the_prestarted_child_is_a_one_line_outcome(tmp_path: Path) -> None:
    """The command line's own path (a pre-started child) names an engine that cannot start in
    the report's outcome, as a fresh fork does (tests/test_engine.py), instead of a dead child."""
    code = (
        "import sys\n"
        "import speakeasy.windows.winemu as winemu\n"
        "del winemu.WindowsEmulator._hook_code_core\n"
        "from emulator.cli import main\n"
        "sys.exit(main())\n"
    )
    out = tmp_path / "out"
    hello = ROOT / "tests" / "bins" / "hello.dll"
    argv = [sys.executable, "-c", code, "run", str(hello), "--export", "Greet", "-q", "-o", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    outcome = json.loads((out / "report.json").read_text(encoding="utf-8"))["outcome"]
    assert outcome["status"] == "error"
    assert outcome["detail"].startswith("engine unavailable: chainreplay does not support speakeasy-emulator")


def test_shipped_signature_tables_are_what_the_builder_builds_now() -> None:
    """emulator/data/speakeasy-signatures.bin is for the installed Speakeasy and holds exactly
    what ``python -m emulator.backends.speakeasy.signatures`` builds from its files now."""
    from emulator.backends.speakeasy import signatures

    assert signatures.shipped(), "built for another Speakeasy version: rebuild it"
    assert signatures.decode(signatures.DATA_FILE.read_bytes()) == signatures.build()


def _loaded_source(cls: type, shipped: bool) -> Any:
    from emulator.backends.speakeasy import signatures

    source = cls()
    if shipped:
        signatures._load(source)
        assert type(source._functions) is signatures.LazyTable  # from the shipped tables
    else:
        signatures._ORIGINAL_LOAD(source)
        assert type(source._functions) is dict
    return source


@pytest.mark.parametrize("name", ["Win32MetadataSource", "PhntSource"])
def test_shipped_signature_tables_answer_every_lookup_as_speakeasy(name: str) -> None:
    """Every declaration, DLL catalogue, enum and struct of a source read from the shipped
    tables equals what Speakeasy's own loading answers, in the same order."""
    import speakeasy.winenv.api.sigdb as se_sigdb

    cls = getattr(se_sigdb, name)
    shipped, plain = _loaded_source(cls, True), _loaded_source(cls, False)
    assert (len(shipped), shipped.available, shipped.version, shipped.commit) == (
        len(plain),
        plain.available,
        plain.version,
        plain.commit,
    )
    dlls = sorted({entry["dll"] for entries in plain._functions.values() for entry in entries})
    for arch in (se_sigdb.ARCH_X86, se_sigdb.ARCH_X64):
        for dll in [*dlls, "psapi", "not-a-dll"]:
            assert list(shipped.iter_functions(dll, arch)) == list(plain.iter_functions(dll, arch)), (dll, arch)
        for function in plain._functions:
            for dll in ("kernel32", "ntdll", plain._functions[function][0]["dll"]):
                assert shipped.lookup(dll, function, arch) == plain.lookup(dll, function, arch), (function, arch)
        assert shipped.lookup("kernel32", "NotAFunction", arch) is None
    for enum in [*plain._enums, "NOT_AN_ENUM"]:
        assert shipped.lookup_enum(enum) == plain.lookup_enum(enum)
    for struct in [*plain._structs, "NOT_A_STRUCT"]:
        assert shipped.lookup_struct(struct) == plain.lookup_struct(struct)
    assert len(plain._functions) > 2000 and dlls


def test_signature_tables_of_another_speakeasy_or_file_are_loaded_by_speakeasy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import speakeasy.winenv.api.sigdb as se_sigdb

    from emulator.backends.speakeasy import signatures

    assert type(_loaded_source(se_sigdb.PhntSource, True)._functions) is signatures.LazyTable
    other = tmp_path / "phnt.json.gz"  # another file, at another path
    other.write_bytes(Path(se_sigdb.DEFAULT_PHNT_PATH).read_bytes())
    source = se_sigdb.PhntSource(str(other))
    signatures._load(source)
    assert type(source._functions) is dict and source._functions
    monkeypatch.setattr(signatures, "file_digest", lambda path: "0" * 64)  # the default file changed
    source = se_sigdb.PhntSource()
    signatures._load(source)
    assert type(source._functions) is dict and source._functions
    monkeypatch.undo()
    monkeypatch.setattr(signatures, "SPEAKEASY_VERSION", "0.0.0-other")
    monkeypatch.setattr(signatures, "_shipped", None)
    source = se_sigdb.PhntSource()
    signatures._load(source)
    assert type(source._functions) is dict and source._functions


MODELS_SCRIPT = """
import contextlib, json, sys, types
from pathlib import Path
if sys.argv[1] == "eager":  # Speakeasy's models all built at import, as without models.py
    plain = types.ModuleType("emulator.backends.speakeasy.models")
    plain.deferred = contextlib.nullcontext
    sys.modules[plain.__name__] = plain
import emulator.backends.speakeasy
import speakeasy.profiler_events as events, speakeasy.report as report
def built():
    return sorted(name for module in (events, report) for name, cls in vars(module).items()
                  if isinstance(cls, type) and cls.__module__ == module.__name__
                  and getattr(cls, "__pydantic_complete__", False))
at_import = built()
from emulator.replay import replay_target
from emulator.scenario import load_scenario
replay_target(load_scenario(Path(sys.argv[2])), Path(sys.argv[3]), isolate=False)
print(json.dumps([at_import, built()]))
"""


def test_speakeasy_models_a_replay_may_not_use_are_built_when_first_used(tmp_path: Path) -> None:
    """The engine's import leaves Speakeasy's report models and its event records but the API
    call's unbuilt; a replay that builds several of them records exactly what one with every
    model built at import records."""
    runs = {}
    for variant in ("deferred", "eager"):
        scenario = str(SCENARIOS / "inject-remote-thread")
        stdout = python_stdout(MODELS_SCRIPT, variant, scenario, str(tmp_path / variant))
        runs[variant] = json.loads(stdout.strip().splitlines()[-1])
    at_import, after_replay = runs["deferred"]
    assert {"ApiEvent", "TracePosition", "Event", "ApiArg"} <= set(at_import)
    assert not {"Report", "ErrorInfo", "DataArtifact", "FileWriteEvent", "ThreadInjectEvent"} & set(at_import)
    assert len(set(after_replay) - set(at_import)) >= 3  # the replay built some when it first used them
    assert runs["eager"][0] == runs["eager"][1]  # every model was built at import
    assert set(runs["eager"][0]) > set(after_replay)
    trace = (tmp_path / "deferred" / "trace.jsonl").read_bytes()
    assert trace == (tmp_path / "eager" / "trace.jsonl").read_bytes()
    assert report_without_time(tmp_path / "deferred" / "report.json") == report_without_time(
        tmp_path / "eager" / "report.json"
    )


LAZY_SCRIPT = """
import sys, types
import emulator.backends.speakeasy
import speakeasy.winenv.api.usermode.advapi32 as advapi32
from emulator.backends.speakeasy.lazyimport import LazyModule
module = sys.modules["Crypto.Cipher.ARC4"]
print(type(module) is LazyModule, "pycparser" in sys.modules, advapi32.ARC4 is module)
print(advapi32.ARC4.new(b"Key").encrypt(b"Plaintext").hex(), type(module) is types.ModuleType)
from Crypto.Cipher import ARC4
print(ARC4 is module, module.__loader__ is module.__spec__.loader, type(module.__loader__).__name__)
"""


def test_rc4_of_speakeasys_advapi32_is_loaded_when_first_used() -> None:
    """The engine's import leaves pycryptodome's ARC4 (and cffi's C parser behind it) unloaded;
    the handler's first use loads it and it encrypts as RC4 does (the classic "Key"/"Plaintext" test
    vector). scenarios/file-rc4-cryptoapi decrypts with it in the confined child."""
    stdout = python_stdout(LAZY_SCRIPT, timeout=120)
    assert stdout.split("\n")[:3] == [
        "True False True",
        "bbf316e8d940af0ad3 True",
        "True True SourceFileLoader",
    ]


def test_module_lookups_by_name_answer_as_speakeasys_own() -> None:
    """The memoised ``get_mod_by_name`` returns the module Speakeasy's own returns, for every
    loaded module's name, path, base name with and without extension, in any case, and names
    no module has; the loaded target's memory and registry equal a load without it."""
    import speakeasy.windows.winemu as se_winemu

    from emulator.backends.speakeasy import compat_start, setup

    assert compat_start.module_lookup_matches()  # the installed Speakeasy: the memo is used
    emu = setup.load_target(load_scenario(SCENARIOS / "3cx")).emu
    assert "get_mod_by_name" in vars(emu)
    names = {"", "nothing", "kernel32.dll.dll", "KERNEL32", "c2/guard64"}
    for module in emu.modules:
        base = module.emu_path.rsplit("\\", 1)[-1]
        names |= {module.name, module.name.upper(), module.emu_path, base, base.upper(), base.rsplit(".", 1)[0]}
    assert len(names) > 100
    for name in sorted(names):
        assert emu.get_mod_by_name(name) is se_winemu.WindowsEmulator.get_mod_by_name(emu, name), name


def test_module_lookups_of_another_speakeasy_are_speakeasys(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.backends.speakeasy import compat_start, setup

    monkeypatch.setattr(compat_start, "MODULE_LOOKUP_DIGEST", "0" * 64)  # winemu.py changed
    assert not compat_start.module_lookup_matches()
    emu = setup.load_target(load_scenario(SCENARIOS / "benign-dll")).emu
    assert "get_mod_by_name" not in vars(emu)


def test_api_handlers_find_the_hooks_speakeasys_scan_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API handler class Speakeasy has, built on both architectures with its hooks found
    from its class's (found once) and with Speakeasy's own scan: the same ``funcs`` and
    ``data``, in the same order, and the same attributes. An instance attribute carrying a hook
    makes the scan Speakeasy's again."""
    import speakeasy.winenv.api.api as se_api
    import speakeasy.winenv.arch as se_arch
    from speakeasy.winenv.api.winapi import API_HANDLERS

    from emulator.backends.speakeasy import compat_start, images

    assert compat_start.handler_scan_matches()
    assert all(compat_start.class_hooks(handler) is not None for _, handler in API_HANDLERS)
    compared = 0
    for arch in (se_arch.ARCH_AMD64, se_arch.ARCH_X86):
        emu = images._probe_emulator(arch)
        for _, handler in API_HANDLERS:
            monkeypatch.setattr(se_api.ApiHandler, "__init__", compat_start._ORIGINAL_HANDLER_INIT)
            monkeypatch.setattr(se_api.ApiHandler, "__get_hook_attrs__", compat_start._ORIGINAL_HOOK_ATTRS)
            speakeasys = handler(emu)
            compat_start.scan_handlers_once()
            ours = handler(emu)
            assert list(ours.funcs.items()) == list(speakeasys.funcs.items()), handler
            assert list(ours.data.items()) == list(speakeasys.data.items()), handler
            assert sorted(vars(ours)) == sorted(vars(speakeasys))
            compared += 1
    assert compared > 80

    def hooked() -> None: ...

    hooked.__apihook__ = ("MadeUpForTheTest", hooked, 0, 0, None)  # type: ignore[attr-defined]
    some = API_HANDLERS[0][1](emu)
    some.extra = hooked
    some.funcs, some.data = {}, {}
    some.__get_hook_attrs__(some)
    assert "MadeUpForTheTest" in some.funcs


def test_a_handler_overriding_its_bases_hooks_finds_what_speakeasys_scan_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler class that overrides a hooked method of its base without the hook (and one that
    hooks it under another name): the hooks found from the class are the subclass's, as
    Speakeasy's scan of an instance finds them (each name's value is the first class's of the MRO
    that has it)."""
    import speakeasy.winenv.api.api as se_api
    import speakeasy.winenv.arch as se_arch

    from emulator.backends.speakeasy import compat_start, images

    class Base(se_api.ApiHandler):  # type: ignore[misc]
        name = "madeupbase"

        @se_api.ApiHandler.apihook("Shadowed", argc=0)
        def Shadowed(self, emu, argv, ctx={}):  # noqa: B006, N802 - as Speakeasy declares hooks
            return 1

        @se_api.ApiHandler.apihook("Renamed", argc=0)
        def Renamed(self, emu, argv, ctx={}):  # noqa: B006, N802
            return 2

    class Derived(Base):
        name = "madeupderived"

        def Shadowed(self, emu, argv, ctx={}):  # noqa: B006, N802 - no hook any more
            return 3

        @se_api.ApiHandler.apihook("RenamedAgain", argc=0)
        def Renamed(self, emu, argv, ctx={}):  # noqa: B006, N802
            return 4

    emu = images._probe_emulator(se_arch.ARCH_AMD64)
    monkeypatch.setattr(se_api.ApiHandler, "__init__", compat_start._ORIGINAL_HANDLER_INIT)
    monkeypatch.setattr(se_api.ApiHandler, "__get_hook_attrs__", compat_start._ORIGINAL_HOOK_ATTRS)
    speakeasys = Derived(emu)
    compat_start.scan_handlers_once()
    ours = Derived(emu)
    assert compat_start.class_hooks(Derived) is not None
    assert list(ours.funcs) == list(speakeasys.funcs) == ["RenamedAgain"]
    assert list(ours.funcs.items()) == list(speakeasys.funcs.items())


def test_api_handler_scans_of_another_speakeasy_are_speakeasys(monkeypatch: pytest.MonkeyPatch) -> None:
    import speakeasy.winenv.api.api as se_api

    from emulator.backends.speakeasy import compat_start

    monkeypatch.setattr(se_api.ApiHandler, "__init__", compat_start._ORIGINAL_HANDLER_INIT)
    monkeypatch.setattr(compat_start, "HANDLER_SCAN_DIGEST", "0" * 64)  # api.py changed
    assert not compat_start.handler_scan_matches()
    compat_start.scan_handlers_once()
    assert se_api.ApiHandler.__init__ is compat_start._ORIGINAL_HANDLER_INIT


def test_warm_steps_leave_registrations_handler_scans_and_models_ready() -> None:
    """After the warm-up steps (a batch worker's warm_engine, forked for each replay) loading and
    emulating a target works out no template registration, scans no handler class, builds no
    event model and reads no MIME table, and Capstone is loaded: all were done ahead."""
    script = """
import mimetypes, sys
from pathlib import Path
from emulator.backends.speakeasy import compat_start, images, setup, warm_steps
from emulator.replay import emulate
from emulator.scenario import load_scenario
for step in warm_steps():
    step()
# The plan is read by the worker before it forks the replay's child (its models are built there).
plan = load_scenario(Path(sys.argv[1]))
done = []
registration, hooks = images._registration, compat_start.class_hooks
images._registration = lambda *a: done.append("registration") or registration(*a)
scanned = set(compat_start._class_hooks)
init = mimetypes.init
mimetypes.init = lambda *a: done.append("mime") or init(*a)
from pydantic import BaseModel
rebuild = BaseModel.model_rebuild.__func__
BaseModel.model_rebuild = classmethod(lambda cls, *a, **k: done.append(cls.__name__) or rebuild(cls, *a, **k))
from emulator.lazyimport import is_waiting
emulate(plan)
print(len(done), sorted(set(compat_start._class_hooks) - scanned, key=str), done[:5], is_waiting("capstone"))
"""
    stdout = python_stdout(script, str(SCENARIOS / "3cx"))
    assert stdout.strip().splitlines()[-1] == "0 [] [] False"
