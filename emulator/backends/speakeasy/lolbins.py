"""System programs that run what they are given: how each one's command line names a program or
a DLL and what it calls (the table :data:`PROGRAMS`).

Chains rarely start their payload directly: they hand a DLL to ``rundll32.exe`` (T1218.011) or
``regsvr32.exe`` (T1218.010), or a command to ``cmd.exe /c`` (T1059.003). The guest has no
such programs as files, so the replay would end at a ``creates_process`` edge to them. This
module reads the command line as the program does and says what it would run: a DLL, its
DllMain, then the exports it calls with that program's arguments, or a program (``cmd /c
x.exe``, ``start "" x.exe``). Whether the named file is one of the guest's, and running it, is
children.py's; a program whose target is no guest file is not emulated (as before). A cmd line's
commands are a tree (:func:`cmd_chain`: ``&``, ``||``, ``&&``, ``|``, parentheses, as cmd groups
them) that :func:`cmd_steps` walks by the commands' exit codes.

Pure text: no emulator here (tests read it directly).
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

# rundll32 passes the export (hwnd, hinst, lpszCmdLine, nCmdShow); nCmdShow is SW_SHOWDEFAULT.
SW_SHOWDEFAULT = 10
# Nesting of system programs read from one command line (cmd /c cmd /c rundll32 ...).
MAX_NESTING = 4
# cmd's commands that are no program (a command line made of them runs nothing of the guest's).
# Scripts cmd.exe runs itself when a command names one.
BATCH_EXTENSIONS = (".bat", ".cmd")
CMD_BUILTINS = frozenset(
    [
        "assoc",
        "break",
        "call",
        "cd",
        "chdir",
        "cls",
        "color",
        "copy",
        "date",
        "del",
        "dir",
        "echo",
        "endlocal",
        "erase",
        "exit",
        "for",
        "ftype",
        "goto",
        "if",
        "md",
        "mkdir",
        "mklink",
        "move",
        "path",
        "pause",
        "popd",
        "prompt",
        "pushd",
        "rd",
        "rem",
        "ren",
        "rename",
        "rmdir",
        "set",
        "setlocal",
        "shift",
        "time",
        "title",
        "type",
        "ver",
        "verify",
        "vol",
    ]
)
# start's switches; /d and /node and /affinity take a value.
START_SWITCHES_WITH_VALUE = ("/d", "/node", "/affinity")


@dataclass(frozen=True)
class ExportCall:
    """A function of the DLL the program calls after DllMain: the first of ``names`` the DLL
    exports (a name, or ``#n`` an ordinal), with the arguments of ``convention``."""

    names: tuple[str, ...]
    convention: str  # "rundll32": (hwnd, hinst, text, nCmdShow); "none": (); "dllinstall": (install, text)
    text: str = ""
    wide: bool = False  # the text is UTF-16 (rundll32's ...W export, DllInstall)
    install: bool = True  # DllInstall's bInstall


@dataclass(frozen=True)
class Target:
    """What a system program runs: a program (``kind`` exe, with its command line) or a DLL
    (``kind`` dll: DllMain, then ``calls``)."""

    program: str  # the system program the parent started (its path as Windows shows it)
    process: str  # the path of the process the file runs in (the program for a DLL, else the file as named)
    kind: str  # exe, dll
    name: str  # the file as the command line names it (a bare name is searched for)
    command_line: str  # the process's command line
    calls: tuple[ExportCall, ...] = field(default_factory=tuple)


def system_folder(arch: str) -> str:
    """Where the guest's system programs are, as Windows shows a process started from them: a
    32-bit process's System32 is SysWOW64 (file system redirection)."""
    return "C:\\Windows\\SysWOW64" if arch == "x86" else "C:\\Windows\\System32"


def split_first(text: str) -> tuple[str, str]:
    """(first token without its quotes, the rest with its leading blanks removed), as Windows'
    command-line parsing reads a program name: a quoted token ends at the next quote."""
    text = text.lstrip()
    if not text:
        return "", ""
    if text[0] == '"':
        end = text.find('"', 1)
        if end < 0:
            return text[1:], ""
        return text[1:end], text[end + 1 :].lstrip()
    match = re.match(r"[^\s]+", text)
    token = match.group(0) if match else text
    return token, text[len(token) :].lstrip()


def is_batch_file(name: str) -> bool:
    """A batch file (``.bat``, ``.cmd``): cmd.exe interprets it itself, no program runs it."""
    return ntpath.basename(name.strip().strip('"')).lower().endswith(BATCH_EXTENSIONS)


def program_key(name: str) -> str:
    """The table's key of a program name: its file name, lower-case, without ``.exe``."""
    base = ntpath.basename(name.strip().strip('"')).lower()
    return base[:-4] if base.endswith(".exe") else base


def targets(name: str, command_line: str, arch: str, expand: Callable[[str], str], depth: int = 0) -> list[Target]:
    """What the system program ``name`` (as the parent named it) runs when started with
    ``command_line`` (the whole line, the program first); [] for a program not in the table
    or a command line that names nothing to run."""
    reader = PROGRAMS.get(program_key(name))
    if reader is None or depth > MAX_NESTING:
        return []
    path = ntpath.join(system_folder(arch), program_key(name) + ".exe")
    _, tail = split_first(command_line)
    # A DLL's process has the command line the program was given; a program cmd starts, its own.
    return [
        Target(t.program, t.process, t.kind, t.name, command_line.strip(), t.calls)
        if t.kind == "dll" and t.process == path
        else t
        for t in reader(path, tail, arch, expand, depth)
    ]


def _rundll32(path: str, tail: str, arch: str, expand: Callable[[str], str], depth: int) -> list[Target]:
    """``rundll32.exe X.dll,Export [args]``: the DLL (quoted, or up to the comma), then the export
    (a name or ``#ordinal``), its text the rest of the line."""
    tail = tail.strip()
    if not tail:
        return []
    if tail[0] == '"':
        end = tail.find('"', 1)
        if end < 0:
            return []
        dll, rest = tail[1:end], tail[end + 1 :].lstrip()
        rest = rest[1:] if rest.startswith(",") else rest
    else:
        match = re.match(r"([^,\s]+)\s*,?", tail)
        if match is None:
            return []
        dll, rest = match.group(1), tail[match.end() :]
    export, text = split_first(rest)
    export = export.rstrip(",")
    if not dll or not export:
        return []
    if export.startswith("#"):
        names: tuple[str, ...] = (export,)
        call = ExportCall(names, "rundll32", text)
    else:
        # rundll32 prefers the Unicode form of the export, then the name as given, then the ANSI one.
        call = ExportCall((export + "W", export, export + "A"), "rundll32", text)
    return [Target(path, path, "dll", dll, tail, (call,))]


def _regsvr32(path: str, tail: str, arch: str, expand: Callable[[str], str], depth: int) -> list[Target]:
    """``regsvr32.exe [/s] [/u] [/n] [/i[:cmdline]] X.dll ...``: DllMain, then DllRegisterServer
    (DllUnregisterServer with /u) unless /n, and DllInstall with /i (its text the /i: value)."""
    unregister = install = no_register = False
    text = ""
    dlls: list[str] = []
    rest = tail
    while rest:
        token, rest = split_first(rest)
        lower = token.lower()
        if lower.startswith(("/", "-")) and len(lower) > 1:
            switch = lower[1:]
            if switch == "u":
                unregister = True
            elif switch == "n":
                no_register = True
            elif switch.startswith("i"):
                install = True
                text = token[3:] if switch.startswith("i:") else ""
            continue  # /s (silent), /e, /c: nothing to run
        if token:
            dlls.append(token)
    calls: list[ExportCall] = []
    if not no_register and not (unregister and install):
        calls.append(ExportCall(("DllUnregisterServer" if unregister else "DllRegisterServer",), "none"))
    if install:
        calls.append(ExportCall(("DllInstall",), "dllinstall", text.strip('"'), wide=True, install=not unregister))
    if unregister and install and not no_register:
        calls.append(ExportCall(("DllUnregisterServer",), "none"))
    return [Target(path, path, "dll", dll, tail, tuple(calls)) for dll in dlls]


def _cmd(path: str, tail: str, arch: str, expand: Callable[[str], str], depth: int) -> list[Target]:
    """``cmd.exe [/q /d ...] /c|/k <command>``: each command of the line (``&``, ``&&``,
    ``||``, ``|``, parentheses) whose program is a file (``start ["title"] [switches] X``, or
    ``X args``); a system program of the table is read in turn. Every command, whatever its
    condition (:func:`cmd_chain` says which run)."""
    node = _cmd_node(path, tail, arch, expand, depth)
    return [t for command in _leaves(node) for t in command.targets] if node is not None else []


@dataclass(frozen=True)
class CmdCommand:
    """One command of a cmd line: its text and what it runs of the guest's (``targets``; none
    for a built-in command or a program that is no file of the guest's)."""

    text: str
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class CmdOp:
    """Two parts of a cmd line joined by ``op``: ``&`` (both), ``&&`` (the right one if the left
    one's exit code is 0), ``||`` (the right one if it is not), ``|`` (both: a pipe)."""

    op: str
    left: CmdNode
    right: CmdNode


CmdNode = CmdCommand | CmdOp


@dataclass(frozen=True)
class CmdSkipped:
    """Commands a condition did not run: ``commands`` (their text) after ``op`` when the part
    before it ended with exit code ``code``."""

    commands: tuple[str, ...]
    op: str
    code: int


def cmd_chain(name: str, command_line: str, arch: str, expand: Callable[[str], str]) -> CmdNode | None:
    """The commands of a ``cmd.exe /c`` (or ``/k``) command line as cmd groups them, each with
    what it runs; None for another program or a line with no command."""
    if program_key(name) != "cmd":
        return None
    _, tail = split_first(command_line)
    return _cmd_node(ntpath.join(system_folder(arch), "cmd.exe"), tail, arch, expand, 0)


def cmd_steps(node: CmdNode) -> Generator[CmdCommand | CmdSkipped, int | None, int]:
    """Run a cmd line: yields each command to run (send its exit code back) and each part a
    condition skips (send None); returns the line's exit code. cmd's precedence (ReactOS's
    parser, as Windows'): ``|`` binds tightest, then ``&&``, then ``||``, then ``&``."""
    if isinstance(node, CmdCommand):
        code = yield node
        return int(code or 0)
    left = yield from cmd_steps(node.left)
    if node.op == "&&" and left != 0 or node.op == "||" and left == 0:
        yield CmdSkipped(tuple(c.text for c in _leaves(node.right)), node.op, left)
        return left
    return (yield from cmd_steps(node.right))


def _leaves(node: CmdNode) -> list[CmdCommand]:
    if isinstance(node, CmdCommand):
        return [node]
    return _leaves(node.left) + _leaves(node.right)


def cmd_command(tail: str) -> str | None:
    """The command line cmd.exe runs, from its arguments ``tail`` (what follows ``/c``, ``/k``
    or ``/r``), its outer quotes taken off as cmd does; None without one of those switches."""
    match = re.search(r"(?i)(?:^|\s)/[ckr](?=\s|\"|$)", tail)
    if match is None:
        return None
    command = tail[match.end() :].strip()
    if command.startswith('"') and command.endswith('"') and command.count('"') > 2:
        command = command[1:-1]  # cmd's rule: the outer quotes of a command that has more
    return command


def _cmd_node(path: str, tail: str, arch: str, expand: Callable[[str], str], depth: int) -> CmdNode | None:
    command = cmd_command(tail)
    if command is None:
        return None
    command = expand(command)
    node = _parse_line(command)
    return _with_targets(node, path, arch, expand, depth) if node is not None else None


def _parse_line(line: str) -> CmdNode | None:
    """A cmd line's tree of commands (what follows an unmatched group, ``(a) b``, as after ``&``)."""
    tokens = _cmd_tokens(line)
    node: CmdNode | None = None
    i = 0
    while i < len(tokens):
        more, after = _parse_cmd(tokens, i, 0)
        i = after if after > i else i + 1
        if more is not None:
            node = more if node is None else CmdOp("&", node, more)
    return node


def _commands(line: str) -> list[str]:
    """The commands of a cmd line, in order, whatever their conditions."""
    node = _parse_line(line)
    return [c.text for c in _leaves(node)] if node is not None else []


def _with_targets(node: CmdNode, path: str, arch: str, expand: Callable[[str], str], depth: int) -> CmdNode:
    if isinstance(node, CmdOp):
        left = _with_targets(node.left, path, arch, expand, depth)
        return CmdOp(node.op, left, _with_targets(node.right, path, arch, expand, depth))
    return CmdCommand(node.text, tuple(_command_targets(path, node.text, arch, expand, depth)))


def _command_targets(path: str, part: str, arch: str, expand: Callable[[str], str], depth: int) -> list[Target]:
    """What one command of a cmd line runs of the guest's files."""
    program, args = split_first(part)
    if program.lower() == "start":
        program, args = _start_program(args)
    if not program or program_key(program) in CMD_BUILTINS or is_batch_file(program):
        # cmd's own commands, and a batch file, which cmd interprets itself (not emulated:
        # scripthosts.py notes it; its exit code counts as 0, as a built-in's)
        return []
    line = f'"{program}" {args}'.rstrip() if " " in program else f"{program} {args}".rstrip()
    nested = targets(program, line, arch, expand, depth + 1)
    if nested or program_key(program) in PROGRAMS:
        return [Target(path, t.process, t.kind, t.name, t.command_line, t.calls) for t in nested]
    return [Target(path, program, "exe", program, line)]


# cmd's operators, loosest first (``|`` binds tightest).
CMD_OPERATORS = ("&", "||", "&&", "|")


def _cmd_tokens(line: str) -> list[str]:
    """A cmd line as commands and operators (``&``, ``&&``, ``||``, ``|``, ``(``, ``)``),
    quotes respected; a ``(`` opens a group only where a command starts, a ``)`` closes one
    only inside a group."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = False
    depth = 0
    i = 0

    def flush() -> None:
        text = "".join(current).strip()
        if text:
            tokens.append(text)
        current.clear()

    while i < len(line):
        ch = line[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "&|":
            flush()
            double = i + 1 < len(line) and line[i + 1] == ch
            tokens.append(ch * 2 if double else ch)
            i += 2 if double else 1
            continue
        elif not quoted and ch == "(" and not "".join(current).strip():
            flush()
            tokens.append("(")
            depth += 1
            i += 1
            continue
        elif not quoted and ch == ")" and depth:
            flush()
            tokens.append(")")
            depth -= 1
            i += 1
            continue
        current.append(ch)
        i += 1
    flush()
    return tokens


def _parse_cmd(tokens: list[str], i: int, level: int) -> tuple[CmdNode | None, int]:
    """The part of ``tokens`` from ``i`` whose operators bind at least as tightly as
    ``CMD_OPERATORS[level]``: (its tree, the index after it). Empty commands are dropped (``a &``,
    ``& b``)."""
    if level == len(CMD_OPERATORS):
        if i < len(tokens) and tokens[i] == "(":
            node, i = _parse_cmd(tokens, i + 1, 0)
            if i < len(tokens) and tokens[i] == ")":
                i += 1
            return node, i
        if i < len(tokens) and tokens[i] not in CMD_OPERATORS and tokens[i] != ")":
            return CmdCommand(tokens[i]), i + 1
        return None, i
    op = CMD_OPERATORS[level]
    node, i = _parse_cmd(tokens, i, level + 1)
    while i < len(tokens) and tokens[i] == op:
        right, i = _parse_cmd(tokens, i + 1, level + 1)
        if right is not None:
            node = right if node is None else CmdOp(op, node, right)
    return node, i


def _start_program(args: str) -> tuple[str, str]:
    """The program ``start`` runs and its arguments: a first quoted token is the window title,
    then start's switches."""
    rest = args.lstrip()
    if rest.startswith('"'):
        _, rest = split_first(rest)  # the title
    while rest.startswith("/"):
        switch, rest = split_first(rest)
        if switch.lower() in START_SWITCHES_WITH_VALUE:
            _, rest = split_first(rest)
        elif switch.lower().startswith("/d") and len(switch) > 2:
            continue  # /dPATH
    return split_first(rest)


def expand_variables(text: str, env: dict[str, str]) -> str:
    """``%NAME%`` replaced by the guest's variable (names are case-insensitive); an unknown one
    is left as written, as cmd leaves it."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = env.get(name.lower())
        return found.rstrip("\\") if found is not None else match.group(0)

    return re.sub(r"%([^%\s]+)%", value, text)


PROGRAMS: dict[str, Callable[[str, str, str, Callable[[str], str], int], list[Target]]] = {
    "rundll32": _rundll32,
    "regsvr32": _regsvr32,
    "cmd": _cmd,
}
