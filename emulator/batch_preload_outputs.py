"""Imported by a local batch pool's fork server when the workers and their emulation children
outnumber the cores (see ``emulator.batch.preload_modules``), never otherwise: importing it
imports the analysis, drawing and export libraries in that process, as a replay does while its
child emulates (:func:`emulator.replay._prepare_outputs`, under the same guard: no socket, no
write). The workers forked from it skip that import (about 1.4 s of CPU each), and write their
exports themselves after the drawing (``emulator.output.EXPORTS_BESIDE_DRAWING``): no core is
free for a forked copy to write them beside it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _import_output_libraries() -> None:
    import emulator.output

    emulator.output.EXPORTS_BESIDE_DRAWING = False
    try:
        from emulator.replay import _prepare_outputs

        _prepare_outputs(Path(os.devnull))  # writes allowed only under /dev/null: none
    except Exception:  # noqa: BLE001 - the fork server must start; each replay imports them itself
        pass


_import_output_libraries()
