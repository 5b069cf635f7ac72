"""A fixed status, headers and body for a host or URL pattern."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.limits import MAX_TXT_BYTES, MAX_TXT_STRINGS
from emulator.responders.base import HttpRequest, HttpResponse, Responder, glob_matches, host_matches
from emulator.scenario_paths import scenario_data_path


class ResponseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int = Field(200, ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, description="Body as text (UTF-8).")
    body_file: str | None = Field(default=None, description="Body from a file in the scenario folder.")

    @model_validator(mode="after")
    def _one_body(self) -> ResponseSpec:
        if self.body is not None and self.body_file is not None:
            raise ValueError("give either body or body_file, not both")
        return self

    def build(self, scenario_dir: Path) -> HttpResponse:
        if self.body_file is not None:
            body = read_scenario_file(scenario_dir, self.body_file)
        else:
            body = (self.body or "").encode("utf-8")
        headers = dict(self.headers)
        headers.setdefault("Content-Length", str(len(body)))
        return HttpResponse(self.status, headers, body)


def read_scenario_file(scenario_dir: Path, relative: str) -> bytes:
    """A data file of the scenario (or of a scenario beside it, see emulator/scenario_paths.py)."""
    return scenario_data_path(scenario_dir, relative).read_bytes()


class StreamSpec(BaseModel):
    """What a non-HTTP TCP client of the hosts is sent: once per connection, on its first read."""

    model_config = ConfigDict(extra="forbid")
    ports: list[int] | None = Field(default=None, description="Ports served (all when absent).")
    body: str | None = Field(default=None, description="Bytes as text (UTF-8).")
    body_file: str | None = Field(default=None, description="Bytes from a file in the scenario folder.")

    @model_validator(mode="after")
    def _one_body(self) -> StreamSpec:
        if (self.body is None) == (self.body_file is None):
            raise ValueError("give exactly one of body or body_file")
        return self


class StaticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[str] = Field(description="Host patterns (fnmatch) this responder answers.")
    paths: list[str] = Field(default_factory=lambda: ["*"], description="Path patterns (fnmatch).")
    methods: list[str] = Field(default_factory=lambda: ["*"])
    response: ResponseSpec = Field(default_factory=ResponseSpec)
    stream: StreamSpec | None = Field(default=None, description="Raw TCP answer for clients that speak no HTTP.")
    txt: list[str] | None = Field(
        default=None,
        description="The strings of the hosts' DNS TXT record (each up to 255 bytes of UTF-8, as DNS carries "
        "them); no TXT record when absent.",
    )

    @model_validator(mode="after")
    def _txt_strings(self) -> StaticOptions:
        if len(self.txt or []) > MAX_TXT_STRINGS:
            raise ValueError(f"txt: {len(self.txt or [])} strings, at most {MAX_TXT_STRINGS}")
        for index, text in enumerate(self.txt or []):
            if len(text.encode("utf-8")) > MAX_TXT_BYTES:
                raise ValueError(f"txt[{index}]: {len(text.encode('utf-8'))} bytes, a TXT string holds {MAX_TXT_BYTES}")
        return self


class StaticResponder(Responder):
    kind = "static"

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        super().__init__(name, options, scenario_dir)
        self.config = StaticOptions.model_validate(options)
        self.response = self.config.response.build(scenario_dir)
        spec = self.config.stream
        self.stream_bytes: bytes | None = None
        if spec is not None:
            if spec.body_file is not None:
                self.stream_bytes = read_scenario_file(scenario_dir, spec.body_file)
            else:
                self.stream_bytes = (spec.body or "").encode("utf-8")

    def handles_host(self, host: str) -> bool:
        return host_matches(host, self.config.hosts)

    def handles(self, request: HttpRequest) -> bool:
        return (
            self.handles_host(request.host)
            and any(glob_matches(request.path, p) for p in self.config.paths)
            and any(glob_matches(request.method, m.upper()) for m in self.config.methods)
        )

    def respond(self, request: HttpRequest) -> HttpResponse:
        return self.response

    def txt(self, host: str) -> list[bytes] | None:
        if self.config.txt is None:
            return None
        return [text.encode("utf-8") for text in self.config.txt]

    def stream(self, host: str, port: int, sent: bytes, turn: int) -> bytes | None:
        spec = self.config.stream
        if spec is None or turn > 0 or (spec.ports is not None and port not in spec.ports):
            return None
        return self.stream_bytes
