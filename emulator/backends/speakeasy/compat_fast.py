"""Private Speakeasy and Unicorn names fast mode relies on (runner.py, budget.py, the dispatch path).

A part of compat.py kept in a module of its own (compat.py stays under 600 lines), under the
same rules: every name is checked when this module is imported, and an installed Speakeasy
that lacks one stops the import with one line naming its version and what changed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from typing import Any

import speakeasy.engines.unicorn_eng as se_engine
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.arch as se_arch
import unicorn as uc
import unicorn.unicorn_py3.unicorn as uc_binding
from speakeasy.report import ErrorInfo
from unicorn.unicorn_py3.arch.types import uc_hook_h

from emulator.backends.speakeasy.compat import _incompatible, _require_params
from emulator.backends.speakeasy.spans import SpanSet


def _check_installed() -> None:
    _require_params(se_engine.EmuEngine, "start", ("addr", "timeout", "count"))
    _require_params(se_engine.EmuEngine, "stop", ())
    winemu = se_winemu.WindowsEmulator
    _require_params(winemu, "_hook_code_core", ("emu", "addr", "size"))
    _require_params(winemu, "enable_code_hook", ())
    _require_params(winemu, "disable_code_hook", ())
    _require_params(winemu, "log_api", ("pc", "imp_api", "rv", "args", "run"))
    _require_params(winemu, "get_handler_signature", ("dll", "name", "argc"))
    _require_params(winemu, "_run_api_engine", ("address", "timeout", "count", "debugger"))
    _require_params(winemu, "_api_call_snapshot", ("entry",))
    _require_params(winemu, "_suspend_api_call", ("entry",))
    _require_params(winemu, "_dispatch_trap_fault", ())
    _require_params(winemu, "_continue_api_callback", ())
    _require_params(winemu, "_cancel_execution_runs", ("prepared",))
    for name in ("uc_hook_add", "uc_hook_del", "uc_emu_stop"):
        if not hasattr(getattr(uc_binding, "uclib", None), name):
            raise _incompatible(f"unicorn's C library binding has no {name}")


_check_installed()


# ---- fast mode: the deferred code hook and the engine's start / stop -------------------------


def take_over_code_hook(emu: Any, stand_in: object, enable: Callable[[], None], disable: Callable[[], None]) -> None:
    """Speakeasy only enables its deferred-work code hook when one exists; ``stand_in`` is it."""
    emu.tmp_code_hook = stand_in
    emu.enable_code_hook = enable
    emu.disable_code_hook = disable


def replace_engine_start_stop(
    emu: Any, start: Callable[..., Any], stop: Callable[[], Any]
) -> tuple[Callable[..., Any], Callable[[], Any]]:
    """Route the engine's start / stop through the runner; returns the originals."""
    engine = emu.emu_eng
    originals = (engine.start, engine.stop)
    engine.start = start
    engine.stop = stop
    return originals


def native_stop(emu: Any) -> Callable[[], None] | None:
    """The engine's stop straight through Unicorn's C library, or None (see :func:`native_start`)."""
    return getattr(emu.emu_eng, "stop_native", None)


def native_start(emu: Any) -> Callable[[int, int], None] | None:
    """``start(address, count)``: the engine's start with no timeout, straight through Unicorn's C
    library (set up by :func:`use_direct_engine_access`), or None where that is not available."""
    return getattr(emu.emu_eng, "start_native", None)


def native_start_status(emu: Any) -> Callable[[int, int], int] | None:
    """Like :func:`native_start`, returning Unicorn's status instead of raising it."""
    return getattr(emu.emu_eng, "start_native_status", None)


def native_start_to_trap(emu: Any) -> Callable[[int], bool] | None:
    """``start_to_trap(address)``: a start with no count and no timeout, True if it stopped at an
    API trap (see :func:`use_direct_engine_access`), or None where that is not available."""
    return getattr(emu.emu_eng, "start_to_trap", None)


def stopped_at_api_trap(emu: Any, status: int) -> bool:
    """Whether a start that ended with ``status`` stopped at an API trap, the way Speakeasy's
    run loop tolerates it (the fetch from the trap failed with a call suspended there, and no
    fault stop is pending): the loop then goes on as after a start that returned normally."""
    return (
        status == uc.UC_ERR_FETCH_UNMAPPED
        and emu._pending_api_entry is not None
        and emu._pending_fault_stop is None
        and emu._pending_trap_fault is None
    )


