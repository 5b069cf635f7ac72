"""Speakeasy's configuration for a :class:`ReplayPlan`: the guest's identity, files, registry and limits."""

from __future__ import annotations

import ntpath
from typing import Any

from speakeasy.config import get_default_config_dict

from emulator.plan import SANDBOX_MARKER_NAME, SANDBOX_MARKER_VALUE, ReplayPlan


def _user_dirs(plan: ReplayPlan) -> dict[str, str]:
    profile = f"C:\\Users\\{plan.user}"
    return {
        "userprofile": profile,
        "appdata": f"{profile}\\AppData\\Roaming",
        "localappdata": f"{profile}\\AppData\\Local",
        "temp": f"{profile}\\AppData\\Local\\Temp",
        "tmp": f"{profile}\\AppData\\Local\\Temp",
        "username": plan.user,
        "userdomain": plan.domain.split(".")[0].upper(),
        "computername": plan.hostname,
        "public": "C:\\Users\\Public",
        "programdata": "C:\\ProgramData",
    }


def build_speakeasy_config(plan: ReplayPlan) -> dict[str, Any]:
    config = get_default_config_dict()
    env = dict(config["env"])
    env.update(_user_dirs(plan))
    # Speakeasy looks names up lower-cased (GetEnvironmentVariable, ExpandEnvironmentStrings),
    # so every key is stored lower-cased, once.
    env.update({k.lower(): v for k, v in plan.env.items()})
    if plan.sandbox_marker:
        env[SANDBOX_MARKER_NAME.lower()] = SANDBOX_MARKER_VALUE
    config["env"] = env
    config["hostname"] = plan.hostname
    config["domain"] = plan.domain
    config["user"] = {**config["user"], "name": plan.user}
    config["current_dir"] = ntpath.dirname(plan.emu_path) or "C:\\"
    host = plan.host_process or ntpath.basename(plan.emu_path)
    config["command_line"] = host
    # The process the entry DLL lives in: its image sits beside the sample, as a side-loading
    # host would, so GetModuleFileName(NULL) points at the application folder.
    app_dir = ntpath.dirname(plan.emu_path)
    config["processes"] = [
        {**proc, "name": host, "path": ntpath.join(app_dir, host), "command_line": f'"{ntpath.join(app_dir, host)}"'}
        if proc.get("is_main_exe")
        else proc
        for proc in config["processes"]
    ]
    major, minor, build = plan.os_version
    config["os_ver"] = {**config["os_ver"], "major": major, "minor": minor, "build": build}
    # Only the scenario's files exist: no synthetic content for unknown paths.
    config["filesystem"] = {
        "files": [{"mode": "full_path", "emu_path": f.emu_path, "path": f.host_path} for f in plan.files]
    }
    config["registry"] = {
        "keys": [{"path": key.path, "values": [v.model_dump() for v in key.values]} for key in plan.registry]
    }
    config["timeout"] = plan.limits.timeout
    config["max_total_time"] = plan.limits.timeout
    config["max_api_count"] = plan.limits.max_api_calls
    # Speakeasy counts instructions with a per-instruction Python hook; fast mode counts natively.
    config["max_instructions"] = plan.limits.max_instructions if plan.mode == "faithful" else -1
    config["analysis"] = {"memory_tracing": False, "strings": False, "coverage": False}
    config["api_hammering"] = {"enabled": False, "threshold": 2000}
    return config
