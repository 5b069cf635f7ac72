"""Logging for -d: configured here only, never at import."""

from __future__ import annotations

import logging
import sys

# Loggers -d turns to DEBUG: chainreplay's own and the engine's. Everything else (matplotlib's
# font manager, ...) stays at WARNING.
DEBUG_LOGGERS = ("emulator", "speakeasy")


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never end the run
            self.handleError(record)


_HANDLER = _StderrHandler()


def _configure_logging(debug: bool) -> None:
    """Logging is configured here only (no module changes it at import): without ``-d`` nothing
    below CRITICAL is shown; with it, chainreplay's and Speakeasy's debug logs."""
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.WARNING if debug else logging.CRITICAL)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.NOTSET)
