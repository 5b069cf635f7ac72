"""msvcrt functions that call guest code or move the guest's control flow, which Speakeasy lacks
(a call ended the replay as ``unsupported_api``): ``qsort`` / ``bsearch`` (and ``qsort_s`` /
``bsearch_s``), whose comparisons are calls of the guest's function, ``_setjmp`` / ``_setjmp3``
/ ``_setjmpex`` / ``longjmp`` (msvcrt's jump buffer: the registers a function keeps for its
caller, the stack pointer and the return address), and ``abort`` / ``_amsg_exit``, which end
the process (exit codes 3 and 255, as msvcrt's ``_exit`` call in them).

``exit`` and ``_cexit`` call the functions ``_onexit`` / ``atexit`` / ``_crt_atexit`` registered
(the last registered first), then end the process, as the C runtime does: a C++ program's static
destructors and a program's exit handlers run (Speakeasy's ended the process at once). ``_exit``,
``abort`` and ``ExitProcess`` run none, as on Windows.

A comparison runs as an API callback (emulator/backends/speakeasy/compat.py): the call's frame
is tagged, each comparison's result decides the next, and the last writes the sorted array (a
merge sort over the elements' indexes: the comparison function sees the elements where the
guest put them, unmoved until the end). ``longjmp`` does not run the termination handlers of the
frames it leaves (msvcrt unwinds them when the buffer names a frame).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from speakeasy.winenv.arch import CALL_CONV_CDECL
from unicorn import x86_const

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat, compat_guest
from emulator.backends.speakeasy.sources import read_c_string
from emulator.limits import MAX_CRT_SORT_BYTES, MAX_CRT_SORT_ELEMENTS

# The process's exit codes of abort (msvcrt's _exit(3)) and _amsg_exit (_exit(255)).
ABORT_EXIT_CODE = 3
AMSG_EXIT_CODE = 255
# x64 _JUMP_BUFFER: Frame, Rbx, Rsp, Rbp, Rsi, Rdi, R12-R15, Rip, MxCsr, FpCsr, Spare, Xmm6-15.
JUMP_BUFFER_X64 = ("frame", "rbx", "rsp", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15", "rip")
XMM_SAVED = tuple(getattr(x86_const, f"UC_X86_REG_XMM{i}") for i in range(6, 16))
# x86 _JUMP_BUFFER: Ebp, Ebx, Edi, Esi, Esp, Eip, Registration, TryLevel, Cookie, UnwindFunc,
# UnwindData[6].
JUMP_BUFFER_X86 = ("ebp", "ebx", "edi", "esi", "esp", "eip")
JUMP_COOKIE = 0x56433230  # "VC20"
TRY_LEVEL_NONE = 0xFFFFFFFF
X86_JUMP_BUFFER_SIZE = 64
# The longest number text strtod reads, and what it reads of it.
MAX_FLOAT_TEXT = 4096
FLOAT_TEXT = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:infinity|inf|nan))"
)
# The largest _initterm table read (a start-up's tables hold a few pointers).
MAX_INITTERM_BYTES = 64 * 1024

# A function's calls of guest code: yields (function, arguments), is sent each call's result
# (the return register, signed 32 bits), returns the API's result.
GuestCalls = Generator[tuple[int, list[int]], int, int]
Comparisons = Generator[tuple[int, int], int, int]
# Start-up functions Speakeasy's handlers return nothing from (the return register kept whatever
# it held: an MSVC program's pre_c_initialization took _configure_narrow_argv's garbage for an
# error and fast-failed once _initterm_e ran it): name -> (argc, what they return on success).
# _configthreadlocale answers the process's setting, _DISABLE_PER_THREAD_LOCALE; _set_new_mode
# the previous mode, 0.
RESULTS_OF_SILENT_HANDLERS = {
    "_configure_narrow_argv": (1, 0),
    "_initialize_narrow_environment": (0, 0),
    "_set_fmode": (1, 0),
    "_crt_atexit": (1, 0),
    "_controlfp_s": (3, 0),
    "_set_new_mode": (1, 0),
    "_configthreadlocale": (1, 2),
    # the UCRT's, which Speakeasy has no handler for
    "_configure_wide_argv": (1, 0),
    "_initialize_wide_environment": (0, 0),
    "_crt_at_quick_exit": (1, 0),
    "_tzset": (0, 0),
}
# msvcrt's variables a program imports, Speakeasy's storage for them left 0: MB_CUR_MAX
# (mingw's x86 headers read __mb_cur_max itself), 1 in both locales;
# _tzname (char *[2]): the guest zone's names, empty (GetTimeZoneInformation's StandardName is).
DATA_EXPORTS = {"__mb_cur_max": 1, "_tzname": None}


def _initialized(value: int | None) -> Callable[[Any, int], int]:
    def initialize(module: Any, address: int) -> int:
        module.mem_write(address, _data_bytes(module, value))
        return address

    return initialize


def _data_bytes(module: Any, value: int | None) -> bytes:
    """An int variable's bytes; for None, two pointers to one empty string (_tzname)."""
    if value is not None:
        return value.to_bytes(4, "little")
    ptr = module.get_ptr_size()
    names = int(module.mem_alloc(size=2, tag="api.tzname"))
    return names.to_bytes(ptr, "little") + (names + 1).to_bytes(ptr, "little")