def engine_error(status: int) -> Exception:
    """The error Unicorn's binding raises for ``status``."""
    return uc_binding.UcError(status)


def run_deferred_code_work(emu: Any, address: int, size: int) -> None:
    emu._hook_code_core(emu, address, size)


def deferred_work_idle(emu: Any, address: int) -> bool:
    """Whether Speakeasy's deferred-work hook at ``address`` would only switch itself off: no
    exception to dispatch, no run to restart or end, no SEH resume to watch, no temporary fault
    page to unmap, the trap range already unmapped (``WindowsEmulator._hook_code_core``)."""
    return (
        emu.curr_exception_code == 0
        and not emu.restart_curr_run
        and address != emu.return_hook
        and not emu.run_complete
        and emu._seh_resume_pc is None
        and not emu.tmp_maps
        and emu.emu_hooks_set
    )


def emulation_complete(emu: Any) -> bool:
    return bool(emu.emu_complete)


def at_api_trap_or_exit(emu: Any, pc: int) -> bool:
    return emu.api_registry.traps.get(pc) is not None or pc in (emu.return_hook, emu.exit_hook)


def end_run_with_error(emu: Any, error_type: str, pc: int, count: int) -> None:
    """End the current run as Speakeasy ends one at a limit, with the error recorded on it."""
    run = emu.curr_run
    if run is not None and run.error is None:
        run.error = ErrorInfo(type=error_type, pc=pc, count=count)
    emu.on_run_complete()


def add_native_code_hook(unicorn: Any, callback: Callable[[Any, int, int, Any], None]) -> int:
    return int(unicorn.hook_add(uc.UC_HOOK_CODE, callback))


def remove_native_hook(unicorn: Any, handle: int) -> None:
    unicorn.hook_del(handle)


def flush_translations(unicorn: Any) -> None:
    unicorn.ctl_flush_tb()


# Memory reads up to this size go through one preallocated buffer.
SCRATCH_BYTES = 4096
# Reads up to this size made while Unicorn is stopped are remembered until memory changes (at
# most this many at once).
CACHED_READ_BYTES = 16
CACHED_READS = 64


def lean_functions(lib: Any) -> Any:
    """Unicorn's C functions that fast mode calls per API call, from the binding's library
    (the same loaded object, its own function objects) declared with integer arguments only.
    These release the GIL: a start runs guest code for as long as it takes (the watchdog
    thread must run meanwhile), and a stop is also made from the watchdog's thread."""
    lean = ctypes.CDLL(lib._name, handle=lib._handle)
    handle_t, u64 = ctypes.c_void_p, ctypes.c_uint64
    for name, argtypes in (
        ("uc_emu_start", (handle_t, u64, u64, u64, ctypes.c_size_t)),
        ("uc_emu_stop", (handle_t,)),
    ):
        function = getattr(lean, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return lean


def start_to_exit(lib: Any, handle: Any, until: int) -> tuple[Callable[[], int], Any]:
    """``uc_emu_start(handle, address, until, 0, 0)`` as a call without arguments, and the
    preallocated ``c_uint64`` whose value is the address to start at: no argument declared,
    every argument a ctypes object made once, so ctypes converts nothing per start (the GIL is
    released, as by :func:`lean_functions`)."""
    bare = ctypes.CDLL(lib._name, handle=lib._handle)
    start = bare.uc_emu_start
    start.restype = ctypes.c_int
    address = ctypes.c_uint64()
    call = functools.partial(start, handle, address, ctypes.c_uint64(until), ctypes.c_uint64(0), ctypes.c_size_t(0))
    return call, address


def held_functions(lib: Any) -> Any:
    """Unicorn's short C functions fast mode calls on every API call (a memory read, the register
    batch read and write: well under a microsecond of C each), called without releasing the GIL
    (``ctypes.PyDLL``): releasing and taking it back costs about as much as the call itself.
    ``uc_reg_read_batch`` and ``uc_reg_write_batch`` have no declared arguments: they are called
    with preallocated ctypes objects (the handle, the arrays, the count), which ctypes passes
    without converting anything."""
    held = ctypes.PyDLL(lib._name, handle=lib._handle)
    read = held.uc_mem_read
    read.argtypes, read.restype = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64), ctypes.c_int
    for name in ("uc_reg_read_batch", "uc_reg_write_batch"):
        getattr(held, name).restype = ctypes.c_int
    return held


