"""URLMon's one-call downloads (emulator/apis/urlmon.py) answered by the responders.

The success path is the generality chain scenarios/urlmon-drop-x86 (tests/test_lineage.py,
tests/test_scenarios.py); here the failure path: a host nobody answers.
"""

from __future__ import annotations

from pathlib import Path

from emulator.apis.urlmon import INET_E_RESOURCE_NOT_FOUND, cache_path
from emulator.events import ApiCall, FileAccess, NetworkExchange
from emulator.replay import emulate
from emulator.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "urlmon-drop-x86"


def test_an_unanswered_download_fails_and_writes_no_file() -> None:
    plan = load_scenario(SCENARIO)
    recording = emulate(plan.model_copy(update={"responders": []}))
    calls = [e for e in recording.events if isinstance(e, ApiCall)]
    download = next(c for c in calls if c.api == "urlmon.URLDownloadToFileA")
    assert int(download.ret or "0", 16) == INET_E_RESOURCE_NOT_FOUND
    # The sample gives up (exit code 2) before LoadLibraryA; nothing was written.
    assert "kernel32.LoadLibraryA" not in [c.api for c in calls]
    assert not [e for e in recording.events if isinstance(e, FileAccess) and e.op == "write"]
    assert not [e for e in recording.events if isinstance(e, NetworkExchange) and e.response.status]


def test_cache_paths_follow_the_url() -> None:
    local = r"C:\Users\a\AppData\Local"
    first = cache_path("https://h.example/pkg/blob.dat", local)
    assert first.startswith(local + r"\Microsoft\Windows\INetCache\IE" + "\\")
    assert first.endswith(r"\blob[1].dat")
    assert cache_path("https://h.example/pkg/blob.dat", local) == first
    assert cache_path("https://other.example/pkg/blob.dat", local) != first
    assert cache_path("http://h.example/", local).endswith(r"\index[1].html")
