"""Lineage: every stage's origin traced from behaviour alone, on the generality suite.

Each scenario of the suite (scenarios/lineage-common/README.md) declares in its ``[expect]``
table, besides the keys of tests/test_scenarios.py:

``lineage``     per dynamic stage, its hops origin first: where its bytes were found (registry,
                file, network, image, memory, ...) then each transform (xor, base64, decode,
                decrypt, guest_code, process_write, file_write, ...)
``stage_techniques``  the ATT&CK techniques as "stage technique" pairs

Each scenario is replayed once per session (the ``scenario_report`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.analysis.lineage import PROBE_BYTES, Carrier, find_transformed, matched_length, trace
from emulator.events import ApiCall, FileAccess, NetworkExchange, Note, RegistryAccess
from emulator.plan import ReplayPlan, binary_value
from emulator.replay import emulate
from emulator.scenario import load_scenario

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
Report = dict[str, Any]
DYNAMIC_EDGES = {"executes", "delivers", "decrypts_to", "decodes_to", "maps", "hosts"}


def _with_lineage() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(SCENARIOS_DIR.glob("*/scenario.toml")):
        expect = tomllib.loads(path.read_text(encoding="utf-8")).get("expect", {})
        if "lineage" in expect or "stage_techniques" in expect:
            found.append((path.parent.name, expect))
    return found


LINEAGE = _with_lineage()
GENERALITY = [
    "reg-b64-xor",
    "reg-b64-xor-x86",
    "file-rc4-cryptoapi",
    "two-layer-xor",
    "two-layer-xor-x86",
    "inject-remote-thread",
    "inject-remote-thread-x86",
    "drop-load-dll",
    "negative-control",
    "custom-cipher",
    "custom-cipher-x86",
    "file-lznt1",
    "inject-thread-hijack",
    "inject-apc",
    "inject-hollowing",
    "file-heap-cipher",
    "file-heap-cipher-x86",
    "inject-thread-hijack-x86",
    "inject-apc-x86",
    "inject-hollowing-x86",
    "urlmon-drop-x86",
    "callback-mapview",
    "callback-mapview-x86",
    "tcp-stager-x86",
    "resource-xor",
    "thread-variants",
    "string-encoded",
    "string-encoded-x86",
    "env-b64-xor",
    "file-stack-cipher",
    "file-mapview-exec",
    "file-crt-fread",
    "reg-binary-xor",
    "section-views-xor",
    "net-chunks-xor",
    "inject-stack-cipher",
    "net-reg-stash",
    "env-b64-xor-x86",
    "file-stack-cipher-x86",
    "net-chunks-xor-x86",
    "net-reg-stash-x86",
    "file-mapview-exec-x86",
    "reg-split-xor",
    "self-callbacks",
    "file-xor-add",
    "env-crt-block",
    "split-sources-xor",
    "split-files-inplace",
    "overlay-xor",
    "pipe-cipher",
    "net-b64-lznt1",
    "reg-b64-aes",
    "pipe-cipher-x86",
    "split-sources-xor-x86",
    "dns-txt-b64",
    "named-section-xor",
    "inject-syscalls",
    "module-stomp-xor",
    "module-stomp-xor-x86",
    "patch-amsi-etw",
    "patch-amsi-etw-x86",
    "unhook-ntdll",
    "unhook-ntdll-x86",
    "sysfunc032-rc4",
    "sysfunc032-rc4-x86",
    "indirect-syscalls",
    "wow64-syscalls-x86",
    "inject-section-syscalls",
    "section-map-indirect",
]
# Injection chains: (scenario, target process, injection method on the injects_into edge, sub-technique).
INJECTIONS = [
    ("inject-remote-thread", r"C:\Windows\System32\notepad.exe", "remote_thread", None),
    ("inject-thread-hijack", r"C:\Windows\System32\notepad.exe", "thread_context", "T1055.003"),
    ("inject-apc", r"C:\Windows\System32\notepad.exe", "apc", "T1055.004"),
    ("inject-hollowing", r"C:\Windows\System32\svchost.exe", "hollowing", "T1055.012"),
    ("inject-remote-thread-x86", r"C:\Windows\System32\notepad.exe", "remote_thread", None),
    ("inject-thread-hijack-x86", r"C:\Windows\System32\notepad.exe", "thread_context", "T1055.003"),
    ("inject-apc-x86", r"C:\Windows\System32\notepad.exe", "apc", "T1055.004"),
    ("inject-hollowing-x86", r"C:\Windows\System32\svchost.exe", "hollowing", "T1055.012"),
    ("inject-stack-cipher", r"C:\Windows\System32\notepad.exe", "remote_thread", None),
    ("inject-syscalls", r"C:\Windows\System32\notepad.exe", "remote_thread", None),
    ("inject-section-syscalls", r"C:\Windows\System32\notepad.exe", "remote_thread", None),
]
# The calls an injects_into edge cites, where they are not the kernel32 ones of its method.
INJECTION_CALLS = {"inject-syscalls": {"NtCreateThreadEx"}, "inject-section-syscalls": {"NtCreateThreadEx"}}


def hop_kinds(stage: dict[str, Any]) -> list[str]:
    return [h["source"] if h["transform"] == "source" else h["transform"] for h in stage["lineage"]]


def test_the_generality_suite_declares_lineage() -> None:
    assert set(GENERALITY) <= {name for name, _ in LINEAGE}


@pytest.mark.parametrize(("name", "expect"), LINEAGE, ids=[n for n, _ in LINEAGE])
def test_lineage_and_techniques(name: str, expect: dict[str, Any], scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    stages = {s["id"]: s for s in report["stages"]}
    if "lineage" in expect:
        actual = {sid: hop_kinds(s) for sid, s in stages.items() if s["parent"]}
        assert actual == expect["lineage"]
        for stage in stages.values():
            decoding = {"xor", "base64", "decode", "decrypt", "decompress", "guest_code"} & set(hop_kinds(stage))
            assert stage["decoded"] == bool(decoding), stage["id"]
            for hop in stage["lineage"]:
                assert hop["evidence"], f"{stage['id']}: hop {hop} has no evidence"
    if "stage_techniques" in expect:
        assert sorted({f"{t['stage']} {t['technique']}" for t in report["attack"]}) == sorted(
            expect["stage_techniques"]
        )
    assert report["attack_release"] == "ATT&CK Enterprise v18"


@pytest.mark.parametrize("name", GENERALITY)
def test_techniques_cite_only_their_own_stage(name: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    owner = {c["seq"]: c["stage"] for c in report["api_calls"]}
    for section in ("files", "registry", "network", "memory", "buffers"):
        owner.update({r["seq"]: r["stage"] for r in report.get(section, [])})
    for technique in report["attack"]:
        for seq in technique["evidence"]:
            if seq in owner:
                assert owner[seq] == technique["stage"], technique


def test_decoded_stage_implies_t1140_on_the_decoder(scenario_report: Callable[[str], Report]) -> None:
    for name in GENERALITY:
        report = scenario_report(name)
        for stage in report["stages"]:
            if stage["decoded"]:
                actors = {h["actor"] for h in stage["lineage"] if h["transform"] not in ("source", "identity")}
                t1140 = {t["stage"] for t in report["attack"] if t["technique"] == "T1140"}
                assert actors & t1140, f"{name} {stage['id']}: decoded by {actors}, T1140 on {t1140}"


def test_negative_control_has_no_dynamic_code(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("negative-control")
    assert [s["kind"] for s in report["stages"]] == ["pe"]
    assert not {e["type"] for e in report["graph"]["edges"]} & DYNAMIC_EDGES
    assert not [t for t in report["attack"] if t["technique"] in ("T1105", "T1140", "T1055")]
    assert {e["type"] for e in report["graph"]["edges"]} == {"reads", "fetches", "drops"}


@pytest.mark.parametrize("name", ["reg-b64-xor", "reg-b64-xor-x86"])
def test_stage_bytes_are_exactly_the_decoded_payload(
    name: str, scenario_report: Callable[[str], Report], tmp_path: Path
) -> None:
    """The stage's bytes are what ran: the payload decoded from the registry value, not the page."""
    report = scenario_report(name)
    folder = SCENARIOS_DIR / name
    encoded = base64.b64decode((folder / "payload" / "blob.b64").read_bytes())
    payload = bytes(b ^ 0x5C for b in encoded)
    shellcode = report["stages"][1]
    assert shellcode["size"] == len(payload)
    assert shellcode["sha256"] == hashlib.sha256(payload).hexdigest()
    # The value in scenario.toml is the committed, built payload/blob.b64.
    spec = tomllib.loads((folder / "scenario.toml").read_text(encoding="utf-8"))
    assert spec["registry"][0]["values"][0]["data"].encode() == (folder / "payload" / "blob.b64").read_bytes()


