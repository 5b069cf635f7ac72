"""The emulation phase's host-side shortcuts (issue 18 target 2, session 24): each must give
exactly what Speakeasy's own code gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import unicorn as uc
from clirun import report_without_time

from emulator.replay import replay_target
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
PAGE = 0x1000


def _loaded_emulator(scenario: str) -> Any:
    from emulator.backends.speakeasy import setup

    return setup.load_target(load_scenario(SCENARIOS / scenario)).emu


def _outcome(faults: list[tuple[int, str]], call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a string read gives: its value, or the error it raises; and the faults it reported."""
    faults.clear()
    try:
        value: Any = ("value", call(*args, **kwargs))
    except uc.UcError as err:
        value = ("error", err.errno)
    return value, tuple(faults)


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_strings_read_by_page_are_the_strings_speakeasy_reads(scenario: str) -> None:
    """``read_mem_string`` and ``mem_string_len`` reading up to a page at a time give the same
    string, the same length, the same error and the same reported fault address as Speakeasy's
    one-character-at-a-time loop: strings ending at a page's end, running into an unmapped page,
    crossing two mapped pages, wide strings at odd addresses straddling a page, cut by
    ``max_chars``, longer than one chunk, with invalid UTF-8."""
    import speakeasy.binemu as se_binemu

    from emulator.backends.speakeasy import compat, compat_memory

    emu = _loaded_emulator(scenario)
    faults: list[tuple[int, str]] = []
    compat.watch_guest_memory_faults(emu, lambda pc, address, access: faults.append((address, access)))
    base = emu.mem_map(3 * PAGE, tag="test.strings")  # three mapped pages, then (below) one unmapped
    assert emu.get_address_map(base + 3 * PAGE) is None
    reads: list[int] = []  # the sizes of the engine's reads
    engine = emu.emu_eng
    counted = engine.mem_read

    def mem_read(address: int, size: int) -> Any:
        reads.append(size)
        return counted(address, size)

    engine.mem_read = mem_read
    ascii_text = b"kernel32.dll\0"
    long_text = bytes(range(0x21, 0x7F)) * 9 + b"\0"  # 847 bytes: several chunks
    wide_text = "Software\\Microsoft\\Windows\0".encode("utf-16le")
    cases: list[tuple[int, bytes]] = [
        (base + 0x10, ascii_text),
        (base + PAGE - len(ascii_text), ascii_text),  # ends exactly at a page's end
        (base + PAGE - 5, ascii_text),  # crosses into the next mapped page
        (base + 0x200, long_text),
        (base + 0x800, b"\xff\xfe\xc3(bad utf-8)\0"),
        (base + 0x40, wide_text),
        (base + PAGE - 7, wide_text),  # wide, odd address, a character straddling two pages
        (base + 2 * PAGE - 8, wide_text),
        (base + 3 * PAGE - 6, b"abcdef"),  # no terminator before the unmapped page
        (base + 3 * PAGE - 5, "ab".encode("utf-16le") + b"c"),  # wide, runs into the unmapped page
        (base + 3 * PAGE, b""),  # starts in the unmapped page
    ]
    original_read = se_binemu.BinaryEmulator.read_mem_string
    original_len = se_binemu.BinaryEmulator.mem_string_len
    checked = 0
    for address, data in cases:
        emu.mem_write(base, b"\x01" * (3 * PAGE))
        if data:
            emu.mem_write(address, data)
        for width in (1, 2):
            for max_chars in (0, 1, 3, 6, 300, 900):
                plain = _outcome(faults, original_read, emu, address, width=width, max_chars=max_chars)
                assert compat_memory.read_strings_by_page(emu)
                reads.clear()
                fast = _outcome(faults, emu.read_mem_string, address, width=width, max_chars=max_chars)
                assert fast == plain, (hex(address), width, max_chars)
                del emu.read_mem_string, emu.mem_string_len
                checked += 1
            plain = _outcome(faults, original_len, emu, address, width)
            assert compat_memory.read_strings_by_page(emu)
            fast = _outcome(faults, emu.mem_string_len, address, width)
            assert fast == plain, (hex(address), width)
            del emu.read_mem_string, emu.mem_string_len
    assert checked == len(cases) * 2 * 6
    # A plain string is one read, not one per character.
    emu.mem_write(base + 0x10, ascii_text)
    reads.clear()
    assert original_read(emu, base + 0x10) == "kernel32.dll"
    assert reads == [1] * len(ascii_text)
    assert compat_memory.read_strings_by_page(emu)
    reads.clear()
    assert emu.read_mem_string(base + 0x10) == "kernel32.dll"
    assert reads == [compat_memory.STRING_CHUNK_BYTES]


