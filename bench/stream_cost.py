#!/usr/bin/env python3
"""What streaming every event on its own costs (issue 14): 100,000 ApiCall events pickled and
written to a pipe one by one (what the emulation child does now, so none is lost if it dies)
against batches of 512 (what it did). Prints the sender's wall and CPU time per event.

    python bench/stream_cost.py
"""

import multiprocessing as mp
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emulator.events import ApiCall  # noqa: E402

N = 100_000
events = [ApiCall(seq=i, stage="s0", api="kernel32.GetCurrentThreadId", args=[], ret=hex(1234)) for i in range(N)]


def reader(conn, w):
    w.close()
    n = 0
    try:
        while True:
            conn.recv_bytes()
            n += 1
    except EOFError:
        pass


def run(batch):
    ctx = mp.get_context("fork")
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=reader, args=(r, w))
    p.start()
    r.close()
    t = time.perf_counter()
    c = time.process_time()
    if batch == 1:
        for e in events:
            w.send_bytes(pickle.dumps(("e", e, {}), protocol=5))
    else:
        for i in range(0, N, batch):
            w.send_bytes(pickle.dumps(("events", events[i : i + batch], {}), protocol=5))
    wall = time.perf_counter() - t
    cpu = time.process_time() - c
    w.close()
    p.join()
    return wall, cpu


for b in (512, 1, 512, 1):
    wall, cpu = run(b)
    line = f"batch {b:4}: sender wall {wall:.3f} s, sender CPU {cpu:.3f} s, {cpu / N * 1e6:.2f} us CPU per event"
    print(line, flush=True)  # noqa: T201 - a benchmark script