@pytest.mark.parametrize("name", ["custom-cipher", "custom-cipher-x86"])
def test_unrecognised_decoder_is_named_by_its_pc(name: str, scenario_report: Callable[[str], Report]) -> None:
    """No rule names a nibble-swap + add cipher: each layer's hop names the writing instruction,
    which lies in the code of the stage that decoded it (s0's .text, then s1's own bytes)."""
    import pefile

    report = scenario_report(name)
    s0, s1, s2 = report["stages"]
    image = pefile.PE(str(SCENARIOS_DIR / name / "samples" / "plugin.dll"))
    text = next(s for s in image.sections if s.Name.rstrip(b"\0") == b".text")
    text_begin = int(s0["base"], 16) + text.VirtualAddress
    code_of = {
        "s0": (text_begin, text_begin + text.Misc_VirtualSize),
        "s1": (int(s1["base"], 16), int(s1["base"], 16) + s1["size"]),
    }
    for stage, decoder in ((s1, "s0"), (s2, "s1")):
        hop = stage["lineage"][-1]
        assert hop["transform"] == "guest_code" and hop["actor"] == decoder
        match = re.fullmatch(rf"decoded by guest code at pc (0x[0-9a-f]+) in {decoder}", hop["detail"])
        assert match, hop["detail"]
        low, high = code_of[decoder]
        assert low <= int(match.group(1), 16) < high, (hop["detail"], hex(low), hex(high))
        assert stage["lineage"][0]["source"] == "image" and stage["lineage"][0]["ref"] == "s0"
    # The stage bytes are the decoded layer alone, not the page-rounded allocation.
    assert 0 < s1["size"] < 0x1000 and 0 < s2["size"] < 0x1000


@pytest.mark.parametrize("name", ["file-heap-cipher", "file-heap-cipher-x86"])
def test_decoding_into_the_heap_is_named_by_its_pc(name: str, scenario_report: Callable[[str], Report]) -> None:
    """Layer 1 is decoded into a heap block by s0 and copied out with RtlMoveMemory; layer 2 is
    decoded into a heap block by s1 and runs there. Each guest-code hop names a pc in the code of
    the stage that decoded it, and both lineages run back to the file."""
    import pefile

    report = scenario_report(name)
    s0, s1, s2 = report["stages"]
    image = pefile.PE(str(SCENARIOS_DIR / name / "samples" / "loader.exe"))
    text = next(s for s in image.sections if s.Name.rstrip(b"\0") == b".text")
    text_begin = int(s0["base"], 16) + text.VirtualAddress
    code_of = {
        "s0": (text_begin, text_begin + text.Misc_VirtualSize),
        "s1": (int(s1["base"], 16), int(s1["base"], 16) + s1["size"]),
    }
    calls = {c["seq"]: c for c in report["api_calls"]}
    for stage, decoder in ((s1, "s0"), (s2, "s1")):
        assert stage["lineage"][0]["source"] == "file" and stage["lineage"][0]["ref"].endswith("cache.bin")
        hop = next(h for h in stage["lineage"] if h["transform"] == "guest_code")
        assert hop["actor"] == decoder
        match = re.fullmatch(rf"decoded by guest code at pc (0x[0-9a-f]+) in {decoder}", hop["detail"])
        assert match, hop["detail"]
        low, high = code_of[decoder]
        assert low <= int(match.group(1), 16) < high, (hop["detail"], hex(low), hex(high))
    copy = s1["lineage"][-1]
    cited = {calls[seq]["api"] for seq in copy["evidence"] if seq in calls}
    assert copy["transform"] == "copy" and cited == {"kernel32.RtlMoveMemory"}
    # Layer 2 runs from the heap block layer 1 allocated.
    heap_blocks = {int(c["ret"], 16) for c in calls.values() if c["api"] == "kernel32.HeapAlloc" and c["stage"] == "s1"}
    assert int(s2["base"], 16) in heap_blocks


def test_an_environment_variable_is_an_origin(scenario_report: Callable[[str], Report]) -> None:
    """env-b64-xor's payload is the value of a variable of the guest's environment: the stage's
    lineage starts there (not at CryptStringToBinaryA, whose input it was), drawn as its node."""
    report = scenario_report("env-b64-xor")
    s1 = report["stages"][1]
    origin = s1["lineage"][0]
    assert (origin["source"], origin["ref"], origin["transform"]) == ("environment", "%UPDATER_CACHE%", "source")
    assert s1["origin"]["type"] == "environment" and s1["origin"]["ref"] == "%UPDATER_CACHE%"
    read = {b["seq"]: b for b in report["buffers"]}[origin["evidence"][0]]
    assert read["source"] == "environment_read" and read["api"] == "kernel32.GetEnvironmentVariableA"
    # Every tapped API's buffer names its call's site (CryptStringToBinaryA's too).
    calls = {(c["pc"], c["api"].rpartition(".")[2]) for c in report["api_calls"]}
    for buffer in report["buffers"]:
        if buffer["source"] != "guest_write":
            assert (buffer["pc"], buffer["api"].rpartition(".")[2]) in calls, buffer
    edges = {(e["source"], e["type"], e["target"]) for e in report["graph"]["edges"]}
    assert ("environment:%UPDATER_CACHE%", "decodes_to", "s1") in edges


