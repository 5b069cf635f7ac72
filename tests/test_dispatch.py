"""Fast mode's API dispatch (emulator/backends/speakeasy/compat_dispatch.py) and register cache.

Fast mode serves an API Speakeasy has a handler for without Speakeasy's per-call lookups, and
keeps register values read while Unicorn is stopped. Both must be invisible in what a replay
records: tests/test_modes.py compares every scenario in both modes; these tests make sure the
fast path is the one actually taken, on x64 and x86, and that a cached register never outlives
a write through any channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from speakeasy.windows.winemu import WindowsEmulator

from emulator.backends.speakeasy import compat_dispatch
from emulator.events import ApiCall
from emulator.plan import ExportCall
from emulator.replay import emulate
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
FLOOD_CALLS = 200


def _count_fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The APIs fast mode's dispatch served itself (not through Speakeasy's own path)."""
    served: list[str] = []
    original, speakeasys = compat_dispatch.FastDispatch.handle_import_func, WindowsEmulator.handle_import_func
    own: list[int] = []

    def counting(self: Any, dll: str, name: str) -> Any:
        before = len(own)
        result = original(self, dll, name)
        plan = self.plans.get((dll, name))
        if plan is not None and len(own) == before:
            served.append(plan.imp_api)
        return result

    def speakeasy_path(self: Any, dll: str, name: str) -> Any:
        own.append(1)
        return speakeasys(self, dll, name)

    monkeypatch.setattr(compat_dispatch.FastDispatch, "handle_import_func", counting)
    monkeypatch.setattr(WindowsEmulator, "handle_import_func", speakeasy_path)
    return served


def test_fast_dispatch_serves_the_api_flood_as_faithful_mode_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[FLOOD_CALLS])]})
    served = _count_fast_calls(monkeypatch)
    fast = emulate(plan)
    assert served.count("kernel32.GetCurrentThreadId") == FLOOD_CALLS
    faithful = emulate(plan.model_copy(update={"mode": "faithful"}))
    assert len(served) == sum(isinstance(e, ApiCall) for e in fast.events)  # every call took the fast path
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in faithful.events]
    assert (fast.status, fast.detail) == (faithful.status, faithful.detail)


def test_fast_dispatch_serves_x86_stdcall_and_cdecl_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    served = _count_fast_calls(monkeypatch)
    fast = emulate(load_scenario(ROOT / "scenarios" / "reg-b64-xor-x86"))
    calls = [e.api for e in fast.events if isinstance(e, ApiCall)]
    assert served, "no API call took the fast path on x86"
    assert {s.lower() for s in served} <= {c.lower() for c in calls}
    faithful = emulate(load_scenario(ROOT / "scenarios" / "reg-b64-xor-x86", mode="faithful"))
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in faithful.events]


def test_cached_registers_follow_every_write() -> None:
    """Values cached while Unicorn is stopped are dropped by any register write: through the
    engine (another width of the same register), through Unicorn's binding, and by a run."""
    import speakeasy.winenv.arch as se_arch
    from unicorn import x86_const as x86

    from emulator.backends.speakeasy import compat_fast, setup

    plan = load_scenario(ROOT / "scenarios" / "benign-dll")
    target = setup.load_target(plan)
    emu = target.emu
    compat_fast.use_direct_engine_access(emu)
    engine, unicorn = emu.emu_eng, emu.emu_eng.emu
    engine.reg_write(se_arch.AMD64_REG_RAX, 0x1111_2222_3333_4444)
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == 0x1111_2222_3333_4444  # hot, kept as written
    assert engine.reg_read(se_arch.AMD64_REG_RCX) == unicorn.reg_read(x86.UC_X86_REG_RCX)
    engine.reg_write(se_arch.AMD64_REG_RCX, 5)
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == 0x1111_2222_3333_4444  # a write of RCX leaves RAX
    engine.reg_write(se_arch.X86_REG_EAX, 0xAAAA_BBBB)  # another width of RAX (Unicorn keeps the upper half)
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == 0x1111_2222_AAAA_BBBB == unicorn.reg_read(x86.UC_X86_REG_RAX)
    unicorn.reg_write(x86.UC_X86_REG_RAX, 7)  # through the binding
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == 7
    assert engine.reg_read(se_arch.X86_REG_EAX) == 7
    engine.reg_write(se_arch.AMD64_REG_RAX, -1)  # reads back modulo the register's width
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == (1 << 64) - 1
    # A run changes registers: one instruction, `mov eax, 0x2a`.
    code = emu.mem_map(0x1000, tag="test.code")
    emu.mem_write(code, bytes.fromhex("b8 2a 00 00 00"))
    start = compat_fast.native_start(emu)
    assert start is not None
    start(code, 1)
    assert engine.reg_read(se_arch.AMD64_REG_RAX) == 0x2A
    assert engine.reg_read(se_arch.AMD64_REG_RIP) == code + 5