def register_view(engine: Any) -> tuple[Any, ...]:
    """The engine's register cache as :func:`use_direct_engine_access` left it (the cache, the
    remembered words, the running flag, the stack pointer's and pc's keys); when it keeps none,
    an empty cache that is always running, so every read calls the engine."""
    view = getattr(engine, "register_view", None)
    return view if view is not None else ({}, {}, [True], None, None)


def use_direct_engine_access(emu: Any) -> None:
    """Register and memory access from API handlers straight through Unicorn's C library.

    Speakeasy reads about 17 registers per API call through its engine and Unicorn's Python
    binding, which picks a ctypes class per register, allocates it and checks the result; memory
    reads allocate through ``ctypes.create_string_buffer``, which raises an audit event each time.
    These replacements give the same values and errors for the same calls: integer registers
    (those the binding reads as a 64-bit integer) with one preallocated buffer, memory into a
    fresh bytearray; any other register goes the original way. Only this emulator's engine is
    changed. The handler signature of an API (a pure function of the signature database, the
    architecture and the argument count) is looked up once per API instead of once per call.
    """
    engine = emu.emu_eng
    unicorn = engine.emu
    select = getattr(type(unicorn), "_select_reg_class", None)
    if select is None or not hasattr(unicorn, "_uch") or not hasattr(unicorn, "_hook_exception"):
        return
    handle, lib = unicorn._uch, uc_binding.uclib
    read_reg, write_reg = lib.uc_reg_read, lib.uc_reg_write
    # The C functions called on every API call, declared to take plain integers (the engine
    # handle, addresses of preallocated buffers): the same calls as the binding's, without its
    # per-call conversion of pointer arguments (about 1 us of a 1.5-3 us call).
    lean, held = lean_functions(lib), held_functions(lib)
    raw = handle.value
    handle_arg = ctypes.c_void_p(raw)  # passed as it is, unconverted, to the held functions
    integer = {reg: ereg for reg, ereg in engine.regs.items() if select(ereg) is ctypes.c_uint64}
    value = ctypes.c_uint64()
    ref = ctypes.byref(value)
    original_read, original_write = engine.reg_read, engine.reg_write

    # Register values read while Unicorn is stopped, until the next write of any register
    # (through the engine, the binding or the C library as the binding calls it) or start.
    cache: dict[int, int] = {}
    running = [False]
    # Registers an API call reads anyway, fetched together with one C call on a miss.
    x64_engine = emu.get_arch() == se_arch.ARCH_AMD64
    hot_names = ("RSP", "RIP", "RAX", "RCX", "RDX", "R8", "R9") if x64_engine else ("ESP", "EIP", "EAX", "ECX", "EDX")
    hot = [integer[getattr(se_arch, ("AMD64_REG_" if x64_engine else "X86_REG_") + n)] for n in hot_names]
    hot_set = frozenset(hot)
    sp_reg_id, pc_reg_id, ret_reg_id = (
        (se_arch.AMD64_REG_RSP, se_arch.AMD64_REG_RIP, se_arch.AMD64_REG_RAX)
        if x64_engine
        else (se_arch.X86_REG_ESP, se_arch.X86_REG_EIP, se_arch.X86_REG_EAX)
    )
    hot_mask = (1 << (64 if x64_engine else 32)) - 1
    hot_ids = (ctypes.c_int * len(hot))(*hot)
    hot_values = (ctypes.c_uint64 * len(hot))()
    hot_ptrs = (ctypes.c_void_p * len(hot))(*(ctypes.addressof(hot_values) + 8 * i for i in range(len(hot))))
    # Iterating a ctypes array builds each int through ctypes (about 2 us for seven); a
    # memoryview of it gives them in one C call.
    hot_view = memoryview(hot_values).cast("B").cast("Q")
    hot_count = len(hot)
    # uc_reg_read_batch of the hot registers into hot_values: its arguments never change.
    read_hot = functools.partial(held.uc_reg_read_batch, handle_arg, hot_ids, hot_ptrs, ctypes.c_int(hot_count))

    def reg_read(reg: Any) -> Any:
        ereg = integer.get(reg)
        if ereg is None:
            return original_read(reg)
        if not running[0]:
            cached = cache.get(ereg)
            if cached is not None:
                return cached
            # No zeroing first: only this call writes hot_values, each slot as wide as its
            # register, so a 32-bit register's upper half stays as created (zero).
            if ereg in hot_set and read_hot() == uc.UC_ERR_OK:
                cache.update(zip(hot, hot_view.tolist(), strict=True))
                return cache[ereg]
        value.value = 0
        status = read_reg(handle, ereg, ref)
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status, ereg)
        if not running[0]:
            cache[ereg] = value.value
        return value.value

    def reg_write(reg: Any, val: Any) -> Any:
        ereg = integer.get(reg)
        if ereg is None or not isinstance(val, int):
            cache.clear()
            return original_write(reg, val)
        kept = {k: v for k, v in cache.items() if k in hot_set} if ereg in hot_set else None
        cache.clear()
        value.value = val
        status = write_reg(handle, ereg, ref)
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status, ereg)
        if kept is not None and not running[0]:
            # The hot registers are whole, distinct registers of the architecture's width: writing
            # one changes no other, and it reads back as written (modulo its width).
            cache.update(kept)
            cache[ereg] = val & hot_mask
        return None

    # An API call's return: stack pointer, pc and return register in one C call.
    sp_e, pc_e, ret_e = hot[0], hot[1], hot[2]
    ret_ids = (ctypes.c_int * 3)(sp_e, pc_e, ret_e)
    ret_values = (ctypes.c_uint64 * 3)()
    ret_ptrs = (ctypes.c_void_p * 3)(*(ctypes.addressof(ret_values) + 8 * i for i in range(3)))
    ret_view = memoryview(ret_values).cast("B").cast("Q")  # setting an item: cheaper than through ctypes
    # uc_reg_write_batch of the first two or all three of them (ret_values set first).
    write_two, write_three = (
        functools.partial(held.uc_reg_write_batch, handle_arg, ret_ids, ret_ptrs, ctypes.c_int(count))
        for count in (2, 3)
    )

    def write_return(sp: int, pc: int, rv: int | None) -> None:
        """Like writing the stack pointer, the pc, then (unless None) the return register."""
        if running[0] or not (rv is None or isinstance(rv, int)):
            reg_write(sp_reg_id, sp)
            reg_write(pc_reg_id, pc)
            if rv is not None:
                reg_write(ret_reg_id, rv)
            return
        # Only the hot registers cached stay (a cached sub-register of one written could change).
        if not hot_set.issuperset(cache):
            for key in [key for key in cache if key not in hot_set]:
                del cache[key]
        sp, pc = sp & hot_mask, pc & hot_mask
        ret_view[0], ret_view[1] = sp, pc
        if rv is not None:
            rv &= hot_mask
            ret_view[2] = rv
            status = write_three()
        else:
            status = write_two()
        if status != uc.UC_ERR_OK:
            cache.clear()
            raise uc_binding.UcError(status)
        cache[sp_e], cache[pc_e] = sp, pc
        if rv is not None:
            cache[ret_e] = rv

    engine.write_return = write_return

    binding_write, binding_write_batch, binding_start = (
        unicorn._do_reg_write,
        unicorn._do_reg_write_batch,
        unicorn.emu_start,
    )

    def do_reg_write(*args: Any) -> Any:
        cache.clear()
        return binding_write(*args)

    # Small memory reads while Unicorn is stopped (the return address an API call reads up to
    # three times), until anything writes, maps, unmaps or protects memory or Unicorn starts.
    # (address, size) -> bytes; an address alone -> the pointer-sized word there (read_word).
    reads: dict[Any, Any] = {}

    def forget_reads(original: Callable[..., Any]) -> Callable[..., Any]:
        def changed(*args: Any, **kwargs: Any) -> Any:
            reads.clear()
            return original(*args, **kwargs)

        return changed

    for method in ("mem_write", "mem_map", "mem_map_ptr", "mem_unmap", "mem_protect", "mmio_map"):
        if hasattr(unicorn, method):
            setattr(unicorn, method, forget_reads(getattr(unicorn, method)))

    def do_reg_write_batch(*args: Any) -> Any:
        cache.clear()
        return binding_write_batch(*args)

    def emu_start(*args: Any, **kwargs: Any) -> Any:
        cache.clear()
        reads.clear()
        running[0] = True
        try:
            return binding_start(*args, **kwargs)
        finally:
            running[0] = False
            cache.clear()

    unicorn._do_reg_write, unicorn._do_reg_write_batch, unicorn.emu_start = do_reg_write, do_reg_write_batch, emu_start
    c_start = lean.uc_emu_start

    def start_native_status(address: int, count: int) -> int:
        """What Speakeasy's engine start does for a start with no timeout (the binding's
        ``emu_start`` to address 0xFFFFFFFF), in one call: same hook exceptions; Unicorn's
        status returned (the binding raises it as ``UcError`` unless it is ``UC_ERR_OK``)."""
        cache.clear()
        reads.clear()
        running[0] = True
        unicorn._hook_exception = None
        try:
            status = c_start(raw, address, 0xFFFFFFFF, 0, count)
        finally:
            running[0] = False
            cache.clear()
        if status != uc.UC_ERR_OK:
            return int(status)
        if unicorn._hook_exception is not None:
            raise unicorn._hook_exception
        return int(status)

    def start_native(address: int, count: int) -> None:
        status = start_native_status(address, count)
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status)

    c_stop = lean.uc_emu_stop

    def stop_native() -> None:
        status = c_stop(raw)
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status)

    fetch_unmapped = uc.UC_ERR_FETCH_UNMAPPED
    # The runner's usual start: to Speakeasy's end address, no timeout, no count.
    start_here, start_at = start_to_exit(lib, handle_arg, 0xFFFFFFFF)

    def start_to_trap(address: int) -> bool:
        """``start_native_status(address, 0)`` and :func:`stopped_at_api_trap` in one call (the
        runner's usual start, once per API call): True if the start stopped at an API trap,
        False if it returned normally; Unicorn's error raised otherwise, as ``start_native``."""
        cache.clear()
        reads.clear()
        running[0] = True
        unicorn._hook_exception = None
        start_at.value = address
        try:
            status = start_here()
        finally:
            running[0] = False
            cache.clear()
        if status:
            if (
                status == fetch_unmapped
                and emu._pending_api_entry is not None
                and emu._pending_fault_stop is None
                and emu._pending_trap_fault is None
            ):
                return True
            raise uc_binding.UcError(status)
        if unicorn._hook_exception is not None:
            raise unicorn._hook_exception
        return False

    engine.start_to_trap = start_to_trap
    engine.start_native = start_native
    engine.start_native_status = start_native_status
    engine.stop_native = stop_native

    scratch = ctypes.create_string_buffer(SCRATCH_BYTES)
    scratch_view = memoryview(scratch).cast("B")
    scratch_at = ctypes.addressof(scratch)
    read_mem = held.uc_mem_read

    def mem_read(addr: int, size: int) -> bytearray:
        small = size <= CACHED_READ_BYTES and not running[0]
        if small:
            known = reads.get((addr, size))
            if known is not None:
                return bytearray(known)
        target = scratch if size <= SCRATCH_BYTES else (ctypes.c_char * size)()
        at = scratch_at if size <= SCRATCH_BYTES else ctypes.addressof(target)
        status = read_mem(handle_arg, addr, at, size) if size > 0 else uc.UC_ERR_OK
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status, addr, size)
        data = bytearray(scratch_view[:size] if size <= SCRATCH_BYTES else target)
        if small:
            if len(reads) >= CACHED_READS:
                reads.clear()
            reads[(addr, size)] = bytes(data)
        return data

    word_size = 8 if x64_engine else 4
    word = ctypes.c_uint64()
    word_at = ctypes.addressof(word)
    word_view = memoryview(word).cast("B").cast("Q")

    def read_word(addr: int) -> int:
        """``int.from_bytes(mem_read(addr, pointer size), "little")`` (the same value, the same
        error), remembered like a small read while Unicorn is stopped."""
        if running[0]:
            return int.from_bytes(mem_read(addr, word_size), "little")
        known = reads.get(addr)
        if known is not None:
            return int(known)
        word_view[0] = 0
        status = read_mem(handle_arg, addr, word_at, word_size)
        if status != uc.UC_ERR_OK:
            raise uc_binding.UcError(status, addr, word_size)
        if len(reads) >= CACHED_READS:
            reads.clear()
        value = reads[addr] = word_view[0]
        return value

    engine.reg_read, engine.reg_write, engine.mem_read = reg_read, reg_write, mem_read
    # The C calls above take these buffers by address: they live as long as the engine.
    engine._chainreplay_buffers = (hot_ids, hot_values, hot_ptrs, ret_ids, ret_values, ret_ptrs, scratch, word)
    engine.read_word = read_word
    # Speakeasy asks for the architecture twice per pc or stack pointer access.
    x64 = x64_engine
    pc_reg = se_arch.AMD64_REG_RIP if x64 else se_arch.X86_REG_EIP
    sp_reg = se_arch.AMD64_REG_RSP if x64 else se_arch.X86_REG_ESP

    def get_pc() -> Any:
        if not running[0]:
            cached = cache.get(pc_e)
            if cached is not None:
                return cached
            if read_hot() == uc.UC_ERR_OK:
                # reg_read's miss, inline (the first read after a start: the run loop's)
                cache.update(zip(hot, hot_view.tolist(), strict=True))
                return cache[pc_e]
        return reg_read(pc_reg)

    def get_stack_ptr() -> Any:
        cached = None if running[0] else cache.get(sp_e)
        return reg_read(sp_reg) if cached is None else cached

    def read_sp_pc() -> tuple[int, int]:
        """The stack pointer and the pc, as two reads would give them."""
        if not running[0]:
            sp, pc = cache.get(sp_e), cache.get(pc_e)
            if sp is not None and pc is not None:
                return sp, pc
        return reg_read(sp_reg), reg_read(pc_reg)

    def read_frame() -> tuple[int, int, int]:
        """(stack pointer, pc, the word at the stack pointer): ``read_sp_pc()`` and
        ``read_word(sp)`` in one call (the same values, the same errors)."""
        if not running[0]:
            sp, pc = cache.get(sp_e), cache.get(pc_e)
            if sp is None and pc is None and read_hot() == uc.UC_ERR_OK:
                # reg_read's miss, inline (the first read after a start: nothing cached)
                cache.update(zip(hot, hot_view.tolist(), strict=True))
                sp, pc = cache[sp_e], cache[pc_e]
            if sp is not None and pc is not None:
                known = reads.get(sp)
                if known is None:  # read_word's miss, inline
                    word_view[0] = 0
                    status = read_mem(handle_arg, sp, word_at, word_size)
                    if status != uc.UC_ERR_OK:
                        raise uc_binding.UcError(status, sp, word_size)
                    if len(reads) >= CACHED_READS:
                        reads.clear()
                    known = reads[sp] = word_view[0]
                return sp, pc, known
        sp, pc = reg_read(sp_reg), reg_read(pc_reg)
        return sp, pc, read_word(sp)

    emu.get_pc, emu.get_stack_ptr = get_pc, get_stack_ptr
    engine.read_sp_pc = read_sp_pc
    engine.read_frame = read_frame
    # For a caller that reads the cache itself (fast mode's dispatch): the register cache, the
    # remembered words, the running flag, the stack pointer's and pc's keys. A missing key
    # (never read, or forgotten after a write) means: call read_frame / read_sp_pc.
    engine.register_view = (cache, reads, running, sp_e, pc_e)
    emu.set_pc = lambda addr: reg_write(pc_reg, addr)
    emu.set_stack_ptr = lambda addr: reg_write(sp_reg, addr)
    original_signature = emu.get_handler_signature
    signatures: dict[tuple[str, str, int], Any] = {}

    def get_handler_signature(dll: str, name: str, argc: int) -> Any:
        key = (dll, name, argc)
        if key not in signatures:
            signatures[key] = original_signature(dll, name, argc)
        return signatures[key]

    emu.get_handler_signature = get_handler_signature


