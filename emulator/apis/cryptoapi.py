"""CryptoAPI AES keys, which Speakeasy 2.0.0b9 lacks (it derives RC4 keys only): a key imported
from a ``PLAINTEXTKEYBLOB`` (``CryptImportKey``), its IV and mode (``CryptSetKeyParam``), and
``CryptDeriveKey`` of an AES key from a hash (the backend hands over the hash's value), and
``CryptDecrypt`` with it (CBC by default, ECB on request; the last block's PKCS#7 padding removed
when ``Final``). Without them a sample decrypting with AES through CryptoAPI ended the run as
``unsupported_api`` at ``CryptImportKey``.

``CryptDecrypt`` stays Speakeasy's for its own (RC4) keys: the backend's tap of it calls
:func:`decrypt` first, which answers for the keys made here only (emulator/backends/speakeasy/
sources.py records what any decryption produced).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

PLAINTEXTKEYBLOB = 0x8
CUR_BLOB_VERSION = 2
# ALG_IDs of AES keys -> key length in bytes (CALG_AES takes the blob's length).
AES_ALGORITHMS = {0x660E: 16, 0x660F: 24, 0x6610: 32, 0x6611: 0}
KP_IV, KP_MODE = 1, 4
CRYPT_MODE_CBC, CRYPT_MODE_ECB = 1, 2
AES_BLOCK = 16
# Blob header (BLOBHEADER) and key length before the key bytes.
BLOB_HEADER = 12
NTE_BAD_DATA = 0x80090005
NTE_BAD_KEY = 0x80090003
NTE_BAD_TYPE = 0x8009000A
NTE_BAD_ALGID = 0x80090008
NTE_BAD_LEN = 0x80090004
ERROR_INVALID_PARAMETER = 87
ERROR_MORE_DATA = 234
# A CryptDecrypt larger than this is refused (NTE_BAD_LEN) rather than read.
MAX_CRYPT_DATA = 64 * 1024 * 1024


@dataclass
class AesKey:
    secret: bytes
    iv: bytes = bytes(AES_BLOCK)  # as set (KP_IV)
    mode: int = CRYPT_MODE_CBC
    chain: bytes | None = None  # CBC state between calls of one message (None: the IV)


@apihook("advapi32", "CryptImportKey", argc=6)
def crypt_import_key(api: GuestApi, argv: list[int]) -> int:
    """CryptImportKey(hProv, pbData, dwDataLen, hPubKey, dwFlags, phKey): AES keys of a
    PLAINTEXTKEYBLOB; every other blob type or algorithm fails as Windows fails it."""
    _prov, data, size, _pub, _flags, out = argv
    if not data or not out or size < BLOB_HEADER:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    blob = api.read(data, min(size, BLOB_HEADER + 64))
    kind, version, alg = blob[0], blob[1], int.from_bytes(blob[4:8], "little")
    length = int.from_bytes(blob[8:12], "little")
    if kind != PLAINTEXTKEYBLOB or version != CUR_BLOB_VERSION:
        api.set_last_error(NTE_BAD_TYPE)
        return 0
    if alg not in AES_ALGORITHMS:
        api.set_last_error(NTE_BAD_ALGID)
        return 0
    wanted = AES_ALGORITHMS[alg] or length
    if length != wanted or wanted not in (16, 24, 32) or len(blob) < BLOB_HEADER + length:
        api.set_last_error(NTE_BAD_DATA)
        return 0
    handle = _services(api).new_handle(AesKey(bytes(blob[BLOB_HEADER : BLOB_HEADER + length])))
    api.write_ptr(out, handle)
    return 1


@apihook("advapi32", "CryptSetKeyParam", argc=4)
def crypt_set_key_param(api: GuestApi, argv: list[int]) -> int:
    """CryptSetKeyParam(hKey, dwParam, pbData, dwFlags): the IV (KP_IV) and the mode (KP_MODE)
    of an AES key."""
    handle, param, data, _flags = argv
    key = _services(api).get(handle, AesKey)
    if key is None:
        api.set_last_error(NTE_BAD_KEY)
        return 0
    if param == KP_IV and data:
        key.iv, key.chain = api.read(data, AES_BLOCK), None
        return 1
    if param == KP_MODE and data:
        mode = api.read_u32(data)
        if mode not in (CRYPT_MODE_CBC, CRYPT_MODE_ECB):
            api.set_last_error(NTE_BAD_DATA)
            return 0
        key.mode = mode
        return 1
    api.set_last_error(NTE_BAD_TYPE)
    return 0


@apihook("advapi32", "CryptDestroyKey", argc=1)
def crypt_destroy_key(api: GuestApi, argv: list[int]) -> int:
    """CryptDestroyKey(hKey): a key made here is forgotten; Speakeasy's keys need nothing."""
    services = _services(api)
    if services.get(argv[0], AesKey) is not None:
        services.close(argv[0])
    return 1


