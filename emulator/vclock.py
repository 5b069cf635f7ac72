"""A virtual clock: sleeps are fast-forwarded, and every time API reads the same clock."""

from __future__ import annotations

from dataclasses import dataclass

# 1601-01-01 to 1970-01-01 in 100 ns intervals (FILETIME epoch offset).
FILETIME_UNIX_OFFSET = 116444736000000000
# Each API call advances the clock a little, so that polling loops see time pass.
API_CALL_TICK_US = 50
# Uptime the emulated machine reports at the start of the replay.
BOOT_UPTIME_MS = 3 * 60 * 60 * 1000


@dataclass
class VirtualClock:
    start_unix: float
    skipped_ms: int = 0
    api_calls: int = 0
    sleeps: int = 0

    def elapsed_ms(self) -> int:
        return self.skipped_ms + (self.api_calls * API_CALL_TICK_US) // 1000

    def now_unix(self) -> float:
        return self.start_unix + self.elapsed_ms() / 1000.0

    def now_filetime(self) -> int:
        return FILETIME_UNIX_OFFSET + int(self.start_unix * 10_000_000) + self.elapsed_ms() * 10_000

    def tick_count_ms(self) -> int:
        return BOOT_UPTIME_MS + self.elapsed_ms()

    def perf_counter(self) -> int:
        """QueryPerformanceCounter at a 10 MHz frequency."""
        return self.tick_count_ms() * 10_000

    def sleep(self, ms: int) -> None:
        self.sleeps += 1
        self.skipped_ms += max(ms, 0)

    def on_api_call(self) -> None:
        self.api_calls += 1
