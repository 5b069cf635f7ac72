"""Private Speakeasy names the run-time loading relies on (loader.py): the PEB's loader rings
re-linked without Speakeasy's struct layer each time a module is attached to a process.

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported. Start-up work (the PEB linked once per ``init_peb``) is in
compat_start.py; this module serves the loads a replay makes while it runs (LoadLibrary of a
system or dropped DLL, a new process's PEB).
"""

from __future__ import annotations

import ntpath
from collections.abc import Callable
from typing import Any

import speakeasy.struct as se_struct
import speakeasy.windows.common as se_wincommon
import speakeasy.windows.loaders as se_loaders
import speakeasy.windows.objman as se_objman
import speakeasy.windows.winemu as se_winemu
import unicorn as uc
from speakeasy.windows.api_registry import symbol_ref
from speakeasy.winenv.defs.nt import ntoskrnl as se_nt

from emulator.backends.speakeasy.compat import _incompatible, _require_params, se_module_name

_RINGS = (
    ("InLoadOrderModuleList", "InLoadOrderLinks"),
    ("InMemoryOrderModuleList", "InMemoryOrderLinks"),
    ("InInitializationOrderModuleList", "InInitializationOrderLinks"),
)
_INIT_LINKS = "InInitializationOrderLinks"
# Set on an emulator whose processes re-link their loader rings the fast way.
FAST_LINKS_FLAG = "_chainreplay_fast_peb_links"

_object_attribute = object.__getattribute__


def _check_module_search() -> None:
    winemu = se_winemu.WindowsEmulator
    _require_params(winemu, "load_module_by_name", ("name", "emu_path", "base", "native_path"))
    _require_params(winemu, "get_mod_by_name", ("name",))
    _require_params(winemu, "get_proc", ("mod_name", "func_name"))
    # Imports are bound through get_proc, which loads a module it does not find by name.
    if "load_module_by_name" not in se_winemu.WindowsEmulator.get_proc.__code__.co_names:
        raise _incompatible("WindowsEmulator.get_proc no longer loads an import's module with load_module_by_name")


_check_module_search()


def _check_binding() -> None:
    winemu = se_winemu.WindowsEmulator
    _require_params(winemu, "resolve_export", ("module", "reference", "allow_dynamic", "_seen", "strict"))
    _require_params(winemu, "load_library", ("mod_name",))
    _require_params(winemu, "get_native_module_path", ("mod_name",))
    _require_params(winemu, "get_signature_db", ())
    _require_params(winemu, "_get_signature_arch", ())
    # An export forwarded to a full path is dropped unless the loader's check accepts it.
    if not callable(getattr(se_loaders, "validate_forwarder", None)):
        raise _incompatible("speakeasy.windows.loaders.validate_forwarder is missing")
    if "validate_forwarder" not in se_loaders.PeLoader.make_image.__code__.co_names:
        raise _incompatible("PeLoader.make_image no longer checks forwarders with validate_forwarder")
    # Speakeasy's forwarder branch, which chainreplay's takes over for the guest's DLLs.
    if not callable(getattr(se_wincommon, "normalize_dll_name", None)):
        raise _incompatible("speakeasy.windows.common.normalize_dll_name is missing")
    if "forwarder" not in se_winemu.WindowsEmulator.resolve_export.__code__.co_names:
        raise _incompatible("WindowsEmulator.resolve_export no longer follows export forwarders")


_check_binding()

_ORIGINAL_VALIDATE_FORWARDER = se_loaders.validate_forwarder


def _validate_forwarder(value: str) -> None:
    """Speakeasy's check, which also takes a forwarder to a full path
    (``C:\\Windows\\System32\\version.GetFileVersionInfoW``): Windows' loader does, and proxy
    DLLs planted under a system DLL's name forward so to the genuine DLL."""
    dll, separator, symbol = value.rpartition(".")
    if separator and ("\\" in dll or "/" in dll) and ntpath.isabs(dll) and value.isascii():
        value = f"{ntpath.basename(dll)}.{symbol}"
    _ORIGINAL_VALIDATE_FORWARDER(value)


se_loaders.validate_forwarder = _validate_forwarder


def is_guest_image(module: Any) -> bool:
    """Whether ``module`` was mapped from a PE file (the guest's), not built by the emulator."""
    image = getattr(module, "_image", None)
    return getattr(image, "source", None) == "guest_pe"


def emulator_provides(emu: Any, name: str, arch: str | None = None) -> bool:
    """Whether the emulator has a module of its own for ``name`` (a DLL stem): one loaded, a
    native file, API handlers or declared signatures (what Speakeasy's LoadLibrary asks).
    ``arch`` ("x86" / "x64"): for that architecture (default the guest's; another has no module
    loaded nor native file here)."""
    own = emu._get_signature_arch()
    if arch in (None, own):
        if any(not is_guest_image(m) and name in module_names(m) for m in emu.modules):
            return True
        if emu.get_native_module_path(name):
            return True
    api = getattr(emu, "api", None)
    if api is not None and api.load_api_handler(name):
        return True
    return bool(emu.get_signature_db().get_functions(name, arch or own))


