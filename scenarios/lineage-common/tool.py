#!/usr/bin/env python3
"""Build helper of the generality suite: encodings of a payload and C headers embedding bytes.

tool.py xor   KEYHEX IN OUT          repeating-key XOR
tool.py roll  KEY0 STEP IN OUT       rolling XOR, byte i ^ ((KEY0 + i*STEP) & 0xff)
tool.py nibble ADD STEP IN OUT      custom cipher: e = swap_nibbles((b - ADD - i*STEP) & 0xff)
tool.py lznt1 IN OUT                LZNT1 ([MS-XCA] 2.5), RtlCompressBuffer's format (chunks compressed when that fits)
tool.py xpress IN OUT               XPRESS Plain LZ77 ([MS-XCA] 2.3), RtlCompressBuffer's COMPRESSION_FORMAT_XPRESS
tool.py xpress_huff IN OUT          XPRESS LZ77+Huffman ([MS-XCA] 2.1), COMPRESSION_FORMAT_XPRESS_HUFF (up to 64 KiB)
tool.py psenc NAME TEXT OUT         C header: `#define NAME "..."`, TEXT base64 of its UTF-16LE (-EncodedCommand)
tool.py dpapi ENTROPY IN OUT        a DPAPI blob of IN as the emulator's CryptProtectData makes it (its guest's key)
tool.py aes256pw PASSWORD IN OUT     AES-256-CBC, key SHA-256(PASSWORD) (CryptDeriveKey(CALG_AES_256)), IV 0, PKCS#7
tool.py gzip  IN OUT                gzip (no name, time 0: deterministic), as a server's Content-Encoding: gzip
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
import heapq
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


def lz77_tokens(data: bytes, max_offset: int, min_length: int = 3) -> list[tuple[int, int]]:
    """Greedy LZ77: (literal byte, 0) or (length, offset) tokens, offset >= 1."""
    tokens: list[tuple[int, int]] = []
    seen: dict[bytes, list[int]] = {}
    i = 0
    while i < len(data):
        best_len = best_off = 0
        for j in reversed(seen.get(data[i : i + 3], [])[-32:]):
            if i - j > max_offset:
                break
            n = 0
            while i + n < len(data) and data[j + n] == data[i + n] and n < 4096:
                n += 1
            if n > best_len:
                best_len, best_off = n, i - j
        step = best_len if best_len >= min_length else 1
        tokens.append((best_len, best_off) if step > 1 else (data[i], 0))
        for k in range(i, i + step):
            seen.setdefault(data[k : k + 3], []).append(k)
        i += step
    return tokens


def xpress(data: bytes) -> bytes:
    out = bytearray(4)
    state = {"flag_pos": 0, "flags": 0, "count": 0, "half": -1}

    def flag(bit: int) -> None:
        if state["count"] == 32:
            out[state["flag_pos"] : state["flag_pos"] + 4] = struct.pack("<I", state["flags"])
            state.update(flag_pos=len(out), flags=0, count=0)
            out.extend(bytes(4))
        state["flags"] = state["flags"] << 1 | bit
        state["count"] += 1

    for length, offset in lz77_tokens(data, 8192):
        if not offset:
            flag(0)
            out.append(length)
            continue
        flag(1)
        rest = length - 3
        out += struct.pack("<H", (offset - 1) << 3 | min(rest, 7))
        if rest >= 7:
            rest -= 7
            nibble = min(rest, 15)
            if state["half"] < 0:
                state["half"] = len(out)
                out.append(nibble)
            else:
                out[state["half"]] |= nibble << 4
                state["half"] = -1
            if rest >= 15:
                if rest - 15 < 255:
                    out.append(rest - 15)
                else:
                    out.append(255)
                    total = length - 3
                    out += struct.pack("<H", total) if total <= 0xFFFF else struct.pack("<HI", 0, total)
    flag(1)  # a match flag with no input left ends the stream
    left = 32 - state["count"]
    last = (state["flags"] << left | ((1 << left) - 1)) & 0xFFFFFFFF
    out[state["flag_pos"] : state["flag_pos"] + 4] = struct.pack("<I", last)
    return bytes(out)


def huffman_lengths(freqs: list[int], limit: int = 15) -> list[int]:
    while True:
        heap = [(f, i, (i,)) for i, f in enumerate(freqs) if f]
        lengths = [0] * len(freqs)
        if len(heap) == 1:
            lengths[heap[0][1]] = 1
            return lengths
        heapq.heapify(heap)
        tie = len(freqs)
        while len(heap) > 1:
            f1, _, s1 = heapq.heappop(heap)
            f2, _, s2 = heapq.heappop(heap)
            for sym in s1 + s2:
                lengths[sym] += 1
            heapq.heappush(heap, (f1 + f2, tie, s1 + s2))
            tie += 1
        if max(lengths) <= limit:
            return lengths
        freqs = [(f + 1) // 2 if f else 0 for f in freqs]


def xpress_huff(data: bytes) -> bytes:
    if len(data) >= 65536:
        raise SystemExit("xpress_huff: one 64 KiB block only")
    symbols: list[tuple[int, int, int]] = []  # (symbol, offset bit count, offset low bits), length byte(s)
    extras: list[bytes] = []
    pos = 0
    for length, offset in lz77_tokens(data, 65535):
        if not offset:
            symbols.append((length, 0, 0))
            extras.append(b"")
            pos += 1
            continue
        if offset == 1 and length == 3:  # symbol 256 also ends the stream: three literals instead
            symbols += [(data[pos - 1], 0, 0)] * 3
            extras += [b""] * 3
            pos += 3
            continue
        pos += length
        bits = offset.bit_length() - 1
        rest = length - 3
        extra = b""
        if rest >= 15:
            extra = bytes([rest - 15]) if rest - 15 < 255 else b"\xff" + struct.pack("<H", rest)
        symbols.append((256 + (bits << 4 | min(rest, 15)), bits, offset - (1 << bits)))
        extras.append(extra)
    symbols.append((256, 0, 0))
    extras.append(b"")
    freqs = [0] * 512
    for sym, _, _ in symbols:
        freqs[sym] += 1
    lengths = huffman_lengths(freqs)
    codes = [0] * 512
    code = 0
    for bits in range(1, 16):
        for sym in range(512):
            if lengths[sym] == bits:
                codes[sym] = code
                code += 1
        code <<= 1
    out = bytearray(lengths[2 * i] | lengths[2 * i + 1] << 4 for i in range(256))
    state = {"slot1": len(out), "slot2": len(out) + 2, "acc": 0, "n": 0}
    out += bytes(4)

    def write(value: int, count: int) -> None:
        for k in reversed(range(count)):
            if state["n"] == 16:
                out[state["slot1"] : state["slot1"] + 2] = struct.pack("<H", state["acc"])
                state.update(slot1=state["slot2"], slot2=len(out), acc=0, n=0)
                out.extend(bytes(2))
            state["acc"] = state["acc"] << 1 | (value >> k & 1)
            state["n"] += 1

    for (sym, bits, low), extra in zip(symbols, extras, strict=True):
        write(codes[sym], lengths[sym])
        out += extra
        write(low, bits)
    out[state["slot1"] : state["slot1"] + 2] = struct.pack("<H", (state["acc"] << (16 - state["n"])) & 0xFFFF)
    return bytes(out)


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
    elif cmd == "xpress":
        Path(args[1]).write_bytes(xpress(Path(args[0]).read_bytes()))
    elif cmd == "xpress_huff":
        Path(args[1]).write_bytes(xpress_huff(Path(args[0]).read_bytes()))
    elif cmd == "psenc":
        encoded = base64.b64encode(args[1].encode("utf-16-le")).decode("ascii")
        header = f'/* generated by lineage-common/tool.py; do not edit */\n#define {args[0]} "{encoded}"\n'
        Path(args[2]).write_text(header)
    elif cmd == "dpapi":  # the emulator's own DPAPI (emulator/apis/dpapi.py): a blob its guest opens
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from emulator.apis.dpapi import protect

        Path(args[2]).write_bytes(protect(Path(args[1]).read_bytes(), args[0].encode()))
    elif cmd == "aes256pw":
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        key = hashlib.sha256(args[0].encode()).digest()
        padder = padding.PKCS7(128).padder()
        plain = padder.update(Path(args[1]).read_bytes()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
        Path(args[2]).write_bytes(encryptor.update(plain) + encryptor.finalize())
    elif cmd == "gzip":
        import gzip

        Path(args[1]).write_bytes(gzip.compress(Path(args[0]).read_bytes(), compresslevel=9, mtime=0))
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
