"""Private Speakeasy names the run-time loading relies on (loader.py): the PEB's loader rings
re-linked without Speakeasy's struct layer each time a module is attached to a process.

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported. Start-up work (the PEB linked once per ``init_peb``) is in
compat_start.py; this module serves the loads a replay makes while it runs (LoadLibrary of a
system or dropped DLL, a new process's PEB).
"""

from __future__ import annotations

from typing import Any

import speakeasy.struct as se_struct
import speakeasy.windows.objman as se_objman
import unicorn as uc
from speakeasy.winenv.defs.nt import ntoskrnl as se_nt

from emulator.backends.speakeasy.compat import _incompatible, _require_params

_RINGS = (
    ("InLoadOrderModuleList", "InLoadOrderLinks"),
    ("InMemoryOrderModuleList", "InMemoryOrderLinks"),
    ("InInitializationOrderModuleList", "InInitializationOrderLinks"),
)
_INIT_LINKS = "InInitializationOrderLinks"
# Set on an emulator whose processes re-link their loader rings the fast way.
FAST_LINKS_FLAG = "_chainreplay_fast_peb_links"

_object_attribute = object.__getattribute__


def _check_peb_sync() -> None:
    _require_params(se_objman.Process, "_sync_peb_module_links", ())
    _require_params(se_objman.Process, "add_module_to_peb", ("module",))
    _require_params(se_objman.KernelObject, "write_back", ())
    _require_params(se_struct.EmuStruct, "get_bytes", ())
    _require_params(se_struct.EmuStruct, "_link_cstructs", ("obj",))
    # The fast re-link below is Speakeasy's _sync_peb_module_links statement for statement; it
    # must still be the method it was written from.
    names = set(se_objman.Process._sync_peb_module_links.__code__.co_names)
    expected = {"peb_ldr_data", "pe", "base", "ldr_entries", "_peb_modules", "DllBase", "is_exe", "write_back", "Ldr"}
    if not expected <= names or {"add_module_to_peb", "mem_write", "remove_module_from_peb"} & names:
        raise _incompatible("objman.Process._sync_peb_module_links no longer re-links the rings as chainreplay does")
    for name in ("_link_cstructs", "get_bytes", "__getattribute__", "__setattr__"):
        if name not in vars(se_struct.EmuStruct):
            raise _incompatible(f"speakeasy.struct.EmuStruct.{name} is missing")
    probe = se_nt.LDR_DATA_TABLE_ENTRY(8)
    state = _object_attribute(probe, "__dict__")
    if not {"__struct__", "__filtermap__"} <= state.keys():
        raise _incompatible("speakeasy.struct.EmuStruct no longer keeps __struct__ and __filtermap__")
    for _, link_field in _RINGS:
        if not isinstance(state["__filtermap__"].get(link_field), se_struct.EmuStruct):
            raise _incompatible(f"LDR_DATA_TABLE_ENTRY.{link_field} is no longer a nested struct")


_check_peb_sync()

_ORIGINAL_SYNC = se_objman.Process._sync_peb_module_links


def struct_bytes(obj: Any) -> bytes:
    """``EmuStruct.get_bytes()`` without the struct layer's attribute hooks: the nested structs'
    ctypes values copied into their parents' (as ``_link_cstructs``), then the bytes."""
    _link_nested(obj)
    return bytes(_object_attribute(obj, "__dict__")["__struct__"])


def _link_nested(obj: Any) -> None:
    state = _object_attribute(obj, "__dict__")
    cstruct = state["__struct__"]
    for name, nested in state["__filtermap__"].items():
        if isinstance(nested, list):
            array = getattr(cstruct, name)
            for i, _ in enumerate(array):
                _link_nested(nested[i])
                array[i] = _object_attribute(nested[i], "__dict__")["__struct__"]
        elif isinstance(nested, se_struct.EmuStruct):
            _link_nested(nested)
            setattr(cstruct, name, _object_attribute(nested, "__dict__")["__struct__"])


def _cstruct(obj: Any) -> Any:
    return _object_attribute(obj, "__dict__")["__struct__"]