def test_string_reads_are_left_to_speakeasy_when_its_method_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another ``read_mem_string`` than the one the page-at-a-time read was written from: the
    emulator keeps Speakeasy's (nothing installed)."""
    import speakeasy.binemu as se_binemu

    from emulator.backends.speakeasy import compat_memory

    def read_mem_string(self: Any, address: int, width: int = 1, max_chars: int = 0) -> str:
        return "changed"

    emu = _loaded_emulator("3cx")
    monkeypatch.setattr(se_binemu.BinaryEmulator, "read_mem_string", read_mem_string)
    compat_memory.strings_match.cache_clear()
    try:
        assert not compat_memory.read_strings_by_page(emu)
        assert "read_mem_string" not in vars(emu)
    finally:
        monkeypatch.undo()
        compat_memory.strings_match.cache_clear()
    assert compat_memory.read_strings_by_page(emu)


def test_the_layout_capture_is_left_out_only_where_nothing_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-of-run memory-layout capture is left out on an emulator not configured to keep
    memory snapshots, only while Speakeasy's method is the one it was written from."""
    import speakeasy.windows.win32 as se_win32

    from emulator.backends.speakeasy import compat_memory

    emu = _loaded_emulator("3cx")
    assert compat_memory.without_memory_layout_capture(emu)
    assert emu._capture_memory_layout() is None and "_capture_memory_layout" in vars(emu)
    other = _loaded_emulator("3cx")
    monkeypatch.setattr(other, "config", other.config.model_copy(update={"snapshot_memory_regions": True}))
    assert not compat_memory.without_memory_layout_capture(other)
    monkeypatch.undo()
    monkeypatch.setattr(se_win32.Win32Emulator, "_capture_memory_layout", lambda self: None)
    compat_memory.layout_capture_matches.cache_clear()
    try:
        assert not compat_memory.without_memory_layout_capture(other)
        assert "_capture_memory_layout" not in vars(other)
    finally:
        monkeypatch.undo()
        compat_memory.layout_capture_matches.cache_clear()


