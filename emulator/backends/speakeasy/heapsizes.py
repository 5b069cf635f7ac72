"""``HeapSize`` answers the size the block was asked for, as Windows' heap does.

Speakeasy maps each ``HeapAlloc`` block as a mapping of its own and its ``HeapSize`` answers
the mapping's size (37 bytes asked: 48), which an emulator check compares with the size asked
for. The sizes asked of kernel32's ``HeapAlloc`` / ``HeapReAlloc`` are kept by block (until
``HeapFree``) and ``HeapSize`` answers them; a block it does not know keeps Speakeasy's answer.
Where the blocks lie is still Speakeasy's (each a mapping of its own, not inside the heap's
region: docs/limitations.md).
"""

from __future__ import annotations

from typing import Any


class HeapSizes:
    def __init__(self, se: Any, x64: bool) -> None:
        self.se = se
        self.mask = (1 << (64 if x64 else 32)) - 1
        self.asked: dict[int, int] = {}  # block -> size asked for

    def install(self) -> None:
        for name, callback in (
            ("HeapAlloc", self._alloc),
            ("HeapReAlloc", self._realloc),
            ("HeapFree", self._free),
            ("HeapSize", self._size),
        ):
            self.se.add_api_hook(callback, "kernel32", name)

    def _alloc(self, _emu: Any, _api_name: str, orig: Any, argv: list[int]) -> Any:
        block = orig(argv)
        if block and len(argv) >= 3:
            self.asked[int(block) & self.mask] = argv[2] & self.mask
        return block

    def _realloc(self, _emu: Any, _api_name: str, orig: Any, argv: list[int]) -> Any:
        block = orig(argv)
        if block and len(argv) >= 4:
            self.asked.pop(argv[2] & self.mask, None)
            self.asked[int(block) & self.mask] = argv[3] & self.mask
        return block

    def _free(self, _emu: Any, _api_name: str, orig: Any, argv: list[int]) -> Any:
        if len(argv) >= 3:
            self.asked.pop(argv[2] & self.mask, None)
        return orig(argv)

    def _size(self, _emu: Any, _api_name: str, orig: Any, argv: list[int]) -> Any:
        size = orig(argv)
        if len(argv) >= 3 and size:
            return self.asked.get(argv[2] & self.mask, size)
        return size
