"""Renderers over the report model: the stage graph (layout, SVG, PNG, DOT, GraphML), report.html,
the narration and the terminal summary, on real replays (shared per session) and on reports
built to be hostile or huge."""

from __future__ import annotations

import io
import json
import random
import re
import struct
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console

from emulator.render.console import elide_middle, render_summary
from emulator.render.files import rendered_bytes, saved_bodies
from emulator.render.graph_files import render_dot, render_graphml
from emulator.render.html import render_html
from emulator.render.layout import Box, Layout, build_layout, short_names, wrap
from emulator.render.narrate import narrate, render_markdown
from emulator.render.png import draw_png, encode_png, render_png
from emulator.render.svg import render_svg
from emulator.report import (
    ApiCallRecord,
    FileRecord,
    GraphEdge,
    GraphNode,
    NetRequestRecord,
    NetResponseRecord,
    NetworkRecord,
    Report,
)

SCENARIOS = ("3cx", "winhttp-downloader", "benign-dll")
SVG_NS = "{http://www.w3.org/2000/svg}"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e\u2028]")


@pytest.fixture(scope="module")
def load(scenario_outdir: Callable[[str], Path]) -> Callable[[str], Report]:
    def get(name: str) -> Report:
        return Report.model_validate_json((scenario_outdir(name) / "report.json").read_bytes())

    return get


# ---- the graph ------------------------------------------------------------------------------


def _segments_cross_box(points: tuple[tuple[float, float], ...], box: Box) -> bool:
    """Whether an axis-parallel polyline runs through the inside of ``box`` (its border excluded)."""
    x0, y0, x1, y1 = box.x + 1, box.y + 1, box.x + box.w - 1, box.y + box.h - 1
    for (ax, ay), (bx, by) in zip(points, points[1:], strict=False):
        if ax == bx and x0 < ax < x1 and max(ay, by) > y0 and min(ay, by) < y1:
            return True
        if ay == by and y0 < ay < y1 and max(ax, bx) > x0 and min(ax, bx) < x1:
            return True
    return False


@pytest.mark.parametrize("name", SCENARIOS)
def test_layout_is_legible(name: str, load: Callable[[str], Report]) -> None:
    report = load(name)
    layout = build_layout(report)
    assert layout.title == report.scenario
    nodes = report.graph.nodes
    assert len(layout.boxes) == len(nodes)
    # Stages stand in one row, left to right in execution order.
    stages = sorted((b for b in layout.boxes if b.kind == "stage"), key=lambda b: b.x)
    assert [b.id for b in stages] == [s.id for s in report.stages]
    assert len({b.y for b in stages}) == 1
    _assert_legible(layout)
    # Labels: no escape sequence, and each text line fits inside its box (estimated width).
    for box in layout.boxes:
        assert all("\\u000a" not in line and "\n" not in line for line in box.lines)
    # A legend naming every node kind and edge type drawn.
    legend = {item.label for item in layout.legend}
    assert {b.kind for b in layout.boxes} | {r.type for r in layout.routes} <= legend


def _assert_legible(layout: Layout) -> None:
    """No two boxes overlap; no edge runs through a box it does not join; edges are axis-parallel."""
    for i, a in enumerate(layout.boxes):
        for b in layout.boxes[i + 1 :]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y, (a.id, b.id)
    for route in layout.routes:
        for (ax, ay), (bx, by) in zip(route.points, route.points[1:], strict=False):
            assert ax == bx or ay == by
        for box in layout.boxes:
            if box.id not in (route.source, route.target):
                assert not _segments_cross_box(route.points, box), (route.type, route.source, route.target, box.id)


