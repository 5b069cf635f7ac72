"""The registry every Windows machine has, from the guest's ``[environment]``.

Only the scenario's keys used to exist: ``HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion``
(the product name and build a beacon reports), the processors under
``HARDWARE\\DESCRIPTION\\System\\CentralProcessor`` (a sandbox check counts them), the BIOS
strings, the computer name, ``MachineGuid`` (a common bot identifier) answered
ERROR_FILE_NOT_FOUND: a registry without them is a machine no Windows is. These keys are built
from the same settings the APIs answer from (names, OS version, CPU, the SMBIOS table of
``emulator/apis/firmware.py``); a scenario's own ``[[registry]]`` values replace them value by
value. Values derived from the machine's identity (``MachineGuid``, ``ProductId``) come from its
host name, so two replays of one scenario see the same machine.
"""

from __future__ import annotations

import uuid

from emulator.apis import firmware
from emulator.environment import processor_identifier
from emulator.plan import RegistryKey, RegistryValue, ReplayPlan, canonical_key_path

CURRENT_VERSION = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
CENTRAL_PROCESSOR = "HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System\\CentralProcessor"
# Processors past this many get no key of their own (a registry of thousands of keys helps no one).
MAX_PROCESSOR_KEYS = 64
# Windows 10/11 feature updates by build: what DisplayVersion says (ReleaseId stopped at 2009).
DISPLAY_VERSIONS = {
    19041: "2004",
    19042: "20H2",
    19043: "21H1",
    19044: "21H2",
    19045: "22H2",
    22000: "21H2",
    22621: "22H2",
    22631: "23H2",
    26100: "24H2",
}
UPDATE_BUILD_REVISION = 3803  # UBR: the cumulative update's revision
PROCESSOR_MHZ = 3600
# Windows' install date: this many seconds before the replay's start (virtual time); a fresh
# install is a sandbox tell.
INSTALLED_BEFORE_SECONDS = 400 * 24 * 3600


def _sz(name: str, data: str) -> RegistryValue:
    return RegistryValue(name=name, type="REG_SZ", data=data)


def _dword(name: str, value: int) -> RegistryValue:
    return RegistryValue(name=name, type="REG_DWORD", data=hex(value & 0xFFFFFFFF))


def machine_keys(plan: ReplayPlan) -> list[RegistryKey]:
    """The machine's standard keys for ``plan``."""
    major, minor, build = plan.os_version
    identity = uuid.uuid5(uuid.NAMESPACE_DNS, f"{plan.hostname}.{plan.domain}".lower())
    display = (
        DISPLAY_VERSIONS.get(build, DISPLAY_VERSIONS[max(b for b in DISPLAY_VERSIONS if b <= build)])
        if build >= 19041
        else ""
    )
    windows = "C:\\Windows"
    current_version = [
        _sz("ProductName", "Windows 10 Pro" if major >= 10 else f"Windows {major}.{minor}"),
        _sz("EditionID", "Professional"),
        _sz("InstallationType", "Client"),
        _sz("CurrentVersion", "6.3" if major >= 10 else f"{major}.{minor}"),
        _sz("CurrentBuild", str(build)),
        _sz("CurrentBuildNumber", str(build)),
        _dword("CurrentMajorVersionNumber", major),
        _dword("CurrentMinorVersionNumber", minor),
        _dword("UBR", UPDATE_BUILD_REVISION),
        _sz("BuildLab", f"{build}.vb_release.191206-1406"),
        _sz("BuildBranch", "vb_release"),
        _sz("RegisteredOwner", plan.user),
        _sz("RegisteredOrganization", ""),
        _sz("ProductId", f"00330-{identity.int % 100000:05d}-{identity.int // 100000 % 100000:05d}-AAOEM"),
        _dword("InstallDate", max(0, int(plan.start_time) - INSTALLED_BEFORE_SECONDS)),
        _sz("SystemRoot", windows),
        _sz("PathName", windows),
    ]
    if display:
        current_version += [_sz("DisplayVersion", display), _sz("ReleaseId", "2009")]
    guest = plan.guest
    processor = [
        _sz("ProcessorNameString", guest.cpu_brand),
        _sz("VendorIdentifier", guest.cpu_vendor),
        _sz("Identifier", processor_identifier()),
        _dword("~MHz", PROCESSOR_MHZ),
    ]
    hostname = plan.hostname.upper()
    keys = [
        RegistryKey(path=CURRENT_VERSION, values=current_version),
        RegistryKey(path=CURRENT_VERSION.replace("\\SOFTWARE\\", "\\SOFTWARE\\WOW6432Node\\"), values=current_version),
        *(
            RegistryKey(path=f"{CENTRAL_PROCESSOR}\\{index}", values=processor)
            for index in range(min(guest.processors, MAX_PROCESSOR_KEYS))
        ),
        RegistryKey(
            # the firmware's identification, as the BIOS section of the SMBIOS table gives it
            # (REG_MULTI_SZ on Windows; its first string here)
            path="HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System",
            values=[
                _sz("SystemBiosVersion", f"ALASKA - 1072009 {firmware.BIOS_VERSION}"),
                _sz("SystemBiosDate", firmware.BIOS_DATE[:6] + firmware.BIOS_DATE[8:]),
            ],
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System\\BIOS",
            values=[
                _sz("BIOSVendor", firmware.BIOS_VENDOR),
                _sz("BIOSVersion", firmware.BIOS_VERSION),
                _sz("BIOSReleaseDate", firmware.BIOS_DATE),
                _sz("SystemManufacturer", firmware.SYSTEM_MANUFACTURER),
                _sz("SystemProductName", firmware.SYSTEM_PRODUCT),
                _sz("BaseBoardManufacturer", firmware.SYSTEM_MANUFACTURER),
                _sz("BaseBoardProduct", firmware.BOARD_PRODUCT),
            ],
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName",
            values=[_sz("ComputerName", hostname)],
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ActiveComputerName",
            values=[_sz("ComputerName", hostname)],
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters",
            values=[_sz("Hostname", plan.hostname), _sz("Domain", plan.domain)],
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography", values=[_sz("MachineGuid", str(identity))]
        ),
        RegistryKey(
            path="HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion",
            values=[
                _sz("ProgramFilesDir", "C:\\Program Files"),
                _sz("ProgramFilesDir (x86)", "C:\\Program Files (x86)"),
                _sz("CommonFilesDir", "C:\\Program Files\\Common Files"),
                _sz("ProgramW6432Dir", "C:\\Program Files"),
            ],
        ),
    ]
    return keys


def with_machine_keys(machine: list[RegistryKey], scenario: list[RegistryKey]) -> list[RegistryKey]:
    """The machine's keys with the scenario's over them: a value the scenario sets replaces the
    machine's of that name (names and paths without case, a path's root in any spelling); its other
    keys are added."""
    merged: dict[str, dict[str, RegistryValue]] = {}
    paths: dict[str, str] = {}
    for key in [*machine, *scenario]:
        path = canonical_key_path(key.path) or key.path
        folded = path.lower()
        paths.setdefault(folded, path)
        values = merged.setdefault(folded, {})
        for value in key.values:
            values[value.name.lower()] = value
    return [RegistryKey(path=paths[folded], values=list(values.values())) for folded, values in merged.items()]
