"""Speakeasy's configuration for a :class:`ReplayPlan`: the guest's identity, files, registry and limits."""

from __future__ import annotations

import ntpath
from typing import Any

from speakeasy.config import get_default_config_dict

from emulator.environment import RECENT_SHORTCUT_SIZE, command_line, network_adapter, recent_shortcuts, user_dirs
from emulator.guest_registry import machine_keys, with_machine_keys
from emulator.plan import SANDBOX_MARKER_NAME, SANDBOX_MARKER_VALUE, ReplayPlan

# Processes of a stock Windows 10 desktop session, beside Speakeasy's own list, so a process
# count or a walk of the process list looks like a used machine (no analysis tools).
DESKTOP_PROCESSES = (
    "C:\\Windows\\System32\\fontdrvhost.exe",
    "C:\\Windows\\System32\\dwm.exe",
    "C:\\Windows\\System32\\spoolsv.exe",
    "C:\\Windows\\System32\\sihost.exe",
    "C:\\Windows\\System32\\taskhostw.exe",
    "C:\\Windows\\System32\\ctfmon.exe",
    "C:\\Windows\\System32\\RuntimeBroker.exe",
    "C:\\Windows\\System32\\SearchIndexer.exe",
    "C:\\Windows\\SystemApps\\Microsoft.Windows.StartMenuExperienceHost_cw5n1h2txyewy\\StartMenuExperienceHost.exe",
    "C:\\Windows\\SystemApps\\Microsoft.Windows.Search_cw5n1h2txyewy\\SearchApp.exe",
    "C:\\Windows\\System32\\SecurityHealthService.exe",
    "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.2302.7-0\\MsMpEng.exe",
    "C:\\Windows\\System32\\dllhost.exe",
    "C:\\Windows\\System32\\conhost.exe",
    "C:\\Windows\\System32\\audiodg.exe",
    "C:\\Windows\\System32\\WUDFHost.exe",
    "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
    "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
    "C:\\Users\\Public\\OneDrive\\OneDrive.exe",
    "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
)
# Who started each process (image name -> its parent's), as on a booted Windows 10: a process
# not named here is one of the user's programs, started by explorer.exe (the sample too);
# None: a parent that has exited (smss.exe's session instance, userinit.exe).
PROCESS_PARENTS: dict[str, str | None] = {
    "[system process]": "",
    "system": "",
    "smss.exe": "[system process]",
    "csrss.exe": None,
    "wininit.exe": None,
    "winlogon.exe": None,
    "explorer.exe": None,
    "services.exe": "wininit.exe",
    "lsass.exe": "wininit.exe",
    "fontdrvhost.exe": "wininit.exe",
    "dwm.exe": "winlogon.exe",
    "svchost.exe": "services.exe",
    "spoolsv.exe": "services.exe",
    "searchindexer.exe": "services.exe",
    "securityhealthservice.exe": "services.exe",
    "msmpeng.exe": "services.exe",
    "wudfhost.exe": "services.exe",
    "sihost.exe": "svchost.exe",
    "taskhostw.exe": "svchost.exe",
    "ctfmon.exe": "svchost.exe",
    "runtimebroker.exe": "svchost.exe",
    "startmenuexperiencehost.exe": "svchost.exe",
    "searchapp.exe": "svchost.exe",
    "dllhost.exe": "svchost.exe",
    "audiodg.exe": "svchost.exe",
}
# Speakeasy's decoy modules a fresh process does not have loaded: a sandbox check looks for
# dbghelp.dll (debuggers and some sandboxes inject it). LoadLibrary still loads them.
NOT_PRELOADED = frozenset({"dbghelp"})
# The DLLs every process's loader lists hold from the start; of the other decoys Speakeasy maps
# before the program, the lists hold those the guest's images import (compat_blocks.loader_list_as_loaded).
ALWAYS_LOADED = frozenset({"ntdll", "kernel32", "kernelbase"})
# The id an exited parent had (no listed process has it).
EXITED_PARENT_PID = 0x1E8
DESKTOP_PROCESS_BASE = 0x06000000
DESKTOP_PROCESS_STRIDE = 0x00010000


