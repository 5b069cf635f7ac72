"""Speakeasy's API signature database, read a declaration at a time instead of all at once.

Speakeasy reads its two signature tables (win32metadata, 4 MB gzipped JSON, and phnt) whole the
first time a process looks an API up: about 0.16 s of CPU with the collector paused (JSON
decoding 0.1 s, then an index of every declaration by DLL), on the cold child's critical path;
a replay then reads a few hundred of its ~20,000 declarations (the handled APIs' argument names,
the DLLs it loads).

This module ships the same tables in ``emulator/data/speakeasy-signatures.bin``, each cut into
chunks of about 4 KB by a hash of the key (declarations by function name, enums, structs, the
index by DLL), each chunk compressed on its own with a dictionary preset from the table
(``marshal`` format 2, no back-references, so the bytes do not depend on the building
process), and gives each source of Speakeasy's default database tables that decode a chunk when
one of its entries is first read
(:func:`install` wraps ``Win32MetadataSource._load``, which ``PhntSource`` inherits). The
tables are built from what Speakeasy's own ``_load`` leaves in a source (:func:`build`), so
every lookup answers the same, in the same order. They are used only for a source of exactly
those two classes reading its default file, when the installed Speakeasy is the version they
were built with and the file's SHA-256 is the one they were built from; anything else is loaded
by Speakeasy as before. ``python -m emulator.backends.speakeasy.signatures`` rebuilds the file;
tests/test_startup.py checks it equals what the builder produces now and that every lookup of
both sources answers as Speakeasy's own loading does.
"""

from __future__ import annotations

import argparse
import hashlib
import marshal
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import speakeasy.winenv.api.sigdb as se_sigdb

from emulator.backends.speakeasy.compat import SPEAKEASY_VERSION, _incompatible, shipped_table
from emulator.signature_tables import DATA_FILE, FORMAT, LazyTable, SourceTables, Table, chunk_of, read

# marshal format 2: no references between objects, so equal tables give equal bytes.
MARSHAL_VERSION = 2
SOURCES: tuple[type[se_sigdb.Win32MetadataSource], ...] = (se_sigdb.Win32MetadataSource, se_sigdb.PhntSource)
# What Speakeasy's _load sets on a source besides its four tables (read back as they are).
SCALARS = ("_dll_aliases", "_name_prefixes", "version", "commit")
TABLES = ("_functions", "_functions_by_dll", "_enums", "_structs")

_ORIGINAL_LOAD = se_sigdb.Win32MetadataSource._load
# Encoded bytes per chunk, about: a lookup decompresses and decodes one chunk (~0.1 ms).
CHUNK_BYTES = 4096
# Bytes of a table's encoded chunks that preset its compression dictionary (zlib's zdict: small
# chunks compress as well as a large one would).
ZDICT_BYTES = 32768
_shipped: dict[str, SourceTables] | None = None


def _check() -> None:
    source = se_sigdb.Win32MetadataSource()
    for name in ("path", "_lock", "_loaded", *SCALARS, *TABLES):
        if not hasattr(source, name):
            raise _incompatible(f"speakeasy.winenv.api.sigdb.Win32MetadataSource.{name} is missing")
    for cls in SOURCES:
        if not isinstance(getattr(cls, "default_path", None), str) or cls._load is not _ORIGINAL_LOAD:
            raise _incompatible(f"speakeasy.winenv.api.sigdb.{cls.__name__} no longer loads its default file itself")


_check()


class LazyByDll(LazyTable):
    """Speakeasy's index by DLL (DLL -> {name: [(index, declaration)]} in name order), each
    DLL's built when first read, from the declarations of :class:`LazyTable` ``functions`` (the
    same objects, as Speakeasy's index shares them)."""

    __slots__ = ("_built", "_functions")

    def __init__(self, table: Table, functions: LazyTable) -> None:
        super().__init__(table)
        self._functions = functions
        self._built: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._built[key]
        except KeyError:
            functions = self._functions
            value = self._built[key] = {
                name: [(index, functions[name][index]) for index in indices]
                for name, indices in super().__getitem__(key)
            }
            return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default


def _encode(value: Any) -> bytes:
    return marshal.dumps(value, MARSHAL_VERSION)


