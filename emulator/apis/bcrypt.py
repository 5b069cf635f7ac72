"""BCrypt symmetric cryptography (AES-ECB/CBC/GCM), which Speakeasy 2.0.0b9 lacks.

The bytes a decryption produces are remembered as a ``decrypt`` buffer, so the stage graph can
link a payload that later runs to the ciphertext it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_NOT_SUPPORTED = 0xC00000BB
STATUS_INVALID_BUFFER_SIZE = 0xC0000206
STATUS_AUTH_TAG_MISMATCH = 0xC000A002

BCRYPT_BLOCK_PADDING = 0x1
KEY_DATA_BLOB_MAGIC = 0x4D42444B
AES_BLOCK = 16
# Sizes Windows reports for an AES key object; samples allocate this much and pass it back.
AES_OBJECT_LENGTH = 0x28E


@dataclass
class Algorithm:
    name: str
    chaining: str = "ChainingModeCBC"


@dataclass
class SymmetricKey:
    algorithm: Algorithm
    secret: bytes
    chaining: str


def _read_wide(api: GuestApi, address: int) -> str:
    return api.read_string(address, wide=True, max_chars=128)


@apihook("bcrypt", "BCryptOpenAlgorithmProvider", argc=4)
def open_algorithm_provider(api: GuestApi, argv: list[int]) -> int:
    out_handle, alg_id, _impl, _flags = argv
    name = _read_wide(api, alg_id)
    if not out_handle or not name:
        return STATUS_INVALID_PARAMETER
    handle = _services(api).new_handle(Algorithm(name.upper()))
    api.write_ptr(out_handle, handle)
    return STATUS_SUCCESS


@apihook("bcrypt", "BCryptCloseAlgorithmProvider", argc=2)
def close_algorithm_provider(api: GuestApi, argv: list[int]) -> int:
    return STATUS_SUCCESS if _services(api).close(argv[0]) else STATUS_INVALID_HANDLE


@apihook("bcrypt", "BCryptSetProperty", argc=5)
def set_property(api: GuestApi, argv: list[int]) -> int:
    handle, prop, value, size, _flags = argv
    services = _services(api)
    obj = services.handles.get(handle)
    if not isinstance(obj, Algorithm | SymmetricKey):
        return STATUS_INVALID_HANDLE
    name = _read_wide(api, prop)
    if name == "ChainingMode":
        mode = api.read(value, size).decode("utf-16-le", "replace").rstrip("\0")
        if mode not in ("ChainingModeGCM", "ChainingModeCBC", "ChainingModeECB"):
            return STATUS_NOT_SUPPORTED
        obj.chaining = mode
        return STATUS_SUCCESS
    return STATUS_NOT_SUPPORTED


@apihook("bcrypt", "BCryptGetProperty", argc=6)
def get_property(api: GuestApi, argv: list[int]) -> int:
    handle, prop, output, out_size, result_size, _flags = argv
    if not isinstance(_services(api).handles.get(handle), Algorithm | SymmetricKey):
        return STATUS_INVALID_HANDLE
    name = _read_wide(api, prop)
    values = {
        "ObjectLength": AES_OBJECT_LENGTH.to_bytes(4, "little"),
        "BlockLength": AES_BLOCK.to_bytes(4, "little"),
        # BCRYPT_KEY_LENGTHS_STRUCT {min, max, increment} in bytes for the GCM tag.
        "AuthTagLength": (12).to_bytes(4, "little") + (16).to_bytes(4, "little") + (1).to_bytes(4, "little"),
    }
    data = values.get(name)
    if data is None:
        return STATUS_NOT_SUPPORTED
    api.write_u32(result_size, len(data))
    if not output:
        return STATUS_SUCCESS
    if out_size < len(data):
        return STATUS_BUFFER_TOO_SMALL
    api.write(output, data)
    return STATUS_SUCCESS


def _new_key(api: GuestApi, algorithm_handle: int, out_key: int, secret: bytes) -> int:
    services = _services(api)
    algorithm = services.get(algorithm_handle, Algorithm)
    if algorithm is None:
        return STATUS_INVALID_HANDLE
    if algorithm.name != "AES":
        return STATUS_NOT_SUPPORTED
    if len(secret) not in (16, 24, 32):
        return STATUS_INVALID_PARAMETER
    api.write_ptr(out_key, services.new_handle(SymmetricKey(algorithm, secret, algorithm.chaining)))
    return STATUS_SUCCESS


@apihook("bcrypt", "BCryptGenerateSymmetricKey", argc=7)
def generate_symmetric_key(api: GuestApi, argv: list[int]) -> int:
    algorithm, out_key, _key_object, _key_object_size, secret, secret_size, _flags = argv
    return _new_key(api, algorithm, out_key, api.read(secret, secret_size))


@apihook("bcrypt", "BCryptImportKey", argc=9)
def import_key(api: GuestApi, argv: list[int]) -> int:
    algorithm, _import_key, blob_type, out_key, _obj, _obj_size, blob, blob_size, _flags = argv
    if _read_wide(api, blob_type) != "KeyDataBlob" or blob_size < 12:
        return STATUS_NOT_SUPPORTED
    header = api.read(blob, 12)
    magic, _version, key_size = (int.from_bytes(header[i : i + 4], "little") for i in (0, 4, 8))
    if magic != KEY_DATA_BLOB_MAGIC or 12 + key_size > blob_size:
        return STATUS_INVALID_PARAMETER
    return _new_key(api, algorithm, out_key, api.read(blob + 12, key_size))


@apihook("bcrypt", "BCryptDestroyKey", argc=1)
def destroy_key(api: GuestApi, argv: list[int]) -> int:
    return STATUS_SUCCESS if _services(api).close(argv[0]) else STATUS_INVALID_HANDLE


@dataclass
class AuthInfo:
    nonce: bytes
    aad: bytes
    tag_address: int
    tag_size: int


def _read_auth_info(api: GuestApi, address: int) -> AuthInfo:
    """BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO: pointers are pointer-sized and aligned."""
    p = api.ptr_size
    raw = api.read(address, 8 + 6 * p)

    def ptr(offset: int) -> int:
        return int.from_bytes(raw[offset : offset + p], "little")

    def u32(offset: int) -> int:
        return int.from_bytes(raw[offset : offset + 4], "little")

    nonce_ptr, nonce_size = ptr(8), u32(8 + p)
    aad_ptr, aad_size = ptr(8 + 2 * p), u32(8 + 3 * p)
    tag_ptr, tag_size = ptr(8 + 4 * p), u32(8 + 5 * p)
    return AuthInfo(api.read(nonce_ptr, nonce_size), api.read(aad_ptr, aad_size), tag_ptr, tag_size)


def _crypt(api: GuestApi, argv: list[int], decrypt: bool) -> int:
    key_handle, data_in, size_in, padding_info, iv_ptr, iv_size, data_out, size_out, result_size, flags = argv
    key = _services(api).get(key_handle, SymmetricKey)
    if key is None:
        return STATUS_INVALID_HANDLE
    data = api.read(data_in, size_in)
    try:
        if key.chaining == "ChainingModeGCM":
            if not padding_info:
                return STATUS_INVALID_PARAMETER
            info = _read_auth_info(api, padding_info)
            if decrypt:
                tag = api.read(info.tag_address, info.tag_size)
                result = AESGCM(key.secret).decrypt(info.nonce, data + tag, info.aad or None)
            else:
                sealed = AESGCM(key.secret).encrypt(info.nonce, data, info.aad or None)
                result, tag = sealed[:-16], sealed[-16:]
                if data_out:
                    api.write(info.tag_address, tag[: info.tag_size])
        else:
            mode: modes.Mode
            iv = api.read(iv_ptr, iv_size) if iv_ptr else b""
            mode = modes.ECB() if key.chaining == "ChainingModeECB" else modes.CBC(iv or bytes(AES_BLOCK))
            cipher = Cipher(algorithms.AES(key.secret), mode)
            if decrypt:
                if len(data) % AES_BLOCK:
                    return STATUS_INVALID_BUFFER_SIZE
                dec = cipher.decryptor()
                result = dec.update(data) + dec.finalize()
                if flags & BCRYPT_BLOCK_PADDING:
                    unpadder = padding.PKCS7(128).unpadder()
                    result = unpadder.update(result) + unpadder.finalize()
                next_iv = data[-AES_BLOCK:] if data else iv
            else:
                if flags & BCRYPT_BLOCK_PADDING:
                    padder = padding.PKCS7(128).padder()
                    data = padder.update(data) + padder.finalize()
                elif len(data) % AES_BLOCK:
                    return STATUS_INVALID_BUFFER_SIZE
                enc = cipher.encryptor()
                result = enc.update(data) + enc.finalize()
                next_iv = result[-AES_BLOCK:] if result else iv
            if iv_ptr and data_out and key.chaining == "ChainingModeCBC":
                api.write(iv_ptr, next_iv)
    except InvalidTag:
        return STATUS_AUTH_TAG_MISMATCH
    except ValueError:
        return STATUS_INVALID_PARAMETER
    api.write_u32(result_size, len(result))
    if not data_out:
        return STATUS_SUCCESS
    if size_out < len(result):
        return STATUS_BUFFER_TOO_SMALL
    api.write(data_out, result)
    if decrypt:
        _services(api).recorder.remember_buffer(
            "decrypt", data_out, result, ref=api.qualified_name, input_data=data, api=api.qualified_name
        )
    return STATUS_SUCCESS


@apihook("bcrypt", "BCryptDecrypt", argc=10)
def decrypt(api: GuestApi, argv: list[int]) -> int:
    return _crypt(api, argv, decrypt=True)


@apihook("bcrypt", "BCryptEncrypt", argc=10)
def encrypt(api: GuestApi, argv: list[int]) -> int:
    return _crypt(api, argv, decrypt=False)