def has_code_for(emu: Any, name: str) -> bool:
    """Whether the emulator can answer calls into module ``name`` (a DLL stem) at all: a native
    file, API handlers or declared signatures. A DLL it does not know and the guest has no file
    of gets a module with no code, whose first call ends the replay."""
    if emu.get_native_module_path(name):
        return True
    api = getattr(emu, "api", None)
    if api is not None and api.load_api_handler(name):
        return True
    return bool(emu.get_signature_db().get_functions(name, emu._get_signature_arch()))


def dll_stem(name: str) -> str:
    """A DLL's name as Speakeasy looks modules up: no folder, no image extension, lower-cased,
    the C runtimes and Winsock 1 funnelled into msvcrt and ws2_32."""
    return str(se_wincommon.normalize_dll_name(se_module_name(name)))


def module_names(module: Any) -> tuple[str, str]:
    """The two names Speakeasy finds a module by: its path's stem and its own name, lower-cased."""
    return se_module_name(str(module.emu_path or "")), str(module.name or "").lower()


def export_entry(emu: Any, module: Any, reference: str | int) -> Any:
    """The registry entry of ``module``'s export ``reference`` (a name, an ordinal or
    ``ordinal_N``), or None."""
    return emu.api_registry.lookup(module, symbol_ref(reference))


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
    # Structs built from a prototype: CMeta.__call__ builds the instance, then its ctypes value.
    if not {"create_struct"} <= set(se_struct.CMeta.__call__.__code__.co_names):
        raise _incompatible("speakeasy.struct.CMeta.__call__ no longer builds a struct with create_struct")


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
            nested_state = _object_attribute(nested, "__dict__")
            if nested_state["__filtermap__"]:
                _link_nested(nested)
            setattr(cstruct, name, nested_state["__struct__"])


def _cstruct(obj: Any) -> Any:
    return _object_attribute(obj, "__dict__")["__struct__"]


_FIELDS: dict[tuple[type, str], tuple[int, int]] = {}


def _field(cstruct_class: type, name: str) -> tuple[int, int]:
    """(offset, size) of a ctypes struct class's field (cached)."""
    found = _FIELDS.get((cstruct_class, name))
    if found is None:
        descriptor = getattr(cstruct_class, name)
        found = _FIELDS[cstruct_class, name] = (descriptor.offset, descriptor.size)
    return found


def serialised(obj: Any) -> bytes:
    """The bytes :func:`struct_bytes` (and ``EmuStruct.get_bytes()``) give for ``obj``, built by
    laying each nested struct's bytes over its field in a copy of the parent's, instead of
    copying each nested ctypes value into the parent (a ctypes field assignment per nested
    struct, ~3 us): the parent's own ctypes value is left as it was. Nothing reads a parent's
    copies of its nested structs but the serialisation, which makes them again each time
    (Speakeasy's ``get_bytes`` links them first, as :func:`struct_bytes` does). A nested list,
    or a nested value whose size is not its field's, takes :func:`struct_bytes`."""
    state = _object_attribute(obj, "__dict__")
    cstruct = state["__struct__"]
    nested_items = state["__filtermap__"]
    if not nested_items:
        return bytes(cstruct)
    data = bytearray(bytes(cstruct))
    cstruct_class = type(cstruct)
    for name, nested in nested_items.items():
        if not isinstance(nested, se_struct.EmuStruct):
            return struct_bytes(obj)
        offset, size = _field(cstruct_class, name)
        part = serialised(nested)
        if len(part) != size:
            return struct_bytes(obj)
        data[offset : offset + size] = part
    return bytes(data)


def _write_back(kernel_object: Any) -> None:
    """``KernelObject.write_back()`` with :func:`serialised`, and no write when guest memory
    already holds exactly these bytes.

    Speakeasy writes every loader entry back after each module it attaches, almost all of them
    unchanged; a host write costs ~50 us once code has been translated (the write, then the
    translated-code invalidation of the range), a read ~5 us (read through the engine, as
    Speakeasy's memory manager reads). Writing bytes that are already there changes nothing the
    guest can see (host writes fire no memory hooks); a range that cannot be read is written as
    before, so a fault is the same fault.
    """
    data = serialised(kernel_object.object)
    address = kernel_object.address
    if not (data and address):
        return
    emu = kernel_object.emu
    try:
        held = emu.emu_eng.mem_read(address, len(data))
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
    if _ENTRY_WRITE_BACK_MATCHES and se_objman.LdrDataTableEntry.__dict__.get("write_back") is not _entry_write_back:
        se_objman.LdrDataTableEntry.write_back = _entry_write_back  # type: ignore[method-assign]
    setattr(emu, FAST_LINKS_FLAG, True)


