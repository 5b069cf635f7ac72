"""Project-side BCrypt handlers, checked against the cryptography package on a fake guest."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emulator.apis import bcrypt
from emulator.apis.core import GuestApi
from emulator.randomness import SeededRandom
from emulator.recorder import Recorder
from emulator.responders.router import NetworkRouter
from emulator.services import ReplayServices
from emulator.vclock import VirtualClock


class FakeMemory:
    """A flat guest address space for handler tests."""

    def __init__(self, ptr_size: int) -> None:
        self.ptr_size = ptr_size
        self.data = bytearray(0x20000)
        self.next = 0x100
        self.last_error = 0

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.data[address : address + size])

    def write(self, address: int, data: bytes) -> None:
        self.data[address : address + len(data)] = data

    def alloc(self, size: int, tag: str) -> int:
        address = self.next
        self.next += (size + 15) & ~15
        return address

    def set_last_error(self, code: int) -> None:
        self.last_error = code


class Guest:
    def __init__(self, ptr_size: int) -> None:
        self.memory = FakeMemory(ptr_size)
        recorder = Recorder()
        self.services = ReplayServices(recorder, VirtualClock(0), SeededRandom(1), NetworkRouter([], recorder))

    def api(self, name: str) -> GuestApi:
        return GuestApi(self.memory, self.services, name)

    def put(self, data: bytes) -> int:
        address = self.memory.alloc(len(data) + 2, "test")
        self.memory.write(address, data)
        return address

    def wide(self, text: str) -> int:
        return self.put(text.encode("utf-16-le") + b"\0\0")


def open_key(guest: Guest, key: bytes, mode: str) -> int:
    out = guest.put(bytes(8))
    assert bcrypt.open_algorithm_provider(guest.api("BCryptOpenAlgorithmProvider"), [out, guest.wide("AES"), 0, 0]) == 0
    algorithm = int.from_bytes(guest.memory.read(out, guest.memory.ptr_size), "little")
    value = guest.put(mode.encode("utf-16-le") + b"\0\0")
    assert (
        bcrypt.set_property(
            guest.api("BCryptSetProperty"), [algorithm, guest.wide("ChainingMode"), value, len(mode) * 2 + 2, 0]
        )
        == 0
    )
    key_out = guest.put(bytes(8))
    secret = guest.put(key)
    assert (
        bcrypt.generate_symmetric_key(
            guest.api("BCryptGenerateSymmetricKey"), [algorithm, key_out, 0, 0, secret, len(key), 0]
        )
        == 0
    )
    return int.from_bytes(guest.memory.read(key_out, guest.memory.ptr_size), "little")


def auth_info(guest: Guest, nonce: bytes, tag_address: int, tag_size: int) -> int:
    p = guest.memory.ptr_size
    nonce_at = guest.put(nonce)
    raw = (8 + 6 * p).to_bytes(4, "little") + (1).to_bytes(4, "little")
    raw += nonce_at.to_bytes(p, "little") + len(nonce).to_bytes(p, "little")
    raw += (0).to_bytes(p, "little") + (0).to_bytes(p, "little")
    raw += tag_address.to_bytes(p, "little") + tag_size.to_bytes(p, "little")
    return guest.put(raw + bytes(32))


@pytest.mark.parametrize("ptr_size", [4, 8])
def test_gcm_decrypt_matches_cryptography_and_is_remembered(ptr_size: int) -> None:
    guest = Guest(ptr_size)
    key, nonce, plain = os.urandom(32), os.urandom(12), b"https://akamaicontainer.com/api/v2/telemetry"
    sealed = AESGCM(key).encrypt(nonce, plain, None)
    handle = open_key(guest, key, "ChainingModeGCM")
    tag_at = guest.put(sealed[-16:])
    info = auth_info(guest, nonce, tag_at, 16)
    data_in, data_out, result = guest.put(sealed[:-16]), guest.put(bytes(64)), guest.put(bytes(4))
    status = bcrypt.decrypt(
        guest.api("BCryptDecrypt"), [handle, data_in, len(plain), info, 0, 0, data_out, 64, result, 0]
    )
    assert status == 0
    assert guest.memory.read(data_out, len(plain)) == plain
    buffers = [e for e in guest.services.recorder.events if e.type == "buffer"]
    assert buffers[0].source == "decrypt" and guest.services.recorder.blobs[buffers[0].sha256] == plain


def test_gcm_wrong_tag_is_auth_tag_mismatch() -> None:
    guest = Guest(8)
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, b"payload", None)
    handle = open_key(guest, key, "ChainingModeGCM")
    info = auth_info(guest, nonce, guest.put(bytes(16)), 16)
    status = bcrypt.decrypt(
        guest.api("BCryptDecrypt"),
        [handle, guest.put(sealed[:-16]), 7, info, 0, 0, guest.put(bytes(16)), 16, guest.put(bytes(4)), 0],
    )
    assert status == bcrypt.STATUS_AUTH_TAG_MISMATCH


def test_gcm_encrypt_writes_tag() -> None:
    guest = Guest(8)
    key, nonce = os.urandom(32), os.urandom(12)
    handle = open_key(guest, key, "ChainingModeGCM")
    tag_at = guest.put(bytes(16))
    info = auth_info(guest, nonce, tag_at, 16)
    out = guest.put(bytes(16))
    assert (
        bcrypt.encrypt(
            guest.api("BCryptEncrypt"), [handle, guest.put(b"secret!"), 7, info, 0, 0, out, 16, guest.put(bytes(4)), 0]
        )
        == 0
    )
    sealed = guest.memory.read(out, 7) + guest.memory.read(tag_at, 16)
    assert AESGCM(key).decrypt(nonce, sealed, None) == b"secret!"


@pytest.mark.parametrize("mode", ["ChainingModeCBC", "ChainingModeECB"])
def test_cbc_ecb_with_padding_match_cryptography(mode: str) -> None:
    guest = Guest(8)
    key, iv, plain = os.urandom(32), os.urandom(16), b"0123456789abcdef-and-more"
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    cipher_mode = modes.CBC(iv) if mode == "ChainingModeCBC" else modes.ECB()
    enc = Cipher(algorithms.AES(key), cipher_mode).encryptor()
    ciphertext = enc.update(padded) + enc.finalize()
    handle = open_key(guest, key, mode)
    out, result = guest.put(bytes(64)), guest.put(bytes(4))
    iv_at = guest.put(iv) if mode == "ChainingModeCBC" else 0
    status = bcrypt.decrypt(
        guest.api("BCryptDecrypt"),
        [
            handle,
            guest.put(ciphertext),
            len(ciphertext),
            0,
            iv_at,
            16 if iv_at else 0,
            out,
            64,
            result,
            bcrypt.BCRYPT_BLOCK_PADDING,
        ],
    )
    assert status == 0
    assert guest.memory.read(out, int.from_bytes(guest.memory.read(result, 4), "little")) == plain


def test_destroy_key_and_bad_handle() -> None:
    guest = Guest(8)
    handle = open_key(guest, os.urandom(16), "ChainingModeCBC")
    assert bcrypt.destroy_key(guest.api("BCryptDestroyKey"), [handle]) == 0
    assert bcrypt.destroy_key(guest.api("BCryptDestroyKey"), [handle]) == bcrypt.STATUS_INVALID_HANDLE
