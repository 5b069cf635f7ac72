"""What to replay: a plain, picklable description built from a scenario or the command line.

``replay_target(plan, outdir)`` in :mod:`emulator.replay` takes one of these and nothing else,
so a batch can ship plans to a process pool or a Dask cluster.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulator.environment import GuestEnvironment, guest_name_problem
from emulator.limits import Limits

# The variable every sample checks before it does anything; only chainreplay's guest has it.
SANDBOX_MARKER_NAME = "CHAINREPLAY_SANDBOX"
SANDBOX_MARKER_VALUE = "replay-only"
DEFAULT_USER = "analyst"
DEFAULT_START_TIME = 1680091200.0  # 2023-03-29T12:00:00Z, the week the 3CX compromise was disclosed
MAX_START_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second a SYSTEMTIME / datetime can hold


# Every model here builds its validator and serializer when first used (defer_build), not at
# import: the command line imports this module before it forks the emulation child
# (emulator/prestart.py), on the cold run's critical path, and the child only receives a plan
# (unpickling builds nothing); the parent builds them while it reads the scenario, beside the child.


class StringArg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    text: str
    wide: bool = False


ExportArg = int | StringArg


# An integer argument of an export is one register or stack slot: at most 64 bits, negative
# values as their two's complement.
MIN_EXPORT_INT = -(1 << 63)
MAX_EXPORT_INT = (1 << 64) - 1
# The seed of the guest's randomness (Python's generator would take -1 as 1).
MAX_SEED = (1 << 64) - 1


class ExportCall(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    name: str
    args: list[ExportArg] = Field(default_factory=list)

    @field_validator("args")
    @classmethod
    def _fits_a_slot(cls, args: list[ExportArg]) -> list[ExportArg]:
        for value in args:
            if isinstance(value, int) and not MIN_EXPORT_INT <= value <= MAX_EXPORT_INT:
                raise ValueError(f"argument {value:#x} does not fit in 64 bits")
        return args


class VirtualFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    emu_path: str = Field(description="Path the guest sees, e.g. C:\\\\Users\\\\analyst\\\\x.dll.")
    host_path: str = Field(description="Host file served for it (absolute).")


class RegistryValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    name: str
    type: Literal["REG_SZ", "REG_DWORD", "REG_EXPAND_SZ", "REG_BINARY"] = "REG_SZ"
    data: str


def binary_value(data: str) -> bytes:
    """A REG_BINARY value's bytes from its text in a scenario: hex digits, optionally after
    ``hex:`` and separated by commas or whitespace, as regedit exports them. ValueError if not."""
    text = data.strip()
    if text[:4].lower() == "hex:":
        text = text[4:]
    return bytes.fromhex(text.replace(",", " "))


# The roots a registry key's path may start with, in the spellings a scenario may use (Windows'
# abbreviations, the kernel's names): Speakeasy finds a configured key only by its root's full name,
# so a scenario key spelt ``HKLM\\...`` was never seen by the guest, nor merged with the machine's.
REGISTRY_ROOTS = {
    "hkey_local_machine": "HKEY_LOCAL_MACHINE",
    "hklm": "HKEY_LOCAL_MACHINE",
    "hkey_current_user": "HKEY_CURRENT_USER",
    "hkcu": "HKEY_CURRENT_USER",
    "hkey_classes_root": "HKEY_CLASSES_ROOT",
    "hkcr": "HKEY_CLASSES_ROOT",
    "hkey_users": "HKEY_USERS",
    "hku": "HKEY_USERS",
    "hkey_current_config": "HKEY_CURRENT_CONFIG",
    "hkcc": "HKEY_CURRENT_CONFIG",
    "registry\\machine": "HKEY_LOCAL_MACHINE",
    "registry\\user": "HKEY_USERS",
}


def canonical_key_path(path: str) -> str | None:
    """``path`` with its root spelt out (``hklm\\x`` -> ``HKEY_LOCAL_MACHINE\\x``) and no empty
    parts (doubled or trailing backslashes); None when it starts with no registry root."""
    parts = [part for part in path.split("\\") if part]
    if len(parts) >= 2 and f"{parts[0]}\\{parts[1]}".lower() in REGISTRY_ROOTS:
        parts = [REGISTRY_ROOTS[f"{parts[0]}\\{parts[1]}".lower()], *parts[2:]]
    elif parts and parts[0].lower() in REGISTRY_ROOTS:
        parts = [REGISTRY_ROOTS[parts[0].lower()], *parts[1:]]
    else:
        return None
    return "\\".join(parts)


class RegistryKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    path: str
    values: list[RegistryValue] = Field(default_factory=list)


class ResponderConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    type: str
    name: str
    class_path: str | None = None
    options: dict[str, object] = Field(default_factory=dict)


class ReplayPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    target_path: str = Field(description="Host path of the entry sample (absolute).")
    target_kind: Literal["pe", "shellcode"] = "pe"
    arch: Literal["x86", "x64"] | None = Field(default=None, description="Required for shellcode.")
    emu_path: str = Field(description="Guest path of the entry sample.")
    run_entry_point: bool = Field(True, description="Run DllMain / the EXE entry point first.")
    exports: list[ExportCall] = Field(default_factory=list)
    host_process: str | None = Field(default=None, description="Application that loads the entry DLL, if any.")
    files: list[VirtualFile] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    hostname: str = "WS-FINANCE-07"
    domain: str = "corp.example"
    user: str = DEFAULT_USER
    registry: list[RegistryKey] = Field(default_factory=list)
    os_version: tuple[int, int, int] = (10, 0, 19045)
    sandbox_marker: bool = Field(True, description="Provide the variable that wakes the samples up.")
    guest: GuestEnvironment = Field(default_factory=GuestEnvironment, description="What the machine reports.")
    seed: int = Field(1, ge=0, le=MAX_SEED)
    start_time: float = Field(DEFAULT_START_TIME, ge=0, le=MAX_START_TIME, allow_inf_nan=False)
    limits: Limits = Field(default_factory=Limits)
    responders: list[ResponderConfig] = Field(default_factory=list)
    network_default: Literal["nxdomain", "refused", "404"] = "nxdomain"
    scenario_dir: str | None = None
    mode: Literal["fast", "faithful"] = "fast"

    @field_validator("hostname", "user", "domain")
    @classmethod
    def _a_windows_name(cls, value: str) -> str:
        problem = guest_name_problem(value)
        if problem is not None:
            raise ValueError(f"{value[:40]!r}: not a valid name ({problem})")
        return value