def _generic_graph_report(base: Report) -> Report:
    """A graph with kinds and edge types no renderer knows, artifact-to-artifact chains, a skipped
    stage, a back edge, an isolated node and one stage touching 60 files."""
    n = GraphNode
    nodes = [n(id=f"s{i}", kind="stage", label=f"stage{i}.bin", stage_kind="shellcode", order=i) for i in range(3)]
    nodes += [
        n(id="process:victim.exe", kind="process", label="victim.exe"),
        n(id="blob:registry-value", kind="blob", label="HKCU\\Software\\x\\payload"),
        n(id="blob:decoded", kind="blob", label="base64 output"),
        n(id="alien:thing", kind="alien", label="a kind nobody drew before"),
        n(id="lonely:one", kind="lonely", label="touches no stage"),
    ]
    nodes += [n(id=f"file:f{i}", kind="file", label=f"C:\\data\\dir{i}\\same.txt") for i in range(60)]
    e = GraphEdge
    edges = [
        e(source="s0", target="s1", type="executes", evidence=[1]),
        e(source="s1", target="s2", type="injects_into", evidence=[2]),
        e(source="s0", target="s2", type="creates_process", evidence=[3]),
        e(source="process:victim.exe", target="s0", type="hosts", evidence=[0]),
        e(source="s0", target="blob:registry-value", type="reads", evidence=[4]),
        e(source="blob:registry-value", target="blob:decoded", type="decodes_to", evidence=[5]),
        e(source="blob:decoded", target="s1", type="decodes_to", evidence=[6]),
        e(source="s2", target="alien:thing", type="teleports", evidence=[7]),
        e(source="s2", target="blob:registry-value", type="writes", evidence=[8]),
        e(source="lonely:one", target="alien:thing", type="whispers", evidence=[9]),
    ]
    edges += [e(source="s1", target=f"file:f{i}", type="reads", evidence=[10 + i]) for i in range(60)]
    return base.model_copy(update={"graph": base.graph.model_copy(update={"nodes": nodes, "edges": edges})})


def test_layout_draws_any_kind(load: Callable[[str], Report]) -> None:
    report = _generic_graph_report(load("benign-dll"))
    layout = build_layout(report)
    _assert_legible(layout)
    shown = {b.id for b in layout.boxes}
    assert {"alien:thing", "lonely:one", "blob:decoded", "process:victim.exe"} <= shown
    # s1's column holds 40 boxes: the first 39 it touched and one "+ N more nodes" box.
    files = sum(1 for b in layout.boxes if b.kind == "file")
    more = next(b for b in layout.boxes if b.kind == "more")
    assert files < 40 and more.lines[0] == f"+ {60 - files} more nodes"
    assert {"teleports", "whispers", "alien", "lonely", "decodes_to"} <= {item.label for item in layout.legend}
    colors = {item.label: item.color for item in layout.legend}
    assert colors["alien"] == colors["lonely"]  # unknown kinds share the default style
    svg = render_svg(layout)
    ET.fromstring(svg.split("\n", 1)[1])
    render_png(layout)
    html = render_html(report)
    assert "teleports" in html


def test_3cx_graph_labels(load: Callable[[str], Report]) -> None:
    layout = build_layout(load("3cx"))
    lines = {line for box in layout.boxes for line in box.lines}
    assert "d3dcompiler_47.dll" in lines  # whole, never cut mid-name
    assert {"Chrome\\\u2026\\History", "Edge\\\u2026\\History", "Brave-Browser\\\u2026\\History"} <= lines
    assert "s0  ffmpeg.dll" in lines and "PE image" in lines
    assert "raw.githubusercontent.com" in lines  # a host stays whole; its path wraps at '/'
    assert any(line.startswith("/IconStorages/") for line in lines)
    assert any(line.endswith("icon14.ico") for line in lines)


