"""Transactional NTFS (TxF) and the Kernel Transaction Manager's transactions, as loaders use them.

Transacted hollowing and process doppelganging write their payload into a file created inside a
KTM transaction (``CreateTransaction`` or ``NtCreateTransaction``, then ``CreateFileTransacted``),
make a section of that file, and roll the transaction back: the file never exists outside the
transaction, but the section (and every view of it) keeps the bytes, which then run. Speakeasy
had none of these: ``CreateTransaction`` and ``CreateFileTransactedA/W`` were served from their
signature (a handle that named nothing), so the ``WriteFile`` failed and the loader stopped there,
with nothing said but two ``signature_emulated`` notes.

Here a transaction is an object with a handle. ``CreateFileTransacted`` opens or creates the file
as ``CreateFile`` does (Speakeasy's handler: the same file events, the same last errors), and the
transaction remembers what the file was before it (absent, or its bytes). ``RollbackTransaction``
(``NtRollbackTransaction``) puts every file it touched back: one it created is deleted (a file
``delete`` event), one that existed gets its bytes back; views already mapped keep what they
hold, as sections of the transacted file do on Windows. ``CommitTransaction``
(``NtCommitTransaction``) keeps the files as they are. Other processes do not see a file inside
its transaction on Windows; here they do (one process's files are everyone's in the emulator:
docs/limitations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import speakeasy.winenv.arch as se_arch
from speakeasy.windows import objman
from speakeasy.winenv.api.api import ApiContext, HandlerArgs

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat
from emulator.backends.speakeasy.sources import read_c_string
from emulator.events import FileAccess
from emulator.recorder import Recorder

INVALID_HANDLE_VALUE = 0xFFFFFFFFFFFFFFFF
ERROR_INVALID_HANDLE = 6
ERROR_SUCCESS = 0
STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
MAX_PATH_CHARS = 32767  # the longest path a \\?\ name can give


class KtmTransaction(objman.Event):
    """A KTM transaction (an object with a handle; ``changes`` what its files were before it)."""


@dataclass
class _Changes:
    # lower-cased path -> (path as opened, its bytes before the transaction, None if it did not exist)
    files: dict[str, tuple[str, bytes | None]] = field(default_factory=dict)


class Transactions:
    def __init__(self, se: Any, memory: GuestMemory, recorder: Recorder) -> None:
        self.se = se
        self.memory = memory
        self.recorder = recorder
        self.x64 = memory.ptr_size == 8
        self._changes: dict[int, _Changes] = {}  # id of the transaction object -> its files

    def install(self) -> None:
        add = self.se.add_api_hook
        add(self._create_transaction, "ktmw32", "CreateTransaction", argc=7)
        add(
            lambda emu, name, orig, argv: self._end(emu, argv[0], rollback=True),
            "ktmw32",
            "RollbackTransaction",
            argc=1,
        )
        add(
            lambda emu, name, orig, argv: self._end(emu, argv[0], rollback=False), "ktmw32", "CommitTransaction", argc=1
        )
        for prefix in ("Nt", "Zw"):
            add(self._nt_create_transaction, "ntdll", f"{prefix}CreateTransaction", argc=10)
            add(self._nt_end(rollback=True), "ntdll", f"{prefix}RollbackTransaction", argc=2)
            add(self._nt_end(rollback=False), "ntdll", f"{prefix}CommitTransaction", argc=2)
        for name in ("CreateFileTransactedA", "CreateFileTransactedW"):
            add(self._create_file_transacted, "kernel32", name, argc=10, call_conv=se_arch.CALL_CONV_STDCALL)

    # -- transactions ---------------------------------------------------------------------------

    def _new(self, emu: Any) -> int:
        transaction = emu.om.new_object(KtmTransaction)
        self._changes[id(transaction)] = _Changes()
        return compat.new_handle_to(emu, transaction)

    def _of(self, emu: Any, handle: int) -> _Changes | None:
        obj = compat.object_of_handle(emu, handle)
        return self._changes.get(id(obj)) if isinstance(obj, KtmTransaction) else None

    def _create_transaction(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # HANDLE CreateTransaction(sa, uow, options, isolation level, flags, timeout, description)
        handle = self._new(emu)
        emu.set_last_error(ERROR_SUCCESS)
        return handle or self._invalid()

    def _nt_create_transaction(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # NTSTATUS NtCreateTransaction(PHANDLE, access, attributes, uow, tm, options, isolation
        # level, isolation flags, timeout, description)
        if not argv[0]:
            return STATUS_INVALID_HANDLE
        handle = self._new(emu)
        emu.mem_write(argv[0], handle.to_bytes(8 if self.x64 else 4, "little"))
        return STATUS_SUCCESS

    def _nt_end(self, rollback: bool) -> Any:
        def end(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            # NTSTATUS NtRollbackTransaction / NtCommitTransaction(handle, wait)
            return STATUS_SUCCESS if self._end(emu, argv[0], rollback) else STATUS_INVALID_HANDLE

        return end

    def _end(self, emu: Any, handle: int, rollback: bool) -> int:
        changes = self._of(emu, handle)
        if changes is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        if rollback:
            for path, before in changes.files.values():
                if before is None:
                    if emu.fileman.delete_file(path):
                        self.recorder.emit(FileAccess, op="delete", path=path)
                else:
                    compat.write_guest_file(emu, path, before)
        changes.files.clear()
        emu.set_last_error(ERROR_SUCCESS)
        return 1

    # -- files ----------------------------------------------------------------------------------

    def _create_file_transacted(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # HANDLE CreateFileTransacted(name, access, share, sa, disposition, flags, template,
        # hTransaction, pusMiniVersion, lpExtendedParameter): CreateFile's seven, in a transaction
        changes = self._of(emu, argv[7])
        if changes is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return self._invalid()
        wide = api_name.endswith("W")
        raw = read_c_string(self.memory, argv[0], wide, MAX_PATH_CHARS * (2 if wide else 1)) if argv[0] else b""
        path = raw.decode("utf-16-le" if wide else "latin-1", "replace")
        before = compat.guest_file_data(emu, path) if path else None
        mod, entry = emu.api.get_export_func_handler("kernel32", "CreateFile")
        context = ApiContext(func_name="CreateFileW" if wide else "CreateFileA", args=HandlerArgs([], discard=True))
        handle = int(entry[1](mod, emu, list(argv[:7]), context) or 0)
        if path and handle and handle != self._invalid():
            changes.files.setdefault(path.lower(), (path, before))
        return handle

    def _invalid(self) -> int:
        return INVALID_HANDLE_VALUE if self.x64 else INVALID_HANDLE_VALUE & 0xFFFFFFFF


def install(se: Any, memory: GuestMemory, recorder: Recorder) -> Transactions:
    transactions = Transactions(se, memory, recorder)
    transactions.install()
    return transactions
