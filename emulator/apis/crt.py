"""msvcrt functions Speakeasy has neither a handler nor a signature for (without one, a call
ends the replay as ``unsupported_api``): the environment, multibyte classification and string
duplication (the file descriptors are emulator/backends/speakeasy/crtio.py's).

``getenv`` / ``_wgetenv`` answer from the guest's environment (the scenario's ``[environment]``
and the sandbox marker), each variable's value in one guest copy returned on every call, as
msvcrt hands out pointers into its environment table. The guest's ANSI code page is a
single-byte one (1252), so no byte is a DBCS lead or trail byte.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook
from emulator.apis.heap import _alloc
from emulator.apis.strings import guarded_length
from emulator.plan import SANDBOX_MARKER_NAME, SANDBOX_MARKER_VALUE

# Longest variable name getenv looks up (Windows' limit on a name is 32,767 characters).
MAX_VARIABLE_NAME = 32767


def environment_value(api: GuestApi, name: str) -> str | None:
    """The guest's value of the environment variable ``name`` (any case), or None."""
    if name.lower() == SANDBOX_MARKER_NAME.lower():
        return SANDBOX_MARKER_VALUE
    return _services(api).variables.get(name.lower())


@apihook("msvcrt", ["getenv", "_wgetenv"], argc=1, conv="cdecl")
def getenv(api: GuestApi, argv: list[int]) -> int:
    """char *getenv(const char *name): the value's guest copy, or NULL if the variable is not set."""
    wide = api.api_name.startswith("_w")
    if not argv[0]:
        return 0
    name = api.read_string(argv[0], wide, max_chars=MAX_VARIABLE_NAME)
    value = environment_value(api, name)
    if value is None or not name or "=" in name:
        return 0
    cache = _services(api).crt_environment
    key = (name.lower(), wide)
    address = cache.get(key)
    if address is None:
        address = api.alloc((len(value) + 1) * (2 if wide else 1), f"api.msvcrt.{api.api_name}")
        api.write_string(address, value, wide)
        cache[key] = address
    return address


@apihook("msvcrt", ["_ismbblead", "_ismbbtrail"], argc=1, conv="cdecl")
def ismbb(api: GuestApi, argv: list[int]) -> int:
    """int _ismbblead(unsigned int c): 0, no byte leads or trails a character in code page 1252."""
    return 0


@apihook("msvcrt", ["_strdup", "_wcsdup"], argc=1, conv="cdecl")
def strdup(api: GuestApi, argv: list[int]) -> int:
    """char *_strdup(const char *s): a heap copy of ``s`` (NULL for NULL), as malloc gives."""
    wide = api.api_name == "_wcsdup"
    if not argv[0]:
        return 0
    unit = 2 if wide else 1
    length = guarded_length(api, argv[0], wide)
    data = api.read(argv[0], length * unit) + b"\0" * unit
    block = _alloc(api, len(data), zero=False)
    if block:
        api.write(block, data)
    return block
