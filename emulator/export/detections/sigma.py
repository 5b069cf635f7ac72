"""Sigma rules from a replay: ``dns_query`` for the domains contacted, ``proxy`` for the URLs and
for the beacon's user agent and cookie, ``image_load`` for side-loaded DLLs, ``file_event`` for
dropped files. Every value comes from the report (observed behaviour), none from the scenario.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from emulator.export._common import header, http_exchanges, stable_uuid
from emulator.export.attack_meta import attack_release
from emulator.export.detections.events import process_starts, side_loads
from emulator.report import Report

COMMAND_LINE_SHOWN = 200  # characters of a command line a process rule's description quotes


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _literal(value: str) -> str:
    """``value`` matched literally: Sigma's wildcards ``*`` and ``?`` escaped."""
    return value.replace("*", "\\*").replace("?", "\\?")


def _tags(report: Report, seqs: set[int]) -> list[str]:
    """ATT&CK tags of the techniques whose evidence includes one of the events the rule detects."""
    tags = [f"attack.{t.technique.lower()}" for t in report.attack if seqs & set(t.evidence)]
    return _unique(tags)


def _rule(
    report: Report,
    key: str,
    title: str,
    description: str,
    logsource: dict[str, str],
    selection: dict[str, Any],
    seqs: set[int],
) -> dict[str, Any]:
    date = report.virtual_time.start[:10]
    rule: dict[str, Any] = {
        "title": title,
        "id": stable_uuid("sigma", report.target.sha256, key),
        "status": "experimental",
        "description": description,
        "author": f"chainreplay {report.tool.version}",
        "date": date,
        "references": [],
        "tags": _tags(report, seqs),
        "logsource": logsource,
        "detection": {"selection": selection, "condition": "selection"},
        "falsepositives": ["Unknown"],
        "level": "high",
    }
    if not rule["tags"]:
        del rule["tags"]
    del rule["references"]
    return rule


def sigma_rules(report: Report) -> dict[str, dict[str, Any]]:
    """File name (under detections/sigma/) -> rule as a dict. ``sigma_yaml`` writes one as YAML."""
    name = report.target.name
    rules: dict[str, dict[str, Any]] = {}
    exchanges = http_exchanges(report)
    domains = _unique([r.host.lower().rstrip(".") for r in report.network if r.host and not _is_ip(r.host)])
    domain_seqs = {r.seq for r in report.network}
    if domains:
        rules["dns_query_domains.yml"] = _rule(
            report,
            "dns_query",
            f"chainreplay {name}: DNS query for a domain the chain contacted",
            f"Domains {name} resolved or contacted in a chainreplay replay (ATT&CK v{attack_release(report)}).",
            {"category": "dns_query", "product": "windows"},
            {"QueryName": [_literal(d) for d in domains]},
            domain_seqs,
        )
    urls = _unique([r.url or "" for r in exchanges])
    if urls:
        rules["proxy_urls.yml"] = _rule(
            report,
            "proxy_urls",
            f"chainreplay {name}: HTTP request to a URL the chain used",
            f"URLs {name} requested in a chainreplay replay.",
            {"category": "proxy"},
            {"c-uri": [_literal(u) for u in urls]},
            {r.seq for r in exchanges},
        )
    # The beacon: requests that carry a cookie, keyed on user agent + cookie name + host.
    beacons: dict[tuple[str, str], list[Any]] = {}
    for record in exchanges:
        cookie = header(record.request.headers, "Cookie")
        agent = header(record.request.headers, "User-Agent")
        if cookie and agent:
            beacons.setdefault((agent, cookie), []).append(record)
    for index, ((agent, cookie), records) in enumerate(sorted(beacons.items(), key=lambda kv: kv[1][0].seq)):
        names = _unique([part.strip().partition("=")[0] + "=" for part in cookie.split(";") if "=" in part])
        selection: dict[str, Any] = {
            "c-useragent": _literal(agent),
            "cs-host": _unique([_literal(r.host.lower()) for r in records]),
        }
        if names:
            selection["cs-cookie|contains|all"] = [_literal(n) for n in names]
        rules[f"proxy_beacon_{index}.yml"] = _rule(
            report,
            f"proxy_beacon:{agent}:{','.join(names)}",
            f"chainreplay {name}: beacon user agent and cookie",
            f"HTTP requests with the user agent and cookie ({', '.join(names) or cookie}) {name}'s beacon used "
            f"(seq {', '.join(str(r.seq) for r in records)}).",
            {"category": "proxy"},
            selection,
            {r.seq for r in records},
        )
    loads = side_loads(report)
    if loads:
        rules["image_load_sideloaded.yml"] = _rule(
            report,
            "image_load",
            f"chainreplay {name}: side-loaded DLL",
            f"A DLL {name} side-loaded into its host process (seq {', '.join(str(s) for _, _, s in loads)}).",
            {"category": "image_load", "product": "windows"},
            {
                "Image|endswith": _unique([_literal("\\" + p) for p, _, _ in loads]),
                "ImageLoaded|endswith": _unique([_literal("\\" + i) for _, i, _ in loads]),
            },
            {s for _, _, s in loads},
        )
    starts = process_starts(report)
    if starts:
        selections: dict[str, dict[str, Any]] = {}
        for start in starts:
            selection = {
                "ParentImage|endswith": _literal("\\" + start.parent),
                "Image|endswith": _literal("\\" + start.image.replace("/", "\\").rsplit("\\", 1)[-1]),
            }
            if start.run_file:
                selection["CommandLine|contains"] = _literal(start.run_file)
            if selection not in selections.values():
                selections[f"selection_{len(selections)}"] = selection
        rule = _rule(
            report,
            "process_creation",
            f"chainreplay {name}: process the chain started",
            f"Programs {name} started in a chainreplay replay (seq "
            f"{', '.join(str(s.evidence[0]) for s in starts if s.evidence)}): "
            + "; ".join(f"{s.parent} -> {(s.command_line or s.image)[:COMMAND_LINE_SHOWN]}" for s in starts)
            + ".",
            {"category": "process_creation", "product": "windows"},
            {},
            {seq for s in starts for seq in s.evidence},
        )
        rule["detection"] = {**selections, "condition": "1 of selection_*"}
        rules["process_creation_started.yml"] = rule
    dropped = _unique([d.path for d in report.dropped])
    if dropped:
        tails = _unique([_literal("\\" + "\\".join(p.split("\\")[-2:])) for p in dropped])
        rules["file_event_dropped.yml"] = _rule(
            report,
            "file_event",
            f"chainreplay {name}: file the chain dropped",
            f"Files {name} wrote in a chainreplay replay: {', '.join(dropped)}.",
            {"category": "file_event", "product": "windows"},
            {"TargetFilename|endswith": tails},
            {f.seq for f in report.files if f.op == "write" and f.sha256 in {d.sha256 for d in report.dropped}},
        )
    return rules


def sigma_yaml(rule: dict[str, Any]) -> str:
    return yaml.safe_dump(rule, sort_keys=False, allow_unicode=False, width=1000)