def test_cached_memory_reads_and_return_follow_every_change() -> None:
    """Small reads remembered while Unicorn is stopped are dropped by any write (the engine's,
    the binding's, guest code's), an unmap, or a start; the one-call return leaves no cached
    register (nor a narrower view of one) stale."""
    import speakeasy.winenv.arch as se_arch
    from unicorn import UcError
    from unicorn import x86_const as x86

    from emulator.backends.speakeasy import compat_fast, setup

    target = setup.load_target(load_scenario(ROOT / "scenarios" / "benign-dll"))
    emu = target.emu
    compat_fast.use_direct_engine_access(emu)
    engine, unicorn = emu.emu_eng, emu.emu_eng.emu
    page = emu.mem_map(0x1000, tag="test.data")
    engine.mem_write(page, (1).to_bytes(8, "little"))
    assert engine.mem_read(page, 8) == (1).to_bytes(8, "little")
    assert engine.mem_read(page, 8) == (1).to_bytes(8, "little")  # remembered
    engine.mem_write(page, (2).to_bytes(8, "little"))  # through the engine
    assert engine.mem_read(page, 8) == (2).to_bytes(8, "little")
    unicorn.mem_write(page, (3).to_bytes(8, "little"))  # through the binding
    assert engine.mem_read(page, 8) == (3).to_bytes(8, "little")
    copy = engine.mem_read(page, 8)
    copy[0] = 0xFF  # a caller's copy is its own
    assert engine.mem_read(page, 8) == (3).to_bytes(8, "little")
    # Guest code: `mov dword [rip-0x100a], 0x2a` stores 0x2a at `page` from the next page.
    code = emu.mem_map(0x1000, base=page + 0x1000, tag="test.code")
    store = bytes.fromhex("c7 05 f6 ef ff ff 2a 00 00 00")
    engine.mem_write(code, store)
    start = compat_fast.native_start(emu)
    assert start is not None
    assert engine.mem_read(page, 8) == (3).to_bytes(8, "little")  # remembered again before the run
    start(code, 1)
    assert engine.mem_read(page, 8) == (0x2A).to_bytes(8, "little")
    # The word read (return addresses): remembered, and forgotten the same way.
    assert engine.read_word(page) == 0x2A
    engine.mem_write(page, (4).to_bytes(8, "little"))
    assert engine.read_word(page) == 4
    unicorn.mem_write(page, (5).to_bytes(8, "little"))
    assert engine.read_word(page) == 5 == engine.read_word(page)
    start(code, 1)  # guest code stores 0x2a again (a start forgets every remembered read)
    assert engine.read_word(page) == 0x2A
    emu.mem_free(page)
    with pytest.raises(UcError):
        engine.mem_read(page, 8)
    with pytest.raises(UcError):
        engine.read_word(page)
    # The return: stack pointer, pc and RAX written at once; EAX read before must not survive.
    engine.reg_write(se_arch.AMD64_REG_RAX, 0x1111_2222_3333_4444)
    assert engine.reg_read(se_arch.X86_REG_EAX) == 0x3333_4444
    assert engine.read_sp_pc() == (unicorn.reg_read(x86.UC_X86_REG_RSP), unicorn.reg_read(x86.UC_X86_REG_RIP))
    engine.write_return(0x5000, code, 0x5555_6666_7777_8888)
    assert engine.reg_read(se_arch.X86_REG_EAX) == 0x7777_8888 == unicorn.reg_read(x86.UC_X86_REG_EAX)
    assert engine.read_sp_pc() == (0x5000, code) == (emu.get_stack_ptr(), emu.get_pc())