def use_lean_api_log(emu: Any) -> None:
    """``log_api`` keeps Speakeasy's run accounting but builds no profiler event nobody reads.

    Speakeasy's ``log_api`` formats the whole call as a string for an INFO log line (even when
    INFO is off) and appends a pydantic ``ApiEvent`` to the run's event list, which only
    Speakeasy's own report reads (chainreplay records its own events) and which its file-access
    records then scan backwards on every read or write. This version counts the call for
    ``max_api_count`` and the run's API list and hash exactly as Speakeasy does, and takes
    Speakeasy's own path whenever that log line is wanted or the call's event is updated later
    (an API callback frame). Call it before :func:`after_each_api_call`.
    """
    original = emu.log_api
    se_logger = logging.getLogger(se_winemu.__name__)

    def log_api(pc: int, imp_api: str, rv: int | None, args: list[Any], *, run: Any = None) -> None:
        run = emu.curr_run if run is None else run
        frame = getattr(emu, "_active_api_frame", None)
        if (
            run is None
            or se_logger.isEnabledFor(logging.INFO)
            or (frame is not None and run.api_callbacks and any(item is frame for item in run.api_callbacks))
        ):
            original(pc, imp_api, rv, args, run=run)
            return
        run.num_apis += 1
        if imp_api not in run.unique_apis:
            run.api_hash.update(imp_api.lower().encode("utf-8"))
            run.unique_apis.append(imp_api)

    # Fast mode's dispatch makes this accounting itself when it sees this marker (compat_dispatch).
    log_api.lean_for = emu  # type: ignore[attr-defined]
    emu.log_api = log_api


