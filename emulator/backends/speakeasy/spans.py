"""Sorted, disjoint [start, end) address spans: the bookkeeping behind the engine's free-range
search (emulator/backends/speakeasy/compat.py keeps one up to date as the engine maps memory)."""

from __future__ import annotations

import bisect


class SpanSet:
    """Address ranges as sorted, disjoint ``[start, end)`` spans; adding merges, removing splits."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []

    def add(self, start: int, end: int) -> None:
        spans = self.spans
        index = bisect.bisect_left(spans, (start, end))
        if index and spans[index - 1][1] >= start:
            index -= 1
        merged_start, merged_end, stop = start, end, index
        while stop < len(spans) and spans[stop][0] <= merged_end:
            merged_start = min(merged_start, spans[stop][0])
            merged_end = max(merged_end, spans[stop][1])
            stop += 1
        spans[index:stop] = [(merged_start, merged_end)]

    def remove(self, start: int, end: int) -> None:
        kept: list[tuple[int, int]] = []
        for begin, stop in self.spans:
            if stop <= start or begin >= end:
                kept.append((begin, stop))
                continue
            if begin < start:
                kept.append((begin, start))
            if stop > end:
                kept.append((end, stop))
        self.spans = kept