def _desktop_processes() -> list[dict[str, Any]]:
    return [
        {
            "name": ntpath.splitext(ntpath.basename(path))[0],
            "base_addr": hex(DESKTOP_PROCESS_BASE + index * DESKTOP_PROCESS_STRIDE),
            "path": path,
            "pid": None,
            "command_line": None,
            "is_main_exe": None,
            "session": 1,
        }
        for index, path in enumerate(DESKTOP_PROCESSES)
    ]


def parent_pid(image: str, pids: dict[str, int]) -> int:
    """The parent process id of ``image`` among ``pids`` (image name lower-cased -> id)."""
    parent = PROCESS_PARENTS.get(image.lower(), "explorer.exe")
    if parent is None:
        return EXITED_PARENT_PID
    return pids.get(parent, 0) if parent else 0


def build_speakeasy_config(plan: ReplayPlan) -> dict[str, Any]:
    config = get_default_config_dict()
    env = dict(config["env"])
    env.update(user_dirs(plan.user, plan.domain, plan.hostname))
    # Speakeasy looks names up lower-cased (GetEnvironmentVariable, ExpandEnvironmentStrings),
    # so every key is stored lower-cased, once.
    env.update({k.lower(): v for k, v in plan.env.items()})
    if plan.sandbox_marker:
        env[SANDBOX_MARKER_NAME.lower()] = SANDBOX_MARKER_VALUE
    config["env"] = env
    config["network"] = {**config["network"], "adapters": [network_adapter()]}
    config["hostname"] = plan.hostname
    config["domain"] = plan.domain
    config["user"] = {**config["user"], "name": plan.user}
    config["current_dir"] = ntpath.dirname(plan.emu_path) or "C:\\"
    host = plan.host_process or ntpath.basename(plan.emu_path)
    config["command_line"] = command_line(host, plan.guest.argv) if plan.guest.argv else host
    # The process the entry DLL lives in: its image sits beside the sample, as a side-loading
    # host would, so GetModuleFileName(NULL) points at the application folder.
    app_dir = ntpath.dirname(plan.emu_path)
    config["processes"] = [
        {**proc, "name": host, "path": ntpath.join(app_dir, host), "command_line": f'"{ntpath.join(app_dir, host)}"'}
        if proc.get("is_main_exe")
        else proc
        for proc in config["processes"]
    ]
    main = [proc for proc in config["processes"] if proc.get("is_main_exe")]
    others = [proc for proc in config["processes"] if not proc.get("is_main_exe")]
    config["processes"] = others + _desktop_processes() + main
    modules = dict(config["modules"])
    modules["user_modules"] = [m for m in modules["user_modules"] if m["name"].lower() not in NOT_PRELOADED]
    config["modules"] = modules
    major, minor, build = plan.os_version
    config["os_ver"] = {**config["os_ver"], "major": major, "minor": minor, "build": build}
    # Only the scenario's files exist, unless the plan asks for Speakeasy's own file rules for
    # every other path ([files] missing = "default_content"); the scenario's files come first.
    files: list[dict[str, Any]] = [
        {"mode": "full_path", "emu_path": f.emu_path, "path": f.host_path} for f in plan.files
    ]
    # A used desktop's Recent folder (a sandbox check counts its shortcuts).
    files += [
        {"mode": "full_path", "emu_path": path, "byte_fill": {"byte": "0x00", "size": RECENT_SHORTCUT_SIZE}}
        for path in recent_shortcuts(plan.user)
    ]
    if plan.guest.missing_files == "default_content":
        files += config["filesystem"]["files"]
    config["filesystem"] = {"files": files}
    keys = with_machine_keys(machine_keys(plan), list(plan.registry))
    config["registry"] = {"keys": [{"path": key.path, "values": [v.model_dump() for v in key.values]} for key in keys]}
    config["timeout"] = plan.limits.timeout
    config["max_total_time"] = plan.limits.timeout
    config["max_api_count"] = plan.limits.max_api_calls
    # Speakeasy counts instructions with a per-instruction Python hook; fast mode counts natively.
    config["max_instructions"] = plan.limits.max_instructions if plan.mode == "faithful" else -1
    config["analysis"] = {"memory_tracing": False, "strings": False, "coverage": False}
    config["api_hammering"] = {"enabled": False, "threshold": 2000}
    return config