# KernelObject.write_back as Speakeasy writes it (``data = self.get_bytes()``, then
# ``self.emu.mem_write(self.address, data)`` when both are set), inherited by the loader entries.
_ORIGINAL_WRITE_BACK = se_objman.KernelObject.write_back
_ENTRY_WRITE_BACK_MATCHES = "write_back" not in vars(se_objman.LdrDataTableEntry) and set(
    _ORIGINAL_WRITE_BACK.__code__.co_names
) == {"get_bytes", "address", "emu", "mem_write"}


def _entry_write_back(self: Any) -> None:
    """A new loader entry written back (``add_module_to_peb``, ~50 a new process) with
    :func:`serialised` instead of the struct layer's ``get_bytes``: the same bytes, the same
    write; only for an emulator that asked (``relink_peb_fast``)."""
    if not getattr(self.emu, FAST_LINKS_FLAG, False):
        _ORIGINAL_WRITE_BACK(self)
        return
    data = serialised(self.object)
    if data and self.address:
        self.emu.mem_write(self.address, data)


# ---- structs built from a prototype ---------------------------------------------------------

_ORIGINAL_STRUCT_CALL = se_struct.CMeta.__call__
# (class, args, kwargs) -> a private prototype instance, or None when the class cannot be cloned.
_PROTOTYPES: dict[tuple[Any, ...], Any] = {}
_IMMUTABLE = (type, int, str, bytes, float, bool, type(None))
_STRUCT_STATE = ("__pack__", "__struct__", "__fields__", "__ptrsize__", "__filtermap__")


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(item) for item in value)
    return isinstance(value, _IMMUTABLE)


def struct_shape(obj: Any) -> tuple[Any, ...]:
    """What two freshly built structs of one class must share to be interchangeable: the
    instance's declarations, the ctypes type and bytes, the nested structs' shapes."""
    state = _object_attribute(obj, "__dict__")
    declared = tuple((k, v) for k, v in state.items() if k not in _STRUCT_STATE)
    nested = tuple(
        (name, tuple(struct_shape(item) for item in sub) if isinstance(sub, list) else struct_shape(sub))
        for name, sub in state["__filtermap__"].items()
    )
    cstruct = state["__struct__"]
    return (
        type(obj),
        declared,
        state["__pack__"],
        state["__ptrsize__"],
        tuple(state["__fields__"]),
        type(cstruct),
        bytes(cstruct),
        nested,
    )


def _clonable(obj: Any) -> bool:
    state = _object_attribute(obj, "__dict__")
    if not all(_immutable(v) for k, v in state.items() if k not in _STRUCT_STATE):
        return False
    if type(state["__struct__"]).__dict__.get("__init__") is not None or any(bytes(state["__struct__"])):
        return False
    for sub in state["__filtermap__"].values():
        items = sub if isinstance(sub, list) else [sub]
        if not all(isinstance(item, se_struct.EmuStruct) and _clonable(item) for item in items):
            return False
    return True


def _clone(proto: Any) -> Any:
    """A new struct equal to a freshly built one: the prototype's declarations (immutable, so
    shared), its field list copied, a new zeroed ctypes value, every nested struct cloned."""
    state = _object_attribute(proto, "__dict__")
    obj = object.__new__(type(proto))
    new_state = _object_attribute(obj, "__dict__")
    new_state.update(state)
    new_state["__struct__"] = type(state["__struct__"])()
    new_state["__fields__"] = list(state["__fields__"])
    new_state["__filtermap__"] = {
        name: [_clone(item) for item in sub] if isinstance(sub, list) else _clone(sub)
        for name, sub in state["__filtermap__"].items()
    }
    return obj


