"""Fast mode's API dispatch: Speakeasy's ``handle_import_func`` with everything per API looked up once.

A part of compat.py kept in a module of its own, under the same rules: the private Speakeasy
names it relies on are checked when it is imported, and an installed Speakeasy that lacks one
stops the import with one line naming its version and what changed.

Speakeasy's dispatch of one API call looks up the handler module, the handler, its argument
count and calling convention, its signature and the user hooks registered for it, then reads
the arguments and writes the return through its engine, several registers and memory words at
a time. :class:`FastDispatch` resolves each ``(dll, name)`` once to a plan (handler, argc,
convention, signature, the name the trace shows) and then does what
``WindowsEmulator.handle_import_func`` and ``_dispatch_import_func`` do, statement for
statement, with direct register and memory access. It takes Speakeasy's own path for anything
else: an API with no handler (signature emulation, stubs, hook-only APIs, unsupported APIs), a
float or fastcall convention, a faulting argument read, API hammering mitigation turned on.
The hooks registered for an API are re-read whenever any API hook is added.
"""

from __future__ import annotations

import logging
import time
import traceback
from types import MethodType
from typing import Any

import speakeasy.common as se_common
import speakeasy.memmgr as se_memmgr
import speakeasy.profiler as se_profiler
import speakeasy.windows.common as se_wincommon
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.arch as se_arch
import unicorn as uc
from speakeasy.profiler import ApiCallbackFrame
from speakeasy.report import ErrorInfo
from speakeasy.winenv.api import sigdb, sigfmt
from speakeasy.winenv.api.api import ApiContext, HandlerArgs

from emulator.backends.speakeasy import compat, compat_fast
from emulator.backends.speakeasy.compat import _incompatible, _require_params

# A plan of an API Speakeasy serves itself (see _plan).
_NO_PLAN = None
# Not looked up yet.
_UNPLANNED: Any = object()
# A handler raised and the run ended (handle_import_func).
_HANDLER_FAILED: Any = object()
# Parameter kinds Speakeasy renders from the value alone (no guest memory, no XMM register):
# integers (with their enum or flag names), booleans, handles, pointers shown as addresses.
PURE_KINDS = frozenset((*sigdb.INT_KINDS, *sigdb.BOOL_KINDS, "h", "p", "a"))
# Rendered values remembered per parameter (a pointer parameter sees many values: the memo is
# emptied when full, so it costs at most this many entries per parameter).
RENDER_MEMO_SIZE = 256


def _check_installed() -> None:
    winemu = se_winemu.WindowsEmulator
    _require_params(winemu, "handle_import_func", ("dll", "name"))
    _require_params(winemu, "_dispatch_import_func", ("dll", "name", "frame"))
    _require_params(winemu, "normalize_import_miss", ("dll", "name"))
    _require_params(winemu, "get_api_hooks", ("mod_name", "func_name"))
    _require_params(winemu, "_render_signature_args", ("sig", "argv"))
    _require_params(winemu, "_fire_dyn_code_hooks", ("addr",))
    _require_params(winemu, "_check_api_limit", ("origin_run", "imp_api"))
    _require_params(winemu, "get_error_info", ("desc", "address", "traceback"))
    _require_params(winemu, "end_run_on_fault", ())
    _require_params(HandlerArgs, "from_signature", ("sig", "ptr_size", "rendered", "slots"))
    _require_params(HandlerArgs, "from_slots", ("slots",))
    _require_params(winemu, "_render_signature_arg", ("param", "value", "index"))
    _require_params(HandlerArgs, "__init__", ("args", "params"))
    _require_params(sigfmt.ArgFormatter, "render_param", ("param", "value", "index"))
    for kinds in ("INT_KINDS", "BOOL_KINDS", "STRING_KINDS", "FLOAT_KINDS"):
        if not isinstance(getattr(sigdb, kinds, None), tuple):
            raise _incompatible(f"speakeasy.winenv.api.sigdb.{kinds} is missing")
    for field in ("name", "type", "value", "display"):
        if field not in getattr(getattr(sigfmt, "ApiArg", None), "model_fields", {}):
            raise _incompatible(f"speakeasy.winenv.api.sigfmt.ApiArg has no field {field!r}")
    if not hasattr(se_common, "HOOK_API"):
        raise _incompatible("speakeasy.common.HOOK_API is missing")
    if "num_apis" not in getattr(se_profiler.Run, "__init__", lambda: None).__code__.co_names:
        raise _incompatible("speakeasy.profiler.Run no longer counts its API calls in num_apis")
    for field in ("stack_pointer", "return_address", "argc", "convention", "result"):
        if field not in getattr(ApiCallbackFrame, "__dataclass_fields__", {}):
            raise _incompatible(f"speakeasy.profiler.ApiCallbackFrame has no field {field!r}")
    if list(ApiCallbackFrame.__dataclass_fields__)[:4] != ["stack_pointer", "return_address", "argc", "convention"]:
        raise _incompatible(
            "speakeasy.profiler.ApiCallbackFrame's first fields are no longer sp, return, argc, convention"
        )


_check_installed()

HOOK_API = se_common.HOOK_API