# Modules whose handlers the argument test walks (a few hundred APIs with signatures).
SIGNATURE_MODULES = ("kernel32", "ntdll", "user32", "advapi32", "ws2_32", "wininet", "shell32", "msvcrt")


@pytest.mark.parametrize("scenario", ["benign-dll", "reg-b64-xor-x86"])
def test_handler_arguments_match_speakeasys_for_every_signature(scenario: str) -> None:
    """``FastDispatch._handler_args`` (slot layout once per API, values folded once per call)
    builds exactly the arguments Speakeasy's ``_render_signature_args`` + ``from_signature``
    build: every handler with a signature in the walked modules, with slots pointing at guest
    strings, at nothing, and holding values wider than each parameter (masks, 64-bit pairs on x86)."""
    from speakeasy.winenv.api.api import HandlerArgs

    from emulator.backends.speakeasy import compat_fast, setup

    target = setup.load_target(load_scenario(ROOT / "scenarios" / scenario))
    emu = target.emu
    compat_fast.use_direct_engine_access(emu)
    dispatch = compat_dispatch.FastDispatch(emu)
    ptr = dispatch.ptr
    text = emu.mem_map(0x1000, tag="test.args")
    contents = [
        b"C:\\Users\\x\\a.txt\x00\x00" + "HKCU\\Software\\w".encode("utf-16le") + b"\x00\x00",
        b"D:\\Other\\y\\b.dat\x00\x00" + "HKLM\\System\\zz".encode("utf-16le") + b"\x00\x00",
    ]
    emu.mem_write(text, contents[0])
    wide = text + 18
    samples = [text, wide, 0, 0xFFFF_FFFF_FFFF_FFFF & ((1 << (ptr * 8)) - 1), 0x1_2345_6789 & ((1 << (ptr * 8)) - 1), 7]
    samples += [0x40, 0x3000, 0x80000000]  # protection, allocation type, access: enum and flag names
    compared = multi_slot = masked = remembered = 0
    for module in SIGNATURE_MODULES:
        mod, _ = emu.api.get_export_func_handler(module, "")
        if mod is None:
            continue
        for name in sorted({entry[0] for entry in mod.funcs.values()}):
            plan = dispatch._plan(module, name)
            if plan is None or plan.sig is None:
                continue
            assert plan.layout is not None  # Speakeasy's signature lookup already matched argc
            for shift in range(len(samples)):
                argv = [samples[(i + shift) % len(samples)] for i in range(plan.argc)]
                for again in range(2):  # the second time from the per-parameter memo, other strings
                    emu.mem_write(text, contents[again])
                    stock = HandlerArgs.from_signature(plan.sig, ptr, emu._render_signature_args(plan.sig, argv), argv)
                    fast = dispatch._handler_args(plan, argv)
                    assert [a.model_dump() for a in fast.get_report_args()] == [
                        a.model_dump() for a in stock.get_report_args()
                    ], plan.imp_api
                    assert fast._params == stock._params, plan.imp_api
            remembered += sum(len(memo) for memo in plan.memos if memo is not None)
            compared += 1
            multi_slot += any(n > 1 for _p, n, _m in plan.layout)
            masked += any(m is not None for _p, _n, m in plan.layout)
    assert compared > 200, compared
    assert masked > 0
    assert remembered > 0  # the memos were used
    if ptr == 4:
        assert multi_slot > 0


