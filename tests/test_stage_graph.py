"""Stage derivation and the stage graph on small synthetic traces: no emulator involved."""

from __future__ import annotations

import hashlib
from typing import Any

import networkx as nx

from emulator.analysis.graph import GraphContext, build_graph, graph_to_node_link
from emulator.analysis.stages import derive_stages
from emulator.events import (
    EVENT_LIST_ADAPTER,
    DataBuffer,
    Event,
    FileAccess,
    NetRequest,
    NetResponse,
    NetworkExchange,
    RegistryAccess,
    StageStart,
)

ENTRY = ("scenario", "host.exe")
CARRIER = r"C:\Users\analyst\app\carrier.dat"
URL = "https://cdn.example.test/payload.bin"
EXE_BASE = 0x140000000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code(seed: int, size: int = 256) -> bytes:
    """Distinct, non-zero bytes standing in for shellcode."""
    return bytes(((i * 37 + seed * 11) % 251) + 1 for i in range(size))


def xor(data: bytes, key: int = 0x5A) -> bytes:
    """An opaque stream cipher (a keystream with no short period), standing in for RC4: the
    lineage analysis cannot recognise it, so only where the bytes lie ties the stage to them."""
    state, out = key, bytearray()
    for b in data:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(b ^ (state >> 16) & 0xFF)
    return bytes(out)


def xor_const(data: bytes, key: int = 0x5A) -> bytes:
    return bytes(b ^ key for b in data)


