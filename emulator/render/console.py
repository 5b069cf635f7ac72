"""A short human summary of a report for the terminal (pure: report in, text out)."""

from __future__ import annotations

from emulator.report import Report
from emulator.sanitize import for_display


def render_summary(report: Report, verbose: bool = False) -> str:
    outcome = report.outcome
    lines = [
        f"chainreplay {report.tool.version} ({report.tool.engine})",
        f"target   {for_display(report.target.path)}  sha256 {report.target.sha256[:16]}...",
        f"outcome  {outcome.status}" + (f": {for_display(outcome.detail)}" if outcome.detail else ""),
        f"stats    {report.stats.api_calls} API calls, {report.stats.instructions} instructions, "
        f"{report.stats.network_exchanges} network exchanges, "
        f"{report.virtual_time.skipped_ms / 1000:.0f} s of virtual time skipped",
        "stages:",
    ]
    for stage in report.stages:
        origin = stage.origin
        lines.append(
            f"  {stage.id:<4} {stage.kind:<13} {for_display(stage.name, 40):<40} "
            f"from {origin.type} {for_display(origin.ref, 60)} ({origin.how})"
        )
    if report.network:
        lines.append("network:")
        for net in report.network:
            what = net.url or net.host
            flag = " BLOCKED" if net.blocked else ""
            lines.append(
                f"  [{net.seq}] {net.stage} {net.kind} {net.method or ''} "
                f"{for_display(what, 90)} -> {net.response.status} ({net.responder}){flag}"
            )
    if report.attack:
        lines.append("ATT&CK:")
        for hit in report.attack:
            lines.append(f"  {hit.technique:<10} {hit.name} [{hit.stage}] evidence {hit.evidence[:6]}")
    if verbose:
        lines.append("API calls:")
        for call in report.api_calls:
            args = ", ".join(for_display(a, 80) for a in call.args)
            lines.append(f"  [{call.seq}] {call.stage} {call.api}({args}) -> {call.ret}")
    return "\n".join(lines)
