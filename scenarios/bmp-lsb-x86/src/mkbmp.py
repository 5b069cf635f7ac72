"""Hide a payload in the least significant bits of a 24-bit BMP's pixels (bmp-lsb-x86's build).

usage: mkbmp.py PAYLOAD OUT.bmp. The first 32 pixel bytes carry the payload's length (LSB first),
then one bit of the payload per pixel byte, bit 0 of byte 0 first. The picture is a gradient
(deterministic); its size is the smallest square that holds the bits.
"""

import struct
import sys
from pathlib import Path


def main(payload_path: str, out_path: str) -> None:
    payload = Path(payload_path).read_bytes()
    bits = [(len(payload) >> i) & 1 for i in range(32)]
    for byte in payload:
        bits.extend((byte >> i) & 1 for i in range(8))
    side = 8
    while side * side * 3 < len(bits):
        side += 8
    row = (side * 3 + 3) & ~3
    pixels = bytearray()
    for y in range(side):
        line = bytearray()
        for x in range(side):
            line += bytes(((x * 255) // side, (y * 255) // side, ((x + y) * 127) // side))
        pixels += line + bytes(row - len(line))
    index = 0
    for y in range(side):
        for k in range(side * 3):
            if index == len(bits):
                break
            at = y * row + k
            pixels[at] = (pixels[at] & 0xFE) | bits[index]
            index += 1
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    Path(out_path).write_bytes(header + info + pixels)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
