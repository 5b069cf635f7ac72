"""Loads a replay makes while it runs (issue 18): each shortcut must leave guest memory and the
replay exactly as Speakeasy's own code leaves them."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import report_without_time

from emulator.replay import replay_target
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def _memory(emu: Any) -> dict[tuple[int, int, int], bytes]:
    """Every Unicorn region's bytes (but the KUSER_SHARED_DATA clock), keyed by (base, end, perms)."""
    return {
        (int(begin), int(end), int(perms)): bytes(emu.mem_read(begin, end - begin + 1))
        for begin, end, perms in sorted(emu.get_mem_regions())
        if "KUSER_SHARED_DATA" not in (emu.get_address_tag(begin) or "")
    }


def _peb_after_loads(scenario: str, fast: bool) -> tuple[dict[tuple[int, int, int], bytes], list[int]]:
    """Load ``scenario``'s target, give its process a PEB as ``run_module`` does, then load two
    libraries at run time, the guest having scribbled over the loader list in between; guest
    memory afterwards, and the bases in the load-order ring as a guest walking it finds them."""
    import speakeasy.windows.objman as se_objman

    from emulator.backends.speakeasy import compat_load, setup

    compat_load.build_structs_from_prototypes(fast)
    target = setup.load_target(load_scenario(SCENARIOS / scenario))
    emu = target.emu
    if fast:
        compat_load.relink_peb_fast(emu)
    module = target.module
    emu.prepare_module_for_emulation(module, False, entry_point=None)
    process = se_objman.Process(emu, path=module.emu_path, base=module.base, pe=module, cmdline=emu.command_line)
    emu.curr_process = process
    emu.om.objects.update({process.address: process})
    emu.alloc_peb(process)
    assert emu.load_library("ws2_32")
    # The guest unlinks an entry and clears a sentinel: the next re-link writes them over.
    ptr = emu.get_ptr_size()
    second = process.ldr_entries[1].address
    emu.mem_write(second, b"\xaa" * (2 * ptr))
    ldr = int(process.peb_ldr_data.address or 0)
    emu.mem_write(ldr + 0x10, b"\0" * ptr)
    assert emu.load_library("wininet")
    bases: list[int] = []
    head = ldr + (0x10 if ptr == 8 else 0xC)
    node = int.from_bytes(emu.mem_read(head, ptr), "little")
    while node != head and len(bases) < 200:
        bases.append(int.from_bytes(emu.mem_read(node + 6 * ptr, ptr), "little"))
        node = int.from_bytes(emu.mem_read(node, ptr), "little")
    return _memory(emu), bases


@pytest.fixture
def structs_restored() -> Iterator[None]:
    """Whatever a test does, structs are built as a replay builds them (from prototypes) after it."""
    from emulator.backends.speakeasy import compat_load

    enable = compat_load.build_structs_from_prototypes
    yield
    enable()


@pytest.mark.parametrize("scenario", ["3cx", "3cx-x86"])
def test_fast_peb_relink_leaves_the_same_guest_memory(scenario: str, structs_restored: None) -> None:
    """The loader rings re-linked without the struct layer and structs built from prototypes
    (compat_load) leave every byte of guest memory as Speakeasy's ``_sync_peb_module_links`` and
    struct building do, guest scribbles included."""
    memory, bases = _peb_after_loads(scenario, fast=True)
    plain_memory, plain_bases = _peb_after_loads(scenario, fast=False)
    # the program, ntdll, kernel32, kernelbase, what it imports, then the two loaded at run time
    # (the other decoys are not listed until loaded: compat_blocks.loader_list_as_loaded)
    assert len(bases) >= 6 and bases == plain_bases
    assert memory.keys() == plain_memory.keys()
    assert [key for key in memory if memory[key] != plain_memory[key]] == []


