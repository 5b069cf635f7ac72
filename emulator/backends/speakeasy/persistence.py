"""Persistence set up through system programs: what each would make run later, read from its
command line.

``schtasks.exe /create ... /tr <command>`` (T1053.005), ``sc.exe create <name> binPath= <command>``
(T1543.003) and ``reg.exe add <autostart key> /v <name> /d <command>`` (T1547.001) are no files of
the guest and the emulator runs none of them: the replay showed a process node (schtasks's with
its technique, sc's and reg's with none) and never said what would run, nor that it is a file the
chain itself wrote. This module reads the command line as the program does (its arguments split
as ``CommandLineToArgvW`` splits them) and says what the task, service or value would start and
when. A program started through ``cmd /c`` is read in turn. children.py records each as a note
``persistence_command`` on the stage that started it (emulator/data/attack.toml gives the
techniques). Whether the program would run later is the note's to say: it is not run.

Pure text: no emulator here (tests read it directly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from emulator.backends.speakeasy import lolbins

# Registry keys whose values Windows runs (the Run keys, Winlogon's programs, a debugger of
# another program), as reg.exe names them (any root spelling).
AUTOSTART_KEYS = (
    "\\software\\microsoft\\windows\\currentversion\\run",
    "\\software\\microsoft\\windows\\currentversion\\runonce",
    "\\software\\microsoft\\windows\\currentversion\\runonceex",
    "\\software\\microsoft\\windows\\currentversion\\policies\\explorer\\run",
    "\\software\\wow6432node\\microsoft\\windows\\currentversion\\run",
    "\\software\\wow6432node\\microsoft\\windows\\currentversion\\runonce",
    "\\software\\microsoft\\windows nt\\currentversion\\winlogon",
    "\\software\\microsoft\\windows nt\\currentversion\\image file execution options\\",
)
ROOTS = {
    "hkcu": "HKEY_CURRENT_USER",
    "hkey_current_user": "HKEY_CURRENT_USER",
    "hklm": "HKEY_LOCAL_MACHINE",
    "hkey_local_machine": "HKEY_LOCAL_MACHINE",
    "hku": "HKEY_USERS",
    "hkey_users": "HKEY_USERS",
}
MAX_TEXT = 1000


@dataclass(frozen=True)
class PersistenceCommand:
    """What a system program was told to make run later: ``mechanism`` ``task``, ``service`` or
    ``autostart value``; ``name`` the task, service or value; ``when`` its trigger or key;
    ``command`` the command line it would run; ``target`` that command's program."""

    program: str  # the system program's file name, lower-case (schtasks.exe)
    verb: str  # create, config, add
    mechanism: str
    name: str
    when: str
    command: str

    @property
    def target(self) -> str:
        return lolbins.split_first(self.command)[0]

    def detail(self, guest_file: bool) -> str:
        """The note's text; ``guest_file``: the target is one of the guest's files."""
        command = self.command if len(self.command) <= MAX_TEXT else self.command[:MAX_TEXT] + " [cut]"
        whose = " (one of the guest's files)" if guest_file else ""
        head = f"{self.program} {self.verb}: {self.mechanism} {self.name!r} ({self.when}) runs {command}"
        return f"{head}; program {self.target}{whose}; it would run later: the replay does not run it"


def persistence_commands(
    name: str, command_line: str, expand: Callable[[str], str], depth: int = 0
) -> list[PersistenceCommand]:
    """What the program ``name`` started with ``command_line`` (the program first) would make run
    later: [] for a program that sets no persistence (or a command line that names nothing)."""
    if depth > lolbins.MAX_NESTING:
        return []
    key = lolbins.program_key(name)
    _, tail = lolbins.split_first(command_line)
    args = split_arguments(tail)
    found: PersistenceCommand | None = None
    if key == "schtasks":
        found = _schtasks(args)
    elif key == "sc":
        found = _sc(args)
    elif key == "reg":
        found = _reg(args)
    elif key == "cmd":
        command = lolbins.cmd_command(tail)
        if command is None:
            return []
        out: list[PersistenceCommand] = []
        for part in lolbins._commands(expand(command)):
            program, _ = lolbins.split_first(part)
            out += persistence_commands(program, part, expand, depth + 1)
        return out
    return [found] if found is not None else []


