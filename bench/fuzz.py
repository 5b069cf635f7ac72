#!/usr/bin/env python3
"""chainreplay fuzz harness (issue 14): hostile inputs, each must be answered.

    python bench/fuzz.py [--seed N] [--pe N] [--toml N] [--report N] [--case-timeout S]

Three families, each mutated from a real input of this repository:

* ``pe``      header fields of tests/bins/hello.dll and hello32.dll (machine, magic, section
              count and sizes, SizeOfHeaders, SizeOfImage, e_lfanew, data directories), each
              replayed by ``python -m emulator run`` in a subprocess with a hard time limit;
* ``toml``    scenarios/*/scenario.toml (values swapped for other types, inf/nan, huge or
              deeply nested values, lines dropped or duplicated), loaded with ``load_scenario``;
* ``report``  a real report.json (subtrees replaced, keys dropped, nesting, huge strings),
              given to ``chainreplay render``.

An input is answered when it ends with exit 0/2/3 (or a ScenarioError), one line on stderr at
most for an error, no traceback anywhere (console or report.json), within its time limit.
Prints how many were tried and every traceback or hang found. Not a test: the suite keeps one
regression test per class found (tests/test_robustness_*.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PE_SOURCES = [ROOT / "tests" / "bins" / "hello.dll", ROOT / "tests" / "bins" / "hello32.dll"]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").iterdir() if (p / "scenario.toml").is_file())
ANSWERED_EXIT_CODES = {0, 2, 3}


@dataclass
class Tally:
    tried: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (family, input, what)

    def count(self, family: str) -> None:
        self.tried[family] = self.tried.get(family, 0) + 1

    def found(self, family: str, case: str, what: str) -> None:
        self.findings.append((family, case, what))
        print(f"FOUND [{family}] {case}\n{what}\n", flush=True)


class Hang(BaseException):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- PE headers -------------------------------------------------------------------------------


def pe_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    pe = struct.unpack_from("<I", out, 0x3C)[0]
    magic = struct.unpack_from("<H", out, pe + 24)[0]
    opt = pe + 24
    dirs = opt + (96 if magic == 0x10B else 112)
    sections = opt + struct.unpack_from("<H", out, pe + 20)[0]
    choices: list[tuple[str, int, str]] = [
        ("Machine", pe + 4, "<H"),
        ("NumberOfSections", pe + 6, "<H"),
        ("SizeOfOptionalHeader", pe + 20, "<H"),
        ("Magic", opt, "<H"),
        ("AddressOfEntryPoint", opt + 16, "<I"),
        ("SizeOfImage", opt + 56, "<I"),
        ("SizeOfHeaders", opt + 60, "<I"),
        ("e_lfanew", 0x3C, "<I"),
        ("ExportDirectory.VirtualAddress", dirs, "<I"),
        ("ExportDirectory.Size", dirs + 4, "<I"),
        ("ImportDirectory.VirtualAddress", dirs + 8, "<I"),
        ("ImportDirectory.Size", dirs + 12, "<I"),
        ("RelocDirectory.VirtualAddress", dirs + 40, "<I"),
        ("TlsDirectory.VirtualAddress", dirs + 72, "<I"),
        ("Section0.VirtualSize", sections + 8, "<I"),
        ("Section0.VirtualAddress", sections + 12, "<I"),
        ("Section0.SizeOfRawData", sections + 16, "<I"),
        ("Section0.PointerToRawData", sections + 20, "<I"),
    ]
    described = []
    for _ in range(rng.randint(1, 3)):
        name, offset, fmt = rng.choice(choices)
        bits = 16 if fmt == "<H" else 32
        value = rng.choice(
            [0, 1, (1 << bits) - 1, 1 << (bits - 1), rng.getrandbits(bits), 0x14C, 0x8664, 0x10B, 0x20B, 0x200]
        )
        value &= (1 << bits) - 1
        if offset + struct.calcsize(fmt) <= len(out):
            struct.pack_into(fmt, out, offset, value)
            described.append(f"{name}={value:#x}")
    return bytes(out), ", ".join(described)


def fuzz_pe(count: int, rng: random.Random, tally: Tally, work: Path, case_timeout: float) -> None:
    for i in range(count):
        source = rng.choice(PE_SOURCES)
        data, what = pe_mutation(source.read_bytes(), rng)
        sample = work / f"pe{i}.dll"
        sample.write_bytes(data)
        outdir = work / f"pe-out{i}"
        case = f"{source.name}: {what}"
        tally.count("pe")
        command = [sys.executable, "-m", "emulator", "run", str(sample), "-o", str(outdir), "-q", "--timeout", "10"]
        try:
            proc = subprocess.run(
                command,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=case_timeout,
            )
        except subprocess.TimeoutExpired:
            tally.found("pe", case, f"hang: no answer in {case_timeout:g} s")
            continue
        check_answer(tally, "pe", case, proc.returncode, proc.stderr, outdir / "report.json")
        shutil.rmtree(outdir, ignore_errors=True)


def check_answer(tally: Tally, family: str, case: str, rc: int, stderr: str, report: Path | None) -> None:
    if "Traceback" in stderr:
        tally.found(family, case, f"traceback on stderr (exit {rc}):\n{stderr[-3000:]}")
    elif rc not in ANSWERED_EXIT_CODES:
        tally.found(family, case, f"exit {rc}: {stderr[-500:]}")
    elif rc == 2 and stderr.count("\n") != 1:
        tally.found(family, case, f"exit 2 with {stderr.count(chr(10))} lines: {stderr[-500:]}")
    if report is not None and report.is_file():
        text = report.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text or re.search(r'File \\"/', text):
            tally.found(family, case, "traceback in report.json")


# ---- scenario.toml ----------------------------------------------------------------------------

ODD_VALUES = [
    "inf",
    "-inf",
    "nan",
    "0",
    "-1",
    "18446744073709551616",
    '""',
    '"\\u0000"',
    '"' + "A" * 5000 + '"',
    "[]",
    "{}",
    "true",
    "1979-05-27T07:32:00Z",
    "[" * 200 + "]" * 200,
    "{a = " * 60 + "1" + "}" * 60,
    '"../../../../etc/passwd"',
    '"/dev/zero"',
]


def toml_mutation(text: str, rng: random.Random) -> tuple[str, str]:
    lines = text.splitlines()
    value_lines = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w.\"-]+\s*=", line)]
    kind = rng.choice(["value", "value", "value", "drop", "duplicate", "table"])
    if kind == "value" and value_lines:
        i = rng.choice(value_lines)
        key = lines[i].split("=", 1)[0]
        new = rng.choice(ODD_VALUES)
        lines[i] = f"{key}= {new}"
        return "\n".join(lines) + "\n", f"line {i + 1}: {key.strip()} = {new[:40]}"
    if kind == "drop" and lines:
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + lines[i + 1 :]) + "\n", f"line {i + 1} dropped"
    if kind == "duplicate" and lines:
        i = rng.randrange(len(lines))
        return "\n".join(lines[: i + 1] + lines[i:]) + "\n", f"line {i + 1} duplicated"
    table = rng.choice(["[limits]", "[[responders]]", "[target]", "[environment]", "[network]", "[[files]]"])
    extra = rng.choice(ODD_VALUES)
    return text + f"\n{table}\nfuzz = {extra}\n", f"appended {table} fuzz = {extra[:40]}"


def fuzz_toml(count: int, rng: random.Random, tally: Tally, work: Path, case_timeout: float) -> None:
    from emulator.scenario import ScenarioError, load_scenario

    for i in range(count):
        source = rng.choice(SCENARIOS)
        folder = work / f"toml{i}"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "build"))
        text, what = toml_mutation((folder / "scenario.toml").read_text(encoding="utf-8"), rng)
        (folder / "scenario.toml").write_text(text, encoding="utf-8")
        case = f"{source.name}: {what}"
        tally.count("toml")
        try:
            with time_limit(case_timeout):
                load_scenario(folder, verify=False)
        except ScenarioError as err:
            if "\n" in str(err):
                tally.found("toml", case, f"ScenarioError on several lines: {err!s:.500}")
        except Hang:
            tally.found("toml", case, f"hang: load_scenario did not return in {case_timeout:g} s")
        except BaseException as err:  # noqa: BLE001 - a finding
            import traceback

            tally.found("toml", case, "".join(traceback.format_exception(err))[-3000:])
        shutil.rmtree(folder, ignore_errors=True)


# ---- report.json ------------------------------------------------------------------------------


def odd_json(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            [],
            {},
            0,
            -1,
            1e308,
            "x" * 100_000,
            [[[[[[[[]]]]]]]],
            {"nodes": None},
            {"nodes": [], "edges": [{}]},
            {"directed": True, "nodes": [{"id": None}], "edges": []},
            {"directed": True, "nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "b"}]},
            {"directed": True, "nodes": [{"id": "a", "kind": 5, "label": {}}], "edges": []},
            "\ud800",
            True,
        ]
    )


def report_mutation(report: dict[str, Any], rng: random.Random) -> tuple[Any, str]:
    data = copy.deepcopy(report)
    paths: list[list[Any]] = []
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    while stack:
        node, path = stack.pop()
        if path:
            paths.append(path)
        if len(paths) > 5000:
            break
        if isinstance(node, dict):
            stack.extend((v, [*path, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(node[:20]))
    graph_paths = [p for p in paths if p and p[0] == "graph"]
    path = rng.choice(graph_paths if graph_paths and rng.random() < 0.7 else paths)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.2 and isinstance(parent, dict):
        del parent[path[-1]]
        return data, f"{'.'.join(map(str, path))} deleted"
    value = odd_json(rng)
    parent[path[-1]] = value
    return data, f"{'.'.join(map(str, path))} = {json.dumps(value)[:60]}"


def fuzz_report(count: int, rng: random.Random, tally: Tally, work: Path, case_timeout: float) -> None:
    from emulator.cli import main

    base = work / "base"
    rc = main(["run", str(PE_SOURCES[0]), "--export", "Greet", "--arg", "str:x", "--arg", "1", "-o", str(base), "-q"])
    if rc != 0:
        tally.found("report", "base replay", f"exit {rc}")
        return
    report = json.loads((base / "report.json").read_text(encoding="utf-8"))
    commands = ["render"]  # ``analyse`` reads a trace folder, not a report
    for i in range(count):
        data, what = report_mutation(report, rng)
        path = work / f"report{i}.json"
        path.write_bytes(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        for command in commands:
            case = f"{command}: {what}"
            tally.count(f"report/{command}")
            stderr = io.StringIO()
            rc = -1
            try:
                with (
                    time_limit(case_timeout),
                    contextlib.redirect_stderr(stderr),
                    contextlib.redirect_stdout(io.StringIO()),
                ):
                    rc = main([command, str(path), "-o", str(work / f"draw{i}")])
            except Hang:
                tally.found("report", case, f"hang: no answer in {case_timeout:g} s")
                continue
            except BaseException as err:  # noqa: BLE001 - a finding
                import traceback

                tally.found("report", case, "".join(traceback.format_exception(err))[-3000:])
                continue
            check_answer(tally, "report", case, rc, stderr.getvalue(), None)
        shutil.rmtree(work / f"draw{i}", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pe", type=int, default=20, help="PE header mutations (each a full replay)")
    parser.add_argument("--toml", type=int, default=300, help="scenario.toml mutations")
    parser.add_argument("--report", type=int, default=200, help="report.json mutations")
    parser.add_argument("--case-timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally = Tally()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chainreplay-fuzz-") as tmp:
        work = Path(tmp)
        runs: list[tuple[str, int, Callable[..., None]]] = [
            ("toml", args.toml, fuzz_toml),
            ("report", args.report, fuzz_report),
            ("pe", args.pe, fuzz_pe),
        ]
        for name, count, run in runs:
            if count > 0:
                print(f"[{time.monotonic() - began:6.1f} s] {name}: {count} mutations", flush=True)
                run(count, rng, tally, work, args.case_timeout)
    print(f"\ntried: {json.dumps(tally.tried)} in {time.monotonic() - began:.0f} s (seed {args.seed})")
    print(f"found: {len(tally.findings)}")
    for family, case, what in tally.findings:
        print(f"- [{family}] {case}: {what.splitlines()[-1] if what else ''}")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
