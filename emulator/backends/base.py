"""What every engine backend provides, and the engine-neutral types it returns.

Nothing here imports an emulator: the replay pipeline, the analysis and the renderers depend on
these types only. A backend turns a :class:`~emulator.plan.ReplayPlan` into typed events (sent
to the recorder in :class:`~emulator.services.ReplayServices` as they happen) and a
:class:`BackendResult` that says how the emulation ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from emulator.outcome import Outcome, RunEnd, Status

if TYPE_CHECKING:
    pass


class BackendInputError(ValueError):
    """The target cannot be emulated (not a PE, unsupported architecture, ...)."""


class ReplayStop(Exception):
    """Raised inside a hook to end the replay for a named reason (usually a limit)."""

    def __init__(self, status: Status, detail: str, limit: str | None = None) -> None:
        super().__init__(detail)
        self.outcome = Outcome(status, detail, limit)


@dataclass
class RunSummary:
    """One run of the engine: the entry point, an export call, a thread."""

    kind: str
    start: int
    instructions: int | None
    api_calls: int
    error: str | None = None
    error_detail: str | None = None
    ret: int | None = None  # the value the run returned, None if it did not return

    def end(self) -> RunEnd:
        return RunEnd(self.kind, self.error, self.error_detail)


@dataclass
class BackendResult:
    stop: Outcome | None = None  # why the backend stopped the replay itself, if it did
    runs: list[RunSummary] = field(default_factory=list)
    instructions: int | None = 0
    dropped: dict[str, str] = field(default_factory=dict)  # guest path -> sha256 of final content
    engine: str = ""
    arch: str = ""
    emulation_seconds: float = 0.0


class Backend(Protocol):
    """An engine that replays one plan. Built with the plan and the replay's services."""

    def run(self) -> BackendResult:
        """Emulate the plan to its end (or to a limit); never raise for what the guest did."""
        ...