def _write_back(kernel_object: Any) -> None:
    """``KernelObject.write_back()`` with :func:`struct_bytes`, and no write when guest memory
    already holds exactly these bytes.

    Speakeasy writes every loader entry back after each module it attaches, almost all of them
    unchanged; a host write costs ~50 us once code has been translated (the write, then the
    translated-code invalidation of the range), a read ~5 us. Writing bytes that are already
    there changes nothing the guest can see (host writes fire no memory hooks); a range that
    cannot be read is written as before, so a fault is the same fault.
    """
    data = struct_bytes(kernel_object.object)
    address = kernel_object.address
    if not (data and address):
        return
    emu = kernel_object.emu
    try:
        held = emu.emu_eng.emu.mem_read(address, len(data))
    except uc.UcError:
        held = None
    if held != data:
        emu.mem_write(address, data)


_OFFSETS: dict[type, tuple[int, ...]] = {}


def _link_offsets(cstruct_class: type) -> tuple[int, ...]:
    """The offsets of a loader entry's three links (by its ctypes class, cached)."""
    offsets = _OFFSETS.get(cstruct_class)
    if offsets is None:
        offsets = _OFFSETS[cstruct_class] = tuple(getattr(cstruct_class, link).offset for _, link in _RINGS)
    return offsets


def _sync_links(process: Any) -> None:
    """Speakeasy's ``Process._sync_peb_module_links``, statement for statement, with the ctypes
    values read and set directly instead of through ``EmuStruct``'s attribute hooks (each access
    there walks the struct's field list): the same values set, the same bytes written in the
    same order (every loader entry, the PEB_LDR_DATA, the PEB)."""
    pld = process.peb_ldr_data
    main_base = process.pe.base if process.pe is not None else process.base
    pld_state = _object_attribute(pld.object, "__dict__")
    pld_class = type(pld_state["__struct__"])
    # Each entry's (address, DllBase, its three links' ctypes values, their offsets).
    rows = []
    for entry in process.ldr_entries:
        state = _object_attribute(entry.object, "__dict__")
        cstruct = state["__struct__"]
        nested = state["__filtermap__"]
        rows.append((entry.address, cstruct.DllBase, nested, _link_offsets(type(cstruct))))
    for ring, (head_field, link_field) in enumerate(_RINGS):
        head = pld.address + getattr(pld_class, head_field).offset
        entries = []
        for address, dll_base, nested, offsets in rows:
            module = process._peb_modules[dll_base]
            link = _cstruct(nested[link_field])
            node = address + offsets[ring]
            if link_field == _INIT_LINKS and module.base == main_base and module.is_exe():
                # The main executable is not a member of the initialization ring.
                link.Flink = link.Blink = node
                continue
            entries.append((node, link))
        sentinel = _cstruct(pld_state["__filtermap__"][head_field])
        sentinel.Flink = entries[0][0] if entries else head
        sentinel.Blink = entries[-1][0] if entries else head
        for i, (_, link) in enumerate(entries):
            link.Blink = entries[i - 1][0] if i else head
            link.Flink = entries[i + 1][0] if i + 1 < len(entries) else head
    for entry in process.ldr_entries:
        _write_back(entry)
    _write_back(pld)
    _cstruct(process.peb.object).Ldr = pld.address
    _write_back(process.peb)


def _sync_peb_module_links(self: Any) -> None:
    if getattr(self.emu, FAST_LINKS_FLAG, False):
        _sync_links(self)
    else:
        _ORIGINAL_SYNC(self)


def relink_peb_fast(emu: Any) -> None:
    """Every process of ``emu`` re-links its PEB loader rings with :func:`_sync_links`.

    Speakeasy re-links all three rings of the process and writes every loader entry back after
    each module it attaches (a LoadLibrary, a new process's PEB): with the 50-odd decoy modules
    that is some 1,500 link updates and 55 struct serialisations per load, each through the
    struct layer's per-access field search. The same links are set and the same bytes written
    (tests/test_loadlib.py compares guest memory with Speakeasy's own re-link).

    Speakeasy creates a process object for each new process, so the method is replaced on the
    class, once, and takes the fast path only for an emulator that asked for it.
    """
    if se_objman.Process.__dict__.get("_sync_peb_module_links") is not _sync_peb_module_links:
        se_objman.Process._sync_peb_module_links = _sync_peb_module_links  # type: ignore[method-assign]
    setattr(emu, FAST_LINKS_FLAG, True)