def test_every_way_of_reading_the_environment_is_an_origin(scenario_report: Callable[[str], Report]) -> None:
    """env-crt-block reads its three variables with the C runtime's getenv (no Speakeasy handler:
    answered by the backend from the same variables), ExpandEnvironmentStringsW and the block of
    GetEnvironmentStringsW: each stage's lineage starts at its own variable, read by that API, the
    name spelt as the scenario spells it (Speakeasy keeps names lower-cased; Windows does not)."""
    report = scenario_report("env-crt-block")
    buffers = {b["seq"]: b for b in report["buffers"]}
    expected = {
        "s1": ("%CACHE_A%", "msvcrt.getenv"),
        "s2": ("%CACHE_B%", "kernel32.ExpandEnvironmentStringsW"),
        "s3": ("%CACHE_C%", "kernel32.GetEnvironmentStringsW"),
    }
    for stage in report["stages"][1:]:
        origin = stage["lineage"][0]
        ref, api = expected[stage["id"]]
        assert (origin["source"], origin["ref"], origin["transform"]) == ("environment", ref, "source")
        read = buffers[origin["evidence"][0]]
        assert (read["source"], read["api"]) == ("environment_read", api)
    assert report["outcome"]["status"] == "completed"
    assert {f["path"] for f in report["dropped"]} == {
        rf"C:\Users\Public\lineage_env_{name}.txt" for name in ("getenv", "expand", "block")
    }


@pytest.mark.parametrize(
    ("name", "pieces"),
    [
        (
            "split-sources-xor",
            [
                ("file", r"C:\ProgramData\ChainreplayDemo\part.a", 0, 80),
                ("registry", r"HKEY_CURRENT_USER\Software\ChainreplayDemo\Part", 80, 72),
                ("network", "http://updates.example-cdn.net/v2/tail.bin", 152, 72),
            ],
        ),
        (
            "split-sources-xor-x86",
            [
                ("file", r"C:\ProgramData\ChainreplayDemo\part.a", 0, 80),
                ("registry", r"HKEY_CURRENT_USER\Software\ChainreplayDemo\Part", 80, 72),
                ("network", "http://updates.example-cdn.net/v2/tail.bin", 152, 24),
            ],
        ),
        (
            "split-files-inplace",
            [
                ("file", r"C:\ProgramData\ChainreplayDemo\head.bin", 0, 120),
                ("file", r"C:\Users\analyst\AppData\Roaming\tail.bin", 120, 104),
            ],
        ),
    ],
)
def test_a_payload_read_from_several_sources_names_each(
    name: str, pieces: list[tuple[str, str, int, int]], scenario_report: Callable[[str], Report]
) -> None:
    """A payload read piece by piece from different sources into one buffer (a file, a registry
    value, a download; two files), decoded into new memory (split-sources-xor, x64 and x86) or in
    place (split-files-inplace): the stage is the whole payload (not the first piece's 80 bytes),
    its origin names the first source and its ``pieces`` every one, each with its own reads as
    evidence, and each source has its own edge to the stage."""
    report = scenario_report(name)
    s1 = report["stages"][1]
    assert s1["size"] == sum(size for *_, size in pieces)  # 224 bytes on x64, 176 on x86
    got = [(p["type"], p["ref"], p["offset"], p["size"]) for p in s1["origin"]["pieces"]]
    assert got == pieces
    assert s1["lineage"][0]["pieces"] == s1["origin"]["pieces"]
    assert (s1["origin"]["type"], s1["origin"]["ref"]) == pieces[0][:2]
    buffers = {b["seq"]: b for b in report["buffers"]}
    calls = {c["seq"]: c for c in report["api_calls"]}
    edges = {e["source"]: e for e in report["graph"]["edges"] if e["target"] == "s1" and e["type"] != "executes"}
    assert len(edges) == len(pieces)
    for piece in s1["origin"]["pieces"]:
        read = next(buffers[seq] for seq in piece["evidence"] if seq in buffers)
        assert read["ref"] == piece["ref"] and read["size"] == piece["size"]
        # The read's own call (given the buffer's address), not the next read's.
        (call,) = (calls[seq] for seq in piece["evidence"] if seq in calls)
        assert read["address"] in call["args"], (call, read)
        node = next(n for n, e in edges.items() if read["seq"] in e["evidence"])
        assert piece["type"] in ("file", "registry", "network") and node.startswith(
            {"file": "file:", "registry": "registry:", "network": "url:"}[piece["type"]]
        )
    # Several sources, no other stage: the payload is in no single one of them.
    assert [s["id"] for s in report["stages"]] == ["s0", "s1"]


@pytest.mark.parametrize("name", ["pipe-cipher", "pipe-cipher-x86"])
def test_a_pipe_is_a_copy_from_where_the_writer_had_the_bytes(
    name: str, scenario_report: Callable[[str], Report], scenario_outdir: Callable[[str], Path]
) -> None:
    """pipe-cipher writes the file's bytes into an anonymous pipe and reads them from its other
    end into a stack buffer, where it decodes them in place before copying them out. The pipe
    read is an API copy whose input is where WriteFile had the bytes (the file's read buffer), so
    the stage goes back to the file (before: origin memory, "guest code at pc X")."""
    report = scenario_report(name)
    s1 = report["stages"][1]
    assert (s1["origin"]["type"], s1["origin"]["ref"]) == ("file", r"C:\ProgramData\ChainreplayDemo\pipe.dat")
    copy = s1["lineage"][1]
    assert (copy["transform"], copy["detail"]) == ("copy", "kernel32.ReadFile (pipe)")
    buffers = {b["seq"]: b for b in report["buffers"]}
    calls = {c["seq"]: c for c in report["api_calls"]}
    (pipe_read,) = (buffers[seq] for seq in copy["evidence"] if seq in buffers)
    file_read = buffers[s1["lineage"][0]["evidence"][0]]
    write = next(c for c in calls.values() if c["api"] == "kernel32.WriteFile")
    traced = next(
        e
        for e in map(json.loads, (scenario_outdir(name) / "trace.jsonl").read_text().splitlines())
        if e.get("seq") == pipe_read["seq"]
    )
    assert pipe_read["source"] == "api_copy" and write["args"][1] == file_read["address"]
    assert traced["input_address"] == int(file_read["address"], 16)
    read_call = next(calls[seq] for seq in copy["evidence"] if seq in calls)
    assert read_call["api"] == "kernel32.ReadFile" and read_call["args"][1] == pipe_read["address"]


