"""Project-side Windows API handlers, written against :class:`emulator.apis.core.GuestApi`.

Importing this package registers every handler in :data:`emulator.apis.core.HANDLERS`.
"""

from emulator.apis import (  # noqa: F401
    adapters,
    bcrypt,
    callbacks,
    clock,
    comhttp,
    compression,
    crt,
    crtlocale,
    crtstrings,
    crttime,
    cryptoapi,
    dialogs,
    dpapi,
    encodings,
    firmware,
    guestenv,
    heap,
    memory,
    netapi,
    randomness,
    shellfolders,
    strings,
    systemfunctions,
    threads,
    urlmon,
    winhttp,
    wininet,
    winsock,
)
from emulator.apis.core import HANDLERS, ApiHandler, GuestApi

__all__ = ["HANDLERS", "ApiHandler", "GuestApi"]
