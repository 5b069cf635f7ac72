"""The flow watch's bounds on heap blocks (emulator/backends/speakeasy/flow.py), with the hooks
recorded instead of added to Unicorn. The watch's effect on real replays is tested by the
generality chains (tests/test_lineage.py: file-heap-cipher, custom-cipher, ...)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from emulator.backends.speakeasy import flow
from emulator.events import ApiCall
from emulator.plan import ExportCall
from emulator.recorder import Recorder
from emulator.replay import emulate
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


class Hooks:
    """Stands in for compat.RangeHooks: which ranges are hooked now."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[int, int]] = {}
        self._next = 1

    def add(self, begin: int, end: int) -> int:
        handle, self._next = self._next, self._next + 1
        self.live[handle] = (begin, end)
        return handle

    def remove(self, handle: int) -> None:
        del self.live[handle]


def watch() -> tuple[flow.FlowWatch, Hooks]:
    w = flow.FlowWatch(emu=None, memory=None, recorder=Recorder())  # type: ignore[arg-type]
    w.reads, writes = Hooks(), Hooks()  # type: ignore[assignment]
    w.writes = writes  # type: ignore[assignment]
    return w, writes


def test_small_and_huge_heap_blocks_are_not_watched() -> None:
    w, writes = watch()
    w.watch_heap(0x10000, flow.HEAP_WATCH_MIN_BYTES - 1)
    w.watch_heap(0x20000, flow.MAX_HEAP_WATCH_BYTES + 1)
    assert not writes.live
    w.watch_heap(0x30000, flow.HEAP_WATCH_MIN_BYTES)
    assert list(writes.live.values()) == [(0x30000, 0x30000 + flow.HEAP_WATCH_MIN_BYTES - 1)]


def test_the_oldest_heap_block_goes_past_the_caps() -> None:
    w, writes = watch()
    for i in range(flow.MAX_HEAP_WATCHES + 3):
        w.watch_heap(0x100000 + i * 0x1000, 0x100)
    watched = sorted(begin for begin, _ in writes.live.values())
    assert watched == [0x100000 + i * 0x1000 for i in range(3, flow.MAX_HEAP_WATCHES + 3)]
    big = flow.MAX_HEAP_WATCH_BYTES // 2 + 1
    w.watch_heap(0x10000000, big)
    w.watch_heap(0x20000000, big)
    assert sorted(begin for begin, _ in writes.live.values()) == [0x20000000]
    assert w.heap_bytes == big


def test_an_unwritten_heap_block_is_let_go_after_its_api_calls() -> None:
    w, writes = watch()
    w.watch_heap(0x40000, 0x200)
    w.watch_region(0x50000, 0x200)  # VirtualAlloc: no expiry
    for _ in range(flow.HEAP_WATCH_CALLS - 1):
        w._before_api_call()
    assert len(writes.live) == 2
    w._before_api_call()
    assert list(writes.live.values()) == [(0x50000, 0x501FF)]
    assert w.heap == [] and w.heap_bytes == 0


def test_a_freed_heap_block_leaves_the_bounds() -> None:
    w, writes = watch()
    w.watch_heap(0x40000, 0x200)
    w.forget_region(0x40000)
    assert not writes.live and w.heap == [] and w.heap_bytes == 0


def test_a_long_stretch_leaves_the_slow_memory_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """RC4 over 256 KiB in one stretch that keeps the flow watch's hooks armed (READ_WINDOW made
    unreachable): after SLOW_PATH_BYTES of code the watch lets go and the stretch goes on on fast
    translations, with the same result. Without that bound it runs about 7x slower."""
    plan = load_scenario(ROOT / "bench" / "scenarios" / "rc4")
    plan = plan.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[256 * 1024])]})

    def run() -> tuple[float, list[str]]:
        # The slow path runs Python hooks that allocate: with the heap earlier tests left behind
        # in this process, the collector's full passes would dominate, so the heap is set aside.
        gc.collect()
        gc.freeze()
        try:
            start = time.thread_time()
            recording = emulate(plan)
            spent = time.thread_time() - start
        finally:
            gc.unfreeze()
        return spent, [" ".join(e.args) for e in recording.events if isinstance(e, ApiCall) and "Debug" in e.api]

    normal, expected = run()
    let_go = []
    original = flow.FlowWatch.let_go_for_now

    def spy(self: flow.FlowWatch) -> None:
        let_go.append(self.hooks_armed())
        original(self)
        assert not self.hooks_armed()

    monkeypatch.setattr(flow, "READ_WINDOW", 1 << 62)
    monkeypatch.setattr(flow.FlowWatch, "let_go_for_now", spy)
    bounded, got = run()
    assert let_go and all(let_go)
    assert got == expected and "checksum" in got[0]
    assert bounded < 3 * normal, (bounded, normal)  # this thread's CPU


def test_armed_hooks_are_counted_and_records_are_bounded() -> None:
    w, writes = watch()
    w.watch_region(0x50000, 0x200)
    w.watch_heap(0x60000, 0x200)
    assert w.hooks_armed() and w.armed_regions == 2
    w.let_go_for_now()
    assert not w.hooks_armed() and not writes.live
    w._before_api_call()  # the next API call puts the paused hooks back
    assert w.armed_regions == 2 and len(writes.live) == 2
    w.forget_region(0x50000)
    w.forget_region(0x60000)
    assert not w.hooks_armed() and not writes.live
    for i in range(flow.MAX_RECORDS + 5):
        w.records[i] = flow._Record(0x100, 0, "s0", [])
        w.stretch.written[i] = flow._Written(i, 0x100, 0, "s0")
    w.end_stretch(retranslate=False)
    assert len(w.records) == flow.MAX_RECORDS
