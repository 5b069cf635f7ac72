"""The Speakeasy backend: ties configuration, set-up, translation, memory watch and runner together."""

from __future__ import annotations

import time
from typing import Any

from emulator.backends.base import BackendResult, ReplayStop, RunSummary
from emulator.backends.speakeasy import compat, setup
from emulator.backends.speakeasy.loader import GuestModuleLoader
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.runner import NativeRunner
from emulator.backends.speakeasy.sources import SourceTaps
from emulator.backends.speakeasy.translate import Observed, Translator
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder
from emulator.responders.router import NetworkLimitReached
from emulator.services import ReplayServices

# Speakeasy's run error -> (report outcome status, name of the limit in emulator/limits.py).
LIMIT_ERRORS = {
    "max_api_count": ("api_limit", "max_api_calls"),
    "max_instructions": ("instruction_limit", "max_instructions"),
    "timeout": ("timeout", "timeout"),
}


class SpeakeasyBackend:
    def __init__(self, plan: ReplayPlan, services: ReplayServices) -> None:
        self.plan = plan
        self.services = services
        self.recorder: Recorder = services.recorder
        self.result = BackendResult(engine=compat.ENGINE_NAME)
        self.target: setup.LoadedTarget | None = None
        self.translator: Translator | None = None
        self._stop: ReplayStop | None = None
        self._runner: NativeRunner | None = None

    def run(self) -> BackendResult:
        started = time.perf_counter()
        try:
            self.target = setup.load_target(self.plan)
            self._install(self.target)
            setup.start(self.plan, self.target)
        except ReplayStop as stop:
            self._stop = stop
        except NetworkLimitReached as err:
            self._stop = ReplayStop("limit", str(err), "max_network_exchanges")
        finally:
            if self._runner is not None:
                self._runner.close()
            self.result.emulation_seconds = time.perf_counter() - started
            self._collect()
        return self.result

    def _install(self, target: setup.LoadedTarget) -> None:
        emu = target.emu
        compat.check_emulator(emu)
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
        observed = Observed()
        self.translator = translator = Translator(self.plan, self.services, memory, emu, observed, self._fail)
        compat.after_each_api_call(emu, self._on_api)
        compat.on_profiler_records(emu, translator.queue_record)
        watch = MemoryWatch(emu, self.plan, self.recorder, memory, observed, self._fail, self._stop_now)
        watch.install()
        setup.install_api_handlers(target.se, memory, self.services, self._on_network_limit)
        SourceTaps(target.se, emu, memory, self.recorder).install()
        GuestModuleLoader(target.se, emu, memory, self.recorder, watch).install()
        if self.plan.mode == "fast":
            self._runner = NativeRunner(emu, self.plan.limits.max_instructions)

    def _on_api(self, pc: int, imp_api: str, rv: int | None, args: list[Any]) -> None:
        assert self.translator is not None
        self.translator.api_call(pc, imp_api, rv, args)
        count, limit = self.recorder.api_count, self.plan.limits.max_api_calls
        if count >= limit:
            self._stop_now(ReplayStop("api_limit", f"{count} API calls (limit {limit})", "max_api_calls"))

    def _fail(self, status: str, detail: str, limit: str | None = None) -> ReplayStop:
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
        self._stop_now(ReplayStop("limit", detail, "max_network_exchanges"))

    # -- results -----------------------------------------------------------------------------

    def _collect(self) -> None:
        result = self.result
        if self.target is not None:
            # Only the faithful mode's per-instruction hook counts; fast mode does not know.
            counted = self.plan.mode == "faithful"
            result.instructions = 0 if counted else None
            for run in compat.finished_runs(self.target.emu):
                error = getattr(run, "error", None)
                summary = RunSummary(
                    kind=str(run.type),
                    start=run.start_addr or 0,
                    instructions=run.instr_cnt if counted else None,
                    api_calls=run.num_apis,
                    error=getattr(error, "type", None) if error else None,
                    error_detail=_error_detail(error) if error else None,
                )
                result.runs.append(summary)
                if result.instructions is not None:
                    result.instructions += run.instr_cnt
            for path, data in setup.dropped_files(self.target.se):
                result.dropped[path] = self.recorder.put_blob(data)
        if self._stop is not None:
            result.status = self._stop.status
            result.detail = self._stop.detail
            result.limit = self._stop.limit
            return
        for summary in result.runs:
            if summary.error in LIMIT_ERRORS:
                result.status, result.limit = LIMIT_ERRORS[summary.error]
                result.detail = f"run {summary.kind}: {summary.error_detail or summary.error}"
                return
            if summary.error == "unsupported_api":
                result.status = "unsupported_api"
                result.detail = f"unsupported API {summary.error_detail} in run {summary.kind}"
                return
        faults = [s for s in result.runs if s.error]
        if faults:
            first = faults[0]
            result.status = "completed"
            result.detail = f"run {first.kind} ended with {first.error}: {first.error_detail or ''}".strip()


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


def run_backend(plan: ReplayPlan, services: ReplayServices) -> BackendResult:
    return SpeakeasyBackend(plan, services).run()
