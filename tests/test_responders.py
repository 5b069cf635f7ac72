"""Unit tests of the synthetic internet: responders and the router, with HttpRequest objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from emulator.events import NetworkExchange
from emulator.recorder import Recorder
from emulator.responders.base import HttpRequest, HttpResponse, Responder
from emulator.responders.c2 import C2Responder
from emulator.responders.github import GithubResponder
from emulator.responders.router import NetworkLimitReached, NetworkRouter, ResponderLoadError, build_responder
from emulator.responders.static import StaticResponder

# ---- user responders, loaded by dotted path (f"{__name__}:Echo") ----------------------------------


class Echo(Responder):
    """Echoes the request body; counts requests (per-instance state)."""

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        super().__init__(name, options, scenario_dir)
        self.count = 0

    def handles_host(self, host: str) -> bool:
        return host == self.options.get("host", "echo.test")

    def respond(self, request: HttpRequest) -> HttpResponse:
        self.count += 1
        return HttpResponse(200, {"Content-Type": "text/plain", "X-Count": str(self.count)}, request.body)

    def state_summary(self) -> dict[str, Any]:
        return {"count": self.count}


class Raiser(Responder):
    def handles_host(self, host: str) -> bool:
        return host == "boom.test"

    def respond(self, request: HttpRequest) -> HttpResponse:
        raise RuntimeError("responder bug")


class WrongType(Responder):
    def handles_host(self, host: str) -> bool:
        return True

    def respond(self, request: HttpRequest) -> HttpResponse:
        return "not a response"  # type: ignore[return-value]


class Canned(Responder):
    """Answers every host with the response given in options["response"] (hostile answers)."""

    def handles_host(self, host: str) -> bool:
        return True

    def respond(self, request: HttpRequest) -> HttpResponse:
        return self.options["response"]  # type: ignore[no-any-return]


class Dialogue(Responder):
    """A raw TCP server that answers each client message with its turn number and the message."""

    def handles_host(self, host: str) -> bool:
        return host == "raw.test"

    def stream(self, host: str, port: int, sent: bytes, turn: int) -> bytes | None:
        if turn == 0 and sent == b"boom":
            raise RuntimeError("stream bug")
        return b"%d:" % turn + sent if turn < 2 else None


NotAResponder = dict


def get(url: str, **headers: str) -> HttpRequest:
    return HttpRequest.from_url("GET", url, headers)


def post(url: str, body: bytes = b"", **headers: str) -> HttpRequest:
    return HttpRequest.from_url("POST", url, headers, body)


def exchanges(recorder: Recorder) -> list[NetworkExchange]:
    return [e for e in recorder.events if isinstance(e, NetworkExchange)]


# ---- HttpRequest ------------------------------------------------------------------------------


def test_request_from_url() -> None:
    req = HttpRequest.from_url("get", "HTTPS://Raw.GitHubUserContent.com/a/b/c/d.ico?x=1#frag")
    assert (req.method, req.scheme, req.host, req.port, req.path) == (
        "GET",
        "https",
        "raw.githubusercontent.com",
        443,
        "/a/b/c/d.ico?x=1",
    )
    assert req.url == "https://raw.githubusercontent.com/a/b/c/d.ico?x=1"
    assert HttpRequest.from_url("GET", "http://h.test:8080").url == "http://h.test:8080/"
    assert HttpRequest.from_url("GET", "h.test/x").scheme == "http"


def test_request_headers_and_cookies() -> None:
    req = get("http://h.test/", Cookie="a=1; __tutma=victim-42 ;junk; b = 2", **{"X-Id": "7"})
    assert req.header("x-id") == "7" and req.header("missing") is None
    assert req.cookies() == {"a": "1", "__tutma": "victim-42", "b": "2"}


# ---- github -----------------------------------------------------------------------------------------


@pytest.fixture
def github(tmp_path: Path) -> GithubResponder:
    folder = tmp_path / "github" / "IconStorages" / "images" / "main"
    folder.mkdir(parents=True)
    (folder / "icon1.ico").write_bytes(b"\0\0\1\0ICON$trailer")
    (folder / "readme.txt").write_text("hello", encoding="utf-8")
    return GithubResponder("github", {"root": "github"}, tmp_path)


def test_github_serves_a_file(github: GithubResponder) -> None:
    req = get("https://raw.githubusercontent.com/IconStorages/images/main/icon1.ico")
    assert github.handles(req)
    response = github.respond(req)
    assert response.status == 200
    assert response.body == b"\0\0\1\0ICON$trailer"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Content-Type"] == "application/octet-stream"
    text = github.respond(get("https://raw.githubusercontent.com/IconStorages/images/main/readme.txt"))
    assert text.status == 200 and text.headers["Content-Type"].startswith("text/")


def test_github_query_and_encoding(github: GithubResponder) -> None:
    assert (
        github.respond(get("https://raw.githubusercontent.com/IconStorages/images/main/icon1.ico?raw=1")).status == 200
    )
    assert github.respond(get("https://raw.githubusercontent.com/IconStorages/images/main/icon%31.ico")).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/IconStorages/images/main/icon99.ico",  # missing file
        "/IconStorages/images/main",  # a folder
        "/IconStorages/images/main/",
        "/IconStorages/images",  # too short for owner/repo/branch/path
        "/",
        "",
    ],
)
def test_github_404s_what_is_missing(github: GithubResponder, path: str) -> None:
    response = github.respond(HttpRequest("GET", "https", "raw.githubusercontent.com", 443, path))
    assert response.status == 404
    assert response.body == b"404: Not Found"


def test_github_methods_and_hosts(github: GithubResponder) -> None:
    url = "https://raw.githubusercontent.com/IconStorages/images/main/icon1.ico"
    assert github.respond(post(url, b"x")).status == 405
    head = github.respond(HttpRequest.from_url("HEAD", url))
    assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == "16"
    assert github.handles_host("RAW.githubusercontent.com.")
    assert not github.handles_host("github.com")
    assert not github.handles_host("raw.githubusercontent.com.evil.test")


def test_github_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        GithubResponder("g", {}, tmp_path)
    with pytest.raises(ValidationError):
        GithubResponder("g", {"root": "x", "bogus": 1}, tmp_path)


# ---- static -------------------------------------------------------------------------------------


def test_static_matches_host_path_and_method(tmp_path: Path) -> None:
    static = StaticResponder(
        "s",
        {
            "hosts": ["*.update.test", "exact.test"],
            "paths": ["/api/*"],
            "methods": ["post"],
            "response": {"status": 201, "headers": {"X-A": "b"}, "body": "créé"},
        },
        tmp_path,
    )
    ok = post("http://cdn.update.test/api/v1", b"x")
    assert static.handles(ok)
    response = static.respond(ok)
    assert response.status == 201
    assert response.body == "créé".encode()
    assert response.headers == {"X-A": "b", "Content-Length": str(len("créé".encode()))}
    assert static.handles(post("http://EXACT.test/api/"))
    assert not static.handles(get("http://cdn.update.test/api/v1"))  # method
    assert not static.handles(post("http://cdn.update.test/other"))  # path
    assert not static.handles(post("http://update.test.evil/api/v1"))  # host
    assert not static.handles(post("http://update.test/api/v1"))  # *.update.test needs a label


def test_static_body_file_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "payload.bin").write_bytes(b"\x90\x90\xc3")
    static = StaticResponder("s", {"hosts": ["*"], "response": {"body_file": "payload.bin"}}, tmp_path)
    response = static.respond(get("http://anything.test/whatever"))
    assert (response.status, response.body) == (200, b"\x90\x90\xc3")
    assert static.handles(HttpRequest.from_url("DELETE", "http://x.test/y"))


@pytest.mark.parametrize(
    "options",
    [
        {"hosts": ["x"], "response": {"body": "a", "body_file": "b"}},
        {"hosts": ["x"], "response": {"status": 42}},
        {"hosts": ["x"], "response": {"status": 600}},
        {"hosts": ["x"], "response": {"body_file": "../../../../etc/hostname"}},
        {"hosts": ["x"], "response": {"body_file": "missing.bin"}},
        {"response": {}},
        {"hosts": "x", "extra": 1},
    ],
)
def test_static_rejects_bad_options(options: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises((ValueError, OSError)):
        StaticResponder("s", options, tmp_path)


# ---- c2 -----------------------------------------------------------------------------------------


def c2_options(**victim_id: str) -> dict[str, Any]:
    return {
        "hosts": ["*.c2.test"],
        "victim_id": victim_id or {"cookie": "__tutma"},
        "routes": [
            {
                "method": "POST",
                "states": ["staged", "collected"],
                "action": "collect",
                "next_state": "collected",
                "response": {"status": 200, "body": "OK"},
            },
            {
                "method": "POST",
                "states": ["unknown", "beaconed"],
                "action": "register",
                "next_state": "beaconed",
                "response": {"status": 200, "body": "/cdn/stage3.bin"},
            },
            {
                "method": "GET",
                "path": "/cdn/stage3.bin",
                "states": ["beaconed"],
                "action": "serve",
                "next_state": "staged",
                "response": {"status": 200, "body_file": "stage3.bin"},
            },
        ],
    }


@pytest.fixture
def c2(tmp_path: Path) -> C2Responder:
    (tmp_path / "stage3.bin").write_bytes(b"STAGE3")
    return C2Responder("c2", c2_options(), tmp_path)


def test_c2_payload_only_after_beacon(c2: C2Responder) -> None:
    payload = "https://a.c2.test/cdn/stage3.bin"
    early = c2.respond(get(payload, Cookie="__tutma=v1"))
    assert early.status == 404 and early.body == b"Not Found"
    assert c2.victims == {}  # a GET does not register anybody
    assert c2.requests[-1]["action"] == "unmatched"

    beacon = c2.respond(post("https://a.c2.test/beacon", b"hi", Cookie="__tutma=v1"))
    assert (beacon.status, beacon.body) == (200, b"/cdn/stage3.bin")
    assert c2.victims["v1"].state == "beaconed"

    served = c2.respond(get(payload, Cookie="__tutma=v1"))
    assert (served.status, served.body) == (200, b"STAGE3")
    assert c2.victims["v1"].state == "staged"
    again = c2.respond(get(payload, Cookie="__tutma=v1"))
    assert again.status == 404  # served once: the victim moved on

    upload = c2.respond(post("https://a.c2.test/beacon", b"stolen data", Cookie="__tutma=v1"))
    assert (upload.status, upload.body) == (200, b"OK")
    assert c2.victims["v1"].state == "collected"
    assert c2.victims["v1"].collected == [b"stolen data"]


def test_c2_keeps_per_victim_history_and_state(c2: C2Responder) -> None:
    c2.respond(post("https://a.c2.test/b", b"1", Cookie="__tutma=alice"))
    c2.respond(post("https://a.c2.test/b", b"2", Cookie="__tutma=bob"))
    c2.respond(get("https://a.c2.test/cdn/stage3.bin", Cookie="__tutma=alice"))
    c2.respond(get("https://a.c2.test/cdn/stage3.bin"))  # no cookie: anonymous
    assert c2.victims["alice"].state == "staged"
    assert c2.victims["bob"].state == "beaconed"
    assert [h["action"] for h in c2.victims["alice"].history] == ["register", "serve"]
    assert [h["action"] for h in c2.victims["bob"].history] == ["register"]
    assert len(c2.requests) == 4 and c2.requests[-1]["victim"] is None
    summary = c2.state_summary()
    assert summary == {
        "victims": {
            "alice": {"state": "staged", "requests": 2, "collected_bytes": 0},
            "bob": {"state": "beaconed", "requests": 1, "collected_bytes": 0},
        },
        "requests": 4,
    }


def test_c2_beacon_without_victim_id_is_unmatched(c2: C2Responder) -> None:
    response = c2.respond(post("https://a.c2.test/b", b"x", Cookie="other=1"))
    assert response.status == 404
    assert c2.victims == {}


def test_c2_victim_id_from_header_and_body(tmp_path: Path) -> None:
    (tmp_path / "stage3.bin").write_bytes(b"S")
    by_header = C2Responder("c2", c2_options(header="X-Bot"), tmp_path)
    by_header.respond(post("http://a.c2.test/", b"", **{"x-bot": "h1"}))
    assert list(by_header.victims) == ["h1"]
    by_body = C2Responder("c2", c2_options(body_regex=r"id=(\w+)"), tmp_path)
    by_body.respond(post("http://a.c2.test/", b"os=win&id=b7&x=\xff"))
    assert list(by_body.victims) == ["b7"]
    no_group = C2Responder("c2", c2_options(body_regex=r"id=\w+"), tmp_path)
    assert no_group.respond(post("http://a.c2.test/", b"id=z")).status == 404


@pytest.mark.parametrize(
    "victim_id",
    [
        {},
        {"cookie": "a", "header": "b"},
        {"cookie": "a", "extra": 1},
        {"body_regex": "("},
    ],
)
def test_c2_rejects_bad_victim_id(victim_id: dict[str, str], tmp_path: Path) -> None:
    options = c2_options()
    options["victim_id"] = victim_id
    with pytest.raises(ValueError):
        C2Responder("c2", options, tmp_path)


def test_c2_needs_routes_and_victim_id(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        C2Responder("c2", {"hosts": ["x"], "routes": [{}]}, tmp_path)
    with pytest.raises(ValidationError):
        C2Responder("c2", {"hosts": ["x"], "victim_id": {"cookie": "a"}, "routes": []}, tmp_path)


# ---- build_responder ------------------------------------------------------------------------------


def test_user_responder_by_dotted_path(tmp_path: Path) -> None:
    responder = build_responder("python", "echo", {"host": "echo.test"}, tmp_path, f"{__name__}:Echo")
    assert isinstance(responder, Echo) and responder.name == "echo"
    dotted = build_responder("python", "echo2", {}, tmp_path, f"{__name__}.Echo")
    assert isinstance(dotted, Echo)
    router = NetworkRouter([responder], Recorder())
    response = router.http(post("http://echo.test/x", b"ping"))
    assert response is not None and (response.status, response.body) == (200, b"ping")
    assert router.http(post("http://echo.test/x", b"pong")).headers["X-Count"] == "2"  # type: ignore[union-attr]
    assert responder.state_summary() == {"count": 2}


@pytest.mark.parametrize(
    ("kind", "class_path", "needle"),
    [
        ("python", None, "needs 'class'"),
        ("python", "no_such_module_xyz:Thing", "cannot import"),
        ("python", f"{__name__}:Missing", "cannot import"),
        ("python", f"{__name__}:NotAResponder", "not a subclass"),
        ("python", "Echo", "cannot import"),
        ("python", ":", "cannot import"),
        ("smtp", None, "unknown responder type 'smtp'"),
    ],
)
def test_build_responder_errors(kind: str, class_path: str | None, needle: str, tmp_path: Path) -> None:
    with pytest.raises(ResponderLoadError, match=needle):
        build_responder(kind, "x", {}, tmp_path, class_path)


# ---- the router ---------------------------------------------------------------------------------


def test_raising_responder_gives_500_and_recorded_error(tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([build_responder("python", "boom", {}, tmp_path, f"{__name__}:Raiser")], recorder)
    response = router.http(get("http://boom.test/x"))
    assert response is not None and response.status == 500
    [exchange] = exchanges(recorder)
    assert exchange.error == "RuntimeError: responder bug"
    assert exchange.responder == "boom" and exchange.response.status == 500 and not exchange.blocked


def test_wrong_return_type_gives_500(tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([WrongType("w", {}, tmp_path)], recorder)
    response = router.http(get("http://any.test/"))
    assert response is not None and response.status == 500
    assert exchanges(recorder)[0].error == "BadResponse: respond() returned str, not HttpResponse"


def test_first_matching_responder_wins(tmp_path: Path) -> None:
    echo = Echo("echo", {"host": "h.test"}, tmp_path)
    static = StaticResponder("static", {"hosts": ["*"], "response": {"body": "static"}}, tmp_path)
    recorder = Recorder()
    router = NetworkRouter([echo, static], recorder)
    assert router.http(post("http://h.test/", b"e")).body == b"e"  # type: ignore[union-attr]
    assert router.http(post("http://other.test/", b"e")).body == b"static"  # type: ignore[union-attr]
    assert [e.responder for e in exchanges(recorder)] == ["echo", "static"]


@pytest.mark.parametrize("policy", ["nxdomain", "refused", "404"])
def test_default_policy_for_unmatched_hosts(policy: str, tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([Echo("echo", {}, tmp_path)], recorder, policy)  # type: ignore[arg-type]
    address = router.resolve("unknown.test")
    response = router.http(get("http://unknown.test/x"))
    if policy == "nxdomain":
        assert address is None
    else:
        assert address is not None and address.startswith("203.0.113.")
        assert router.host_of_address(address) == "unknown.test"
    assert router.accepts_connection("unknown.test") == (policy == "404")
    if policy == "404":
        assert response is not None and response.status == 404
    else:
        assert response is None
    dns, http = exchanges(recorder)
    assert dns.kind == "dns" and dns.blocked and dns.responder == "default"
    assert http.kind == "http" and http.blocked and http.responder == "default"
    # a served host resolves to a stable synthetic address and is not blocked
    served = router.resolve("echo.test")
    assert served == router.resolve("ECHO.test.") and served is not None
    assert not exchanges(recorder)[-1].blocked


def test_ip_literals_resolve_to_themselves(tmp_path: Path) -> None:
    router = NetworkRouter([], Recorder())
    assert router.resolve("10.1.2.3") == "10.1.2.3"
    assert router.resolve("::1") == "::1"


def test_exchange_limit(tmp_path: Path) -> None:
    router = NetworkRouter([Echo("echo", {}, tmp_path)], Recorder(), max_exchanges=3)
    for _ in range(3):
        router.http(get("http://echo.test/"))
    with pytest.raises(NetworkLimitReached):
        router.http(get("http://echo.test/"))


def test_oversized_body_is_truncated_and_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import emulator.responders.router as router_module

    monkeypatch.setattr(router_module, "MAX_RESPONSE_BODY", 16)
    recorder = Recorder()
    router = NetworkRouter([Canned("c", {"response": HttpResponse(200, {}, b"x" * 100)}, tmp_path)], recorder)
    response = router.http(get("http://a.test/"))
    assert response is not None and response.body == b"x" * 16
    assert any(getattr(e, "what", None) == "response_truncated" for e in recorder.events)


HOSTILE = [
    ("huge_content_length", HttpResponse(200, {"Content-Length": "2147483648"}, b"small")),
    ("negative_content_length", HttpResponse(200, {"Content-Length": "-1"}, b"small")),
    ("non_utf8_body", HttpResponse(200, {"Content-Type": "text/html; charset=utf-8"}, b"\xff\xfe\xc3\x28\x00")),
    ("latin1_header", HttpResponse(200, {"X-Name": "caf\u00e9"}, b"")),
    ("empty", HttpResponse(204, {}, b"")),
    ("many_headers", HttpResponse(200, {f"X-{i}": "v" * 100 for i in range(2000)}, b"")),
]


@pytest.mark.parametrize(("label", "answer"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_answers_do_not_crash_the_router(label: str, answer: HttpResponse, tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([Canned("c", {"response": answer}, tmp_path)], recorder)
    response = router.http(post("http://a.test/x", b"\xff\x00"))
    assert response is not None and response.status == answer.status
    [exchange] = exchanges(recorder)
    assert exchange.response.size == len(answer.body)
    assert exchange.request.body_size == 2
    exchange.model_dump_json()  # the recorded exchange serialises


BADLY_TYPED = [
    ("str_body", HttpResponse(200, {}, "text")),  # type: ignore[arg-type]
    ("int_header_value", HttpResponse(200, {"Content-Length": 5}, b"x")),  # type: ignore[dict-item]
    ("none_headers", HttpResponse(200, None, b"x")),  # type: ignore[arg-type]
    ("none_body", HttpResponse(200, {}, None)),  # type: ignore[arg-type]
]


# Answers a server could not have sent: header injection into the block the guest parses
# (CR/LF, and NUL, which separates headers in HTTP_QUERY_RAW_HEADERS), headers that do not
# encode as the Latin-1 bytes of an HTTP header (U+202E, lone surrogates), impossible statuses.
MALFORMED = [
    ("crlf_in_header", HttpResponse(200, {"X-Evil": "a\r\nSet-Cookie: injected\r\n\r\nbody"}, b"")),
    ("crlf_in_header_name", HttpResponse(200, {"X\r\nY": "z"}, b"")),
    ("colon_in_header_name", HttpResponse(200, {"X: Y": "z"}, b"")),
    ("empty_header_name", HttpResponse(200, {"": "z"}, b"")),
    ("nul_in_header", HttpResponse(200, {"X-Name": "caf\u00e9\u0000"}, b"")),
    ("rlo_in_header", HttpResponse(200, {"X-Name": "caf\u00e9\u202e"}, b"")),
    ("lone_surrogate_header_value", HttpResponse(200, {"X-Name": "a\udc80b"}, b"")),
    ("lone_surrogate_header_name", HttpResponse(200, {"X-\ud800": "v"}, b"")),
    ("status_zero", HttpResponse(0, {}, b"")),
    ("status_too_big", HttpResponse(1000, {}, b"")),
    ("status_bool", HttpResponse(True, {}, b"")),
    ("status_str", HttpResponse("200", {}, b"")),  # type: ignore[arg-type]
    ("not_a_response", "HTTP/1.1 200 OK\r\n\r\n"),
]


@pytest.mark.parametrize(("label", "answer"), BADLY_TYPED + MALFORMED, ids=[b[0] for b in BADLY_TYPED + MALFORMED])
def test_badly_typed_user_answer_is_a_recorded_error(label: str, answer: HttpResponse, tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([Canned("c", {"response": answer}, tmp_path)], recorder)
    response = router.http(get("http://a.test/x"))
    assert response is not None and response.status == 500
    [exchange] = exchanges(recorder)
    assert exchange.error and exchange.error.startswith("BadResponse: "), exchange.error
    assert exchange.response.status == 500
    exchange.model_dump_json()  # the recorded exchange serialises (no lone surrogate in the error)


class SurrogateRaiser(Responder):
    def handles_host(self, host: str) -> bool:
        return True

    def respond(self, request: HttpRequest) -> HttpResponse:
        raise ValueError("bad \udc80 byte")


def test_responder_error_with_lone_surrogate_serialises(tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([SurrogateRaiser("s", {}, tmp_path)], recorder)
    response = router.http(get("http://a.test/x"))
    assert response is not None and response.status == 500
    [exchange] = exchanges(recorder)
    assert exchange.error == "ValueError: bad \\udc80 byte"
    exchange.model_dump_json()


def test_answer_is_copied_not_shared(tmp_path: Path) -> None:
    """The router keeps its own copy: a responder that mutates its answer later changes nothing."""
    headers = {"X-A": "1"}
    router = NetworkRouter(
        [Canned("c", {"response": HttpResponse(200, headers, bytearray(b"ab"))}, tmp_path)], Recorder()
    )
    response = router.http(get("http://a.test/"))
    headers["X-B"] = "2"
    assert response is not None and response.headers == {"X-A": "1"} and response.body == b"ab"
    assert isinstance(response.body, bytes)


def test_synthetic_addresses_are_never_shared_and_run_out_with_a_note(tmp_path: Path) -> None:
    """One address per host, reverse lookups answer that host, and a used-up pool says so."""
    from emulator.events import Note
    from emulator.responders.router import SYNTHETIC_POOL_SIZE

    recorder = Recorder()
    router = NetworkRouter([], recorder, "404")  # every host resolves
    hosts = [f"host{i}.test" for i in range(SYNTHETIC_POOL_SIZE)]
    addresses = [router.resolve(host) for host in hosts]
    assert None not in addresses
    assert len(set(addresses)) == len(hosts)
    assert addresses[0] == "203.0.113.10" and addresses[244] == "203.0.113.254" and addresses[245] == "198.51.100.10"
    assert all(router.host_of_address(a) == h for a, h in zip(addresses, hosts, strict=True))  # type: ignore[arg-type]
    assert router.resolve("host0.test") == "203.0.113.10"  # the same host keeps its address
    assert not [e for e in recorder.events if isinstance(e, Note)]
    assert router.resolve("one-too-many.test") is None
    assert router.resolve("another.test") is None
    notes = [e for e in recorder.events if isinstance(e, Note)]
    assert len(notes) == 1 and notes[0].what == "synthetic address pool exhausted"
    assert "one-too-many.test" in notes[0].detail
    assert router.host_of_address(addresses[0]) == "host0.test"  # type: ignore[arg-type]


def test_c2_hands_out_each_victims_operator_tasks_in_order(tmp_path: Path) -> None:
    (tmp_path / "stage3.bin").write_bytes(b"S")
    options = c2_options()
    options["tasks"] = ["shell cmd.exe /c whoami", "dir C:\\Users"]
    options["routes"] = [
        {"method": "GET", "path": "/tasks", "states": ["beaconed"], "action": "task", "response": {"status": 200}},
        *options["routes"],
    ]
    c2 = C2Responder("c2", options, tmp_path)
    for victim in ("alice", "bob"):
        c2.respond(post("https://a.c2.test/b", b"1", Cookie=f"__tutma={victim}"))
    answers = [c2.respond(get("https://a.c2.test/tasks", Cookie="__tutma=alice")).body for _ in range(3)]
    assert answers == [b"shell cmd.exe /c whoami", b"dir C:\\Users", b"exit"]
    # Each victim has its own place in the list; an unknown victim gets no task.
    assert c2.respond(get("https://a.c2.test/tasks", Cookie="__tutma=bob")).body == b"shell cmd.exe /c whoami"
    assert c2.respond(get("https://a.c2.test/tasks", Cookie="__tutma=eve")).status == 404
    assert c2.state_summary()["victims"]["alice"]["tasks_given"] == 2


# ---- raw TCP answers (Responder.stream) -----------------------------------------------------------


def test_static_stream_answers_once_per_connection_on_its_ports(tmp_path: Path) -> None:
    (tmp_path / "stage.bin").write_bytes(b"\x10\x00\x00\x00" + bytes(range(16)))
    options = {"hosts": ["relay.test"], "stream": {"ports": [4444], "body_file": "stage.bin"}}
    recorder = Recorder()
    router = NetworkRouter([StaticResponder("relay", options, tmp_path)], recorder)
    assert router.stream("relay.test", 4444, b"", 0) == (tmp_path / "stage.bin").read_bytes()
    assert router.stream("relay.test", 4444, b"", 1) == b""  # the server has said its piece
    assert router.stream("relay.test", 80, b"", 0) == b""  # not a port it serves
    assert router.stream("other.test", 4444, b"", 0) == b""  # no responder for the host
    [exchange] = exchanges(recorder)
    assert (exchange.kind, exchange.host, exchange.port, exchange.response.size) == ("tcp", "relay.test", 4444, 20)


def test_static_stream_needs_exactly_one_body(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        StaticResponder("s", {"hosts": ["h"], "stream": {"ports": [1]}}, tmp_path)
    with pytest.raises(ValidationError):
        StaticResponder("s", {"hosts": ["h"], "stream": {"body": "a", "body_file": "b"}}, tmp_path)


def test_python_stream_dialogue_and_a_raising_one(tmp_path: Path) -> None:
    recorder = Recorder()
    router = NetworkRouter([Dialogue("talk", {}, tmp_path)], recorder)
    assert router.stream("raw.test", 9, b"hello", 0) == b"0:hello"
    assert router.stream("raw.test", 9, b"again", 1) == b"1:again"
    assert router.stream("raw.test", 9, b"more", 2) == b""
    assert router.stream("raw.test", 9, b"boom", 0) == b""  # a responder's bug ends nothing
    recorded = exchanges(recorder)
    assert [e.request.body_size for e in recorded] == [5, 5, 4]
    assert recorded[-1].error == "RuntimeError: stream bug"


# ---- DNS TXT records (Responder.txt) ------------------------------------------------------------


class TxtAnswers(Responder):
    """A user responder's TXT answers: good, of the wrong type, raising."""

    def handles_host(self, host: str) -> bool:
        return host.endswith(".txt.test")

    def txt(self, host: str) -> list[bytes] | None:
        if host.startswith("bad."):
            return "not bytes"  # type: ignore[return-value]
        if host.startswith("boom."):
            raise RuntimeError("txt bug")
        return [b"x" * 300, b"y"]