def test_svg_tooltips_links_and_evidence(load: Callable[[str], Report]) -> None:
    report = load("3cx")
    svg = render_svg(build_layout(report))
    root = ET.fromstring(svg.split("\n", 1)[1])
    assert root.find(f"{SVG_NS}title") is not None and "3cx" in (root.find(f"{SVG_NS}title").text or "")
    nodes = root.findall(f".//{SVG_NS}g[@class='node']")
    edges = root.findall(f".//{SVG_NS}g[@class='edge']")
    assert len(nodes) == len(report.graph.nodes) and len(edges) == len(report.graph.edges)
    for node in nodes:
        link = node.find(f"{SVG_NS}a")
        assert link is not None and link.get("href", "").startswith("report.html#n")
        assert (link.find(f"{SVG_NS}title").text or "").strip()
    exfil = next(e for e in edges if e.get("data-type") == "exfiltrates_to")
    tip = exfil.find(f"{SVG_NS}title").text or ""
    post = next(n for n in report.network if n.stage == "s3" and n.method == "POST")
    assert f"[{post.seq}]" in tip and "POST" in tip and "phonesystem/api/status" in tip
    s1 = next(n for n in nodes if "s1" in "".join(t.text or "" for t in n.iter(f"{SVG_NS}text")))
    assert "decrypted_in_place" in (s1.find(f"{SVG_NS}a/{SVG_NS}title").text or "")
    assert "\\u000a" not in svg


def test_png_dot_graphml(load: Callable[[str], Report]) -> None:
    report = load("3cx")
    layout = build_layout(report)
    png = render_png(layout)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 1500 and image.height > 500
    assert render_png(layout) == png  # deterministic bytes
    dot = render_dot(report, layout)
    assert dot.startswith('digraph "3cx"') and "rankdir=LR" in dot
    quoted = r'"(?:[^"\\]|\\.)*"'
    assert len(re.findall(rf"^  {quoted} -> {quoted} \[label=", dot, re.M)) == len(report.graph.edges)
    assert '"s2" -> "url:https://pbxcloudeservices.com/phonesystem/api/status" [label="beacons_to"' in dot
    graph = nx.parse_graphml(render_graphml(report))
    assert graph.number_of_nodes() == len(report.graph.nodes)
    post = next(n for n in report.network if n.stage == "s3" and n.method == "POST")
    evidence = [
        data["evidence"]
        for source, target, data in graph.edges(data=True)
        if (source, target) == ("s3", "url:https://pbxcloudeservices.com/phonesystem/api/status")
    ]
    assert f"[{post.seq}]" in evidence


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB rows of a PNG, read by hand: every chunk's CRC checked, the IDAT
    stream inflated and each row's filter undone (types 0 to 4, as the PNG specification says)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride, rows, previous = width * 3, [], bytearray(width * 3)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride if kind else 0):  # type 0: the bytes as they are
            left = row[i - 3] if i >= 3 else 0
            up, corner = previous[i], previous[i - 3] if i >= 3 else 0
            guess = left + up - corner
            paeth = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))[2]
            row[i] = (row[i] + (0, left, up, (left + up) // 2, paeth)[kind]) & 0xFF
        rows.append(bytes(row))
        previous = row
    assert len(raw) == height * (stride + 1)
    return width, height, b"".join(rows)


def test_png_encoder_keeps_every_pixel(load: Callable[[str], Report]) -> None:
    """The PNG is the drawn picture, pixel for pixel: read back by hand and by Pillow, and the same
    pixels as Pillow's own PNG encoder writes; for the 3CX graph, a picture of noise and tiny ones."""
    noise = random.Random(7)
    pictures = [draw_png(build_layout(load("3cx"))), Image.new("RGB", (1, 1), "#123456")]
    for size in ((1, 5), (7, 1), (61, 37)):
        pictures.append(Image.frombytes("RGB", size, bytes(noise.randrange(256) for _ in range(size[0] * size[1] * 3))))
    for picture in pictures:
        data = encode_png(picture)
        assert _png_pixels(data) == (picture.width, picture.height, picture.tobytes())
        with Image.open(io.BytesIO(data)) as decoded:
            assert decoded.mode == "RGB" and decoded.tobytes() == picture.tobytes()
        theirs = io.BytesIO()
        picture.save(theirs, format="PNG")
        with Image.open(theirs) as decoded:
            assert decoded.tobytes() == picture.tobytes()
    assert encode_png(pictures[0]) == render_png(build_layout(load("3cx")))
    with pytest.raises(ValueError, match="RGB"):
        encode_png(Image.new("RGBA", (2, 2)))


def test_the_rendered_files_share_one_layout_timeline_and_graph(
    load: Callable[[str], Report], monkeypatch: pytest.MonkeyPatch
) -> None:
    """rendered_bytes builds the layout, the timeline and the graph's parts once for all its files
    (the SVG, PNG, DOT and the HTML report draw the same layout), and the files are the ones each
    renderer makes alone."""
    import emulator.render.layout as layout_module
    import emulator.render.model as model

    report = load("3cx")
    alone = {
        "stage_graph.svg": render_svg(build_layout(report)).encode(),
        "stage_graph.png": render_png(build_layout(report)),
        "report.html": render_html(report).encode(),
    }
    made: list[str] = []
    for module, name in ((layout_module, "_build_layout"), (model, "_timeline"), (model, "_graph_parts")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _real=real, _name=name: made.append(_name) or _real(*args))
    files = rendered_bytes(report)
    assert sorted(made) == ["_build_layout", "_graph_parts", "_timeline"]
    assert {name: files[name] for name in alone} == alone
    rendered_bytes(report)  # a second call builds them again (nothing kept between calls)
    assert len(made) == 6


def test_replay_writes_every_rendered_file(scenario_outdir: Callable[[str], Path]) -> None:
    out = scenario_outdir("3cx")
    for name in ("report.html", "narration.md", "stage_graph.svg", "stage_graph.png", "stage_graph.dot"):
        assert (out / name).stat().st_size > 1000, name
    report = Report.model_validate_json((out / "report.json").read_bytes())
    assert report.containment.violations == []
    # The files on disk are what the pure renderers make of the report.
    files = rendered_bytes(report, saved_bodies(report, out))
    assert files["stage_graph.svg"] == (out / "stage_graph.svg").read_bytes()
    assert files["report.html"] == (out / "report.html").read_bytes()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789_.-", min_size=1, max_size=40), min_size=1, max_size=12
    ),
    st.sampled_from(["\\", "/"]),
)
def test_wrap_never_cuts_a_name(components: list[str], sep: str) -> None:
    text = sep.join(components)
    lines = wrap(text)
    assert len(lines) <= 4
    if "\u2026" not in lines:
        assert "".join(lines) == text  # nothing lost, nothing added
    for component in components:  # every shown name is whole on one line
        if any(component in line for line in lines):
            continue
        assert "\u2026" in lines  # only names from an elided middle may be missing


