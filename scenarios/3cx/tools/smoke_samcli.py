#!/usr/bin/env python3
"""Smoke test of samcli.dll + iconic.dll under bare Speakeasy (no chainreplay emulator).

    smoke_samcli.py [--arch x64|x86] [--build DIR] [--data DIR] [--chain SAMPLES] [-v]

--build: directory holding samcli.dll and iconic.dll of --arch (default: build both with
         the make fragments into a temp dir). --data: scenario data made by make_data.py
         (default: generate into a temp dir from the built iconic.dll).

Loads samcli.dll with Speakeasy's load_module, calls DllGetClassObject(1200, 2400, <UA>)
and lets Speakeasy run the thread it creates. The test script stands in for the
emulator: python hooks implement BCryptSetProperty / BCryptGenerateSymmetricKey /
BCryptDecrypt / BCryptDestroyKey (with `cryptography`) and HttpAddRequestHeadersW, and
feed WinINet responses (icon, beacon reply, stage3.bin) keyed by URL. Checks: manifest
written, icon fetched, beacon POST with cookie/body, stage 3 fetched, decrypted and mapped,
IconicMain's JSON POST with host info, config.json and the 4 history lists.
Also checks that nothing happens when CHAINREPLAY_SANDBOX is unset, and that the dormancy
loop gives up after 64 Sleep calls when Sleep does not advance the clock.
--chain SAMPLES additionally runs the whole chain from SAMPLES/ffmpeg.dll (stage 1 ->
carrier -> stage-2 shellcode -> samcli.dll -> iconic.dll) with the same stand-ins.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import speakeasy  # noqa: F401  (import order: the package before its submodules)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from speakeasy import Speakeasy
from speakeasy.config import get_default_config_dict

HERE = Path(__file__).resolve().parent
SCEN = HERE.parent
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "3CXDesktopApp/18.11.1197 Chrome/102.0.5005.167 Electron/19.1.9 Safari/537.36"
)
USER = "replay_user"
GUID = "6b1f1a8e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
ROAMING = rf"C:\Users\{USER}\AppData\Roaming"
LOCAL = rf"C:\Users\{USER}\AppData\Local"

spec = importlib.util.spec_from_file_location("make_data", HERE / "make_data.py")
md = importlib.util.module_from_spec(spec)
spec.loader.exec_module(md)  # type: ignore[union-attr]


def build(arch: str, out: Path) -> None:
    cc = {"x64": "x86_64-w64-mingw32-gcc", "x86": "i686-w64-mingw32-gcc"}[arch]
    for frag, target in (("samcli/samcli.mk", "samcli.dll"), ("iconic/iconic.mk", "iconic.dll")):
        subprocess.run(
            ["make", "-s", "-f", str(SCEN / "src" / frag), f"BUILD={out}", f"CC={cc}", f"ARCH={arch}",
             str(out / target)],
            check=True,
        )


class Stand:
    """Python stand-ins for what the chainreplay emulator provides."""

    def __init__(self, data: Path, arch: str, advance: bool = True):
        self.data = data
        self.ptr = 8 if arch == "x64" else 4
        self.keys: dict[int, bytes] = {}
        self.next_key = 0x4B000
        self.requests: list[dict] = []
        self.headers: dict[int, str] = {}
        self.decrypts: list[int] = []
        self.props: list[str] = []
        self.clock_ms = 1679302800 * 1000  # 2023-03-20 09:00:00 UTC
        self.advance = advance
        self.sleeps: list[int] = []
        c2 = md.ICON_URLS  # all icons resolve to URLs we know
        self.routes = {}
        for i in range(16):
            self.routes[("GET", md.ICON_URL_TEMPLATE.format(i))] = (
                data / md.ICON_REPO_DIR / f"icon{i}.ico"
            ).read_bytes()
        for url in c2[1:]:
            host = url.split("/")[2]
            path = "/" + url.split("/", 3)[3]
            self.routes[("POST", f"https://{host}{path}")] = md.STAGE3_PATH.encode()
            self.routes[("GET", f"https://{host}{md.STAGE3_PATH}")] = (data / "c2" / "stage3.bin").read_bytes()

    # -- helpers
    @staticmethod
    def netman(emu):
        mod, _ = emu.api.get_export_func_handler("wininet", "InternetReadFile")
        return mod.netman

    def rd_ptr(self, emu, addr):
        return int.from_bytes(emu.mem_read(addr, self.ptr), "little")

    def rd_u32(self, emu, addr):
        return int.from_bytes(emu.mem_read(addr, 4), "little")

    # -- BCrypt (unimplemented in Speakeasy 2.0.0b9)
    def set_property(self, emu, api, orig, argv):
        h, prop, pb, cb, flags = argv
        name = emu.read_mem_string(prop, 2)
        val = emu.mem_read(pb, cb).decode("utf-16le").rstrip("\0") if pb and cb else ""
        self.props.append(f"{name}={val}")
        return 0

    def gen_key(self, emu, api, orig, argv):
        h_alg, ph_key, pb_obj, cb_obj, pb_secret, cb_secret, flags = argv
        self.next_key += 0x10
        self.keys[self.next_key] = bytes(emu.mem_read(pb_secret, cb_secret))
        emu.mem_write(ph_key, self.next_key.to_bytes(self.ptr, "little"))
        return 0

    def destroy_key(self, emu, api, orig, argv):
        self.keys.pop(argv[0], None)
        return 0

    def decrypt(self, emu, api, orig, argv):
        h_key, p_in, cb_in, p_info, p_iv, cb_iv, p_out, cb_out, pcb_result, flags = argv
        key = self.keys.get(h_key)
        if key is None or not p_info:
            return 0xC0000008  # STATUS_INVALID_HANDLE
        p = self.ptr
        # BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO
        off_nonce, off_cbnonce = 8, 8 + p
        off_tag = 8 + p + 4 + (4 if p == 8 else 0) + p + 4 + (4 if p == 8 else 0)
        nonce = emu.mem_read(self.rd_ptr(emu, p_info + off_nonce), self.rd_u32(emu, p_info + off_cbnonce))
        tag_ptr = self.rd_ptr(emu, p_info + off_tag)
        tag_len = self.rd_u32(emu, p_info + off_tag + p)
        tag = emu.mem_read(tag_ptr, tag_len)
        ct = emu.mem_read(p_in, cb_in)
        try:
            pt = AESGCM(key).decrypt(bytes(nonce), bytes(ct) + bytes(tag), None)
        except Exception:
            return 0xC000A002  # STATUS_AUTH_TAG_MISMATCH
        if cb_out < len(pt):
            return 0xC0000023  # STATUS_BUFFER_TOO_SMALL
        emu.mem_write(p_out, pt)
        emu.mem_write(pcb_result, len(pt).to_bytes(4, "little"))
        self.decrypts.append(len(pt))
        return 0

    # -- virtual clock (what the emulator does): Sleep advances GetSystemTimeAsFileTime
    def get_time(self, emu, api, orig, argv):
        ft = 116444736000000000 + self.clock_ms * 10000
        emu.mem_write(argv[0], ft.to_bytes(8, "little"))
        return None

    def sleep(self, emu, api, orig, argv):
        self.sleeps.append(argv[0])
        if self.advance:
            self.clock_ms += argv[0]
        return None

    # -- x64: HKEY_LOCAL_MACHINE arrives sign-extended (0xFFFFFFFF80000002), which
    #    Speakeasy 2.0.0b9 does not recognise as a predefined key
    def reg_open(self, emu, api, orig, argv):
        argv = list(argv)
        if argv[0] >> 32 == 0xFFFFFFFF:
            argv[0] &= 0xFFFFFFFF
        return orig(argv)

    # -- WinINet
    def add_headers(self, emu, api, orig, argv):
        h_req, p_hdr, cb_hdr, mods = argv
        self.headers[h_req] = self.headers.get(h_req, "") + emu.read_mem_string(p_hdr, 2)
        return 1

    def open_url(self, emu, api, orig, argv):
        h = orig(argv)
        url = emu.read_mem_string(argv[1], 2)
        req = self.netman(emu).get_wininet_object(h)
        body = self.routes.get(("GET", url), b"")
        req.response = io.BytesIO(body)
        self.requests.append({"verb": "GET", "url": url, "headers": "", "body": b"", "answer": len(body)})
        return h

    def send(self, emu, api, orig, argv):
        rv = orig(argv)
        h_req, p_hdr, cb_hdr, p_opt, cb_opt = argv
        req = self.netman(emu).get_wininet_object(h_req)
        url = f"https://{req.get_server()}{req.objname.path}"
        verb = req.verb.upper()
        body = bytes(emu.mem_read(p_opt, cb_opt)) if p_opt and cb_opt else b""
        answer = self.routes.get((verb, url), b"")
        if verb == "POST" and body.startswith(b"{"):
            answer = b"OK"
        req.response = io.BytesIO(answer)
        hdr = self.headers.get(h_req, "") + (emu.read_mem_string(p_hdr, 2) if p_hdr else "")
        self.requests.append({"verb": verb, "url": url, "headers": hdr, "body": body, "answer": len(answer)})
        return rv

    def install(self, se: Speakeasy) -> None:
        se.add_api_hook(self.get_time, "kernel32", "GetSystemTimeAsFileTime", argc=1)
        se.add_api_hook(self.sleep, "kernel32", "Sleep", argc=1)
        se.add_api_hook(self.reg_open, "advapi32", "RegOpenKeyExW", argc=5)
        se.add_api_hook(self.set_property, "bcrypt", "BCryptSetProperty", argc=5)
        se.add_api_hook(self.gen_key, "bcrypt", "BCryptGenerateSymmetricKey", argc=7)
        se.add_api_hook(self.decrypt, "bcrypt", "BCryptDecrypt", argc=10)
        se.add_api_hook(self.destroy_key, "bcrypt", "BCryptDestroyKey", argc=1)
        se.add_api_hook(self.add_headers, "wininet", "HttpAddRequestHeadersW", argc=4)
        se.add_api_hook(self.open_url, "wininet", "InternetOpenUrlW", argc=6)
        se.add_api_hook(self.send, "wininet", "HttpSendRequestW", argc=5)


def make_config(data: Path, sandbox: bool) -> dict:
    cfg = get_default_config_dict()
    cfg["timeout"] = 300
    cfg["max_api_count"] = 200000
    cfg["hostname"] = "REPLAY-PC"
    cfg["domain"] = "REPLAYCORP"
    cfg["user"]["name"] = USER
    cfg["os_ver"] = {"name": "windows", "major": 10, "minor": 0, "release": None, "build": 19045}
    env = cfg["env"]
    env.update(
        {
            "userprofile": rf"C:\Users\{USER}",
            "appdata": ROAMING,
            "localappdata": LOCAL,
            "userdomain": "REPLAYCORP",
        }
    )
    if sandbox:
        env["chainreplay_sandbox"] = "replay-only"
    files = data / "files"
    cfg["filesystem"]["files"] = [
        {"mode": "full_path", "emu_path": rf"{ROAMING}\3CXDesktopApp\config.json", "path": str(files / "config.json")},
        {"mode": "full_path", "emu_path": rf"{LOCAL}\Google\Chrome\User Data\Default\History",
         "path": str(files / "chrome_History")},
        {"mode": "full_path", "emu_path": rf"{LOCAL}\Microsoft\Edge\User Data\Default\History",
         "path": str(files / "edge_History")},
        {"mode": "full_path", "emu_path": rf"{LOCAL}\BraveSoftware\Brave-Browser\User Data\Default\History",
         "path": str(files / "brave_History")},
        {"mode": "full_path",
         "emu_path": rf"{ROAMING}\Mozilla\Firefox\Profiles\chainreplay.default-release\places.sqlite",
         "path": str(files / "firefox_places.sqlite")},
    ]
    cfg["registry"]["keys"].append(
        {
            "path": r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Cryptography",
            "values": [{"name": "MachineGuid", "type": "REG_SZ", "data": GUID}],
        }
    )
    return cfg


APP_DIR = "C:\\Users\\" + USER + "\\AppData\\Local\\Programs\\3CXDesktopApp\\app"


def run_chain(samples: Path, data: Path, arch: str):
    """Whole chain from stage 1: ffmpeg.dll's DllMain + av_register_all (all entry points)."""
    stand = Stand(data, arch)
    cfg = make_config(data, True)
    cfg["current_dir"] = APP_DIR
    cfg["command_line"] = "3CXDesktopApp.exe"
    for proc in cfg["processes"]:
        if proc.get("is_main_exe"):
            proc["path"] = APP_DIR + "\\3CXDesktopApp.exe"
            proc["command_line"] = "3CXDesktopApp.exe"
    se = Speakeasy(config=cfg)
    stand.install(se)
    mod = se.load_module(str(samples / "ffmpeg.dll"))
    se.run_module(mod, all_entrypoints=True)
    report = json.loads(se.get_json_report())
    se.shutdown()
    return stand, report


