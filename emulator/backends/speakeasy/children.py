"""Child processes started from the guest's own files, emulated in the same replay.

A process the guest starts (``CreateProcess*``, ``CreateProcessInternal*``,
``CreateProcessAsUser*``, ``WinExec``, ``ShellExecute*``) whose image is a PE file in the
guest's file system (a file the sample wrote or downloaded, or one the scenario serves) of the
guest's architecture, an EXE, is mapped beside the parent (relocated when its preferred base is
taken) and its entry point run as that process: its own command line, ``GetModuleHandle(NULL)``,
``GetModuleFileName(NULL)`` and PEB image base. Its first execution is a ``pe`` stage whose
origin is the file it was started from (the loader's read of that file is what the lineage ties
its image to), ``parent`` the stage that started it, ``via: process`` and ``process`` its image
path. A process whose image is not a guest file (``cmd.exe``, ``notepad.exe``) is Speakeasy's
object only, as before; a guest file that cannot run (not a PE, a DLL, the other architecture,
a base it cannot be moved from) is a ``child_process_not_run`` note naming why.

When a child runs: after the parent's runs, as Speakeasy's own ``run_module(...,
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
``ResumeThread`` of its main thread brings the count to zero; a suspended child whose thread's
context the parent changed (``SetThreadContext``: thread hijacking, hollowing) runs that code
as Speakeasy always did, not its image. At most ``max_child_processes`` children run in one
replay; the next one to start ends the replay with that limit named.
"""

from __future__ import annotations

import logging
import ntpath
import warnings
from dataclasses import dataclass
from typing import Any

