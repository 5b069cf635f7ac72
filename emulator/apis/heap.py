"""Heap calls Speakeasy 2.0.0b9 has no user-mode handler for: ntdll ``RtlAllocateHeap``,
``RtlReAllocateHeap`` and ``RtlFreeHeap`` (kernel32's HeapAlloc family it has), and msvcrt
``realloc`` (it has malloc, calloc and free). Without them a guest calling one ended the run as
``unsupported_api``.

Blocks are mapped as Speakeasy maps its own heap blocks (memory tag ``api.heap.<api>``), so the
memory watch sees code run from them and the flow watch follows guest code writing into them
(emulator/backends/speakeasy/flow.py). A reallocation returns a new block holding the old one's
bytes, remembered as an ``api_copy`` buffer for lineage (after the flow watch has recorded how
guest code wrote the old block, if it did: a decoded block that moves keeps its decoder's pc).
Freeing leaves the block mapped (the project's handlers cannot unmap guest memory); the call
succeeds as on Windows.
"""

from __future__ import annotations

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

HEAP_ZERO_MEMORY = 0x00000008
HEAP_REALLOC_IN_PLACE_ONLY = 0x00000010
STATUS_NO_MEMORY = 0xC0000017
# Bytes zeroed or copied per guest write.
CHUNK = 0x10000
PAGE = 0x1000
# Blocks larger than this are refused (NULL), as a heap refuses what it cannot commit.
MAX_HEAP_BLOCK = 1 << 31


def _alloc(api: GuestApi, size: int, zero: bool) -> int:
    size &= (1 << 64) - 1
    if size > MAX_HEAP_BLOCK:
        return 0
    block = api.alloc(max(size, 1), f"api.heap.{api.api_name}")
    if zero:
        for done in range(0, size, CHUNK):
            api.write(block + done, b"\0" * min(CHUNK, size - done))
    return block


def _readable(api: GuestApi, address: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``address``, as far as they are mapped."""
    try:
        return api.read(address, size)
    except Exception:
        pass
    out = bytearray()
    while len(out) < size:
        step = min(PAGE - (address + len(out)) % PAGE, size - len(out))
        try:
            out += api.read(address + len(out), step)
        except Exception:
            break
    return bytes(out)


def _realloc(api: GuestApi, old: int, size: int, zero: bool) -> int:
    block = _alloc(api, size, zero)
    if not block:
        return 0
    data = _readable(api, old, size & ((1 << 64) - 1))
    recorder = _services(api).recorder
    if data and recorder.on_copy_from is not None:
        recorder.on_copy_from(old, len(data))
    for done in range(0, len(data), CHUNK):
        api.write(block + done, data[done : done + CHUNK])
    if data:
        recorder.remember_buffer(
            "api_copy",
            block,
            data,
            ref=api.qualified_name,
            input_data=data,
            input_address=old,
            api=api.qualified_name,
        )
    return block


@apihook("ntdll", "RtlAllocateHeap", argc=3)
def rtl_allocate_heap(api: GuestApi, argv: list[int]) -> int:
    _heap, flags, size = argv
    return _alloc(api, size, bool(flags & HEAP_ZERO_MEMORY))


@apihook("ntdll", "RtlReAllocateHeap", argc=4)
def rtl_reallocate_heap(api: GuestApi, argv: list[int]) -> int:
    _heap, flags, old, size = argv
    if not old or flags & HEAP_REALLOC_IN_PLACE_ONLY:
        return 0
    return _realloc(api, old, size, bool(flags & HEAP_ZERO_MEMORY))


@apihook("ntdll", "RtlFreeHeap", argc=3)
def rtl_free_heap(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("msvcrt", "realloc", argc=2, conv="cdecl")
def crt_realloc(api: GuestApi, argv: list[int]) -> int:
    old, size = argv
    if not old:
        return _alloc(api, size, False)
    if not size:
        return 0
    return _realloc(api, old, size, False)