def test_short_names_tell_same_named_files_apart() -> None:
    paths = {
        "a": r"C:\Users\x\AppData\Local\Google\Chrome\User Data\Default\History",
        "b": r"C:\Users\x\AppData\Local\Microsoft\Edge\User Data\Default\History",
        "c": r"C:\Users\x\Desktop\History",
        "d": r"C:\Windows\notepad.exe",
    }
    names = short_names(paths)
    assert names == {
        "a": "Chrome\\\u2026\\History",
        "b": "Edge\\\u2026\\History",
        "c": "Desktop\\History",
        "d": "notepad.exe",
    }


# ---- report.html ----------------------------------------------------------------------------

HOSTILE = "C:\\x\\</script><script>alert(1)</script>\x1b[31m\u202eexe.txt\x07<img src=x onerror=alert(2)>"


def _hostile_report(base: Report) -> Report:
    files = [*base.files, FileRecord(seq=9000, stage="s0", op="write", path=HOSTILE, size=3)]
    network = [
        *base.network,
        NetworkRecord(
            seq=9001,
            stage="s0",
            kind="http",
            host="evil\x00host",
            port=80,
            method="GET",
            url="http://evil/\u2028</script>",
            request=NetRequestRecord(headers={"X-<b>": "\x1b]0;title\x07"}, size=0, sha256=None),
            response=NetResponseRecord(status=200, headers={}, size=0, sha256=None),
            responder="static",
            blocked=False,
        ),
    ]
    graph = base.graph.model_copy(
        update={
            "nodes": [*base.graph.nodes, GraphNode(id="file:" + HOSTILE, kind="file", label=HOSTILE)],
            "edges": [
                *base.graph.edges,
                GraphEdge(source="s0", target="file:" + HOSTILE, type="writes", evidence=[9000]),
            ],
        }
    )
    return base.model_copy(update={"files": files, "network": network, "graph": graph})