def export_addr(module, name: str) -> int:
    for exp in module.get_exports():
        if exp.name == name:
            return exp.address
    raise KeyError(name)


def run(build_dir: Path, data: Path, arch: str, sandbox: bool, advance: bool = True):
    stand = Stand(data, arch, advance)
    se = Speakeasy(config=make_config(data, sandbox))
    stand.install(se)
    mod = se.load_module(str(build_dir / "samcli.dll"))
    se.run_module(mod)  # DllMain(DLL_PROCESS_ATTACH); also creates the process/thread objects
    ua = se.mem_alloc(0x400, tag="smoke.useragent")
    se.mem_write(ua, UA.encode() + b"\0")
    se.call(export_addr(mod, "DllGetClassObject"), [1200, 2400, ua])
    report = json.loads(se.get_json_report())
    se.shutdown()
    return stand, report


def apis(report) -> list[str]:
    out = []
    """API names in call order (Speakeasy's report de-duplicates identical repeated calls)."""
    for ep in report.get("entry_points", []):
        for e in ep.get("events", []) or []:
            if e.get("event") == "api":
                out.append(e["api_name"])
    return out


def check(cond: bool, what: str, failures: list[str]) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--arch", choices=("x64", "x86"), default="x64")
    ap.add_argument("--build", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--chain", type=Path, metavar="SAMPLES",
                    help="also run the whole chain from SAMPLES/ffmpeg.dll (with d3dcompiler_47.dll beside it)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)

    tmp = tempfile.TemporaryDirectory()
    build_dir = args.build or Path(tmp.name) / "build"
    if not args.build:
        build(args.arch, build_dir)
    data = args.data or Path(tmp.name) / "data"
    if not args.data:
        md.generate(data, args.arch, build_dir / "iconic.dll")
    failures: list[str] = []

    # icons decrypt back in Python
    urls = [md.icon_to_url((data / md.ICON_REPO_DIR / f"icon{i}.ico").read_bytes()) for i in range(16)]
    check(urls == md.ICON_URLS, "icons decrypt to ICON_URLS in python", failures)
    stage3 = md.unseal((data / "c2" / "stage3.bin").read_bytes(), md.STAGE3_KEY, md.STAGE3_NONCE)
    machine = struct.unpack_from("<H", stage3, struct.unpack_from("<I", stage3, 0x3C)[0] + 4)[0]
    check(machine == {"x64": 0x8664, "x86": 0x14C}[args.arch], f"stage3.bin is an {args.arch} PE", failures)

    # inert without the marker
    stand, report = run(build_dir, data, args.arch, sandbox=False)
    called = apis(report)
    check(called == ["kernel32.GetEnvironmentVariableW"], f"inert without marker (apis: {called})", failures)

    stand, report = run(build_dir, data, args.arch, sandbox=True)
    called = apis(report)
    if args.verbose:
        for ep in report.get("entry_points", []):
            print("run", ep.get("ep_type"), ep.get("error"))
            for e in ep.get("events", []) or []:
                if e.get("event") == "api":
                    print("   ", e["api_name"], [a.get("display") for a in e.get("args", [])][:5], e.get("ret_val"))
                else:
                    print("    EVENT", {k: v for k, v in e.items() if k != "pos"})
    errors = [ep.get("error") for ep in report.get("entry_points", []) if ep.get("error")]
    check(not errors, f"no emulation errors {errors}", failures)
    check("kernel32.CreateThread" in called, "DllGetClassObject creates a thread", failures)
    check("kernel32.WriteFile" in called, "manifest written", failures)
    days = sum(stand.sleeps) / 86400000
    check(len(stand.sleeps) == 1 and 7 <= days <= 7 + 1800000 / 86400,
          f"dormancy: {len(stand.sleeps)} Sleep call(s), {days:.2f} days on the virtual clock", failures)
    check("advapi32.RegQueryValueExW" in called, "MachineGuid queried", failures)
    reqs = stand.requests
    for r in reqs:
        print(f"     {r['verb']} {r['url']} body={r['body'][:60]!r} answer={r['answer']}B")
    icon = [r for r in reqs if "raw.githubusercontent.com" in r["url"]]
    check(len(icon) == 1, "one icon fetched", failures)
    posts = [r for r in reqs if r["verb"] == "POST"]
    check(len(posts) == 2, "two POSTs (beacon, exfil)", failures)
    if posts:
        b = posts[0]
        check(b["body"] == f"__tutmc={GUID}".encode(), "beacon body __tutmc=<guid>", failures)
        check(f"Cookie: __tutma={GUID}" in b["headers"] and "gzip, deflate, br" in b["headers"],
              "beacon Cookie/Accept-Encoding headers", failures)
    gets = [r for r in reqs if r["verb"] == "GET" and r["url"].endswith(md.STAGE3_PATH)]
    check(len(gets) == 1, "stage 3 fetched", failures)
    check(len(stand.decrypts) == 2 and stand.decrypts[1] == len(stage3),
          f"two BCryptDecrypt (icon URL, stage 3 {len(stage3)}B): {stand.decrypts}", failures)
    check(stand.props == ["ChainingMode=ChainingModeGCM"] * 2, f"GCM chaining set: {stand.props}", failures)
    check("kernel32.GetComputerNameW" in called, "IconicMain ran (GetComputerNameW)", failures)
    if len(posts) == 2:
        ex = posts[1]
        check(ex["url"] == posts[0]["url"], "exfil goes to the C2 URL", failures)
        check(f"Cookie: __tutma={GUID}" in ex["headers"], "exfil cookie", failures)
        doc = json.loads(ex["body"].decode("utf-8"))
        print("     exfil keys:", list(doc), "history:", {k: len(v) for k, v in doc.get("History", {}).items()})
        check(doc.get("HostName") == "REPLAY-PC" and doc.get("DomainName") == "REPLAYCORP",
              f"host/domain {doc.get('HostName')}/{doc.get('DomainName')}", failures)
        check(doc.get("OsVersion") == "10.0.19045", f"OsVersion {doc.get('OsVersion')}", failures)
        check(json.loads(doc.get("AppConfig", "null")) == md.CONFIG_JSON, "config.json carried", failures)
        want = {
            "chrome": md.CHROME_URLS,
            "edge": md.EDGE_URLS,
            "brave": md.BRAVE_URLS,
            "firefox": md.FIREFOX_URLS,
        }
        for k, rows in want.items():
            got = [(e["url"], e["title"]) for e in doc.get("History", {}).get(k, [])]
            check(got == list(reversed(rows)), f"history {k}: {len(got)} rows, newest first", failures)
    # Sleep that does not advance the clock (bare Speakeasy): the loop gives up after 64 rounds
    stand, report = run(build_dir, data, args.arch, sandbox=True, advance=False)
    check(len(stand.sleeps) == 64 and sum(1 for r in stand.requests if r["verb"] == "POST") == 2,
          f"frozen clock: {len(stand.sleeps)} Sleep calls, then the chain proceeds", failures)

    if args.chain:
        stand, report = run_chain(args.chain, data, args.arch)
        called = apis(report)
        errors = [ep.get("error") for ep in report.get("entry_points", []) if ep.get("error")]
        check(not errors, f"chain: no emulation errors {errors}", failures)
        check("kernel32.CreateEventW" in called and "kernel32.CreateThread" in called,
              "chain: stage 1 -> stage 2 -> DllGetClassObject", failures)
        verbs = [(r["verb"], r["url"].split("/")[2]) for r in stand.requests]
        check(len(verbs) == 4 and verbs[0][1] == "raw.githubusercontent.com"
              and [v for v, _ in verbs] == ["GET", "POST", "GET", "POST"],
              f"chain: icon, beacon, stage 3, exfil: {verbs}", failures)
        manifest = [e for ep in report.get("entry_points", []) for e in ep.get("events", []) or []
                    if e.get("event") == "file_write" and e.get("path", "").lower().endswith("\\manifest")]
        check(bool(manifest) and manifest[0]["path"].lower() == (APP_DIR + "\\manifest").lower(),
              f"chain: manifest in the app dir {[m['path'] for m in manifest]}", failures)

    print("FAILED: %d" % len(failures) if failures else "ALL OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