def test_an_overlay_is_read_from_the_loaders_own_file(scenario_report: Callable[[str], Report]) -> None:
    """overlay-xor reads its own file (the guest path GetModuleFileNameA gives) and decodes what
    follows its last section: the origin is that file, at the overlay's offset."""
    report = scenario_report("overlay-xor")
    s1 = report["stages"][1]
    assert (s1["origin"]["type"], s1["origin"]["ref"]) == ("file", r"C:\Users\analyst\Downloads\loader.exe")
    assert s1["size"] == 224


def test_cryptoapi_aes_is_decrypted_and_traced(scenario_report: Callable[[str], Report]) -> None:
    """reg-b64-aes imports an AES-256 key from a PLAINTEXTKEYBLOB, sets its IV and decrypts with
    CryptDecrypt (Speakeasy has RC4 keys only: CryptImportKey ended the run unsupported): the
    plaintext is the payload that runs, its buffer holds the ciphertext as input, and the
    lineage runs from the registry value through base64 and the decryption."""
    report = scenario_report("reg-b64-aes")
    assert report["outcome"]["status"] == "completed"
    s1 = report["stages"][1]
    decrypt = next(b for b in report["buffers"] if b["source"] == "decrypt")
    # The plaintext (224 bytes, the 16 of padding removed by Final) is what ran.
    assert decrypt["size"] == s1["size"] == 224 and decrypt["sha256"] == s1["sha256"]
    assert s1["origin"]["how"] == "decrypt_api" and s1["origin"]["via_api"] == "CryptDecrypt"
    calls = [c["api"] for c in report["api_calls"]]
    for api in ("advapi32.CryptImportKey", "advapi32.CryptSetKeyParam", "advapi32.CryptDestroyKey"):
        assert api in calls


def test_bytes_of_one_piece_of_a_joined_buffer_name_that_source_alone() -> None:
    """A buffer filled from a file then a download: bytes found across both name both pieces;
    bytes found within the download's piece name the download alone (no pieces), as if it had
    been read into a buffer of its own."""
    from emulator.analysis.lineage import Piece

    rng = random.Random(7)
    head, tail = rng.randbytes(120), rng.randbytes(200)
    pieces = [
        Piece("file", r"C:\a.bin", r"file:c:\a.bin", [3, 4], 0, len(head)),
        Piece("network", "http://h.test/t", "url:http://h.test/t", [7, 8], len(head), len(tail)),
    ]
    joined = Carrier(head + tail, "file", r"C:\a.bin", 3, "s0", [3, 4, 7, 8], r"file:c:\a.bin", address=0x1000)
    joined.pieces = pieces
    across = trace(head[-40:] + tail, 20, [joined])
    assert across is not None and [p.kind for p in across[0].pieces] == ["file", "network"]
    within = trace(tail[10:], 20, [joined])
    assert within is not None and not within[0].pieces
    assert (within[0].source_kind, within[0].source_ref, within[0].node) == (
        "network",
        "http://h.test/t",
        "url:http://h.test/t",
    )
    assert within[0].evidence == [7, 8] and (within[0].offset, within[0].size) == (10, 190)


def test_a_dns_txt_answer_is_an_origin(scenario_report: Callable[[str], Report]) -> None:
    """dns-txt-b64 queries a TXT record (DnsQuery_A, DNS_TYPE_TEXT; the static responder's ``txt``
    strings) and joins its strings before decoding them: the stage's origin is that DNS answer,
    drawn as the host's node, cited by its exchange (before: the project's DnsQuery answered A
    records only, and the query failed)."""
    report = scenario_report("dns-txt-b64")
    s1 = report["stages"][1]
    origin = s1["lineage"][0]
    assert (origin["source"], origin["ref"], origin["detail"]) == (
        "network",
        "cfg.example-dns.net",
        "dnsapi.DnsQuery_A",
    )
    (exchange,) = report["network"]
    assert exchange["seq"] in origin["evidence"]
    assert (exchange["method"], exchange["response"]["headers"], exchange["response"]["size"]) == (
        "dnsapi.DnsQuery_A",
        {"TXT": "2 strings"},
        300,
    )
    edges = {(e["source"], e["type"], e["target"]) for e in report["graph"]["edges"]}
    assert ("host:cfg.example-dns.net", "decodes_to", "s1") in edges


def test_a_section_reopened_by_name_shows_what_was_written(scenario_report: Callable[[str], Report]) -> None:
    """named-section-xor writes the payload into a view of a named paging-file section, opens the
    section again by name (OpenFileMappingA: no Speakeasy handler, its declared signature gave a
    handle naming nothing and MapViewOfFile failed, so no stage ran) and reads it through a view
    of that handle: the stage runs and goes back to the file."""
    report = scenario_report("named-section-xor")
    calls = [c for c in report["api_calls"] if "Mapping" in c["api"] or "MapView" in c["api"]]
    created, written, opened, seen = calls
    assert opened["api"] == "kernel32.OpenFileMappingA" and opened["ret"] not in ("0x0", created["ret"])
    assert seen["args"][0] == opened["ret"] and seen["ret"] != "0x0"
    s1 = report["stages"][1]
    assert (s1["origin"]["type"], s1["size"]) == ("file", 224)


def test_decoding_in_place_on_the_stack_keeps_the_file(scenario_report: Callable[[str], Report]) -> None:
    """file-stack-cipher decodes the file in a stack buffer (no flow watch follows it), then copies
    it out twice: by a loop of its own (s1) and by RtlMoveMemory (s2). Where each copy read its
    input ties both back to the file read into that buffer, decoded in place there; s2 is not
    traced to s1, which merely holds the same bytes."""
    import pefile

    report = scenario_report("file-stack-cipher")
    s0, s1, s2 = report["stages"]
    image = pefile.PE(str(SCENARIOS_DIR / "file-stack-cipher" / "samples" / "loader.exe"))
    text = next(s for s in image.sections if s.Name.rstrip(b"\0") == b".text")
    low = int(s0["base"], 16) + text.VirtualAddress
    for stage in (s1, s2):
        origin, in_place = stage["lineage"][:2]
        assert origin["source"] == "file" and origin["ref"].endswith("blob.dat"), stage["id"]
        assert in_place["transform"] == "guest_code" and in_place["detail"] == "decoded in place by guest code in s0"
        assert stage["origin"]["type"] == "file" and stage["origin"]["ref"] == origin["ref"], stage["id"]
    loop = s1["lineage"][-1]
    match = re.fullmatch(r"decoded by guest code at pc (0x[0-9a-f]+) in s0", loop["detail"])
    assert match and low <= int(match.group(1), 16) < low + text.Misc_VirtualSize, loop["detail"]
    calls = {c["seq"]: c for c in report["api_calls"]}
    copy = s2["lineage"][-1]
    assert copy["transform"] == "copy"
    assert {calls[seq]["api"] for seq in copy["evidence"] if seq in calls} == {"kernel32.RtlMoveMemory"}