def encode_table(table: Mapping[str, Any]) -> Table:
    """``table`` as shipped: chunks of about ``CHUNK_BYTES`` encoded bytes, each compressed
    with a dictionary preset from the table's first chunks."""
    count = len(table)
    size = sum(len(key) + len(_encode(value)) for key, value in table.items())
    chunks: list[dict[str, Any]] = [{} for _ in range(max(1, size // CHUNK_BYTES))] if count else []
    for key, value in table.items():
        chunks[chunk_of(key, len(chunks))][key] = value
    encoded = [_encode(chunk) for chunk in chunks]
    zdict = b"".join(encoded)[:ZDICT_BYTES]

    def compress(data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zdict=zdict)
        return compressor.compress(data) + compressor.flush()

    return count, zlib.compress(_encode(list(table)), 9), zdict, tuple(compress(chunk) for chunk in encoded)


def tables_of(source: se_sigdb.Win32MetadataSource) -> SourceTables:
    """What Speakeasy's ``_load`` left in ``source``, as shipped tables."""
    functions = source._functions
    by_dll: dict[str, list[tuple[str, list[int]]]] = {}
    for dll, names in source._functions_by_dll.items():
        indices = []
        for name, entries in names.items():
            for index, entry in entries:
                if functions[name][index] is not entry:
                    raise ValueError(f"{dll}!{name}: the index by DLL no longer shares the declarations")
            indices.append((name, [index for index, _ in entries]))
        by_dll[dll] = indices
    return (
        file_digest(source.path),
        {name: getattr(source, name) for name in SCALARS},
        encode_table(functions),
        encode_table(by_dll),
        encode_table(source._enums),
        encode_table(source._structs),
    )


def file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def shipped() -> dict[str, SourceTables]:
    """The shipped tables by source class name (read once per process); none if they were built
    for another Speakeasy version or the file is missing."""
    global _shipped
    if _shipped is None:
        _shipped = shipped_table(DATA_FILE, SPEAKEASY_VERSION, FORMAT) or {}
    return _shipped


def _load(source: se_sigdb.Win32MetadataSource) -> None:
    """``Win32MetadataSource._load``, from the shipped tables when they fit."""
    if source._loaded:
        return
    cls = type(source)
    found = shipped().get(cls.__name__) if cls in SOURCES and source.path == cls.default_path else None
    if found is None or found[0] != file_digest(source.path):
        _ORIGINAL_LOAD(source)
        return
    _, scalars, functions, by_dll, enums, structs = found
    with source._lock:
        if source._loaded:
            return
        lazy_functions = LazyTable(functions)
        source._functions = lazy_functions  # type: ignore[assignment]
        source._functions_by_dll = LazyByDll(by_dll, lazy_functions)  # type: ignore[assignment]
        source._enums = LazyTable(enums)  # type: ignore[assignment]
        source._structs = LazyTable(structs)  # type: ignore[assignment]
        for name, value in scalars.items():
            setattr(source, name, value)
        source._loaded = True


def install() -> None:
    """Speakeasy's default signature sources read from the shipped tables when they fit
    (idempotent)."""
    se_sigdb.Win32MetadataSource._load = _load  # type: ignore[method-assign,assignment]


def build() -> dict[str, SourceTables]:
    """Every source's tables, loaded now by Speakeasy's own ``_load`` from its default file."""
    built: dict[str, SourceTables] = {}
    for cls in SOURCES:
        source = cls()
        _ORIGINAL_LOAD(source)
        if not source._functions:
            raise ValueError(f"{cls.__name__}: Speakeasy loaded no signatures from {source.path}")
        built[cls.__name__] = tables_of(source)
    return built


def encode(table: dict[str, SourceTables]) -> bytes:
    return _encode((SPEAKEASY_VERSION, FORMAT, table))


def decode(data: bytes) -> dict[str, SourceTables]:
    """The tables of a file's bytes (for tests and comparisons)."""
    return read(data)[2]


def main() -> int:
    parser = argparse.ArgumentParser(description="Rebuild emulator/data/speakeasy-signatures.bin")
    parser.parse_args()
    DATA_FILE.write_bytes(encode(build()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
