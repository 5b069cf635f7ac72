"""Mailslots: one-way message queues a process reads what any process posts to (``\\\\.\\mailslot\\NAME``).

A loader can pass its payload through one: ``CreateMailslot`` makes the slot (the reading end),
``CreateFile`` of its name opens a writing end, each ``WriteFile`` there posts one message, and
``GetMailslotInfo`` + ``ReadFile`` on the slot take them back in order, one message per read.
Speakeasy had none of it: ``CreateMailslotA/W`` and ``GetMailslotInfo`` were served from their
signature (a handle that named nothing) and ``CreateFile`` of the slot's name found no file, so
the payload never arrived, with only a ``signature_emulated`` note.

Here a mailslot is one of Speakeasy's pipe objects (its bytes in order), its slot handle the
pipe's and each writing end a second handle to the same pipe; the sizes of the messages waiting
are kept, so ``GetMailslotInfo`` answers the next message's size and the count, and a
``ReadFile`` takes exactly one message (a buffer too small for it fails with
``ERROR_INSUFFICIENT_BUFFER``, the message left; none waiting: ``ERROR_SEM_TIMEOUT`` at once,
whatever the slot's read timeout). What goes through is traced as a pipe's is (sources.py: a
read is an API copy from where the writer had the bytes). Not modelled: the 424-byte limit of
messages to other computers (``\\\\*\\``, ``\\\\DOMAIN\\``: no network), read timeouts that wait,
other processes' slots (one file system: every process sees every slot).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import speakeasy.winenv.arch as se_arch

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat

STATE = "_chainreplay_mailslots"
LOCAL_PREFIX = "\\\\.\\mailslot\\"
MAILSLOT_NO_MESSAGE = 0xFFFFFFFF
INVALID_HANDLE_32 = 0xFFFFFFFF
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_NAME = 123
ERROR_ALREADY_EXISTS = 183
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_SEM_TIMEOUT = 121
MAX_NAME_CHARS = 256
_wrapped = False


@dataclass
class Mailslot:
    name: str
    pipe: Any
    max_message: int  # 0: any size
    timeout: int
    messages: list[int] = field(default_factory=list)  # sizes of the messages waiting, oldest first


class Mailslots:
    def __init__(self, se: Any, emu: Any, memory: GuestMemory) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.slots: dict[str, Mailslot] = {}  # lower-cased name -> slot
        self.readers: dict[int, Mailslot] = {}  # slot handle -> slot
        self.writers: dict[int, Mailslot] = {}  # writing-end handle -> slot

    def install(self) -> None:
        setattr(self.emu, STATE, self)
        call_conv = se_arch.CALL_CONV_STDCALL
        for name in ("CreateMailslotA", "CreateMailslotW"):
            self.se.add_api_hook(self._create, "kernel32", name, argc=4, call_conv=call_conv)
        self.se.add_api_hook(self._info, "kernel32", "GetMailslotInfo", argc=5, call_conv=call_conv)
        self.se.add_api_hook(self._set_info, "kernel32", "SetMailslotInfo", argc=2, call_conv=call_conv)

    def _create(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # HANDLE CreateMailslot(lpName, nMaxMessageSize, lReadTimeout, lpSecurityAttributes)
        wide = api_name.endswith("W")
        name = self._string(argv[0], wide)
        if not is_mailslot_name(name) or not name[len(LOCAL_PREFIX) :]:
            emu.set_last_error(ERROR_INVALID_NAME)
            return self._invalid()
        if name.lower() in self.slots:
            emu.set_last_error(ERROR_ALREADY_EXISTS)
            return self._invalid()
        handle = int(emu.pipe_open(name, 0, 1, argv[1] & 0xFFFFFFFF, argv[1] & 0xFFFFFFFF) or 0)
        if not handle:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return self._invalid()
        slot = Mailslot(name, emu.pipe_get(handle), argv[1] & 0xFFFFFFFF, argv[2] & 0xFFFFFFFF)
        self.slots[name.lower()] = slot
        self.readers[handle] = slot
        emu.set_last_error(ERROR_SUCCESS)
        return handle

    def open_writer(self, name: str) -> int | None:
        """A writing end of the slot ``name`` (CreateFile of it), None if there is no such slot."""
        slot = self.slots.get(name.lower())
        if slot is None:
            return None
        handle = int(slot.pipe.get_handle())
        self.emu.fileman.pipe_handles[handle] = slot.pipe
        self.writers[handle] = slot
        return handle

    def _info(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # BOOL GetMailslotInfo(hMailslot, lpMaxMessageSize, lpNextSize, lpMessageCount, lpReadTimeout)
        slot = self.readers.get(argv[0])
        if slot is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        next_size = slot.messages[0] if slot.messages else MAILSLOT_NO_MESSAGE
        values = (slot.max_message, next_size, len(slot.messages), slot.timeout)
        for pointer, value in zip(argv[1:5], values, strict=True):
            if pointer:
                self.memory.write(pointer, value.to_bytes(4, "little"))
        emu.set_last_error(ERROR_SUCCESS)
        return 1

    def _set_info(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # BOOL SetMailslotInfo(hMailslot, lReadTimeout)
        slot = self.readers.get(argv[0])
        if slot is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        slot.timeout = argv[1] & 0xFFFFFFFF
        emu.set_last_error(ERROR_SUCCESS)
        return 1

    # -- ReadFile and WriteFile (called by sources.py's taps on them) -------------------------

    def posted(self, handle: int, size: int) -> None:
        """A write of ``size`` bytes on ``handle`` succeeded: a message, if it is a writing end."""
        slot = self.writers.get(handle)
        if slot is not None and size:
            slot.messages.append(size)

    def read_limit(self, handle: int, size: int) -> tuple[int, int | None]:
        """(bytes the read of ``size`` on ``handle`` takes, the error it fails with or None):
        one message from a slot; anything else as asked."""
        slot = self.readers.get(handle)
        if slot is None:
            return size, None
        if not slot.messages:
            return 0, ERROR_SEM_TIMEOUT
        if size < slot.messages[0]:
            return 0, ERROR_INSUFFICIENT_BUFFER
        return slot.messages[0], None

    def is_slot(self, handle: int) -> bool:
        """Whether ``handle`` is a mailslot's reading end."""
        return handle in self.readers

    def taken(self, handle: int) -> None:
        """A read on ``handle`` took its message."""
        slot = self.readers.get(handle)
        if slot is not None and slot.messages:
            slot.messages.pop(0)

    def _string(self, address: int, wide: bool) -> str:
        from emulator.backends.speakeasy.sources import read_c_string  # sources.py reads these slots

        if not address:
            return ""
        raw = read_c_string(self.memory, address, wide, MAX_NAME_CHARS * (2 if wide else 1))
        return raw.decode("utf-16-le" if wide else "latin-1", "replace")

    def _invalid(self) -> int:
        return INVALID_HANDLE_32 if self.memory.ptr_size == 4 else 0xFFFFFFFFFFFFFFFF