def test_html_escapes_every_sample_string(load: Callable[[str], Report]) -> None:
    report = _hostile_report(load("winhttp-downloader"))
    html = render_html(report)
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data and the code, nothing else
    assert "<img src=x" not in html and "X-<b>" not in html and "X-&lt;b&gt;" in html
    assert not CONTROL.search(html)
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    assert data is not None
    parsed = json.loads(data.group(1))
    assert any("alert(1)" in e[4] for e in parsed["events"])  # still there, as text
    svg = render_svg(build_layout(report))
    ET.fromstring(svg.split("\n", 1)[1])  # still well-formed XML
    assert not CONTROL.search(svg)
    md = render_markdown(report, narrate(report))
    assert not CONTROL.search(md)


def test_html_offline_and_complete(scenario_outdir: Callable[[str], Path]) -> None:
    html = (scenario_outdir("3cx") / "report.html").read_text(encoding="utf-8")
    # Self-contained: nothing is loaded from anywhere (links a reader may click are fine).
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="?https?:', html)
    assert "@import" not in html and "url(http" not in html and "@font-face" not in html
    for needle in (
        'id="outcome">completed<',
        "raw.githubusercontent.com",  # hosts contacted
        "T1041",  # techniques
        "__tutma=6f1c2d3e",  # the beacon's cookie, in the request headers
        "__tutmc=6f1c2d3e",  # what the beacon carried, in its body
        "network/",  # the saved body's file
        "Chrome\\\u2026\\History",
        "idle",  # the week's sleep cut out of the plot
        'name="tl-kind"',
        "IOCs",
        "pbxcloudeservices.com",
    ):
        assert needle in html, needle


def test_html_for_100k_events_stays_small(load: Callable[[str], Report]) -> None:
    base = load("winhttp-downloader")
    calls = [
        ApiCallRecord(
            seq=100 + i, stage="s1", api="kernel32.WriteFile", args=["0x4", f"0x{i:x}", "0x10", "0x0"], ret="0x1"
        )
        for i in range(100_000)
    ]
    report = base.model_copy(update={"api_calls": [*base.api_calls, *calls]})
    started = time.perf_counter()
    html = render_html(report)
    elapsed = time.perf_counter() - started
    assert len(html) < 15_000_000, len(html)
    assert html.count("<tr") < 2000  # rows are built in the browser, one page at a time
    assert elapsed < 30, elapsed


# ---- narration and terminal -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["3cx", "winhttp-downloader"])
def test_narration_tells_the_chain(
    name: str, load: Callable[[str], Report], scenario_outdir: Callable[[str], Path]
) -> None:
    report = load(name)
    steps = narrate(report, saved_bodies(report, scenario_outdir(name)))
    text = "\n".join(line for step in steps for line in [step.title, *step.lines])
    for stage in report.stages:
        assert f"Stage {stage.id}: {stage.name}" in text
    for exchange in report.network:
        assert exchange.url and exchange.url in text
    if name == "3cx":
        assert "d3dcompiler_47.dll" in text and "decrypted in place" in text
        assert "sleeps 7.3 days" in text
        assert "__tutma=6f1c2d3e-4b5a-4c6d-8e9f-a0b1c2d3e4f5" in text  # what the beacon carried
        assert "what it stole (4,242 bytes)" in text and "WS-FINANCE-07" in text
        assert "Chrome\\User Data\\Default\\History" in text
    else:
        assert "exactly the bytes of network https://cdn.example-updates.net/payload/sc.bin" in text
        assert "demo_dropped.txt" in text

    md = (scenario_outdir(name) / "narration.md").read_text(encoding="utf-8")
    assert md.startswith(f"# {report.scenario}: the chain step by step")


