"""Scenario folders: ``scenario.toml`` plus data files, validated into a :class:`ReplayPlan`.

Every problem is reported as one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emulator.environment import GuestEnvironment, MissingFiles
from emulator.expect import Expect
from emulator.inputs import NO_SUCH_FILE, NOT_REGULAR, InputFileError, file_problem, read_input
from emulator.limits import (
    MAX_BODY_FILE_SIZE,
    MAX_INPUT_NESTING,
    MAX_SAMPLE_FILE_SIZE,
    MAX_SCENARIO_FILE_SIZE,
    Limits,
)
from emulator.plan import (
    DEFAULT_START_TIME,
    DEFAULT_USER,
    MAX_START_TIME,
    ExportCall,
    RegistryKey,
    RegistryValue,
    ReplayPlan,
    ResponderConfig,
    StringArg,
    VirtualFile,
    binary_value,
    canonical_key_path,
)
from emulator.sanitize import for_display
from emulator.scenario_paths import SCENARIO_FILE, OutsideScenario, owning_scenario, scenario_data_path

MANIFEST_FILE = "SHA256SUMS"
# A scenario error is one line: control characters escaped, cut at this length.
MAX_ERROR_DISPLAY = 1000


class ScenarioError(ValueError):
    """A scenario cannot be loaded; the message is one line naming the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioMeta(_Strict):
    name: str = Field(description="Short name; the default output folder is reports/<name>/.")
    description: str = ""
    seed: int = Field(1, description="Seed for rand(), CryptGenRandom and friends.")
    start_time: float = Field(
        DEFAULT_START_TIME,
        ge=0,
        le=MAX_START_TIME,
        allow_inf_nan=False,
        description="Guest clock at the start, Unix seconds (0 to 253402300799, 9999-12-31T23:59:59Z).",
    )
    host_process: str | None = Field(default=None, description="Application that loads the entry DLL.")


class ArgSpec(_Strict):
    ansi: str | None = None
    wide: str | None = None


class ExportSpec(_Strict):
    name: str
    args: list[int | ArgSpec] = Field(default_factory=list)


class TargetSpec(_Strict):
    path: str = Field(description="Entry sample, relative to the scenario folder.")
    emu_path: str = Field(description="Where the guest sees the sample.")
    kind: Literal["pe", "shellcode"] = "pe"
    arch: Literal["x86", "x64"] | None = None
    run_entry_point: bool = True
    exports: list[ExportSpec] = Field(default_factory=list)


class FileSpec(_Strict):
    emu_path: str
    path: str = Field(description="Host file, relative to the scenario folder.")


class RegistryValueSpec(_Strict):
    name: str
    type: Literal["REG_SZ", "REG_DWORD", "REG_EXPAND_SZ", "REG_BINARY"] = "REG_SZ"
    data: str = Field(description="The value; for REG_BINARY its bytes in hex (`hex:` and commas allowed).")

    @model_validator(mode="after")
    def _binary_is_hex(self) -> RegistryValueSpec:
        if self.type == "REG_BINARY":
            try:
                binary_value(self.data)
            except ValueError:
                raise ValueError("data: a REG_BINARY value is hex digits (e.g. 'de ad be ef' or 'hex:de,ad')") from None
        return self


class RegistrySpec(_Strict):
    key: str
    values: list[RegistryValueSpec] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _rooted(cls, key: str) -> str:
        canonical = canonical_key_path(key)
        if canonical is None:
            raise ValueError(
                f"{for_display(key, 60)!r} starts with no registry root (HKEY_LOCAL_MACHINE, HKEY_CURRENT_USER,"
                " HKEY_CLASSES_ROOT, HKEY_USERS, HKEY_CURRENT_CONFIG or HKLM, HKCU, HKCR, HKU, HKCC)"
            )
        return canonical


