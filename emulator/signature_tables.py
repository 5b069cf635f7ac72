"""The layout of ``emulator/data/speakeasy-signatures.bin``, read without the engine.

The file ships Speakeasy's API signature tables (win32metadata and phnt) cut into compressed
chunks: :mod:`emulator.backends.speakeasy.signatures` builds it from Speakeasy and has the
engine read it a chunk at a time; the YARA export (a process that must not import the engine)
reads the names it holds (:func:`api_names`). This module is the one reader of the layout both
use, and imports nothing of Speakeasy.

The file is ``marshal`` of ``(Speakeasy version, FORMAT, {source class name: SourceTables})``.
"""

from __future__ import annotations

import marshal
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

DATA_FILE = Path(__file__).resolve().parent / "data" / "speakeasy-signatures.bin"
FORMAT = 3
# A table as shipped: (entry count, its keys in order (zlib of marshal), the compression
# dictionary, chunks: each a compressed {key: value} of the keys whose chunk_of() is its index).
Table = tuple[int, bytes, bytes, tuple[bytes, ...]]
# A source's shipped tables: (SHA-256 of its file, scalars, functions, by DLL, enums, structs).
SourceTables = tuple[str, dict[str, Any], Table, Table, Table, Table]
# Positions in SourceTables of the tables keyed by function name and by DLL name.
FUNCTIONS: Final = 2
BY_DLL: Final = 3


def chunk_of(key: str, chunks: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % chunks


def table_keys(table: Table) -> list[str]:
    """A shipped table's keys, in order."""
    return marshal.loads(zlib.decompress(table[1]))  # type: ignore[no-any-return]


def read(data: bytes) -> tuple[str, int, dict[str, SourceTables]]:
    """(the Speakeasy version the file was built for, its format, the tables by source)."""
    version, fmt, table = marshal.loads(data)
    return version, fmt, table


def api_names(path: Path = DATA_FILE) -> frozenset[str]:
    """The names of the functions and DLLs the tables in ``path`` declare (DLLs without
    ``.dll``), lower case; empty if the file is unreadable or of another format."""
    try:
        _, fmt, sources = read(path.read_bytes())
        if fmt != FORMAT:
            return frozenset()
        names: set[str] = set()
        for tables in sources.values():
            for table in (tables[FUNCTIONS], tables[BY_DLL]):
                names.update(str(key).lower() for key in table_keys(table))
    except (OSError, ValueError, EOFError, TypeError, IndexError, zlib.error):
        return frozenset()
    return frozenset(names)


class LazyTable(Mapping[str, Any]):
    """A shipped table whose entries are decoded a chunk at a time, when one of the chunk's
    entries is first read (then kept); iteration follows the order it was built in."""

    __slots__ = ("_chunks", "_count", "_decoded", "_order", "_seen", "_zdict")

    def __init__(self, table: Table) -> None:
        self._count, self._order, self._zdict, self._chunks = table
        self._decoded: dict[str, Any] = {}
        self._seen: set[int] = set()

    def _find(self, key: object) -> dict[str, Any] | None:
        """The decoded entries of ``key``'s chunk (None if ``key`` cannot be in the table)."""
        if not isinstance(key, str) or not self._chunks:
            return None
        index = chunk_of(key, len(self._chunks))
        if index not in self._seen:
            chunk = zlib.decompressobj(zdict=self._zdict).decompress(self._chunks[index])
            self._decoded.update(marshal.loads(chunk))
            self._seen.add(index)
        return self._decoded

    def __getitem__(self, key: str) -> Any:
        decoded = self._find(key)
        if decoded is None:
            raise KeyError(key)
        return decoded[key]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        decoded = self._find(key)
        return default if decoded is None else decoded.get(key, default)

    def __contains__(self, key: object) -> bool:
        decoded = self._find(key)
        return decoded is not None and key in decoded

    def __iter__(self) -> Iterator[str]:
        return iter(marshal.loads(zlib.decompress(self._order)))

    def __len__(self) -> int:
        return self._count
