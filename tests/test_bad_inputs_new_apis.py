"""Hostile arguments to the APIs of session 32 (XPRESS, NtContinue, APCs, DPAPI, adapters,
Winsock, the system disk, waits, script hosts): real emulations of tests/bins/hostile/hostile3.c
(``make -C tests/bins/hostile``; the case is the last word of its command line). Each must end
within its limits, completed or with an outcome naming the cause, and answer as Windows does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emulator.environment import GuestEnvironment
from emulator.events import ApiCall, Note
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate

REPO = Path(__file__).resolve().parent.parent
BINS = REPO / "tests" / "bins" / "hostile"
SAMPLES = ["hostile3.exe", "hostile3_32.exe"]
STATUS_BAD_COMPRESSION_BUFFER = 0xC0000242


def _emulate(case: str, sample: str = "hostile3.exe") -> Recording:
    plan = ReplayPlan(
        name=f"hostile3-{case}",
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        guest=GuestEnvironment(argv=[case]),
    )
    return emulate(plan)


def _printed(recording: Recording) -> dict[str, int]:
    out = {}
    for event in recording.events:
        if isinstance(event, ApiCall) and event.api == "kernel32.OutputDebugStringA":
            name, _, value = event.args[0].rpartition("=")
            out[name] = int(value)
    return out


@pytest.mark.parametrize("sample", SAMPLES)
def test_an_xpress_run_of_4_gb_into_a_1_mib_buffer_faults_at_the_buffers_end(sample: str) -> None:
    """A literal, then one match of length 0xFFFFFFF0 at offset 1, into a 1 MiB buffer said to be
    4 GB: the decompressor copied it byte by byte into a 4 GB bytearray (the replay hung past every
    limit). Now the output stops one byte past the committed memory, where the write faults as
    Windows' does; the same run into the 1 MiB it has fills it."""
    began = time.monotonic()
    recording = _emulate("xp_huge", sample)
    took = time.monotonic() - began
    assert recording.status == "fault", recording.detail
    assert "invalid_write" in recording.detail and "ntdll.RtlDecompressBuffer" in recording.detail
    assert took < 20, f"{took:.1f} s"
    fit = _emulate("xp_fit", sample)
    assert fit.status == "completed", fit.detail
    assert _printed(fit) == {"xp_fit_status": 0, "xp_fit_final": 1 << 20, "xp_fit_last": ord("A"), "end": 1}


def test_malformed_xpress_streams_are_refused_as_windows_refuses_them() -> None:
    """A match before the output's start, a Huffman table that is not a prefix code, half a
    table: STATUS_BAD_COMPRESSION_BUFFER; unreadable input: a fault in the call, named."""
    recording = _emulate("xp_before")
    printed = _printed(recording)
    assert printed["xp_before"] == printed["xh_not_prefix"] == printed["xh_truncated"] == STATUS_BAD_COMPRESSION_BUFFER
    assert printed["xh_zeros"] == 0 and printed["xh_zeros_final"] == 65536  # one block at most
    assert recording.status == "fault" and "invalid_read address=0x1000" in recording.detail, recording.detail


def _notes(recording: Recording, what: str) -> list[str]:
    return [e.detail for e in recording.events if isinstance(e, Note) and e.what == what]


@pytest.mark.parametrize("sample", SAMPLES)
def test_a_command_line_past_32766_characters_fails_as_on_windows(sample: str) -> None:
    """``CreateProcessA("powershell.exe -EncodedCommand <1 MiB>")``: Speakeasy split the line with
    shlex (14 s) and made the process; Windows refuses a command line longer than a UNICODE_STRING
    holds with ERROR_FILENAME_EXCED_RANGE. 32766 characters still start it, noted."""
    began = time.monotonic()
    recording = _emulate("ps_huge", sample)
    assert time.monotonic() - began < 10
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {"created": 0, "created_error": 206, "done": 1, "end": 1}
    assert not _notes(recording, "script_command")
    longest = _emulate("ps_longest", sample)
    assert _printed(longest)["created"] == 1
    (note,) = _notes(longest, "script_command")
    assert note.startswith("powershell.exe -EncodedCommand, not decoded (not UTF-16LE): SQBFAFgA")
    assert " [cut]" in note


def test_encoded_commands_that_are_not_base64_or_not_utf16_are_noted_undecoded() -> None:
    """Already right: invalid base64 and an odd number of bytes are noted with the cause."""
    bad = _emulate("ps_invalid")
    assert _notes(bad, "script_command") == [
        "powershell.exe -EncodedCommand, not decoded (not base64): SQBF!!AFgA*&^%; the script host is not emulated"
    ]
    odd = _emulate("ps_odd")
    assert _notes(odd, "script_command") == [
        "powershell.exe -EncodedCommand, not decoded (not UTF-16LE): SQBFAFg; the script host is not emulated"
    ]