def is_mailslot_name(name: str) -> bool:
    return name.lower().startswith(LOCAL_PREFIX)


def mailslots_of(emu: Any) -> Mailslots | None:
    state = getattr(emu, STATE, None)
    return state if isinstance(state, Mailslots) else None


def _opening(func: Any) -> Any:
    """Speakeasy's CreateFile, opening a writing end of a mailslot for its name."""

    @functools.wraps(func)
    def handler(self: Any, emu: Any, argv: Any, ctx: Any = None, *rest: Any) -> Any:
        slots = mailslots_of(emu)
        if slots is not None and argv and argv[0]:
            try:
                name = self.read_mem_string(argv[0], self.get_char_width(ctx))
            except Exception:
                name = ""
            if is_mailslot_name(name):
                handle = slots.open_writer(name)
                emu.set_last_error(ERROR_SUCCESS if handle else ERROR_FILE_NOT_FOUND)
                return handle or INVALID_HANDLE_32
        return func(self, emu, argv, ctx, *rest)

    return handler


def wrap_create_file() -> None:
    """Wrap Speakeasy's CreateFile handler (once per process, before handler classes are scanned)."""
    global _wrapped
    if _wrapped:
        return
    _wrapped = True
    from speakeasy.winenv.api.usermode import kernel32

    compat.wrap_api_handler(kernel32.Kernel32, "CreateFile", _opening)


def install(se: Any, emu: Any, memory: GuestMemory) -> Mailslots:
    slots = Mailslots(se, emu, memory)
    slots.install()
    return slots
