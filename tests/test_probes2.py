"""Chains nobody here wrote, probed, round 2 (issue: probes2). What each probe showed before its fix:

* ``inject-dll-path``: classic DLL injection (a remote thread at LoadLibraryA, its parameter the
  path the injector wrote into notepad): the DLL's stage was not placed in notepad (no
  ``hosts`` edge) and no T1055.001. The path written there and then loaded ties the module to the
  process (``methods`` gains ``dll_path``).
* ``sandbox-gate``: a loader counting the shortcuts in the user's Recent folder found none (only
  the scenario's files existed) and took its sandbox exit; the listing also spelled every name
  in lower case. The checks gave no T1497.001 / T1622 / T1057.
* ``reg-enum-b64``: RegEnumValueA was signature-emulated (no names, no data, never
  ERROR_NO_MORE_ITEMS); the joined REG_SZ fragments, each read over the previous one's NUL, were
  not one carrier.
* ``bmp-lsb-x86``: a payload taken from a BMP's pixels gave no T1027.003.
* ``beacon-sysinfo``: GetUserNameA gave no T1033 (the beacon itself was right: ``beacons_to``).
* ``callbacks-rare`` / ``-x86``: InitOnceExecuteOnce, EnumResourceTypesA, SetPropA/EnumPropsExA
  were signature-emulated: no payload ran.

``manual-map-slack`` was right before (a hand-mapped DLL in a larger allocation, sections
protected one by one, and code in the allocation's spare pages after the image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Report = dict[str, Any]
NOTEPAD = "C:\\Windows\\System32\\notepad.exe"


def _edges(report: Report) -> dict[tuple[str, str, str], dict[str, Any]]:
    graph = report["graph"]
    return {(e["source"], e["type"], e["target"]): e for e in graph.get("links") or graph["edges"]}


def _calls(report: Report, api: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"] == api]


def test_a_dll_injected_by_its_path_runs_in_the_target_process(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("inject-dll-path")
    s1 = report["stages"][1]
    assert (s1["kind"], s1["name"], s1["process"]) == ("module", "wmsvc.dll", NOTEPAD)
    edges = _edges(report)
    assert (f"process:{NOTEPAD}", "hosts", "s1") in edges
    injection = edges[("s0", "injects_into", f"process:{NOTEPAD}")]
    assert injection["methods"] == ["dll_path", "remote_thread"]
    thread = _calls(report, "kernel32.CreateRemoteThread")[0]
    dll = [a for a in report["attack"] if a["technique"] == "T1055.001"]
    assert [(a["stage"], a["evidence"]) for a in dll] == [("s0", [thread["seq"]])]
    # the DLL's origin is the file the injector dropped, from its own data
    assert [h["source"] for h in s1["lineage"]] == ["image", "file_write"]


def test_a_remote_thread_at_a_loader_api_without_a_written_path_is_not_dll_injection(
    scenario_report: Callable[[str], Report],
) -> None:
    # inject-remote-thread writes shellcode and starts it: no module, no dll_path
    report = scenario_report("inject-remote-thread")
    injection = _edges(report)[("s0", "injects_into", f"process:{NOTEPAD}")]
    assert injection["methods"] == ["remote_thread"]
    assert not [a for a in report["attack"] if a["technique"] == "T1055.001"]


def test_the_default_guest_passes_a_loaders_sandbox_checks(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("sandbox-gate")
    assert _calls(report, "kernel32.ExitProcess")[-1]["args"] == ["0x0"]
    assert [s["kind"] for s in report["stages"]] == ["pe", "shellcode"]
    listed = [c["args"][1] for c in _calls(report, "kernel32.FindNextFileA") if not c["args"][1].startswith("0x")]
    assert len(listed) >= 3 and "Invoices.lnk" in listed  # the names as spelled, not lower-cased
    techniques = {a["technique"]: a for a in report["attack"]}
    for technique in ("T1497.001", "T1622", "T1057", "T1033"):
        assert techniques[technique]["stage"] == "s0", technique
    # the system checks cite each call of the traits looked at
    by_seq = {c["seq"]: c["api"] for c in report["api_calls"]}
    checked = {by_seq[seq] for seq in techniques["T1497.001"]["evidence"]}
    assert {"kernel32.GetTickCount64", "kernel32.GlobalMemoryStatusEx", "iphlpapi.GetAdaptersInfo"} <= checked


def test_a_few_machine_queries_are_not_a_sandbox_check(scenario_report: Callable[[str], Report]) -> None:
    # beacon-sysinfo reads names and the OS version, no sandbox traits; 3cx none either
    for name in ("beacon-sysinfo", "3cx"):
        report = scenario_report(name)
        assert not [a for a in report["attack"] if a["technique"] == "T1497.001"], name


def test_registry_values_are_enumerated_and_joined(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("reg-enum-b64")
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    reads = [r["value_name"] for r in report["registry"] if r["op"] == "read"]
    assert reads == ["Version", "0", "1", "2"]
    s1 = report["stages"][1]
    assert s1["origin"]["ref"].endswith("\\Cache\\0 + 1 + 2")
    assert [h["transform"] for h in s1["lineage"]] == ["source", "decode", "xor"]


def test_a_payload_in_a_pictures_pixels_is_steganography(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("bmp-lsb-x86")
    stego = [a for a in report["attack"] if a["technique"] == "T1027.003"]
    s1 = report["stages"][1]
    assert [a["stage"] for a in stego] == ["s0"]
    # the read of the picture the stage's lineage starts from, and the stage's start
    assert stego[0]["evidence"] == [s1["lineage"][0]["evidence"][0], s1["seq_range"][0]]
    # a payload decoded from a download that is no picture is not steganography
    assert not [a for a in scenario_report("beacon-sysinfo")["attack"] if a["technique"] == "T1027.003"]


def test_a_beacon_posting_the_hosts_names(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("beacon-sysinfo")
    url = "url:https://telemetry.example-metrics.net/api/v2/register"
    assert ("s0", "beacons_to", url) in _edges(report)
    techniques = {a["technique"] for a in report["attack"]}
    assert {"T1033", "T1082", "T1071.001"} <= techniques
    assert report["stages"][1]["origin"]["type"] == "network"


def test_less_common_callbacks_run_their_functions(scenario_report: Callable[[str], Report]) -> None:
    for name in ("callbacks-rare", "callbacks-rare-x86"):
        report = scenario_report(name)
        assert not [n for n in report["notes"] if n["what"] == "signature_emulated"], name
        assert [(s["via"], s["parent"]) for s in report["stages"][1:]] == [("callback", "s0")] * 3, name
        dropped = sorted(d["path"].rsplit("\\", 1)[1] for d in report["dropped"])
        assert dropped == ["lineage_initonce.txt", "lineage_propenum.txt", "lineage_restypes.txt"], name
        assert report["outcome"]["status"] == "completed", name


def test_code_after_a_hand_mapped_image_is_a_stage_of_its_own(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("manual-map-slack")
    s1, s2 = report["stages"][1:]
    allocation = _calls(report, "kernel32.VirtualAlloc")[0]
    base, size = int(allocation["ret"], 16), int(allocation["args"][1], 16)
    assert s1["kind"] == "pe_in_memory" and int(s1["base"], 16) == base
    assert int(s1["base"], 16) + s1["size"] == int(s2["entry"], 16) < base + size
    assert s2["kind"] == "shellcode" and s2["parent"] == "s0"
    assert [h["detail"] for h in s1["lineage"][1:]] == ["key 0x3c"]
    assert [h["detail"] for h in s2["lineage"][1:]] == ["key 0x5a"]
