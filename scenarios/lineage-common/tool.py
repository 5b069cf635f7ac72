#!/usr/bin/env python3
"""Build helper of the generality suite: encodings of a payload and C headers embedding bytes.

tool.py xor   KEYHEX IN OUT          repeating-key XOR
tool.py roll  KEY0 STEP IN OUT       rolling XOR, byte i ^ ((KEY0 + i*STEP) & 0xff)
tool.py nibble ADD STEP IN OUT      custom cipher: e = swap_nibbles((b - ADD - i*STEP) & 0xff)
tool.py lznt1 IN OUT                LZNT1 ([MS-XCA] 2.5), RtlCompressBuffer's format (chunks compressed when that fits)
tool.py b64   IN OUT                 base64 text (one line, no newline)
tool.py uuids NAME IN OUT            C header: the bytes as UUID strings (16 bytes each, as UuidFromStringA reads them)
tool.py ipv4s NAME IN OUT            a C header: the bytes as dotted IPv4 strings (4 per string)
tool.py lenprefix IN OUT             the bytes after their length (4 bytes, little-endian), as a TCP stager reads them
tool.py rc4   PASSWORD IN OUT        RC4 with the 128-bit key CryptDeriveKey(CALG_RC4, MD5(PASSWORD))
tool.py rc4key KEYHEX IN OUT         RC4 with the key as given, as SystemFunction032 takes it
tool.py aes   KEYHEX IVHEX IN OUT    AES-CBC (128, 192 or 256-bit key), PKCS#7 padding, as CryptDecrypt(Final) undoes it
tool.py cheader NAME IN OUT          `static const unsigned char NAME[] = {...};`
tool.py pack  OUT IN...              each input's length (u32, little-endian), then the inputs
"""

import base64
import hashlib
import struct
import sys
from pathlib import Path


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def lznt1_chunk(chunk: bytes) -> bytes:
    """One chunk, greedy longest match (the displacement / length split follows the position)."""
    out = bytearray()
    i = 0
    while i < len(chunk):
        flag_at = len(out)
        out.append(0)
        flags = 0
        for bit in range(8):
            if i >= len(chunk):
                break
            shift, written = 12, i - 1
            while written >= 0x10:
                shift -= 1
                written >>= 1
            max_len, max_disp = (1 << shift) - 1 + 3, 1 << (16 - shift)
            best_len = best_disp = 0
            for disp in range(1, min(i, max_disp) + 1):
                n = 0
                while n < max_len and i + n < len(chunk) and chunk[i + n] == chunk[i - disp + n]:
                    n += 1
                if n > best_len:
                    best_len, best_disp = n, disp
            if best_len >= 3:
                out += struct.pack("<H", (best_disp - 1) << shift | (best_len - 3))
                flags |= 1 << bit
                i += best_len
            else:
                out.append(chunk[i])
                i += 1
        out[flag_at] = flags
    return bytes(out)


def lznt1(data: bytes) -> bytes:
    out = bytearray()
    for start in range(0, len(data), 4096):
        chunk = data[start : start + 4096]
        body = lznt1_chunk(chunk)
        if len(body) <= 4096:
            out += struct.pack("<H", 0xB000 | (len(body) - 1)) + body
        else:  # incompressible: stored as is
            out += struct.pack("<H", 0x3000 | (len(chunk) - 1)) + chunk
    return bytes(out + b"\0\0")


def main(argv: list[str]) -> int:
    cmd, *args = argv
    if cmd == "xor":
        key = bytes.fromhex(args[0])
        data = Path(args[1]).read_bytes()
        Path(args[2]).write_bytes(bytes(b ^ key[i % len(key)] for i, b in enumerate(data)))
    elif cmd == "roll":
        k0, step = int(args[0], 0), int(args[1], 0)
        data = Path(args[2]).read_bytes()
        Path(args[3]).write_bytes(bytes(b ^ ((k0 + i * step) & 0xFF) for i, b in enumerate(data)))
    elif cmd == "nibble":
        add, step = int(args[0], 0), int(args[1], 0)
        data = Path(args[2]).read_bytes()
        out = bytearray()
        for i, b in enumerate(data):
            v = (b - add - i * step) & 0xFF
            out.append(((v << 4) | (v >> 4)) & 0xFF)
        Path(args[3]).write_bytes(bytes(out))
    elif cmd == "lznt1":
        Path(args[1]).write_bytes(lznt1(Path(args[0]).read_bytes()))
    elif cmd in ("uuids", "ipv4s"):
        import uuid

        name, data = args[0], Path(args[1]).read_bytes()
        width = 16 if cmd == "uuids" else 4
        data += bytes(-len(data) % width)
        chunks = [data[i : i + width] for i in range(0, len(data), width)]
        if cmd == "uuids":
            texts = [str(uuid.UUID(bytes_le=chunk)) for chunk in chunks]
        else:
            texts = [".".join(str(b) for b in chunk) for chunk in chunks]
        lines = [f"static const char *const {name}[] = {{"] + [f'    "{t}",' for t in texts] + ["};"]
        lines.append(f"#define {name.upper()}_COUNT {len(texts)}")
        Path(args[2]).write_text("\n".join(lines) + "\n")
    elif cmd == "lenprefix":
        data = Path(args[0]).read_bytes()
        Path(args[1]).write_bytes(struct.pack("<I", len(data)) + data)
    elif cmd == "b64":
        Path(args[1]).write_bytes(base64.b64encode(Path(args[0]).read_bytes()))
    elif cmd == "rc4":
        key = hashlib.md5(args[0].encode()).digest()[:16]
        Path(args[2]).write_bytes(rc4(key, Path(args[1]).read_bytes()))
    elif cmd == "rc4key":
        Path(args[2]).write_bytes(rc4(bytes.fromhex(args[0]), Path(args[1]).read_bytes()))
    elif cmd == "aes":  # AES-CBC with PKCS#7 padding, as CryptDecrypt(Final) undoes it
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        key, iv = bytes.fromhex(args[0]), bytes.fromhex(args[1])
        padder = padding.PKCS7(128).padder()
        plain = padder.update(Path(args[2]).read_bytes()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        Path(args[3]).write_bytes(encryptor.update(plain) + encryptor.finalize())
    elif cmd == "cheader":
        data = Path(args[1]).read_bytes()
        rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
        body = ",\n    ".join(rows)
        Path(args[2]).write_text(
            f"/* generated by lineage-common/tool.py from {Path(args[1]).name}; do not edit */\n"
            f"static const unsigned char {args[0]}[{len(data)}] = {{\n    {body}\n}};\n"
        )
    elif cmd == "pack":
        parts = [Path(name).read_bytes() for name in args[1:]]
        Path(args[0]).write_bytes(b"".join(struct.pack("<I", len(p)) for p in parts) + b"".join(parts))
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
