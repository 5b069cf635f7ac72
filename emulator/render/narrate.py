"""The chain told step by step, stage by stage, with the evidence for every step.

Derived from the report only (and, when given, the saved network bodies for previews), like every
other renderer, so it tells any chain: how each stage came to run, what it read, decrypted,
fetched and sent, what the beacon carried, what left the machine, what it started next.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from emulator.render.layout import STAGE_KIND_TEXT
from emulator.render.model import (
    SLEEP_APIS,
    calls_to,
    clean,
    graph_parts,
    hosts_contacted,
    plural,
)
from emulator.report import NetworkRecord, Report

HOW_TEXT = {
    "entry": "the replay starts here",
    "same_bytes": "its bytes are exactly the bytes of",
    "decrypted_in_place": "its bytes were decrypted in place from",
    "decrypt_api": "its bytes are the output of a decryption of",
    "mapped_image": "it is a PE image mapped into memory by",
    "executed_from": "it is code run from memory written by",
}
# Network edges whose meaning is worth a sentence of its own.
NET_VERBS = {
    "fetches": "fetches",
    "beacons_to": "beacons to",
    "exfiltrates_to": "sends stolen data to",
    "delivers": "receives code from",
    "resolves": "looks up",
}
# What a stage does to another process (a graph edge from the stage to a process node).
PROCESS_VERBS = {
    "creates_process": "It starts the process {process}.",
    "opens_process": "It opens the process {process}.",
    "writes_memory": "It writes into the memory of {process}.",
    "injects_into": "It injects code into {process}{how}.",
}
# How an injects_into edge says the code was started there.
INJECTION_TEXT = {
    "remote_thread": "a new thread there",
    "apc": "an APC queued to its thread",
    "thread_context": "its thread's context, set to the code, then resumed",
    "hollowing": "hollowing: its image unmapped, its thread's context set to the code",
}
# What a note of the report says a stage did (or the emulator did for it), as the head of a step;
# the notes' own details follow. A kind not listed here is told by its name.
NOTE_TEXT = {
    "callback_not_called": "It handed code it had prepared to an API that calls it back, which the emulator "
    "served without calling it",
    "module_code_patched": "It changes the code of a module it did not write",
    "direct_system_call": "It makes a system call itself, not through ntdll's stub (a direct system call)",
    "indirect_system_call": "It makes a system call through an ntdll stub's own instruction, with a number it set "
    "itself (an indirect system call)",
    "dll_search_hijack": "It was loaded by DLL search-order hijacking",
    "renamed_system_dll": "A renamed copy of a system DLL is bound to the emulator's own",
    "signature_emulated": "The emulator answered an API it has no handler for from its signature alone",
    "child_process_not_run": "A program it started could not run as a process",
    "cmd_command_skipped": "cmd did not run a command: its condition (&&, ||) did not hold",
    "library_not_loaded": "A library it asked for was not loaded",
    "managed_code": "Its .NET code was not emulated",
    "response_truncated": "An answer it got was cut at the response size limit",
    "com_class_not_emulated": "It asked COM for a class the emulator does not have",
    "persistence_command": "It set something up to run later through a system program",
    "thread_hidden_from_debugger": "It hid a thread from debuggers",
    "window_hook": "It set a Windows hook, a procedure input or messages are handed to",
}
# How a parent handed control to a stage, where the report's one word needs more.
VIA_TEXT = {
    "exception": "an exception handler that resumed a faulting thread there",
    "context": "a thread context it loaded, whose instruction pointer was there (NtContinue, RtlRestoreContext; "
    "SetThreadContext on a thread it then resumed)",
}
MAX_ITEMS = 8  # per list inside one step
BODY_PREVIEW = 160  # characters of a body shown in a sentence
MAX_STEPS_PER_STAGE = 12


@dataclass
class Step:
    title: str
    lines: list[str] = field(default_factory=list)
    stage: str | None = None


def _answer(n: NetworkRecord) -> str:
    """What an exchange got, as a sentence's end: an HTTP status and size, a DNS answer (its
    address or TXT record), or the size of a raw TCP / UDP answer (which has no status)."""
    size = plural(n.response.size, "byte")
    if n.kind == "dns":
        headers = n.response.headers
        if headers.get("A"):
            return f"got the address {clean(headers['A'], 60)}"
        if headers.get("TXT"):
            return f"got a TXT record ({clean(headers['TXT'], 40)}, {size})"
        return "got no such name"
    if n.response.status is None:
        return f"got {size}"
    return f"got {n.response.status} ({size})"


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.1f} minutes"
    return f"{seconds:g} s"


# Distinct unprintable characters counted one str.count each; more are counted in one pass.
_COUNT_EACH = 32


def _printable_count(text: str) -> int:
    """How many characters of ``text`` are printable or a line break or tab: each distinct
    character is asked once and counted at C speed (a binary body is thousands of characters)."""
    odd = [ch for ch in set(text) if not ch.isprintable() and ch not in "\r\n\t"]
    if len(odd) <= _COUNT_EACH:
        return len(text) - sum(map(text.count, odd))
    counts = Counter(text)  # many distinct ones: one pass, not one per character
    return len(text) - sum(counts[ch] for ch in odd)


def body_preview(data: bytes | None, limit: int = BODY_PREVIEW) -> str | None:
    """Printable text of a body, or ``None`` if it is binary."""
    if not data:
        return None
    text = data[: limit * 4].decode("utf-8", "replace")
    printable = _printable_count(text)
    if printable < 0.9 * len(text):
        return None
    text = " ".join(text.split())
    return clean(text, limit)


def _ev(seqs: list[int] | tuple[int, ...]) -> str:
    seqs = sorted(set(seqs))
    if not seqs:
        return ""
    shown = ", ".join(str(s) for s in seqs[:6]) + (", ..." if len(seqs) > 6 else "")
    return f" [event{'s' if len(seqs) > 1 else ''} {shown}]"


def narrate(report: Report, bodies: Mapping[str, bytes] | None = None) -> list[Step]:
    """The story of the replay as steps (a title and sentences each)."""
    bodies = bodies or {}
    _, edges = graph_parts(report)
    net_kind = {}
    for e in edges:
        for seq in e.evidence:
            if e.type in NET_VERBS:
                net_kind[seq] = e.type
    names = {s.id: clean(s.name, 80) for s in report.stages}
    title = clean(report.scenario or report.target.name, 120)
    hosts = hosts_contacted(report)
    steps = [
        Step(
            f"The chain: {title}",
            [
                f"chainreplay replayed {clean(report.target.path, 200)} in an emulator "
                f"({report.tool.engine}); nothing touched a real network or a real disk.",
                f"{plural(len(report.stages), 'stage')} ran one after the other: "
                + ", ".join(f"{s.id} {names[s.id]}" for s in report.stages)
                + ".",
                (f"It contacted {plural(len(hosts), 'host')}: {', '.join(hosts)}." if hosts else "No network contact."),
            ],
        )
    ]
    by_stage: dict[str, list[tuple[int, str, list[str]]]] = {s.id: [] for s in report.stages}

    def add(stage: str, seq: int, text: str, more: list[str] | None = None) -> None:
        if stage in by_stage:
            by_stage[stage].append((seq, text, more or []))

    reads: dict[tuple[str, str], list[int]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for f in report.files:
        if f.op == "read":
            read_key = (f.stage, f.path)
            reads.setdefault(read_key, []).append(f.seq)
            sizes[read_key] = sizes.get(read_key, 0) + (f.size or 0)
        elif f.op in ("write", "delete", "move", "copy"):
            size = f" ({plural(f.size, 'byte')})" if f.size else ""
            add(f.stage, f.seq, f"It {f.op}s the file {clean(f.path, 200)}{size}.{_ev([f.seq])}")
    for (reader, path), seqs in reads.items():
        size_text = plural(sizes[(reader, path)], "byte")
        add(reader, seqs[0], f"It reads the file {clean(path, 200)} ({size_text}).{_ev(seqs)}")
    for r in report.registry:
        if r.op == "read":
            value = f"{clean(r.value_name or '(default)', 80)} = {clean(r.value, 120)}" if r.value is not None else ""
            add(r.stage, r.seq, f"It reads the registry key {clean(r.path, 200)}: {value}.{_ev([r.seq])}")
        elif r.op == "write" and (r.value_name is not None or r.value is not None):
            # the value written (a Run key's command line is what persists)
            written = clean(r.value_name or "(default)", 80)
            if r.value is not None:
                written += f" = {clean(r.value, 120)}"
            add(r.stage, r.seq, f"It writes the registry key {clean(r.path, 200)}: {written}.{_ev([r.seq])}")
        elif r.op in ("write", "create", "delete"):
            add(r.stage, r.seq, f"It {r.op}s the registry key {clean(r.path, 200)}.{_ev([r.seq])}")
    for o in report.sync_objects:
        add(o.stage, o.seq, f"It {o.op}s the {o.object_type} {clean(o.name, 120)}.{_ev([o.seq])}")
    for b in report.buffers:
        if b.source in ("decrypt", "decompress"):
            verb = "decrypts" if b.source == "decrypt" else "decompresses"
            add(
                b.stage,
                b.seq,
                f"It {verb} {plural(b.size, 'byte')} with {clean(b.api or b.ref, 80)} "
                f"(result sha256 {b.sha256[:16]}...).{_ev([b.seq])}",
            )
    for e in edges:
        if e.type in PROCESS_VERBS and e.target.startswith("process:") and e.evidence:
            methods = [INJECTION_TEXT.get(str(m), str(m).replace("_", " ")) for m in e.attrs.get("methods") or []]
            how = f" (by {', '.join(methods)})" if methods else ""
            text = PROCESS_VERBS[e.type].format(process=clean(e.target.partition(":")[2], 200), how=how)
            add(e.source, min(e.evidence), f"{text}{_ev(list(e.evidence))}")
    for call in calls_to(report, SLEEP_APIS):
        if call.args:
            try:
                ms = int(call.args[0], 0) & 0xFFFFFFFF
            except ValueError:
                continue
            if ms >= 1000:
                add(
                    call.stage,
                    call.seq,
                    f"It sleeps {_duration(ms)} (skipped on the virtual clock).{_ev([call.seq])}",
                )
    noted: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for note in report.notes:
        noted.setdefault((note.stage, note.what), []).append((note.seq, note.detail))
    for (stage_id, what), items in noted.items():
        head = NOTE_TEXT.get(what, f"The replay notes {what.replace('_', ' ')}")
        seqs = [seq for seq, _ in items]
        details = [clean(detail, 300) for _, detail in items]
        if len(items) == 1:
            add(stage_id, seqs[0], f"{head}: {details[0]}.{_ev(seqs)}")
        else:
            more = details[:MAX_ITEMS] + ([f"and {len(items) - MAX_ITEMS} more"] if len(items) > MAX_ITEMS else [])
            add(stage_id, seqs[0], f"{head} ({len(items)} times).{_ev(seqs)}", more)
    last_header: dict[str, str] = {}
    for n in report.network:
        what = clean(n.url or (f"{n.host}:{n.port}" if n.port is not None else n.host), 300)
        verb = NET_VERBS.get(net_kind.get(n.seq, ""), "contacts")
        status = "was blocked" if n.blocked else _answer(n)
        more = []
        for name, value in n.request.headers.items():
            if name.lower() in ("cookie", "authorization", "user-agent") and last_header.get(name) != value:
                last_header[name] = value
                more.append(f"its {clean(name, 40)} header: {clean(value, 200)}")
        if n.request.size:
            preview = body_preview(bodies.get(n.request.sha256 or ""))
            carried = f'"{preview}"' if preview else f"sha256 {(n.request.sha256 or '')[:16]}..."
            label = "what it sent" if verb != "sends stolen data to" else "what it stole"
            more.append(f"{label} ({plural(n.request.size, 'byte')}): {carried}")
        answer = body_preview(bodies.get(n.response.sha256 or ""))
        if answer:
            more.append(f'the answer: "{answer}"')
        add(
            n.stage,
            n.seq,
            f"It {verb} {what} ({n.method or n.kind}) and {status}, answered by the {clean(n.responder, 40)} "
            f"responder.{_ev([n.seq])}",
            more,
        )
    for stage in report.stages:
        origin = stage.origin
        how = HOW_TEXT.get(origin.how, origin.how.replace("_", " "))
        if origin.how == "entry":
            entry_ref = clean(origin.ref, 200)
            where = how if entry_ref in ("", title) else f"{entry_ref} loads it; {how}"
        elif origin.type == "memory":
            where = f"{how} stage {clean(origin.ref, 80)}"
        else:
            where = f"{how} {origin.type} {clean(origin.ref, 200)}"
            if origin.via_api:
                where += f" (via {clean(origin.via_api, 60)})"
        intro = [
            f"{stage.id} is {STAGE_KIND_TEXT.get(stage.kind, stage.kind)} {names[stage.id]} "
            f"({plural(stage.size, 'byte')}, "
            f"sha256 {stage.sha256[:16]}...).",
            f"How it came to run: {where}.{_ev(origin.evidence)}",
        ]
        if stage.parent and stage.via == "process" and stage.system_program:
            file = clean(stage.run_file or stage.name, 200)
            if stage.kind != "module":
                ran = f"which started the file {file} as a new process"
            elif stage.system_program == stage.process:
                ran = f"which loaded the file {file} into its process and ran it"
            else:
                ran = f"which started {clean(stage.process or '', 200)}, which loaded the file {file} and ran it"
            intro.append(f"Its parent stage {stage.parent} started {clean(stage.system_program, 200)}, {ran}.")
        elif stage.parent and stage.via == "process":
            intro.append(
                f"Its parent stage {stage.parent} started it as a new process, running the file "
                f"{clean(stage.process or stage.name, 200)}."
            )
        elif stage.parent:
            how = VIA_TEXT.get(stage.via, stage.via)
            intro.append(f"Its parent stage {stage.parent} handed control to it by {how}.")
        if stage.process and stage.via != "process":
            intro.append(f"It runs inside another process: {clean(stage.process, 200)}.")
        steps.append(Step(f"Stage {stage.id}: {names[stage.id]}", intro, stage.id))
        actions = sorted(by_stage[stage.id], key=lambda a: a[0])
        shown = actions[:MAX_STEPS_PER_STAGE]
        for _seq, text, more in shown:
            steps.append(Step(f"{stage.id}: {text.split(' [event')[0]}", [text, *(f"  - {m}" for m in more)], stage.id))
        if len(actions) > len(shown):
            steps.append(Step(f"{stage.id}: and {len(actions) - len(shown)} more actions", [], stage.id))
        children = [s for s in report.stages if s.parent == stage.id]
        techniques = [t for t in report.attack if t.stage == stage.id]
        closing = []
        if techniques:
            closing.append(
                "ATT&CK: " + "; ".join(f"{t.technique} {clean(t.name, 80)}{_ev(t.evidence)}" for t in techniques)
            )
        if children:
            closing.append("Then it starts " + ", ".join(f"{c.id} {names[c.id]}" for c in children) + ".")
        if closing:
            steps.append(Step(f"{stage.id}: what it amounts to", closing, stage.id))
    outcome = report.outcome
    steps.append(
        Step(
            "How it ended",
            [
                f"Outcome: {outcome.status}" + (f": {clean(outcome.detail, 300)}" if outcome.detail else "") + ".",
                f"Virtual time skipped: {_duration(report.virtual_time.skipped_ms)} "
                f"in {plural(report.virtual_time.sleeps, 'sleep')}.",
            ],
        )
    )
    return steps


def is_header(step: Step) -> bool:
    """A chapter of the story (the overview, a stage, the end) rather than one action."""
    return step.stage is None or step.title.startswith("Stage ")


def render_markdown(report: Report, steps: list[Step]) -> str:
    """The narration as a handout (Markdown)."""
    out = [f"# {clean(report.scenario or report.target.name, 120)}: the chain step by step", ""]
    n = 0
    for step in steps:
        if is_header(step):
            out += ["", f"## {step.title}", "", *step.lines, ""]
            n = 0
            continue
        n += 1
        out.append(f"{n}. {step.lines[0] if step.lines else step.title}")
        out += [f"   {line.strip()}" for line in step.lines[1:]]
    out.append("")
    return "\n".join(out)