def derive_aes_key(api: GuestApi, hash_name: str, digest: bytes, argv: list[int]) -> int:
    """CryptDeriveKey(hProv, Algid, hBaseData, dwFlags, phKey) of an AES key from a hash's value,
    as Windows derives it: a SHA-2 value long enough is the key's first bytes; otherwise (MD5,
    SHA-1, too short) the value XORed into 64 bytes of 0x36 and of 0x5C, each hashed again, the
    two results joined. The key length is the algorithm's (CALG_AES: the upper 16 bits of dwFlags)."""
    _prov, algid, _hash, flags, out = argv
    length = AES_ALGORITHMS.get(algid & 0xFFFF, -1)
    if length == 0:
        length = (flags >> 16) // 8
    if length not in (16, 24, 32) or not out:
        api.set_last_error(NTE_BAD_ALGID if length < 0 else ERROR_INVALID_PARAMETER)
        return 0
    if hash_name.startswith("sha") and hash_name != "sha1" and len(digest) >= length:
        secret = digest[:length]
    else:
        inner = bytes(b ^ 0x36 for b in digest.ljust(64, b"\0")[:64])
        outer = bytes(b ^ 0x5C for b in digest.ljust(64, b"\0")[:64])
        secret = (hashlib.new(hash_name, inner).digest() + hashlib.new(hash_name, outer).digest())[:length]
    api.write_ptr(out, _services(api).new_handle(AesKey(secret)))
    return 1


def decrypt(api: GuestApi, argv: list[int]) -> int | None:
    """CryptDecrypt(hKey, hHash, Final, dwFlags, pbData, pdwDataLen) with an AES key made here,
    in place; None for any other key (the engine's handler answers)."""
    handle, _hash, final, _flags, data, length_at = argv
    key = _services(api).get(handle, AesKey)
    if key is None:
        return None
    size = api.read_u32(length_at) if length_at else 0
    if not data or not length_at or size % AES_BLOCK or size > MAX_CRYPT_DATA:
        api.set_last_error(NTE_BAD_LEN if size % AES_BLOCK or size > MAX_CRYPT_DATA else ERROR_INVALID_PARAMETER)
        return 0
    cipher = api.read(data, size)
    mode = modes.CBC(key.chain or key.iv) if key.mode == CRYPT_MODE_CBC else modes.ECB()
    decryptor = Cipher(algorithms.AES(key.secret), mode).decryptor()
    plain = decryptor.update(cipher) + decryptor.finalize()
    if key.mode == CRYPT_MODE_CBC and cipher:
        key.chain = cipher[-AES_BLOCK:]  # the next call of the message chains on
    if final:
        unpadder = padding.PKCS7(AES_BLOCK * 8).unpadder()
        try:
            plain = unpadder.update(plain) + unpadder.finalize()
        except ValueError:
            api.set_last_error(NTE_BAD_DATA)
            return 0
        key.chain = None  # Final ends the message: the next starts from the IV again
    api.write(data, plain)
    api.write_u32(length_at, len(plain))
    return 1