# A Windows version as the guest reports it: GetVersion packs the major and minor numbers in a byte
# each, and the PEB holds the build number in 16 bits. Past these, the guest's version blocks
# could not be written (the replay ended with an engine error).
_VersionPart = Annotated[int, Field(ge=0, le=0xFF)]
_BuildNumber = Annotated[int, Field(ge=0, le=0xFFFF)]


class EnvironmentSpec(_Strict):
    hostname: str = "WS-FINANCE-07"
    domain: str = "corp.example"
    user: str = DEFAULT_USER
    os_version: tuple[_VersionPart, _VersionPart, _BuildNumber] = (10, 0, 19045)
    variables: dict[str, str] = Field(default_factory=dict)
    sandbox_marker: bool = Field(True, description="Provide the variable that wakes the samples up.")
    # What the machine reports about itself (emulator/environment.py has the defaults).
    argv: list[str] = Field(default_factory=list, description="Command-line arguments after the program name.")
    processors: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    disk_free_gb: int | None = None
    screen: tuple[int, int] | None = None
    uptime_ms: int | None = None
    cpu_vendor: str | None = None
    hypervisor: bool | None = None

    def guest(self, missing_files: MissingFiles) -> GuestEnvironment:
        """The machine settings as a :class:`GuestEnvironment` (unset keys keep its defaults)."""
        values = {k: v for k, v in self.model_dump().items() if k in GuestEnvironment.model_fields and v is not None}
        return GuestEnvironment.model_validate({**values, "missing_files": missing_files})


class FilesSection(_Strict):
    """``[files]`` as a table: the policy for files the scenario does not provide, and the mapped files."""

    missing: MissingFiles = Field(
        "not_found", description='"not_found" (as Windows) or "default_content" (as bare Speakeasy).'
    )
    entries: list[FileSpec] = Field(default_factory=list)


class ResponderSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    name: str | None = None


class NetworkSpec(_Strict):
    default: Literal["nxdomain", "refused", "404"] = "nxdomain"


class ScenarioFile(_Strict):
    scenario: ScenarioMeta
    target: TargetSpec
    files: list[FileSpec] | FilesSection = Field(default_factory=list)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    registry: list[RegistrySpec] = Field(default_factory=list)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    responders: list[ResponderSpec] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits, description="Keys and defaults: emulator/limits.py.")
    expect: Expect | None = Field(
        None, description="Expectations: checked by `run --expect`, `check` and the test suite (emulator/expect.py)."
    )


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    location = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return for_display(f"{location}: {message}", limit=MAX_ERROR_DISPLAY)  # a key may hold a newline


