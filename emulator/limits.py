"""Every limit chainreplay enforces, in one place.

Each limit has a name that appears in ``report.outcome.limit`` when it fires, a default, and a
command-line flag / ``[limits]`` key in ``scenario.toml`` to change it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
# Headroom the watchdog gives the child beyond the emulation timeout before it is killed.
WATCHDOG_GRACE_SECONDS = 15.0
# Address-space cap for the replay child process (Unicorn needs room for its JIT cache).
CHILD_ADDRESS_SPACE_LIMIT = 6 * GIB

# Inputs are rejected before emulation past these sizes.
MAX_SAMPLE_FILE_SIZE = 64 * MIB
MAX_PE_SECTION_VIRTUAL_SIZE = 256 * MIB
MAX_PE_IMAGE_SIZE = 512 * MIB
# A responder body larger than this is truncated and the truncation recorded.
MAX_RESPONSE_BODY = 32 * MIB
MAX_REQUEST_BODY = 32 * MIB
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
# The stage graph keeps at most this many nodes (a note says when it was cut) ...
MAX_GRAPH_NODES = 5_000
# ... and is drawn (PNG, SVG) only up to this many; GraphML is written whatever its size.
MAX_DRAWN_NODES = 400
# ``chainreplay render`` gives up drawing a report's graph after this long (exit 2).
RENDER_TIMEOUT_SECONDS = 60.0
# After a termination signal, the partial recording's analysis gets at most this long.
INTERRUPTED_ANALYSIS_SECONDS = 0.5


class Limits(BaseModel):
    """The limits of one replay. Field names are the names reported when a limit fires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout: float = Field(
        DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Wall-clock seconds for the emulation; the whole run (analysis, drawing) ends by timeout"
        " plus the watchdog's grace.",
    )
    max_instructions: int = Field(
        DEFAULT_MAX_INSTRUCTIONS,
        gt=0,
        description=(
            "Emulated instructions per run (faithful mode), or per stretch of guest code between two"
            " API calls (fast mode, counted by Unicorn)."
        ),
    )
    max_api_calls: int = Field(DEFAULT_MAX_API_CALLS, gt=0, description="API calls in the whole replay.")
    max_mapped_memory: int = Field(
        DEFAULT_MAX_MAPPED_MEMORY, gt=0, description="Bytes of memory the sample may have mapped at once."
    )
    max_allocation: int = Field(DEFAULT_MAX_ALLOCATION, gt=0, description="Bytes of a single allocation.")
    max_stages: int = Field(DEFAULT_MAX_STAGES, gt=0, description="Distinct stages (executed code bodies).")
    max_network_exchanges: int = Field(
        DEFAULT_MAX_NETWORK_EXCHANGES, gt=0, description="Network attempts (DNS, HTTP, TCP, UDP)."
    )
    max_dropped_bytes: int = Field(
        DEFAULT_MAX_DROPPED_BYTES, gt=0, description="Bytes of files the sample may write in total."
    )