def test_code_run_from_a_mapped_view_is_a_stage(scenario_report: Callable[[str], Report]) -> None:
    """file-mapview-exec calls a view of a file mapped executable: the view is a stage whose
    bytes are the file's (not code of s0), and what it does is its own."""
    report = scenario_report("file-mapview-exec")
    assert [s["kind"] for s in report["stages"]] == ["pe", "shellcode"]
    s1 = report["stages"][1]
    assert s1["parent"] == "s0" and s1["via"] == "call"
    origin = s1["lineage"][0]
    assert (origin["source"], origin["transform"]) == ("file", "source") and origin["ref"].endswith("update.bin")
    payload = (SCENARIOS_DIR / "file-mapview-exec" / "files" / "update.bin").read_bytes()
    assert s1["sha256"] == hashlib.sha256(payload).hexdigest()
    writes = [f for f in report["files"] if f["op"] == "write"]
    assert writes and {f["stage"] for f in writes} == {"s1"}


def test_a_c_runtime_read_is_a_file_read(scenario_report: Callable[[str], Report]) -> None:
    """file-crt-fread reads its payload with msvcrt's fread: the read is in the report (with its
    call site) and is the origin of the stage."""
    report = scenario_report("file-crt-fread")
    s1 = report["stages"][1]
    origin = s1["lineage"][0]
    assert (origin["source"], origin["detail"]) == ("file", "msvcrt.fread") and origin["ref"].endswith("config.dat")
    reads = [f for f in report["files"] if f["op"] == "read" and f["path"].endswith("config.dat")]
    data = (SCENARIOS_DIR / "file-crt-fread" / "files" / "config.dat").read_bytes()
    assert len(reads) == 1 and reads[0]["size"] == len(data) and reads[0]["stage"] == "s0"
    calls = {c["seq"]: c for c in report["api_calls"]}
    fread = [c for c in calls.values() if c["api"] == "msvcrt.fread"]
    assert len(fread) == 1 and reads[0]["pc"] == fread[0]["pc"]


def test_a_binary_registry_value_reaches_the_guest_as_its_bytes(scenario_report: Callable[[str], Report]) -> None:
    """reg-binary-xor's REG_BINARY value is written in hex in the scenario: the guest reads those
    bytes (not the hex text, nor its UTF-8), and they are the stage's origin."""
    folder = SCENARIOS_DIR / "reg-binary-xor"
    blob = bytes.fromhex((folder / "payload" / "blob.hex").read_text(encoding="ascii"))
    spec = tomllib.loads((folder / "scenario.toml").read_text(encoding="utf-8"))
    assert bytes.fromhex(spec["registry"][0]["values"][0]["data"]) == blob
    report = scenario_report("reg-binary-xor")
    (read,) = [r for r in report["registry"] if r["op"] == "read" and r["value_name"] == "Cache"]
    assert read["value"] == blob.hex()
    s1 = report["stages"][1]
    assert s1["lineage"][0]["source"] == "registry" and s1["lineage"][0]["ref"].endswith("ChainreplayDemo\\Cache")
    assert s1["size"] == len(blob)


