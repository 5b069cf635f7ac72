"""Script hosts a chain starts: what each would have run, read from its command line.

``powershell.exe -EncodedCommand <base64>`` (T1059.001, T1027.010), ``mshta.exe http://...``
(T1218.005), ``wscript.exe x.js``: the guest has no such programs and the emulator runs no
script, so the replay would show only a process node. This module reads the command line as the
host does and says what it was given: PowerShell's command (an encoded one decoded from its
UTF-16LE base64, as analysts expect a sandbox's "decoded command line"), its script file, mshta's
URL, file or inline script, the Windows Script Host's script file, and the URLs named in it. A
host started through ``cmd /c`` is read in turn. children.py records each as a note
``script_command`` on the stage that started it.

Pure text: no emulator here (tests read it directly).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from emulator.backends.speakeasy import lolbins

# Characters of a decoded command kept in a note (the rest is cut, and the note says so).
MAX_SCRIPT_TEXT = 4000
MAX_URLS = 20
# powershell.exe's parameters that take a value (any unambiguous prefix, or an alias).
_PS_VALUE_PARAMETERS = (
    "executionpolicy",
    "windowstyle",
    "version",
    "psconsolefile",
    "inputformat",
    "outputformat",
    "configurationname",
    "workingdirectory",
    "settingsfile",
    "custompipename",
)
_PS_VALUE_ALIASES = frozenset(["ep", "ex", "w", "v", "if", "of", "wd", "config"])
_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"`<>(){}\[\]|;,]+")
_DASHES = "-/\u2013\u2014\u2015"


@dataclass(frozen=True)
class ScriptCommand:
    """What a script host was given: ``how`` EncodedCommand, Command, File (PowerShell), url,
    inline, file (mshta), script (wscript, cscript), batch (a batch file cmd runs); ``text`` the
    command, decoded, or the file or URL; ``error`` why an encoded command could not be decoded."""

    program: str  # the host's file name, lower-case (powershell.exe)
    how: str
    text: str
    urls: tuple[str, ...] = ()
    encoded: bool = False
    error: str = ""

    def detail(self) -> str:
        """The note's text."""
        shown = self.text if len(self.text) <= MAX_SCRIPT_TEXT else self.text[:MAX_SCRIPT_TEXT] + " [cut]"
        flag = "-" + self.how if self.program in ("powershell.exe", "pwsh.exe") else self.how
        if self.error:
            head = f"{self.program} {flag}, not decoded ({self.error}): {shown}"
        elif self.encoded:
            head = f"{self.program} {flag}, decoded from UTF-16LE base64: {shown}"
        else:
            head = f"{self.program} {flag}: {shown}"
        urls = f"; URLs: {', '.join(self.urls)}" if self.urls else ""
        return f"{head}{urls}; the script host is not emulated"


def script_commands(name: str, command_line: str, expand: Callable[[str], str], depth: int = 0) -> list[ScriptCommand]:
    """What the program ``name`` started with ``command_line`` (the program first) would run as
    scripts: [] for a program that is no script host (or names nothing)."""
    if depth > lolbins.MAX_NESTING:
        return []
    key = lolbins.program_key(name)
    _, tail = lolbins.split_first(command_line)
    if key in ("powershell", "pwsh"):
        found = _powershell(key + ".exe", tail)
        return [found] if found is not None else []
    if key == "mshta":
        found = _mshta(tail)
        return [found] if found is not None else []
    if key in ("wscript", "cscript"):
        found = _wsh(key + ".exe", tail)
        return [found] if found is not None else []
    if key == "cmd":
        command = lolbins.cmd_command(tail)
        if command is None:
            return []
        found_all: list[ScriptCommand] = []
        for part in lolbins._commands(expand(command)):
            program, args = lolbins.split_first(part)
            if program.lower() == "start":
                program, args = lolbins._start_program(args)
            if lolbins.is_batch_file(program):
                # a batch file cmd interprets itself (T1059.003 comes from starting cmd)
                found_all.append(ScriptCommand("cmd.exe", "batch", program, urls_in(args)))
                continue
            found_all += script_commands(program, part, expand, depth + 1)
        return found_all
    return []


def urls_in(text: str) -> tuple[str, ...]:
    found = dict.fromkeys(u.rstrip(".'\"") for u in _URL.findall(text))
    return tuple(found)[:MAX_URLS]


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(token without its quotes, where it starts, where the next one may start) for each
    blank-separated token."""
    out: list[tuple[str, int, int]] = []
    rest, offset = text, 0
    while True:
        stripped = rest.lstrip()
        offset += len(rest) - len(stripped)
        if not stripped:
            return out
        token, after = lolbins.split_first(stripped)
        start = offset
        offset += len(stripped) - len(after)
        out.append((token, start, offset))
        rest = after


def _parameter(token: str) -> str | None:
    if len(token) < 2 or token[0] not in _DASHES:
        return None
    return token.lstrip(_DASHES).lower()


def _powershell(program: str, tail: str) -> ScriptCommand | None:
    tokens = _tokens(tail)
    i = 0
    while i < len(tokens):
        token, start, end = tokens[i]
        name = _parameter(token)
        if name is None:
            # the first positional argument starts the command (Windows PowerShell's -Command)
            command = tail[start:].strip()
            return ScriptCommand(program, "Command", command, urls_in(command))
        if name in ("e", "ec") or (name.startswith("en") and "encodedcommand".startswith(name)):
            value = tokens[i + 1][0] if i + 1 < len(tokens) else ""
            return _decoded(program, value)
        if name.startswith("c") and "command".startswith(name):
            command = tail[end:].strip()
            return ScriptCommand(program, "Command", command, urls_in(command))
        if name.startswith("f") and "file".startswith(name):
            path = tokens[i + 1][0] if i + 1 < len(tokens) else ""
            return ScriptCommand(program, "File", path, urls_in(path)) if path else None
        if name in _PS_VALUE_ALIASES or any(p.startswith(name) for p in _PS_VALUE_PARAMETERS):
            i += 2
            continue
        i += 1
    return None


def _decoded(program: str, value: str) -> ScriptCommand:
    text = re.sub(r"\s+", "", value.strip("'\""))
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return ScriptCommand(program, "EncodedCommand", value, encoded=True, error="not base64")
    if len(raw) % 2:
        return ScriptCommand(program, "EncodedCommand", value, encoded=True, error="not UTF-16LE")
    decoded = raw.decode("utf-16-le", "replace")
    return ScriptCommand(program, "EncodedCommand", decoded, urls_in(decoded), encoded=True)


def _mshta(tail: str) -> ScriptCommand | None:
    tokens = _tokens(tail)
    if not tokens:
        return None
    first = tokens[0][0]
    lowered = first.lower()
    if lowered.startswith(("javascript:", "vbscript:")):
        return ScriptCommand("mshta.exe", "inline", tail.strip(), urls_in(tail))
    how = "url" if re.match(r"(?i)^(?:https?|ftp)://", first) else "file"
    return ScriptCommand("mshta.exe", how, first, urls_in(first))


def _wsh(program: str, tail: str) -> ScriptCommand | None:
    for token, _, _ in _tokens(tail):
        if token.startswith("//"):
            continue  # the host's own switches (//B, //E:jscript, //nologo)
        return ScriptCommand(program, "script", token, urls_in(token))
    return None
