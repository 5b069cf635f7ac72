"""Modules Speakeasy imports that a replay rarely uses, loaded when first used.

Speakeasy's advapi32 handler imports pycryptodome's ARC4 at import time (``from Crypto.Cipher
import ARC4``) for ``CryptDecrypt``/``CryptEncrypt`` with an RC4 key; pycryptodome binds its C
code through cffi, whose C-declaration parser (pycparser) is about 0.04 s of the engine's import
in the cold emulation child, for a cipher few guests use. Speakeasy's GDB stub, which a replay
never starts, imports ``html`` (~2 ms with its entity tables) to escape a library path.
:func:`lazily_imported` imports the modules named in ``LAZY_MODULES`` lazily while it is active
(the mechanism: :mod:`emulator.lazyimport`): the name is bound to a module object that executes
the module the first time an attribute it does not have yet is read (``ARC4.new`` in the
handler).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from emulator import lazyimport
from emulator.lazyimport import LazyModule

__all__ = ["LAZY_MODULES", "LazyModule", "lazily_imported"]

# Loaded on first use: pycryptodome's RC4, which Speakeasy's advapi32 handler imports; html
# (and its entity tables), which Speakeasy's GDB stub imports to escape a library path; Capstone,
# which Speakeasy's emulator imports for a disassembler it uses only to describe errors
# (compat_start.disassembler_when_first_used defers making it).
LAZY_MODULES = ("Crypto.Cipher.ARC4", "html", "capstone")


@contextlib.contextmanager
def lazily_imported(names: Sequence[str] = LAZY_MODULES) -> Iterator[None]:
    """While active, a first import of one of ``names`` loads it when first used."""
    with lazyimport.lazily_imported(names):
        yield
