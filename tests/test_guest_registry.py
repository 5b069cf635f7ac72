"""The machine's registry keys (emulator/guest_registry.py) and a scenario's over them."""

from __future__ import annotations

from emulator.guest_registry import CENTRAL_PROCESSOR, CURRENT_VERSION, machine_keys, with_machine_keys
from emulator.plan import RegistryKey, RegistryValue, ReplayPlan


def _plan(**changes: object) -> ReplayPlan:
    return ReplayPlan(name="x", target_path="x.exe", emu_path="C:\\x.exe").model_copy(update=changes)


def _values(keys: list[RegistryKey], path: str) -> dict[str, str]:
    (key,) = [k for k in keys if k.path.lower() == path.lower()]
    return {v.name: v.data for v in key.values}


def test_the_keys_follow_the_environment() -> None:
    plan = _plan(os_version=(10, 0, 22631), hostname="LAB-PC-3")
    keys = machine_keys(plan)
    version = _values(keys, CURRENT_VERSION)
    assert version["CurrentBuildNumber"] == "22631" and version["DisplayVersion"] == "23H2"
    assert version["RegisteredOwner"] == plan.user
    processors = [k for k in keys if k.path.startswith(CENTRAL_PROCESSOR + "\\")]
    assert len(processors) == plan.guest.processors
    assert _values(keys, processors[0].path)["ProcessorNameString"] == plan.guest.cpu_brand
    computer = _values(keys, "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName")
    assert computer == {"ComputerName": "LAB-PC-3"}
    # One machine, one identity: the same host name gives the same MachineGuid, another not.
    guid = _values(keys, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography")["MachineGuid"]
    assert guid == _values(machine_keys(plan), "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography")["MachineGuid"]
    other = machine_keys(_plan(hostname="LAB-PC-4"))
    assert guid != _values(other, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography")["MachineGuid"]


def test_a_scenario_value_replaces_the_machines_of_that_name_only() -> None:
    scenario = [
        RegistryKey(
            path="hkey_local_machine\\software\\microsoft\\cryptography",
            values=[RegistryValue(name="machineguid", data="6f1c2d3e-4b5a-4c6d-8e9f-a0b1c2d3e4f5")],
        ),
        RegistryKey(path=CURRENT_VERSION, values=[RegistryValue(name="Extra", data="1")]),
        RegistryKey(path="HKEY_CURRENT_USER\\Software\\Own", values=[RegistryValue(name="v", data="w")]),
    ]
    merged = with_machine_keys(machine_keys(_plan()), scenario)
    paths = [k.path.lower() for k in merged]
    assert len(paths) == len(set(paths))
    assert _values(merged, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography") == {
        "machineguid": "6f1c2d3e-4b5a-4c6d-8e9f-a0b1c2d3e4f5"
    }
    version = _values(merged, CURRENT_VERSION)
    assert version["Extra"] == "1" and version["ProductName"] == "Windows 10 Pro"
    assert _values(merged, "HKEY_CURRENT_USER\\Software\\Own") == {"v": "w"}
