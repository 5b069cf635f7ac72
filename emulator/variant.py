"""Variant builds: a new scenario folder built from a scenario's sources and a few parameters.

A scenario that can be rebuilt with other keys, markers, domains, transports or architectures
declares its parameters in ``variant.toml`` (see ``scenarios/3cx/variant.toml``): each has a
type that validates the value, a default, and the make variables it contributes. A variant is
``make -C FOLDER OUT=<tmp> all`` with the variables of the parameters that differ from their
defaults (so no parameter at all rebuilds the committed scenario byte for byte), then the built
folders, their ``SHA256SUMS`` and a rewritten ``scenario.toml`` are copied to the new folder.
Builds are deterministic (the scenario's Makefile makes them so): the same parameters give the
same ``SHA256SUMS``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

VARIANT_FILE = "variant.toml"
VARIANT_RECORD = "variant.json"
# Seconds a variant build may take before it is stopped.
BUILD_TIMEOUT = 900
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class VariantError(Exception):
    """A variant cannot be built; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSpec(_Strict):
    description: str = ""
    type: Literal["text", "hex", "range", "domains", "choice"]
    default: str
    length: int | None = Field(None, description="hex: exact number of bytes.")
    max_length: int = Field(64, description="text: most characters.")
    min: int | None = None
    max: int | None = None
    choices: list[str] = Field(default_factory=list)
    make: dict[str, str] = Field(default_factory=dict, description="make variable -> template.")
    make_when: dict[str, dict[str, str]] = Field(default_factory=dict, description="choice -> make variables.")
    responder_hosts: str | None = Field(None, description="domains: name of the responder whose hosts they become.")


class VariantSpec(_Strict):
    copy_: list[str] = Field(alias="copy", description="Built folders that make the new scenario.")
    arch_compilers: dict[str, str] = Field(default_factory=dict)
    make: dict[str, str] = Field(default_factory=dict, description="Make variables of every variant build.")


class VariantFile(_Strict):
    variant: VariantSpec
    parameters: dict[str, ParameterSpec]


@dataclass(frozen=True)
class VariantResult:
    folder: Path
    name: str
    parameters: dict[str, str]
    manifest_sha256: str


def read_variant_file(folder: Path) -> VariantFile:
    path = folder / VARIANT_FILE
    if not path.is_file():
        raise VariantError(f"{folder}: no {VARIANT_FILE}: this scenario declares no variant parameters")
    try:
        return VariantFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise VariantError(f"{path}: not valid TOML: {err}") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VariantError(f"{path}: {where}: {first['msg']}") from err


