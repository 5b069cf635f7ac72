"""The machine the guest sees: the ``[environment]`` settings beyond names and variables.

Every value a sandbox check looks at (processors, memory, disk, screen, uptime, cursor, CPU
vendor, the command line, what a missing file looks like) comes from here, with defaults of an
ordinary office workstation, so a sample asking "am I in a sandbox?" sees a plausible machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from emulator.plan import ReplayPlan

# Defaults: a mid-range office PC that has been on for a few hours.
DEFAULT_PROCESSORS = 8
DEFAULT_MEMORY_MB = 16 * 1024
DEFAULT_DISK_GB = 512
DEFAULT_DISK_FREE_GB = 214
DEFAULT_SCREEN = (1920, 1080)
DEFAULT_UPTIME_MS = 3 * 60 * 60 * 1000
DEFAULT_CPU_VENDOR = "GenuineIntel"
# The retail name of the CPU model Unicorn emulates (family 6 model 0x3C, Haswell).
DEFAULT_CPU_BRAND = "Intel(R) Core(TM) i7-4790 CPU @ 3.60GHz"
# The shortcuts a used desktop keeps in %APPDATA%\Microsoft\Windows\Recent (a sandbox check
# counts them: a fresh analysis VM has none). Listed by FindFirstFile; read, they are filler bytes.
RECENT_SHORTCUTS = (
    "Q3 budget review.xlsx.lnk",
    "Invoices.lnk",
    "Meeting notes 2024-11-19.docx.lnk",
    "Travel policy.pdf.lnk",
    "Downloads.lnk",
    "Quarterly report draft.docx.lnk",
    "Vendor contacts.xlsx.lnk",
    "Screenshot 2024-11-21 101233.png.lnk",
    "Team offsite agenda.docx.lnk",
    "Expenses.lnk",
)
RECENT_SHORTCUT_SIZE = 1024

MissingFiles = Literal["not_found", "default_content"]
# A screen side, pixels (16K displays are 15360 wide).
MAX_SCREEN_SIDE = 16384
ScreenSide = Annotated[int, Field(ge=1, le=MAX_SCREEN_SIDE)]
# The guest's computer, user and domain names: Windows refuses these characters in them, and
# its longest (a DNS domain name) is 255 characters.
MAX_GUEST_NAME = 255
GUEST_NAME_FORBIDDEN = '\\/:*?"<>|'


def guest_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be the guest's computer, user or domain name, or None."""
    if not value:
        return "empty"
    if len(value) > MAX_GUEST_NAME:
        return f"{len(value)} characters (at most {MAX_GUEST_NAME})"
    bad = sorted({c for c in value if c in GUEST_NAME_FORBIDDEN or not c.isprintable()})
    if bad:
        return "holds " + ", ".join(repr(c) for c in bad)
    return None


class GuestEnvironment(BaseModel):
    """What the guest machine reports about itself (names and variables live beside it in the plan)."""

    # Built when first used, as the plan models (emulator/plan.py).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    argv: list[str] = Field(default_factory=list, description="Command-line arguments after the program name.")
    processors: int = Field(DEFAULT_PROCESSORS, ge=1, le=1024, description="Logical processors.")
    memory_mb: int = Field(DEFAULT_MEMORY_MB, ge=64, le=1 << 24, description="Physical memory, MiB.")
    disk_gb: int = Field(DEFAULT_DISK_GB, ge=1, le=1 << 20, description="Size of drive C:, GiB.")
    disk_free_gb: int = Field(DEFAULT_DISK_FREE_GB, ge=0, le=1 << 20, description="Free space on C:, GiB.")
    screen: tuple[ScreenSide, ScreenSide] = Field(DEFAULT_SCREEN, description="Screen width and height, pixels.")
    uptime_ms: int = Field(
        DEFAULT_UPTIME_MS, ge=0, le=1 << 40, description="Time since boot when the replay starts, ms."
    )
    cpu_vendor: str = Field(DEFAULT_CPU_VENDOR, min_length=12, max_length=12, description="CPUID vendor string.")
    cpu_brand: str = Field(DEFAULT_CPU_BRAND, max_length=47, description="CPUID processor brand string.")
    hypervisor: bool = Field(False, description="Set the CPUID hypervisor bit (a virtual machine).")
    missing_files: MissingFiles = Field(
        "not_found",
        description="A file the scenario does not provide: not found (as Windows) or Speakeasy's default content.",
    )


def quote_argument(arg: str) -> str:
    """One argument as CommandLineToArgvW reads it back (the MSVC CRT quoting rules)."""
    if arg and not any(c in arg for c in ' \t"'):
        return arg
    out = ['"']
    backslashes = 0
    for char in arg:
        if char == "\\":
            backslashes += 1
            continue
        if char == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + char)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def command_line(program: str, argv: list[str]) -> str:
    """The command line of ``program`` run with ``argv``, as GetCommandLine returns it."""
    return " ".join([quote_argument(program), *(quote_argument(a) for a in argv)])


def user_dirs(user: str, domain: str, hostname: str) -> dict[str, str]:
    """The per-user environment variables, lower-cased as Speakeasy looks them up."""
    profile = f"C:\\Users\\{user}"
    return {
        "userprofile": profile,
        "appdata": f"{profile}\\AppData\\Roaming",
        "localappdata": f"{profile}\\AppData\\Local",
        "temp": f"{profile}\\AppData\\Local\\Temp",
        "tmp": f"{profile}\\AppData\\Local\\Temp",
        "username": user,
        "userdomain": domain.split(".")[0].upper(),
        "computername": hostname,
        "public": "C:\\Users\\Public",
        "programdata": "C:\\ProgramData",
    }


