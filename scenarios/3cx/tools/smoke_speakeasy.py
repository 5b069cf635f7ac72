#!/usr/bin/env python3
"""Smoke test: run the synthetic 3CX stage-1 sample under Speakeasy and check the trace.

    python scenarios/3cx/tools/smoke_speakeasy.py [--arch x64|x86] [--no-marker] [-v]

Loads samples/ffmpeg.dll (d3dcompiler_47.dll beside it is auto-mounted into the
emulated application folder), runs DllMain and then the export av_register_all, and
checks the API trace:

* with CHAINREPLAY_SANDBOX=replay-only: CreateEventW(AVMonitorRefreshEvent),
  GetModuleFileNameW, CreateFileW/GetFileSize/ReadFile of d3dcompiler_47.dll,
  VirtualProtect(..., 0x40), then the stage-2 shellcode's own API calls
  (GetEnvironmentVariableW, VirtualAlloc, LoadLibraryA/GetProcAddress, VirtualProtect)
  and the mapped DLL's DllGetClassObject (with the real samcli.dll: its
  GetEnvironmentVariableW and CreateThread);
* without the variable: nothing but GetEnvironmentVariableW.

Exit status 0 when every expectation holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import speakeasy
from speakeasy.config import get_default_config_dict

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE.parent.parent
APP_DIR = "C:\\Users\\speakeasy_user\\AppData\\Local\\Programs\\3CXDesktopApp\\app"


def make_config(marker: bool) -> dict:
    cfg = get_default_config_dict()
    if marker:
        # Speakeasy quirk: GetEnvironmentVariable looks up name.lower(), config keys are used as-is.
        cfg["env"]["chainreplay_sandbox"] = "replay-only"
    cfg["current_dir"] = APP_DIR
    cfg["timeout"] = 120
    for proc in cfg["processes"]:
        if proc.get("is_main_exe"):
            proc["path"] = APP_DIR + "\\3CXDesktopApp.exe"
            proc["command_line"] = "3CXDesktopApp.exe"
    cfg["command_line"] = "3CXDesktopApp.exe"
    return cfg


def run(sample_dir: Path, marker: bool) -> list[tuple[str, str, list[str], str | None]]:
    """Return (entry point type, api name, argument displays, return value) for every API call."""
    se = speakeasy.Speakeasy(config=make_config(marker))
    try:
        module = se.load_module(path=str(sample_dir / "ffmpeg.dll"))
        # DllMain(DLL_PROCESS_ATTACH), then every export (only av_register_all here).
        se.run_module(module, all_entrypoints=True)
        report = se.get_report()
    finally:
        se.shutdown()
    calls = []
    for ep in report.entry_points or []:
        if ep.error is not None:
            calls.append((ep.ep_type, "!error", [str(ep.error.type), str(ep.error.pc), str(ep.error.api_name)], None))
        for ev in ep.events or []:
            if ev.event == "api":
                calls.append((ep.ep_type, ev.api_name, [a.display for a in ev.args], ev.ret_val))
    return calls


def has(calls, api: str, *needles: str) -> bool:
    for _ep, name, args, _ret in calls:
        if name.lower() == api.lower() and all(any(n.lower() in a.lower() for a in args) for n in needles):
            return True
    return False


def check(arch: str, verbose: bool) -> bool:
    scen = SCENARIOS / ("3cx" if arch == "x64" else "3cx-x86")
    samples = scen / "samples"
    ok = True

    calls = run(samples, marker=True)
    if verbose:
        for ep, name, args, ret in calls:
            print(f"  [{ep}] {name}({', '.join(args)}) -> {ret}")
    expect = [
        ("kernel32.GetEnvironmentVariableW", ("CHAINREPLAY_SANDBOX",)),
        ("kernel32.CreateEventW", ("AVMonitorRefreshEvent",)),
        ("kernel32.GetModuleFileNameW", ()),
        ("kernel32.CreateFileW", ("d3dcompiler_47.dll",)),
        ("kernel32.GetFileSize", ()),
        ("kernel32.ReadFile", ()),
        ("kernel32.VirtualProtect", ("PAGE_EXECUTE_READWRITE",)),  # 0x40
        # stage-2 shellcode (APIs resolved by PEB walk + export hashes)
        ("kernel32.VirtualAlloc", ()),
        ("kernel32.LoadLibraryA", ()),
        ("kernel32.GetProcAddress", ()),
    ]
    for api, needles in expect:
        good = has(calls, api, *needles)
        ok &= good
        print(f"[{arch}] {'ok  ' if good else 'FAIL'} {api} {' '.join(needles)}")
    n_env = sum(1 for c in calls if c[1].lower() == "kernel32.getenvironmentvariablew")
    good = n_env >= 3  # stage 1, stage-2 shellcode, mapped DLL
    ok &= good
    print(f"[{arch}] {'ok  ' if good else 'FAIL'} GetEnvironmentVariableW called {n_env}x (stage 1, 2 and DLL)")
    placeholder = has(calls, "kernel32.OutputDebugStringA", "3CXDesktopApp/18.11.1197")
    real = has(calls, "kernel32.CreateThread")
    good = placeholder or real
    ok &= good
    which = "placeholder DLL" if placeholder else "samcli.dll (CreateThread)"
    print(f"[{arch}] {'ok  ' if good else 'FAIL'} DllGetClassObject reached: {which if good else '-'}")
    errors = [c for c in calls if c[1] == "!error"]
    for e in errors:
        print(f"[{arch}] note: emulation error in {e[0]}: {e[2]}")

    calls = run(samples, marker=False)
    names = sorted({c[1] for c in calls})
    good = names == ["kernel32.GetEnvironmentVariableW"]
    ok &= good
    print(f"[{arch}] {'ok  ' if good else 'FAIL'} without marker only GetEnvironmentVariableW: {names}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=("x64", "x86", "both"), default="both")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the full API trace")
    args = ap.parse_args(argv)
    arches = ("x64", "x86") if args.arch == "both" else (args.arch,)
    ok = all([check(a, args.verbose) for a in arches])
    print("smoke: PASS" if ok else "smoke: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
