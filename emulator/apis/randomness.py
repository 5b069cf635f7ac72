"""Random numbers from the scenario's seed, so a replay is repeatable and --seed varies it.

The generators fill the guest's buffer a chunk at a time, so a huge length costs nothing on the
host: the guest gets what Windows gives it (the bytes up to the end of its buffer, then a
failure), never an error of chainreplay's own.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

# Bytes generated and written at a time.
RANDOM_CHUNK = 0x10000
ERROR_NOACCESS = 998
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INVALID_HANDLE = 0xC0000008
BCRYPT_USE_SYSTEM_PREFERRED_RNG = 0x2
EINVAL = 22


def _fill(api: GuestApi, buffer: int, size: int) -> bool:
    """Write ``size`` seeded random bytes at ``buffer``; False when the buffer runs out first."""
    rng = _services(api).rng
    done = 0
    while done < size:
        count = min(RANDOM_CHUNK, size - done)
        try:
            api.memory.write(buffer + done, rng.random_bytes(count))
        except Exception:  # an unmapped or read-only guest page: Windows faults or fails there too
            return False
        done += count
    return True


@apihook("msvcrt", "srand", argc=1, conv="cdecl")
def crt_srand(api: GuestApi, argv: list[int]) -> int:
    _services(api).rng.crt_srand(argv[0])
    return 0


@apihook("msvcrt", "rand", argc=0, conv="cdecl")
def crt_rand(api: GuestApi, argv: list[int]) -> int:
    return _services(api).rng.crt_rand()


@apihook("advapi32", "CryptGenRandom", argc=3)
def crypt_gen_random(api: GuestApi, argv: list[int]) -> int:
    _prov, size, buffer = argv
    size &= 0xFFFFFFFF
    if size and (not buffer or not _fill(api, buffer, size)):
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return 1


@apihook("advapi32", "SystemFunction036", argc=2)
def rtl_gen_random(api: GuestApi, argv: list[int]) -> int:
    buffer, size = argv
    size &= 0xFFFFFFFF
    if size and (not buffer or not _fill(api, buffer, size)):
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return 1


@apihook("bcrypt", "BCryptGenRandom", argc=4)
def bcrypt_gen_random(api: GuestApi, argv: list[int]) -> int:
    alg, buffer, size, flags = argv
    size &= 0xFFFFFFFF
    if not alg and not flags & BCRYPT_USE_SYSTEM_PREFERRED_RNG:
        return STATUS_INVALID_HANDLE
    if size and (not buffer or not _fill(api, buffer, size)):
        return STATUS_INVALID_PARAMETER
    return 0


@apihook("msvcrt", "rand_s", argc=1, conv="cdecl")
def crt_rand_s(api: GuestApi, argv: list[int]) -> int:
    """rand_s(unsigned int *value): a random 32-bit value from RtlGenRandom's source (libstdc++'s
    std::random_device on mingw-w64 calls it); EINVAL for a NULL pointer."""
    value = argv[0]
    if not value or not _fill(api, value, 4):
        return EINVAL
    return 0