@dataclass
class _Calling:
    """An API call running guest functions one after the other (its frame's tag)."""

    steps: GuestCalls


def comparing(compare: int, context: int | None, comparisons: Comparisons) -> GuestCalls:
    """``comparisons`` as calls of ``compare`` (qsort_s / bsearch_s pass ``context`` first)."""
    prefix = [context] if context is not None else []
    try:
        pair = next(comparisons)
        while True:
            result = yield compare, [*prefix, *pair]
            pair = comparisons.send(result)
    except StopIteration as done:
        return int(done.value)


def parse_float(text: str) -> tuple[float, int]:
    """(value, characters consumed) as the C runtime's strtod reads ``text``: white space, a
    sign, decimal digits with a point and an exponent, ``inf`` / ``infinity`` / ``nan`` and
    hexadecimal (``0x1.8p3``) as the UCRT reads them; no number: (0.0, 0). Overflow gives
    infinity (HUGE_VAL)."""
    match = FLOAT_TEXT.match(text)
    if match is None:
        return 0.0, 0
    number = match.group(0)
    body = number.lstrip(" \t\n\v\f\r")
    negative = body.startswith("-")
    body = body.lstrip("+-")
    if body[:2].lower() == "0x":
        mantissa, _, exponent = body[2:].lower().partition("p")
        whole, _, fraction = mantissa.partition(".")
        value = float(int(whole or "0", 16)) + (int(fraction, 16) / 16 ** len(fraction) if fraction else 0.0)
        try:
            value = math.ldexp(value, int(exponent or "0"))
        except OverflowError:
            value = math.inf
    elif body[:1].lower() in "in":
        value = math.inf if body[:1].lower() == "i" else math.nan
    else:
        value = float(body)
    return (-value if negative else value), len(number)