def replace_invalid_memory_callback(emu: Any, hook: Any, callback: Callable[..., bool]) -> bool:
    """Register ``callback`` with Unicorn in place of the one Speakeasy registered for its
    invalid-memory ``hook`` (called with the same arguments: the engine handle, access, address,
    size, value, user data), as Speakeasy's engine registers it (same hook type and range, no
    binding wrapper); the hook object and the engine's table then name the new registration.
    Speakeasy's dispatcher is the only native invalid-memory hook, so the order of the hooks
    Unicorn calls stays the same. False, with nothing changed, where that is not so."""
    engine = emu.emu_eng
    callbacks = getattr(engine, "_callbacks", None)
    cfunc_type = getattr(se_engine, "UC_HOOK_MEM_INVALID_CB", None)
    old: Any = getattr(hook, "handle", None)
    unicorn: Any = getattr(engine, "emu", None)
    if (
        type(callbacks) is not dict
        or old not in callbacks
        or cfunc_type is None
        or not getattr(hook, "native_hook", False)
        or not hasattr(unicorn, "_uch")
        or type(callbacks[old]) is not se_engine.ToggleableHook
    ):
        return False
    lib = uc_binding.uclib
    cfunc = ctypes.cast(cfunc_type(callback), cfunc_type)
    handle = uc_hook_h()
    address = ctypes.cast(cfunc, ctypes.c_void_p).value
    status = lib.uc_hook_add(unicorn._uch, ctypes.byref(handle), uc.UC_HOOK_MEM_INVALID, address, None, 1, 0)
    if status != uc.UC_ERR_OK:
        return False
    status = lib.uc_hook_del(unicorn._uch, uc_hook_h(old))
    if status != uc.UC_ERR_OK:
        lib.uc_hook_del(unicorn._uch, handle)
        return False
    replaced = se_engine.ToggleableHook(cfunc)  # keeps the ctypes callback alive, as Speakeasy's does
    replaced.enabled = callbacks.pop(old).enabled
    callbacks[handle.value] = replaced
    hook.handle = handle.value
    return True