import pefile

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.base import ReplayStop
from emulator.backends.speakeasy import compat
from emulator.backends.speakeasy.flow import FlowWatch
from emulator.backends.speakeasy.memwatch import MemoryWatch
from emulator.backends.speakeasy.sources import read_c_string
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
# CreateProcess's dwCreationFlags: the process's main thread starts suspended.
CREATE_SUSPENDED = 0x4
IMAGE_FILE_RELOCS_STRIPPED = 0x0001
IMAGE_FILE_DLL = 0x2000
MAX_PATH_CHARS = 32767
NOTE = "child_process_not_run"


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
        self.started = 0  # children that ran (or were mapped to run)
        self.on_new_code: Any = None

    def install(self) -> None:
        for (module, name), (how, index) in START_APIS.items():

            def hook(
                emu: Any, api_name: str, orig: Any, argv: list[int], _n: str = name, _h: str = how, _i: int = index
            ) -> Any:
                return self._on_start(_n, _h, _i, orig, list(argv))

            self.se.add_api_hook(hook, module, name)
        for module, name in RESUME_APIS:
            self.se.add_api_hook(self._on_resume, module, name)

    # -- the guest starts a process --------------------------------------------------------------

    def _on_start(self, api: str, how: str, index: int, orig: Any, argv: list[int]) -> Any:
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
        if found is None:
            return rv  # not a program of the guest's files: Speakeasy's process object only
        data = compat.guest_file_data(self.emu, found)
        if data is None:
            return rv
        parent = self.recorder.current_stage
        if self.started + len(self.pending) >= self.limit:
            self.stop_now(
                ReplayStop(
                    Status.LIMIT,
                    f"more than {self.limit} child processes ({api} of {found})",
                    "max_child_processes",
                )
            )
            return rv
        compat.set_process_command_line(process, command_line)
        thread = compat.main_thread(process)
        context = compat.thread_context(thread) if thread is not None else None
        launch = Launch(process, found, command_line, data, parent, api, suspended, context)
        self.pending.append(launch)
        self.launches.append(launch)
        logger.debug("%s started %s (%s)%s", parent, found, command_line, " suspended" if suspended else "")
        return rv

    def _image_path(self, path: str) -> str | None:
        """The guest file a started program names: as given, or (no folder) in the application's
        folder, as CreateProcess's search starts."""
        if not path:
            return None
        path = path.strip().strip('"')
        if compat.guest_file_data(self.emu, path) is not None:
            return path
        if "\\" not in path and "/" not in path and self.app_folder:
            for name in (path, path + ".exe") if "." not in path else (path,):
                candidate = ntpath.join(self.app_folder, name)
                if compat.guest_file_data(self.emu, candidate) is not None:
                    return candidate
        return None

    def _on_resume(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """ResumeThread of a waiting child's main thread: it runs when its count reaches zero,
        unless its context was changed (then Speakeasy runs that code, as before)."""
        handle = argv[0] if argv else 0
        thread = compat.object_of_handle(self.emu, handle)
        launch = next((c for c in self.launches if compat.main_thread(c.process) is thread), None)
        if launch is None or thread is None:
            return orig(argv)
        if compat.thread_context(thread) is not launch.context:
            if launch in self.pending:
                self.pending.remove(launch)  # its code is what the parent put there (hijack, hollowing)
            return orig(argv)
        # The program's own main thread: it runs (or ran) its image; resuming a thread that is
        # not suspended changes nothing (Speakeasy would start a thread at its empty context).
        count = compat.suspend_count(thread)
        if count > 0:
            compat.set_suspend_count(thread, count - 1)
        if count <= 1:
            launch.suspended = False
        return count

    # -- running them ----------------------------------------------------------------------------

    def run_pending(self, stopped: Any) -> None:
        """Run the children started so far, then those they start, one after another, until
        none is left or the replay stops (``stopped()`` true)."""
        while self.pending and not stopped():
            launch = self.pending.pop(0)
            if launch.suspended:
                continue  # never resumed: a suspended process that never ran
            module = self._map(launch)
            if module is None:
                continue
            self.started += 1
            self._start_stage(launch, module)
            compat.run_process_image(self.emu, launch.process, module, launch.command_line)

    def _map(self, launch: Launch) -> Any:
        data = launch.data
        try:
            headers = pe.check_file(data)
            info = _image_info(data)
        except (pe.PeError, pefile.PEFormatError) as err:
            return self._not_run(launch, f"not a PE image the emulator can load: {err}")
        if headers.arch != self.arch:
            return self._not_run(launch, f"a {headers.arch} program in an {self.arch} guest")
        base, characteristics = info
        if characteristics & IMAGE_FILE_DLL:
            return self._not_run(launch, "a DLL, not a program")
        if characteristics & IMAGE_FILE_RELOCS_STRIPPED and not compat.range_free(
            self.emu, base, headers.size_of_image
        ):
            return self._not_run(
                launch,
                f"cannot be mapped beside the parent: its base {base:#x} is in use and its relocations are stripped",
            )
        try:
            module = compat.map_guest_pe(self.emu, data, launch.path)
        except Exception as err:  # a malformed PE from the guest is a note, not a crash
            return self._not_run(launch, f"the PE cannot be mapped: {type(err).__name__}: {err}")
        return module

    def _start_stage(self, launch: Launch, module: Any) -> None:
        base, size = int(module.base), int(module.image_size)
        recorder = self.recorder
        # The image file's bytes where the loader mapped them: what the lineage ties the child's
        # image to (then on through the write of that file, if the replay wrote it). No file
        # event: the graph says the file was run as the process (file -executes-> process).
        recorder.current_stage = launch.parent
        recorder.remember_buffer("file_read", base, launch.data, ref=launch.path)
        entry = base + int(module.ep)
        recorder.start_stage(
            kind="pe",
            name=ntpath.basename(launch.path),
            base=base,
            size=size,
            entry=entry,
            data=self.watch.read_region(base, size),
            parent=launch.parent,
            via="process",
            process=launch.path,
        )
        self.flow.add_code(base, size, "pe")
        if self.on_new_code is not None:
            self.on_new_code(base, size)

    def _not_run(self, launch: Launch, why: str) -> None:
        self.recorder.current_stage = launch.parent
        self.recorder.note(NOTE, f"{launch.api}({launch.path!r}): {why}; the process is not emulated")
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