def test_a_thousand_threads_waited_for_one_by_one_all_run() -> None:
    """1000 CreateThread before the first wait: Speakeasy queued 100 and returned NULL for the
    rest with no last error (their waits answered WAIT_OBJECT_0, their exit codes 0: 900 threads
    lost unnoticed). Now up to MAX_QUEUED_THREADS are queued; each ran in its wait."""
    recording = _emulate("threads")
    assert recording.status == "completed", recording.detail
    printed = _printed(recording)
    assert printed["waited"] == 1000
    assert [printed[f"code{i}"] for i in (1, 63, 64, 500, 998, 999)] == [1, 63, 64, 500, 998, 999]


def test_one_thread_past_the_queue_limit_fails_with_not_enough_memory() -> None:
    """1100 CreateThread and no wait: MAX_QUEUED_THREADS are made, the next fails with
    ERROR_NOT_ENOUGH_MEMORY (Speakeasy's NULL came with no last error)."""
    from emulator.limits import MAX_QUEUED_THREADS

    recording = _emulate("thread_flood")
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {"made": MAX_QUEUED_THREADS, "error": 8, "end": 1}


@pytest.mark.parametrize("sample", SAMPLES)
def test_wsagetlasterror_reads_the_error_winsock_calls_set(sample: str) -> None:
    """WSARecv / WSASend on a socket never connected (NULL or zero buffers, a count of 2**31-1,
    an unmapped 2 GiB buffer): SOCKET_ERROR, and WSAGetLastError says WSAENOTCONN. Speakeasy had
    no WSAGetLastError: it answered 0 from its signature, so every failed call looked like one that
    set no error. A handle that is no socket: WSAENOTSOCK (it said WSAENOTCONN)."""
    recording = _emulate("wsa", sample)
    assert recording.status == "completed", recording.detail
    printed = _printed(recording)
    for name in ("recv_null", "recv_zero", "recv_huge_count", "send_null", "send_unmapped"):
        assert (printed[name], printed[f"{name}_error"]) == (-1, 10057), name
    assert (printed["recv_bad_socket"], printed["recv_bad_socket_error"]) == (-1, 10038)
    assert printed["done"] == 1


@pytest.mark.parametrize("sample", SAMPLES)
def test_ntcontinue_of_an_unreadable_context_answers_access_violation(sample: str) -> None:
    """``NtContinue((PCONTEXT)0x1000)``: the kernel's probe fails with STATUS_ACCESS_VIOLATION
    (it said STATUS_INVALID_PARAMETER) and the caller goes on."""
    recording = _emulate("ntc_unmapped", sample)
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {"ntc_unmapped": 0xC0000005, "end": 1}


def test_rtlrestorecontext_from_kernel32_of_an_unreadable_context_faults_in_the_call() -> None:
    """x64 kernel32 exports RtlRestoreContext (mingw binds it there): it had no handler there
    (served from its signature: it returned, nothing loaded). It reads the record in user mode,
    so an unreadable one faults in the call, named."""
    recording = _emulate("ntc_restore")
    assert recording.status == "fault", recording.detail
    assert "invalid_read address=0x1000 in kernel32.RtlRestoreContext" in recording.detail


@pytest.mark.parametrize("case", ["ntc_wildsp", "ntc_wildpc"])
def test_a_context_with_a_wild_stack_or_pc_ends_in_a_named_fault(case: str) -> None:
    """Already right: NtContinue to a CONTEXT whose stack pointer is 0x10, or whose pc is
    unmapped, ends the run with a fault naming the pc."""
    recording = _emulate(case)
    assert recording.status == "fault", recording.detail
    assert "pc=0x" in recording.detail


@pytest.mark.parametrize("sample", SAMPLES)
def test_a_wait_on_a_null_handle_fails_with_invalid_handle(sample: str) -> None:
    """``WaitForSingleObject(NULL)`` and a WaitForMultipleObjects list holding NULL: WAIT_FAILED,
    ERROR_INVALID_HANDLE, as Windows answers (Speakeasy's WAIT_OBJECT_0 said it was signalled).
    So do waits on handles of threads already closed, which name nothing any more
    (waits.ThreadWaits._names_nothing; they answered WAIT_OBJECT_0)."""
    printed = _printed(_emulate("threads", sample))
    assert (printed["null_wait"], printed["null_wait_error"]) == (0xFFFFFFFF, 6)
    assert (printed["null_many"], printed["null_many_error"]) == (0xFFFFFFFF, 6)
    assert (printed["closed_wait"], printed["closed_wait_error"]) == (0xFFFFFFFF, 6)
    assert (printed["closed_many"], printed["closed_many_error"]) == (0xFFFFFFFF, 6)


