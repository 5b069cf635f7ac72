"""Containment enforced while a replay runs: no host network, no writes outside the output folder.

A Python audit hook refuses socket connects and name lookups and any file opened for writing
outside the allowed folder. The emulation child allows no writes at all: it streams what it
records to the parent, which is the only writer of the output folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

NETWORK_EVENTS = {
    "socket.connect",
    "socket.connect_ex",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}
NAME_LOOKUP_EVENTS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class ContainmentViolation(PermissionError):
    """The replay tried to reach the host network or write outside its output folder."""


@dataclass
class Guard:
    allowed_write_root: Path | None
    active: bool = False
    sockets_blocked: int = 0
    lookups_blocked: int = 0
    writes_blocked: int = 0
    violations: list[str] = field(default_factory=list)

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active:
            return
        if event in NETWORK_EVENTS:
            if event in NAME_LOOKUP_EVENTS:
                self.lookups_blocked += 1
            else:
                self.sockets_blocked += 1
            self._refuse(f"{event} {args[1:2]!r}")
        elif event == "open" and len(args) >= 3 and _is_write(args[1], args[2]):
            path = args[0]
            if isinstance(path, int):
                return
            if not self._allowed(Path(os.fsdecode(path))):  # type: ignore[arg-type]
                self.writes_blocked += 1
                self._refuse(f"write to {os.fsdecode(path)!r}")  # type: ignore[arg-type]

    def _allowed(self, path: Path) -> bool:
        if self.allowed_write_root is None:
            return False
        try:
            resolved = path.resolve()
        except OSError:
            return False
        return resolved.is_relative_to(self.allowed_write_root)

    def _refuse(self, what: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(what)
        raise ContainmentViolation(f"containment: refused {what}")


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and flags >= 0 and bool(flags & WRITE_FLAGS)


_GUARDS: list[Guard] = []


def _dispatch(event: str, args: tuple[object, ...]) -> None:
    for guard in _GUARDS:
        guard(event, args)


_installed = False


def install(guard: Guard) -> Guard:
    """Activate ``guard`` (audit hooks cannot be removed; one dispatcher serves every guard)."""
    global _installed
    if not _installed:
        sys.addaudithook(_dispatch)
        _installed = True
    _GUARDS.append(guard)
    guard.active = True
    return guard


def uninstall(guard: Guard) -> None:
    guard.active = False
    if guard in _GUARDS:
        _GUARDS.remove(guard)