def test_remembered_map_of_the_return_address_follows_the_map_list() -> None:
    """``FastDispatch._map_of`` answers what Speakeasy's ``get_address_map`` answers after every
    change of the map list: maps freed before, at and after the remembered one, new maps, a
    map reusing a freed address, an address outside every map."""
    from emulator.backends.speakeasy import setup

    target = setup.load_target(load_scenario(ROOT / "scenarios" / "benign-dll"))
    emu = target.emu
    dispatch = compat_dispatch.FastDispatch(emu)
    assert dispatch.stock_maps
    blocks = [emu.mem_map(0x2000, tag=f"test.map{i}") for i in range(4)]
    probes = [b + 0x10 for b in blocks] + [b + 0x1FFF for b in blocks] + [target.base + 0x10, 0x10]

    def agree() -> None:
        for address in probes + probes:  # twice: the second time from the memo
            assert dispatch._map_of(address) is emu.get_address_map(address), hex(address)

    agree()
    dispatch._map_of(blocks[2] + 0x10)
    emu.mem_free(blocks[0])  # an earlier map goes: the remembered one moves up the list
    agree()
    dispatch._map_of(blocks[2] + 0x10)
    emu.mem_free(blocks[2])  # the remembered map itself goes
    assert dispatch._map_of(blocks[2] + 0x10) is None is emu.get_address_map(blocks[2] + 0x10)
    again = emu.mem_map(0x2000, base=blocks[2], tag="test.again")  # its address used again
    assert dispatch._map_of(blocks[2] + 0x10) is emu.get_address_map(again + 0x10) is not None
    blocks.append(emu.mem_map(0x2000, tag="test.more"))
    probes.append(blocks[-1] + 0x20)
    agree()


def test_before_call_callbacks_run_in_wrapper_order_for_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compat.before_each_api_call`` hands its callback to fast mode's dispatch instead of
    wrapping ``handle_import_func``: each callback still runs once per API call, the one
    registered last first (the flow watch's end of stretch, then the stage of the call site),
    as the wrappers ran them; faithful mode keeps the wrappers."""
    from emulator.backends.speakeasy.flow import FlowWatch
    from emulator.recorder import Recorder

    order: list[str] = []
    flow_before, stage_at = FlowWatch._before_api_call, Recorder.stage_at

    def flow_first(self: Any) -> None:
        order.append("flow")
        flow_before(self)

    def stage_next(self: Any, address: int) -> Any:
        order.append("stage")
        return stage_at(self, address)

    monkeypatch.setattr(FlowWatch, "_before_api_call", flow_first)
    monkeypatch.setattr(Recorder, "stage_at", stage_next)
    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[FLOOD_CALLS])]})
    results = {}
    for mode in ("fast", "faithful"):
        order.clear()
        results[mode] = emulate(plan.model_copy(update={"mode": mode}))
        calls = sum(isinstance(e, ApiCall) for e in results[mode].events)
        assert calls > FLOOD_CALLS
        # the flow watch, the stage of the call site, then (recording the call) the stage again
        assert order == ["flow", "stage", "stage"] * calls, mode
    assert [e.model_dump() for e in results["fast"].events] == [e.model_dump() for e in results["faithful"].events]


def test_api_flood_with_parameters_is_recorded_as_faithful_mode_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/dispatch.py's ``--workload args`` (benchargs.dll): APIs with enum, handle and pointer
    parameters, rendered from the per-parameter memo after the first round, give the events
    faithful mode (Speakeasy's own rendering every call) gives."""
    base = load_scenario(ROOT / "bench" / "scenarios" / "argflood")
    rounds = 40
    plan = base.model_copy(update={"exports": [ExportCall(name="RunArgFloodCount", args=[rounds])]})
    served = _count_fast_calls(monkeypatch)
    fast = emulate(plan)
    faithful = emulate(plan.model_copy(update={"mode": "faithful"}))
    calls = [e for e in fast.events if isinstance(e, ApiCall)]
    assert served.count("kernel32.SetLastError") == rounds
    assert len(calls) == 5 * rounds + 1  # and the marker check's GetEnvironmentVariableA
    assert [c.args for c in calls if c.api == "kernel32.VirtualProtect"][-1][2] == "PAGE_READWRITE"
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in faithful.events]
    assert (fast.status, fast.detail) == (faithful.status, faithful.detail)


