"""The Speakeasy backend: ties configuration, set-up, translation, memory watch and runner together."""

from __future__ import annotations

import logging
import ntpath
import re
import time
from typing import Any

from emulator.apis import GuestApi, cryptoapi, threads
from emulator.backends.base import BackendResult, ReplayStop, RunSummary
from emulator.backends.speakeasy import (
    comclasses,
    compat,
    compat_fast,
    compat_load,
    compat_memory,
    crtcalls,
    crtio,
    mailslots,
    setup,
    txf,
    versionlie,
    wndprocs,
)
from emulator.backends.speakeasy.children import ChildProcesses
from emulator.backends.speakeasy.compat_dispatch import FastDispatch, FastEngineLoop
from emulator.backends.speakeasy.exceptions import ExceptionDispatcher
from emulator.backends.speakeasy.flow import SLOW_PATH_BYTES, FlowWatch
from emulator.backends.speakeasy.guest import GuestMachine
from emulator.backends.speakeasy.guestdirs import MAX_GUEST_PATH, GuestDirectories
from emulator.backends.speakeasy.heapsizes import HeapSizes
from emulator.backends.speakeasy.loader import GuestModuleLoader
from emulator.backends.speakeasy.memwatch import PAGE, MemoryWatch
from emulator.backends.speakeasy.messages import MessageLoop
from emulator.backends.speakeasy.runner import NativeRunner
from emulator.backends.speakeasy.signals import Signals
from emulator.backends.speakeasy.sources import SourceTaps, read_c_string
from emulator.backends.speakeasy.syscalls import IndirectCall, SystemCalls
from emulator.backends.speakeasy.translate import Observed, Translator
from emulator.backends.speakeasy.vmspace import AddressSpace
from emulator.backends.speakeasy.waits import ThreadWaits
from emulator.environment import user_dirs
from emulator.events import Note
from emulator.outcome import UNSUPPORTED_API_ERROR, Status
from emulator.plan import SANDBOX_MARKER_NAME, ReplayPlan
from emulator.recorder import Recorder
from emulator.responders.router import NetworkLimitReached
from emulator.services import ReplayServices

logger = logging.getLogger(__name__)

# The note naming an API served from its declared signature alone (no handler ran).
SIGNATURE_EMULATED = "signature_emulated"
# A signature-emulated call was handed code the guest made executable and has not run, as a
# parameter whose name says it is a function (a callback Windows would have called).
CALLBACK_NOT_CALLED = "callback_not_called"
CALLBACK_PARAMETER = re.compile(r"proc|func|fn|callback|routine|hook|handler|start", re.IGNORECASE)