def _struct_call(cls: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        key = (cls, args, tuple(sorted(kwargs.items())))
        proto = _PROTOTYPES.get(key, False)
    except TypeError:  # an unhashable argument: built as Speakeasy builds it
        return _ORIGINAL_STRUCT_CALL(cls, *args, **kwargs)
    if proto is False:
        built = _ORIGINAL_STRUCT_CALL(cls, *args, **kwargs)
        # Its copy, taken before anyone sets a field, is the prototype; a class holding anything
        # mutable besides its ctypes values is left to Speakeasy.
        proto = _PROTOTYPES[key] = _clone(built) if _clonable(built) else None
        return built
    if proto is None:
        return _ORIGINAL_STRUCT_CALL(cls, *args, **kwargs)
    return _clone(proto)


def build_structs_from_prototypes(enabled: bool = True) -> None:
    """Speakeasy's structs (``EmuStruct`` subclasses: a loader entry, a PEB, a thread's
    CONTEXT) built by copying a prototype of their class instead of from their declarations.

    Building one walks its declarations, builds each nested struct the same way and looks its
    ctypes type up, all through the struct layer's attribute hooks: about 0.9 ms for a loader
    entry, some 70 of them while a 3CX replay runs (a new process's PEB, each thread). The
    first build of a class (per constructor arguments) is Speakeasy's; a copy of it, taken
    before it is handed out, is kept as a private prototype when it holds nothing mutable
    besides its ctypes values, and later builds copy that: the same declarations, a new zeroed
    ctypes value, nested structs copied likewise. Speakeasy's struct declarations depend on
    their arguments alone (tests/test_loadlib.py builds every one twice and compares, and
    compares guest memory and the 3CX replay with Speakeasy's own builds). Process-wide: the
    metaclass of every struct is the one hooked.
    """
    se_struct.CMeta.__call__ = _struct_call if enabled else _ORIGINAL_STRUCT_CALL  # type: ignore[method-assign]


def modules_from_guest_files(
    emu: Any,
    candidates: Callable[[str], list[str]],
    load: Callable[[str], Any],
    system_path: Callable[[str], str | None] = lambda name: None,
) -> Callable[..., Any]:
    """Before Speakeasy builds a module by name (an import's DLL, LoadLibrary of a name it
    knows), ``candidates(name)`` gives the guest paths to try in order; the first one ``load``
    maps (a module, or None) is the module. Otherwise Speakeasy's own: a system DLL's decoy,
    or a module with no code for a name it does not know; a system DLL's decoy named by
    ``system_path(name)`` (Speakeasy puts a module it loads by name alone, such as kernelbase at
    start-up, in the configuration's current folder). Returns Speakeasy's own
    ``load_module_by_name`` (the emulator's module, no search)."""
    original = emu.load_module_by_name

    def load_module_by_name(name: str, emu_path: Any = None, base: Any = None, native_path: Any = None) -> Any:
        if not emu_path and not native_path and emu.get_mod_by_name(se_module_name(name)) is None:
            for path in candidates(name):
                module = load(path)
                if module is not None:
                    return module
            emu_path = system_path(name)
        return original(name, emu_path=emu_path, base=base, native_path=native_path)

    emu.load_module_by_name = load_module_by_name
    return original  # type: ignore[no-any-return]


def imports_bound_through(emu: Any, override: Callable[[str], Any]) -> None:
    """Every import (of the target, of each DLL mapped) and Speakeasy's LoadLibrary-by-name
    first ask ``override(name)`` (a DLL stem) for the module; None leaves Speakeasy's binding
    (the module of that name loaded, else one loaded by name)."""
    original = emu.get_proc

    def get_proc(mod_name: str, func_name: Any) -> Any:
        module = override(dll_stem(mod_name))
        if module is None:
            return original(mod_name, func_name)
        return emu.resolve_export(module, func_name, allow_dynamic=True)

    emu.get_proc = get_proc


def names_found_first(emu: Any, first: Callable[[str], Any]) -> None:
    """``emu.get_mod_by_name(name)`` answers ``first(name)`` when it is a module (a DLL the
    guest's search mapped under a name the emulator also has), else as before. Installed after
    every other replacement of the lookup."""
    original = emu.get_mod_by_name

    def get_mod_by_name(name: str) -> Any:
        module = first(name.lower())
        return module if module is not None else original(name)

    emu.get_mod_by_name = get_mod_by_name


def forwarders_resolved_by(emu: Any, target: Callable[[Any, str], tuple[Any, str | int] | None]) -> None:
    """An export of a guest DLL forwarded elsewhere resolves to ``target(module, forwarder)``'s
    (module, export) instead of Speakeasy's lookup of the forwarder's module by name (which,
    for a DLL planted under a system DLL's name, finds the planted DLL itself); None: it does
    not resolve."""
    original = emu.resolve_export

    def resolve_export(
        module: Any, reference: Any, *, allow_dynamic: bool = False, _seen: Any = None, strict: bool = False
    ) -> Any:
        if module is None or not is_guest_image(module):
            return original(module, reference, allow_dynamic=allow_dynamic, _seen=_seen, strict=strict)
        entry = export_entry(emu, module, reference)
        forwarder = getattr(getattr(entry, "export", None), "forwarder", None)
        if not forwarder:
            return original(module, reference, allow_dynamic=allow_dynamic, _seen=_seen, strict=strict)
        seen = set() if _seen is None else _seen
        key = (id(module), reference)
        if key in seen or len(seen) >= 32:
            return 0
        seen.add(key)
        found = target(module, forwarder)
        if found is None or found[0] is None:
            return 0
        return resolve_export(found[0], found[1], _seen=seen, strict=True)

    emu.resolve_export = resolve_export
