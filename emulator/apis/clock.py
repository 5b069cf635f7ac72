"""Time APIs on the virtual clock: sleeps are skipped, and every clock agrees."""

from __future__ import annotations

import datetime as dt

from emulator.apis.core import GuestApi, apihook
from emulator.plan import MAX_START_TIME
from emulator.services import ReplayServices
from emulator.vclock import PERF_FREQUENCY

WAIT_TIMEOUT = 0x102
INFINITE = 0xFFFFFFFF


def _services(api: GuestApi) -> ReplayServices:
    services = api.services
    assert isinstance(services, ReplayServices)
    return services


@apihook("kernel32", "Sleep", argc=1)
def sleep(api: GuestApi, argv: list[int]) -> int:
    _services(api).clock.sleep(argv[0] & 0xFFFFFFFF)
    return 0


@apihook("kernel32", ["GetTickCount"], argc=0)
def get_tick_count(api: GuestApi, argv: list[int]) -> int:
    return _services(api).clock.tick_count_ms() & 0xFFFFFFFF


@apihook("winmm", ["timeGetTime"], argc=0)
def time_get_time(api: GuestApi, argv: list[int]) -> int:
    """DWORD timeGetTime(void): milliseconds since start, the tick count's clock (Speakeasy's
    answered the host's monotonic clock: a replay's value changed from run to run)."""
    return _services(api).clock.tick_count_ms() & 0xFFFFFFFF


@apihook("kernel32", ["GetTickCount64"], argc=0, ret64=True)
def get_tick_count64(api: GuestApi, argv: list[int]) -> int:
    return _services(api).clock.tick_count_ms()


@apihook("kernel32", ["GetSystemTimeAsFileTime", "GetSystemTimePreciseAsFileTime"], argc=1)
def get_system_time_as_filetime(api: GuestApi, argv: list[int]) -> int:
    api.write_u64(argv[0], _services(api).clock.now_filetime())
    return 0


def _write_systemtime(api: GuestApi, address: int, when: dt.datetime) -> None:
    fields = [
        when.year,
        when.month,
        (when.weekday() + 1) % 7,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.microsecond // 1000,
    ]
    api.write(address, b"".join(f.to_bytes(2, "little") for f in fields))


@apihook("kernel32", ["GetSystemTime", "GetLocalTime"], argc=1)
def get_system_time(api: GuestApi, argv: list[int]) -> int:
    # A SYSTEMTIME (and a datetime) ends with year 9999: a clock slept past it stays there.
    when = dt.datetime.fromtimestamp(min(_services(api).clock.now_unix(), MAX_START_TIME + 0.999), tz=dt.UTC)
    _write_systemtime(api, argv[0], when)
    return 0


@apihook("kernel32", "QueryPerformanceCounter", argc=1)
def query_performance_counter(api: GuestApi, argv: list[int]) -> int:
    api.write_u64(argv[0], _services(api).clock.perf_counter())
    return 1


@apihook("kernel32", "QueryPerformanceFrequency", argc=1)
def query_performance_frequency(api: GuestApi, argv: list[int]) -> int:
    api.write_u64(argv[0], PERF_FREQUENCY)
    return 1


@apihook("msvcrt", "_time64", argc=1, conv="cdecl", ret64=True)
def crt_time64(api: GuestApi, argv: list[int]) -> int:
    now = int(_services(api).clock.now_unix())
    api.write_u64(argv[0], now)
    return now


@apihook("msvcrt", "time", argc=1, conv="cdecl")
def crt_time(api: GuestApi, argv: list[int]) -> int:
    """msvcrt.dll's time(): a 32-bit time_t on x86, 64-bit on x64."""
    if api.ptr_size == 4:
        return crt_time32(api, argv)
    return crt_time64(api, argv)


@apihook("msvcrt", "_time32", argc=1, conv="cdecl")
def crt_time32(api: GuestApi, argv: list[int]) -> int:
    now = int(_services(api).clock.now_unix())
    api.write_u32(argv[0], now)
    return now & 0xFFFFFFFF


STATUS_SUCCESS = 0
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_PARAMETER = 0xC000000D


@apihook("ntdll", ["NtQuerySystemTime", "ZwQuerySystemTime"], argc=1)
def nt_query_system_time(api: GuestApi, argv: list[int]) -> int:
    """NtQuerySystemTime(PLARGE_INTEGER): the virtual clock's FILETIME, as KUSER_SHARED_DATA's
    SystemTime and GetSystemTimeAsFileTime."""
    now = _services(api).clock.now_filetime()
    try:
        api.write_u64(argv[0], now)
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return STATUS_SUCCESS


@apihook("kernel32", ["QueryUnbiasedInterruptTime", "QueryInterruptTime", "QueryInterruptTimePrecise"], argc=1)
def query_unbiased_interrupt_time(api: GuestApi, argv: list[int]) -> int:
    """The interrupt time (100 ns units since boot), KUSER_SHARED_DATA's InterruptTime; the
    machine never slept, so unbiased and biased are one. It was signature-emulated (0)."""
    if not argv[0]:
        api.set_last_error(87)  # ERROR_INVALID_PARAMETER
        return 0
    api.write_u64(argv[0], _services(api).clock.uptime_units())
    return 1


# GetSystemTimeAdjustment: the clock interrupt's period (15.625 ms in 100 ns units), no adjustment.
TIME_INCREMENT = 156250


@apihook("kernel32", "GetSystemTimeAdjustment", argc=3)
def get_system_time_adjustment(api: GuestApi, argv: list[int]) -> int:
    """BOOL GetSystemTimeAdjustment(PDWORD adjustment, PDWORD increment, PBOOL disabled): the
    time advances by the tick's increment, not adjusted (it was signature-emulated: zeros)."""
    adjustment, increment, disabled = argv
    try:
        api.write_u32(adjustment, TIME_INCREMENT)
        api.write_u32(increment, TIME_INCREMENT)
        api.write_u32(disabled, 1)
    except Exception:
        api.set_last_error(998)  # ERROR_NOACCESS
        return 0
    return 1
