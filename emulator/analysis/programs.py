"""The image path of a program a stage started, as the guest's Windows resolves it.

A process node is named by its image's path, as Windows shows the process (Process Explorer,
``QueryFullProcessImageName``): ``CreateProcess("cmd.exe /c ...")`` starts
``C:\\Windows\\System32\\cmd.exe``. A call names its program with or without a folder; a bare
name is searched for (the launcher's folder, System32, the Windows folder, then %PATH%, which
holds PowerShell's and WMI's folders), and ``.exe`` is added to a name without an extension. A
program the replay ran (one of the guest's files, a system program that ran one) is named by the
path the run used (graph.py's aliases); any other bare name is looked up in
:data:`SYSTEM_PROGRAMS`, the programs of a standard Windows 10/11 installation that loaders start
by name; a 32-bit launcher finds them in SysWOW64 (file system redirection: System32 is SysWOW64
to it, as lolbins.system_folder says), Sysnative being the real System32. A full path is kept as
the call gave it (also in lineage refs, which name the engine's process object), and a name the
table does not know is kept as the call gave it: where it would be found is not known.
"""

from __future__ import annotations

import ntpath

WINDOWS = "C:\\Windows"
SYSTEM32 = "C:\\Windows\\System32"
SYSWOW64 = "C:\\Windows\\SysWOW64"
SYSNATIVE = "C:\\Windows\\Sysnative"

_SYSTEM32_PROGRAMS = (
    "arp", "attrib", "auditpol", "bcdedit", "bitsadmin", "calc", "certreq", "certutil", "choice", "cipher",
    "clip", "cmd", "cmdkey", "cmstp", "compact", "computerdefaults", "conhost", "control", "cscript", "curl",
    "dllhost", "driverquery", "esentutl", "eventvwr", "expand", "extrac32", "findstr", "finger",
    "fodhelper", "forfiles", "fsutil", "ftp", "getmac", "gpresult", "gpupdate", "hostname", "icacls",
    "ipconfig", "klist", "logman", "makecab", "mavinject", "mmc", "mountvol", "msdt", "msiexec", "mshta",
    "msinfo32", "mstsc", "nbtstat", "net", "net1", "netsh", "netstat", "nltest", "notepad", "nslookup",
    "odbcconf", "pcalua", "ping", "powercfg", "print", "qprocess", "query", "quser", "rasdial", "reg", "regini",
    "regsvr32", "robocopy", "route", "rpcping", "runas", "rundll32", "runonce", "sc", "schtasks", "sdbinst",
    "sdclt", "sethc", "setx", "sfc", "shutdown", "sort", "svchost", "systeminfo", "takeown", "tar", "taskhostw",
    "taskkill", "tasklist", "timeout", "tracert", "tzutil", "userinit", "vssadmin", "w32tm", "waitfor",
    "wbadmin", "wevtutil", "where", "whoami", "wextract", "wermgr", "write", "wscript", "wsreset", "wuauclt",
    "xcopy",
)  # fmt: skip
# Programs elsewhere (relative to the Windows folder), with Windows' spelling of their names.
_OTHER_PROGRAMS = {
    "werfault": "System32\\WerFault.exe",
    "presentationhost": "System32\\PresentationHost.exe",
    "searchprotocolhost": "System32\\SearchProtocolHost.exe",
    "powershell": "System32\\WindowsPowerShell\\v1.0\\powershell.exe",
    "powershell_ise": "System32\\WindowsPowerShell\\v1.0\\powershell_ise.exe",
    "wmic": "System32\\wbem\\WMIC.exe",
    "wmiprvse": "System32\\wbem\\WmiPrvSE.exe",
    "mofcomp": "System32\\wbem\\mofcomp.exe",
    "explorer": "explorer.exe",
    "regedit": "regedit.exe",
    "hh": "hh.exe",
    "splwow64": "splwow64.exe",
}
# Program name (lower case, without ``.exe``) -> its path relative to the Windows folder.
SYSTEM_PROGRAMS: dict[str, str] = {
    **{name: f"System32\\{name}.exe" for name in _SYSTEM32_PROGRAMS},
    **_OTHER_PROGRAMS,
}


def _redirected(path: str, arch: str) -> str:
    """``path`` as a process of ``arch`` reaches it: System32 is SysWOW64 for x86, Sysnative System32."""
    if arch != "x86":
        return path
    lower = path.lower()
    for folder, seen in ((SYSTEM32, SYSWOW64), (SYSNATIVE, SYSTEM32)):
        if lower == folder.lower() or lower.startswith(folder.lower() + "\\"):
            return seen + path[len(folder) :]
    return path


def program_image(name: str, arch: str) -> str:
    """The image path of the program ``name`` (a call's first command-line token) for a launcher
    of ``arch`` (``x86``, ``x64``)."""
    name = name.strip().strip('"').replace("/", "\\")
    if not name:
        return name
    if ntpath.isabs(name):
        return name  # as the call gave it (the process's own path, as the engine's objects name it)
    if "\\" in name:
        return name  # relative to the launcher's folder, unknown here
    key = name.lower()
    key = key[:-4] if key.endswith(".exe") else key
    known = SYSTEM_PROGRAMS.get(key)
    if known is None or (not name.lower().endswith(".exe") and "." in name):
        return name
    return _redirected(f"{WINDOWS}\\{known}", arch)
