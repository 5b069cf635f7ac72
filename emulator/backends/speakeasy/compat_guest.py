"""Private Speakeasy and Unicorn names the guest-machine modules (exceptions.py, guest.py) rely on.

A part of compat.py kept in a module of its own (compat.py stays under 600 lines), under the
same rules: every name is checked when this module is imported, and an installed Speakeasy
that lacks one stops the import with one line naming its version and what changed.
"""

from __future__ import annotations

import ntpath
import struct
from collections.abc import Callable
from typing import Any

import speakeasy.windows.objman as se_objman
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.api.usermode.kernel32 as se_kernel32
import speakeasy.winenv.arch as se_arch
import unicorn as uc
from unicorn import x86_const

from emulator.backends.speakeasy.compat import _incompatible, api_at_trap, intercept_protection_fault

# ---- code the guest writes (guest.py) ---------------------------------------------------------


def add_write_hook(unicorn: Any, begin: int, end: int, callback: Callable[[Any, int, int, int, int, Any], None]) -> int:
    """A hook on guest instructions writing into [begin, end] (writes elsewhere cost nothing)."""
    return int(unicorn.hook_add(uc.UC_HOOK_MEM_WRITE, callback, None, begin, end))


def engine_writable(unicorn: Any, begin: int, end: int) -> bool:
    """Whether Unicorn lets guest instructions write anywhere in [begin, end)."""
    return any(low < end and begin <= high and perms & uc.UC_PROT_WRITE for low, high, perms in unicorn.mem_regions())


def drop_translations(unicorn: Any, begin: int, end: int) -> None:
    """Forget the translated code of [begin, end) so new code hooks there take effect."""
    unicorn.ctl_remove_cache(begin, end)


# ---- exception dispatch Speakeasy does not do (exceptions.py) ---------------------------------

EXCEPTION_METHODS = (
    "dispatch_seh",
    "continue_seh",
    "_hook_interrupt",
    "_handle_prot_write",
    "_map_faulting_page_for_exception",
)


