"""``RtlDecompressBuffer`` / ``RtlDecompressBufferEx`` (LZNT1, and the XPRESS formats of
emulator/apis/xpress.py), which Speakeasy 2.0.0b9 has only in its kernel-mode ntoskrnl (LZNT1
only), and ``RtlGetCompressionWorkSpaceSize``.

The decompressor follows [MS-XCA] 2.5 (LZNT1): a stream of chunks, each a 16-bit header (bit 15:
compressed, bits 0-11: data size - 1) and up to 4096 bytes of output; a compressed chunk is groups
of a flag byte and eight tokens, a clear bit a literal byte, a set bit a 16-bit back reference
whose split between displacement and length depends on how much of the chunk has been written.
Malformed input ends with ``STATUS_BAD_COMPRESSION_BUFFER``, never an exception.

The output is remembered as a ``decompress`` buffer with the compressed bytes as its input, so
the stage graph can follow a payload through the call.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook
from emulator.apis.memory import MEM_COMMIT
from emulator.apis.xpress import XpressError, huffman_decompress, plain_decompress
from emulator.limits import MAX_DECOMPRESSED_BYTES

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_BAD_COMPRESSION_BUFFER = 0xC0000242
STATUS_UNSUPPORTED_COMPRESSION = 0xC000025F

COMPRESSION_FORMAT_LZNT1 = 0x0002
COMPRESSION_FORMAT_XPRESS = 0x0003
COMPRESSION_FORMAT_XPRESS_HUFF = 0x0004
FORMAT_NAMES = {
    COMPRESSION_FORMAT_LZNT1: "LZNT1",
    COMPRESSION_FORMAT_XPRESS: "XPRESS",
    COMPRESSION_FORMAT_XPRESS_HUFF: "XPRESS_HUFF",
}
# RtlGetCompressionWorkSpaceSize's answers (compress buffer, compress fragment), as Windows 10 gives them.
WORKSPACE_SIZES = {
    COMPRESSION_FORMAT_LZNT1: (0x1000 * 4, 0x1000),
    COMPRESSION_FORMAT_XPRESS: (0x11000, 0),
    COMPRESSION_FORMAT_XPRESS_HUFF: (0x1A000, 0),
}
COMPRESSION_FORMAT_MASK = 0x00FF
CHUNK_SIZE = 4096
# Compressed input read from the guest at most (a larger buffer is refused as malformed).
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


class Lznt1Error(ValueError):
    """The buffer is not a well-formed LZNT1 stream."""


def lznt1_decompress(data: bytes, limit: int | None = None) -> bytes:
    """The bytes an LZNT1 stream decompresses to, at most ``limit`` of them."""
    out = bytearray()
    pos = 0
    while pos + 2 <= len(data) and (limit is None or len(out) < limit):
        header = data[pos] | data[pos + 1] << 8
        if header == 0:
            break  # the end-of-stream marker
        size = (header & 0x0FFF) + 1
        body = data[pos + 2 : pos + 2 + size]
        if len(body) != size:
            raise Lznt1Error(f"chunk at offset {pos} runs past the end of the buffer")
        pos += 2 + size
        if header & 0x8000:
            out += _decompress_chunk(body, pos - size - 2)
        else:
            out += body
    return bytes(out if limit is None else out[:limit])


def _decompress_chunk(body: bytes, where: int) -> bytearray:
    chunk = bytearray()
    i = 0
    while i < len(body):
        flags = body[i]
        i += 1
        for bit in range(8):
            if i >= len(body):
                break
            if not flags >> bit & 1:
                chunk.append(body[i])
                i += 1
                continue
            if i + 2 > len(body):
                raise Lznt1Error(f"chunk at offset {where}: truncated back reference")
            token = body[i] | body[i + 1] << 8
            i += 2
            # The displacement takes as many bits as the chunk's written length needs, at least 4.
            shift = 12
            written = len(chunk) - 1
            while written >= 0x10:
                shift -= 1
                written >>= 1
            length = (token & ((1 << shift) - 1)) + 3
            displacement = (token >> shift) + 1
            if not chunk or displacement > len(chunk):
                raise Lznt1Error(f"chunk at offset {where}: back reference before the chunk start")
            if len(chunk) + length > CHUNK_SIZE:
                raise Lznt1Error(f"chunk at offset {where}: decompresses past {CHUNK_SIZE} bytes")
            start = len(chunk) - displacement
            for k in range(length):  # may overlap what it writes (a run)
                chunk.append(chunk[start + k])
    return chunk


@apihook("ntdll", "RtlDecompressBuffer", argc=6)
def rtl_decompress_buffer(api: GuestApi, argv: list[int]) -> int:
    # RtlDecompressBuffer(Format, UncompressedBuffer, UncompressedBufferSize, CompressedBuffer,
    #                     CompressedBufferSize, FinalUncompressedSize)
    return _decompress(api, *argv[:6])


@apihook("ntdll", "RtlDecompressBufferEx", argc=7)
def rtl_decompress_buffer_ex(api: GuestApi, argv: list[int]) -> int:
    # The same with a WorkSpace pointer (argv[6]) the decompressors here do not need.
    return _decompress(api, *argv[:6])


@apihook("ntdll", "RtlGetCompressionWorkSpaceSize", argc=3)
def rtl_get_compression_work_space_size(api: GuestApi, argv: list[int]) -> int:
    """RtlGetCompressionWorkSpaceSize(FormatAndEngine, CompressBufferWorkSpaceSize*,
    CompressFragmentWorkSpaceSize*): the sizes a caller allocates before (de)compressing."""
    fmt, buffer_ptr, fragment_ptr = argv
    fmt &= COMPRESSION_FORMAT_MASK
    if fmt in (0, 1):  # COMPRESSION_FORMAT_NONE, COMPRESSION_FORMAT_DEFAULT
        return STATUS_INVALID_PARAMETER
    if fmt not in WORKSPACE_SIZES:
        return STATUS_UNSUPPORTED_COMPRESSION
    buffer_size, fragment_size = WORKSPACE_SIZES[fmt]
    if buffer_ptr:
        api.write_u32(buffer_ptr, buffer_size)
    if fragment_ptr:
        api.write_u32(fragment_ptr, fragment_size)
    return STATUS_SUCCESS


def _committed_from(api: GuestApi, address: int, wanted: int) -> int:
    """How many bytes from ``address`` on are committed, counting to ``wanted`` at most."""
    at = address
    while at - address < wanted:
        region = api.query_memory(at)
        if region is None or region.state != MEM_COMMIT or region.base + region.size <= at:
            break
        at = region.base + region.size
    return min(at - address, wanted)


def _decompress(
    api: GuestApi, fmt: int, out_ptr: int, out_size: int, in_ptr: int, in_size: int, final_size_ptr: int
) -> int:
    fmt &= COMPRESSION_FORMAT_MASK
    if fmt not in FORMAT_NAMES:
        return STATUS_UNSUPPORTED_COMPRESSION
    out_size &= 0xFFFFFFFF
    in_size &= 0xFFFFFFFF
    if not out_ptr or not in_ptr or not final_size_ptr or in_size > MAX_COMPRESSED_BYTES:
        return STATUS_INVALID_PARAMETER
    data = api.read(in_ptr, in_size)
    # No more than the committed memory from out_ptr on and one byte (a longer output faults
    # writing there, as on Windows), nor than MAX_DECOMPRESSED_BYTES.
    out_size = min(out_size, _committed_from(api, out_ptr, min(out_size, MAX_DECOMPRESSED_BYTES)) + 1)
    out_size = min(out_size, MAX_DECOMPRESSED_BYTES)
    try:
        if fmt == COMPRESSION_FORMAT_LZNT1:
            result = lznt1_decompress(data, limit=out_size)
        elif fmt == COMPRESSION_FORMAT_XPRESS:
            result = plain_decompress(data, out_size)
        else:
            result = huffman_decompress(data, out_size)
    except (Lznt1Error, XpressError):
        return STATUS_BAD_COMPRESSION_BUFFER
    api.write(out_ptr, result)
    api.write_u32(final_size_ptr, len(result))
    if result:
        _services(api).recorder.remember_buffer(
            "decompress",
            out_ptr,
            result,
            ref=f"{api.qualified_name} ({FORMAT_NAMES[fmt]})",
            input_data=data,
            api=api.qualified_name,
        )
    return STATUS_SUCCESS