def test_indexed_enums_decode_every_value_as_speakeasy_does() -> None:
    """``compat_dispatch.index_enum`` (fast mode's decode of enum and flag parameters): for every
    enum of Speakeasy's signature database, a copy given the index decodes each member's value,
    zero, values no member equals, combinations of flag members with stray bits, and negative and
    wide values exactly as Speakeasy's own ``EnumDef.decode`` decodes them."""
    from speakeasy.winenv.api import sigdb

    db = sigdb.get_default_database()
    names = set()
    for source in db.sources:
        if hasattr(source, "_load"):
            source._load()  # the database reads its files on first use
        names.update(getattr(source, "_enums", {}) or {})
    checked = flags = 0
    for name in sorted(names):
        original = db.lookup_enum(name)
        if original is None:
            continue
        copy = sigdb.EnumDef(name=original.name, values=original.values, flags=original.flags)
        compat_dispatch.index_enum(copy)
        assert "decode" in vars(copy), name
        members = [value for _n, value in original.values]
        values = {0, 1, 3, 0x7F, 0x1234_5678, -1, 1 << 40, *members[:64]}
        values.update(m | 0x4000_0000 for m in members[:16])
        values.update(m + 1 for m in members[:16])
        if original.flags:
            values.update(a | b for a in members[:12] for b in members[:12])
            flags += 1
        for value in sorted(values):
            assert copy.decode(value) == compat_dispatch._STOCK_DECODE(original, value), (name, value)
        checked += 1
    assert checked > 100 and flags > 10, (checked, flags)


def test_api_traps_reach_the_run_loop_without_speakeasys_hook_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast mode registers one invalid-memory callback of its own in place of Speakeasy's
    wrapper: every API trap of the flood goes through it (none through the wrapper, which
    faithful mode's traps all go through), and the replay records what faithful mode records."""
    import speakeasy.common as se_common
    import unicorn as uc

    from emulator.backends.speakeasy import compat_fast

    wrapped: list[int] = []
    stock = se_common.Hook._wrap_memory_access_cb

    def wrapper(self: Any, emu: Any, access: int, address: int, size: int, value: int, ctx: Any = None) -> Any:
        if access == uc.UC_MEM_FETCH_UNMAPPED and address in self.se_obj.api_registry.traps:
            wrapped.append(address)
        return stock(self, emu, access, address, size, value, ctx)

    monkeypatch.setattr(se_common.Hook, "_wrap_memory_access_cb", wrapper)
    installed: list[bool] = []
    fetches: list[int] = []
    replace = compat_fast.replace_invalid_memory_callback

    def replacing(emu: Any, hook: Any, callback: Any) -> bool:
        def counted(handle: int, access: int, address: int, size: int, value: int, user: Any) -> bool:
            if access == uc.UC_MEM_FETCH_UNMAPPED:
                fetches.append(address)
            return bool(callback(handle, access, address, size, value, user))

        installed.append(replace(emu, hook, counted))
        return installed[-1]

    monkeypatch.setattr(compat_fast, "replace_invalid_memory_callback", replacing)
    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[FLOOD_CALLS])]})
    fast = emulate(plan)
    assert installed == [True]
    assert not wrapped, "an API trap went through Speakeasy's wrapper in fast mode"
    assert len(fetches) >= sum(isinstance(e, ApiCall) for e in fast.events) >= FLOOD_CALLS
    faithful = emulate(plan.model_copy(update={"mode": "faithful"}))
    assert len(wrapped) >= FLOOD_CALLS  # the wrapper counted: faithful mode's traps all went through it
    assert [e.model_dump() for e in fast.events] == [e.model_dump() for e in faithful.events]
    assert (fast.status, fast.detail) == (faithful.status, faithful.detail)


