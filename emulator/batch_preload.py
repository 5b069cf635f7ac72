"""Imported by a local batch pool's fork server (multiprocessing's forkserver preload), never
otherwise: importing it warms the engine (:func:`emulator.replay.warm_engine`) in that process.

The pool's workers are forked from the fork server, so they start with the engine imported and
its tables read: ``-j N`` pays that start-up once instead of once per worker, and the workers
share the tables' memory until they write it. Each worker still runs ``warm_worker`` (nearly
free when warm), so a fork server started without this preload gives the same workers.
Before it warms the engine it starts the emulation children of the batch's first targets
(emulator/batch_prestart.py), which the workers then adopt.
"""

from __future__ import annotations


def _warm() -> None:
    try:
        from emulator.sandbox import end_with_parent

        end_with_parent()  # the workers hold the alive pipe too: a killed batch ends them this way
    except Exception:  # noqa: BLE001 - the fork server must start
        pass
    try:
        # The engine's import and the first of its tables (the signature database), which every
        # emulation child needs; then the first targets' emulation children, so that they emulate
        # beside the rest of the warm-up and the import of the output libraries rather than after
        # them (emulator/batch_prestart.py), without importing the engine again each.
        from emulator.batch_prestart import start_from_environment
        from emulator.lifecycle import collector_paused
        from emulator.precompiled import serving

        with collector_paused(), serving():
            from emulator.backends.speakeasy import warm_steps

            next(iter(warm_steps()))()
        start_from_environment()
    except Exception:  # noqa: BLE001 - the workers fork their own children
        pass
    try:
        from emulator.replay import warm_engine

        warm_engine()
    except Exception:  # noqa: BLE001 - the fork server must start; each worker warms itself
        pass


_warm()
