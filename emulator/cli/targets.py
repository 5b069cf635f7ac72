"""What to replay: a scenario folder's plan, or a bare sample's from the flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator.cli.common import (
    UsageError,
    _limit_overrides,
)
from emulator.inputs import NO_SUCH_FILE, InputFileError, file_problem, read_input
from emulator.limits import (
    MAX_DEPENDENCIES_BESIDE,
    MAX_FILES_BESIDE,
    MAX_SAMPLE_FILE_SIZE,
    Limits,
)
from emulator.plan import MAX_EXPORT_INT, MIN_EXPORT_INT, ExportCall, ReplayPlan, StringArg, VirtualFile
from emulator.scenario import SCENARIO_FILE, ScenarioError, load_scenario


def _parse_arg(text: str) -> int | StringArg:
    if text.startswith("wstr:"):
        return StringArg(text=text[5:], wide=True)
    if text.startswith("str:"):
        return StringArg(text=text[4:])
    try:
        value = int(text, 0)
    except ValueError:
        return StringArg(text=text)
    if not MIN_EXPORT_INT <= value <= MAX_EXPORT_INT:
        raise UsageError(f"--arg {text[:40]}: does not fit in a 64-bit argument")
    return value


GUEST_APPLICATION_FOLDER = "C:\\Users\\analyst\\Desktop"


def _names_in(data: bytes) -> bytes:
    """``data`` with ASCII letters lower-cased, to find file names in it as a loader compares them."""
    return data.lower()


def _named_in(name: str, lowered: bytes) -> bool:
    """Whether the file name ``name`` occurs in ``lowered`` (:func:`_names_in`), as an ANSI or a
    UTF-16LE string: in an import table, a delay-load descriptor or a LoadLibrary argument."""
    text = name.lower()
    forms = [text.encode(encoding) for encoding in ("ascii", "utf-16-le") if _encodes(text, encoding)]
    return any(form in lowered for form in forms)


def _encodes(text: str, encoding: str) -> bool:
    """Whether ``text`` has a form in ``encoding`` (a host file name that is not UTF-8 has none)."""
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def dependencies_beside(path: Path, data: bytes) -> list[Path]:
    """The PE files beside a bare sample on the host that it names (its imports, its delay
    loads, a LoadLibrary by bare name: any ANSI or UTF-16 occurrence of the file name, without
    case), then those they name in turn, breadth first, at most :data:`MAX_DEPENDENCIES_BESIDE`:
    what Windows' loader would find in the application's folder had the sample been run from
    that folder. Files that are not readable PEs within the size limit are left out."""
    try:
        beside = sorted(
            (entry for entry in path.parent.iterdir() if entry.is_file() and entry.name != path.name),
            key=lambda entry: entry.name.lower(),
        )[:MAX_FILES_BESIDE]
    except OSError:
        return []
    taken: list[Path] = []
    pending = [_names_in(data)]
    while pending and len(taken) < MAX_DEPENDENCIES_BESIDE:
        lowered = pending.pop(0)
        for entry in [entry for entry in beside if _named_in(entry.name, lowered)]:
            beside.remove(entry)
            try:
                dependency = read_input(entry, limit=MAX_SAMPLE_FILE_SIZE)
            except InputFileError:
                continue
            if dependency[:2] == b"MZ" and len(taken) < MAX_DEPENDENCIES_BESIDE:
                taken.append(entry)
                pending.append(_names_in(dependency))
    return taken


def _bare_plan(args: argparse.Namespace, path: Path) -> ReplayPlan:
    try:  # a FIFO or a device is refused, never read; the size before reading, shellcode or PE
        data = read_input(path, limit=MAX_SAMPLE_FILE_SIZE)
    except InputFileError as err:
        raise UsageError(str(err)) from err
    if not data:
        raise UsageError(f"{path}: empty file")
    shellcode = args.shellcode or (args.arch is not None and data[:2] != b"MZ")
    if not shellcode:
        from emulator.pe import PeError, check_file

        try:
            check_file(data, list(args.export))
        except PeError as err:
            raise UsageError(f"{path}: {err}") from err
    elif args.arch is None:
        raise UsageError(f"{path}: raw shellcode needs --arch x86|x64|amd64")
    exports: list[ExportCall] = [ExportCall(name=name) for name in args.export]
    if args.arg and not exports:
        raise UsageError("--arg needs an --export to apply to")
    if exports:
        exports[-1] = ExportCall(name=exports[-1].name, args=[_parse_arg(a) for a in args.arg])
    files = []
    for spec in args.file:
        emu_path, sep, host = spec.partition("=")
        if not sep or not emu_path or not host:
            raise UsageError(f"--file {spec!r}: expected EMU_PATH=HOST_PATH")
        problem = file_problem(host)
        if problem is not None:
            raise UsageError(f"--file {spec!r}: {host}: {problem}")
        size = Path(host).stat().st_size
        if size > MAX_SAMPLE_FILE_SIZE:
            raise UsageError(
                f"--file {spec!r}: file is {size} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit"
            )
        files.append(VirtualFile(emu_path=emu_path, host_path=str(Path(host).resolve())))
    if not shellcode and not getattr(args, "alone", False):
        given = {virtual.emu_path.lower() for virtual in files}
        for dependency in dependencies_beside(path, data):
            emu_path = f"{GUEST_APPLICATION_FOLDER}\\{dependency.name}"
            if emu_path.lower() not in given:
                files.append(VirtualFile(emu_path=emu_path, host_path=str(dependency.resolve())))
    limits = Limits.model_validate(_limit_overrides(args))
    return ReplayPlan(
        name=path.stem,
        target_path=str(path.resolve()),
        target_kind="shellcode" if shellcode else "pe",
        arch="x64" if args.arch == "amd64" else args.arch,
        emu_path=f"{GUEST_APPLICATION_FOLDER}\\{path.name}",
        exports=exports,
        files=files,
        seed=args.seed if args.seed is not None else 1,
        limits=limits,
        mode="faithful" if args.faithful else "fast",
    )


def _scenarios_under(folder: Path) -> list[Path]:
    """The scenario folders directly under ``folder`` (each holds a scenario.toml), by name."""
    try:
        return sorted(sub.parent for sub in folder.glob(f"*/{SCENARIO_FILE}"))
    except OSError:
        return []


def expand_targets(texts: list[str]) -> list[Path]:
    """The targets of `check` and `batch`, each as given, except a folder of scenarios (no
    scenario.toml of its own, scenario folders under it, like `scenarios`) which stands for
    those folders, by name: a shell glob such as `scenarios/*/` also names folders that are not
    scenarios (shared sources), and a target that is not a scenario is an error, never skipped."""
    targets: list[Path] = []
    for text in texts:
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir() and file_problem(path / SCENARIO_FILE) == NO_SUCH_FILE:
            targets.extend(_scenarios_under(path) or [path])
        else:
            targets.append(path)
    return targets


def _plan_for_target(path: Path, *, allow_unverified: bool = False) -> ReplayPlan:
    """The plan of a scenario folder, or of a bare sample with `run`'s defaults."""
    if path.is_dir():
        if file_problem(path / SCENARIO_FILE) == NO_SUCH_FILE:  # any other problem: load_scenario names it
            hint = ""
            if _scenarios_under(path.resolve().parent):
                hint = f"; to take every scenario folder beside it, give {path.parent} itself"
            raise UsageError(f"{path}: not a scenario folder (no {SCENARIO_FILE}){hint}")
        try:
            return load_scenario(path, verify=not allow_unverified)
        except ScenarioError as err:
            raise UsageError(str(err)) from err
    from emulator.cli.app import build_parser

    defaults = build_parser().parse_args(["run", "--", str(path)])
    return _bare_plan(defaults, path)