class Trace:
    """Builds an event list and its blob store with consecutive seqs."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.blobs: dict[str, bytes] = {}

    def blob(self, data: bytes) -> str:
        digest = sha(data)
        self.blobs[digest] = data
        return digest

    def add(self, cls: type, **fields: Any) -> int:
        seq = len(self.events)
        self.events.append(cls(seq=seq, **fields))
        return seq

    def entry(self, image: bytes = b"MZ entry sample" * 4) -> int:
        return self.add(
            StageStart,
            stage="s0",
            new_stage="s0",
            kind="pe",
            name="entry.exe",
            base=EXE_BASE,
            size=len(image),
            entry=EXE_BASE,
            sha256=self.blob(image),
            via="entry",
        )

    def stage(
        self, new_stage: str, parent: str, data: bytes, base: int, kind: str = "shellcode", entry: int | None = None
    ) -> int:
        return self.add(
            StageStart,
            stage=parent,
            new_stage=new_stage,
            kind=kind,
            name=f"{kind}@{base:#x}",
            base=base,
            size=len(data),
            entry=base if entry is None else entry,
            sha256=self.blob(data),
            parent=parent,
            via="call",
        )

    def http(
        self,
        stage: str,
        url: str,
        body: bytes,
        method: str = "GET",
        request_body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> int:
        host = url.split("/")[2]
        request = NetRequest(
            headers=headers or {},
            body_size=len(request_body),
            body_sha256=self.blob(request_body) if request_body else None,
        )
        response = NetResponse(status=200, size=len(body), sha256=self.blob(body) if body else None)
        return self.add(
            NetworkExchange,
            stage=stage,
            kind="http",
            host=host,
            port=443,
            method=method,
            url=url,
            request=request,
            response=response,
            responder="test",
        )


def analyse(trace: Trace, context: GraphContext | None = None) -> tuple[list[Any], nx.DiGraph]:
    stages = derive_stages(trace.events, trace.blobs, ENTRY)
    return stages, build_graph(stages, trace.events, trace.blobs, context)


def edges(graph: nx.DiGraph) -> dict[tuple[str, str], tuple[str, list[int]]]:
    return {(a, b): (d["type"], d["evidence"]) for a, b, d in graph.edges(data=True)}


def file_node(path: str) -> str:
    return f"file:{path.lower()}"


def test_file_read_then_decrypted_in_place_and_executed_gives_decrypts_to_from_the_file() -> None:
    t = Trace()
    t.entry()
    plaintext = code(1)
    ciphertext = xor(plaintext)
    buffer = 0x50000
    t.add(FileAccess, stage="s0", op="open", path=CARRIER)
    read = t.add(
        FileAccess,
        stage="s0",
        op="read",
        path=CARRIER,
        size=len(ciphertext),
        data_sha256=t.blob(ciphertext),
        address=buffer,
    )
    buf = t.add(
        DataBuffer,
        stage="s0",
        source="file_read",
        address=buffer,
        size=len(ciphertext),
        sha256=sha(ciphertext),
        ref=CARRIER,
        api="ReadFile",
    )
    # The loader decrypts the buffer where it lies and calls into it, past a small header.
    start = t.stage("s1", "s0", plaintext, buffer, entry=buffer + 0x10)

    stages, graph = analyse(t)
    assert [s.id for s in stages] == ["s0", "s1"]
    link = stages[1].link
    assert link is not None
    assert (link.how, link.source_type, link.source_ref) == ("decrypted_in_place", "file", CARRIER)
    assert link.decrypted
    assert edges(graph) == {
        ("s0", file_node(CARRIER)): ("reads", [read]),
        (file_node(CARRIER), "s1"): ("decrypts_to", [buf, start]),
        ("s0", "s1"): ("executes", [start]),
    }


def test_values_of_one_key_read_into_one_buffer_are_one_carrier() -> None:
    """A payload split across three values of one key (scenarios/reg-split-xor), each read at the
    end of the last into one buffer: the stage is the whole payload decoded, not the first value's
    part of it, and its origin names every value. Each read's rendered value comes between the
    buffers (the registry event before its registry_read buffer)."""
    t = Trace()
    t.entry()
    plaintext = code(3, 225)
    ciphertext = xor_const(plaintext)
    key = r"HKEY_CURRENT_USER\Software\Demo"
    buffer, buffers = 0x7F000, []
    for i in range(3):
        part = ciphertext[i * 75 : (i + 1) * 75]
        t.add(RegistryAccess, stage="s0", op="read", path=key, value_name=f"Part{i + 1}", value=part.hex())
        buffers.append(
            t.add(
                DataBuffer,
                stage="s0",
                source="registry_read",
                address=buffer + i * 75,
                size=75,
                sha256=t.blob(part),
                ref=f"{key}\\Part{i + 1}",
                api="advapi32.RegQueryValueExA",
            )
        )
    t.stage("s1", "s0", plaintext + bytes(0x1000 - len(plaintext)), 0x60000)

    stages, _ = analyse(t)
    link = stages[1].link
    assert link is not None
    assert (link.how, link.source_type, link.source_ref) == ("decoded", "registry", f"{key}\\Part1 + Part2 + Part3")
    assert [(h.transform, h.detail) for h in link.hops][1:] == [("xor", "key 0x5a")]
    assert stages[1].size == len(plaintext)
    assert set(buffers) <= set(link.hops[0].evidence)


def test_file_bytes_xored_into_new_memory_give_decodes_to_with_the_key() -> None:
    """A one-byte XOR by guest code is recognised from the bytes alone (known plaintext)."""
    t = Trace()
    t.entry()
    plaintext = code(1)
    ciphertext = xor_const(plaintext)
    read = t.add(FileAccess, stage="s0", op="read", path=CARRIER, size=len(ciphertext), data_sha256=t.blob(ciphertext))
    buf = t.add(
        DataBuffer,
        stage="s0",
        source="file_read",
        address=0x50000,
        size=len(ciphertext),
        sha256=sha(ciphertext),
        ref=CARRIER,
        api="ReadFile",
    )
    start = t.stage("s1", "s0", plaintext + bytes(0x1000 - len(plaintext)), 0x60000)

    stages, graph = analyse(t)
    link = stages[1].link
    assert link is not None
    assert (link.how, link.source_type, link.decoded, link.decrypted) == ("decoded", "file", True, False)
    assert [(h.transform, h.detail) for h in link.hops] == [("source", "ReadFile"), ("xor", "key 0x5a")]
    # The stage is the decoded code, not the page-rounded region.
    assert stages[1].size == len(plaintext)
    assert edges(graph)[(file_node(CARRIER), "s1")] == ("decodes_to", [buf, start])
    assert edges(graph)[("s0", file_node(CARRIER))] == ("reads", [read])


def test_network_bytes_executed_unchanged_give_delivers_from_the_url() -> None:
    t = Trace()
    t.entry()
    payload = code(2)
    fetch = t.http("s0", URL, payload)
    buf = t.add(
        DataBuffer,
        stage="s0",
        source="network_read",
        address=EXE_BASE + 0x3000,
        size=len(payload),
        sha256=sha(payload),
        ref=URL,
        api="WinHttpReadData",
    )
    # Copied to fresh executable memory, then run: the stage's bytes are the body, unchanged.
    start = t.stage("s1", "s0", payload, 0x60000)

    stages, graph = analyse(t)
    link = stages[1].link
    assert link is not None
    assert (link.how, link.source_type, link.source_ref, link.decrypted) == ("same_bytes", "network", URL, False)
    assert edges(graph) == {
        ("s0", f"url:{URL}"): ("fetches", [fetch]),
        (f"url:{URL}", "s1"): ("delivers", [buf, start]),
        ("s0", "s1"): ("executes", [start]),
    }
    assert stages[1].origin_type == "network"


def test_response_body_alone_ties_the_stage_to_the_url() -> None:
    """No DataBuffer for the read: the recorded response body is enough."""
    t = Trace()
    t.entry()
    payload = code(3)
    fetch = t.http("s0", URL, payload)
    start = t.stage("s1", "s0", payload, 0x60000)
    stages, graph = analyse(t)
    assert stages[1].link is not None and stages[1].link.source_type == "network"
    assert edges(graph)[(f"url:{URL}", "s1")] == ("delivers", [fetch, start])


def test_decryption_api_output_executed_gives_decrypts_to_from_where_the_ciphertext_came() -> None:
    t = Trace()
    t.entry()
    plaintext = code(4)
    ciphertext = xor(plaintext, 0x33)
    fetch = t.http("s0", URL, ciphertext)
    out = 0x70000
    dec = t.add(
        DataBuffer,
        stage="s0",
        source="decrypt",
        address=out,
        size=len(plaintext),
        sha256=t.blob(plaintext),
        ref="bcrypt.BCryptDecrypt",
        input_sha256=sha(ciphertext),
        api="BCryptDecrypt",
    )
    start = t.stage("s1", "s0", plaintext, out)

    stages, graph = analyse(t)
    link = stages[1].link
    assert link is not None
    assert (link.how, link.source_type, link.source_ref, link.via_api) == (
        "decrypt_api",
        "network",
        URL,
        "BCryptDecrypt",
    )
    assert edges(graph)[(f"url:{URL}", "s1")] == ("decrypts_to", [fetch, dec, start])


def test_code_from_nowhere_is_executed_from_its_parent_with_no_artifact_edge() -> None:
    t = Trace()
    t.entry()
    start = t.stage("s1", "s0", code(5), 0x80000)
    stages, graph = analyse(t)
    link = stages[1].link
    assert link is not None and (link.how, link.source_type, link.source_ref) == ("executed_from", "memory", "s0")
    assert edges(graph) == {("s0", "s1"): ("executes", [start])}


def test_one_stage_trace_gives_no_stage_edges() -> None:
    t = Trace()
    t.entry()
    t.add(FileAccess, stage="s0", op="open", path=CARRIER)
    stages, graph = analyse(t)
    assert [s.id for s in stages] == ["s0"]
    assert stages[0].link is not None and stages[0].link.how == "entry"
    assert list(graph.nodes) == ["s0"]
    assert graph.number_of_edges() == 0
    # With a host process the only edge is the host loading the entry sample.
    _, graph = analyse(t, GraphContext(host_process="host.exe"))
    assert edges(graph) == {("process:host.exe", "s0"): ("loads", [0])}


def test_post_carrying_file_content_exfiltrates_and_one_carrying_an_identifier_beacons() -> None:
    t = Trace()
    t.entry()
    secret = b"https://intranet.corp.example/payroll visited 2023-03-29"
    read = t.add(
        FileAccess, stage="s0", op="read", path=CARRIER, size=len(secret), data_sha256=t.blob(secret), address=0x50000
    )
    t.add(
        DataBuffer,
        stage="s0",
        source="file_read",
        address=0x50000,
        size=len(secret),
        sha256=sha(secret),
        ref=CARRIER,
        api="ReadFile",
    )
    beacon = t.http(
        "s0",
        "https://c2.example.test/beacon",
        b"OK",
        method="POST",
        request_body=b"hello",
        headers={"Cookie": "__tutma=6f1c2d3e-4b5a"},
    )
    exfil = t.http(
        "s0", "https://c2.example.test/upload", b"OK", method="POST", request_body=b'{"history": "' + secret + b'"}'
    )
    plain = t.http("s0", "https://c2.example.test/config", b"{}")
    _, graph = analyse(t, GraphContext(host_identifiers=["6f1c2d3e-4b5a"]))
    assert edges(graph) == {
        ("s0", file_node(CARRIER)): ("reads", [read]),
        ("s0", "url:https://c2.example.test/beacon"): ("beacons_to", [beacon]),
        ("s0", "url:https://c2.example.test/upload"): ("exfiltrates_to", [exfil]),
        ("s0", "url:https://c2.example.test/config"): ("fetches", [plain]),
    }


def test_created_then_written_file_is_dropped_and_registry_read_is_read() -> None:
    t = Trace()
    t.entry()
    path = r"C:\Users\Public\Dropped.TXT"
    t.add(FileAccess, stage="s0", op="create", path=path, existed=False)
    write = t.add(FileAccess, stage="s0", op="write", path=path, size=3, data_sha256=t.blob(b"abc"))
    other = t.add(FileAccess, stage="s0", op="write", path=CARRIER, size=3, data_sha256=t.blob(b"abc"))
    key = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Cryptography"
    reg = t.add(RegistryAccess, stage="s0", op="read", path=key, value_name="MachineGuid", value="x")
    _, graph = analyse(t)
    assert edges(graph) == {
        ("s0", file_node(path)): ("drops", [write]),
        ("s0", file_node(CARRIER)): ("writes", [other]),
        ("s0", f"registry:{key.lower()}"): ("reads", [reg]),
    }


def _chain() -> Trace:
    """A three-stage trace touching every kind of source: file, network, decryption API."""
    t = Trace()
    t.entry()
    stage1, stage2 = code(6), code(7, 512)
    t.add(FileAccess, stage="s0", op="read", path=CARRIER, size=256, data_sha256=t.blob(xor(stage1)), address=0x50000)
    t.add(
        DataBuffer,
        stage="s0",
        source="file_read",
        address=0x50000,
        size=256,
        sha256=sha(xor(stage1)),
        ref=CARRIER,
        api="ReadFile",
    )
    t.stage("s1", "s0", stage1, 0x50000)
    t.http("s1", URL, xor(stage2, 0x77), headers={"X-Id": "WS-FINANCE-07"})
    t.add(
        DataBuffer,
        stage="s1",
        source="decrypt",
        address=0x90000,
        size=512,
        sha256=t.blob(stage2),
        ref="bcrypt.BCryptDecrypt",
        input_sha256=sha(xor(stage2, 0x77)),
        api="BCryptDecrypt",
    )
    t.stage("s2", "s1", stage2, 0x90000)
    t.add(FileAccess, stage="s2", op="read", path=r"C:\Users\analyst\History", size=8, data_sha256=t.blob(b"history!"))
    return t


def test_saved_trace_round_trip_gives_the_same_graph() -> None:
    t = _chain()
    context = GraphContext(host_process="host.exe", host_identifiers=["WS-FINANCE-07"])
    stages, graph = analyse(t, context)
    saved = EVENT_LIST_ADAPTER.dump_json(t.events)
    loaded = EVENT_LIST_ADAPTER.validate_json(saved)
    assert loaded == t.events
    stages_again = derive_stages(loaded, dict(t.blobs), ENTRY)
    graph_again = build_graph(stages_again, loaded, dict(t.blobs), context)
    assert stages_again == stages
    assert graph_to_node_link(graph_again) == graph_to_node_link(graph)
    # The chain itself, so the round trip compares something non-trivial.
    assert [s.link.how for s in stages if s.link] == ["entry", "decrypted_in_place", "decrypt_api"]
    assert {(a, b, d["type"]) for a, b, d in graph.edges(data=True)} == {
        ("process:host.exe", "s0", "loads"),
        ("s0", file_node(CARRIER), "reads"),
        (file_node(CARRIER), "s1", "decrypts_to"),
        ("s0", "s1", "executes"),
        ("s1", f"url:{URL}", "beacons_to"),
        (f"url:{URL}", "s2", "decrypts_to"),
        ("s1", "s2", "executes"),
        ("s2", file_node(r"C:\Users\analyst\History"), "reads"),
    }


def test_a_process_node_is_named_by_its_image_path_as_the_guest_resolves_it() -> None:
    """A program started by a bare name (``cmd.exe /c ...``, ``powershell -enc ...``, ``SC``) is
    the one Windows' search finds: its path in System32 (SysWOW64 for a 32-bit launcher) or on
    %PATH%; a full path is kept as the call gave it, and an unknown bare name as named. The host
    application is named by its path."""
    from emulator.analysis.programs import program_image
    from emulator.events import ApiCall

    assert program_image("cmd.exe", "x64") == "C:\\Windows\\System32\\cmd.exe"
    assert program_image('"SC"', "x64") == "C:\\Windows\\System32\\sc.exe"
    assert program_image("powershell", "x86") == "C:\\Windows\\SysWOW64\\WindowsPowerShell\\v1.0\\powershell.exe"
    assert program_image("explorer.exe", "x86") == "C:\\Windows\\explorer.exe"
    assert program_image("C:\\Windows\\System32\\notepad.exe", "x86") == "C:\\Windows\\System32\\notepad.exe"
    assert program_image("evil.exe", "x64") == "evil.exe"
    assert program_image("cmd.bat", "x64") == "cmd.bat"
    t = Trace()
    t.entry()
    for line in ("cmd.exe /c whoami", "powershell -nop -c 1", "C:\\Windows\\System32\\cmd.exe /c ver"):
        t.add(ApiCall, stage="s0", api="kernel32.CreateProcessA", args=["0x0", line], ret="0x1")
    _, graph = analyse(t, GraphContext(host_process="C:\\App\\host.exe", arch="x64"))
    assert sorted(n for n in graph.nodes if n.startswith("process:")) == [
        "process:C:\\App\\host.exe",
        "process:C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "process:C:\\Windows\\System32\\cmd.exe",
    ]
