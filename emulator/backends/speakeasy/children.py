"""Child processes started from the guest's own files, emulated in the same replay.

A process the guest starts (``CreateProcess*``, ``CreateProcessInternal*``,
``CreateProcessAsUser*``, ``WinExec``, ``ShellExecute*``) whose image is a PE file in the
guest's file system (a file the sample wrote or downloaded, or one the scenario serves) of the
guest's architecture, an EXE, is mapped beside the parent (relocated when its preferred base is
taken) and its entry point run as that process: its own command line, ``GetModuleHandle(NULL)``,
``GetModuleFileName(NULL)`` and PEB image base. Its first execution is a ``pe`` stage whose
origin is the file it was started from (the loader's read of that file is what the lineage ties
its image to), ``parent`` the stage that started it, ``via: process`` and ``process`` its image
path. A program named without a folder is searched for as Windows does (the launcher's folder,
System32, the Windows folder, %PATH%). A system program that runs what it is given
(``rundll32.exe``, ``regsvr32.exe``, ``cmd.exe``: lolbins.py reads its command line) runs the
guest file it names as that program would: a DLL's DllMain then the exports the program calls, in
the program's process (a ``module`` stage whose ``process`` is the program's path), or a program
(``cmd /c start x.exe``) in its own; the stage names the program (``system_program``) and the file
(``run_file``). A process whose image is not a guest file (``notepad.exe``, a system program
whose target is not one) is Speakeasy's object only, as before; a guest file that cannot run
(not a PE, a DLL, the other architecture, a base it cannot be moved from) is a
``child_process_not_run`` note naming why.

When a child runs: inside the parent's wait for it, if the parent waits for it (waits.py: a
wait, a second poll or ``GetExitCodeProcess``, which runs :meth:`ChildProcesses.start_now`'s image
there, as that process); otherwise after the parent's runs, as Speakeasy's own ``run_module(...,
emulate_children=True)`` does (``speakeasy/windows/win32.py``: the queue of child processes is
emulated once ``start()`` has run the parent's run queue dry). Speakeasy has one CPU context and
runs each run (the entry point, every thread) to its end before the next, never two at once
(docs/limitations.md, "Threads run one after another"); starting a child at its
``CreateProcess`` would mean suspending the parent's run in the middle of an API call, which
its run loop cannot do, and a child run as a queued thread of the parent would share its
command line, module globals and ``ExitProcess``. Run after the parent, each child gets the
emulator's process state to itself (current process, command line, PEB), its ``ExitProcess``
ends its own runs only, and the parent's ``ExitProcess`` (which ends the parent's run) loses no
child: children wait in their own queue. A child started ``CREATE_SUSPENDED`` runs when a
``ResumeThread`` (or ``NtResumeThread``) of its main thread brings the count to zero; a suspended child whose thread's
context the parent changed (``SetThreadContext``: thread hijacking, hollowing) runs that code
as Speakeasy always did, not its image. At most ``max_child_processes`` children run in one
replay; the next one to start ends the replay with that limit named.

Each child's exit code is recorded however it ran (:attr:`ChildProcesses.exit_codes`, the one
record waits.py shares and ``GetExitCodeProcess`` answers from): the code it gave
``ExitProcess``, ``RtlExitUserProcess`` or ``TerminateProcess`` of itself, else its entry point's
return value. cmd's commands (``a && b || c``) run one at a time: the next one is chosen by
lolbins.cmd_steps from the exit code of the one before when that one ends (after the parent, or
inside a wait); a command that runs none of the guest's files counts as 0; what a condition skips
is a ``cmd_command_skipped`` note; cmd's process ends with the line's exit code.
"""

from __future__ import annotations

import logging
import ntpath
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pefile

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.base import ReplayStop
from emulator.backends.speakeasy import compat, compat_blocks, lolbins, persistence, scripthosts
from emulator.backends.speakeasy.flow import FlowWatch
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.sources import read_c_string
from emulator.limits import MAX_COMMAND_LINE_CHARS
from emulator.outcome import Status
from emulator.recorder import Recorder

logger = logging.getLogger(__name__)