class SpeakeasyBackend:
    def __init__(self, plan: ReplayPlan, services: ReplayServices) -> None:
        self.plan = plan
        self._max_api_calls = plan.limits.max_api_calls  # read after every API call
        self.services = services
        self.recorder: Recorder = services.recorder
        self.result = BackendResult(engine=compat.ENGINE_NAME)
        self.target: setup.LoadedTarget | None = None
        self.translator: Translator | None = None
        self._stop: ReplayStop | None = None
        self._runner: NativeRunner | None = None
        self.machine: GuestMachine | None = None
        self._signature_emulated: set[str] = set()
        # API stub pc -> (bad address, access) of the last guest-memory fault inside that API.
        self._api_faults: dict[int, tuple[int, str]] = {}
        self._direct_system_calls: set[tuple[int, int]] = set()  # (pc, number) noted
        self._children: ChildProcesses | None = None
        self._watch: MemoryWatch | None = None
        self._indirect_system_calls: set[tuple[int, int, int]] = set()  # (pc, number, return address) noted

    def run(self) -> BackendResult:
        started = time.perf_counter()
        logger.debug("%s: %s mode under %s", self.plan.name, self.plan.mode, compat.ENGINE_NAME)
        try:
            self.target = setup.load_target(self.plan)
            logger.debug(
                "loaded %s (%s, %s) at %#x, %d bytes",
                self.target.name,
                self.target.kind,
                self.target.arch,
                self.target.base,
                self.target.size,
            )
            self._install(self.target)
            setup.start(self.plan, self.target)
            if self._children is not None:
                # Processes the chain started from its files, after the parent's runs
                # (emulator/backends/speakeasy/children.py says why then).
                self._children.run_pending(lambda: self._stop is not None)
        except ReplayStop as stop:
            self._stop = stop
        except NetworkLimitReached as err:
            self._stop = ReplayStop(Status.LIMIT, str(err), "max_network_exchanges")
        finally:
            if self._runner is not None:
                self._runner.close()
            self.result.emulation_seconds = time.perf_counter() - started
            if self._watch is not None:
                self._watch.note_patches()  # changes to module code not run nor re-protected
            self._collect()
        for run in self.result.runs:
            logger.debug("run %s at %#x: %d API calls, error %s", run.kind, run.start, run.api_calls, run.error)
        if self.result.stop is not None:
            logger.debug("stopped: %s (%s)", self.result.stop.detail, self.result.stop.limit)
        logger.debug("emulation took %.3f s", self.result.emulation_seconds)
        return self.result

    def _on_signature_emulated(self, api: str, pc: int, rv: int | None, params: list[tuple[str, int]]) -> None:
        self._note_callbacks_not_called(api, pc, params)
        # Once per API: the report says which calls no handler served (their results are not
        # Windows', and out parameters were only zeroed).
        if api in self._signature_emulated:
            return
        self._signature_emulated.add(api)
        returned = "nothing" if rv is None else hex(rv)
        self.recorder.emit(
            Note,
            what=SIGNATURE_EMULATED,
            detail=f"{api} has no handler: served from its declared signature (returned {returned}, "
            "out-only pointer parameters zeroed, nothing else done); later calls are not noted",
            pc=pc or None,
        )

    def _note_callbacks_not_called(self, api: str, pc: int, params: list[tuple[str, int]]) -> None:
        """A function pointer into code the guest made executable and never ran, handed to an
        API no handler served: on Windows the API would call it (the "callback execution" family
        has dozens), here nothing did; the stage there never ran. Said per call."""
        watch = self._watch
        if watch is None:
            return
        for name, value in params:
            perms = watch.armed.get(value // PAGE) if value else None
            if perms is None or not perms & compat.PERM_EXEC or not CALLBACK_PARAMETER.search(name):
                continue
            self.recorder.note(
                CALLBACK_NOT_CALLED,
                f"{api} was given {value:#x} as {name}: code the guest made executable and has not "
                "run. Windows would call it back; the call was served from its signature (no handler), "
                "so nothing called it and the code there did not run",
                pc=pc or None,
            )

    def _install(self, target: setup.LoadedTarget) -> None:
        emu = target.emu
        compat.check_emulator(emu)
        compat_memory.read_strings_by_page(emu)
        compat_memory.without_memory_layout_capture(emu)
        self.result.arch = target.arch
        memory = setup.SpeakeasyMemory(emu)
        self.recorder.start_stage(
            kind=target.kind,
            name=target.name,
            base=target.base,
            size=target.size,
            entry=target.base,
            data=target.data,
            parent=None,
            via="entry",
        )
        if target.managed:
            self.recorder.note(
                "managed_code",
                f"{target.name} is a .NET assembly (CLR runtime header): its managed code (IL) is not "
                "emulated; only native code runs (its entry stub calling mscoree, if it has one)",
            )
        observed = Observed()
        self.translator = translator = Translator(self.plan, self.services, memory, emu, observed, self._fail)
        if self.plan.mode == "fast":
            compat_fast.use_lean_api_log(emu)
            FastDispatch(emu).install()
        compat.after_each_api_call(emu, self._on_api)
        compat.on_signature_emulation(emu, self._on_signature_emulated)
        compat.on_profiler_records(emu, translator.queue_record)
        recorder = self.recorder

        def enter_api_call(site: int) -> None:
            # What a handler records during the call belongs to the calling stage, not to the
            # stage of the previous call (a loaded module's export that has since returned).
            recorder.current_stage = recorder.stage_at(site) or recorder.current_stage

        compat.before_each_api_call(emu, enter_api_call, with_site=True)
        watch = MemoryWatch(emu, self.plan, self.recorder, memory, observed, self._fail, self._stop_now)
        watch.own_image = (target.base, target.size)
        self._watch = watch
        flow = FlowWatch(emu, memory, self.recorder)
        flow.install()
        flow.add_code(target.base, target.size, target.kind)
        self._observe_events(flow)
        watch.flow = flow
        watch.install()
        memory.space = space = AddressSpace(emu, target.arch == "x64", watch.armed)
        space.install(target.se)
        setup.install_api_handlers(
            target.se, memory, self.services, self._on_network_limit, left_to=ThreadWaits.hooked_apis()
        )
        versionlie.install(target.se, target.data if target.kind == "pe" else None)
        profile = user_dirs(self.plan.user, self.plan.domain, self.plan.hostname)["userprofile"]
        folders = GuestDirectories(emu, profile, x64=target.arch == "x64")
        folders.add(ntpath.dirname(self.plan.emu_path))

        def read_path(address: int, wide: bool) -> str:
            data = read_c_string(memory, address, wide, MAX_GUEST_PATH * (2 if wide else 1))
            return data.decode("utf-16-le" if wide else "latin-1", "replace")

        def file_size(path: str) -> int | None:
            data = compat.guest_file_data(emu, path)
            return None if data is None else len(data)

        folders.install(
            target.se,
            read_path,
            self.services.clock.now_filetime,
            file_size,
            lambda handle: compat.file_path_of_handle(emu, handle),
        )
        taps = SourceTaps(target.se, emu, memory, self.recorder)
        taps.on_copy_from = self.recorder.on_copy_from = flow.copied_from
        taps.on_view_mapped = watch.arm_view
        taps.on_own_process_write = watch.before_own_process_write
        taps.decrypt_first = lambda name, argv: cryptoapi.decrypt(
            GuestApi(memory, self.services, name, module="advapi32"), argv
        )
        taps.pending_apcs = self.services.pending_apcs
        taps.variable_names = {name.lower(): name for name in (*self.plan.env, SANDBOX_MARKER_NAME)}
        taps.install()
        comclasses.install(target.se, emu, memory, self.services)
        procedures = wndprocs.install(target.se, emu, memory, self.services)
        messages = MessageLoop(target.se, emu, memory, self.services, procedures)
        messages.install()
        crtio.install(target.se, emu, memory, self.services.clock.now_unix, folders)
        crtcalls.install(target.se, emu, memory)
        txf.install(target.se, memory, self.recorder)
        mailslots.install(target.se, emu, memory)
        HeapSizes(target.se, x64=target.arch == "x64").install()
        GuestModuleLoader(target.se, emu, memory, self.recorder, watch, target.dll_search).install()
        if target.kind == "pe":
            self._children = ChildProcesses(
                target.se,
                emu,
                memory,
                self.recorder,
                watch,
                flow,
                target.arch,
                self.plan.emu_path,
                self.plan.limits.max_child_processes,
                self._stop_now,
            )
            self._children.install()
        handlers = setup.project_hooks(memory, self.services, self._on_network_limit, ThreadWaits.hooked_apis())
        services = self.services

        def deliver_apcs() -> bool:
            return threads.deliver_apcs(GuestApi(memory, services, "WaitForSingleObjectEx", module="kernel32"))

        signals = Signals(target.se, emu, self.services)
        signals.install()
        ThreadWaits(
            target.se,
            emu,
            memory,
            self._children,
            self.services.clock.tick_count_ms,
            handlers,
            deliver_apcs,
            lambda handle: threads.pool_callback_threads(services, handle),
            signals,
            messages.input_within,
        ).install()
        self.machine = GuestMachine(emu, self.services.clock, self.plan.guest, x64=target.arch == "x64")
        self.machine.install([(target.base, target.size)])
        watch.on_new_code = self.machine.watch_code
        if self._children is not None:
            self._children.on_new_code = self.machine.watch_code
        watch.on_protection_change = self.machine.protection_changed
        dispatcher = ExceptionDispatcher(emu, x64=target.arch == "x64")
        recorder = self.recorder
        dispatcher.on_redirected = lambda pc: observed.exception_resumes.__setitem__(pc, recorder.current_stage)
        memory.on_context_loaded = lambda pc: observed.context_loads.__setitem__(pc, recorder.current_stage)
        if self._children is not None:
            # a child's thread resumed at a context its parent set (thread hijacking, hollowing)
            self._children.on_context_resumed = lambda pc: observed.context_loads.__setitem__(
                pc, recorder.current_stage
            )
        dispatcher.install(target.se)
        self.machine.on_illegal_instruction = dispatcher.illegal_instruction_at
        dispatcher.final_handler = self.machine.final_handler
        system_calls = SystemCalls(
            emu,
            x64=target.arch == "x64",
            on_direct=self._on_direct_system_call,
            on_indirect=self._on_indirect_system_call,
        )
        if system_calls.install():
            dispatcher.on_system_call_interrupt = system_calls.on_interrupt
        compat.watch_guest_memory_faults(emu, self._on_memory_fault)
        if self.plan.mode == "fast":
            self._runner = NativeRunner(emu, self.plan.limits.max_instructions)
            flow.on_unhooked = self._runner.retranslate
            flow.on_hooked = self.machine.on_hooked = self._runner.hooks_added
            machine = self.machine
            self._runner.memory_hooked = lambda: flow.hooks_armed() or machine.write_hooked()
            self._runner.slow_watch = (flow.hooks_armed, flow.let_go_for_now, SLOW_PATH_BYTES)
            FastEngineLoop(emu).install()

    def _on_direct_system_call(self, pc: int, number: int, name: str) -> None:
        """A system call the guest made from its own code: noted once per call site and number
        (the API call it stands for is recorded as any other)."""
        if (pc, number) in self._direct_system_calls:
            return
        self._direct_system_calls.add((pc, number))
        recorder = self.recorder
        recorder.emit(
            Note,
            stage=recorder.stage_at(pc) or recorder.current_stage,
            what="direct_system_call",
            detail=f"{name} (system service number {number:#x}) entered from the guest's own code at pc {pc:#x}",
            pc=pc,
        )

    def _on_indirect_system_call(self, call: IndirectCall) -> None:
        """A system call made by an ntdll stub's instruction with a number the guest set itself
        (it jumped there, or into the stub past its start): noted once per instruction, number
        and return address, in the stage the call returns to."""
        key = (call.pc, call.number, call.returns_to)
        if key in self._indirect_system_calls:
            return
        self._indirect_system_calls.add(key)
        recorder = self.recorder
        own = "its own number" if call.number == call.stub_number else f"not the stub's number {call.stub_number:#x}"
        recorder.emit(
            Note,
            stage=recorder.stage_at(call.returns_to) or recorder.current_stage,
            what="indirect_system_call",
            detail=f"{call.name} (system service number {call.number:#x}) made through ntdll's {call.stub} stub "
            f"(its system call at pc {call.pc:#x}; {own}) without the stub's start running: the guest's code set "
            f"the number and jumped there; the call returns to {call.returns_to:#x}",
            pc=call.pc,
        )

    def _observe_events(self, flow: FlowWatch) -> None:
        """The flow watch learns its sources from the recorded events (buffers, stages)."""
        downstream = self.recorder.on_event

        def on_event(event: Any) -> None:
            flow.observe(event)
            if downstream is not None:
                downstream(event)

        self.recorder.on_event = on_event

    def _on_api(self, pc: int, imp_api: str, rv: int | None, args: list[Any]) -> None:
        self.translator.api_call(pc, imp_api, rv, args)  # type: ignore[union-attr]  # set with the hooks
        if self.machine is not None:
            self.machine.after_api_call()
        count, limit = self.recorder.api_count, self._max_api_calls
        if count >= limit:
            self._stop_now(ReplayStop(Status.API_LIMIT, f"{count} API calls (limit {limit})", "max_api_calls"))

    def _on_memory_fault(self, pc: int, address: int, access: str) -> None:
        # Reads of the stub itself (Speakeasy disassembling the pc for its error) are not the guest's.
        if address != pc and self.target is not None and compat.api_at_trap(self.target.emu, pc) is not None:
            self._api_faults[pc] = (address, access)

    def _fault_in_api(self, error: Any) -> tuple[str, str] | None:
        """(error type, detail) naming the bad address for a fault raised inside an API handler."""
        pc = getattr(error, "pc", None)
        if self.target is None or not isinstance(pc, int) or pc not in self._api_faults:
            return None
        address, access = self._api_faults[pc]
        api = compat.api_at_trap(self.target.emu, pc) or "an API"
        return f"invalid_{access}", f"invalid_{access} address={address:#x} in {api} (bad pointer argument)"

    def _error_detail(self, error: Any) -> str:
        """A run's error in a line; for a call into a DLL the emulator does not know and the guest
        had no file of, why there was no code to run."""
        detail = _error_detail(error)
        api_name = getattr(error, "api_name", None)
        if self.target is None or getattr(error, "type", None) != UNSUPPORTED_API_ERROR or not api_name:
            return detail
        module = str(api_name).rpartition(".")[0]
        if module and not compat_load.has_code_for(self.target.emu, module):
            detail += f" (no {module}.dll in the guest and the emulator has none: {MISSING_DLL_HINT})"
        return detail

    def _fail(self, status: Status, detail: str, limit: str | None = None) -> ReplayStop:
        """Remember why the replay stops: Speakeasy turns exceptions in handlers into run errors."""
        stop = ReplayStop(status, detail, limit)
        if self._stop is None:
            self._stop = stop
        return stop

    def _stop_now(self, stop: ReplayStop) -> None:
        self._stop = stop
        if self.target is not None:
            self.target.emu.stop()

    def _on_network_limit(self, detail: str) -> None:
        self._stop_now(ReplayStop(Status.LIMIT, detail, "max_network_exchanges"))

    # -- results -----------------------------------------------------------------------------

    def _collect(self) -> None:
        result = self.result
        if self.target is not None:
            # Only the faithful mode's per-instruction hook counts; fast mode does not know.
            counted = self.plan.mode == "faithful"
            result.instructions = 0 if counted else None
            for run in compat.finished_runs(self.target.emu):
                error = getattr(run, "error", None)
                in_api = self._fault_in_api(error) if error else None
                summary = RunSummary(
                    kind=str(run.type),
                    start=run.start_addr or 0,
                    instructions=run.instr_cnt if counted else None,
                    api_calls=run.num_apis,
                    error=in_api[0] if in_api else (getattr(error, "type", None) if error else None),
                    error_detail=in_api[1] if in_api else (self._error_detail(error) if error else None),
                    ret=getattr(run, "ret_val", None),
                )
                result.runs.append(summary)
                if result.instructions is not None:
                    result.instructions += run.instr_cnt
            for path, data in setup.dropped_files(self.target.se):
                result.dropped[path] = self.recorder.put_blob(data)
        if self._stop is not None:
            result.stop = self._stop.outcome


MISSING_DLL_HINT = "put it beside the sample or map it with --file"


def _error_detail(error: Any) -> str:
    api_name = getattr(error, "api_name", None)
    if api_name:
        return str(api_name)
    pc = getattr(error, "pc", None)
    address = getattr(error, "address", None)
    parts = [str(getattr(error, "type", "error"))]
    if pc is not None:
        parts.append(f"pc={pc:#x}" if isinstance(pc, int) else f"pc={pc}")
    if address is not None:
        parts.append(f"address={address:#x}" if isinstance(address, int) else f"address={address}")
    return " ".join(parts)