def test_fast_peb_relink_gives_the_same_3cx_replay(
    tmp_path: Path, scenario_outdir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, structs_restored: None
) -> None:
    """The 3CX chain loads a dropped DLL and system DLLs at run time, starts a process and its
    shellcode walks the loader list: with Speakeasy's own re-link and struct building the replay
    records exactly the same events."""
    from emulator.backends.speakeasy import compat_load

    shared = scenario_outdir("3cx")
    compat_load.build_structs_from_prototypes(False)
    monkeypatch.setattr(compat_load, "relink_peb_fast", lambda emu: None)
    monkeypatch.setattr(compat_load, "build_structs_from_prototypes", lambda enabled=True: None)
    replay_target(load_scenario(SCENARIOS / "3cx"), tmp_path / "out", isolate=False)
    assert (tmp_path / "out" / "trace.jsonl").read_bytes() == (shared / "trace.jsonl").read_bytes()
    assert report_without_time(tmp_path / "out" / "report.json") == report_without_time(shared / "report.json")


def _speakeasy_struct_classes() -> list[type]:
    import importlib
    import pkgutil

    import speakeasy
    import speakeasy.struct as se_struct

    for info in pkgutil.walk_packages(speakeasy.__path__, "speakeasy."):
        if ".defs" in info.name:
            importlib.import_module(info.name)
    found: list[type] = []
    pending = [se_struct.EmuStruct]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return sorted(set(found) - {se_struct.EmuUnion}, key=lambda c: (c.__module__, c.__qualname__))


def _fill(struct: Any) -> None:
    state = object.__getattribute__(struct, "__dict__")
    value = state["__struct__"]
    ctypes.memset(ctypes.addressof(value), 0xAB, ctypes.sizeof(value))
    for nested in state["__filtermap__"].values():
        for item in nested if isinstance(nested, list) else [nested]:
            _fill(item)


def test_every_speakeasy_struct_builds_the_same_twice_and_copies_as_built() -> None:
    """A prototype's copy stands for a fresh build only if a struct's declarations depend on its
    arguments alone: every struct class Speakeasy defines, built twice at each pointer size,
    builds the same, and a copy of one equals the other (declarations, ctypes type and bytes,
    nested structs), also after a field of the copy is set."""
    from emulator.backends.speakeasy import compat_load

    build = compat_load._ORIGINAL_STRUCT_CALL
    classes = _speakeasy_struct_classes()
    built = copied = 0
    for cls in classes:
        for ptr_size in (4, 8):
            try:
                first, second = build(cls, ptr_size), build(cls, ptr_size)  # type: ignore[arg-type]
            except TypeError:  # takes other arguments (a width, a count)
                continue
            built += 1
            assert compat_load.struct_shape(first) == compat_load.struct_shape(second), cls
            if not compat_load._clonable(first):
                continue
            copy = compat_load._clone(first)
            assert compat_load.struct_shape(copy) == compat_load.struct_shape(second), cls
            assert copy.get_bytes() == second.get_bytes()
            # The copy's values are its own: filling them all leaves the original (``first``) zero.
            _fill(copy)
            assert any(copy.get_bytes())
            assert not any(first.get_bytes())
            copied += 1
    assert built > 200 and copied > 200


def _fill_apart(struct: Any, byte: int) -> int:
    """Every ctypes value of ``struct`` filled with its own byte (the parent's copies of its nested
    structs then differ from the nested structs themselves); the next byte free."""
    state = object.__getattribute__(struct, "__dict__")
    value = state["__struct__"]
    ctypes.memset(ctypes.addressof(value), byte, ctypes.sizeof(value))
    byte += 1
    for nested in state["__filtermap__"].values():
        for item in nested if isinstance(nested, list) else [nested]:
            byte = _fill_apart(item, byte)
    return byte


def test_every_speakeasy_struct_serialises_as_its_get_bytes() -> None:
    """The loader entries' serialisation without the struct layer (``compat_load.serialised``,
    nested structs' bytes laid over the parent's) gives ``EmuStruct.get_bytes()`` for every struct
    class Speakeasy defines at both pointer sizes, nested structs holding other bytes than the
    parent's copies of them."""
    from emulator.backends.speakeasy import compat_load

    build = compat_load._ORIGINAL_STRUCT_CALL
    checked = 0
    for cls in _speakeasy_struct_classes():
        for ptr_size in (4, 8):
            try:
                struct = build(cls, ptr_size)  # type: ignore[arg-type]
            except TypeError:  # takes other arguments (a width, a count)
                continue
            _fill_apart(struct, 0x11)
            fast = compat_load.serialised(struct)
            assert fast == struct.get_bytes(), cls
            assert compat_load.serialised(struct) == fast
            checked += 1
    assert checked > 200
