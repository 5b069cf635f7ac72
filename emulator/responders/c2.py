"""A stateful command-and-control responder.

Victims are registered from their beacon (the victim id is taken from a cookie, a header or
the request body), move through states named by the scenario, and are served routes whose
``states`` admit them: so the next stage is served only after a valid beacon. Every request is
kept in the victim's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.responders.base import HttpRequest, HttpResponse, Responder, glob_matches, host_matches
from emulator.responders.static import ResponseSpec

UNKNOWN_VICTIM = "unknown"


class VictimIdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cookie: str | None = None
    header: str | None = None
    body_regex: str | None = Field(default=None, description="Regex whose first group is the victim id.")

    @model_validator(mode="after")
    def _one_source(self) -> VictimIdSpec:
        if sum(x is not None for x in (self.cookie, self.header, self.body_regex)) != 1:
            raise ValueError("give exactly one of cookie, header, body_regex")
        if self.body_regex is not None:
            try:
                re.compile(self.body_regex)
            except re.error as err:
                raise ValueError(f"body_regex is not a valid regular expression: {err}") from err
        return self


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = "*"
    path: str = "*"
    states: list[str] = Field(default_factory=lambda: ["*"], description="Victim states this route applies to.")
    action: Literal["register", "serve", "collect", "respond", "task"] = Field(
        "respond",
        description="register a victim, serve or collect a body, respond, or hand out the victim's next "
        "operator task (the C2's `tasks`, in order; `tasks_done` once they are all given).",
    )
    next_state: str | None = None
    response: ResponseSpec = Field(default_factory=ResponseSpec)


class C2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[str]
    victim_id: VictimIdSpec
    routes: list[RouteSpec] = Field(min_length=1)
    unmatched: ResponseSpec = Field(default_factory=lambda: ResponseSpec(status=404, body="Not Found"))
    tasks: list[str] = Field(
        default_factory=list, description="Operator tasks a `task` route hands each victim, one per request, in order."
    )
    tasks_done: str = Field("exit", description="The answer of a `task` route once every task was handed out.")


@dataclass
class Victim:
    victim_id: str
    state: str
    history: list[dict[str, Any]] = field(default_factory=list)
    collected: list[bytes] = field(default_factory=list)
    tasks_given: int = 0


class C2Responder(Responder):
    kind = "c2"

    def __init__(self, name: str, options: dict[str, Any], scenario_dir: Path) -> None:
        super().__init__(name, options, scenario_dir)
        self.config = C2Options.model_validate(options)
        self.responses = [route.response.build(scenario_dir) for route in self.config.routes]
        self.unmatched = self.config.unmatched.build(scenario_dir)
        self.victims: dict[str, Victim] = {}
        self.requests: list[dict[str, Any]] = []

    def handles_host(self, host: str) -> bool:
        return host_matches(host, self.config.hosts)

    def victim_id_of(self, request: HttpRequest) -> str | None:
        spec = self.config.victim_id
        if spec.cookie is not None:
            return request.cookies().get(spec.cookie) or None
        if spec.header is not None:
            return request.header(spec.header)
        match = re.search(spec.body_regex or "", request.body.decode("latin-1"))
        return match.group(1) if match and match.groups() else None

    def respond(self, request: HttpRequest) -> HttpResponse:
        victim_id = self.victim_id_of(request)
        victim = self.victims.get(victim_id) if victim_id else None
        state = victim.state if victim else UNKNOWN_VICTIM
        for route, response in zip(self.config.routes, self.responses, strict=True):
            if not (
                glob_matches(request.method, route.method.upper())
                and glob_matches(request.path.split("?", 1)[0], route.path)
                and any(glob_matches(state, s) for s in route.states)
            ):
                continue
            if route.action == "register":
                if not victim_id:
                    continue
                victim = self.victims.setdefault(victim_id, Victim(victim_id, state))
            if route.action == "task":
                if victim is None:
                    continue
                response = self._next_task(victim, response)
            if victim is not None:
                if route.action == "collect":
                    victim.collected.append(request.body)
                if route.next_state is not None:
                    victim.state = route.next_state
            self._log(request, victim, route.action, response.status)
            return response
        self._log(request, victim, "unmatched", self.unmatched.status)
        return self.unmatched

    def _next_task(self, victim: Victim, template: HttpResponse) -> HttpResponse:
        tasks = self.config.tasks
        if victim.tasks_given < len(tasks):
            text = tasks[victim.tasks_given]
            victim.tasks_given += 1
        else:
            text = self.config.tasks_done
        body = text.encode("utf-8")
        # The template's Content-Length was for its own (empty) body.
        headers = {k: v for k, v in template.headers.items() if k.lower() != "content-length"}
        return replace(template, body=body, headers={**headers, "Content-Length": str(len(body))})

    def _log(self, request: HttpRequest, victim: Victim | None, action: str, status: int) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "action": action,
            "status": status,
            "body_size": len(request.body),
            "victim": victim.victim_id if victim else None,
        }
        self.requests.append(entry)
        if victim is not None:
            victim.history.append(entry)

    def state_summary(self) -> dict[str, Any]:
        victims: dict[str, Any] = {}
        for v in self.victims.values():
            summary: dict[str, Any] = {
                "state": v.state,
                "requests": len(v.history),
                "collected_bytes": sum(map(len, v.collected)),
            }
            if self.config.tasks:
                summary["tasks_given"] = v.tasks_given
            victims[v.victim_id] = summary
        return {"victims": victims, "requests": len(self.requests)}