@pytest.mark.parametrize(
    ("name", "process", "how"),
    [
        ("inject-syscalls", r"C:\Windows\System32\notepad.exe", "a new thread there"),
        ("inject-hollowing", r"C:\Windows\System32\svchost.exe", "hollowing"),
    ],
)
def test_narration_tells_what_a_stage_does_to_another_process(
    name: str, process: str, how: str, load: Callable[[str], Report]
) -> None:
    """An injector's steps say the process it started and how it injected code into it (from the
    graph's process edges), and the injected stage says which process it runs in."""
    report = load(name)
    steps = narrate(report)
    loader = "\n".join(line for step in steps if step.stage == "s0" for line in step.lines)
    injected = "\n".join(line for step in steps if step.stage == "s1" for line in step.lines)
    assert f"It starts the process {process}." in loader
    assert f"It injects code into {process} (by {how}" in loader
    assert f"It runs inside another process: {process}." in injected
    assert "another process" not in loader


def _plain(renderable: object, width: int = 160) -> str:
    console = Console(width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_terminal_summary(load: Callable[[str], Report], scenario_outdir: Callable[[str], Path]) -> None:
    report = load("3cx")
    text = _plain(render_summary(report, outdir=scenario_outdir("3cx")))
    assert "None" not in text
    assert f"{len(report.api_calls)} API calls, {len(report.network)} network exchanges" in text
    assert "1 sleep" in text
    assert "d3dcompiler_47.dll" in text and "C:\\...\\" in text
    assert "Chrome\\User Data\\Default\\History" in text  # files listed
    assert "MachineGuid = 6f1c2d3e" in text  # registry listed
    assert f"{len(report.dropped)} dropped file" in text
    assert "T1041" in text and "report.html" in text
    small = _plain(render_summary(load("winhttp-downloader")))
    assert "1 network exchange\n" in small or "1 network exchange " in small
    assert "1 network exchanges" not in small


def test_elide_middle_keeps_both_ends() -> None:
    path = r"C:\Users\analyst\AppData\Local\Programs\3CXDesktopApp\app\d3dcompiler_47.dll"
    short = elide_middle(path, 50)
    assert short.startswith("C:\\...\\") and short.endswith("\\app\\d3dcompiler_47.dll") and len(short) <= 50
    url = "https://pbxcloudeservices.com/a/very/long/path/to/the/payload/stage3.bin"
    assert elide_middle(url, 50).endswith("/stage3.bin") and elide_middle(url, 50).startswith("https://pbx")
    assert elide_middle("short.txt", 50) == "short.txt"


def test_virtual_time_follows_the_clock(load: Callable[[str], Report]) -> None:
    from emulator.render.model import timeline, virtual_times

    report = load("3cx")
    times = virtual_times(report, [row.seq for row in timeline(report)])
    sleep = next(c for c in report.api_calls if c.api == "kernel32.Sleep")
    slept_ms = int(sleep.args[0], 0)
    assert report.virtual_time.skipped_ms == slept_ms
    before = [t for seq, t in sorted(times.items()) if seq <= sleep.seq]
    after = [t for seq, t in sorted(times.items()) if seq > sleep.seq]
    assert before == sorted(before) and after == sorted(after)
    assert max(before) < 1_000_000 <= slept_ms * 1000 <= min(after)
    assert len(set(before)) > 10  # each API call moves the clock


def test_display_text_escapes_exactly_what_the_per_character_rule_escapes() -> None:
    """for_display looks only at the characters that are not printable ASCII (the rest are never
    escaped) and body previews ask each distinct character once whether it is printable: on text mixing
    ASCII, controls, format characters, surrogates, separators and other scripts, both give what
    the per-character definitions give."""
    import random

    from emulator.render.model import clean
    from emulator.render.narrate import BODY_PREVIEW, body_preview
    from emulator.sanitize import MAX_DISPLAY, _escape, for_display

    def display_by_definition(text: str) -> str:
        cleaned = "".join(_escape(c) for c in text)
        return cleaned if len(cleaned) <= MAX_DISPLAY else cleaned[: MAX_DISPLAY - 3] + "..."

    def preview_by_definition(data: bytes) -> str | None:
        text = data[: BODY_PREVIEW * 4].decode("utf-8", "replace")
        if not data or sum(ch.isprintable() or ch in "\r\n\t" for ch in text) < 0.9 * len(text):
            return None
        return clean(" ".join(text.split()), BODY_PREVIEW)

    rnd = random.Random(18)
    odd = [0x0, 0x9, 0xA, 0xD, 0x1B, 0x7F, 0x85, 0x9F, 0xAD, 0x61C, 0x200B, 0x202E, 0x2028, 0xD800, 0xDFFF]
    odd += [0xFEFF, 0xFFF9, 0xE0001, 0x1F600, 0x4E2D, 0xE9]
    for _ in range(3000):
        size = rnd.randrange(0, 400)
        text = "".join(chr(rnd.choice(odd)) if rnd.random() < 0.2 else chr(rnd.randrange(32, 127)) for _ in range(size))
        assert for_display(text) == display_by_definition(text), ascii(text)
        data = text.encode("utf-8", "surrogatepass")
        assert body_preview(data) == preview_by_definition(data), data
    for _ in range(200):  # many distinct unprintable characters (counted in one pass), mostly text
        text = "".join(chr(rnd.randrange(0xE0000, 0xF0000)) if rnd.random() < 0.08 else "a" for _ in range(600))
        data = text.encode("utf-8")
        assert body_preview(data) == preview_by_definition(data), data


@pytest.mark.parametrize(
    ("name", "stage", "what", "needles"),
    [
        ("patch-amsi-etw", "s0", "module_code_patched", ["amsi.dll!AmsiScanBuffer", "ntdll.dll!EtwEventWrite"]),
        ("indirect-syscalls", "s0", "indirect_system_call", ["NtAllocateVirtualMemory", "NtDelayExecution stub"]),
        ("sideload-version", "s1", "dll_search_hijack", ["search-order hijacking", "bare name version.dll"]),
    ],
)
def test_narration_and_html_tell_what_the_notes_say(
    name: str, stage: str, what: str, needles: list[str], scenario_outdir: Callable[[str], Path]
) -> None:
    """A patched AMSI / ETW function, indirect system calls, a DLL search-order hijack: what the
    report's notes say a stage did is a step of that stage in the narration (one step per kind,
    each note's detail under it) and a row of report.html's Notes table; neither said it."""
    out = scenario_outdir(name)
    report = Report.model_validate_json((out / "report.json").read_bytes())
    notes = [n for n in report.notes if n.what == what]
    assert notes and {n.stage for n in notes} == {stage}
    steps = [s for s in narrate(report) if s.stage == stage and not s.title.startswith("Stage ")]
    told = [s for s in steps if all(needle in "\n".join(s.lines) for needle in needles)]
    assert len(told) == 1, [s.lines for s in steps]
    assert all(n.detail[:60] in "\n".join(told[0].lines) for n in notes)
    md = (out / "narration.md").read_text(encoding="utf-8")
    section = md.split(f"## Stage {stage}:", 1)[1].split("\n## ", 1)[0]
    assert all(needle in section for needle in needles)
    html = (out / "report.html").read_text(encoding="utf-8")
    table = html.split('<section id="notes">', 1)[1].split("</section>", 1)[0]
    assert table.count("<tr>") == len(report.notes) + 1 and all(needle in table for needle in needles[1:])