def native_stop_function() -> int:
    """Address of Unicorn's C ``uc_emu_stop`` (a native hook may tail-call it)."""
    return int(ctypes.cast(uc_binding.uclib.uc_emu_stop, ctypes.c_void_p).value or 0)


def add_native_block_hook(unicorn: Any, callback: int, user_data: int) -> int:
    """A ``UC_HOOK_BLOCK`` whose callback is native code at ``callback`` (no Python per block)."""
    handle = ctypes.c_size_t()
    if not hasattr(unicorn, "_uch"):
        raise _incompatible("unicorn.Uc no longer keeps its engine handle in _uch")
    callback_ptr, data_ptr = ctypes.c_void_p(callback), ctypes.c_void_p(user_data)
    add = uc_binding.uclib.uc_hook_add
    status = add(unicorn._uch, ctypes.byref(handle), uc.UC_HOOK_BLOCK, callback_ptr, data_ptr, 1, 0)
    if status != uc.UC_ERR_OK:
        raise uc.UcError(status)
    return int(handle.value)


def remove_native_block_hook(unicorn: Any, handle: int) -> None:
    uc_binding.uclib.uc_hook_del(unicorn._uch, ctypes.c_size_t(handle))


# ---- address-space search ------------------------------------------------------------------


class _MappedSpans:
    """The engine's mapped address ranges, kept up to date through the engine's map / unmap (a
    protection change splits Unicorn's regions but leaves what is mapped unchanged)."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.spans: SpanSet | None = None
        engine = emu.emu_eng
        original_map, original_unmap = engine.mem_map, engine.mem_unmap

        def mem_map(base: int, size: int, *args: Any, **kwargs: Any) -> Any:
            result = original_map(base, size, *args, **kwargs)
            if self.spans is not None:
                self.spans.add(int(base), int(base) + int(size))
            return result

        def mem_unmap(addr: int, size: int) -> Any:
            result = original_unmap(addr, size)
            if self.spans is not None:
                self.spans.remove(int(addr), int(addr) + int(size))
            return result

        engine.mem_map = mem_map
        engine.mem_unmap = mem_unmap

    def current(self) -> list[tuple[int, int]]:
        if self.spans is None:
            self.spans = SpanSet()
            for begin, end, *_ in self.emu.get_mem_regions():
                self.spans.add(int(begin), int(end) + 1)
        return self.spans.spans


LOWEST_USER_ADDRESS = 0x10000


def use_fast_address_search(emu: Any) -> None:
    """Replace Speakeasy's free-range search with one giving the same addresses in log time.

    ``MemoryManager.get_valid_ranges`` lists every mapped and reserved page in a Python list
    (through Unicorn's region list) and set-differences each candidate range against it: with
    100 MiB mapped one VirtualAlloc of 1 MiB cost about 0.3 s, so ``max_mapped_memory`` could
    never fire before the timeout. This version walks the same candidates in the same order and
    tests each against the mapped spans, kept up to date as the engine maps and unmaps, with a
    binary search; one difference: a search with no address asked for starts at 64 KiB
    (``LOWEST_USER_ADDRESS``), not at the first page, so nothing lands where Windows maps nothing.
    """
    import bisect

    page_size = int(emu.page_size)
    mapped = _MappedSpans(emu)

    def get_valid_ranges(size: int, addr: int | None = None) -> tuple[int, int]:
        total = size
        if addr is None:
            # Windows maps nothing below 64 KiB (MM_LOWEST_USER_ADDRESS); Speakeasy's search
            # started at the first page, so the PEB, the TEB and the process parameters sat there.
            addr = LOWEST_USER_ADDRESS
        base = addr - (addr % page_size)
        if total < page_size:
            total = page_size
        elif total % page_size:
            total += page_size - (total % page_size)
        spans = list(mapped.current())
        reserves = [(int(r.base), int(r.base) + int(r.size)) for r in emu.mem_reserves]
        if reserves:
            spans = sorted(spans + reserves)
        starts = [begin for begin, _ in spans]
        ends: list[int] = []  # running maximum of the ends, so one bisect finds any overlap
        for _, end in spans:
            ends.append(max(end, ends[-1]) if ends else end)

        def is_free(low: int, high: int) -> bool:
            # Spans starting below `high`; the furthest any of them reaches must stay <= low.
            index = bisect.bisect_left(starts, high)
            return index == 0 or ends[index - 1] <= low

        attempts = 9999
        while attempts:
            if is_free(base, base + total):
                break
            if not attempts % 10:
                base += page_size * 1000
            else:
                base += total
            attempts -= 1
        if attempts == 0:
            raise Exception("Failed to allocate emulator memory")
        return base, total

    emu.get_valid_ranges = get_valid_ranges


def on_emulator_created(se: Any, callback: Callable[[Any], None]) -> None:
    """``callback(emu)`` as soon as the Speakeasy instance creates its emulator (before loading)."""
    original_init = se._init_emulator

    def init_emulator(*args: Any, **kwargs: Any) -> None:
        original_init(*args, **kwargs)
        callback(se.emu)

    se._init_emulator = init_emulator
