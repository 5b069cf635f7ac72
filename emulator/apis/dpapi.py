"""DPAPI: ``CryptProtectData`` / ``CryptUnprotectData`` (crypt32), which Speakeasy 2.0.0b9 only
signature-emulates (success, an empty output): a loader keeping its payload as a DPAPI blob got
nothing back.

A blob is laid out as Windows lays one out (version 1, the DPAPI provider GUID, a master key
version and GUID, flags, the description in UTF-16, AES-256 and SHA-512 ids, a salt, the data,
an HMAC), but its key is the guest's, not a real user's: it is derived from a fixed machine
secret standing for the user's master key, the salt and the optional entropy. So a blob the guest
protects opens in the guest (on any guest: every replay's master key is the same), and a blob
made by the build tool (scenarios/lineage-common/tool.py ``dpapi``, which calls
:func:`protect`) is a blob an earlier run on this machine left; a blob from a real machine
does not open (wrong key: ``NTE_BAD_DATA``), as on any other machine. What
``CryptUnprotectData`` returns is a ``decrypt`` buffer whose input is the blob, so the stage
graph follows a payload through it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

PROVIDER = uuid.UUID("df9d8cd0-1501-11d1-8c7a-00c04fc297eb")
MASTER_KEY = uuid.UUID("6b1f1d6e-2c0a-4c7e-9a49-6368616e7265")  # the guest user's master key id
# Stands for the user's master key (the same on every guest).
MACHINE_SECRET = hashlib.sha512(b"chainreplay guest DPAPI master key").digest()
CALG_AES_256 = 0x6610
CALG_SHA_512 = 0x800E
CRYPTPROTECT_LOCAL_MACHINE = 0x4
SALT_BYTES = 32
NTE_BAD_DATA = 0x80090005
ERROR_INVALID_PARAMETER = 87
# Bytes of a DATA_BLOB the handlers read at most.
MAX_BLOB = 64 * 1024 * 1024


class DpapiError(ValueError):
    """Not a blob this guest's DPAPI opens."""


def _key(salt: bytes, entropy: bytes) -> bytes:
    return hashlib.sha256(MACHINE_SECRET + salt + entropy).digest()


def protect(data: bytes, entropy: bytes = b"", description: str = "", flags: int = 0) -> bytes:
    """The blob ``CryptProtectData`` makes of ``data``; deterministic (its salt is a hash of what
    it protects)."""
    salt = hashlib.sha256(b"salt" + data + entropy).digest()[:SALT_BYTES]
    key = _key(salt, entropy)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    cipher = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    text = (description + "\0").encode("utf-16-le")
    head = struct.pack("<I", 1) + PROVIDER.bytes_le + struct.pack("<I", 1) + MASTER_KEY.bytes_le
    head += struct.pack("<II", flags & CRYPTPROTECT_LOCAL_MACHINE, len(text)) + text
    head += struct.pack("<III", CALG_AES_256, 256, len(salt)) + salt + struct.pack("<I", 0)
    head += struct.pack("<III", CALG_SHA_512, 512, 0) + struct.pack("<I", len(cipher)) + cipher
    sign = hmac.new(key, head, hashlib.sha512).digest()
    return head + struct.pack("<I", len(sign)) + sign


