"""Every limit chainreplay enforces, in one place.

The limits a user may change are the fields of :class:`Limits`: each has a name (what
``report.outcome.limit`` says when it fires), a default, bounds and a description, and the
``chainreplay run`` flags and the ``[limits]`` keys of ``scenario.toml`` are derived from it.
The fixed bounds below it are named constants.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_INSTRUCTIONS = 200_000_000
DEFAULT_MAX_API_CALLS = 100_000
DEFAULT_MAX_MAPPED_MEMORY = 1 * GIB
DEFAULT_MAX_ALLOCATION = 256 * MIB
DEFAULT_MAX_STAGES = 64
DEFAULT_MAX_NETWORK_EXCHANGES = 1_000
DEFAULT_MAX_DROPPED_BYTES = 64 * MIB
DEFAULT_MAX_CHILD_PROCESSES = 16
# Headroom the watchdog gives the child beyond the emulation timeout before it is killed.
WATCHDOG_GRACE_SECONDS = 15.0
# Address space the replay child may add to what it inherits (Unicorn needs room for its JIT cache).
CHILD_ADDRESS_SPACE_LIMIT = 6 * GIB

# Inputs are rejected before emulation past these sizes.
MAX_SAMPLE_FILE_SIZE = 64 * MIB
# PE files a bare sample names (directly or through them) taken from the folder beside it, and
# the files of that folder looked at (by name, sorted).
MAX_DEPENDENCIES_BESIDE = 64
MAX_FILES_BESIDE = 4096
MAX_PE_SECTION_VIRTUAL_SIZE = 256 * MIB
MAX_PE_IMAGE_SIZE = 512 * MIB
# A responder body larger than this is truncated and the truncation recorded.
MAX_RESPONSE_BODY = 32 * MIB
MAX_REQUEST_BODY = 32 * MIB
# Redirects an HTTP request follows before the last answer is handed to the guest as it is
# (WinINet's and WinHTTP's own limit is 10 by default).
MAX_HTTP_REDIRECTS = 10
# A DNS TXT answer: strings of at most this many bytes (a DNS character-string, RFC 1035 3.3), at
# most this many strings (a responder's longer answer is cut).
MAX_TXT_BYTES = 255
MAX_TXT_STRINGS = 256
# Strings rendered from emulated memory are cut at this many characters.
MAX_RENDERED_STRING = 1024
# A responder's body_file larger than this is refused when the scenario loads (checked by size,
# before it is read).
MAX_BODY_FILE_SIZE = MAX_RESPONSE_BODY
# scenario.toml and report.json nested deeper than this are refused (exit 2) before validation.
MAX_INPUT_NESTING = 64
# scenario.toml and a report.json given to ``render`` larger than this are refused unread.
MAX_SCENARIO_FILE_SIZE = 1 * MIB
MAX_REPORT_FILE_SIZE = 256 * MIB
# Rule files given to ``run --yara`` larger than this together are refused unread.
MAX_YARA_RULES_SIZE = 64 * MIB
# A baseline.json larger than this is refused unread (a committed baseline is tens of KB).
MAX_BASELINE_FILE_SIZE = 16 * MIB
# ``chainreplay analyse`` refuses unread a trace.jsonl larger than this, and blobs the trace cites
# larger than this together (--max-trace-size, --max-blobs-size raise them: a replay run with
# raised limits can write more), and a line of the trace longer than this (no event needs it).
MAX_TRACE_FILE_SIZE = 2 * GIB
MAX_BLOBS_SIZE = 2 * GIB
MAX_TRACE_LINE_SIZE = 64 * MIB
# The stage graph keeps at most this many nodes (a note says when it was cut) ...
MAX_GRAPH_NODES = 5_000
# ... and is drawn (PNG, SVG) only up to this many; GraphML is written whatever its size.
MAX_DRAWN_NODES = 400
# ``chainreplay render`` gives up drawing a report's graph after this long (exit 2).
RENDER_TIMEOUT_SECONDS = 60.0
# ``chainreplay analyse`` (analysis, report, drawing, exports of a frozen trace) ends by this
# long unless --timeout says otherwise; what is cut is noted in the report.
ANALYSE_TIMEOUT_SECONDS = 60.0
# One call of the printf family formats at most this many characters: a width or precision past it
# (``%999999999d``) is cut to it, and the text and the count the call returns end there (the
# formatter built the whole gigabyte in memory before, seconds and gigabytes per call).
MAX_FORMATTED_TEXT = 1 * MIB
# A replay records at most this many notes of one kind (``what``); the last one says the rest were
# left out (a guest patching a module's code byte by byte made a note per change).
MAX_NOTES_PER_KIND = 100
# ``RtlDecompressBuffer(Ex)`` builds at most this many bytes of output, and never more than the
# committed memory from the output buffer on holds (one byte past it, which faults as on
# Windows): an XPRESS match of length 0xFFFFFFF0 into a 1 MiB buffer said to be 4 GB was copied
# byte by byte into a 4 GB bytearray (the replay hung past every limit).
MAX_DECOMPRESSED_BYTES = 256 * MIB
# CreateProcess's command line holds at most this many characters (a UNICODE_STRING's, its NUL
# besides); a longer one fails with ERROR_FILENAME_EXCED_RANGE as on Windows (Speakeasy split a
# 1 MB PowerShell -EncodedCommand line with shlex: 14 s).
MAX_COMMAND_LINE_CHARS = 32766
# Threads created and not yet run (queued) at most; one more fails with ERROR_NOT_ENOUGH_MEMORY.
# Speakeasy's own bound was 100, past which CreateThread returned NULL with no last error: a
# program starting 1000 workers before waiting for them lost 900 of them unnoticed.
MAX_QUEUED_THREADS = 1024
# After a termination signal, the partial recording's analysis gets at most this long.
INTERRUPTED_ANALYSIS_SECONDS = 0.5


# Upper bounds of the limits themselves: a week of wall-clock time, and what a C int64 holds.
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
MAX_COUNT = 2**63 - 1


class Limits(BaseModel):
    """The limits of one replay, declared once.

    Field names are the names ``report.outcome.limit`` uses when a limit fires and the keys of
    a scenario's ``[limits]`` table; each field is also a ``chainreplay run`` flag
    (``max_api_calls`` -> ``--max-api-calls``, see :func:`add_limit_arguments`).
    """

    # Built when first used, as the plan models (emulator/plan.py).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    timeout: float = Field(
        DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Wall-clock seconds for the emulation; the whole run (analysis, drawing) ends by timeout"
        " plus the watchdog's grace.",
    )
    max_instructions: int = Field(
        DEFAULT_MAX_INSTRUCTIONS,
        gt=0,
        le=MAX_COUNT,
        description=(
            "Emulated instructions per run (faithful mode), or per stretch of guest code between two"
            " API calls (fast mode, counted by Unicorn)."
        ),
    )
    max_api_calls: int = Field(DEFAULT_MAX_API_CALLS, gt=0, le=MAX_COUNT, description="API calls in the whole replay.")
    max_mapped_memory: int = Field(
        DEFAULT_MAX_MAPPED_MEMORY, gt=0, le=MAX_COUNT, description="Bytes of memory the sample may have mapped at once."
    )
    max_allocation: int = Field(DEFAULT_MAX_ALLOCATION, gt=0, le=MAX_COUNT, description="Bytes of a single allocation.")
    max_stages: int = Field(
        DEFAULT_MAX_STAGES, gt=0, le=MAX_COUNT, description="Distinct stages (executed code bodies)."
    )
    max_network_exchanges: int = Field(
        DEFAULT_MAX_NETWORK_EXCHANGES, gt=0, le=MAX_COUNT, description="Network attempts (DNS, HTTP, TCP, UDP)."
    )
    max_dropped_bytes: int = Field(
        DEFAULT_MAX_DROPPED_BYTES, gt=0, le=MAX_COUNT, description="Bytes of files the sample may write in total."
    )
    max_child_processes: int = Field(
        DEFAULT_MAX_CHILD_PROCESSES,
        ge=0,
        le=MAX_COUNT,
        description="Processes started from the guest's own files that are emulated (the next one ends the replay).",
    )


class LimitError(ValueError):
    """A limit value that cannot be used; the message names the flag or key."""


def option_of(name: str) -> str:
    """The command-line flag of a limit: ``max_api_calls`` -> ``--max-api-calls``."""
    return "--" + name.replace("_", "-")


def _kind(name: str) -> type:
    annotation = Limits.model_fields[name].annotation
    return float if annotation is float else int


def _parse(kind: type) -> Callable[[str], float | int]:
    def parse(text: str) -> float | int:
        try:
            return float(text) if kind is float else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a number' if kind is float else 'an integer'}, got {text!r}"
            ) from None

    return parse


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`Limits` field, with its description and default."""
    group = parser.add_argument_group("limits", "each limit names itself in report.outcome.limit when it fires")
    for name, field in Limits.model_fields.items():
        kind = _kind(name)
        group.add_argument(
            option_of(name),
            dest=name,
            type=_parse(kind),
            metavar="SECONDS" if kind is float else "N",
            default=None,
            help=f"{field.description} (default {field.default})",
        )


def limit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given on the command line, validated; :class:`LimitError` names the flag."""
    overrides = {name: getattr(args, name) for name in Limits.model_fields if getattr(args, name, None) is not None}
    try:
        Limits.model_validate(overrides)
    except ValidationError as err:
        first = err.errors()[0]
        raise LimitError(f"{option_of(str(first['loc'][0]))}: {first['msg']}") from err
    return overrides


def default_limits_toml() -> str:
    """The ``[limits]`` table of a scenario with every limit at its default, described."""
    lines = ["[limits]"]
    for name, value in Limits().model_dump().items():
        lines.append(f"# {Limits.model_fields[name].description}")
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"


# lstrlenA/W count at most this many characters: a longer run without a terminator ends the
# count as a fault inside the call would on Windows (lstrlen then returns 0).
MAX_LSTRLEN_CHARS = 1 << 24

# qsort / bsearch: the largest array (elements times their size) an emulated call sorts or
# searches, and the most elements (each comparison is a call of the guest's function). A larger
# qsort returns with the array unsorted; a larger bsearch finds nothing.
MAX_CRT_SORT_BYTES = 64 * MIB
MAX_CRT_SORT_ELEMENTS = 1 << 16