def check_plain_data(value: Any, what: str, max_depth: int = MAX_INPUT_NESTING) -> None:
    """Refuse data nested deeper than ``max_depth`` or holding a non-finite number (inf, nan),
    walking it without recursion; raises ValueError naming the place."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"{where or what}: nested deeper than {max_depth} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where or what}: {item} is not a finite number")
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}".lstrip("."), depth + 1) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))


def read_scenario_file(folder: Path) -> ScenarioFile:
    path = folder / SCENARIO_FILE
    try:
        data = read_input(path, limit=MAX_SCENARIO_FILE_SIZE)
    except InputFileError as err:
        needs = f" (a scenario folder needs {SCENARIO_FILE})" if err.problem == NO_SUCH_FILE else ""
        raise ScenarioError(f"{err}{needs}") from err
    try:
        # newlines as read_text gave them (universal newlines), so a file reads as it always did
        raw = tomllib.loads(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: not valid TOML: {' '.join(str(err).split())}") from err
    except RecursionError as err:
        raise ScenarioError(f"{path}: nested deeper than the TOML reader can follow") from err
    try:
        check_plain_data(raw, "(top level)")
    except ValueError as err:
        raise ScenarioError(f"{path}: {err}") from err
    try:
        return ScenarioFile.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(f"{path}: {_first_error(err)}") from err


def _inside(folder: Path, relative: str, key: str, scenario_path: Path) -> Path:
    """A file of the scenario, or of a scenario beside it (see emulator/scenario_paths.py)."""
    try:
        candidate = scenario_data_path(folder, relative)
        problem = file_problem(candidate)
    except OutsideScenario as err:
        raise ScenarioError(
            f"{scenario_path}: {key}: {relative!r} is outside the scenario folder (and not in a scenario beside it)"
        ) from err
    except (ValueError, OSError) as err:  # NUL bytes, names over 255 bytes, loops
        raise ScenarioError(f"{scenario_path}: {key}: {relative!r} is not a valid path") from err
    if problem == NO_SUCH_FILE:
        raise ScenarioError(f"{scenario_path}: {key}: file {relative!r} not found")
    if problem is not None and problem.endswith(NOT_REGULAR):  # a folder, a FIFO, a device
        raise ScenarioError(f"{scenario_path}: {key}: {relative!r}: {problem}")
    if problem is not None:  # a name too long, a loop, no permission
        raise ScenarioError(f"{scenario_path}: {key}: {relative!r} is not a valid path ({problem})")
    return candidate


def read_manifest(folder: Path) -> dict[str, str]:
    manifest = folder / MANIFEST_FILE
    entries: dict[str, str] = {}
    if file_problem(manifest) == NO_SUCH_FILE:
        return entries
    try:
        text = read_input(manifest, limit=MAX_SCENARIO_FILE_SIZE).decode("utf-8")
    except InputFileError as err:
        raise ScenarioError(str(err)) from err
    except UnicodeDecodeError as err:
        raise ScenarioError(
            f"{manifest}: not a sha256sum manifest (not UTF-8 text: {err.reason} at byte {err.start})"
        ) from err
    for line in text.splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            entries[name.lstrip("*").removeprefix("./")] = digest.lower()
    return entries


def verify_manifest(folder: Path, used: list[Path]) -> None:
    """Refuse a sample or data file whose sha256 differs from the SHA256SUMS of the scenario that
    holds it (this one, or the scenario beside it whose data this one shares)."""
    manifests: dict[Path, dict[str, str]] = {}
    for path in used:
        resolved = path.resolve()
        owner = owning_scenario(folder, resolved) or folder.resolve()
        if owner not in manifests:
            manifests[owner] = read_manifest(owner)
            if not manifests[owner]:
                raise ScenarioError(
                    f"{owner / MANIFEST_FILE}: missing; the scenario's files cannot be verified "
                    "(use --allow-unverified to replay anyway)"
                )
        relative = resolved.relative_to(owner).as_posix()
        expected = manifests[owner].get(relative)
        if expected is None:
            raise ScenarioError(
                f"{owner / MANIFEST_FILE}: {relative} is not listed (use --allow-unverified to replay anyway)"
            )
        try:
            actual = hashlib.sha256(read_input(resolved, limit=MAX_SAMPLE_FILE_SIZE)).hexdigest()
        except InputFileError as err:
            raise ScenarioError(str(err)) from err
        if actual != expected:
            shown = relative if owner == folder.resolve() else f"../{owner.name}/{relative}"
            raise ScenarioError(
                f"{shown}: sha256 {actual[:16]}... does not match {MANIFEST_FILE} "
                f"({expected[:16]}...); rebuild with make or use --allow-unverified"
            )


def load_scenario(
    folder: Path,
    *,
    verify: bool = True,
    seed: int | None = None,
    limit_overrides: dict[str, Any] | None = None,
    mode: str = "fast",
) -> ReplayPlan:
    folder = folder.resolve()
    spec = read_scenario_file(folder)
    scenario_path = folder / SCENARIO_FILE
    target = _inside(folder, spec.target.path, "target.path", scenario_path)
    size = target.stat().st_size
    if size > MAX_SAMPLE_FILE_SIZE:
        raise ScenarioError(
            f"{scenario_path}: target.path: {spec.target.path}: file is {size} bytes, "
            f"larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit"
        )
    if spec.target.kind == "shellcode" and spec.target.arch is None:
        raise ScenarioError(f"{scenario_path}: target.arch: required for shellcode (x86 or x64)")
    file_specs = spec.files.entries if isinstance(spec.files, FilesSection) else spec.files
    missing_files: MissingFiles = spec.files.missing if isinstance(spec.files, FilesSection) else "not_found"
    files = [
        VirtualFile(emu_path=f.emu_path, host_path=str(_inside(folder, f.path, f"files[{i}].path", scenario_path)))
        for i, f in enumerate(file_specs)
    ]
    for i, (f, virtual) in enumerate(zip(file_specs, files, strict=True)):
        _check_size(Path(virtual.host_path), MAX_SAMPLE_FILE_SIZE, f"files[{i}].path", f.path, scenario_path)
    if spec.target.kind == "pe":
        from emulator.pe import PeError, check_file

        try:
            check_file(read_input(target, limit=MAX_SAMPLE_FILE_SIZE), [e.name for e in spec.target.exports])
        except InputFileError as err:
            raise ScenarioError(f"{scenario_path}: target.path: {err}") from err
        except PeError as err:
            raise ScenarioError(f"{scenario_path}: target.path: {spec.target.path}: {err}") from err
    used = [target, *(Path(f.host_path) for f in files)]
    responders: list[ResponderConfig] = []
    for i, r in enumerate(spec.responders):
        options = dict(r.model_extra or {})
        class_path = options.pop("class", None)
        if class_path is not None and not isinstance(class_path, str):
            raise ScenarioError(
                f"{scenario_path}: responders[{i}].class: expected a string 'package.module:ClassName', "
                f"got {type(class_path).__name__}"
            )
        options = options.pop("options", options)
        if not isinstance(options, dict):
            raise ScenarioError(
                f"{scenario_path}: responders[{i}].options: expected a table, got {type(options).__name__}"
            )
        responders.append(
            ResponderConfig(type=r.type, name=r.name or f"{r.type}{i}", class_path=class_path, options=options)
        )
        if r.type in ("c2", "static"):
            for key, value in _body_files(options):
                body = _inside(folder, value, f"responders[{i}].{key}", scenario_path)
                _check_size(body, MAX_BODY_FILE_SIZE, f"responders[{i}].{key}", value, scenario_path)
                used.append(body)
    _check_responders(folder, responders, scenario_path)
    if verify:
        verify_manifest(folder, used)
    overrides = {k: v for k, v in (limit_overrides or {}).items() if v is not None}
    try:
        limits = Limits.model_validate({**spec.limits.model_dump(), **overrides})
    except ValidationError as err:
        raise ScenarioError(f"{scenario_path}: limits.{_first_error(err)}") from err
    env = spec.environment
    try:
        guest = env.guest(missing_files)
    except ValidationError as err:
        raise ScenarioError(f"{scenario_path}: environment.{_first_error(err)}") from err
    try:
        exports = [ExportCall(name=e.name, args=[_arg(a) for a in e.args]) for e in spec.target.exports]
    except ValidationError as err:
        raise ScenarioError(f"{scenario_path}: target.exports.{_first_error(err)}") from err
    try:
        return _plan(spec, folder, target, files, responders, limits, guest, seed, mode, exports)
    except ValidationError as err:
        field = str(err.errors()[0]["loc"][0]) if err.errors()[0]["loc"] else ""
        section = PLAN_FIELD_SECTIONS.get(field, "")
        raise ScenarioError(f"{scenario_path}: {section}{_first_error(err)}") from err


# Where a plan's field comes from in scenario.toml, for its error messages.
PLAN_FIELD_SECTIONS = {
    "hostname": "environment.",
    "domain": "environment.",
    "user": "environment.",
    "os_version": "environment.",
    "seed": "scenario.",
    "start_time": "scenario.",
}


def _plan(
    spec: Any,
    folder: Path,
    target: Path,
    files: list[VirtualFile],
    responders: list[ResponderConfig],
    limits: Limits,
    guest: GuestEnvironment,
    seed: int | None,
    mode: str,
    exports: list[ExportCall],
) -> ReplayPlan:
    env = spec.environment
    return ReplayPlan(
        name=spec.scenario.name,
        target_path=str(target),
        target_kind=spec.target.kind,
        arch=spec.target.arch,
        emu_path=spec.target.emu_path,
        run_entry_point=spec.target.run_entry_point,
        exports=exports,
        host_process=spec.scenario.host_process,
        files=files,
        env=env.variables,
        hostname=env.hostname,
        domain=env.domain,
        user=env.user,
        registry=[
            RegistryKey(path=r.key, values=[RegistryValue(**v.model_dump()) for v in r.values]) for r in spec.registry
        ],
        os_version=env.os_version,
        sandbox_marker=env.sandbox_marker,
        guest=guest,
        seed=spec.scenario.seed if seed is None else seed,
        start_time=spec.scenario.start_time,
        limits=limits,
        responders=responders,
        network_default=spec.network.default,
        scenario_dir=str(folder),
        mode=mode,  # type: ignore[arg-type]
    )


def _check_size(path: Path, limit: int, key: str, relative: str, scenario_path: Path) -> None:
    """Refuse a data file over ``limit`` bytes by its size, before anything reads it."""
    size = path.stat().st_size
    if size > limit:
        raise ScenarioError(
            f"{scenario_path}: {key}: {relative}: file is {size} bytes, larger than the {limit}-byte limit"
        )


def _arg(arg: int | ArgSpec) -> int | StringArg:
    if isinstance(arg, int):
        return arg
    if arg.wide is not None:
        return StringArg(text=arg.wide, wide=True)
    return StringArg(text=arg.ansi or "")


def _body_files(options: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "body_file" and isinstance(v, str):
                    found.append((f"{key}.{k}".lstrip("."), v))
                else:
                    walk(v, f"{key}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")

    walk(options, "")
    return found


def _check_responders(folder: Path, responders: list[ResponderConfig], scenario_path: Path) -> None:
    """Build each built-in responder once now, so a bad section is reported before emulation starts.

    A user responder (``type = "python"``) is never imported here: user code runs only inside
    the contained emulation child, where a failure to build it is the replay's outcome. Here
    only the form of its ``class`` is checked.
    """
    from emulator.containment import Guard, install, uninstall
    from emulator.responders.router import ResponderLoadError, build_responder

    for i, r in enumerate(responders):
        if r.type == "python":
            module, sep, attr = (r.class_path or "").replace(":", ".").rpartition(".")
            if not sep or not module or not attr:
                raise ScenarioError(
                    f"{scenario_path}: responders[{i}] ({r.name}): type 'python' needs "
                    "'class' = 'package.module:ClassName'"
                )
            continue
        guard = install(Guard(allowed_write_root=None))
        try:
            build_responder(r.type, r.name, dict(r.options), folder, r.class_path)
        except ValidationError as err:
            raise ScenarioError(f"{scenario_path}: responders[{i}] ({r.name}): {_first_error(err)}") from err
        except (ResponderLoadError, ValueError, OSError) as err:
            raise ScenarioError(f"{scenario_path}: responders[{i}] ({r.name}): {err}") from err
        except Exception as err:  # noqa: BLE001 - user code
            raise ScenarioError(f"{scenario_path}: responders[{i}] ({r.name}): {type(err).__name__}: {err}") from err
        finally:
            uninstall(guard)
        if guard.violations:  # refused, and the responder swallowed the refusal
            raise ScenarioError(
                f"{scenario_path}: responders[{i}] ({r.name}): containment: refused {guard.violations[0]}"
            )