def test_clock_page_update_writes_what_two_writes_wrote() -> None:
    """The clock page is rewritten in one write (the bytes between its two clock fields read
    first): the page then holds what writing the two fields on their own gives."""
    from emulator.backends.speakeasy import guest, setup
    from emulator.vclock import VirtualClock

    plan = load_scenario(ROOT / "scenarios" / "benign-dll")
    emu = setup.load_target(plan).emu
    page = guest.KUSER_SHARED_DATA
    machine = guest.GuestMachine(emu, VirtualClock(start_unix=1_700_000_000.0), plan.guest, x64=True)
    writes: list[tuple[int, int]] = []
    write = emu.mem_write

    def recording(address: int, data: bytes) -> Any:
        writes.append((address, len(data)))
        return write(address, data)

    emu.mem_write = recording
    emu.mem_write(page + 0x100, bytes(range(256)))  # something between the two fields
    machine.update_shared_data()
    assert writes[1:] == [(page, guest.KUSER_TICK_COUNT + 12)]
    one_write = bytes(emu.mem_read(page, 0x1000))
    machine.clock.api_calls += 1000  # the clock moves; the same update as two writes
    machine._kuser_units = -1
    machine.update_shared_data()
    moved = bytes(emu.mem_read(page, 0x1000))
    emu.mem_write(page, one_write[:32])
    emu.mem_write(page + guest.KUSER_TICK_COUNT, one_write[guest.KUSER_TICK_COUNT : guest.KUSER_TICK_COUNT + 12])
    assert bytes(emu.mem_read(page, 0x1000)) == one_write != moved
    assert moved[0x100:0x200] == bytes(range(256)) == one_write[0x100:0x200]


@pytest.mark.parametrize("scenario", ["apiflood", "reg-b64-xor-x86"])
def test_held_c_calls_read_and_write_what_unicorns_binding_sees(scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The register batch read and write and the memory read fast mode makes on every API call
    (``compat_fast.held_functions``: ctypes without releasing the GIL, preallocated arguments)
    give the values Unicorn's own binding reads, for every register the dispatch reads, on a
    real emulation: before each call (what the run loop's first read fetched) and after it (what
    the one-call return wrote and keeps cached)."""
    checked: list[str] = []
    original = compat_dispatch.FastDispatch.handle_import_func

    def compare(dispatch: Any, when: str) -> None:
        engine = dispatch.emu.emu_eng
        unicorn = engine.emu
        cache, _words, running, _sp_e, _pc_e = engine.register_view
        assert not running[0]
        regs = (dispatch.sp_reg, dispatch.pc_reg, dispatch.ret_reg, *dispatch.arg_regs)
        mine = [engine.reg_read(reg) for reg in regs]
        assert cache, "nothing cached: the batch read was not used"
        assert mine == [unicorn.reg_read(engine.regs[reg]) for reg in regs], when
        # The batch read itself, every slot: poisoned first (within the register's width: a
        # 32-bit read leaves the upper half as it is), read again on an emptied cache.
        hot_ids, hot_values = engine._chainreplay_buffers[:2]
        for slot in range(len(hot_values)):
            hot_values[slot] = 0x5A5A_5A5A_5A5A_5A5A & ((1 << (8 * dispatch.ptr)) - 1)
        cache.clear()
        assert engine.reg_read(dispatch.sp_reg) == mine[0]
        assert list(hot_values) == [unicorn.reg_read(uc_reg) for uc_reg in hot_ids], when
        sp = mine[0]
        assert engine.read_word(sp) == int.from_bytes(unicorn.mem_read(sp, dispatch.ptr), "little"), when
        assert engine.mem_read(sp, 4 * dispatch.ptr) == unicorn.mem_read(sp, 4 * dispatch.ptr), when
        checked.append(when)

    def checking(self: Any, dll: str, name: str) -> Any:
        if not self.bound:
            self._bind()
        compare(self, f"before {name}")
        result = original(self, dll, name)
        if not self.emu.run_complete:
            compare(self, f"after {name}")
        return result

    monkeypatch.setattr(compat_dispatch.FastDispatch, "handle_import_func", checking)
    base = load_scenario(
        (ROOT / "bench" / "scenarios" / scenario) if scenario == "apiflood" else ROOT / "scenarios" / scenario
    )
    if scenario == "apiflood":
        base = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[FLOOD_CALLS])]})
    recording = emulate(base)
    assert recording.status == "completed", recording.detail
    assert sum(when.startswith("after") for when in checked) >= (FLOOD_CALLS if scenario == "apiflood" else 3)


def test_a_preempt_meant_for_another_stretch_is_resumed_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog arms and disarms without a lock, so its budget preempt can land in a later
    stretch than the one it was meant for, with its ``_watchdog_fired`` flag already cleared
    there. Any preempted stretch is resumed exactly while its deadline is ahead: here every
    fifth start after an API call is preempted (the budget's limit set to 0 after its reset, as
    a late preempt leaves it), and the flood records what it records unpreempted."""
    from emulator.backends.speakeasy import compat_fast, runner

    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[FLOOD_CALLS])]})
    clean = emulate(plan)
    starts: list[int] = []
    preemptions: list[int] = []
    stock = compat_fast.native_start_to_trap
    original_close = runner.NativeRunner.close

    def late_preempt(emu: Any) -> Any:
        start_to_trap = stock(emu)
        assert start_to_trap is not None

        def start(address: int) -> bool:
            starts.append(address)
            if len(starts) % 5 == 0:
                emu.emu_eng.emu._chainreplay_budget.limit = 0  # what BlockBudget.preempt stores
            return bool(start_to_trap(address))

        return start

    def close(self: runner.NativeRunner) -> None:
        preemptions.append(self.preemptions)
        original_close(self)

    monkeypatch.setattr(compat_fast, "native_start_to_trap", late_preempt)
    monkeypatch.setattr(runner.NativeRunner, "close", close)
    preempted = emulate(plan)
    assert len(starts) >= FLOOD_CALLS
    assert sum(preemptions) >= FLOOD_CALLS // 5, preemptions
    assert (preempted.status, preempted.detail) == (clean.status, clean.detail)
    assert [e.model_dump() for e in preempted.events] == [e.model_dump() for e in clean.events]