class _Plan:
    __slots__ = (
        "dll",
        "name",
        "imp_api",
        "mod",
        "func",
        "argc",
        "conv",
        "sig",
        "layout",
        "memos",
        "one_call_return",
        "listed_in",
        "hooks",
        "hooks_of",
    )

    def __init__(self, dll: str, name: str, imp_api: str, mod: Any, func: Any, argc: int, conv: Any, sig: Any) -> None:
        self.dll, self.name, self.imp_api = dll, name, imp_api
        self.mod, self.func, self.argc, self.conv, self.sig = mod, func, argc, conv, sig
        # The signature's slot layout, once (see signature_layout); None: Speakeasy's own calls.
        self.layout: tuple[tuple[Any, int, int | None], ...] | None = None
        # Per parameter of the layout: value -> Speakeasy's rendering, for a parameter rendered
        # from its value alone (see FastDispatch._pure_rendering); None: rendered on every call.
        self.memos: tuple[dict[int, Any] | None, ...] = ()
        # The return pops only the return address (cdecl, x64, or no arguments): one batch write.
        self.one_call_return = False
        # The unique_apis list of a run known to hold this API (lean log_api accounting).
        self.listed_in: Any = None
        # The API hooks registered for this API, read from the emulator's API hook table
        # ``hooks_of`` (see FastDispatch._hooks; a fresh object until first read).
        self.hooks: list[Any] = []
        self.hooks_of: Any = _UNPLANNED


# Windows implements these DLLs' exports and the DLLs that forward to them name them too (ole32's
# COM functions -> combase; kernel32's, advapi32's and shlwapi's -> kernelbase): the emulator's
# handlers live under the forwarding DLLs' names, and answer an import of the implementing DLL's.
IMPLEMENTED_FOR = {"combase": ("ole32",), "kernelbase": ("kernel32", "advapi32", "shlwapi")}


def handlers_of_forwarding_dlls(emu: Any) -> None:
    """An API of combase / kernelbase with no handler of its own is served by the handler of
    the same name under a DLL that forwards to it (``kernelbase.GetTickCount`` by kernel32's),
    before Speakeasy falls back to its signature alone or to ``unsupported_api``. The call is
    still recorded under the name the guest called (``kernelbase.GetTickCount``)."""
    original = emu.normalize_import_miss

    def normalize_import_miss(dll: str, name: str) -> tuple[Any, Any]:
        mod, func_attrs = original(dll, name)
        if func_attrs:
            return mod, func_attrs
        for forwarding in IMPLEMENTED_FOR.get(str(dll).lower(), ()):
            alt_mod, alt_attrs = emu.api.get_export_func_handler(forwarding, name)
            if not alt_attrs:
                alt_mod, alt_attrs = original(forwarding, name)
            if alt_attrs:
                return alt_mod, alt_attrs
        return mod, func_attrs

    emu.normalize_import_miss = normalize_import_miss


_STOCK_DECODE = sigdb.EnumDef.decode
_STOCK_FLAGS_BY_WIDTH = sigdb.EnumDef._flags_by_width


def index_enum(enum: Any) -> None:
    """Give one of Speakeasy's enums an indexed ``decode`` (on that object only).

    ``EnumDef.decode`` scans the members for the first one equal to the value (``WIN32_ERROR``
    has thousands: about 200 us per call) and, for a flags enum, sorts the members on every
    call. The enum is frozen, so the first member per value is a dict built once and the sorted
    members a list sorted once. A value no member equals is hex (not a flags enum, or zero, as
    Speakeasy's decode ends), else goes Speakeasy's own way, which then finds no exact match
    either and decodes it from the same sorted members. Same strings for every value; only an
    enum whose class still has Speakeasy's own methods is indexed."""
    if type(enum) is not sigdb.EnumDef or "decode" in vars(enum):
        return
    if sigdb.EnumDef.decode is not _STOCK_DECODE or sigdb.EnumDef._flags_by_width is not _STOCK_FLAGS_BY_WIDTH:
        return
    first: dict[int, str] = {}
    for name, member in enum.values:
        first.setdefault(member, name)
    by_width = _STOCK_FLAGS_BY_WIDTH(enum)

    def flags_by_width() -> list[tuple[str, int]]:
        return list(by_width)

    flags = enum.flags

    def decode(value: int) -> str:
        name = first.get(value)
        if name is not None:
            return name
        if not flags or value == 0:
            return hex(value)  # what Speakeasy's decode returns when no member equals the value
        return _STOCK_DECODE(enum, value)  # type: ignore[no-any-return]

    object.__setattr__(enum, "_flags_by_width", flags_by_width)
    object.__setattr__(enum, "decode", decode)


def signature_layout(sig: Any, ptr_size: int, argc: int) -> tuple[tuple[Any, int, int | None], ...] | None:
    """Per parameter of ``sig``: (parameter, slots it takes, mask of its value), or None.

    What ``FuncSig.values_from_slots`` and ``slot_count`` compute from the parameters on every
    call (a signature and its parameters are frozen: the answer never changes). None when the
    slots a call passes (``argc``) do not match the signature: Speakeasy's own path then raises
    as it always has.
    """
    layout = tuple((param, param.slots(ptr_size), param.value_mask(ptr_size)) for param in sig.params)
    if sum(n for _param, n, _mask in layout) != argc:
        return None
    return layout