# The machine's one network adapter, as GetAdaptersInfo (Speakeasy's, from its configuration)
# and GetAdaptersAddresses (emulator/apis/adapters.py) describe it: an Intel NIC (OUI 00-13-CE,
# no hypervisor's) on a home LAN. Speakeasy's default gave it the GUID of zeros and 127.0.0.1.
ADAPTER_NAME = "{5B2E3C71-8F0A-4C3E-9D51-2A6F1E7B9C04}"
ADAPTER_DESCRIPTION = "Intel(R) PRO/1000 MT Network Connection"
ADAPTER_MAC = "00-13-CE-12-34-56"
ADAPTER_IP = "192.168.1.23"
ADAPTER_MASK = "255.255.255.0"


def network_adapter() -> dict[str, object]:
    """The adapter in Speakeasy's configuration form (``network.adapters`` entries)."""
    return {
        "name": ADAPTER_NAME,
        "description": ADAPTER_DESCRIPTION,
        "mac_address": ADAPTER_MAC,
        "type": "ethernet",
        "ip_address": ADAPTER_IP,
        "subnet_mask": ADAPTER_MASK,
        "dhcp_enabled": True,
    }


# The processor's family, model and stepping (CPUID.1:EAX 0x306C3, an i7-4790's: the guest's CPUID
# says so too, emulator/backends/speakeasy/guest.py), and GetSystemInfo's wProcessorRevision.
PROCESSOR_FAMILY, PROCESSOR_MODEL, PROCESSOR_STEPPING = 6, 60, 3
PROCESSOR_REVISION = PROCESSOR_MODEL << 8 | PROCESSOR_STEPPING


def processor_identifier(x64: bool = True) -> str:
    """The registry's CentralProcessor Identifier and %PROCESSOR_IDENTIFIER%'s start."""
    return (
        f"{'Intel64' if x64 else 'x86'} Family {PROCESSOR_FAMILY} Model {PROCESSOR_MODEL} Stepping {PROCESSOR_STEPPING}"
    )


# How Windows spells the standard variables (Speakeasy keeps every name lower-cased).
VARIABLE_NAMES = {
    name.lower(): name
    for name in (
        "ALLUSERSPROFILE", "APPDATA", "CommonProgramFiles", "CommonProgramFiles(x86)", "CommonProgramW6432",
        "COMPUTERNAME", "ComSpec", "HOMEDRIVE", "HOMEPATH", "LOCALAPPDATA", "LOGONSERVER",
        "NUMBER_OF_PROCESSORS", "OS", "Path", "PATHEXT", "PROCESSOR_ARCHITECTURE", "PROCESSOR_IDENTIFIER",
        "PROCESSOR_LEVEL", "PROCESSOR_REVISION", "ProgramData", "ProgramFiles", "ProgramFiles(x86)",
        "ProgramW6432", "PSModulePath", "PUBLIC", "SystemDrive", "SystemRoot", "TEMP", "TMP", "USERDOMAIN",
        "USERDOMAIN_ROAMINGPROFILE", "USERNAME", "USERPROFILE", "windir",
    )
}  # fmt: skip


def environment_block(variables: dict[str, str], names: dict[str, str]) -> str:
    """The process's environment block as Windows lays it out: ``Name=value`` strings, each
    ending with a NUL, sorted by name (case-insensitively), then one more NUL. ``names`` gives
    a lower-cased name's spelling (else :data:`VARIABLE_NAMES`', else upper-cased)."""
    entries = sorted(variables.items(), key=lambda item: item[0].upper())
    text = "".join(f"{names.get(k, VARIABLE_NAMES.get(k, k.upper()))}={v}\0" for k, v in entries)
    return text + "\0"


def machine_variables(guest: GuestEnvironment, x64: bool) -> dict[str, str]:
    """The system environment variables every Windows process has (lower-cased, as
    :func:`user_dirs`): the processor count and architecture agree with GetSystemInfo and
    KUSER_SHARED_DATA (a sandbox check compares %NUMBER_OF_PROCESSORS% with them)."""
    variables = {
        "number_of_processors": str(guest.processors),
        "processor_architecture": "AMD64" if x64 else "x86",
        "processor_level": "6",
        "processor_revision": f"{PROCESSOR_REVISION:04x}",
        "processor_identifier": f"{processor_identifier(x64)}, {guest.cpu_vendor}",
        "os": "Windows_NT",
        "homedrive": "C:",
        "commonprogramfiles": "C:\\Program Files\\Common Files",
    }
    if x64:
        variables["programfiles(x86)"] = "C:\\Program Files (x86)"
        variables["programw6432"] = "C:\\Program Files"
    return variables


def recent_shortcuts(user: str) -> list[str]:
    """Guest paths of the shortcuts in the user's Recent folder."""
    folder = f"{user_dirs(user, '', '')['appdata']}\\Microsoft\\Windows\\Recent"
    return [f"{folder}\\{name}" for name in RECENT_SHORTCUTS]


def guest_variables(plan: ReplayPlan) -> dict[str, str]:
    """The plan's environment variables as the guest sees them (names lower-cased), marker excluded."""
    variables = user_dirs(plan.user, plan.domain, plan.hostname)
    variables.update({k.lower(): v for k, v in plan.env.items()})
    return variables


def split_arguments(text: str) -> list[str]:
    """Arguments from one string, split at blanks, quotes grouping; backslashes are kept as typed
    (Windows paths), so ``-o "C:\\out dir" c:\\x`` gives ``["-o", "C:\\out dir", "c:\\x"]``."""
    import shlex

    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)
