"""A Dask worker preload: each worker warms itself for chainreplay batches as it starts.

    dask worker tcp://SCHEDULER:8786 --preload emulator.batch_dask
    LocalCluster(..., preload=["emulator.batch_dask"])

Dask calls :func:`dask_setup` in every worker process before the worker joins the cluster: it
imports the engine and reads its tables (:func:`emulator.replay.warm_engine`), then imports the
analysis, drawing and export libraries (as a replay does beside its first emulation child, under
the same guard: no socket, no write). A worker started without it pays both inside the first
batch it serves: the batch's ``Client.run`` warms the engine (~0.9 s of CPU per worker) and its
first replay imports the libraries (~0.6-0.9 s); a worker started with it pays them once, at its
start, whatever the number of batches, and the batch's own warm-up finds it warm (a few ms).
Each replay still runs in its own contained child, forked from the warm worker. A warm-up that
fails is logged and the worker starts all the same (a batch then warms it, or reports why its
replays fail).
"""

from __future__ import annotations

import logging
from typing import Any


def dask_setup(worker: Any = None) -> None:
    try:
        from emulator.batch import warm_worker

        warm_worker(outputs=True)
    except Exception:  # noqa: BLE001 - the worker must start; each batch warms it (or its replays fail) itself
        logging.getLogger(__name__).warning("chainreplay's worker warm-up failed", exc_info=True)
