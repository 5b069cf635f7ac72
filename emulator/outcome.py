"""How a replay ended: one status vocabulary, decided in one place.

The engine reports facts (a stop it decided in a hook, how each run ended, a failure of the
input, the engine or the child process, containment refusals); :func:`decide` turns them into
the one :class:`Outcome` the report carries. The status values are an interface
(``report.outcome.status``, docs/containment.md "Outcomes").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Status(enum.StrEnum):
    COMPLETED = "completed"  # every run returned or the sample exited
    TIMEOUT = "timeout"  # the wall-clock limit fired
    INSTRUCTION_LIMIT = "instruction_limit"
    API_LIMIT = "api_limit"
    UNSUPPORTED_API = "unsupported_api"  # the sample called an API nothing implements
    LIMIT = "limit"  # any other limit (outcome.limit names it)
    CONTAINMENT = "containment"  # the replay tried to reach the host
    FAULT = "fault"  # the guest's own code faulted
    ERROR = "error"  # the input, an API handler or the engine failed
    INTERRUPTED = "interrupted"  # a signal (SIGTERM, SIGINT, SIGHUP) ended the replay; the report is partial


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""
    limit: str | None = None  # name of the limit that fired (emulator/limits.py)


@dataclass(frozen=True)
class RunEnd:
    """How one run of the engine ended: ``error`` is None when it returned."""

    kind: str
    error: str | None
    detail: str | None = None


# A run that ended with one of these errors hit a limit: (status, limit name).
RUN_LIMIT_ERRORS = {
    "max_api_count": (Status.API_LIMIT, "max_api_calls"),
    "max_instructions": (Status.INSTRUCTION_LIMIT, "max_instructions"),
    "timeout": (Status.TIMEOUT, "timeout"),
}
UNSUPPORTED_API_ERROR = "unsupported_api"
TOTAL_TIME_ERROR = "max_total_time"


def is_guest_fault(error: str) -> bool:
    """A run error the guest's own instructions caused: a bad memory access, a bad instruction,
    an interrupt nothing handles (int3, divide by zero) or another CPU exception Unicorn raised."""
    return error.startswith("invalid_") or error == "unhandled_interrupt" or "(UC_ERR_" in error


def decide(
    *,
    violations: Sequence[str] = (),
    failure: Outcome | None = None,
    stop: Outcome | None = None,
    runs: Iterable[RunEnd] = (),
) -> Outcome:
    """The outcome of a replay, from what happened, first match wins:

    1. a containment refusal (the first one is the detail);
    2. a failure before or around the emulation (bad input, responder, engine, child process);
    3. a stop the backend decided (a limit fired in a hook);
    4. a run that ended at a limit (any run), then at an unsupported API (in run order);
    5. the first run that ended with another error: ``timeout`` when Speakeasy's total-time
       budget ran out, ``fault`` when the guest faulted, ``error`` when an API handler failed;
    6. completed.
    """
    if violations:
        return Outcome(Status.CONTAINMENT, violations[0])
    if failure is not None:
        return failure
    if stop is not None:
        return stop
    ended = list(runs)
    for run in ended:
        if run.error in RUN_LIMIT_ERRORS:
            status, limit = RUN_LIMIT_ERRORS[run.error]
            return Outcome(status, f"run {run.kind}: {run.detail or run.error}", limit)
        if run.error == UNSUPPORTED_API_ERROR:
            return Outcome(Status.UNSUPPORTED_API, f"unsupported API {run.detail} in run {run.kind}")
    for run in ended:
        if not run.error:
            continue
        what = f"run {run.kind}: {run.detail or run.error}"
        if run.error == TOTAL_TIME_ERROR:
            return Outcome(Status.TIMEOUT, what, "timeout")
        if is_guest_fault(run.error):
            return Outcome(Status.FAULT, what)
        return Outcome(Status.ERROR, f"run {run.kind}: API handler failed: {run.detail or run.error}")
    return Outcome(Status.COMPLETED)


def error(detail: str) -> Outcome:
    return Outcome(Status.ERROR, detail)


def watchdog_timeout(seconds: float) -> Outcome:
    return Outcome(Status.TIMEOUT, f"watchdog killed the emulation after {seconds:g} s", "timeout")


def out_of_address_space() -> Outcome:
    return Outcome(Status.LIMIT, "the emulation ran out of its address-space limit")


def child_died(exit_code: int | None) -> Outcome:
    """The emulation child ended without reporting: a negative exit code is the signal that killed it."""
    if exit_code is not None and exit_code < 0:
        import signal

        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return Outcome(Status.ERROR, f"emulation process killed by {name}")
    if exit_code is None:
        return Outcome(Status.ERROR, "emulation process stopped answering")
    return Outcome(Status.ERROR, f"emulation process exited with status {exit_code} before reporting")


def interrupted(signal_name: str, when: str) -> Outcome:
    """A termination signal ended the replay (the report is partial)."""
    return Outcome(Status.INTERRUPTED, f"interrupted by {signal_name} {when}")
