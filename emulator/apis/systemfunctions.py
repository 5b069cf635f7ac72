"""advapi32's undocumented ciphers that shellcode loaders decrypt their payload with, which
Speakeasy 2.0.0b9 lacks (an import of them ended the run as ``unsupported_api``; resolved with
``GetProcAddress``, they were served from their signature and decrypted nothing):

* ``SystemFunction032`` / ``SystemFunction033`` (advapi32, forwarded to cryptsp): RC4 in place,
  ``NTSTATUS SystemFunction032(USTRING *data, const USTRING *key)`` with
  ``USTRING {DWORD Length; DWORD MaximumLength; PVOID Buffer}``; the two are the same function.
* ``SystemFunction040`` / ``SystemFunction041`` (``RtlEncryptMemory`` / ``RtlDecryptMemory``;
  advapi32, forwarded to cryptbase): ``NTSTATUS (PVOID Memory, ULONG MemorySize, ULONG
  OptionFlags)``, in place, the size a multiple of ``RTL_ENCRYPT_MEMORY_SIZE`` (8). Windows
  keys them with a secret of the process (or logon session, or machine, after the flags) that no
  sample can read; here a keystream fixed per option, so what 040 encrypts 041 decrypts, and the
  ciphertext is as opaque to the guest as Windows' is.

What a decryption produced is remembered as a ``decrypt`` buffer with its ciphertext as input, so
the stage graph follows the payload through the call (lineage ``..., decrypt`` naming the API).
"""

from __future__ import annotations

import hashlib

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
RTL_ENCRYPT_MEMORY_SIZE = 8
# RtlEncryptMemory's OptionFlags (RTL_ENCRYPT_OPTION_*): the secret's scope.
RTL_ENCRYPT_OPTIONS = (0, 1, 2)
# Bytes a call reads from the guest at most (a larger buffer is refused, not read).
MAX_CIPHER_BYTES = 64 * 1024 * 1024
# USTRING: Length and MaximumLength (DWORDs), then the Buffer pointer (at 8 on both architectures).
USTRING_BUFFER = 8


# Key lengths (bytes) the cryptography library's RC4 takes; other keys go through _rc4_python.
_LIBRARY_KEY_BYTES = frozenset({5, 7, 8, 10, 16, 20, 24, 32})
_LONGEST_LIBRARY_KEY = 32


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4's keystream over ``data`` (encryption and decryption alike). The cryptography library's
    RC4 where it takes the key (about a thousand times faster: 64 MiB took 22 s in Python, a
    loader's large payload ran into the replay's timeout), else Python's. A key whose length
    divides 32 is the same key repeated to 32 bytes (the key schedule reads key[i % length])."""
    if key and _LONGEST_LIBRARY_KEY % len(key) == 0:
        key = key * (_LONGEST_LIBRARY_KEY // len(key))
    if len(key) not in _LIBRARY_KEY_BYTES or not data:
        return _rc4_python(key, data)
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives.ciphers import Cipher

    return Cipher(ARC4(key), mode=None).encryptor().update(data)


def _rc4_python(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def _ustring(api: GuestApi, address: int) -> tuple[int, int]:
    """(Length, Buffer) of the USTRING at ``address``."""
    length = api.read_u32(address)
    raw = api.read(address + USTRING_BUFFER, api.ptr_size)
    return length, int.from_bytes(raw, "little")


@apihook("advapi32", ["SystemFunction032", "SystemFunction033"], argc=2)
@apihook("cryptsp", ["SystemFunction032", "SystemFunction033"], argc=2)
def system_function_032(api: GuestApi, argv: list[int]) -> int:
    """SystemFunction032/033(data, key): the data's Length bytes at its Buffer, RC4 with the
    key's Length bytes, in place."""
    data_at, key_at = argv
    if not data_at or not key_at:
        return STATUS_INVALID_PARAMETER
    size, buffer = _ustring(api, data_at)
    key_size, key_buffer = _ustring(api, key_at)
    if not key_size or not key_buffer or size > MAX_CIPHER_BYTES or (size and not buffer):
        return STATUS_INVALID_PARAMETER
    if not size:
        return STATUS_SUCCESS
    key = api.read(key_buffer, min(key_size, 256))  # RC4 keys are at most 256 bytes
    cipher = api.read(buffer, size)
    plain = rc4(key, cipher)
    api.write(buffer, plain)
    _remember(api, buffer, plain, cipher, "RC4")
    return STATUS_SUCCESS


def _memory_keystream(option: int, size: int) -> bytes:
    """The stand-in for RtlEncryptMemory's secret: a keystream fixed per option."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"chainreplay RtlEncryptMemory %d %d" % (option, counter)).digest()
        counter += 1
    return bytes(out[:size])


def _memory_cipher(api: GuestApi, argv: list[int], decrypting: bool) -> int:
    memory, size, option = argv[0], argv[1] & 0xFFFFFFFF, argv[2] & 0xFFFFFFFF
    if size % RTL_ENCRYPT_MEMORY_SIZE or option not in RTL_ENCRYPT_OPTIONS or size > MAX_CIPHER_BYTES:
        return STATUS_INVALID_PARAMETER
    if not size:
        return STATUS_SUCCESS
    if not memory:
        return STATUS_INVALID_PARAMETER
    before = api.read(memory, size)
    after = bytes(a ^ b for a, b in zip(before, _memory_keystream(option, size), strict=True))
    api.write(memory, after)
    if decrypting:
        _remember(api, memory, after, before, f"option {option}")
    return STATUS_SUCCESS


@apihook("advapi32", "SystemFunction040", argc=3)
@apihook("cryptbase", "SystemFunction040", argc=3)
def rtl_encrypt_memory(api: GuestApi, argv: list[int]) -> int:
    """RtlEncryptMemory(Memory, MemorySize, OptionFlags), in place."""
    return _memory_cipher(api, argv, decrypting=False)


@apihook("advapi32", "SystemFunction041", argc=3)
@apihook("cryptbase", "SystemFunction041", argc=3)
def rtl_decrypt_memory(api: GuestApi, argv: list[int]) -> int:
    """RtlDecryptMemory(Memory, MemorySize, OptionFlags), in place: undoes RtlEncryptMemory."""
    return _memory_cipher(api, argv, decrypting=True)


def _remember(api: GuestApi, address: int, plain: bytes, cipher: bytes, how: str) -> None:
    _services(api).recorder.remember_buffer(
        "decrypt", address, plain, ref=f"{api.qualified_name} ({how})", input_data=cipher, api=api.qualified_name
    )