def unprotect(blob: bytes, entropy: bytes = b"") -> tuple[bytes, str]:
    """(data, description) of a blob :func:`protect` made with the same entropy."""
    try:
        pos = 4
        if struct.unpack_from("<I", blob, 0)[0] != 1 or blob[pos : pos + 16] != PROVIDER.bytes_le:
            raise DpapiError("not a DPAPI blob")
        pos += 16 + 4 + 16 + 4
        (text_len,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        description = blob[pos : pos + text_len].decode("utf-16-le", "replace").rstrip("\0")
        pos += text_len
        _alg, _bits, salt_len = struct.unpack_from("<III", blob, pos)
        pos += 12
        salt = blob[pos : pos + salt_len]
        pos += salt_len
        (hmac_key_len,) = struct.unpack_from("<I", blob, pos)
        pos += 4 + hmac_key_len
        pos += 8
        (hmac2_len,) = struct.unpack_from("<I", blob, pos)
        pos += 4 + hmac2_len
        (data_len,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        cipher = blob[pos : pos + data_len]
        pos += data_len
        (sign_len,) = struct.unpack_from("<I", blob, pos)
        sign = blob[pos + 4 : pos + 4 + sign_len]
    except (struct.error, IndexError) as err:
        raise DpapiError(f"truncated blob: {err}") from err
    key = _key(salt, entropy)
    if len(cipher) % 16 or not hmac.compare_digest(sign, hmac.new(key, blob[:pos], hashlib.sha512).digest()):
        raise DpapiError("another machine's or user's blob, or other entropy")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(decryptor.update(cipher) + decryptor.finalize()) + unpadder.finalize()
    except ValueError as err:
        raise DpapiError("bad padding") from err
    return plain, description


def _read_blob(api: GuestApi, address: int) -> bytes | None:
    """The bytes a DATA_BLOB (DWORD cbData; BYTE *pbData) at ``address`` names; None when too large."""
    raw = api.read(address, 2 * api.ptr_size)
    size = int.from_bytes(raw[:4], "little")
    pointer = int.from_bytes(raw[api.ptr_size :], "little")
    if size > MAX_BLOB:
        return None
    return api.read(pointer, size) if size and pointer else b""


def _write_blob(api: GuestApi, address: int, data: bytes, tag: str) -> int:
    """A fresh buffer holding ``data`` (LocalAlloc'ed, as the caller LocalFree's it) named by the
    DATA_BLOB at ``address``: the buffer's address."""
    buffer = api.alloc(max(len(data), 1), tag)
    api.write(buffer, data)
    api.write_u32(address, len(data))
    api.write_ptr(address + api.ptr_size, buffer)
    return buffer


@apihook("crypt32", "CryptProtectData", argc=7)
def crypt_protect_data(api: GuestApi, argv: list[int]) -> int:
    """CryptProtectData(pDataIn, szDataDescr, pOptionalEntropy, pvReserved, pPromptStruct,
    dwFlags, pDataOut)."""
    data_in, description_at, entropy_at, _reserved, _prompt, flags, data_out = argv
    data = _read_blob(api, data_in) if data_in else None
    entropy = _read_blob(api, entropy_at) if entropy_at else b""
    if data is None or entropy is None or not data_out:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    description = api.read_string(description_at, wide=True) if description_at else ""
    _write_blob(api, data_out, protect(data, entropy, description, flags), "api.CryptProtectData")
    return 1


@apihook("crypt32", "CryptUnprotectData", argc=7)
def crypt_unprotect_data(api: GuestApi, argv: list[int]) -> int:
    """CryptUnprotectData(pDataIn, ppszDataDescr, pOptionalEntropy, pvReserved, pPromptStruct,
    dwFlags, pDataOut)."""
    data_in, description_out, entropy_at, _reserved, _prompt, _flags, data_out = argv
    blob = _read_blob(api, data_in) if data_in else None
    entropy = _read_blob(api, entropy_at) if entropy_at else b""
    if blob is None or entropy is None or not data_out:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    try:
        plain, description = unprotect(blob, entropy)
    except DpapiError:
        api.set_last_error(NTE_BAD_DATA)
        return 0
    buffer = _write_blob(api, data_out, plain, "api.CryptUnprotectData")
    if description_out:
        text = api.alloc(2 * len(description) + 2, "api.CryptUnprotectData")
        api.write_string(text, description, wide=True)
        api.write_ptr(description_out, text)
    if plain:
        _services(api).recorder.remember_buffer(
            "decrypt", buffer, plain, ref=api.qualified_name, input_data=blob, api=api.qualified_name
        )
    return 1
