#!/usr/bin/env python3
"""Run samples/benign.dll under bare Speakeasy and check the trace in README.md.
Usage: python3 scenarios/benign-dll/check_speakeasy.py [-v]
(Speakeasy looks env names up lower-cased: the config key is "chainreplay_sandbox".)
"""
import json
import logging
import os
import sys

from speakeasy import Speakeasy
from speakeasy.config import get_default_config_dict

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "-v" in sys.argv
COMPUTE = [
    "kernel32.GetEnvironmentVariableW",
    "kernel32.GetTickCount",
    "kernel32.GetCurrentThreadId",
    "kernel32.OutputDebugStringA",
]


def checksum(n):
    s = 0x811C9DC5
    for i in range(min(max(n, 0), 4096)):
        for b in range(4):
            s ^= (i >> (8 * b)) & 0xFF
            s = (s * 0x01000193) & 0xFFFFFFFF
    return s & 0x7FFFFFFF


def run(marker, n=None):
    cfg = get_default_config_dict()
    if marker:
        cfg["env"]["chainreplay_sandbox"] = "replay-only"
    se = Speakeasy(config=cfg)
    mod = se.load_module(os.path.join(HERE, "samples", "benign.dll"))
    if n is None:
        se.run_module(mod, all_entrypoints=True)
    else:
        se.run_module(mod)
        se.call([e for e in mod.get_exports() if e.name == "Compute"][0].address, [n])
    rep = json.loads(se.get_json_report())
    out = []
    for ep in rep["entry_points"]:
        apis = [e for e in ep.get("events") or [] if e.get("event") == "api"]
        others = [e["event"] for e in ep.get("events") or [] if e.get("event") != "api"]
        if VERBOSE:
            print("  run %s ret=%s error=%s" % (ep["ep_type"], ep.get("ret_val"), ep.get("error")))
            for e in apis:
                args = ", ".join(str(a.get("display", a.get("value"))) for a in e.get("args", []))
                print("    %#x %s(%s) -> %s" % (e["pos"]["pc"], e["api_name"], args, e.get("ret_val")))
        out.append((ep["ep_type"], [e["api_name"] for e in apis], ep.get("ret_val"), others,
                    ep.get("dropped_files"), ep.get("dynamic_code_segments")))
    return out


def main():
    logging.disable(logging.CRITICAL)
    cases = [
        ("call Compute(100), marker", run(True, 100),
         [("dll_entry.DLL_PROCESS_ATTACH", [], "0x1"), (None, COMPUTE, hex(checksum(100)))]),
        ("call Compute(100), no marker", run(False, 100),
         [("dll_entry.DLL_PROCESS_ATTACH", [], "0x1"), (None, COMPUTE[:1], "0xffffffff")]),
        ("all_entrypoints, marker", run(True),
         [("dll_entry.DLL_PROCESS_ATTACH", [], "0x1"), ("export.Compute", COMPUTE, hex(checksum(0x41420000)))]),
    ]
    ok = True
    for label, got, want in cases:
        good = len(got) == len(want) and all(
            (w[0] is None or g[0] == w[0]) and g[1] == w[1] and g[2] == w[2] and not g[3] and not g[4] and not g[5]
            for g, w in zip(got, want))
        ok &= good
        print("%-30s %s %s" % (label, "ok" if good else "MISMATCH", [(g[0], g[1], g[2]) for g in got]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