def test_a_binary_registry_value_that_is_not_hex_is_one_line(tmp_path: Path) -> None:
    from emulator.scenario import ScenarioError

    folder = tmp_path / "reg-binary-xor"
    shutil.copytree(SCENARIOS_DIR / "reg-binary-xor", folder, ignore=shutil.ignore_patterns("build"))
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    (folder / "scenario.toml").write_text(re.sub(r'data = "[0-9a-f]+"', 'data = "not hex"', text), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    assert "\n" not in str(err.value) and "registry.0.values.0" in str(err.value) and "hex" in str(err.value)
    # regedit's export form is accepted.
    (folder / "scenario.toml").write_text(
        re.sub(r'data = "[0-9a-f]+"', 'data = "hex:de,ad, be ef"', text), encoding="utf-8"
    )
    plan = load_scenario(folder)
    assert binary_value(plan.registry[0].values[0].data) == bytes.fromhex("deadbeef")


def test_views_of_one_section_share_their_bytes(scenario_report: Callable[[str], Report]) -> None:
    """section-views-xor writes its payload through one view of a section and calls another view
    of it: the call runs the payload (as on Windows), from the executable view, not zeros."""
    report = scenario_report("section-views-xor")
    assert report["outcome"]["status"] == "completed"
    views = [int(c["ret"], 16) for c in report["api_calls"] if c["api"] == "kernel32.MapViewOfFile"]
    assert len(views) == 2 and views[0] != views[1]
    s1 = report["stages"][1]
    assert int(s1["entry"], 16) == views[1] and s1["size"] > 64
    assert [h["transform"] for h in s1["lineage"]] == ["source", "xor"] and s1["lineage"][0]["source"] == "image"
    assert any(f["op"] == "write" and f["stage"] == "s1" for f in report["files"])


def test_a_stage_read_in_pieces_and_longer_than_the_probe_is_whole(scenario_report: Callable[[str], Report]) -> None:
    """net-chunks-xor's stage is 6000 bytes, downloaded 512 per read: its bytes are the whole
    decoded body (not the first read's 512, nor the lineage probe's 4096), and the lineage cites
    the first reads and the last."""
    report = scenario_report("net-chunks-xor")
    body = (SCENARIOS_DIR / "net-chunks-xor" / "payload" / "stage.bin").read_bytes()
    key = bytes.fromhex("5ec1029b743de8")
    plain = bytes(b ^ key[i % len(key)] for i, b in enumerate(body))
    s1 = report["stages"][1]
    assert (s1["size"], s1["sha256"]) == (len(plain), hashlib.sha256(plain).hexdigest())
    origin = s1["lineage"][0]
    reads = [b["seq"] for b in report["buffers"] if b["source"] == "network_read"]
    assert len(reads) == -(-len(body) // 512)
    assert reads[0] in origin["evidence"] and reads[-1] in origin["evidence"] and len(origin["evidence"]) <= 16
    assert s1["lineage"][1]["detail"] == f"repeating key {key.hex()}"


def test_a_buffer_decoded_in_place_then_injected_keeps_the_file(scenario_report: Callable[[str], Report]) -> None:
    """inject-stack-cipher decodes a file in a stack buffer and writes it into notepad with
    WriteProcessMemory: the injected stage's lineage is the file, decoded in place, then the
    write (not the other process's memory with no origin)."""
    report = scenario_report("inject-stack-cipher")
    s1 = report["stages"][1]
    assert s1["origin"]["type"] == "file" and s1["origin"]["ref"].endswith("blob.dat")
    origin, in_place, write = s1["lineage"]
    assert in_place["detail"] == "decoded in place by guest code in s0"
    assert write["transform"] == "process_write" and write["ref"] == "C:\\Windows\\System32\\notepad.exe"
    calls = {c["seq"]: c for c in report["api_calls"]}
    assert {calls[seq]["api"] for seq in write["evidence"] if seq in calls} == {"kernel32.WriteProcessMemory"}


def test_a_value_the_sample_wrote_is_not_an_origin(scenario_report: Callable[[str], Report]) -> None:
    """net-reg-stash stores its download in a registry value and reads it back: the lineage runs
    through the write (RegSetValueExA) to the response, as for a file the replay wrote."""
    report = scenario_report("net-reg-stash")
    s1 = report["stages"][1]
    origin, stash, xor = s1["lineage"]
    assert (origin["source"], origin["ref"]) == ("network", "http://updates.example-cdn.net/a.bin")
    assert (stash["transform"], stash["detail"]) == ("registry_write", "RegSetValueExA")
    assert stash["ref"] == "HKEY_CURRENT_USER\\Software\\ChainreplayDemo\\Stash"
    # It cites the write and the read back.
    (write,) = [r["seq"] for r in report["registry"] if r["op"] == "write" and r["value_name"] == "Stash"]
    calls = {c["seq"]: c for c in report["api_calls"]}
    assert write in stash["evidence"]
    assert "advapi32.RegQueryValueExA" in {calls[seq]["api"] for seq in stash["evidence"] if seq in calls}
    assert xor["detail"] == "key 0x42"


def test_decompressed_stage_is_the_lznt1_payload(scenario_report: Callable[[str], Report]) -> None:
    """file-lznt1's stage is exactly what an independent LZNT1 decompressor makes of the file."""
    import lznt1

    report = scenario_report("file-lznt1")
    payload = lznt1.decompress((SCENARIOS_DIR / "file-lznt1" / "files" / "update.lz").read_bytes()[:-2])
    stage = report["stages"][1]
    assert stage["sha256"] == hashlib.sha256(payload).hexdigest() and stage["size"] == len(payload)
    hop = stage["lineage"][-1]
    assert (hop["transform"], hop["detail"]) == ("decompress", "ntdll.RtlDecompressBuffer")
    calls = [c for c in report["api_calls"] if c["api"] == "ntdll.RtlDecompressBuffer"]
    assert len(calls) == 1 and calls[0]["ret"] == "0x0" and calls[0]["seq"] in hop["evidence"]


@pytest.mark.parametrize("name", ["module-stomp-xor", "module-stomp-xor-x86"])
def test_a_stomped_module_page_is_a_stage_of_the_protected_range(
    name: str, scenario_report: Callable[[str], Report]
) -> None:
    """The shellcode stage runs inside the loaded module's image, exactly over the range the loader
    made writable, and its bytes are the file's decoded, not the module's."""
    report = scenario_report(name)
    calls = report["api_calls"]
    module = next(int(c["ret"], 16) for c in calls if c["api"] == "kernel32.LoadLibraryA")
    protected = [c for c in calls if c["api"] == "kernel32.VirtualProtect" and c["args"][2] == "PAGE_READWRITE"]
    assert len(protected) == 1
    base, size = int(protected[0]["args"][0], 16), int(protected[0]["args"][1], 16)
    (stage,) = [s for s in report["stages"] if s["kind"] == "shellcode"]
    assert module < base and int(stage["base"], 16) == base == int(stage["entry"], 16)
    assert 0 < stage["size"] <= size
    assert hop_kinds(stage) == ["file", "xor"]
    assert stage["origin"]["ref"].lower().endswith("blob.dat")


@pytest.mark.parametrize(
    ("name", "etw_bytes", "amsi_bytes"),
    [
        ("patch-amsi-etw", "c3", "b8 57 00 07 80 c3"),
        ("patch-amsi-etw-x86", "c2 14 00", "b8 57 00 07 80 c2 18 00"),
    ],
)
def test_a_patch_of_module_code_is_noted_and_runs_as_patched(
    name: str,
    etw_bytes: str,
    amsi_bytes: str,
    scenario_report: Callable[[str], Report],
    scenario_outdir: Callable[[str], Path],
) -> None:
    """A few bytes written over another module's code (an ETW bypass by WriteProcessMemory into
    the guest's own process, an AMSI bypass by VirtualProtect and a store) are a
    ``module_code_patched`` note naming module!export and the bytes, the techniques follow from
    it, the patched code runs (the functions return what the patch says), and it is not a stage."""
    report = scenario_report(name)
    patched = [n for n in report["notes"] if n["what"] == "module_code_patched"]
    details = sorted(n["detail"] for n in patched)  # noted when re-protected or run: either order
    assert len(details) == 2, details
    assert details[0].startswith("amsi.dll!AmsiScanBuffer: ") and f"now {amsi_bytes} (was " in details[0]
    assert details[1].startswith("ntdll.dll!EtwEventWrite: ") and f"now {etw_bytes} (was " in details[1]
    assert {n["stage"] for n in patched} == {"s0"}
    assert [s["kind"] for s in report["stages"]] == ["pe"]
    (dropped,) = (scenario_outdir(name) / "dropped").iterdir()
    assert dropped.read_bytes() == b"etw=1 amsi=0x80070057"
    # Neither function's handler ran: the patched bytes did.
    assert not [c for c in report["api_calls"] if c["api"].endswith(("EtwEventWrite", "AmsiScanBuffer"))]


@pytest.mark.parametrize(("name", "machine"), [("unhook-ntdll", 0x8664), ("unhook-ntdll-x86", 0x14C)])
def test_system_dlls_are_files_and_unhooking_from_one_changes_nothing(
    name: str, machine: int, scenario_report: Callable[[str], Report], scenario_outdir: Callable[[str], Path]
) -> None:
    """C:\\Windows\\System32\\ntdll.dll exists in the guest as the guest's architecture's ntdll, the
    loaded image's bytes: a loader copying its .text over the loaded ntdll ("fresh copy"
    unhooking) changes nothing (no patch noted, no stage), and ntdll works afterwards (the
    run ended with a SIGSEGV in the emulator once the module's pages were watched)."""
    import pefile

    report = scenario_report(name)
    outdir = scenario_outdir(name)
    assert report["outcome"]["status"] == "completed"
    read = [f for f in report["files"] if f["op"] == "read" and f["path"].lower().endswith("system32\\ntdll.dll")]
    assert read and read[0]["sha256"]
    image = pefile.PE(data=(outdir / "blobs" / f"{read[0]['sha256']}.bin").read_bytes())
    assert image.FILE_HEADER.Machine == machine
    exports = {e.name for e in image.DIRECTORY_ENTRY_EXPORT.symbols}
    assert b"NtAllocateVirtualMemory" in exports
    assert not [n for n in report["notes"] if n["what"] == "module_code_patched"]
    assert [s["kind"] for s in report["stages"]] == ["pe"]
    (dropped,) = (outdir / "dropped").iterdir()
    assert re.fullmatch(rb"file \d+ bytes, \.text \d+ bytes restored, allocation ok", dropped.read_bytes())


def test_layer_one_is_bounded_to_its_own_code(scenario_report: Callable[[str], Report]) -> None:
    """Layer 1 runs from a page-rounded RWX allocation: its stage is layer 1 alone, not the page."""
    report = scenario_report("two-layer-xor")
    layer1, layer2 = report["stages"][1], report["stages"][2]
    assert 0 < layer1["size"] < 0x1000 and 0 < layer2["size"] < 0x1000
    assert layer2["lineage"][-1]["actor"] == "s1" and layer1["lineage"][-1]["actor"] == "s0"


@pytest.mark.parametrize("name", ["inject-remote-thread", "inject-remote-thread-x86", "inject-syscalls"])
def test_injected_stage_runs_in_the_other_process(name: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    injected = report["stages"][1]
    assert injected["process"] == r"C:\Windows\System32\notepad.exe"
    node = next(n for n in report["graph"]["nodes"] if n["id"] == "s1")
    assert node["process"] == injected["process"]


@pytest.mark.parametrize(("name", "process", "method", "technique"), INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_injection_method_and_sub_technique(
    name: str, process: str, method: str, technique: str | None, scenario_report: Callable[[str], Report]
) -> None:
    """The injects_into edge says how (from the order of the calls alone), the sub-technique follows
    with the calls that make it as evidence, and the injected stage is drawn in the other process."""
    report = scenario_report(name)
    edge = next(e for e in report["graph"]["edges"] if e["type"] == "injects_into")
    assert edge["target"] == f"process:{process}" and edge["methods"] == [method]
    calls = {c["seq"]: c["api"].rpartition(".")[2] for c in report["api_calls"]}
    cited = {calls[seq] for seq in edge["evidence"]}
    wanted = (
        INJECTION_CALLS.get(name)
        or {
            "remote_thread": {"CreateRemoteThread"},
            "thread_context": {"SetThreadContext", "ResumeThread"},
            "apc": {"QueueUserAPC"},
            "hollowing": {"ZwUnmapViewOfSection", "SetThreadContext", "ResumeThread"},
        }[method]
    )
    assert cited == wanted
    subs = {t["technique"]: t for t in report["attack"] if t["technique"].startswith("T1055.")}
    assert set(subs) == ({technique} if technique else set())
    if technique:
        assert subs[technique]["stage"] == "s0" and set(subs[technique]["evidence"]) == set(edge["evidence"])
    assert report["stages"][1]["process"] == process


@pytest.mark.parametrize(("name", "stage"), [("inject-apc", "s1"), ("inject-apc-x86", "s1"), ("self-callbacks", "s2")])
def test_a_stage_an_apc_started_says_so(name: str, stage: str, scenario_report: Callable[[str], Report]) -> None:
    """Speakeasy runs a queued APC as a thread it does not record; the stage it starts is one an
    APC started (``via: apc``) because its entry is the routine of a QueueUserAPC call made
    before it, in another process (inject-apc) or the loader's own thread (self-callbacks). The
    TLS callback of self-callbacks (s1) was queued by no one: it jumped there (``call``)."""
    report = scenario_report(name)
    stages = {s["id"]: s for s in report["stages"]}
    assert stages[stage]["via"] == "apc"
    queued = [c for c in report["api_calls"] if c["api"] == "kernel32.QueueUserAPC"]
    assert [int(c["args"][0], 16) for c in queued] == [int(stages[stage]["entry"], 16)]
    assert [s["id"] for s in report["stages"] if s["via"] == "apc"] == [stage]


@pytest.mark.parametrize(
    ("name", "parents"),
    [
        ("self-callbacks", {"s1": "s0"}),  # the exe's TLS callback (a run of its own) jumps to it
        ("dll-tls-thread", {"s2": "s1"}),  # a loaded DLL's TLS callback (an API callback) jumps to it
        ("custom-cipher", {"s1": "s0", "s2": "s1"}),  # an export jumps to layer 1, which jumps to layer 2
        ("file-heap-cipher", {"s2": "s1"}),  # a thread's start routine jumps on
    ],
)
def test_a_stage_reached_by_a_tail_call_says_call(
    name: str, parents: dict[str, str], scenario_report: Callable[[str], Report]
) -> None:
    """A function the engine called (a TLS callback, an export, a callback, a thread's start
    routine) that ends in a jump to new code leaves its own return address, the engine's, on the
    stack: the stage it jumped to was reached by a (tail) call from the stage that ran last, not
    ``unknown``."""
    report = scenario_report(name)
    stages = {s["id"]: s for s in report["stages"]}
    assert {sid: (stages[sid]["via"], stages[sid]["parent"]) for sid in parents} == {
        sid: ("call", parent) for sid, parent in parents.items()
    }
    assert [s["id"] for s in report["stages"] if s["via"] == "unknown"] == []


def test_injection_methods_follow_the_order_of_the_calls() -> None:
    """SetThreadContext without a later ResumeThread hijacks nothing; an unmap makes hollowing only
    in a process the stage created and only before the context is set."""
    from emulator.analysis.graph import _Processes

    def methods(calls: list[tuple[str, str, int]]) -> list[str]:
        found = _Processes(calls={("s0", "p"): calls}).injections()
        return found[("s0", "p")][0] if found else []

    created = ("createprocessa", "creates_process", 1)
    assert methods([created, ("setthreadcontext", "injects_into", 5)]) == []
    assert methods([created, ("resumethread", "resume", 4), ("setthreadcontext", "injects_into", 5)]) == []
    assert methods([created, ("setthreadcontext", "injects_into", 5), ("resumethread", "resume", 6)]) == [
        "thread_context"
    ]
    unmap = ("zwunmapviewofsection", "unmap", 3)
    hollow = [unmap, ("setthreadcontext", "injects_into", 5), ("resumethread", "resume", 6)]
    assert methods([created, *hollow]) == ["hollowing"]
    assert methods(hollow) == ["thread_context"]  # a process it did not create
    late = [
        created,
        ("setthreadcontext", "injects_into", 5),
        ("resumethread", "resume", 6),
        ("ntunmapviewofsection", "unmap", 7),
    ]
    assert methods(late) == ["thread_context"]
    assert methods([("queueuserapc", "injects_into", 2), ("createremotethread", "injects_into", 3)]) == [
        "apc",
        "remote_thread",
    ]


@pytest.mark.parametrize("name", GENERALITY)
def test_inert_without_the_marker(name: str) -> None:
    plan = load_scenario(SCENARIOS_DIR / name)
    recording = emulate(ReplayPlan.model_validate({**plan.model_dump(), "sandbox_marker": False}))
    calls = [e.api for e in recording.events if isinstance(e, ApiCall)]
    assert calls[0] == "kernel32.GetEnvironmentVariableA"
    assert set(calls) <= {"kernel32.GetEnvironmentVariableA", "kernel32.ExitProcess"}, calls
    assert not [e for e in recording.events if isinstance(e, FileAccess | RegistryAccess | NetworkExchange)]
    assert len([e for e in recording.events if e.type == "stage_start"]) == 1


def test_a_library_that_cannot_be_loaded_is_a_note_naming_it() -> None:
    """drop-load-dll fed a text file instead of the DLL: LoadLibraryA fails, and the report says why."""
    plan = load_scenario(SCENARIOS_DIR / "drop-load-dll")
    responder = plan.responders[0]
    options = {**responder.options, "response": {**responder.options["response"], "body_file": "scenario.toml"}}
    bad = plan.model_copy(update={"responders": [responder.model_copy(update={"options": options})]})
    recording = emulate(bad)
    notes = [e for e in recording.events if isinstance(e, Note) and e.what == "library_not_loaded"]
    assert notes and "plugin.dll" in notes[0].detail and "not a PE image" in notes[0].detail
    assert len([e for e in recording.events if e.type == "stage_start"]) == 1


def test_transforms_are_recognised_from_bytes_alone() -> None:
    payload = bytes(range(7, 250, 3)) * 3
    noise = bytes((i * 73 + 11) & 0xFF for i in range(5000))
    cases = {
        "key 0x5c": bytes(b ^ 0x5C for b in payload),
        "rolling key 0x3d + 7*i": bytes(b ^ ((0x3D + 7 * i) & 0xFF) for i, b in enumerate(payload)),
        "repeating key 5a17c388": bytes(b ^ (0x5A, 0x17, 0xC3, 0x88)[i % 4] for i, b in enumerate(payload)),
    }
    for detail, encoded in cases.items():
        match = find_transformed(payload, noise[:1234] + encoded + noise)
        assert match is not None and match.offset == 1234 and match.length == len(payload), detail
        assert match.detail == detail
    wrapped = b"cfg=" + base64.b64encode(cases["key 0x5c"]) + b";"
    match = find_transformed(payload, wrapped)
    assert match is not None and match.transform == "base64+xor"
    assert find_transformed(payload, noise) is None


def test_a_match_runs_on_past_the_probe() -> None:
    """Carriers are searched for a stage's first PROBE_BYTES; a stage longer than that is as long
    as the carrier goes on explaining it, under identity, a rolling key or a repeating one."""
    rng = random.Random(28)
    stage = rng.randbytes(3 * PROBE_BYTES + 123)
    keys = {
        "identity": bytes(len(stage)),
        "rolling": bytes((0x37 + 11 * i) & 0xFF for i in range(len(stage))),
        "repeating": bytes.fromhex("1122334455") * len(stage),
    }
    for name, key in keys.items():
        carried = bytes(a ^ b for a, b in zip(stage, key, strict=False)) + rng.randbytes(50)
        hops = trace(stage + bytes(64), 5, [Carrier(carried, "file", "x", 1, "s0", [1], "file:x", address=0x1000)])
        assert hops is not None and matched_length(hops) == len(stage), name
    # Where the carrier stops explaining the stage, so does the match.
    cut = stage[: PROBE_BYTES + 10] + bytes(b ^ 0xFF for b in stage[PROBE_BYTES + 10 :])
    hops = trace(cut, 5, [Carrier(stage, "file", "x", 1, "s0", [1], "file:x", address=0x1000)])
    assert hops is not None and matched_length(hops) == PROBE_BYTES + 10


def test_a_dropped_file_accounts_for_the_stage_as_read() -> None:
    """A download read 64 bytes at a time into one small buffer (pieces that are not one buffer),
    each piece appended to a file, the file read back whole: the stage is the whole file, not the
    first piece the lineage runs back to."""
    rng = random.Random(29)
    body = rng.randbytes(1000)
    carriers, seq = [], 1
    for at in range(0, len(body), 64):
        piece = body[at : at + 64]
        carriers.append(Carrier(piece, "network", "http://x/a", seq, "s0", [seq], "url:http://x/a", address=0x7000))
        carriers.append(
            Carrier(piece, "file_write", "C:\\d.bin", seq + 1, "s0", [seq + 1], "file:c:\\d.bin", address=0x7000)
        )
        seq += 2
    carriers.append(Carrier(body, "file", "C:\\d.bin", seq, "s0", [seq], "file:c:\\d.bin", address=0x9000))
    hops = trace(body, seq + 1, carriers)
    assert hops is not None and [h.transform for h in hops] == ["source", "file_write"]
    assert hops[0].source_kind == "network" and matched_length(hops) == len(body)


def test_bytes_guest_code_copied_unchanged_are_a_copy_not_a_decoding() -> None:
    """Guest code that moved bytes as it read them (a copy loop, an inlined memcpy) copied them:
    the hop says so and is no decoding (no deobfuscation technique drawn from it); guest code that
    changed them on the way decoded them."""
    import random

    rng = random.Random(2812)
    payload = rng.randbytes(3 * PROBE_BYTES)
    encoded = bytes(b ^ ((7 * i + 3) & 0xFF) ^ 0x5A for i, b in enumerate(payload))  # no recognised transform

    def carriers(read: bytes) -> list[Carrier]:
        """What guest code wrote, having read ``read`` from memory no carrier explains (the stack)."""
        return [
            Carrier(
                payload, "memory", "s0", 2, "s0", [2], transform="guest_code", pc=0x401000, input=read, address=0x5000
            )
        ]

    copied = trace(payload, 5, carriers(payload[:16] + payload), guest=True)  # read holds it unchanged
    assert copied is not None, copied
    hop = next(h for h in copied if h.source_kind == "memory")
    assert (hop.transform, hop.decodes) == ("copy", False), copied
    assert hop.detail == "copied by guest code at pc 0x401000 in s0"
    decoded = trace(payload, 5, carriers(encoded), guest=True)
    assert decoded is not None
    hop = next(h for h in decoded if h.source_kind == "memory")
    assert (hop.transform, hop.decodes) == ("guest_code", True), decoded
    assert hop.detail == "decoded by guest code at pc 0x401000 in s0"
