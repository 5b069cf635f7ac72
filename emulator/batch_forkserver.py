"""The local pool's fork server, forked from the batch's own process instead of started afresh.

multiprocessing starts its fork server as a new interpreter (``python -c "from
multiprocessing.forkserver import main; ..."``), which imports again everything the batch's
process has imported already (the project's models, pydantic, the replay module: ~0.2 s of one
core) before its preload warms the engine, and every worker and the first emulation children
wait for that. Forked from the batch's process, the server starts with those modules: its
preload begins at once.

Forking is safe only from a process with one thread (a lock another thread holds at the fork
stays held in the child forever): :func:`start` forks only then, and otherwise leaves the start
to multiprocessing. And only from a process whose state the batch owns (the command line's;
``run_batch(fork_server_here=True)``): the server closes every descriptor it does not serve with,
so a caller's open file or logging file handler would live on in it and its workers as an object
over a closed descriptor, whose number a later open could reuse.

The forked server is what ``multiprocessing.forkserver.main`` is in a new interpreter: it keeps
only standard input/output/error, its listening socket and its end of the "alive" pipe, takes
the default signal dispositions, and serves the same requests; the pool's workers are forked
from it as from the other, so they start with the same modules and the preload's warm engine.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

# Whether a local batch's fork server may be forked from the batch's process (when it has one
# thread); False: multiprocessing starts it as a new interpreter, as it does by default.
FORK_FROM_BATCH = True
# Signals whose handlers the batch's process may have set (the command line's termination
# handling): the fork server takes the defaults, as a new interpreter would.
_DEFAULT_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGALRM")


def can_fork() -> bool:
    """Whether this process may fork the fork server: Linux-like fork, and one thread."""
    linux = sys.platform.startswith("linux") and hasattr(os, "fork")
    return FORK_FROM_BATCH and linux and threading.active_count() == 1


def start(preload: list[str]) -> bool:
    """Fork multiprocessing's fork server from this process with ``preload`` (module names, as
    ``set_forkserver_preload``); True if it did. False (nothing done): a server runs already, or
    :func:`can_fork` says no; multiprocessing then starts one itself when the pool needs it."""
    from multiprocessing import connection, forkserver, resource_tracker, util

    server: Any = forkserver._forkserver  # type: ignore[attr-defined]
    if server._forkserver_pid is not None or not can_fork():
        return False
    resource_tracker.ensure_running()  # as ensure_running does: the workers get its descriptor
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):  # type: ignore[attr-defined]
            Path(address).chmod(0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(alive_r)
            os.close(alive_w)
            raise
        if pid == 0:  # the fork server: never returns
            _serve(listener.fileno(), alive_r, [name for name in preload if name != "__main__"])
        os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return True


def _serve(listener_fd: int, alive_r: int, preload: list[str]) -> None:
    """In the forked server: become what a new interpreter running ``forkserver.main`` is."""
    code = 0
    try:
        from multiprocessing import forkserver

        from emulator import batch_prestart, prestart
        from emulator.sandbox import end_with_parent

        # Only these: the batch's end of the alive pipe would keep the server alive forever.
        batch_prestart.close_descriptors_except({0, 1, 2, listener_fd, alive_r})
        end_with_parent()  # the workers hold the alive pipe too: a killed batch ends them this way
        with suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        for name in _DEFAULT_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                with suppress(ValueError, OSError):
                    signal.signal(number, signal.SIG_DFL)
        prestart._started = None  # a child the batch's process pre-started is the batch's own
        for name in preload:
            sys.modules.pop(name, None)  # imported here for what importing them does (a warm-up)
        forkserver.main(listener_fd, alive_r, preload)  # type: ignore[attr-defined]
    except SystemExit:
        pass  # every client is gone: the end
    except BaseException:  # noqa: BLE001 - never return into the batch's code
        code = 1
    finally:
        os._exit(code)
