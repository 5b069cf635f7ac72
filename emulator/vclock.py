"""A virtual clock: sleeps are fast-forwarded, and every time source reads the same clock.

The clock counts in 100 ns units (the resolution of FILETIME and of QueryPerformanceCounter at
its 10 MHz frequency). It moves by the sleeps the guest asked for and by a small fixed step per
API call, so two consecutive readings always differ, as on a real machine, and every clock the
guest can read (tick count, performance counter, system time, KUSER_SHARED_DATA, rdtsc) is the
same timeline seen at a different scale.
"""

from __future__ import annotations

from dataclasses import dataclass

# 1601-01-01 to 1970-01-01 in 100 ns intervals (FILETIME epoch offset).
FILETIME_UNIX_OFFSET = 116444736000000000
# Each API call advances the clock a little, so that polling loops see time pass.
API_CALL_TICK_US = 50
# Uptime the emulated machine reports at the start of the replay (overridden by [environment]).
BOOT_UPTIME_MS = 3 * 60 * 60 * 1000
# QueryPerformanceFrequency on Windows 10 and later.
PERF_FREQUENCY = 10_000_000
# Time stamp counter rate of the emulated CPU (rdtsc), 3 GHz: 300 TSC ticks per 100 ns.
TSC_HZ = 3_000_000_000
UNITS_PER_MS = 10_000


@dataclass
class VirtualClock:
    start_unix: float
    skipped_ms: int = 0
    api_calls: int = 0
    sleeps: int = 0
    boot_uptime_ms: int = BOOT_UPTIME_MS

    def elapsed_units(self) -> int:
        """100 ns units since the replay started."""
        return self.skipped_ms * UNITS_PER_MS + self.api_calls * API_CALL_TICK_US * 10

    def elapsed_ms(self) -> int:
        return self.elapsed_units() // UNITS_PER_MS

    def now_unix(self) -> float:
        return self.start_unix + self.elapsed_units() / 10_000_000

    def now_filetime(self) -> int:
        return FILETIME_UNIX_OFFSET + int(self.start_unix * 10_000_000) + self.elapsed_units()

    def uptime_units(self) -> int:
        """100 ns units since the emulated machine booted (KUSER_SHARED_DATA InterruptTime)."""
        # elapsed_units(), inline: read between every two API calls
        return (self.boot_uptime_ms + self.skipped_ms) * UNITS_PER_MS + self.api_calls * API_CALL_TICK_US * 10

    def tick_count_ms(self) -> int:
        return self.uptime_units() // UNITS_PER_MS

    def perf_counter(self) -> int:
        """QueryPerformanceCounter at PERF_FREQUENCY (10 MHz: one count per 100 ns)."""
        return self.uptime_units()

    def tsc(self) -> int:
        """The time stamp counter rdtsc reads: TSC_HZ since boot."""
        return self.uptime_units() * (TSC_HZ // 10_000_000)

    def sleep(self, ms: int) -> None:
        self.sleeps += 1
        self.skipped_ms += max(ms, 0)

    def on_api_call(self) -> None:
        self.api_calls += 1