def _as_float(value: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _double_bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _push_x87(engine: Any, value: float) -> None:
    """Push ``value`` on the x87 register stack: st(0), where an x86 function returns a double."""
    status = engine.reg_read(x86_const.UC_X86_REG_FPSW)
    top = ((status >> 11) - 1) & 7
    engine.reg_write(x86_const.UC_X86_REG_FPSW, (status & ~0x3800) | (top << 11))
    tags = engine.reg_read(x86_const.UC_X86_REG_FPTAG)
    engine.reg_write(x86_const.UC_X86_REG_FPTAG, tags & ~(3 << (2 * top)))
    engine.reg_write(x86_const.UC_X86_REG_FP0 + top, _float80(value))


def _float80(value: float) -> tuple[int, int]:
    """(mantissa, sign and exponent) of ``value`` as an x87 80-bit extended real."""
    sign = 0x8000 if math.copysign(1.0, value) < 0 else 0
    if math.isnan(value):
        return (0xC000000000000000, sign | 0x7FFF)
    if math.isinf(value):
        return (0x8000000000000000, sign | 0x7FFF)
    if value == 0:
        return (0, sign)
    fraction, exponent = math.frexp(abs(value))  # fraction in [0.5, 1)
    return (int(fraction * (1 << 64)), sign | (exponent - 1 + 16383))


def merge_order(count: int, address: Callable[[int], int]) -> Generator[tuple[int, int], int, list[int]]:
    """The indexes 0..count-1 in sorted order, asking for each comparison: yields the two
    elements' addresses, is sent the comparison's result (negative, 0 or positive)."""
    order = list(range(count))
    width = 1
    while width < count:
        merged: list[int] = []
        for start in range(0, count, 2 * width):
            left, right = order[start : start + width], order[start + width : start + 2 * width]
            i = j = 0
            while i < len(left) and j < len(right):
                result = yield address(left[i]), address(right[j])
                if result <= 0:
                    merged.append(left[i])
                    i += 1
                else:
                    merged.append(right[j])
                    j += 1
            merged += left[i:] + right[j:]
        order = merged
        width *= 2
    return order


class CrtControl:
    def __init__(self, se: Any, emu: Any, memory: GuestMemory) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.x64 = memory.ptr_size == 8
        self.environ: dict[bool, int] = {}  # wide -> the address of environ / _wenviron
        # id(process) -> the exit functions registered, in order; the processes exiting now
        self.exit_functions: dict[int, list[int]] = {}
        self.exiting: set[int] = set()

    def install(self) -> None:
        hooks: list[tuple[str, int, Callable[[Any, list[int]], int]]] = [
            ("qsort", 4, lambda emu, argv: self._qsort(emu, argv, with_context=False)),
            ("qsort_s", 5, lambda emu, argv: self._qsort(emu, argv, with_context=True)),
            ("bsearch", 5, lambda emu, argv: self._bsearch(emu, argv, with_context=False)),
            ("bsearch_s", 6, lambda emu, argv: self._bsearch(emu, argv, with_context=True)),
            ("longjmp", 2, self._longjmp),
            ("atof", 1, lambda emu, argv: self._strtod(emu, [argv[0], 0], wide=False, single=False)),
            ("_wtof", 1, lambda emu, argv: self._strtod(emu, [argv[0], 0], wide=True, single=False)),
            ("strtod", 2, lambda emu, argv: self._strtod(emu, argv, wide=False, single=False)),
            ("wcstod", 2, lambda emu, argv: self._strtod(emu, argv, wide=True, single=False)),
            ("strtof", 2, lambda emu, argv: self._strtod(emu, argv, wide=False, single=True)),
            ("wcstof", 2, lambda emu, argv: self._strtod(emu, argv, wide=True, single=True)),
            ("_initterm", 2, lambda emu, argv: self._initterm(emu, argv, stop_on_error=False)),
            ("_initterm_e", 2, lambda emu, argv: self._initterm(emu, argv, stop_on_error=True)),
            ("abort", 0, lambda emu, argv: self._exit(emu, ABORT_EXIT_CODE)),
            ("_onexit", 1, lambda emu, argv: self._register_exit(emu, argv[0], argv[0])),
            ("atexit", 1, lambda emu, argv: self._register_exit(emu, argv[0], 0)),
            ("_crt_atexit", 1, lambda emu, argv: self._register_exit(emu, argv[0], 0)),
            ("_amsg_exit", 1, lambda emu, argv: self._exit(emu, AMSG_EXIT_CODE)),
        ]
        hooks += [
            ("__p__environ", 0, lambda emu, argv: self._environment(emu, wide=False)),
            ("__p__wenviron", 0, lambda emu, argv: self._environment(emu, wide=True)),
        ]
        if self.x64:
            # the UCRT's setjmp is __intrinsic_setjmp(ex), msvcrt's _setjmp(ex): the same arguments
            names = ("_setjmp", "_setjmpex", "__intrinsic_setjmp", "__intrinsic_setjmpex")
            hooks += [(name, 2, self._setjmp) for name in names]
        else:
            hooks += [("_setjmp", 1, self._setjmp), ("_setjmp3", 2, self._setjmp)]
        mask = 0xFFFFFFFFFFFFFFFF if self.x64 else 0xFFFFFFFF
        for name, argc, func in hooks:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _func: Any = func) -> int:
                return int(_func(emu, list(argv))) & mask

            self.se.add_api_hook(hook, "msvcrt", name, argc=argc, call_conv=CALL_CONV_CDECL)
        for name, (argc, result) in RESULTS_OF_SILENT_HANDLERS.items():
            if name == "_crt_atexit":
                continue  # registered above

            def answered(emu: Any, api_name: str, orig: Any, argv: list[int], _result: int = result) -> int:
                returned = orig(argv) if orig is not None else None
                return _result if returned is None else int(returned)

            self.se.add_api_hook(answered, "msvcrt", name, argc=argc, call_conv=CALL_CONV_CDECL)
        for name in ("exit", "_cexit"):

            def exiting(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                return self._exit_with_handlers(emu, orig, list(argv), _name)

            self.se.add_api_hook(exiting, "msvcrt", name, argc=1 if name == "exit" else 0, call_conv=CALL_CONV_CDECL)
        compat.after_each_api_callback(self.emu, self._compared)
        crt = self.emu.api.mods.get("msvcrt") or self.emu.api.load_api_handler("msvcrt")
        if crt is not None:
            for name, value in DATA_EXPORTS.items():
                crt.data.setdefault(name, _initialized(value))
        module = self.emu.get_mod_by_name("msvcrt")
        for name, value in DATA_EXPORTS.items():  # a program's imports are bound already
            address = compat.resolve_export(self.emu, module, name) if module is not None and crt else 0
            if address:
                self.memory.write(address, _data_bytes(crt, value))

    # -- qsort / bsearch ---------------------------------------------------------------------

    def _start(self, emu: Any, steps: GuestCalls) -> int:
        """Run ``steps``' first call of guest code after this API call: the API's result when
        it needs none (else the last call's end sets it)."""
        try:
            function, args = next(steps)
        except StopIteration as done:
            return int(done.value)
        compat.call_guest_after_api(emu, function, args)
        compat.tag_api_frame(emu, _Calling(steps))
        return 0

    def _compared(self, tag: Any, returned: int) -> int | None:
        """A call of ``tag``'s returned: the next one runs, or the API returns its result."""
        if not isinstance(tag, _Calling):
            return None
        result = returned - (1 << 32) if returned >> 31 else returned
        try:
            function, args = tag.steps.send(result)
        except StopIteration as done:
            return int(done.value) & (0xFFFFFFFFFFFFFFFF if self.x64 else 0xFFFFFFFF)
        compat.queue_api_callback(self.emu, function, args)
        return None

    # -- _initterm -------------------------------------------------------------------------------

    def _initterm(self, emu: Any, argv: list[int], stop_on_error: bool) -> int:
        """void _initterm(_PVFV *begin, _PVFV *end): each non-NULL function of the table called in
        order (mingw's start-up sets argc / argv so, C++ constructors run so; Speakeasy's called
        none). int _initterm_e(_PIFV *begin, _PIFV *end): the same, stopping at the first that
        returns nonzero, whose value it returns."""
        begin, end = argv[:2]
        if not begin or end <= begin or end - begin > MAX_INITTERM_BYTES:
            return 0
        return self._start(emu, self._initializers(begin, end, stop_on_error))

    def _initializers(self, begin: int, end: int, stop_on_error: bool) -> GuestCalls:
        ptr = self.memory.ptr_size
        for slot in range(begin, end - ptr + 1, ptr):
            try:
                function = int.from_bytes(self.memory.read(slot, ptr), "little")
            except Exception:
                return 0
            if not function:
                continue
            result = yield function, []
            if stop_on_error and result:
                return result
        return 0

    def _qsort(self, emu: Any, argv: list[int], with_context: bool) -> int:
        """void qsort(void *base, size_t count, size_t width, int (*compare)(const void *, const void *))"""
        base, count, width, compare = argv[:4]
        if count < 2 or not width or not base or not compare:
            return 0
        if count > MAX_CRT_SORT_ELEMENTS or count * width > MAX_CRT_SORT_BYTES:
            return 0
        steps = self._sorting(base, count, width)
        return self._start(emu, comparing(compare, argv[4] if with_context else None, steps))

    def _sorting(self, base: int, count: int, width: int) -> Comparisons:
        try:
            data = self.memory.read(base, count * width)
        except Exception:
            return 0
        order = yield from merge_order(count, lambda i: base + i * width)
        self.memory.write(base, b"".join(data[i * width : (i + 1) * width] for i in order))
        return 0

    def _bsearch(self, emu: Any, argv: list[int], with_context: bool) -> int:
        """void *bsearch(const void *key, const void *base, size_t count, size_t width,
        int (*compare)(const void *key, const void *element)): an element comparing equal, NULL
        when none does (a binary search: the array is sorted by ``compare``)."""
        key, base, count, width, compare = argv[:5]
        if not count or not base or not compare or count > MAX_CRT_SORT_ELEMENTS:
            return 0
        steps = self._searching(key, base, count, width)
        return self._start(emu, comparing(compare, argv[5] if with_context else None, steps))

    @staticmethod
    def _searching(key: int, base: int, count: int, width: int) -> Comparisons:
        low, high = 0, count - 1
        while low <= high:
            middle = (low + high) // 2
            result = yield key, base + middle * width
            if result == 0:
                return base + middle * width
            if result < 0:
                high = middle - 1
            else:
                low = middle + 1
        return 0

    # -- setjmp / longjmp --------------------------------------------------------------------

    def _setjmp(self, emu: Any, argv: list[int]) -> int:
        """int _setjmp(jmp_buf buffer, void *frame) (x86: _setjmp(buffer), _setjmp3(buffer,
        count, ...)): the caller's registers, stack pointer after the return and return
        address saved in ``buffer``; 0."""
        buffer = argv[0]
        if not buffer:
            return 0
        sp = int(emu.reg_read("rsp" if self.x64 else "esp"))
        ptr = self.memory.ptr_size
        ret = int.from_bytes(self.memory.read(sp, ptr), "little")
        if self.x64:
            engine = compat.unicorn_of(emu)
            values = {name: int(emu.reg_read(name)) for name in JUMP_BUFFER_X64[1:-1]}
            values |= {"frame": argv[1], "rsp": sp + ptr, "rip": ret}
            data = struct.pack("<11Q", *(values[name] for name in JUMP_BUFFER_X64))
            data += struct.pack("<IHH", engine.reg_read(x86_const.UC_X86_REG_MXCSR) & 0xFFFFFFFF, 0x27F, 0)
            data += b"".join((engine.reg_read(reg) & ((1 << 128) - 1)).to_bytes(16, "little") for reg in XMM_SAVED)
        else:
            values = {name: int(emu.reg_read(name)) for name in JUMP_BUFFER_X86[:4]}
            values |= {"esp": sp + ptr, "eip": ret}
            data = struct.pack("<6I", *(values[name] for name in JUMP_BUFFER_X86))
            data += struct.pack("<4I", compat_guest.x86_exception_list(emu), TRY_LEVEL_NONE, JUMP_COOKIE, 0)
            data += b"\0" * (X86_JUMP_BUFFER_SIZE - len(data))
        self.memory.write(buffer, data)
        return 0

    def _longjmp(self, emu: Any, argv: list[int]) -> int:
        """void longjmp(jmp_buf buffer, int value): execution goes on where ``_setjmp`` saved
        ``buffer`` returns, which now returns ``value`` (1 for 0)."""
        buffer, value = argv[0], argv[1] & 0xFFFFFFFF
        value = value or 1
        if self.x64:
            saved = dict(zip(JUMP_BUFFER_X64, struct.unpack("<11Q", self.memory.read(buffer, 88)), strict=True))
            tail = self.memory.read(buffer + 88, 8 + 16 * len(XMM_SAVED))
            engine = compat.unicorn_of(emu)
            engine.reg_write(x86_const.UC_X86_REG_MXCSR, struct.unpack("<I", tail[:4])[0])
            for i, reg in enumerate(XMM_SAVED):
                engine.reg_write(reg, int.from_bytes(tail[8 + 16 * i : 24 + 16 * i], "little"))
            for name in JUMP_BUFFER_X64[1:-1]:
                emu.reg_write(name, saved[name])
            emu.reg_write("rax", value)
            emu.set_pc(saved["rip"])
        else:
            saved = dict(zip(JUMP_BUFFER_X86, struct.unpack("<6I", self.memory.read(buffer, 24)), strict=True))
            for name in JUMP_BUFFER_X86[:5]:
                emu.reg_write(name, saved[name])
            emu.reg_write("eax", value)
            emu.set_pc(saved["eip"])
        return value

    # -- environ -----------------------------------------------------------------------------------

    def _environment(self, emu: Any, wide: bool) -> int:
        """char ***__p__environ(void): the address of ``environ``, which points to the array
        _get_initial_narrow_environment gives (one per replay)."""
        if wide not in self.environ:
            crt = emu.api.mods["msvcrt"]
            array = (crt._get_initial_wide_environment if wide else crt._get_initial_narrow_environment)(emu, [])
            cell = int(crt.mem_alloc(size=self.memory.ptr_size, tag="api.environ"))
            self.memory.write(cell, int(array or 0).to_bytes(self.memory.ptr_size, "little"))
            self.environ[wide] = cell
        return self.environ[wide]

    # -- strtod ------------------------------------------------------------------------------------

    def _strtod(self, emu: Any, argv: list[int], wide: bool, single: bool) -> int:
        """double strtod(const char *str, char **endptr) (atof: no endptr; strtof: a float): the
        value in the floating-point return register (xmm0 on x64, st(0) on x86), ``*endptr``
        after the text read (at ``str`` when there was no number); 0.0 for NULL."""
        address, endptr = argv[:2]
        value, used = 0.0, 0
        if address:
            raw = read_c_string(self.memory, address, wide, MAX_FLOAT_TEXT * (2 if wide else 1))
            value, used = parse_float(raw.decode("utf-16-le" if wide else "latin-1", "replace"))
        if endptr:
            self.memory.write(endptr, (address + used * (2 if wide else 1)).to_bytes(self.memory.ptr_size, "little"))
        if single:
            value = _as_float(value)
        engine = compat.unicorn_of(emu)
        if self.x64:
            bits = struct.unpack("<I", struct.pack("<f", value))[0] if single else _double_bits(value)
            engine.reg_write(x86_const.UC_X86_REG_XMM0, bits)
        else:
            _push_x87(engine, value)
        return 0

    # -- abort ---------------------------------------------------------------------------------

    def _register_exit(self, emu: Any, function: int, result: int) -> int:
        """_onexit / atexit / _crt_atexit(function): kept for exit (the value each returns:
        the function, 0)."""
        if function:
            self.exit_functions.setdefault(id(compat.current_process(emu)), []).append(function)
        return result

    def _exit_with_handlers(self, emu: Any, orig: Any, argv: list[int], name: str) -> int:
        """exit(code) / _cexit(): the registered exit functions, the last first, then the end of
        the process (Speakeasy's own exit, the call's value the exit code)."""
        process = id(compat.current_process(emu))
        functions = self.exit_functions.pop(process, [])
        code = argv[0] & 0xFFFFFFFF if argv else 0
        if not functions or process in self.exiting:
            return int(orig(argv) or 0) if orig is not None else code
        self.exiting.add(process)
        return self._start(emu, self._exit_calls(emu, orig, argv, functions[::-1], process, code))

    def _exit_calls(self, emu: Any, orig: Any, argv: list[int], functions: list[int], process: int,
                    code: int) -> GuestCalls:  # fmt: skip
        for function in functions:
            yield function, []
        self.exiting.discard(process)
        if orig is not None:
            orig(argv)
        return code

    def _exit(self, emu: Any, code: int) -> int:
        """abort / _amsg_exit: the process ends (as msvcrt's ``_exit``; the call's recorded
        value is the exit code)."""
        emu.exit_process()
        return code


def install(se: Any, emu: Any, memory: GuestMemory) -> CrtControl:
    control = CrtControl(se, emu, memory)
    control.install()
    return control