def test_static_txt_record_is_answered_and_recorded(tmp_path: Path) -> None:
    """A static responder's ``txt`` strings are the host's TXT record; the exchange's response
    body is the strings one after the other (what lineage searches); a host without a record or
    a responder is no record (NXDOMAIN)."""
    recorder = Recorder()
    options = {"hosts": ["cfg.test"], "txt": ["abc", "def"]}
    router = NetworkRouter(
        [StaticResponder("dns", options, tmp_path), StaticResponder("web", {"hosts": ["web.test"]}, tmp_path)],
        recorder,
    )
    assert router.resolve_txt("CFG.test.", api="dnsapi.DnsQuery_A") == [b"abc", b"def"]
    assert router.resolve_txt("web.test") is None  # answers HTTP, has no TXT record
    assert router.resolve_txt("nowhere.test") is None
    first, second, third = exchanges(recorder)
    assert (first.kind, first.host, first.method, first.response.size) == ("dns", "cfg.test", "dnsapi.DnsQuery_A", 6)
    assert recorder.blobs[first.response.sha256 or ""] == b"abcdef"
    assert second.response.sha256 is None and not second.blocked
    assert third.blocked


def test_txt_strings_are_dns_sized(tmp_path: Path) -> None:
    """A TXT string longer than DNS carries is refused when the scenario loads (static) or cut
    (a user responder); a user responder's wrong answer or exception is a recorded error, no
    record, never the end of the replay."""
    with pytest.raises(ValidationError, match="txt\\[1\\]: 256 bytes"):
        StaticResponder("s", {"hosts": ["h"], "txt": ["ok", "z" * 256]}, tmp_path)
    recorder = Recorder()
    router = NetworkRouter([TxtAnswers("user", {}, tmp_path)], recorder)
    assert router.resolve_txt("a.txt.test") == [b"x" * 255, b"y"]
    assert router.resolve_txt("bad.txt.test") is None
    assert router.resolve_txt("boom.txt.test") is None
    errors = [e.error for e in exchanges(recorder)]
    assert errors[0] is None and "not a list of bytes" in (errors[1] or "") and errors[2] == "RuntimeError: txt bug"
