#!/usr/bin/env python3
"""Run samples/downloader.exe under bare Speakeasy, twice:

1. bare: Speakeasy's own WinHTTP handlers. WinHttpQueryDataAvailable has no
   handler and is emulated from its signature (TRUE, *avail = 0), so the
   download loop ends immediately and the sample exits with code 4.
2. fed: WinHttpQueryHeaders / WinHttpQueryDataAvailable / WinHttpReadData are
   hooked and serve payload/sc.bin, so stage 2 runs from the VirtualAlloc'd
   memory and drops C:\\Users\\Public\\demo_dropped.txt.

Usage: python3 scenarios/winhttp-downloader/check_speakeasy.py [-v]
The marker is set through the config env; Speakeasy looks env names up
lower-cased, so the key must be "chainreplay_sandbox".
"""
import json
import logging
import os
import struct
import sys

from speakeasy import Speakeasy
from speakeasy.config import get_default_config_dict

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "-v" in sys.argv
SC = open(os.path.join(HERE, "payload", "sc.bin"), "rb").read()

NET = [
    "kernel32.GetEnvironmentVariableW",
    "winhttp.WinHttpOpen",
    "winhttp.WinHttpConnect",
    "winhttp.WinHttpOpenRequest",
    "winhttp.WinHttpAddRequestHeaders",
    "winhttp.WinHttpSendRequest",
    "winhttp.WinHttpReceiveResponse",
    "winhttp.WinHttpQueryHeaders",
    "winhttp.WinHttpQueryDataAvailable",
]
CLOSE = ["winhttp.WinHttpCloseHandle"] * 3
EXPECT_BARE = NET + CLOSE + ["kernel32.ExitProcess"]
EXPECT_FED = (
    NET
    # The sample calls WinHttpQueryDataAvailable again after the read (it
    # returns 0 -> loop ends), but Speakeasy's profiler drops an API event that
    # repeats the pc, API, displayed args and return value of one of the last
    # three events, so that second call is not in the report.
    + ["winhttp.WinHttpReadData"]
    + CLOSE
    + ["kernel32.VirtualAlloc"]
    + [  # stage 2, called from the VirtualAlloc'd region
        "kernel32.GetEnvironmentVariableW",
        "kernel32.CreateFileW",
        "kernel32.WriteFile",
        "kernel32.CloseHandle",
    ]
    + ["kernel32.ExitProcess"]
)


def make():
    cfg = get_default_config_dict()
    cfg["env"]["chainreplay_sandbox"] = "replay-only"
    return Speakeasy(config=cfg)


def feed(se):
    off = [0]

    def query_headers(emu, api, orig, argv):
        _h, _level, _name, buf, plen, _idx = argv
        emu.mem_write(buf, struct.pack("<I", 200))
        emu.mem_write(plen, struct.pack("<I", 4))
        return 1

    def data_available(emu, api, orig, argv):
        emu.mem_write(argv[1], struct.pack("<I", len(SC) - off[0]))
        return 1

    def read_data(emu, api, orig, argv):
        _h, buf, size, pread = argv
        data = SC[off[0]:off[0] + size]
        off[0] += len(data)
        emu.mem_write(buf, data)
        if pread:
            emu.mem_write(pread, struct.pack("<I", len(data)))
        return 1

    se.add_api_hook(query_headers, "winhttp", "WinHttpQueryHeaders")
    # No Speakeasy handler exists for this one, so the hook must give argc.
    se.add_api_hook(data_available, "winhttp", "WinHttpQueryDataAvailable", argc=2)
    se.add_api_hook(read_data, "winhttp", "WinHttpReadData")


def run(fed):
    se = make()
    if fed:
        feed(se)
    mod = se.load_module(os.path.join(HERE, "samples", "downloader.exe"))
    se.run_module(mod)
    rep = json.loads(se.get_json_report())
    (ep,) = rep["entry_points"]
    names = []
    for e in ep.get("events") or []:
        if VERBOSE:
            if e.get("event") == "api":
                args = ", ".join(str(a.get("display", a.get("value"))) for a in e.get("args", []))
                print("    %#x %s(%s) -> %s" % (e["pos"]["pc"], e["api_name"], args, e.get("ret_val")))
            else:
                print("    %#x [%s] %s" % (e["pos"]["pc"], e["event"],
                                          {k: v for k, v in e.items() if k not in ("pos", "event")}))
        if e.get("event") == "api":
            names.append((e["api_name"], e["pos"]["pc"]))
            if e["api_name"] == "kernel32.ExitProcess":
                ep["exit_code"] = e["args"][0]["value"]
    return names, ep


def main():
    logging.disable(logging.CRITICAL)
    ok = True

    names, ep = run(fed=False)
    got = [n for n, _ in names]
    good = got == EXPECT_BARE
    ok &= good
    good &= ep.get("exit_code") == 4
    ok &= good
    print("bare: %s (ExitProcess(%s))" % ("ok" if good else "MISMATCH %s" % got, ep.get("exit_code")))

    names, ep = run(fed=True)
    got = [n for n, _ in names]
    dyn = ep.get("dynamic_code_segments") or []
    (seg,) = dyn if len(dyn) == 1 else (None,)
    in_dyn = []
    if seg:
        lo, hi = int(seg["base"], 16), int(seg["base"], 16) + int(seg["size"], 16)
        in_dyn = [n for n, pc in names if lo <= pc < hi]
    dropped = [d["path"] for d in ep.get("dropped_files") or []]
    good = (
        got == EXPECT_FED
        and ep.get("exit_code") == 0
        and in_dyn == EXPECT_FED[-5:-1]
        and dropped == ["C:\\Users\\Public\\demo_dropped.txt"]
    )
    ok &= good
    print("fed:  %s" % ("ok" if good else "MISMATCH %s" % got))
    print("      dynamic_code_segments=%s" % dyn)
    print("      calls from dynamic memory: %s" % in_dyn)
    print("      dropped_files=%s" % dropped)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
