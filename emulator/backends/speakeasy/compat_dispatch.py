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

import traceback
from types import MethodType
from typing import Any

import speakeasy.common as se_common
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.arch as se_arch
from speakeasy.profiler import ApiCallbackFrame
from speakeasy.winenv.api.api import ApiContext, HandlerArgs

from emulator.backends.speakeasy.compat import _incompatible, _require_params

# A plan of an API Speakeasy serves itself (see _plan).
_NO_PLAN = None


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
    if not hasattr(se_common, "HOOK_API"):
        raise _incompatible("speakeasy.common.HOOK_API is missing")
    for field in ("stack_pointer", "return_address", "argc", "convention", "result"):
        if field not in getattr(ApiCallbackFrame, "__dataclass_fields__", {}):
            raise _incompatible(f"speakeasy.profiler.ApiCallbackFrame has no field {field!r}")


_check_installed()


class _Plan:
    __slots__ = ("dll", "name", "imp_api", "mod", "func", "argc", "conv", "sig")

    def __init__(self, dll: str, name: str, imp_api: str, mod: Any, func: Any, argc: int, conv: Any, sig: Any) -> None:
        self.dll, self.name, self.imp_api = dll, name, imp_api
        self.mod, self.func, self.argc, self.conv, self.sig = mod, func, argc, conv, sig


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
        if self.x64:
            self.sp_reg, self.pc_reg, self.ret_reg = se_arch.AMD64_REG_RSP, se_arch.AMD64_REG_RIP, se_arch.AMD64_REG_RAX
            self.arg_regs: tuple[int, ...] = (se_arch.AMD64_REG_RCX, se_arch.AMD64_REG_RDX, se_arch.AMD64_REG_R8, se_arch.AMD64_REG_R9)
        else:
            self.sp_reg, self.pc_reg, self.ret_reg = se_arch.X86_REG_ESP, se_arch.X86_REG_EIP, se_arch.X86_REG_EAX
            self.arg_regs = ()
        self.ptr = 8 if self.x64 else 4

    def install(self) -> None:
        self.emu.handle_import_func = self.handle_import_func

    def _bind(self) -> None:
        # The engine's register and memory access as the runner left it (direct, in fast mode).
        engine = self.emu.emu_eng
        self.reg_read, self.reg_write, self.mem_read = engine.reg_read, engine.reg_write, engine.mem_read
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
        self.plans[key] = plan
        return plan

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

    def handle_import_func(self, dll: str, name: str) -> Any:
        emu = self.emu
        plan = self._plan(dll, name)
        if plan is None or (emu.hammer is not None and emu.hammer.enabled):
            return self.original(dll, name)
        if not self.bound:
            self._bind()
        read = self.reg_read
        sp = read(self.sp_reg)
        ret = self._stack_word(sp)
        argv = self._argv(sp, plan.argc) if ret is not None else None
        if argv is None or ret is None:
            return self.original(dll, name)  # a faulting read: Speakeasy's path reports it
        frame = ApiCallbackFrame(sp, ret)
        previous = emu._active_api_frame
        emu._active_api_frame = frame
        origin_run = emu.curr_run
        entry_pc = read(self.pc_reg)
        try:
            self._dispatch(plan, frame, sp, ret, entry_pc, argv)
            if (
                emu.curr_run is origin_run
                and not emu.run_complete
                and not emu.emu_complete
                and read(self.pc_reg) == entry_pc
                and read(self.sp_reg) != frame.stack_pointer
                and not emu._pending_control
                and not origin_run.api_callbacks
            ):
                origin_run.error = emu.get_error_info("api_handler_did_not_return", entry_pc)
                origin_run.error.api_name = f"{dll}.{name}"
                se_winemu.logger.error("API handler %s.%s changed SP without returning", dll, name)
                emu.end_run_on_fault()
        finally:
            emu._active_api_frame = previous
        return None

    def _dispatch(self, plan: _Plan, frame: Any, osp: int, oret: int, opc: int, argv: list[int]) -> None:
        """``_dispatch_import_func`` for an API with a handler (stdcall or cdecl)."""
        emu = self.emu
        origin_run = emu.curr_run
        call_pc = emu.prev_pc if emu.prev_pc != 0 else oret
        argc, conv, imp_api = plan.argc, plan.conv, plan.imp_api
        frame.argc = argc
        frame.convention = conv
        sig = plan.sig
        if sig is not None:
            rendered = emu._render_signature_args(sig, argv)
            args = HandlerArgs.from_signature(sig, self.ptr, rendered, argv)
        else:
            args = HandlerArgs.from_slots(argv)
        ctx = ApiContext(func_name=imp_api, args=args)
        hooks = self._hooks(plan.dll, plan.name)
        if hooks:
            hooked_func = MethodType(plan.func, plan.mod)

            def orig(args: Any) -> Any:
                return hooked_func(emu, args, ctx)

            prev_ctx, emu.api_ctx = emu.api_ctx, ctx
            try:
                for hook in hooks:
                    rv = hook.cb(emu, imp_api, orig, argv)
            finally:
                emu.api_ctx = prev_ctx
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
                return
        read = self.reg_read
        sp = read(self.sp_reg)
        ret = self._stack_word(sp)
        if ret is None:
            ret = emu.get_ret_address()  # raises as Speakeasy's read does
        pc = read(self.pc_reg)
        frame.result = rv
        mm = emu.get_address_map(ret)
        if mm and "virtualalloc" in mm.tag.lower():
            emu._fire_dyn_code_hooks(ret)
        emu.log_api(call_pc, imp_api, rv, ctx.args.get_report_args(), run=origin_run)
        if emu.curr_run is origin_run and not emu.run_complete and ret == oret and pc == opc:
            sp = read(self.sp_reg)
            if sp == osp:
                self._call_return(sp, argc, ret, rv, conv)
        if not emu.run_complete:
            emu.enable_code_hook()
        emu._check_api_limit(origin_run, imp_api)

    def _call_return(self, sp: int, argc: int, ret: int, rv: Any, conv: Any) -> None:
        """``do_call_return`` for stdcall / cdecl."""
        write = self.reg_write
        if ret:
            sp += self.ptr
            write(self.sp_reg, sp)
            write(self.pc_reg, ret)
        if rv is not None:
            write(self.ret_reg, rv)
        if conv != se_arch.CALL_CONV_CDECL and argc and not self.x64:
            write(self.sp_reg, self.reg_read(self.sp_reg) + self.ptr * argc)