def parse_settings(items: list[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise VariantError(f"--set {item!r}: expected NAME=VALUE")
        if name in settings and settings[name] != value:
            raise VariantError(f"--set {name}: given twice ({settings[name]!r} and {value!r})")
        settings[name] = value
    return settings


def describe_parameters(folder: Path) -> str:
    spec = read_variant_file(folder)
    lines = []
    for name, p in spec.parameters.items():
        default = p.default or "(the scenario's own)"
        choices = f" [{'|'.join(p.choices)}]" if p.choices else ""
        lines.append(f"{name}{choices} = {default}\n    {p.description}")
    return "\n".join(lines)


def _fields(name: str, p: ParameterSpec, value: str) -> dict[str, str]:
    """Validate ``value`` for parameter ``p``; the values its templates may use."""
    fields = {"value": value}
    if p.type == "text":
        if not value or len(value) > p.max_length or not all(32 <= ord(c) < 127 for c in value):
            raise VariantError(f"--set {name}: expected 1 to {p.max_length} printable ASCII characters")
        data = value.encode("ascii")
    elif p.type == "hex":
        try:
            data = bytes.fromhex(value)
        except ValueError as err:
            raise VariantError(f"--set {name}: {value!r} is not hex") from err
        if p.length is not None and len(data) != p.length:
            raise VariantError(f"--set {name}: expected {p.length} bytes ({2 * p.length} hex digits), got {len(data)}")
        fields["value"] = data.hex()
    elif p.type == "range":
        match = re.fullmatch(r"(\d+)-(\d+)", value)
        lo, hi = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        low_bound = p.min if p.min is not None else 0
        high_bound = p.max if p.max is not None else 2**31 - 1
        if not match or not low_bound <= lo <= hi <= high_bound:
            raise VariantError(f"--set {name}: expected LO-HI with {low_bound} <= LO <= HI <= {high_bound}")
        return fields | {"lo": str(lo), "hi": str(hi)}
    elif p.type == "domains":
        domains = [d.strip().lower() for d in value.split(",") if d.strip()]
        bad = [d for d in domains if not _DOMAIN.match(d)]
        if not domains or bad:
            raise VariantError(f"--set {name}: expected comma-separated domain names, got {bad[0] if bad else value!r}")
        return fields | {"list": ",".join(domains)}
    else:
        if value not in p.choices:
            raise VariantError(f"--set {name}: expected one of {', '.join(p.choices)}, got {value!r}")
        return fields
    return fields | {"hex": data.hex(), "c_bytes": ",".join(f"0x{b:02x}" for b in data)}


def make_variables(spec: VariantFile, settings: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(make variables, the parameters that differ from their defaults)."""
    unknown = sorted(set(settings) - set(spec.parameters))
    if unknown:
        raise VariantError(f"--set {unknown[0]}: unknown parameter (known: {', '.join(spec.parameters)})")
    variables: dict[str, list[str]] = {}
    changed: dict[str, str] = {}
    for name, p in spec.parameters.items():
        if name not in settings:
            continue
        fields = _fields(name, p, settings[name])
        default_fields = _fields(name, p, p.default) if p.default else None
        if default_fields is not None and default_fields == fields:
            continue
        changed[name] = fields.get("list", fields["value"])
        templates = dict(p.make)
        templates.update(p.make_when.get(fields["value"], {}))
        for variable, template in templates.items():
            try:
                variables.setdefault(variable, []).append(template.format(**fields))
            except (KeyError, IndexError) as err:
                raise VariantError(f"{VARIANT_FILE}: parameters.{name}: template {template!r}: no field {err}") from err
    return {k: " ".join(v) for k, v in variables.items()}, changed


# ---- scenario.toml of the variant ---------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise VariantError(f"cannot write {type(value).__name__} to TOML")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _table(header: str, table: dict[str, Any], out: list[str]) -> None:
    out.append(header)
    nested = []
    for key, value in table.items():
        if _is_table_list(value):
            nested.append((key, value))
        else:
            out.append(f"{_key(key)} = {_value(value)}")
    name = header.strip("[]")
    for key, items in nested:
        for item in items:
            out.append("")
            _table(f"[[{name}.{_key(key)}]]", item, out)


def dumps_toml(document: dict[str, Any]) -> str:
    """A small TOML writer for scenario documents (tables, arrays of tables, inline values)."""
    out: list[str] = []
    for key, value in document.items():
        if isinstance(value, dict):
            out.append("")
            _table(f"[{_key(key)}]", value, out)
        elif _is_table_list(value):
            for item in value:
                out.append("")
                _table(f"[[{_key(key)}]]", item, out)
        else:
            out.insert(0, f"{_key(key)} = {_value(value)}")
    return "\n".join(out).lstrip("\n") + "\n"


def variant_scenario(source: dict[str, Any], spec: VariantFile, changed: dict[str, str], name: str) -> dict[str, Any]:
    document = json.loads(json.dumps(source))  # a deep copy
    document.pop("expect", None)  # the source's expectations describe the source
    meta = document.setdefault("scenario", {})
    meta["name"] = name
    if changed:
        settings = ", ".join(f"{k}={v}" for k, v in changed.items())
        meta["description"] = f"{meta.get('description', '')} (variant: {settings})".strip()
    for param, value in changed.items():
        responder = spec.parameters[param].responder_hosts
        if responder is None:
            continue
        domains = value.split(",")
        for entry in document.get("responders", []):
            if entry.get("name") == responder:
                entry["hosts"] = [d.strip().lower() for d in domains]
    return document


# ---- building -----------------------------------------------------------------------------------


def _check_tools(spec: VariantFile, arch: str) -> None:
    if shutil.which("make") is None:
        raise VariantError("GNU make is missing: install it (apt-get install make) to build variants")
    compiler = spec.variant.arch_compilers.get(arch)
    if compiler and shutil.which(compiler) is None:
        raise VariantError(
            f"mingw-w64 is missing: {compiler} not found on PATH (apt-get install mingw-w64) to build {arch} variants"
        )


def build_variant(folder: Path, output: Path, settings: dict[str, str], *, name: str | None = None) -> VariantResult:
    """Build the variant of the scenario in ``folder`` into the new folder ``output``."""
    folder = folder.resolve()
    spec = read_variant_file(folder)
    scenario_path = folder / "scenario.toml"
    try:
        source = tomllib.loads(scenario_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise VariantError(f"{scenario_path}: cannot read: {err}") from err
    variables, changed = make_variables(spec, settings)
    name = name or output.name
    if not _NAME.match(name):
        raise VariantError(f"{name!r}: a scenario name is letters, digits, '.', '_' and '-' (at most 64)")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise VariantError(f"{output}: exists and is not an empty folder")
    arch = settings.get("arch", spec.parameters["arch"].default if "arch" in spec.parameters else "x64")
    _check_tools(spec, arch)
    with tempfile.TemporaryDirectory(prefix="chainreplay-variant-") as tmp:
        tree = Path(tmp) / "tree"
        command = ["make", "--no-print-directory", "-C", str(folder), f"OUT={tree}", f"PYTHON={sys.executable}", "all"]
        command += [f"{k}={v}" for k, v in sorted({**spec.variant.make, **variables}.items())]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as err:
            raise VariantError(f"variant build took longer than {BUILD_TIMEOUT} s and was stopped") from err
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            raise VariantError(f"variant build failed: {lines[-1] if lines else f'make exited {done.returncode}'}")
        output.mkdir(parents=True, exist_ok=True)
        for sub in spec.variant.copy_:
            if (tree / sub).is_dir():
                shutil.copytree(tree / sub, output / sub)
        shutil.copy2(tree / "SHA256SUMS", output / "SHA256SUMS")
    document = variant_scenario(source, spec, changed, name)
    header = (
        f"# Built by `chainreplay variant` from {folder.name} with "
        f"{', '.join(f'{k}={v}' for k, v in changed.items()) or 'no change'}; see {VARIANT_RECORD}.\n"
    )
    (output / "scenario.toml").write_text(header + dumps_toml(document), encoding="utf-8")
    manifest_sha256 = hashlib.sha256((output / "SHA256SUMS").read_bytes()).hexdigest()
    record = {
        "source": folder.name,
        "parameters": changed,
        "make_variables": variables,
        "sha256sums": manifest_sha256,
    }
    (output / VARIANT_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return VariantResult(output, name, changed, manifest_sha256)
