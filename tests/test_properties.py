"""Property tests (Hypothesis): request handling, the scenario loader, URL parsing, trailer parsing.

The generated text includes NUL bytes and path components over 255 bytes, and responder
sections may carry ``options``/``class`` of any type: each is a one-line ScenarioError or a 404,
never an exception of another kind.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from emulator.analysis.lineage import Carrier, trace, usable_probe
from emulator.analysis.stages import _trailer_starts
from emulator.recorder import Recorder
from emulator.responders.base import HttpRequest, HttpResponse
from emulator.responders.c2 import C2Responder
from emulator.responders.github import GithubResponder
from emulator.responders.router import NetworkRouter
from emulator.responders.static import StaticResponder
from emulator.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "tests" / "bins" / "hello.dll"
MAKE_DATA = REPO / "scenarios" / "3cx" / "tools" / "make_data.py"

PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any text TOML can hold (no lone surrogates), including NUL and path components over 255 bytes.
safe_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60) | st.sampled_from(
    ["x" * 300, "a\0b", "\0", "\u202ecod.exe"]
)
methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get", ""]) | safe_text
path_parts = (
    st.sampled_from(
        [
            "IconStorages",
            "images",
            "main",
            "icon1.ico",
            "..",
            ".",
            "",
            "%2e%2e",
            "cdn",
            "stage3.bin",
            "?",
            "#",
            "%",
            "\\",
            "~",
        ]
    )
    | safe_text
)
paths = st.lists(path_parts, max_size=8).map(lambda parts: "/" + "/".join(parts))
header_names = st.sampled_from(["Cookie", "cookie", "X-Bot", "Content-Length", "Host"]) | safe_text
header_values = st.sampled_from(["__tutma=v1", "__tutma=", "a=b; __tutma=v2", "=;=;", "\r\n"]) | safe_text
headers = st.dictionaries(header_names, header_values, max_size=5)
bodies = st.binary(max_size=300) | st.sampled_from([b"id=v1", b"\xff" * 10, b""])


@pytest.fixture(scope="module")
def scenario_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        icons = root / "github" / "IconStorages" / "images" / "main"
        icons.mkdir(parents=True)
        (icons / "icon1.ico").write_bytes(b"\0\0\1\0$QUJD")
        (root / "stage3.bin").write_bytes(b"STAGE3")
        yield root


def _c2(folder: Path) -> C2Responder:
    return C2Responder(
        "c2",
        {
            "hosts": ["*"],
            "victim_id": {"cookie": "__tutma"},
            "routes": [
                {"method": "POST", "states": ["staged"], "action": "collect", "next_state": "collected"},
                {"method": "POST", "states": ["unknown", "beaconed"], "action": "register", "next_state": "beaconed"},
                {
                    "method": "GET",
                    "path": "/cdn/*",
                    "states": ["beaconed"],
                    "action": "serve",
                    "next_state": "staged",
                    "response": {"body_file": "stage3.bin"},
                },
            ],
        },
        folder,
    )


def _check(response: object) -> None:
    assert isinstance(response, HttpResponse)
    assert isinstance(response.status, int) and 100 <= response.status < 600
    assert isinstance(response.body, bytes)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in response.headers.items())


# ---- responders ---------------------------------------------------------------------------------------


@PROPS
@given(requests=st.lists(st.tuples(methods, paths, headers, bodies), min_size=1, max_size=6))
def test_c2_never_raises(scenario_dir: Path, requests: list[tuple[str, str, dict[str, str], bytes]]) -> None:
    c2 = _c2(scenario_dir)
    for method, path, hdrs, body in requests:
        _check(c2.respond(HttpRequest(method, "https", "c2.test", 443, path, hdrs, body)))
    summary = c2.state_summary()
    json.dumps(summary)
    assert summary["requests"] == len(requests)
    assert sum(v["requests"] for v in summary["victims"].values()) <= len(requests)


@PROPS
@given(method=methods, path=paths, hdrs=headers, body=bodies)
def test_github_never_raises(scenario_dir: Path, method: str, path: str, hdrs: dict[str, str], body: bytes) -> None:
    github = GithubResponder("github", {"root": "github"}, scenario_dir)
    response = github.respond(HttpRequest(method, "https", "raw.githubusercontent.com", 443, path, hdrs, body))
    _check(response)
    if response.status == 200:
        assert response.body in (b"\0\0\1\0$QUJD", b"")


@PROPS
@given(
    method=st.text(max_size=20),
    path=st.text(max_size=600),
    hdrs=st.dictionaries(st.text(), st.text(), max_size=4),
    body=st.binary(max_size=200),
    host=st.text(max_size=40),
)
def test_router_never_raises_on_any_request(
    scenario_dir: Path, method: str, path: str, hdrs: dict[str, str], body: bytes, host: str
) -> None:
    """Through the router anything goes (NULs, long names): a responder failure is a recorded 500."""
    static = StaticResponder("static", {"hosts": ["static.test"], "paths": ["/x*"]}, scenario_dir)
    responders = [
        GithubResponder("github", {"root": "github", "hosts": ["*"]}, scenario_dir),
        _c2(scenario_dir),
        static,
    ]
    for responder_host in ("static.test", "raw.githubusercontent.com", host):
        recorder = Recorder()
        router = NetworkRouter(responders, recorder, "404")
        response = router.http(HttpRequest(method, "http", responder_host, 80, path, hdrs, body))
        assert response is not None
        _check(response)
        assert len(recorder.events) == 1


# ---- the scenario loader --------------------------------------------------------------------------------

SECTION_KEYS = {
    "scenario": ["name", "description", "seed", "start_time", "host_process"],
    "target": ["path", "emu_path", "kind", "arch", "run_entry_point", "exports"],
    "environment": ["hostname", "domain", "user", "os_version", "variables", "sandbox_marker"],
    "network": ["default"],
    "limits": ["timeout", "max_instructions", "max_api_calls", "max_allocation", "max_stages"],
    "expect": ["stage_kinds"],
}
RESPONDER_KEYS = [
    "name",
    "hosts",
    "root",
    "paths",
    "methods",
    "response",
    "victim_id",
    "routes",
    "unmatched",
    "status",
    "body",
    "body_file",
    "cookie",
    "header",
    "states",
    "action",
    "next_state",
    "options",
    "class",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        [
            "hello.dll",
            "x64",
            "x86",
            "pe",
            "shellcode",
            "404",
            "nxdomain",
            "C:\\x.dll",
            "../hello.dll",
            "/etc/passwd",
            "",
            "github",
            "*",
        ]
    )
    | safe_text
)


def _values(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(keys) | safe_text, inner, max_size=3)
        ),
        max_leaves=8,
    )


def _section(name: str) -> st.SearchStrategy[Any]:
    keys = SECTION_KEYS[name]
    return st.dictionaries(st.sampled_from(keys) | safe_text, _values(keys), max_size=6) | scalars


responder = st.fixed_dictionaries(
    {"type": st.sampled_from(["github", "c2", "static", "ftp", ""])},
    optional={k: _values(RESPONDER_KEYS) for k in RESPONDER_KEYS},
)
scenario_docs = st.fixed_dictionaries(
    {},
    optional={
        **{name: _section(name) for name in SECTION_KEYS},
        "files": st.lists(
            st.dictionaries(st.sampled_from(["emu_path", "path"]) | safe_text, scalars, max_size=3), max_size=3
        ),
        "registry": st.lists(_values(["key", "values", "name", "type", "data"]), max_size=2),
        "responders": st.lists(responder, max_size=3) | scalars,
    },
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items() if v is not None
            )
            + "}"
        )
    return '""'


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for key, value in doc.items():
        if value is not None:
            lines.append(f"{json.dumps(key, ensure_ascii=False)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _fresh_folder(base: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=base))
    shutil.copy(HELLO, folder / "hello.dll")
    digest = hashlib.sha256(HELLO.read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  hello.dll\n", encoding="utf-8")
    return folder


def _load_only_scenario_errors(folder: Path) -> None:
    for verify in (True, False):
        try:
            plan = load_scenario(folder, verify=verify)
        except ScenarioError as err:
            message = str(err)
            assert "\n" not in message.strip() or "TOML" in message
            assert str(folder) in message or "hello.dll" in message or "SHA256SUMS" in message
        else:
            assert Path(plan.target_path).is_file()


@PROPS
@given(doc=scenario_docs)
def test_scenario_loader_raises_only_scenario_error(tmp_path: Path, doc: dict[str, Any]) -> None:
    folder = _fresh_folder(tmp_path)
    (folder / "scenario.toml").write_text(to_toml(doc), encoding="utf-8")
    _load_only_scenario_errors(folder)


@PROPS
@given(
    name=safe_text,
    path=st.sampled_from(["hello.dll", "nope.dll", "./hello.dll", "../x"]) | safe_text,
    extra=scenario_docs,
)
def test_nearly_valid_scenarios(tmp_path: Path, name: str, path: str, extra: dict[str, Any]) -> None:
    doc = {"scenario": {"name": name}, "target": {"path": path, "emu_path": "C:\\x\\hello.dll"}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    folder = _fresh_folder(tmp_path)
    (folder / "scenario.toml").write_text(to_toml(doc), encoding="utf-8")
    _load_only_scenario_errors(folder)


@PROPS
@given(raw=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_scenario_loader_on_garbage_bytes(tmp_path: Path, raw: bytes) -> None:
    folder = _fresh_folder(tmp_path)
    (folder / "scenario.toml").write_bytes(raw)
    _load_only_scenario_errors(folder)


# ---- HttpRequest.from_url ----------------------------------------------------------------------------------


urls = st.text(max_size=120) | st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
    st.text(max_size=30) | st.sampled_from(["a.test", "[::1]", "1.2.3.4", "user:pw@h.test", "h.test."]),
    st.sampled_from(["", ":80", ":443", ":0", ":65535", ":65536", ":-1", ":x", ":"]),
    st.text(max_size=40),
)


@PROPS
@given(method=st.text(max_size=10), url=urls)
def test_from_url_on_random_urls(method: str, url: str) -> None:
    try:
        request = HttpRequest.from_url(method, url)
    except ValueError:
        return  # urlsplit refuses some inputs (bad port, bad IPv6 literal): that is a clean refusal
    assert request.method == method.upper()
    assert request.path.startswith("/") or request.path.startswith("?") or request.path == "/" or request.path
    assert isinstance(request.port, int) and 0 <= request.port <= 65535
    assert request.host == request.host.lower()
    assert isinstance(request.url, str)


@PROPS
@given(
    host=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True),
    port=st.integers(1, 65535),
    path=st.from_regex(r"(/[A-Za-z0-9._~-]{0,10}){0,4}", fullmatch=True),
)
def test_from_url_round_trip(host: str, port: int, path: str) -> None:
    request = HttpRequest.from_url("GET", f"https://{host}:{port}{path}")
    assert (request.host, request.port, request.path) == (host, port, path or "/")
    again = HttpRequest.from_url("GET", request.url)
    assert (again.host, again.port, again.path) == (request.host, request.port, request.path)


# ---- icon trailer parsing -------------------------------------------------------------------------------------


def _make_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chainreplay_3cx_make_data", MAKE_DATA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_data = _make_data()


@PROPS
@given(
    data=st.binary(max_size=400)
    | st.builds(lambda a, b: a + b"IEND" + bytes(4) + b"$" + b, st.binary(max_size=50), st.binary(max_size=200))
)
def test_icon_to_url_on_random_bytes(data: bytes) -> None:
    from cryptography.exceptions import InvalidTag

    try:
        url = make_data.icon_to_url(data)
    except (ValueError, InvalidTag):
        return
    assert isinstance(url, str)


@PROPS
@given(url=st.from_regex(r"https://[a-z]{1,20}\.[a-z]{2,5}/[ -~]{0,60}", fullmatch=True))
def test_icon_round_trip(url: str) -> None:
    png = make_data.make_png((1, 2, 3, 255), 8)
    ico = make_data.make_ico(png, make_data.icon_trailer(url), 8)
    assert make_data.icon_to_url(ico) == url


@PROPS
@given(data=st.binary(max_size=500))
def test_trailer_starts(data: bytes) -> None:
    starts = _trailer_starts(data)
    assert len(starts) <= 8
    assert starts == sorted(set(starts))
    assert all(data[i - 1 : i] == b"$" for i in starts)
    assert len(starts) == min(8, data.count(b"$"))


@PROPS
@given(sources=st.lists(st.binary(max_size=300), max_size=5), probe=st.binary(max_size=64))
def test_lineage_trace_on_random_bytes(sources: list[bytes], probe: bytes) -> None:
    """On any bytes, tracing ends (no exception) and an origin it names holds the bytes."""
    pool = [Carrier(data, "network", f"http://h.test/{i}", i, "s0") for i, data in enumerate(sources)]
    hops = trace(probe, 100, pool)
    if hops is not None:
        assert usable_probe(probe)
        assert hops[0].source_ref in {c.ref for c in pool}


@PROPS
@given(prefix=st.binary(max_size=100), payload=st.binary(min_size=24, max_size=64), suffix=st.binary(max_size=20))
def test_lineage_finds_a_base64_trailer(prefix: bytes, payload: bytes, suffix: bytes) -> None:
    """Bytes carried base64-encoded after a '$' in an earlier body are traced to that body."""
    assume(usable_probe(payload) and payload[:48] not in prefix + suffix)
    body = prefix.replace(b"$", b"") + b"$" + base64.b64encode(payload) + b"\0" + suffix
    decoy = Carrier(b"unrelated", "file", "C:\\decoy", 1, "s0")
    hops = trace(payload, 100, [Carrier(body, "network", "http://h.test/i", 0, "s0"), decoy])
    assert hops is not None and hops[0].source_ref == "http://h.test/i"
    assert "base64" in [h.transform for h in hops]