@pytest.mark.parametrize("sample", SAMPLES)
def test_adapter_lists_into_small_buffers_say_the_size_needed(sample: str) -> None:
    """GetAdaptersAddresses / GetAdaptersInfo with 1 byte, with no buffer: ERROR_BUFFER_OVERFLOW
    and the size needed, then success with it (already right); no size pointer:
    ERROR_INVALID_PARAMETER (GetAdaptersInfo's, Speakeasy's handler, faulted reading it)."""
    recording = _emulate("adapters", sample)
    assert recording.status == "completed", recording.detail
    printed = _printed(recording)
    assert printed["aa_small"] == printed["aa_null"] == printed["ai_small"] == printed["ai_null"] == 111
    assert printed["aa_needed"] == printed["aa_null_needed"] > 0 and printed["aa_fits"] == 0
    assert printed["ai_needed"] == printed["ai_null_needed"] > 0 and printed["ai_fits"] == 0
    assert printed["aa_null_size"] == printed["ai_null_size"] == printed["aa_family"] == 87


def test_dpapi_blobs_truncated_or_with_a_wrong_length_are_refused() -> None:
    """Already right: a blob cut to 30 bytes, one whose description length says 0x7FFFFFF0, an
    empty one: NTE_BAD_DATA; no blob or no output: ERROR_INVALID_PARAMETER; the good blob
    opens; an unmapped pbData faults in the call, named."""
    recording = _emulate("dpapi")
    printed = _printed(recording)
    nte_bad_data = 0x80090005
    for name in ("truncated", "wrong_length", "empty"):
        assert (printed[name], printed[f"{name}_error"]) == (0, nte_bad_data), name
    assert (printed["null_in"], printed["null_in_error"]) == (0, 87)
    assert (printed["null_out"], printed["null_out_error"]) == (0, 87)
    assert (printed["good"], printed["good_size"]) == (1, 13)
    assert recording.status == "fault", recording.detail
    assert "invalid_read address=0x1000 in crypt32.CryptUnprotectData" in recording.detail


def test_disk_ioctls_with_tiny_or_no_output_buffers_answer_as_windows() -> None:
    """Already right: geometry and length into 1 or 4 bytes or none: ERROR_INSUFFICIENT_BUFFER;
    a storage query into 8 bytes: the header with the size needed; a short query:
    ERROR_INVALID_PARAMETER; unmapped output: ERROR_NOACCESS; an unknown code:
    ERROR_INVALID_FUNCTION."""
    recording = _emulate("disk")
    assert recording.status == "completed", recording.detail
    printed = _printed(recording)
    for name in ("geo_tiny", "geo_null", "len_tiny", "prop_tiny"):
        assert (printed[name], printed[f"{name}_error"]) == (0, 122), name
    assert (printed["prop_header"], printed["prop_header_got"]) == (1, 8) and printed["prop_header_size"] > 8
    assert printed["prop_short_in_error"] == 87 and printed["prop_unmapped_out_error"] == 998
    assert printed["unknown_ioctl_error"] == 1


def test_twenty_thousand_apcs_run_in_one_alertable_sleep() -> None:
    """Already right: 20,000 QueueUserAPC to the own thread, then SleepEx(0, TRUE): every one
    runs, WAIT_IO_COMPLETION, in seconds. (100,000 of them reach the API-call limit, named.)"""
    began = time.monotonic()
    recording = _emulate("apc_flood")
    assert time.monotonic() - began < 30
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {"queued": 20000, "sleepex": 0xC0, "ran": 20000, "end": 1}


def test_a_manifest_naming_windows_10_after_a_1_mib_comment_is_read_whole() -> None:
    """bigmanifest.exe: winver10.c whose manifest puts 1 MiB of comment before its
    compatibility section. The reader cut manifests at 64 KiB: the program was told Windows 8
    (6.2); it reads the whole resource now and GetVersionEx says 10.0."""
    plan = ReplayPlan(
        name="hostile3-bigmanifest",
        target_path=str(BINS / "bigmanifest.exe"),
        emu_path="C:\\Users\\analyst\\Desktop\\bigmanifest.exe",
        guest=GuestEnvironment(),
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    lines = [e.args[0] for e in recording.events if isinstance(e, ApiCall) and e.api == "kernel32.OutputDebugStringA"]
    assert lines == ["check GetVersionEx_with_windows_10_manifest: pass 1000"]