# API (module, name) -> how it names the program: ("create", index of lpApplicationName) for the
# CreateProcess family, ("winexec", 0), ("shell", index of lpFile, of lpParameters), ("shellex", 0).
START_APIS: dict[tuple[str, str], tuple[str, int]] = {
    ("kernel32", "CreateProcessA"): ("create", 0),
    ("kernel32", "CreateProcessW"): ("create", 0),
    ("kernel32", "CreateProcessInternalA"): ("create", 1),
    ("kernel32", "CreateProcessInternalW"): ("create", 1),
    ("advapi32", "CreateProcessAsUserA"): ("create", 1),
    ("advapi32", "CreateProcessAsUserW"): ("create", 1),
    ("kernel32", "WinExec"): ("winexec", 0),
    ("shell32", "ShellExecuteA"): ("shell", 2),
    ("shell32", "ShellExecuteW"): ("shell", 2),
    ("shell32", "ShellExecuteExA"): ("shellex", 0),
    ("shell32", "ShellExecuteExW"): ("shellex", 0),
}
RESUME_APIS = (("kernel32", "ResumeThread"),)
COMMAND_LINE_APIS = (("kernel32", "GetCommandLineA"), ("kernel32", "GetCommandLineW"))
ERROR_FILENAME_EXCED_RANGE = 206
NATIVE_RESUME_APIS = (("ntdll", "NtResumeThread"), ("ntdll", "ZwResumeThread"))
STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
# CreateProcess's dwCreationFlags: the process's main thread starts suspended.
CREATE_SUSPENDED = 0x4
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
IMAGE_FILE_DLL = 0x2000
DLL_PROCESS_ATTACH = 1
MAX_PATH_CHARS = 32767
NOTE = "child_process_not_run"
# A command of a cmd line its condition did not run (``&&`` after a failure, ``||`` after a success).
SKIP_NOTE = "cmd_command_skipped"
# The exit code of a guest program that could not run (not a PE, the other architecture): cmd's
# next condition sees a failure, as it would see the program fail to start.
NOT_RUN_EXIT_CODE = 1
# The exit code of a command whose program is not emulated (a system program: whoami, certutil).
NOT_EMULATED_EXIT_CODE = 0
# What a script host the guest started (powershell, mshta, wscript) would have run (scripthosts.py).
SCRIPT_NOTE = "script_command"
# What a system program the guest started would make run later: a task, a service, an autostart
# value (persistence.py).
PERSISTENCE_NOTE = "persistence_command"


@dataclass
class Launch:
    """A process the guest started from one of its files, waiting to run."""

    process: Any  # Speakeasy's process object
    path: str
    command_line: str
    data: bytes  # the image file's bytes when the process was created
    parent: str  # the stage that started it
    api: str
    suspended: bool = False
    context: Any = None  # the main thread's context when created: SetThreadContext replaces it
    kind: str = "exe"  # exe: the file is the process's image; dll: a system program loads it
    process_path: str = ""  # the process's image path (the file's, or the system program's)
    system_program: str | None = None  # the system program the parent started that ran the file
    calls: tuple[lolbins.ExportCall, ...] = ()  # a DLL's exports the system program calls
    started: Any = None  # the process object the parent started (its main thread is resumed)
    chain: Any = None  # the cmd line (_CmdRun) whose command this is: its end decides what runs next


@dataclass
class _CmdRun:
    """A ``cmd.exe /c`` line being run, one command at a time: the next one is decided by the
    exit code of the one before (lolbins.cmd_steps)."""

    steps: Any  # lolbins.cmd_steps's generator
    process: Any  # cmd's process object (the parent's handle names it)
    path: str  # cmd's path
    api: str
    parent: str = ""
    context: Any = None
    waiting: list[Launch] = field(default_factory=list)  # the current command's launches not ended
    code: int = 0  # the exit code of the current command (its last launch's)


