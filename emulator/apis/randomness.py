"""Random numbers from the scenario's seed, so a replay is repeatable and --seed varies it."""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook


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
    api.write(buffer, _services(api).rng.random_bytes(size & 0xFFFFFFFF))
    return 1


@apihook("advapi32", "SystemFunction036", argc=2)
def rtl_gen_random(api: GuestApi, argv: list[int]) -> int:
    buffer, size = argv
    api.write(buffer, _services(api).rng.random_bytes(size & 0xFFFFFFFF))
    return 1


@apihook("bcrypt", "BCryptGenRandom", argc=4)
def bcrypt_gen_random(api: GuestApi, argv: list[int]) -> int:
    _alg, buffer, size, _flags = argv
    api.write(buffer, _services(api).rng.random_bytes(size & 0xFFFFFFFF))
    return 0