def replace_exception_methods(emu: Any, replacements: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Put ``replacements`` in place of the emulator's SEH methods; returns every original."""
    originals = {name: getattr(emu, name) for name in EXCEPTION_METHODS}
    for name, method in replacements.items():
        setattr(emu, name, method)
    return originals


def add_invalid_instruction_hook(unicorn: Any, callback: Callable[[Any, Any], bool]) -> int:
    """Unicorn calls ``callback`` at an undefined opcode (pc on it); True resumes at the pc it set."""
    return int(unicorn.hook_add(uc.UC_HOOK_INSN_INVALID, callback))


def intercept_read_protection(emu: Any, handler: Callable[[int], bool]) -> None:
    """Call ``handler(address)`` first on a read the page protection forbids (Speakeasy leaves
    that case unhandled: the run ends with Unicorn's error). True resumes at the pc it set."""
    intercept_protection_fault(
        emu, uc.UC_MEM_READ_PROT, lambda address: True if handler(address) else None, unhooked=False
    )


def api_symbol_at(emu: Any, address: int) -> str | None:
    """``module.Function`` exported at ``address`` (an import slot's value) or trapped there."""
    return emu.get_symbol_from_address(address) or api_at_trap(emu, address)


def module_base_at(emu: Any, address: int) -> int | None:
    """Base of the image (target, DLL or decoy) ``address`` lies in."""
    module = emu.get_mod_from_addr(address)
    return None if module is None else int(module.base)


def symbol_at(emu: Any, address: int) -> str:
    """``module!Export+0xN`` for an address in a loaded module's image (the nearest export at
    or below it), ``module+0xN`` without one, or the address alone outside every module."""
    module = emu.get_mod_from_addr(address)
    if module is None:
        return f"{address:#x}"
    name = ntpath.basename(str(getattr(module, "emu_path", "") or getattr(module, "name", "") or "module"))
    best: tuple[int, str] | None = None
    try:
        exports = module.get_exports()
    except Exception:  # noqa: BLE001 - a module without an export table
        exports = []
    for export in exports:
        at = getattr(export, "address", None)
        if isinstance(at, int) and export.name and at <= address and (best is None or at > best[0]):
            best = (at, str(export.name))
    if best is None:
        return f"{name}+{address - int(module.base):#x}"
    return f"{name}!{best[1]}" + (f"+{address - best[0]:#x}" if address > best[0] else "")


def seh_return_address() -> int:
    return int(se_winemu.winemu.SEH_RETURN_ADDR)


def vectored_handlers(emu: Any) -> list[int]:
    return list(emu.veh_handlers)


def enable_deferred_work(emu: Any) -> None:
    """Speakeasy's deferred work (temporary fault pages, SEH bookkeeping) runs before the next
    guest instruction, as after every invalid-memory event it handles itself."""
    emu.prev_pc = emu.get_pc()
    emu.enable_code_hook()


def raise_on_next_instruction(emu: Any, code: int) -> None:
    """Speakeasy's deferred work dispatches ``code`` before the next guest instruction."""
    emu.curr_exception_code = code
    emu.prev_pc = emu.get_pc()
    emu.enable_code_hook()


def call_guest_function(emu: Any, stack: int, function: int, args: list[int]) -> None:
    """Call ``function(*args)`` on a stack below ``stack``, returning to Speakeasy's SEH trap."""
    emu.set_func_args(stack, seh_return_address(), *args, conv=se_arch.CALL_CONV_STDCALL)
    emu.set_pc(function)


def x86_exception_list(emu: Any) -> int:
    """The current thread's fs:[0] (TEB NtTib.ExceptionList), 0 without a thread."""
    return int(emu._get_exception_list() or 0)


def final_registration_hidden(emu: Any, final_handler: Callable[[], int]) -> None:
    """Speakeasy (and x86_exception_list) see no exception list when fs:[0] is only the final
    registration Windows puts on each thread's stack (``final_handler()``: its handler), so a
    fault no guest handler takes goes where it went without it. The guest's own walk of fs:[0]
    finds the record."""
    original = emu._get_exception_list

    def exception_list() -> int:
        head = int(original() or 0)
        handler = final_handler()
        if head and head != 0xFFFFFFFF and handler:
            try:
                following, registered = struct.unpack("<II", bytes(emu.mem_read(head, 8)))
            except Exception:
                return head
            if registered == handler and following == 0xFFFFFFFF:
                return 0
        return head

    emu._get_exception_list = exception_list


def after_run_prepared(emu: Any, after: Callable[[Any], None]) -> None:
    """``after(thread)`` once Speakeasy has set up a run (its frame on the stack, its thread's TEB)."""
    original = emu._prepare_run_context

    def prepare(run: Any) -> Any:
        result = original(run)
        thread = getattr(run, "thread", None) or emu.get_current_thread()
        if thread is not None:
            after(thread)
        return result

    emu._prepare_run_context = prepare


def write_final_registration(emu: Any, thread: Any, handler: int, placed: set[int]) -> int | None:
    """x86: the final registration (next -1, ``handler``) of a thread whose run Speakeasy has just
    set up, above the run's frame on its stack as RtlUserThreadStart's is: the frame (return
    address and arguments) moves 8 bytes down, and fs:[0] points at the record. Only where fs:[0]
    is empty or one of ``placed`` (earlier runs'): the address, or None when not placed."""
    teb = getattr(thread, "teb", None)
    run = getattr(emu, "curr_run", None)
    if teb is None or run is None:
        return None
    address = int(teb.address)
    (head,) = struct.unpack("<I", bytes(emu.mem_read(address, 4)))
    if head not in (0, 0xFFFFFFFF) and head not in placed:
        return None
    sp = int(emu.get_stack_ptr())
    frame = 4 * (1 + len(getattr(run, "args", None) or ()))
    try:
        data = bytes(emu.mem_read(sp, frame))
        emu.mem_write(sp - 8, data)
        record = sp + frame - 8
        emu.mem_write(record, struct.pack("<II", 0xFFFFFFFF, handler))
        emu.mem_write(address, struct.pack("<I", record))
    except Exception:
        return None
    emu.set_stack_ptr(sp - 8)
    return record


def clear_msvc_scope_frames(emu: Any) -> None:
    """Forget the scope-table frames msvcrt!_except_handler4_common recorded for an exception."""
    thread = emu.get_current_thread()
    if thread is not None:
        thread.seh.clear_frames()


def msvc_scope_frames_pending(emu: Any) -> bool:
    """Did msvcrt!_except_handler4_common just record scope-table frames for Speakeasy to run?"""
    thread = emu.get_current_thread()
    return thread is not None and any(not frame.searched for frame in thread.seh.frames)


def unhandled_filter(emu: Any) -> int:
    """The filter SetUnhandledExceptionFilter set (0: none)."""
    return int(emu.unhandled_exception_filter or 0)


def protect_like_virtual_protect(emu: Any, address: int, size: int, protect: int) -> None:
    start = address & ~0xFFF
    end = (address + size + 0xFFF) & ~0xFFF
    emu.mem_protect(start, end - start, se_kernel32.Kernel32.win_perms_to_emu_perms(None, protect))  # type: ignore[arg-type]


for _name in EXCEPTION_METHODS + (
    "set_func_args",
    "set_pc",
    "get_pc",
    "enable_code_hook",
    "_get_exception_list",
    "_prepare_run_context",
    "get_stack_ptr",
    "set_stack_ptr",
    "get_symbol_from_address",
    "get_mod_from_addr",
):
    if not callable(getattr(se_winemu.WindowsEmulator, _name, None)):
        raise _incompatible(f"WindowsEmulator.{_name} is missing")
for _name in ("SEH_RETURN_ADDR", "EMU_RETURN_ADDR"):
    if not isinstance(getattr(se_winemu.winemu, _name, None), int):
        raise _incompatible(f"speakeasy.windows.common.{_name} is missing")
if not hasattr(uc.Uc, "ctl_remove_cache"):
    raise _incompatible("unicorn.Uc.ctl_remove_cache is missing")
for _name in ("clear_frames", "add_frame"):
    if not callable(getattr(se_objman.SEH, _name, None)):
        raise _incompatible(f"speakeasy.windows.objman.SEH.{_name} is missing")


def make_read_only(unicorn: Any, address: int, size: int) -> None:
    """Guest instructions may read [address, address + size) but not write it (a write faults);
    the emulator's own writes (Unicorn's ``mem_write``) still go through."""
    try:
        unicorn.mem_protect(address, size, uc.UC_PROT_READ)
    except uc.UcError:
        return  # not mapped whole: left as it is


def set_initial_fpu_state(unicorn: Any, control_word: int, mxcsr: int) -> None:
    """The x87 and SSE state a Windows thread starts with: the control word, an empty x87
    stack (tag word all ones) and MXCSR (Unicorn starts with all three zero)."""
    unicorn.reg_write(x86_const.UC_X86_REG_FPCW, control_word)
    unicorn.reg_write(x86_const.UC_X86_REG_FPTAG, 0xFFFF)
    unicorn.reg_write(x86_const.UC_X86_REG_MXCSR, mxcsr)


# ---- user mode (guest.py) ---------------------------------------------------------------------

# GDT descriptors of Windows' user-mode selectors: index -> (access byte, flags nibble).
# Access 0xFB: present, DPL 3, code, readable; 0xF3: present, DPL 3, data, writable. Flags 0xA:
# 4 KiB granularity, 64-bit code; 0xC: 4 KiB granularity, 32-bit.
USER_SELECTORS_X64 = {"cs": 0x33, "ss": 0x2B, "ds": 0x2B, "es": 0x2B, "fs": 0x53, "gs": 0x2B}
USER_SELECTORS_X86 = {"cs": 0x1B, "ss": 0x23, "ds": 0x23, "es": 0x23, "fs": 0x3B, "gs": 0}
_SEGMENT_REGS = {
    "ds": x86_const.UC_X86_REG_DS,
    "es": x86_const.UC_X86_REG_ES,
    "fs": x86_const.UC_X86_REG_FS,
    "gs": x86_const.UC_X86_REG_GS,
}
_IRET = {True: b"\x48\xcf", False: b"\xcf"}  # iretq, iretd
# Bytes enter_user_mode borrows for its iret (at 0) and the iret's frame (at 0x20, five words).
# Not a page of its own: once a Unicorn region has been unmapped, Unicorn 2 finds room for each
# later mem_map's RAM block by comparing every block with every other (find_ram_offset; before
# the first unmap it appends in O(1)), so a scratch page mapped and freed here made each
# VirtualAlloc of the run cost O(regions^2) (docs/performance.md, "Session 33, CPL 3").
_SCRATCH_BYTES = 0x48


def _scratch_past(unicorn: Any, address: int) -> int | None:
    """A 16-byte aligned address at or after ``address`` with _SCRATCH_BYTES inside one
    readable and executable Unicorn region, or None."""
    scratch = (address + 0xF) & ~0xF
    for low, high, perms in unicorn.mem_regions():
        if low <= scratch and scratch + _SCRATCH_BYTES - 1 <= high:
            wanted = uc.UC_PROT_READ | uc.UC_PROT_EXEC
            return scratch if perms & wanted == wanted else None
    return None


def _descriptor(base: int, access: int, flags: int, limit: int = 0xFFFFF) -> bytes:
    value = limit & 0xFFFF | (base & 0xFFFFFF) << 16 | access << 40 | ((limit >> 16) & 0xF) << 48
    value |= flags << 52 | ((base >> 24) & 0xFF) << 56
    return value.to_bytes(8, "little")


def enter_user_mode(emu: Any, x64: bool) -> bool:
    """Run the guest at CPL 3 with Windows' user-mode selectors (x64: cs 0x33, ss/ds/es/gs 0x2B,
    fs 0x53; x86: cs 0x1B, ss/ds/es 0x23, fs 0x3B, gs 0), as a process does: privileged
    instructions then fault, and ``mov ax, cs`` reads what Windows gives. Speakeasy runs
    everything at CPL 0 with selectors of its own GDT (cs 0x8B, ss 0x90). Unicorn cannot set
    the privilege level by a register write (SS's DPL must equal the current level), so one
    ``iret`` to the new selectors runs, as an OS enters user mode; the TEB stays where it was
    (x86: fs's descriptor base; x64: the GS base). False if not done.

    The ``iret`` and its frame go in the GDT's page past the GDT's limit (Speakeasy maps a page
    for 31 descriptors), and those bytes are put back after: mapping a scratch page and freeing
    it would cost every later ``mem_map`` of the run dearly (see _SCRATCH_BYTES)."""
    unicorn = emu.emu_eng.emu
    _selector, gdt, limit, _flags = unicorn.reg_read(x86_const.UC_X86_REG_GDTR)
    selectors = USER_SELECTORS_X64 if x64 else USER_SELECTORS_X86
    if not gdt or max(selectors.values()) | 7 > limit:
        return False
    if x64:
        entries = {6: _descriptor(0, 0xFB, 0xA), 5: _descriptor(0, 0xF3, 0xC), 10: _descriptor(0, 0xF3, 0xC)}
    else:
        entries = {
            1: _descriptor(0, 0x9B, 0xC),  # kernel code and data, for the iret's start
            2: _descriptor(0, 0x93, 0xC),
            3: _descriptor(0, 0xFB, 0xC),
            4: _descriptor(0, 0xF3, 0xC),
            7: _descriptor(int(emu.fs_addr), 0xF3, 0x4, 0xFFF),
        }
    for index, data in entries.items():
        unicorn.mem_write(gdt + index * 8, data)
    gs_base = unicorn.reg_read(x86_const.UC_X86_REG_GS_BASE) if x64 else 0
    pc_reg, sp_reg = (
        (x86_const.UC_X86_REG_RIP, x86_const.UC_X86_REG_RSP)
        if x64
        else (x86_const.UC_X86_REG_EIP, x86_const.UC_X86_REG_ESP)
    )
    scratch = _scratch_past(unicorn, gdt + limit + 1)
    if scratch is None:
        return False
    saved = {reg: unicorn.reg_read(reg) for reg in (pc_reg, sp_reg, x86_const.UC_X86_REG_EFLAGS)}
    saved_bytes = bytes(unicorn.mem_read(scratch, _SCRATCH_BYTES))
    try:
        width = 8 if x64 else 4
        target = scratch + 0x10
        frame_at = scratch + 0x20
        frame = [target, selectors["cs"], 0x202, frame_at + 5 * width, selectors["ss"]]
        unicorn.mem_write(frame_at, b"".join(v.to_bytes(width, "little") for v in frame))
        unicorn.mem_write(scratch, _IRET[x64])
        unicorn.reg_write(sp_reg, frame_at)
        unicorn.reg_write(x86_const.UC_X86_REG_EFLAGS, 0x2)  # no NT: a return to the frame, not a task switch
        if not x64:
            unicorn.reg_write(x86_const.UC_X86_REG_CS, 0x08)
            unicorn.reg_write(x86_const.UC_X86_REG_SS, 0x10)
        unicorn.emu_start(scratch, target, count=1)
        done = unicorn.reg_read(x86_const.UC_X86_REG_CS) == selectors["cs"]
    except uc.UcError:
        done = False
    finally:
        unicorn.mem_write(scratch, saved_bytes)
        drop_translations(unicorn, scratch, scratch + _SCRATCH_BYTES)
        for reg, value in saved.items():
            unicorn.reg_write(reg, value)
    if not done:
        return False
    for name, reg in _SEGMENT_REGS.items():
        unicorn.reg_write(reg, selectors[name])
    if x64:
        unicorn.reg_write(x86_const.UC_X86_REG_GS_BASE, gs_base)
    return True