def split_arguments(text: str) -> list[str]:
    """The arguments as ``CommandLineToArgvW`` splits them: blanks separate, quotes group,
    ``\\"`` is a quote, backslashes before a quote halve."""
    args: list[str] = []
    current: list[str] = []
    quoted = in_arg = False
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t" and not quoted:
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
            i += 1
            continue
        in_arg = True
        if c == "\\":
            run = len(text[i:]) - len(text[i:].lstrip("\\"))
            if i + run < len(text) and text[i + run] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += run + 1
                else:
                    i += run
                continue
            current.append("\\" * run)
            i += run
            continue
        if c == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current.append('"')  # "" inside quotes: a quote (the msvcrt rule since 2008)
                i += 2
                continue
            quoted = not quoted
            i += 1
            continue
        current.append(c)
        i += 1
    if in_arg:
        args.append("".join(current))
    return args


def _switches(args: list[str], prefix: str = "/") -> dict[str, str]:
    """``/name value`` pairs (lower-case names; a switch without a value maps to "")."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg[:1] in (prefix, "-") and len(arg) > 1:
            value = args[i + 1] if i + 1 < len(args) and args[i + 1][:1] not in (prefix, "-") else ""
            out[arg[1:].lower()] = value
            i += 2 if value else 1
            continue
        i += 1
    return out


def _schtasks(args: list[str]) -> PersistenceCommand | None:
    if not args or args[0].lower() not in ("/create", "-create"):
        return None
    switches = _switches(args[1:])
    command = switches.get("tr", "")
    if not command:
        return None  # /xml: the task's definition is in a file
    trigger = switches.get("sc", "") or "no schedule"
    extra = [f"/ru {switches['ru']}"] if switches.get("ru") else []
    if "rl" in switches:
        extra.append(f"/rl {switches['rl']}")
    when = ", ".join([f"/sc {trigger}", *extra])
    return PersistenceCommand("schtasks.exe", "/create", "task", switches.get("tn", ""), when, command)


def _sc(args: list[str]) -> PersistenceCommand | None:
    rest = args[1:] if args and args[0].startswith("\\\\") else args  # sc \\server create ...
    if len(rest) < 2 or rest[0].lower() not in ("create", "config"):
        return None
    values: dict[str, str] = {}
    i = 2
    while i < len(rest):
        option, sep, inline = rest[i].partition("=")
        if sep:
            if inline:
                values[option.lower()] = inline
                i += 1
            else:
                values[option.lower()] = rest[i + 1] if i + 1 < len(rest) else ""
                i += 2
            continue
        i += 1
    command = values.get("binpath", "")
    if not command:
        return None
    when = f"start= {values['start']}" if "start" in values else "start= demand"
    return PersistenceCommand("sc.exe", rest[0].lower(), "service", rest[1], when, command)


def _reg(args: list[str]) -> PersistenceCommand | None:
    if len(args) < 2 or args[0].lower() != "add":
        return None
    key = _full_key(args[1])
    if not any(part in key.lower() + "\\" for part in AUTOSTART_KEYS):
        return None
    switches = _switches(args[2:])
    command = switches.get("d", "")
    if not command:
        return None
    name = "(Default)" if "ve" in switches else switches.get("v", "")
    return PersistenceCommand("reg.exe", "add", "autostart value", name, key, command)


def _full_key(text: str) -> str:
    root, sep, rest = text.strip().partition("\\")
    full = ROOTS.get(root.lower(), root.upper())
    return f"{full}\\{rest}" if sep else full
