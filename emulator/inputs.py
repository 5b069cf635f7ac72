"""Files a user names: one place that opens them and says what is wrong with one it cannot read.

A sample, ``scenario.toml``, ``SHA256SUMS``, a trace and its blobs, a report, a baseline: each is
read through :func:`open_input` / :func:`read_input`, or looked at first with
:func:`file_problem`. A path that exists but is not a regular file (a folder, a named pipe, a
device, a socket) is refused by what it is, never read: reading a FIFO waits for a writer
forever (no timeout or signal ends that wait) and ``/dev/zero`` never ends. The file is opened
without blocking (``O_NONBLOCK``) and checked on the open descriptor, so what is checked is what
is read. A path that cannot be opened is named by its cause (no such file, a loop of symbolic
links, permission denied, a name too long), never "no such file" for all of them.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
NO_SUCH_FILE = "no such file"
NOT_REGULAR = "not a regular file"  # the end of the problem of a folder, a FIFO, a device, a socket


class InputFileError(ValueError):
    """``path`` cannot be read as a file; ``str()`` is ``"<path>: <problem>"`` (one line)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class InputTooLarge(InputFileError):
    """The file is larger than the limit it is read under (:func:`too_large`)."""


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"{kind}, {NOT_REGULAR}"


def _cause(err: OSError | ValueError) -> str:
    if isinstance(err, ValueError):  # a NUL byte in the path
        return "not a valid path"
    if err.errno == errno.ENOENT:
        return NO_SUCH_FILE
    if err.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if err.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ENOTDIR:
        return "a part of the path is not a folder"
    return (err.strerror or str(err)).lower()


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a regular file ("no such file", "a named pipe (FIFO), not a
    regular file", ...), or None if it is one. Looks only (stat); opens nothing."""
    try:
        mode = Path(path).stat().st_mode
    except (OSError, ValueError) as err:
        return _cause(err)
    return _not_regular(mode)


def too_large(path: str | os.PathLike[str], size: int, limit: int, raise_with: str | None = None) -> InputTooLarge:
    """The refusal of a file of ``size`` bytes over ``limit``: names the file, both sizes and,
    when the user can raise the limit, how (``raise_with``: "raise it with --max-trace-size")."""
    how = f"; {raise_with}" if raise_with else ""
    return InputTooLarge(path, f"file is {size} bytes, larger than the {limit}-byte limit{how}")


def open_input(path: str | os.PathLike[str], *, limit: int | None = None, raise_with: str | None = None) -> BinaryIO:
    """``path`` opened for reading in binary; :class:`InputFileError` if it is not a regular file,
    cannot be opened or (with ``limit``) is larger than ``limit`` bytes (``raise_with``: how the
    user raises it, for the message). Never blocks on a FIFO; checks the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as err:
        raise InputFileError(path, _cause(err)) from err
    try:
        status = os.fstat(fd)
        problem = _not_regular(status.st_mode)
        if problem is not None:
            raise InputFileError(path, problem)
        if limit is not None and status.st_size > limit:
            raise too_large(path, status.st_size, limit, raise_with)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | os.PathLike[str], *, limit: int | None = None, raise_with: str | None = None) -> bytes:
    """The bytes of the regular file ``path``; :class:`InputFileError` naming the cause if it
    cannot be read or (with ``limit``) is larger than ``limit`` bytes, refused before reading
    (``raise_with``: how the user raises the limit, for the message). At most ``limit`` bytes
    are read, even from a file that grows meanwhile."""
    with open_input(path, limit=limit, raise_with=raise_with) as handle:
        try:
            data = handle.read() if limit is None else handle.read(limit + 1)
        except OSError as err:  # EISDIR cannot happen here; EIO on a failing disk can
            raise InputFileError(path, _cause(err)) from err
        if limit is not None and len(data) > limit:  # it grew since it was opened
            raise too_large(path, max(len(data), os.fstat(handle.fileno()).st_size), limit, raise_with)
        return data