class ChildProcesses:
    def __init__(
        self,
        se: Any,
        emu: Any,
        memory: GuestMemory,
        recorder: Recorder,
        watch: MemoryWatch,
        flow: FlowWatch,
        arch: str,
        app_path: str,
        limit: int,
        stop_now: Any,
    ) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.recorder = recorder
        self.watch = watch
        self.flow = flow
        self.arch = arch
        self.app_folder = ntpath.dirname(app_path)
        self.limit = limit
        self.stop_now = stop_now
        self.pending: list[Launch] = []
        self.launches: list[Launch] = []  # every program started from the guest's files
        # Processes started that are not emulated (no guest file: notepad.exe), by id of their main
        # thread: (thread, its context when created). Resuming one whose context the guest left
        # alone runs nothing (its program is not emulated); a changed context runs as before.
        self.not_emulated: dict[int, tuple[Any, Any]] = {}
        self.started = 0  # children that ran (or were mapped to run)
        # id(thread or process object) -> its exit code: children's (here, however they ran) and
        # the threads and children a wait ran (waits.py shares this one record).
        self.exit_codes: dict[int, int] = {}
        self.running: list[Launch] = []  # the children run now (after the parent), innermost last
        self.command_lines: dict[tuple[int, bool, str], int] = {}  # (id(process), wide, line) -> its buffer
        self.on_new_code: Any = None
        self.on_context_resumed: Callable[[int], None] | None = None

    def install(self) -> None:
        for (module, name), (how, index) in START_APIS.items():

            def hook(
                emu: Any, api_name: str, orig: Any, argv: list[int], _n: str = name, _h: str = how, _i: int = index
            ) -> Any:
                return self._on_start(_n, _h, _i, orig, list(argv))

            self.se.add_api_hook(hook, module, name)
        for module, name in RESUME_APIS:
            self.se.add_api_hook(self._on_resume, module, name)
        for module, name in NATIVE_RESUME_APIS:
            self.se.add_api_hook(self._on_native_resume, module, name, argc=2)
        for module, name in COMMAND_LINE_APIS:
            self.se.add_api_hook(self._on_command_line, module, name, argc=0)

    def _on_command_line(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """GetCommandLine in a child: its own command line, NUL-terminated, in a buffer of its own
        (Speakeasy's one buffer per width is sized for the first line asked for and written
        without a terminator: a shorter line of a later child kept the end of a longer one)."""
        process = compat.current_process(self.emu)
        if not any(launch.process is process for launch in self.launches):
            if api_name.endswith("W"):
                # Windows' is the PEB's own buffer (ProcessParameters.CommandLine.Buffer).
                buffer = compat_blocks.command_line_buffer(self.emu, process)
                if buffer:
                    return buffer
            return orig(argv)
        wide = api_name.endswith("W")
        text = str(getattr(process, "cmdline", "") or "")
        key = (id(process), wide, text)
        if key not in self.command_lines:
            self.command_lines[key] = compat.guest_string(self.emu, text, wide)
        return self.command_lines[key]

    # -- the guest starts a process --------------------------------------------------------------

    def _on_start(self, api: str, how: str, index: int, orig: Any, argv: list[int]) -> Any:
        if how == "create" and len(argv) > index + 1 and argv[index + 1]:
            unit = 2 if api.endswith("W") else 1
            text = read_c_string(self.memory, argv[index + 1], unit == 2, (MAX_COMMAND_LINE_CHARS + 1) * unit)
            if len(text) > MAX_COMMAND_LINE_CHARS * unit:
                self.memory.set_last_error(ERROR_FILENAME_EXCED_RANGE)
                return 0
        before = compat.process_objects(self.emu)
        rv = orig(argv)
        made = [p for p in compat.process_objects(self.emu) if not any(p is b for b in before)]
        if not rv or not made:
            return rv
        process = made[-1]
        wide = api.endswith("W")
        path = str(getattr(process, "path", "") or "")
        command_line = str(getattr(process, "cmdline", "") or "")
        suspended = False
        if how == "create":
            flags_index = index + 5
            suspended = len(argv) > flags_index and bool(argv[flags_index] & CREATE_SUSPENDED)
            if not command_line:
                command_line = f'"{path}"'
        elif how == "shell":
            params = self._string(argv[index + 1], wide) if len(argv) > index + 1 and argv[index + 1] else ""
            command_line = f'"{path}" {params}'.rstrip()
        elif how == "shellex":
            command_line = f'"{path}" {command_line}'.rstrip() if command_line else f'"{path}"'
        found = self._image_path(path)
        run: _CmdRun | None = None
        if found is not None:
            data = compat.guest_file_data(self.emu, found)
            if data is None:
                return rv
            launches = [Launch(process, found, command_line, data, "", api, suspended, kind="exe", process_path=found)]
        else:
            # A script host (scripthosts.py): what it would have run, noted on the stage that started it.
            env = compat.guest_environment(self.emu)
            expand = lambda text: lolbins.expand_variables(text, env)  # noqa: E731
            for script in scripthosts.script_commands(path, command_line or path, expand):
                self.recorder.note(SCRIPT_NOTE, script.detail(), urls=script.urls)
            for persist in persistence.persistence_commands(path, command_line or path, expand):
                target = expand(persist.target)
                known = bool(target) and compat.guest_file_data(self.emu, target) is not None
                self.recorder.note(PERSISTENCE_NOTE, persist.detail(known))
            # A system program that runs what it is given (lolbins.py): the guest files it runs;
            # cmd's commands one at a time, each as its condition and the one before say.
            chain = lolbins.cmd_chain(path, command_line or path, self.arch, expand)
            if chain is not None:
                run = _CmdRun(lolbins.cmd_steps(chain), process, path, api, self.recorder.current_stage)
                launches = self._next_command(run, None, suspended)
            else:
                launches = self._system_program_launches(process, path, command_line, api, suspended)
            if not launches:
                # not a program of the guest's files: Speakeasy's process object only
                main = compat.main_thread(process)
                if main is not None:
                    self.not_emulated[id(main)] = (main, compat.thread_context(main))
                return rv
        parent = self.recorder.current_stage
        thread = compat.main_thread(process)
        context = compat.thread_context(thread) if thread is not None else None
        if run is not None:
            run.context = context
        self._queue(launches, api, parent, context, process)
        return rv

    def _queue(self, launches: list[Launch], api: str, parent: str, context: Any, process: Any) -> None:
        """Queue programs started by ``process`` (the parent's, or cmd's) to run."""
        for launch in launches:
            if self.started + len(self.pending) >= self.limit:
                self.stop_now(
                    ReplayStop(
                        Status.LIMIT,
                        f"more than {self.limit} child processes ({api} of {launch.path})",
                        "max_child_processes",
                    )
                )
                return
            launch.parent, launch.context, launch.started = parent, context, process
            compat.set_process_command_line(launch.process, launch.command_line)
            self.pending.append(launch)
            self.launches.append(launch)
            logger.debug(
                "%s started %s (%s)%s",
                parent,
                launch.path,
                launch.command_line,
                " suspended" if launch.suspended else "",
            )

    # -- cmd's commands, one after another, as their conditions say -------------------------------

    def _next_command(self, run: _CmdRun, code: int | None, suspended: bool = False) -> list[Launch]:
        """Go on with a cmd line whose current command ended with ``code`` (None: none ran yet):
        the launches of the next command that runs any of the guest's files; a command that runs
        none counts as exit code NOT_EMULATED_EXIT_CODE, a part skipped by its condition is noted.
        [] when the line is done (cmd's process then ends with the line's exit code)."""
        try:
            step = next(run.steps) if code is None else run.steps.send(code)
            while True:
                if isinstance(step, lolbins.CmdSkipped):
                    self._note_skipped(run, step)
                    step = run.steps.send(None)
                    continue
                launches = self._launches_of(run.process, run.path, list(step.targets), run.api, suspended)
                if launches:
                    for launch in launches:
                        launch.chain = run
                    run.waiting = list(launches)
                    return launches
                step = run.steps.send(NOT_EMULATED_EXIT_CODE)
        except StopIteration as done:
            self.exit_codes[id(run.process)] = int(done.value or 0) & 0xFFFFFFFF
        return []

    def _note_skipped(self, run: _CmdRun, skipped: lolbins.CmdSkipped) -> None:
        when = "exit code 0" if skipped.op == "||" else f"exit code {skipped.code}, not 0"
        commands = ", ".join(f"`{c}`" for c in skipped.commands)
        stage = self.recorder.current_stage
        self.recorder.current_stage = run.parent
        self.recorder.note(
            SKIP_NOTE,
            f"{ntpath.basename(run.path)}: {commands} not run: it follows {skipped.op} and the command "
            f"before it ended with {when}",
        )
        self.recorder.current_stage = stage

    def ended(self, launch: Launch, code: int) -> None:
        """``launch`` ended with exit code ``code`` (however it ran): its process's record (what
        GetExitCodeProcess answers), and for a command of a cmd line, the next command queued."""
        code &= 0xFFFFFFFF
        self.exit_codes[id(launch.process)] = code
        run = launch.chain
        if run is None:
            if launch.started is not None:
                self.exit_codes.setdefault(id(launch.started), code)
            return
        if launch in run.waiting:
            run.waiting.remove(launch)
            run.code = code
        if run.waiting:
            return
        launches = self._next_command(run, run.code)
        self._queue(launches, run.api, run.parent, run.context, run.process)

    def exiting(self, process: Any, code: int) -> bool:
        """A child run after its parent ends itself (ExitProcess, RtlExitUserProcess,
        TerminateProcess of itself) with ``code``: its exit code; whether it is such a child."""
        for launch in reversed(self.running):
            if launch.process is process:
                self.exit_codes[id(process)] = code & 0xFFFFFFFF
                return True
        return False

    def _system_program_launches(
        self, process: Any, path: str, command_line: str, api: str, suspended: bool
    ) -> list[Launch]:
        """The guest files a system program (rundll32, regsvr32, cmd) runs, from its command line."""
        env = compat.guest_environment(self.emu)
        found = lolbins.targets(path, command_line or path, self.arch, lambda text: lolbins.expand_variables(text, env))
        return self._launches_of(process, path, found, api, suspended, env)

    def _launches_of(
        self,
        process: Any,
        path: str,
        found: list[lolbins.Target],
        api: str,
        suspended: bool,
        env: dict[str, str] | None = None,
    ) -> list[Launch]:
        """The launches of what a system program runs (``found``) that are guest files."""
        env = env if env is not None else compat.guest_environment(self.emu)
        launches: list[Launch] = []
        for target in found:
            file = self._image_path(target.name, env)
            if file is None:
                continue  # not one of the guest's files: not emulated
            data = compat.guest_file_data(self.emu, file)
            if data is None:
                continue
            if target.kind == "dll":
                process_path = target.process
                direct = lolbins.program_key(path) == lolbins.program_key(process_path)
                owner = process if direct and not launches else None
            else:
                process_path = file
                owner = None
            if owner is None:
                owner = compat.new_process(self.emu, process_path, target.command_line)
            launches.append(
                Launch(
                    owner,
                    file,
                    target.command_line,
                    data,
                    "",
                    api,
                    suspended,
                    kind=target.kind,
                    process_path=process_path,
                    system_program=target.program,
                    calls=target.calls,
                )
            )
        return launches

    def _image_path(self, path: str, env: dict[str, str] | None = None) -> str | None:
        """The guest file a started program (or a DLL a system program loads) names: as given,
        or searched for as CreateProcess and LoadLibrary do: a bare name in the launcher's folder
        (its current folder too), System32, the Windows folder, then each folder of %PATH%; a
        relative path from the launcher's folder."""
        if not path:
            return None
        path = path.strip().strip('"')
        if compat.guest_file_data(self.emu, path) is not None:
            return path
        if ntpath.isabs(path):
            return None
        names = (path, path + ".exe") if "." not in ntpath.basename(path) else (path,)
        if "\\" in path or "/" in path:
            folders = [self.app_folder] if self.app_folder else []
        else:
            variables = env if env is not None else compat.guest_environment(self.emu)
            folders = [self.app_folder] if self.app_folder else []
            folders += [lolbins.system_folder(self.arch), "C:\\Windows"]
            folders += [f.strip() for f in variables.get("path", "").split(";") if f.strip()]
        for folder in folders:
            for name in names:
                candidate = ntpath.join(folder, name)
                if compat.guest_file_data(self.emu, candidate) is not None:
                    return candidate
        return None

    def _on_resume(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """ResumeThread of a waiting child's main thread: it runs when its count reaches zero,
        unless its context was changed (then Speakeasy runs that code, as before)."""
        handle = argv[0] if argv else 0
        count = self._resume(handle)
        return orig(argv) if count is None else count

    def _on_native_resume(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """NtResumeThread(ThreadHandle, PreviousSuspendCount): ResumeThread's native form."""
        handle = argv[0] if argv else 0
        count = self._resume(handle)
        if count is None and orig is not None:
            return orig(argv)
        if count is None:
            # No handler of Speakeasy's: a thread the guest created suspended, as ResumeThread.
            thread = compat.object_of_handle(self.emu, handle)
            if thread is None or not hasattr(thread, "suspend_count"):
                return STATUS_INVALID_HANDLE
            count = compat.resume_thread(self.emu, thread)
        if len(argv) > 1 and argv[1]:
            self.memory.write(argv[1], int(count).to_bytes(4, "little"))
        return STATUS_SUCCESS

    def _resume(self, handle: int) -> int | None:
        """The previous suspend count of a waiting child's main thread, resumed; None for any
        other thread (Speakeasy's own handling then)."""
        thread = compat.object_of_handle(self.emu, handle)
        waiting = [c for c in self.launches if thread is not None and compat.main_thread(c.started) is thread]
        if not waiting:
            created = self.not_emulated.get(id(thread)) if thread is not None else None
            if created is None or created[0] is not thread:
                return None
            if compat.thread_context(thread) is not created[1]:
                self._context_resumed(thread)  # hijacked or hollowed: Speakeasy runs the new context
                return None
            # A program that is not emulated, resumed as it was created (an early-bird APC was
            # queued to it, say): its count goes down, nothing runs (Speakeasy would run its
            # image's entry, which has no code here: a fault).
            count = compat.suspend_count(thread)
            if count > 0:
                compat.set_suspend_count(thread, count - 1)
            return count
        if compat.thread_context(thread) is not waiting[0].context:
            for launch in waiting:
                if launch in self.pending:
                    self.pending.remove(launch)  # its code is what the parent put there (hijack, hollowing)
            self._context_resumed(thread)
            return None
        # The program's own main thread: it runs (or ran) its image; resuming a thread that is
        # not suspended changes nothing (Speakeasy would start a thread at its empty context).
        count = compat.suspend_count(thread)
        if count > 0:
            compat.set_suspend_count(thread, count - 1)
        if count <= 1:
            for launch in waiting:
                launch.suspended = False
        return count

    def _context_resumed(self, thread: Any) -> None:
        """A child's main thread resumed with a context the parent set (``SetThreadContext``):
        where it starts is a CONTEXT the parent loaded (a stage there is ``via: context``)."""
        pc = compat.context_start(compat.thread_context(thread), self.arch == "x64")
        if pc and self.on_context_resumed is not None:
            self.on_context_resumed(pc)

    # -- running them ----------------------------------------------------------------------------

    def run_pending(self, stopped: Any) -> None:
        """Run the children started so far, then those they start, one after another, until
        none is left or the replay stops (``stopped()`` true)."""
        while self.pending and not stopped():
            launch = self.pending.pop(0)
            if launch.suspended:
                continue  # never resumed: a suspended process that never ran
            if launch.kind == "dll":
                self.ended(launch, self._run_dll(launch))
                continue
            module = self._map(launch)
            if module is None:
                self.ended(launch, NOT_RUN_EXIT_CODE)
                continue
            self.started += 1
            self._start_stage(launch, module, "pe", int(module.base) + int(module.ep))
            self.running.append(launch)
            try:
                returned = compat.run_process_image(self.emu, launch.process, module, launch.command_line)
            finally:
                self.running.remove(launch)
            # ExitProcess's code (recorded as it was called), else the entry point's return value
            code = self.exit_codes.get(id(launch.process), returned if returned is not None else 0)
            self.ended(launch, code)

    def pending_programs(self) -> list[Launch]:
        """The programs (not DLLs a system program loads) started and yet to run, not suspended."""
        return [launch for launch in self.pending if launch.kind == "exe" and not launch.suspended]

    def pending_program(self, process: Any) -> Launch | None:
        """The launch of a program (not a DLL a system program loads) that started ``process``
        and has yet to run, not suspended: what a wait for that process can run now."""
        for launch in self.pending_programs():
            if launch.started is process or launch.process is process:
                return launch
        return None

    def start_now(self, launch: Launch) -> Any:
        """Take ``launch`` off the queue and map its image as :meth:`run_pending` would, its first
        stage started; the module, or None (not run, noted)."""
        self.pending.remove(launch)
        module = self._map(launch)
        if module is None:
            return None
        self.started += 1
        self._start_stage(launch, module, "pe", int(module.base) + int(module.ep))
        return module

    def _run_dll(self, launch: Launch) -> int:
        """A DLL a system program loads: DllMain (attach), then the exports it calls; the
        program's exit code (0 when it ran: rundll32's does not depend on the export)."""
        module = self._map(launch)
        if module is None:
            return NOT_RUN_EXIT_CODE
        calls: list[tuple[str, int, list[int]]] = []
        base = int(module.base)
        if int(module.ep):
            calls.append(("child_dll_entry", base + int(module.ep), [base, DLL_PROCESS_ATTACH, 0]))
        program = ntpath.basename(launch.process_path)
        for call in launch.calls:
            address, name = 0, call.names[0]
            for candidate in call.names:
                address = compat.export_address(self.emu, module, candidate)
                if address:
                    name = candidate
                    break
            if not address:
                self._not_run(launch, f"{program} calls {call.names[0]!r}, which the DLL does not export", run=False)
                continue
            calls.append((f"child_export.{name}", address, self._arguments(call, name, base)))
        if not calls:
            self._not_run(launch, "nothing of it to run (no DllMain, no export called)")
            return NOT_RUN_EXIT_CODE
        self.started += 1
        self._start_stage(launch, module, "module", calls[0][1])
        compat.run_process_calls(self.emu, launch.process, calls, launch.command_line)
        return 0

    def _arguments(self, call: lolbins.ExportCall, name: str, base: int) -> list[int]:
        if call.convention == "rundll32":
            wide = len(call.names) > 1 and name == call.names[0]  # the export's W form: a UTF-16 text
            return [0, base, compat.guest_string(self.emu, call.text, wide), lolbins.SW_SHOWDEFAULT]
        if call.convention == "dllinstall":
            return [int(call.install), compat.guest_string(self.emu, call.text, True)]
        return []

    def _map(self, launch: Launch) -> Any:
        data = launch.data
        try:
            headers = pe.check_file(data)
            info = _image_info(data)
        except (pe.PeError, pefile.PEFormatError) as err:
            return self._not_run(launch, f"not a PE image the emulator can load: {err}")
        if headers.arch != self.arch:
            what = "DLL" if launch.kind == "dll" else "program"
            return self._not_run(launch, f"a {headers.arch} {what} in an {self.arch} guest")
        base, characteristics = info
        if characteristics & IMAGE_FILE_DLL and launch.kind != "dll":
            return self._not_run(launch, "a DLL, not a program")
        if launch.kind == "dll" and not characteristics & IMAGE_FILE_DLL:
            return self._not_run(launch, "a program, not a DLL")
        if characteristics & IMAGE_FILE_RELOCS_STRIPPED and not compat.range_free(
            self.emu, base, headers.size_of_image
        ):
            return self._not_run(
                launch,
                f"cannot be mapped beside the parent: its base {base:#x} is in use and its relocations are stripped",
            )
        try:
            if launch.kind == "dll":
                module = compat.map_guest_dll_for_process(self.emu, data, launch.path)
            else:
                module = compat.map_guest_pe(self.emu, data, launch.path)
        except Exception as err:  # a malformed PE from the guest is a note, not a crash
            return self._not_run(launch, f"the PE cannot be mapped: {type(err).__name__}: {err}")
        return module

    def _start_stage(self, launch: Launch, module: Any, kind: str, entry: int) -> None:
        base, size = int(module.base), int(module.image_size)
        recorder = self.recorder
        # The image file's bytes where the loader mapped them: what the lineage ties the child's
        # image to (then on through the write of that file, if the replay wrote it). No file
        # event: the graph says the file was run as the process (file -executes-> process).
        recorder.current_stage = launch.parent
        recorder.remember_buffer("file_read", base, launch.data, ref=launch.path)
        recorder.start_stage(
            kind=kind,
            name=ntpath.basename(launch.path),
            base=base,
            size=size,
            entry=entry,
            data=self.watch.read_region(base, size),
            parent=launch.parent,
            via="process",
            process=launch.process_path or launch.path,
            system_program=launch.system_program,
            run_file=launch.path if launch.system_program else None,
        )
        self.flow.add_code(base, size, kind)
        if self.on_new_code is not None:
            self.on_new_code(base, size)

    def _not_run(self, launch: Launch, why: str, run: bool = True) -> None:
        self.recorder.current_stage = launch.parent
        started = f"{launch.api}({launch.path!r})"
        if launch.system_program:
            started = f"{launch.api}({launch.system_program!r} running {launch.path!r})"
        consequence = "; the process is not emulated" if run else "; the rest runs"
        self.recorder.note(NOTE, f"{started}: {why}{consequence}")
        return None

    def _string(self, address: int, wide: bool) -> str:
        raw = read_c_string(self.memory, address, wide, MAX_PATH_CHARS * (2 if wide else 1))
        return raw.decode("utf-16-le" if wide else "latin-1", "replace")


def _image_info(data: bytes) -> tuple[int, int]:
    """(preferred image base, file header characteristics) of a PE file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pefile.PE(data=data, fast_load=True)
    return int(parsed.OPTIONAL_HEADER.ImageBase), int(parsed.FILE_HEADER.Characteristics)
