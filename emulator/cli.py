"""The command line. The only module that prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from emulator import __version__
from emulator.limits import MAX_SAMPLE_FILE_SIZE, Limits
from emulator.plan import ExportCall, ReplayPlan, StringArg, VirtualFile
from emulator.scenario import SCENARIO_FILE, ScenarioError, load_scenario

E_OK = 0
E_ERROR = 1
E_BAD_INPUT = 2
E_CONTAINMENT = 3
E_INTERRUPTED = 130

DEFAULT_REPORTS_DIR = Path("reports")
LIMIT_FLAGS = {
    "timeout": float,
    "max_instructions": int,
    "max_api_calls": int,
    "max_mapped_memory": int,
    "max_allocation": int,
    "max_stages": int,
    "max_network_exchanges": int,
    "max_dropped_bytes": int,
}


class UsageError(Exception):
    """Bad usage or input: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chainreplay",
        allow_abbrev=False,
        description="Replay multi-stage Windows attack chains in a sandboxed emulator.",
    )
    parser.add_argument("--version", action="version", version=f"chainreplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", allow_abbrev=False, help="replay a scenario folder or a bare sample")
    run.add_argument("target", help="scenario folder (with scenario.toml) or a sample file")
    run.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: reports/<name>/)")
    run.add_argument("-j", "--json", action="store_true", help="print the report as JSON on stdout")
    run.add_argument("-v", "--verbose", action="store_true", help="print every API call")
    run.add_argument("-d", "--debug", action="store_true", help="log emulator internals to stderr")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="NAME",
        help="bare DLL: export to call after DllMain (repeatable; --arg applies to the last one)",
    )
    run.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="VALUE",
        help="argument for the export: an integer, str:TEXT, wstr:TEXT or plain text",
    )
    run.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="EMU_PATH=HOST_PATH",
        help="map a host file into the guest (repeatable)",
    )
    run.add_argument("--arch", choices=["x86", "x64"], help="bare shellcode: its architecture")
    run.add_argument("--shellcode", action="store_true", help="treat the bare sample as raw shellcode")
    run.add_argument("--seed", type=int, help="seed for the guest's randomness (default: the scenario's)")
    run.add_argument(
        "--allow-unverified", action="store_true", help="replay scenario files whose sha256 does not match SHA256SUMS"
    )
    run.add_argument(
        "--in-process", action="store_true", help="emulate in this process instead of a watched child (debugging only)"
    )
    run.add_argument("--faithful", action="store_true", help="keep Speakeasy's own hooks (slower, for comparison)")
    for name, kind in LIMIT_FLAGS.items():
        field = Limits.model_fields[name]
        run.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            dest=name,
            metavar="N",
            help=f"{field.description} (default {field.default})",
        )

    _add_export_options(run)

    render = sub.add_parser("render", allow_abbrev=False, help="redraw the rendered files of a report")
    render.add_argument("report", help="a replay's output folder, or a report.json")
    render.add_argument("-o", "--output", metavar="OUTDIR", help="folder for the drawings (default: the report's)")

    analyse = sub.add_parser(
        "analyse",
        allow_abbrev=False,
        help="rebuild report.json and the rendered files of an output folder from its trace, without emulating",
    )
    analyse.add_argument("outdir", help="a replay's output folder (with trace.jsonl)")
    analyse.add_argument("-j", "--json", action="store_true", help="print the report as JSON on stdout")
    analyse.add_argument("-v", "--verbose", action="store_true", help="print every API call")
    analyse.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    schema = sub.add_parser("schema", allow_abbrev=False, help="print the JSON Schema of report.json")
    schema.add_argument("-o", "--output", metavar="FILE")
    return parser


def _add_export_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--yara",
        metavar="RULES",
        help="scan every stage, dropped file and request/response body with these YARA rules "
        "(a .yar file or a folder of them); matches go into report.json",
    )


def _check_yara(args: argparse.Namespace) -> None:
    """A rule that does not compile stops the run before the replay starts."""
    if args.yara is None:
        return
    from emulator.export.yara_scan import YaraError, compile_rules

    try:
        compile_rules(args.yara)
    except YaraError as err:
        raise UsageError(f"--yara {err}") from err


def _parse_arg(text: str) -> int | StringArg:
    if text.startswith("wstr:"):
        return StringArg(text=text[5:], wide=True)
    if text.startswith("str:"):
        return StringArg(text=text[4:])
    try:
        return int(text, 0)
    except ValueError:
        return StringArg(text=text)


def _limit_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name) is not None}


