"""Serves raw.githubusercontent.com/<owner>/<repo>/<branch>/<path> from a scenario folder."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from emulator.responders.base import HttpRequest, HttpResponse, Responder, host_matches
from emulator.scenario_paths import scenario_data_path


class GithubOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str = Field(description="Folder in the scenario laid out as <owner>/<repo>/<branch>/<path>.")
    hosts: list[str] = Field(default_factory=lambda: ["raw.githubusercontent.com"])


class GithubResponder(Responder):
    kind = "github"

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        super().__init__(name, options, scenario_dir)
        self.config = GithubOptions.model_validate(options)
        self.root = scenario_data_path(scenario_dir, self.config.root)

    def handles_host(self, host: str) -> bool:
        return host_matches(host, self.config.hosts)

    def respond(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(405, {"Content-Type": "text/plain"}, b"405: Method Not Allowed")
        relative = unquote(request.path.split("?", 1)[0]).lstrip("/")
        not_found = HttpResponse(404, {"Content-Type": "text/plain; charset=utf-8"}, b"404: Not Found")
        try:
            candidate = (self.root / relative).resolve()
            # Only files inside the root: a guest path with ../ must not reach the host's files.
            if not candidate.is_relative_to(self.root) or len(relative.split("/")) < 4 or not candidate.is_file():
                return not_found
            body = candidate.read_bytes()
        except (ValueError, OSError):  # NUL bytes, names over 255 bytes, unreadable: not a file we serve
            return not_found
        content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        headers = {
            "Content-Type": content_type if content_type.startswith("text") else "application/octet-stream",
            "Content-Length": str(len(body)),
            "Cache-Control": "max-age=300",
            "Access-Control-Allow-Origin": "*",
        }
        return HttpResponse(200, headers, b"" if request.method == "HEAD" else body)