def test_the_deadline_stops_a_long_stretch_after_an_api_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog, armed without a lock for the runner's usual start after an API call
    (``start_by``), still stops guest code at the deadline. The 50th start of the flood stands
    for a long stretch of guest code: it waits (the GIL released, as Unicorn's start releases
    it) until the budget is preempted, and then returns as a start stopped at a block boundary.
    The watchdog must preempt it, and the run then ends as a timeout."""
    import time

    from emulator.backends.speakeasy import compat_fast
    from emulator.limits import Limits

    timeout = 1.0
    starts: list[int] = []
    waited: list[tuple[bool, float]] = []
    stock = compat_fast.native_start_to_trap

    def long_stretch(emu: Any) -> Any:
        start_to_trap = stock(emu)
        assert start_to_trap is not None

        def start(address: int) -> bool:
            starts.append(address)
            if len(starts) != 50:
                return bool(start_to_trap(address))
            state, began = emu.emu_eng.emu._chainreplay_budget, time.monotonic()
            while state.limit != 0 and time.monotonic() < began + 10 * timeout:
                time.sleep(0.001)
            waited.append((state.limit == 0, time.monotonic() - began))
            return False

        return start

    monkeypatch.setattr(compat_fast, "native_start_to_trap", long_stretch)
    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(
        update={"exports": [ExportCall(name="RunApiFloodCount", args=[10**6])], "limits": Limits(timeout=timeout)}
    )
    recording = emulate(plan)
    assert recording.status == "timeout", recording.detail
    assert len(waited) == 1 and waited[0][0], waited  # preempted by the watchdog
    assert waited[0][1] < 2 * timeout, waited
    assert len(starts) == 50  # no start after the deadline


def test_the_deadline_stops_a_run_that_loops_making_api_calls() -> None:
    """A guest that only makes API calls (the flood, a million of them) ends at its timeout."""
    import time

    from emulator.limits import Limits

    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(
        update={"exports": [ExportCall(name="RunApiFloodCount", args=[10**6])], "limits": Limits(timeout=0.5)}
    )
    began = time.monotonic()
    recording = emulate(plan)
    took = time.monotonic() - began
    assert recording.status == "timeout", recording.detail
    assert 10 < sum(isinstance(e, ApiCall) for e in recording.events) < 10**6
    assert took < 10, took