def _bare_plan(args: argparse.Namespace, path: Path) -> ReplayPlan:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_SAMPLE_FILE_SIZE:  # refused before it is read, shellcode or PE
        raise UsageError(f"{path}: file is {size} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit")
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{path}: empty file")
    shellcode = args.shellcode or (args.arch is not None and data[:2] != b"MZ")
    if not shellcode:
        from emulator.pe_check import PeCheckError, check_exports, check_pe

        try:
            check_pe(data)
            check_exports(data, list(args.export))
        except PeCheckError as err:
            raise UsageError(f"{path}: {err}") from err
    elif args.arch is None:
        raise UsageError(f"{path}: raw shellcode needs --arch x86|x64")
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
        if not Path(host).is_file():
            raise UsageError(f"--file {spec!r}: {host}: no such file")
        files.append(VirtualFile(emu_path=emu_path, host_path=str(Path(host).resolve())))
    try:
        limits = Limits.model_validate(_limit_overrides(args))
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from err
    return ReplayPlan(
        name=path.stem,
        target_path=str(path.resolve()),
        target_kind="shellcode" if shellcode else "pe",
        arch=args.arch,
        emu_path=f"C:\\Users\\analyst\\Desktop\\{path.name}",
        exports=exports,
        files=files,
        seed=args.seed if args.seed is not None else 1,
        limits=limits,
        mode="faithful" if args.faithful else "fast",
    )


def _run(args: argparse.Namespace) -> int:
    from emulator.replay import replay_target

    _check_yara(args)
    target = Path(args.target)
    if target.is_dir():
        if not (target / SCENARIO_FILE).is_file():
            raise UsageError(f"{target}: not a scenario folder (no {SCENARIO_FILE})")
        try:
            plan = load_scenario(
                target,
                verify=not args.allow_unverified,
                seed=args.seed,
                limit_overrides=_limit_overrides(args),
                mode="faithful" if args.faithful else "fast",
            )
        except ScenarioError as err:
            raise UsageError(str(err)) from err
    else:
        plan = _bare_plan(args, target)
    outdir = Path(args.output) if args.output else DEFAULT_REPORTS_DIR / plan.name
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: exists and is not a folder")
    result = replay_target(plan, outdir, isolate=not args.in_process, yara_rules=args.yara)
    _show(args, Path(result.report_path))
    return E_CONTAINMENT if result.status == "containment" else E_OK


def _show(args: argparse.Namespace, report_path: Path) -> None:
    """Print the report written at ``report_path`` as -j / -q / -v ask."""
    from emulator.render.console import render_summary
    from emulator.report import Report, ReportError

    if args.json:
        print(report_path.read_text(encoding="utf-8"), end="")
    elif not args.quiet:
        try:
            report = Report.from_file(report_path)
        except ReportError as err:
            raise UsageError(str(err)) from err
        print(render_summary(report, verbose=args.verbose))
        if report.yara is not None:
            from emulator.export.yara_scan import summary_line

            print(summary_line(report))


def _render(args: argparse.Namespace) -> int:
    from emulator.render import render_files
    from emulator.report import Report, ReportError

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        report = Report.from_file(path)
    except ReportError as err:
        raise UsageError(str(err)) from err
    out = Path(args.output) if args.output else path.parent
    out.mkdir(parents=True, exist_ok=True)
    errors = render_files(report, out)
    for error in errors:
        print(f"chainreplay: error: {error}", file=sys.stderr)
    if not errors:
        print(f"drew {out / 'stage_graph.png'} and .svg, .graphml")
    return E_ERROR if errors else E_OK


def _analyse(args: argparse.Namespace) -> int:
    from emulator.output import produce
    from emulator.trace import TraceError, read_trace

    outdir = Path(args.outdir)
    if not outdir.is_dir():
        raise UsageError(f"{outdir}: not a folder")
    try:
        trace = read_trace(outdir)
    except TraceError as err:
        raise UsageError(str(err)) from err
    report = produce(outdir, trace)
    _show(args, outdir.resolve() / "report.json")
    return E_CONTAINMENT if report.outcome.status == "containment" else E_OK


def _schema(args: argparse.Namespace) -> int:
    from emulator.report import Report

    text = json.dumps(Report.model_json_schema(by_alias=True), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return E_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if getattr(args, "debug", False) else logging.CRITICAL)
        if args.command == "run":
            return _run(args)
        if args.command == "render":
            return _render(args)
        if args.command == "analyse":
            return _analyse(args)
        return _schema(args)
    except UsageError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_BAD_INPUT
    except KeyboardInterrupt:
        print("chainreplay: interrupted", file=sys.stderr)
        return E_INTERRUPTED
    except OSError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
