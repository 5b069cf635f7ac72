"""Per-replay services the API handlers use: clock, randomness, network, handles, recorder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.environment import GuestEnvironment
from emulator.randomness import SeededRandom
from emulator.recorder import Recorder
from emulator.responders.router import NetworkRouter
from emulator.vclock import VirtualClock

# Handles the project's handlers give out live in their own range, apart from Speakeasy's.
HANDLE_BASE = 0x00C0_0000
HANDLE_STEP = 4


@dataclass
class ReplayServices:
    recorder: Recorder
    clock: VirtualClock
    rng: SeededRandom
    network: NetworkRouter
    handles: dict[int, Any] = field(default_factory=dict)
    guest: GuestEnvironment = field(default_factory=GuestEnvironment)
    # The guest's environment variables, names lower-cased.
    variables: dict[str, str] = field(default_factory=dict)
    # Threads the guest hid from the debugger (NtSetInformationThread), by thread id.
    hidden_threads: set[int] = field(default_factory=set)
    # APCs queued to a thread of the guest's own and not yet delivered, by thread id: (routine, arguments).
    pending_apcs: dict[int, list[tuple[int, tuple[int, ...]]]] = field(default_factory=dict)
    # The backend's waitable timers (emulator/backends/speakeasy/signals.py): arm one
    # (handle, due FILETIME, period ms, routine, argument, thread id) -> whether it knows the timer;
    # and queue the routines of the timers due by now to their threads' pending APCs.
    set_waitable_timer: Callable[[int, int, int, int, int, int], bool] | None = None
    fire_due_timers: Callable[[], None] | None = None
    _next_handle: int = HANDLE_BASE

    def new_handle(self, obj: Any) -> int:
        self._next_handle += HANDLE_STEP
        self.handles[self._next_handle] = obj
        return self._next_handle

    def get(self, handle: int, cls: type[Any]) -> Any | None:
        obj = self.handles.get(handle)
        return obj if isinstance(obj, cls) else None

    def close(self, handle: int) -> bool:
        return self.handles.pop(handle, None) is not None