def test_the_3cx_replay_is_the_same_without_the_emulation_shortcuts(
    tmp_path: Path, scenario_outdir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every shortcut of this module off (Speakeasy's string reads, its layout capture), the
    3CX replay records exactly the same trace and report."""
    from emulator.backends.speakeasy import compat_memory

    shared = scenario_outdir("3cx")
    monkeypatch.setattr(compat_memory, "read_strings_by_page", lambda emu: False)
    monkeypatch.setattr(compat_memory, "without_memory_layout_capture", lambda emu: False)
    replay_target(load_scenario(SCENARIOS / "3cx"), tmp_path / "out", isolate=False)
    assert (tmp_path / "out" / "trace.jsonl").read_bytes() == (shared / "trace.jsonl").read_bytes()
    assert report_without_time(tmp_path / "out" / "report.json") == report_without_time(shared / "report.json")


def test_responder_globs_match_as_fnmatch_and_compile_nothing_for_plain_names() -> None:
    """The responders' pattern match is ``fnmatch.fnmatchcase`` for every name and pattern, and a
    pattern without a wildcard (or ``*`` alone) compiles no regular expression."""
    import fnmatch

    from emulator.responders.base import glob_matches

    names = ["", "a", "abc", "ABC", "a.b", "a+b", "x\ny", "/cdn/update/stage3.bin", "c2.example", "[a]", "a\\b", "*"]
    patterns = [*names, "*", "**", "?", "a*", "*.bin", "a?c", "[ab]*", "[!a]*", "a\\*", "(a)", "$", "c2.example."]
    for name in names:
        for pattern in patterns:
            assert glob_matches(name, pattern) == fnmatch.fnmatchcase(name, pattern), (name, pattern)
    fnmatch._compile_pattern.cache_clear()  # type: ignore[attr-defined]
    misses = fnmatch._compile_pattern.cache_info().misses  # type: ignore[attr-defined]
    assert glob_matches("first-seen.example", "first-seen.example")
    assert not glob_matches("first-seen.example", "other-first-seen.example")
    assert glob_matches("/any/path", "*")
    assert fnmatch._compile_pattern.cache_info().misses == misses  # type: ignore[attr-defined]


DISASSEMBLER_SCRIPT = """
import json, sys
from pathlib import Path
from emulator.backends.speakeasy import compat_start, setup
from emulator.lazyimport import is_waiting
from emulator.scenario import load_scenario
plan = load_scenario(Path(sys.argv[1]))
target = setup.load_target(plan)
emu = target.emu
stand_in = type(emu.disasm_eng).__name__
waiting = is_waiting("capstone")
at = target.base + target.module.ep
deferred = emu.get_disasm(at, 32)
made = (type(emu.disasm_eng).__module__, emu.disasm_eng.mode)
compat_start.DISASSEMBLER_DEFERRABLE = False  # Speakeasy's own disassembler
emu = setup.load_target(plan).emu
own = (type(emu.disasm_eng).__module__, emu.disasm_eng.mode)
print(json.dumps({"stand_in": stand_in, "waiting": waiting, "made": made, "own": own,
                  "same": list(emu.get_disasm(at, 32)) == list(deferred), "at": at}))
"""


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_the_disassembler_is_made_when_first_used_as_speakeasy_makes_it(scenario: str) -> None:
    """A loaded emulator holds a stand-in for its disassembler and Capstone stays unimported; the
    first use makes the ``Cs`` Speakeasy makes (the same mode for the architecture, put in the
    emulator's place) and disassembles as Speakeasy's own does."""
    import json

    from clirun import python_stdout

    found = json.loads(python_stdout(DISASSEMBLER_SCRIPT, str(SCENARIOS / scenario)).splitlines()[-1])
    assert found["stand_in"] == "_Disassembler"
    assert found["waiting"] is True
    assert found["made"] == found["own"]
    assert found["own"][0] == "capstone"
    assert found["same"] is True


def test_pefile_collects_nothing_while_speakeasy_loads_a_pe() -> None:
    """The 3CX replay relocates its dropped DLL (pefile's ``set_data_bytes``, which runs a full
    collection each time): no collection starts from inside pefile, and pefile's ``gc`` is the
    real module again afterwards (with every other attribute the real one's while skipped)."""
    import gc
    import sys

    import pefile

    from emulator.backends.speakeasy import compat
    from emulator.replay import emulate

    from_pefile: list[int] = []

    def on_collection(phase: str, info: dict[str, int]) -> None:
        # pefile's own call (in _close_data), not a collection the allocator starts in pefile
        caller = sys._getframe(1).f_code
        if phase == "start" and caller.co_filename == pefile.__file__ and caller.co_name == "_close_data":
            from_pefile.append(info["generation"])

    gc.callbacks.append(on_collection)
    try:
        emulate(load_scenario(SCENARIOS / "3cx"))
    finally:
        gc.callbacks.remove(on_collection)
    assert from_pefile == []
    assert pefile.gc is gc
    with compat.pe_loads_without_collection():
        assert pefile.gc is not gc
        assert pefile.gc.collect() == 0
        assert pefile.gc.isenabled is gc.isenabled
    assert pefile.gc is gc