class FastDispatch:
    """Replaces ``emu.handle_import_func`` (install before anything wraps it)."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.original = emu.handle_import_func
        self.plans: dict[tuple[str, str], _Plan | None] = {}
        self.hooks: dict[tuple[str, str], list[Any]] = {}
        self.hooks_of: Any = object()  # the API hook table the cached hooks were read from
        self.x64 = emu.get_arch() == se_arch.ARCH_AMD64
        self.bound = False
        self.reg_read: Any = None
        self.reg_write: Any = None
        self.mem_read: Any = None
        self.write_return: Any = None
        self.read_sp_pc: Any = None
        self.read_word: Any = None
        self.read_frame: Any = None
        self._view: tuple[Any, ...] = ({}, {}, [True], None, None)  # see _bind
        # The memory map the last return address was in, and where in the map list (see _map_of).
        self._map_memo: tuple[Any, int, Any] | None = None
        # Speakeasy's own get_address_map (not one replaced on the emulator or its class).
        self.stock_maps = getattr(
            type(emu), "get_address_map", None
        ) is se_memmgr.MemoryManager.get_address_map and "get_address_map" not in vars(emu)
        if self.x64:
            self.sp_reg, self.pc_reg, self.ret_reg = se_arch.AMD64_REG_RSP, se_arch.AMD64_REG_RIP, se_arch.AMD64_REG_RAX
            self.arg_regs: tuple[int, ...] = (
                se_arch.AMD64_REG_RCX,
                se_arch.AMD64_REG_RDX,
                se_arch.AMD64_REG_R8,
                se_arch.AMD64_REG_R9,
            )
        else:
            self.sp_reg, self.pc_reg, self.ret_reg = se_arch.X86_REG_ESP, se_arch.X86_REG_EIP, se_arch.X86_REG_EAX
            self.arg_regs = ()
        self.ptr = 8 if self.x64 else 4
        # Callbacks to run before each call (compat.before_each_api_call), first to run first.
        self.before: list[Any] = []
        # The emulator's log_api last seen, and what it unwraps to (compat.after_each_api_call).
        self._log_seen: Any = None
        self._log_parts: tuple[Any, Any] | None = None
        self._lean_log = False
        self._info_enabled = se_winemu.logger.isEnabledFor
        # The run whose unique_apis are known as a set (see _seen_api).
        self._unique: list[Any] | None = None

    def install(self) -> None:
        self.emu.handle_import_func = self.handle_import_func

    def add_before_call(self, callback: Any, *, with_site: bool = False) -> None:
        """Run ``callback()`` (``callback(site)`` with ``with_site``: ``compat.call_site`` then)
        before each API call, as a wrapper of ``handle_import_func`` put on now would: before
        those added earlier, for every call (Speakeasy's own path too)."""
        self.before.insert(0, (callback, with_site))

    def _bind(self) -> None:
        # The engine's register and memory access as the runner left it (direct, in fast mode).
        engine = self.emu.emu_eng
        self.reg_read, self.reg_write, self.mem_read = engine.reg_read, engine.reg_write, engine.mem_read
        self.write_return = getattr(engine, "write_return", None)
        read_sp_pc = getattr(engine, "read_sp_pc", None)
        if read_sp_pc is None:
            read = self.reg_read

            def read_sp_pc() -> tuple[int, int]:
                return read(self.sp_reg), read(self.pc_reg)

        self.read_sp_pc = read_sp_pc
        read_word = getattr(engine, "read_word", None)
        if read_word is None:
            mem_read, ptr = self.mem_read, self.ptr

            def read_word(addr: int) -> int:
                return int.from_bytes(mem_read(addr, ptr), "little")

        self.read_word = read_word
        read_frame = getattr(engine, "read_frame", None)
        if read_frame is None:

            def read_frame() -> tuple[int, int, int]:
                sp, pc = read_sp_pc()
                return sp, pc, read_word(sp)

        self.read_frame = read_frame
        self._view = compat_fast.register_view(engine)
        self.bound = True

    # -- per-API lookups, once --------------------------------------------------------------------

    def _plan(self, dll: str, name: str) -> _Plan | None:
        key = (dll, name)
        if key in self.plans:
            return self.plans[key]
        emu = self.emu
        plan: _Plan | None = _NO_PLAN
        mod, func_attrs = emu.api.get_export_func_handler(dll, name)
        if not func_attrs:
            mod, func_attrs = emu.normalize_import_miss(dll, name)
        if func_attrs:
            handler_name, func, argc, conv, _ordinal = func_attrs
            if conv in (se_arch.CALL_CONV_STDCALL, se_arch.CALL_CONV_CDECL):
                shown = handler_name if name.startswith("ordinal_") else name
                sig = emu.get_handler_signature(dll, shown, argc)
                plan = _Plan(dll, shown, f"{dll}.{shown}", mod, func, argc, conv, sig)
                plan.one_call_return = conv == se_arch.CALL_CONV_CDECL or self.x64 or not argc
                if sig is not None and self._stock_rendering():
                    plan.layout = signature_layout(sig, self.ptr, argc)
                    if plan.layout:
                        pure = self._pure_rendering()
                        plan.memos = tuple(
                            {} if pure and param.kind in PURE_KINDS else None for param, _n, _m in plan.layout
                        )
                        if pure:
                            self._index_enums(plan.layout)
        self.plans[key] = plan
        return plan

    def _index_enums(self, layout: tuple[tuple[Any, int, int | None], ...]) -> None:
        """The enums Speakeasy's formatter decodes this API's parameters with, indexed (see
        :func:`index_enum`): the same objects its ``render_param`` looks up later."""
        try:
            db = self.emu.get_signature_formatter().db
            for param, _n, _m in layout:
                if param.enum and param.kind in PURE_KINDS:
                    enum = db.lookup_enum(param.enum)
                    if enum is not None:
                        index_enum(enum)
        except Exception:  # noqa: S110 - an enum left unindexed decodes as before
            pass

    def _stock_rendering(self) -> bool:
        """Speakeasy's own argument rendering, not one replaced on the emulator or its class."""
        render = getattr(self.emu._render_signature_args, "__func__", None)
        return render is se_winemu.WindowsEmulator._render_signature_args

    def _pure_rendering(self) -> bool:
        """Whether a parameter of a :data:`PURE_KINDS` kind renders the same for the same value:
        Speakeasy's own ``_render_signature_arg`` and ``ArgFormatter.render_param`` (which for
        those kinds read nothing but the value, the parameter and the frozen signature
        database), not replacements on the emulator, its class or the formatter."""
        render = getattr(self.emu._render_signature_arg, "__func__", None)
        if render is not se_winemu.WindowsEmulator._render_signature_arg:
            return False
        try:
            formatter = self.emu.get_signature_formatter()
        except Exception:
            return False
        param_render = getattr(formatter.render_param, "__func__", None)
        return param_render is sigfmt.ArgFormatter.render_param and type(formatter) is sigfmt.ArgFormatter

    def _handler_args(self, plan: _Plan, argv: list[int]) -> Any:
        """``HandlerArgs.from_signature(sig, ptr, emu._render_signature_args(sig, argv), argv)``.

        The same arguments, rendered by the same ``_render_signature_arg`` in the same order,
        with the parameter values folded from the slots once per call instead of twice and the
        slot layout taken from the plan instead of recomputed (see :func:`signature_layout`).
        """
        layout = plan.layout
        if layout is None:
            sig = plan.sig
            return HandlerArgs.from_signature(sig, self.ptr, self.emu._render_signature_args(sig, argv), argv)
        bits = self.ptr * 8
        slot_mask = (1 << bits) - 1
        values = []
        pos = 0
        for _param, n, mask in layout:
            value = 0
            for i, slot in enumerate(argv[pos : pos + n]):
                value |= (slot & slot_mask) << (i * bits)
            pos += n
            if mask is not None:
                value &= mask
            values.append(value)
        render = self.emu._render_signature_arg
        params = [param for param, _n, _m in layout]
        rendered = []
        for i, (param, value, memo) in enumerate(zip(params, values, plan.memos or [None] * len(params), strict=True)):
            if memo is None:
                rendered.append(render(param, value, i))
                continue
            arg = memo.get(value)
            if arg is None:
                if len(memo) >= RENDER_MEMO_SIZE:
                    memo.clear()
                arg = memo[value] = render(param, value, i)
            rendered.append(arg)
        args = [
            sigfmt.ApiArg(name=param.name, type=arg.kind, value=value, display=arg.text)
            for param, arg, value in zip(params, rendered, values, strict=True)
        ]
        return HandlerArgs(args, params)

    def _hooks(self, dll: str, name: str) -> list[Any]:
        # add_api_hook stores a new tuple under HOOK_API each time: its identity is the version.
        table = self.emu.hooks.get(se_common.HOOK_API)
        if table is not self.hooks_of:
            self.hooks.clear()
            self.hooks_of = table
        key = (dll, name)
        hooks = self.hooks.get(key)
        if hooks is None:
            hooks = self.hooks[key] = list(self.emu.get_api_hooks(dll, name))
        return hooks

    # -- the call -------------------------------------------------------------------------------

    def _argv(self, sp: int, argc: int) -> list[int] | None:
        """The argument slots as ``get_func_argv`` reads them for stdcall / cdecl; None if a read fails."""
        read = self.reg_read
        if self.x64:
            argv = [read(reg) for reg in self.arg_regs[:argc]]
            rest, at = argc - len(argv), sp + 0x28
        else:
            argv, rest, at = [], argc, sp + 4
        if rest > 0:
            ptr = self.ptr
            try:
                data = self.mem_read(at, rest * ptr)
            except Exception:
                return None
            argv.extend(int.from_bytes(data[i : i + ptr], "little") for i in range(0, rest * ptr, ptr))
        return argv

    def _stack_word(self, sp: int) -> int | None:
        try:
            return int.from_bytes(self.mem_read(sp, self.ptr), "little")
        except Exception:
            return None

    def handle_import_func(self, dll: str, name: str) -> Any:  # noqa: C901 - one call, in one piece
        """``handle_import_func`` and ``_dispatch_import_func`` for an API with a plan, in one
        function: the before-call callbacks, the frame, the handler, the dynamic-code check,
        ``log_api`` (its run accounting inline where it is fast mode's lean one), the return,
        the post-call checks. Speakeasy's own path for an API without a plan."""
        emu = self.emu
        if not self.bound:
            self._bind()
        read_sp_pc, read_frame = self.read_sp_pc, self.read_frame
        cache, words, running, sp_e, pc_e = self._view
        for before, with_site in self.before:
            if not with_site:
                before()
            elif noted := emu.prev_pc:  # compat.call_site, inline: the previous pc Speakeasy noted,
                before(int(noted))
            else:  # else the return address (remembered, or read with the frame)
                if running[0] or (site_sp := cache.get(sp_e)) is None or (site := words.get(site_sp)) is None:
                    try:
                        site = read_frame()[2]
                    except Exception:
                        site = compat.call_site(emu)
                before(int(site))
        plan = self.plans.get((dll, name), _UNPLANNED)
        if plan is _UNPLANNED:
            plan = self._plan(dll, name)
        if plan is None or (emu.hammer is not None and emu.hammer.enabled):
            return self.original(dll, name)
        # read_frame(), from the cache while it holds the values
        if (
            running[0]
            or (osp := cache.get(sp_e)) is None
            or (opc := cache.get(pc_e)) is None
            or (oret := words.get(osp)) is None
        ):
            try:
                osp, opc, oret = read_frame()
            except Exception:
                return self.original(dll, name)  # a faulting read: Speakeasy's path reports it
        argc = plan.argc
        argv = self._argv(osp, argc) if argc else []
        if argv is None:
            return self.original(dll, name)
        conv, imp_api = plan.conv, plan.imp_api
        # _dispatch_import_func's frame, its argc and convention given to the constructor
        frame = ApiCallbackFrame(osp, oret, argc, conv)
        previous = emu._active_api_frame
        emu._active_api_frame = frame
        origin_run = emu.curr_run
        try:
            call_pc = prev_pc if (prev_pc := emu.prev_pc) != 0 else oret
            if plan.layout == ():
                args = HandlerArgs([], [])  # a signature without parameters: what from_signature builds
            elif plan.sig is not None:
                args = self._handler_args(plan, argv)
            else:
                args = HandlerArgs.from_slots(argv)
            ctx = ApiContext(func_name=imp_api, args=args)
            # _hooks(), remembered on the plan with the table it was read from
            table = emu.hooks.get(HOOK_API)
            if plan.hooks_of is table:
                hooks = plan.hooks
            else:
                hooks = plan.hooks = self._hooks(plan.dll, plan.name)
                plan.hooks_of = table
            if hooks:
                rv = self._hooked(plan, hooks, argv, ctx)
            else:
                try:
                    rv = plan.func(plan.mod, emu, argv, ctx)
                except Exception as e:
                    if emu._stop_on_faults:
                        raise
                    se_winemu.logger.exception("0x%x: Error while calling API handler for %s:", oret, imp_api)
                    error = emu.get_error_info(str(e), emu.get_pc(), traceback=traceback.format_exc())
                    emu.curr_run.error = error
                    emu.on_run_complete()
                    rv = _HANDLER_FAILED
            if rv is not _HANDLER_FAILED:
                if (
                    running[0]
                    or (sp := cache.get(sp_e)) is None
                    or (pc := cache.get(pc_e)) is None
                    or (ret := words.get(sp)) is None
                ):
                    try:
                        sp, pc, ret = read_frame()
                    except Exception:
                        sp, pc = read_sp_pc()
                        ret = emu.get_ret_address()  # raises as Speakeasy's read does
                frame.result = rv
                memo = self._map_memo  # _map_of's remembered answer, checked inline
                if memo is None:
                    mm = self._map_of(ret)
                else:
                    mm, index, maps = memo
                    if not (
                        emu.maps is maps
                        and index < len(maps)
                        and maps[index] is mm
                        and mm.base <= ret < mm.base + mm.size
                    ):
                        mm = self._map_of(ret)
                if mm and "virtualalloc" in mm.tag.lower():
                    emu._fire_dyn_code_hooks(ret)
                report_args = ctx.args.get_report_args()
                log = emu.log_api
                if log is not self._log_seen:
                    self._see_log(log)
                if self._log_parts is None:
                    log(call_pc, imp_api, rv, report_args, run=origin_run)
                else:  # compat.after_each_api_call's wrapper, its two calls made here
                    inner, after = self._log_parts
                    if (
                        self._lean_log
                        and origin_run is not None
                        and not origin_run.api_callbacks
                        and not self._info_enabled(logging.INFO)
                    ):
                        # compat_fast.use_lean_api_log's accounting, inline
                        origin_run.num_apis += 1
                        # A run's unique_apis list only grows: once it holds this plan's API, it does for good.
                        listed = origin_run.unique_apis
                        if plan.listed_in is not listed:
                            if not self._seen_api(origin_run, imp_api):
                                origin_run.api_hash.update(imp_api.lower().encode("utf-8"))
                                listed.append(imp_api)
                            plan.listed_in = listed
                    else:
                        inner(call_pc, imp_api, rv, report_args, run=origin_run)
                    after(call_pc, imp_api, rv, report_args)
                if emu.curr_run is origin_run and not emu.run_complete and ret == oret and pc == opc:
                    if running[0] or (sp := cache.get(sp_e)) is None:
                        sp = read_sp_pc()[0]
                    if sp == osp:
                        if ret and plan.one_call_return and self.write_return is not None:
                            self.write_return(sp + self.ptr, ret, rv)  # _call_return's usual case, inline
                        else:
                            self._call_return(sp, argc, ret, rv, conv)
                if not emu.run_complete:
                    emu.enable_code_hook()
                # _check_api_limit, which does something only for the same run past the limit.
                if emu.curr_run is origin_run and origin_run and origin_run.num_apis > emu.config.max_api_count:
                    emu._check_api_limit(origin_run, imp_api)
            # back in handle_import_func
            if emu.curr_run is origin_run and not emu.run_complete and not emu.emu_complete:
                if running[0] or (sp := cache.get(sp_e)) is None or (pc := cache.get(pc_e)) is None:
                    sp, pc = read_sp_pc()
                if (
                    pc == opc
                    and sp != frame.stack_pointer
                    and not emu._pending_control
                    and not origin_run.api_callbacks
                ):
                    origin_run.error = emu.get_error_info("api_handler_did_not_return", opc)
                    origin_run.error.api_name = f"{dll}.{name}"
                    se_winemu.logger.error("API handler %s.%s changed SP without returning", dll, name)
                    emu.end_run_on_fault()
        finally:
            emu._active_api_frame = previous
        return None

    def _hooked(self, plan: _Plan, hooks: list[Any], argv: list[int], ctx: Any) -> Any:
        """The API hooks registered for the API, around its handler (``_dispatch_import_func``)."""
        emu = self.emu
        hooked_func = MethodType(plan.func, plan.mod)

        def orig(args: Any) -> Any:
            return hooked_func(emu, args, ctx)

        prev_ctx, emu.api_ctx = emu.api_ctx, ctx
        try:
            for hook in hooks:
                rv = hook.cb(emu, plan.imp_api, orig, argv)
        finally:
            emu.api_ctx = prev_ctx
        return rv

    def _see_log(self, log: Any) -> None:
        """What the emulator's ``log_api`` is now: compat.after_each_api_call's wrapper (its two
        parts), and whether its inner part is compat_fast.use_lean_api_log's."""
        self._log_seen, self._log_parts = log, getattr(log, "unwrapped", None)
        inner = self._log_parts[0] if self._log_parts is not None else None
        self._lean_log = getattr(inner, "lean_for", None) is self.emu

    def _seen_api(self, run: Any, imp_api: str) -> bool:
        """``imp_api in run.unique_apis``, with the list's names kept in a set while the list
        only grows (Speakeasy appends to it, once per new API)."""
        names = run.unique_apis
        memo = self._unique
        if memo is None or memo[0] is not run or memo[1] is not names or memo[3] != len(names):
            memo = self._unique = [run, names, set(names), len(names)]
        if imp_api in memo[2]:
            return True
        memo[2].add(imp_api)
        memo[3] += 1  # the caller appends it
        return False

    def _map_of(self, address: int) -> Any:
        """``emu.get_address_map(address)``: the first map in ``emu.maps`` holding ``address``.

        Speakeasy scans the whole list (about 120 maps in a 3CX replay, the caller's usually
        near the end) after every call. Maps do not overlap (each is a Unicorn mapping or a
        block of one) and the list only grows at its end or loses members, so the map found
        last time is still the answer while it sits at the same position of the same list and
        still holds ``address``; anything else scans again."""
        memo = self._map_memo
        if memo is not None:
            known, index, maps = memo
            if (
                self.emu.maps is maps
                and index < len(maps)
                and maps[index] is known
                and known.base <= address <= known.base + known.size - 1
            ):
                return known
        found = self.emu.get_address_map(address)
        if not self.stock_maps:
            return found
        maps = getattr(self.emu, "maps", None)
        self._map_memo = None
        if found is not None and type(maps) is list:
            for index, item in enumerate(maps):
                if item is found:
                    self._map_memo = (found, index, maps)
                    break
        return found

    def _call_return(self, sp: int, argc: int, ret: int, rv: Any, conv: Any) -> None:
        """``do_call_return`` for stdcall / cdecl: the same final registers, written at once."""
        if not ret:
            if rv is not None:
                self.reg_write(self.ret_reg, rv)
            if conv != se_arch.CALL_CONV_CDECL and argc and not self.x64:
                self.reg_write(self.sp_reg, self.reg_read(self.sp_reg) + self.ptr * argc)
            return
        sp += self.ptr
        if conv != se_arch.CALL_CONV_CDECL and argc and not self.x64:
            sp += self.ptr * argc
        if self.write_return is not None:
            self.write_return(sp, ret, rv)
            return
        self.reg_write(self.sp_reg, sp)
        self.reg_write(self.pc_reg, ret)
        if rv is not None:
            self.reg_write(self.ret_reg, rv)


# ---- the run loop --------------------------------------------------------------------------------

# The emulator state Speakeasy's run loop keeps, and what its deferred-work hook checks
# (compat_fast.deferred_work_idle).
LOOP_STATE = (
    "_pending_api_entry",
    "_pending_api_snapshot",
    "_pending_control",
    "_pending_trap_fault",
    "_pending_fault_stop",
    "_pending_exec_recovery",
    "_api_call_site",
    "_execution_budget",
    "exit_event",
    "prev_pc",
    "run_complete",
)
DEFERRED_WORK_STATE = ("curr_exception_code", "restart_curr_run", "_seh_resume_pc", "tmp_maps", "emu_hooks_set")

# Stands for a suspended API call's snapshot until it is needed (see FastEngineLoop.on_trap).
_LAZY_SNAPSHOT = object()


class FastEngineLoop:
    """``WindowsEmulator._run_api_engine`` for fast mode, and a shorter way into it from an API trap.

    The loop is Speakeasy's, statement for statement, without what fast mode never uses (a
    debugger, Unicorn's instruction count: ``max_instructions`` is the runner's), and reading
    the pc once where Speakeasy reads it up to four times. Anything else (a debugger, a count)
    takes Speakeasy's own loop.

    The trap: guest code that reaches an API stub fetches from Speakeasy's unmapped trap range.
    Speakeasy's invalid-memory dispatcher then checks the run's return and callback addresses,
    looks the stub up, snapshots the stack and the stub's bytes (so a debugger that edits them
    while stopped is noticed) and stops Unicorn. :meth:`on_trap` is put in front of it for
    fetches from a stub only: it suspends the call the same way and leaves the snapshot to be
    taken if the call leaves this loop still suspended (memory cannot change before that).
    """

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.original = emu._run_api_engine
        self.traps = emu.api_registry.traps
        # Unicorn calls on_invalid_native at a trap (see install), not Speakeasy's wrapper.
        self.native_trap = False

    def install(self) -> None:
        emu = self.emu
        for attr in LOOP_STATE + DEFERRED_WORK_STATE:
            if not hasattr(emu, attr):
                raise _incompatible(f"the emulator has no attribute {attr!r}")
        emu._run_api_engine = self.run
        hooks = emu.hooks.get(se_common.HOOK_MEM_INVALID)
        if not hooks or emu.emu_eng.mem_access.get(uc.UC_MEM_FETCH_UNMAPPED) != se_common.INVALID_MEM_EXEC:
            return
        dispatch = hooks[0]
        original, traps, fetch_unmapped, stop = dispatch.cb, self.traps, uc.UC_MEM_FETCH_UNMAPPED, emu.emu_eng.stop

        def on_invalid(uc_emu: Any, access: int, address: int, size: int, value: int) -> bool:
            if access == fetch_unmapped:
                entry = traps.get(address)
                if entry is not None:
                    emu._pending_api_entry = entry
                    emu._pending_api_snapshot = _LAZY_SNAPSHOT
                    stop()
                    return False
            return bool(original(uc_emu, access, address, size, value))

        dispatch.cb = on_invalid
        # Unicorn calls Speakeasy's wrapper, which calls on_invalid: one callback of our own in its
        # place makes both calls' checks in one frame (the wrapper's own for anything else).
        wrapper, se_obj = dispatch._wrap_memory_access_cb, dispatch.se_obj

        def on_invalid_native(handle: int, access: int, address: int, size: int, value: int, user: Any) -> bool:
            try:
                if access == fetch_unmapped and dispatch.enabled:
                    exit_event = se_obj.exit_event
                    if not (exit_event and exit_event.is_set()):
                        entry = traps.get(address)
                        if entry is not None:
                            emu._pending_api_entry = entry
                            emu._pending_api_snapshot = _LAZY_SNAPSHOT
                            # No stop: returning False ends the start at this fetch all the same
                            # (Unicorn's FETCH_UNMAPPED; the runner then returns at the trap).
                            return False
            except KeyboardInterrupt:  # as the wrapper handles it
                se_obj.stop()
                return False
            return bool(wrapper(handle, access, address, size, value, user))

        self.native_trap = compat_fast.replace_invalid_memory_callback(emu, dispatch, on_invalid_native)

    def _settle_snapshot(self) -> None:
        emu = self.emu
        if emu._pending_api_snapshot is _LAZY_SNAPSHOT:
            entry = emu._pending_api_entry
            emu._pending_api_snapshot = emu._api_call_snapshot(entry) if entry is not None else None

    def run(self, address: int, timeout: float = 0, count: int = -1, debugger: Any = None) -> None:
        if debugger is not None or count > 0:
            self._settle_snapshot()
            return self.original(address, timeout=timeout, count=count, debugger=debugger)  # type: ignore[no-any-return]
        try:
            self._run(address, timeout)
        finally:
            self._settle_snapshot()
        return None

    def _run(self, address: int, timeout: float) -> None:  # noqa: C901 - Speakeasy's loop
        emu = self.emu
        self._settle_snapshot()
        pending = emu._pending_api_entry
        if pending is not None and address not in (pending.address, pending.trap):
            emu._pending_api_entry = None
        elif pending is not None and emu._api_call_snapshot(pending) != emu._pending_api_snapshot:
            emu._pending_api_entry = None
            address = pending.address
            emu.set_pc(address)
        callback_addr = se_wincommon.API_CALLBACK_HANDLER_ADDR
        if (
            emu._pending_control
            and emu._pending_control != "exec_recovery"
            and address
            not in (
                callback_addr,
                emu.return_hook,
                emu.exit_hook,
            )
        ):
            emu._pending_control = None
        monotonic = time.monotonic
        started = monotonic()
        spent = emu.curr_run.execution_elapsed
        deadline = started + max(timeout - spent, 0) if timeout > 0 else None
        deadline_kind = "timeout"
        total_budget = emu._execution_budget
        if total_budget is not None and total_budget.limit > 0:
            total_deadline = started + max(total_budget.limit - total_budget.elapsed, 0)
            if deadline is None or total_deadline < deadline:
                deadline = total_deadline
                deadline_kind = "max_total_time"
        origin_run = emu.curr_run
        traps = self.traps
        start = emu.emu_eng.start
        # The fast-mode runner's start taking the loop's deadline as it is (see NativeRunner.start_by).
        owner = getattr(start, "__self__", None)
        start_by = getattr(owner, "start_by", None)
        if getattr(start, "__func__", None) is not getattr(type(owner), "start", object()):
            start_by = None
        # The pc after an API call, from fast mode's register cache while it holds it (the call's
        # return wrote it there); emu.get_pc() otherwise, which reads the same register.
        view = compat_fast.register_view(emu.emu_eng)
        cache, running, pc_e = view[0], view[2], view[4]

        def stop_limit(kind: str) -> None:
            if emu._pending_api_entry is not None:
                emu.set_pc(emu._pending_api_entry.address)
            if kind == "timeout":
                se_winemu.logger.error("* Timeout of %d sec(s) reached.", timeout)
            else:
                se_winemu.logger.error("* Total execution time of %d sec(s) reached.", total_budget.limit)
            if kind == "max_total_time":
                total_budget.exhausted = True
                emu._cancel_execution_runs()
                if emu.curr_run is origin_run and origin_run.error is None:
                    origin_run.error = ErrorInfo(type=kind, pc=emu.get_pc())
            if emu.curr_run is origin_run:
                if origin_run.error is None:
                    origin_run.error = ErrorInfo(type=kind, pc=emu.get_pc(), count=None)
                emu.on_run_complete()

        try:
            while not emu.emu_complete:
                if emu.exit_event and emu.exit_event.is_set():
                    emu.emu_eng.stop()
                    return
                if emu._pending_control:
                    if deadline_kind == "max_total_time" and deadline is not None and monotonic() >= deadline:
                        stop_limit("max_total_time")
                        return
                    control, emu._pending_control = emu._pending_control, None
                    if control in ("run_return", "fault_return"):
                        emu.on_run_complete()
                        return
                    if control == "exec_recovery":
                        page, perms = emu._pending_exec_recovery
                        emu._pending_exec_recovery = None
                        emu.mem_protect(page, emu.page_size, perms)
                    else:
                        emu._continue_api_callback()
                    address = emu.get_pc()
                if deadline is not None and monotonic() >= deadline:
                    stop_limit(deadline_kind)
                    return
                if emu._pending_api_entry is None and not emu._pending_control:
                    try:
                        if start_by is not None:
                            start_by(address, deadline)
                        else:
                            native_timeout = max(deadline - monotonic(), 0.000001) if deadline is not None else 0
                            start(address, timeout=native_timeout, count=0)
                    except uc.UcError as exc:
                        if emu._pending_fault_stop is not None:
                            return
                        tolerated = (
                            emu._pending_trap_fault is not None
                            or (emu._pending_control == "exec_recovery" and exc.errno == uc.UC_ERR_FETCH_PROT)
                            or emu._pending_control == "fault_return"
                            or (
                                exc.errno == uc.UC_ERR_FETCH_UNMAPPED
                                and (emu._pending_api_entry is not None or bool(emu._pending_control))
                            )
                        )
                        if not tolerated:
                            raise
                    if emu._pending_trap_fault is not None:
                        emu._dispatch_trap_fault()
                        address = emu.get_pc()
                        if emu._pending_fault_stop is not None:
                            return
                        continue
                    pc = emu.get_pc()
                    if emu._pending_api_entry is None:
                        candidate = traps.get(pc)
                        if candidate is not None:
                            emu._suspend_api_call(candidate)
                    if pc == callback_addr and emu.curr_run.api_callbacks:
                        emu._pending_control = "callback_return"
                    elif pc in (emu.return_hook, emu.exit_hook):
                        emu._pending_control = "run_return"
                if emu.curr_run is not origin_run or emu.emu_complete:
                    return
                entry = emu._pending_api_entry
                if emu._pending_control:
                    continue
                if deadline is not None and monotonic() >= deadline:
                    stop_limit(deadline_kind)
                    return
                if entry is None:
                    return
                emu._pending_api_entry = None
                emu._pending_api_snapshot = None
                site, emu._api_call_site = emu._api_call_site, None
                emu.prev_pc = site[1] if site is not None and site[0] == entry.address else 0
                emu.handle_import_func(entry.dll, entry.name)
                if emu._pending_fault_stop is not None:
                    return
                if emu.run_complete and not emu.emu_complete and emu.curr_run is origin_run:
                    if deadline_kind == "max_total_time" and deadline is not None and monotonic() >= deadline:
                        stop_limit("max_total_time")
                        return
                    emu.on_run_complete()
                cached_pc = None if running[0] else cache.get(pc_e)
                address = emu.get_pc() if cached_pc is None else cached_pc
                if emu.curr_run is not origin_run:
                    return
        finally:
            elapsed = monotonic() - started
            origin_run.execution_elapsed = spent + elapsed
            if total_budget is not None:
                total_budget.elapsed += elapsed
                if total_budget.limit > 0 and total_budget.elapsed >= total_budget.limit:
                    if not total_budget.exhausted:
                        se_winemu.logger.error("* Total execution time of %d sec(s) reached.", total_budget.limit)
                    total_budget.exhausted = True
                    emu._cancel_execution_runs()
                    prepared = emu.curr_run
                    if prepared is origin_run:
                        if not emu.run_complete and origin_run.error is None:
                            origin_run.error = ErrorInfo(type="max_total_time", pc=emu.get_pc())
                    else:
                        emu._cancel_execution_runs(prepared)
                        if prepared.execution_elapsed == 0 and prepared.get_api_count() == 0:
                            emu.runs[:] = [run for run in emu.runs if run is not prepared]
                            if emu.profiler:
                                emu.profiler.runs[:] = [run for run in emu.profiler.runs if run is not prepared]
                            emu.curr_run = origin_run
                            emu.run_complete = True
