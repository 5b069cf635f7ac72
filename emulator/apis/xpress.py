"""The XPRESS formats of ``RtlDecompressBuffer(Ex)`` ([MS-XCA] 2.3-2.4: Plain LZ77, format 3;
LZ77+Huffman, format 4), as loaders of 2023-2025 unpack a payload with them.

Plain LZ77: 32-bit flag words (a clear bit, from the most significant down, a literal byte; a
set bit a 16-bit match: offset - 1 in the upper 13 bits, length - 3 in the lower 3, 7 meaning a
longer length in a shared half byte, then a byte, then 16 or 32 bits); the stream ends at a match
flag with no input left. LZ77+Huffman: per 64 KiB of output, a table of 512 4-bit code lengths
(256 literals, 256 match symbols: offset bit count << 4 | length - 3) and a bit stream read
16 bits at a time, extra length bytes taken from the stream between the words; symbol 256 with
the input read to its end ends it. Malformed input raises :class:`XpressError`, never anything
else; the output never grows past ``limit``.
"""

from __future__ import annotations

HUFFMAN_TABLE_BYTES = 256
HUFFMAN_SYMBOLS = 512
HUFFMAN_BITS = 15
HUFFMAN_BLOCK = 65536
# Input left after symbol 256 that is still the end of the stream (the encoder's last words).
HUFFMAN_END_SLACK = 4


class XpressError(ValueError):
    """The buffer is not a well-formed XPRESS stream."""


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise XpressError(f"truncated at offset {pos}")
    return data[pos] | data[pos + 1] << 8


def _byte(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise XpressError(f"truncated at offset {pos}")
    return data[pos]


def _copy_match(out: bytearray, offset: int, length: int, limit: int) -> None:
    if offset > len(out):
        raise XpressError(f"match before the start of the output (offset {offset} at {len(out)})")
    length = min(length, limit - len(out))
    if length <= 0:
        return
    start = len(out) - offset
    if offset >= length:
        out += out[start : start + length]
        return
    # it overlaps what it writes: the last ``offset`` bytes repeated (a run)
    pattern = bytes(out[start:])
    out += (pattern * (length // offset + 1))[:length]


def plain_decompress(data: bytes, limit: int) -> bytes:
    """The bytes a Plain LZ77 stream decompresses to, at most ``limit`` of them ([MS-XCA] 2.4.4)."""
    out = bytearray()
    pos = flags = flag_count = 0
    half_byte = 0  # where the last shared length half byte is, 0: none pending
    while len(out) < limit:
        if flag_count == 0:
            if pos + 4 > len(data):
                break  # no flag word left: the end
            flags = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
            flag_count = 32
        flag_count -= 1
        if not flags >> flag_count & 1:
            if pos >= len(data):
                break
            out.append(data[pos])
            pos += 1
            continue
        if pos >= len(data):
            break  # a match flag with no input left: the end of the stream
        match = _u16(data, pos)
        pos += 2
        length, offset = match & 7, (match >> 3) + 1
        if length == 7:
            if half_byte == 0:
                length = _byte(data, pos) & 15
                half_byte = pos
                pos += 1
            else:
                length = data[half_byte] >> 4
                half_byte = 0
            if length == 15:
                length = _byte(data, pos)
                pos += 1
                if length == 255:
                    length = _u16(data, pos)
                    pos += 2
                    if length == 0:
                        if pos + 4 > len(data):
                            raise XpressError(f"truncated at offset {pos}")
                        length = int.from_bytes(data[pos : pos + 4], "little")
                        pos += 4
                    if length < 15 + 7:
                        raise XpressError(f"match length {length} below 22 at offset {pos}")
                    length -= 15 + 7
                length += 15
            length += 7
        _copy_match(out, offset, length + 3, limit)
    return bytes(out)


def _decoding_table(lengths: list[int]) -> tuple[list[int], list[int]]:
    """Canonical Huffman codes ([MS-XCA] 2.1.4.3): a 2**15-entry table from the top 15 bits of
    the stream to (symbol, its code length); -1 where no code is."""
    table = [-1] * (1 << HUFFMAN_BITS)
    code = 0
    for bits in range(1, HUFFMAN_BITS + 1):
        for symbol in range(HUFFMAN_SYMBOLS):
            if lengths[symbol] != bits:
                continue
            first = code << (HUFFMAN_BITS - bits)
            last = first + (1 << (HUFFMAN_BITS - bits))
            if last > len(table):
                raise XpressError("Huffman code lengths over-subscribed")
            table[first:last] = [symbol] * (last - first)
            code += 1
        code <<= 1
    return table, lengths


def huffman_decompress(data: bytes, limit: int) -> bytes:
    """The bytes an LZ77+Huffman stream decompresses to, at most ``limit`` of them ([MS-XCA] 2.2.4)."""
    out = bytearray()
    base = 0
    while len(out) < limit and base < len(data):
        if base + HUFFMAN_TABLE_BYTES + 4 > len(data):
            raise XpressError(f"truncated Huffman table at offset {base}")
        lengths = []
        for byte in data[base : base + HUFFMAN_TABLE_BYTES]:
            lengths += [byte & 15, byte >> 4]
        if not any(lengths):
            raise XpressError(f"empty Huffman table at offset {base}")
        table, _ = _decoding_table(lengths)
        pos = base + HUFFMAN_TABLE_BYTES
        bits = (_u16(data, pos) << 16 | _u16(data, pos + 2)) & 0xFFFFFFFF
        pos += 4
        extra = 16
        block_end = len(out) + HUFFMAN_BLOCK

        def consume(count: int) -> None:
            nonlocal bits, extra, pos
            bits = (bits << count) & 0xFFFFFFFF
            extra -= count
            if extra < 0:
                word = _u16(data, pos) if pos + 2 <= len(data) else 0
                bits |= (word << -extra) & 0xFFFFFFFF
                extra += 16
                pos += 2

        while len(out) < min(block_end, limit):
            symbol = table[bits >> (32 - HUFFMAN_BITS)]
            if symbol < 0:
                raise XpressError(f"no Huffman code for the bits at offset {pos}")
            consume(lengths[symbol])
            if symbol < 256:
                out.append(symbol)
                continue
            if symbol == 256 and pos >= len(data) - HUFFMAN_END_SLACK:
                return bytes(out)
            symbol -= 256
            length, offset_bits = symbol & 15, symbol >> 4
            if length == 15:
                length = _byte(data, pos)
                pos += 1
                if length == 255:
                    length = _u16(data, pos)
                    pos += 2
                    if length < 15:
                        raise XpressError(f"match length {length} below 15 at offset {pos}")
                    length -= 15
                length += 15
            offset = (bits >> (32 - offset_bits) if offset_bits else 0) + (1 << offset_bits)
            consume(offset_bits)
            _copy_match(out, offset, length + 3, limit)
        base = pos
    return bytes(out)
