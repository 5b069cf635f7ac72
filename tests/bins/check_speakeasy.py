#!/usr/bin/env python3
"""Run the test binaries under bare Speakeasy and check the API sequences
documented in README.md. Usage: python3 tests/bins/check_speakeasy.py [-v]

Not a pytest module (no test_ prefix); it is the evidence behind README.md.
"""
import json
import logging
import os
import sys

from speakeasy import Speakeasy

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "-v" in sys.argv

GREET = [
    "kernel32.GetCurrentProcessId",
    "kernel32.lstrlenA",
    "kernel32.GetTickCount",
    "kernel32.CreateFileW",
    "kernel32.WriteFile",
    "kernel32.CloseHandle",
]
EXPECTED = {
    "hello_exe.exe": [["kernel32.GetCommandLineA", "kernel32.lstrlenA", "kernel32.ExitProcess"]],
    "hello.dll": [[], GREET],  # DllMain run (no calls), then the Greet call
    "hello32.dll": [[], GREET],
    "hello_sc_x64.bin": [["kernel32.GetTickCount", "kernel32.ExitThread"]],
    "hello_sc_x86.bin": [["kernel32.GetTickCount", "kernel32.ExitThread"]],
}


def api_runs(se):
    rep = json.loads(se.get_json_report())
    runs = []
    for ep in rep["entry_points"]:
        apis = [e for e in ep.get("events") or [] if e.get("event") == "api"]
        if VERBOSE:
            print("  run %s %s ret=%s error=%s" % (ep["ep_type"], ep["start_addr"], ep.get("ret_val"), ep.get("error")))
            for e in apis:
                args = ", ".join(str(a.get("display", a.get("value"))) for a in e.get("args", []))
                print("    %s(%s) -> %s" % (e["api_name"], args, e.get("ret_val")))
        runs.append(([e["api_name"] for e in apis], ep))
    return runs, rep


def run(name):
    path = os.path.join(HERE, name)
    se = Speakeasy()
    if name.endswith(".bin"):
        addr = se.load_shellcode(path, arch="x64" if "x64" in name else "x86")
        se.run_shellcode(addr)
    else:
        mod = se.load_module(path)
        se.run_module(mod)
        if name.endswith(".dll"):
            greet = [e for e in mod.get_exports() if e.name == "Greet"][0].address
            arg = se.mem_alloc(0x100)
            se.mem_write(arg, b"world\0")
            se.call(greet, [arg, 3])
    return api_runs(se)


def main():
    logging.disable(logging.CRITICAL)
    ok = True
    for name, want in EXPECTED.items():
        if VERBOSE:
            print(name)
        runs, rep = run(name)
        got = [r[0] for r in runs]
        status = "ok" if got == want else "MISMATCH"
        ok &= got == want
        print("%-18s %s %s" % (name, status, got))
        if name.endswith(".dll"):
            dropped = runs[-1][1].get("dropped_files") or []
            greet_ret = runs[-1][1].get("ret_val")
            if greet_ret != "0x27" or [d["path"] for d in dropped] != ["C:\\Users\\Public\\greeting.txt"]:
                print("  unexpected Greet result", greet_ret, dropped)
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
