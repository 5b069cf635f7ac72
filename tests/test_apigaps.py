"""API gaps found on third-party programs (pip/setuptools launchers, distutils installers, a
Rust-built tool, mingw-w64 runtime DLLs), each reproduced by a small benign C sample in
tests/bins/apigaps/ (``make -C tests/bins/apigaps`` rebuilds them byte for byte), x64 and x86:
known folders, lstrlen of a bad pointer, the C runtime's getenv / _ismbblead and file
descriptors, GetFinalPathNameByHandle, a message box with a timeout, VirtualQuery of an image's
pages (mingw's pseudo-relocations), the report's note naming an API served from its signature
alone, and DLLs beside the program found as Windows' loader finds them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.backends.speakeasy.loader import DllSearch
from emulator.events import ApiCall, DataBuffer, FileAccess, Note, StageStart
from emulator.plan import ReplayPlan, VirtualFile
from emulator.replay import Recording, emulate

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "apigaps"
SAMPLES = ["apigaps.exe", "apigaps32.exe"]
CHECKS = [
    "known_folder_ok",
    "known_folder_is_localappdata",
    "unknown_folder_invalidarg",
    "lstrlenW_null",
    "lstrlenA_null",
    "lstrlenA_unmapped",
    "lstrlenA_abc",
    "getenv_marker",
    "getenv_missing",
    "ismbblead_ascii",
    "ctype",
    "wctype",
    "strdup",
    "messagebox_timeout",
    "messagebox_waited",
    "virtualquery_rdata_readonly",
    "virtualquery_rdata_bounds",
    "virtualquery_text_not_writable",
    "pseudo_reloc_patched",
    "final_path_dos",
    "open_self",
    "read_mz",
    "lseek_end_is_size",
    "lseeki64_back",
    "read_after_seek",
    "fstat64_file",
    "fstat64_console",
    "fstat64_bad_fd",
    "setmode",
    "isatty",
    "close",
    "open_missing",
    "write_new",
]
_CACHE: dict[tuple[str, tuple[tuple[str, str], ...], str], Recording] = {}
DESKTOP = "C:\\Users\\analyst\\Desktop"


def _emulate(sample: str, files: tuple[tuple[str, str], ...] = (), mode: str = "fast") -> Recording:
    """``sample`` run from the desktop, with ``files`` (guest path, file in BINS) in the guest."""
    key = (sample, files, mode)
    if key not in _CACHE:
        plan = ReplayPlan(
            name=Path(sample).stem,
            target_path=str(BINS / sample),
            emu_path=f"{DESKTOP}\\{sample}",
            files=[VirtualFile(emu_path=guest, host_path=str(BINS / host)) for guest, host in files],
            mode=mode,  # type: ignore[arg-type]
        )
        _CACHE[key] = emulate(plan)
    return _CACHE[key]


def _verdicts(recording: Recording) -> dict[str, str]:
    verdicts = {}
    for call in _calls(recording, "kernel32.OutputDebugStringA"):
        name, _, rest = call.args[0].removeprefix("check ").partition(": ")
        verdicts[name] = rest
    return verdicts


def _calls(recording: Recording, api: str) -> list[ApiCall]:
    return [e for e in recording.events if isinstance(e, ApiCall) and e.api == api]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_check_passes_and_the_run_completes(sample: str, mode: str) -> None:
    recording = _emulate(sample, mode=mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == dict.fromkeys(CHECKS, "pass")
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["stdio.exe", "stdio32.exe"])
def test_c_runtime_streams_write_and_read_files(sample: str, mode: str) -> None:
    """stdio.exe (the full mingw-w64 start-up): printf to stdout / stderr (x64 through
    msvcrt!__iob_func, which was unsupported), a file written with fwrite (unsupported) /
    fputs / fprintf / vfprintf / fputc (which wrote nothing to a file) and read back with
    fgets / fgetc / feof / rewind: every check passes and the writes are file events whose
    bytes make the dropped file."""
    recording = _emulate(sample, mode=mode)
    assert recording.status == "completed", recording.detail
    assert [c.args[0] for c in _calls(recording, "msvcrt.exit")] == ["0x10ff"]
    drop = "C:\\Users\\Public\\stdio-drop.txt"
    writes = [e for e in recording.events if isinstance(e, FileAccess) and e.op == "write" and e.path == drop]
    assert sum(w.size for w in writes) == len(b"ABCDEFline two\nn=42\nv=x\nZ")
    reads = [e for e in recording.events if isinstance(e, FileAccess) and e.op == "read" and e.path == drop]
    assert len(reads) >= 4  # three lines and a character


@pytest.mark.parametrize("sample", SAMPLES)
def test_known_folder_comes_from_the_guest_profile(sample: str) -> None:
    printed = [c.args[0] for c in _calls(_emulate(sample), "kernel32.OutputDebugStringW")]
    assert printed == ["C:\\Users\\analyst\\AppData\\Local"]


@pytest.mark.parametrize("sample", SAMPLES)
def test_crt_file_descriptors_are_file_events(sample: str) -> None:
    events = [e for e in _emulate(sample).events if isinstance(e, FileAccess)]
    temp = "C:\\Users\\analyst\\AppData\\Local\\Temp\\c.bin"
    assert [(e.op, e.size) for e in events if e.path == temp] == [("create", None), ("write", 9)]
    own = [(e.op, e.size) for e in events if e.path.endswith(sample) and e.op == "read"]
    assert own == [("read", 3)] or own == [("read", 2), ("read", 1)]


@pytest.mark.parametrize("sample", SAMPLES)
def test_an_api_served_from_its_signature_is_noted_once(sample: str) -> None:
    recording = _emulate(sample)
    notes = [e for e in recording.events if isinstance(e, Note) and e.what == "signature_emulated"]
    assert [n.detail.split(" ")[0] for n in notes] == ["kernel32.SetConsoleMode"]
    assert "served from its declared signature (returned 0x1" in notes[0].detail
    # The note follows the first call it is about (the second is not noted again), and carries
    # its call site.
    calls = _calls(recording, "kernel32.SetConsoleMode")
    assert len(calls) == 2
    call = calls[0]
    assert notes[0].seq > call.seq and notes[0].pc == call.pc
    # APIs with a handler (the project's or Speakeasy's) are not noted.
    assert not any("SHGetKnownFolderPath" in n.detail or "lstrlen" in n.detail for n in notes)


# ---- DLLs beside the program: Windows' search order over the guest's files ------------------

BESIDE = ((f"{DESKTOP}\\apidep.dll", "apidep.dll"), (f"{DESKTOP}\\apidep2.dll", "apidep2.dll"))


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_dlls_beside_the_program_are_loaded_for_imports_and_by_bare_name(mode: str) -> None:
    recording = _emulate("sideload.exe", BESIDE, mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == dict.fromkeys(
        ["import_dllmain_ran", "import_value", "loadlibrary_bare_name", "loadlibrary_value"], "pass"
    )
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]


def test_a_dll_found_so_is_read_from_its_file_then_a_module_stage() -> None:
    events = _emulate("sideload.exe", BESIDE).events
    for guest, name in BESIDE:
        read = next(e for e in events if isinstance(e, FileAccess) and e.path == guest)
        carrier = next(e for e in events if isinstance(e, DataBuffer) and e.ref == guest)
        stage = next(e for e in events if isinstance(e, StageStart) and e.name == name)
        assert read.op == "read" and read.size == (BINS / name).stat().st_size
        assert carrier.source == "file_read" and carrier.address == stage.base
        assert read.seq < carrier.seq < stage.seq and stage.kind == "module"
    # The import's DllMain ran before the entry point's first API call.
    first_call = next(e for e in events if isinstance(e, ApiCall))
    assert next(e for e in events if isinstance(e, StageStart) and e.name == "apidep.dll").seq < first_call.seq


def test_a_dll_in_a_system_folder_is_found_after_the_application_folder() -> None:
    system = "C:\\Windows\\System32"
    files = ((f"{system}\\apidep.dll", "apidep.dll"), (f"{system}\\apidep2.dll", "apidep2.dll"))
    recording = _emulate("sideload.exe", files)
    assert recording.status == "completed", recording.detail
    # The application's folder comes first: its apidep2.dll (a copy of apidep.dll) wins.
    first = _emulate("sideload.exe", (*files, (f"{DESKTOP}\\apidep2.dll", "apidep.dll")))
    assert _verdicts(first)["loadlibrary_value"] == "FAIL"


def test_the_search_order_skips_known_dlls_and_api_sets() -> None:
    search = DllSearch(emu=None, app_path=f"{DESKTOP}\\sideload.exe")
    assert search.candidates("libgcc_s_dw2-1") == [
        f"{DESKTOP}\\libgcc_s_dw2-1.dll",
        "C:\\Windows\\System32\\libgcc_s_dw2-1.dll",
        "C:\\Windows\\libgcc_s_dw2-1.dll",
    ]
    # KnownDLLs (the system's even when not loaded yet), API sets, and paths are never searched.
    for name in ("wldap32", "SETUPAPI.dll", "api-ms-win-core-synch-l1-2-0", "C:\\x\\y.dll"):
        assert search.candidates(name) == [], name


def test_a_dll_nowhere_in_the_guest_is_an_unsupported_api() -> None:
    recording = _emulate("sideload.exe")
    assert recording.status == "unsupported_api"
    assert recording.detail.startswith("unsupported API apidep.DepAttached")
    # A file elsewhere (not on the search path) is not found either.
    elsewhere = _emulate("sideload.exe", (("C:\\Users\\analyst\\Documents\\apidep.dll", "apidep.dll"),))
    assert elsewhere.status == "unsupported_api"


# ---- a bare sample's folder: the PE files it names are in its guest folder -------------------


def _bare(folder: Path, sample: str, *extra: str) -> ReplayPlan:
    """The plan `run FOLDER/SAMPLE` makes (the CLI's own defaults and flags)."""
    from emulator.cli.app import build_parser
    from emulator.cli.targets import _bare_plan

    target = folder / sample
    return _bare_plan(build_parser().parse_args(["run", *extra, "--", str(target)]), target)


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    """``tmp_path`` holding ``files``: name -> a file of BINS to copy, or the bytes to write."""
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else (BINS / content).read_bytes())
    return tmp_path


def test_a_bare_samples_folder_gives_the_guest_the_dlls_it_names(tmp_path: Path) -> None:
    """sideload.exe imports apidep.dll and loads apidep2.dll by bare name: both files beside it
    (names matched without case) are mapped into its guest folder, and every check passes as with
    a scenario's [[files]]; a DLL it does not name stays out, as does a named file that is not a PE."""
    folder = _folder(
        tmp_path,
        {
            "sideload.exe": "sideload.exe",
            "APIDEP.DLL": "apidep.dll",
            "apidep2.dll": "apidep2.dll",
            "fwdlib.dll": "fwdlib.dll",
        },
    )
    plan = _bare(folder, "sideload.exe")
    assert [(v.emu_path, Path(v.host_path).name) for v in plan.files] == [
        (f"{DESKTOP}\\APIDEP.DLL", "APIDEP.DLL"),
        (f"{DESKTOP}\\apidep2.dll", "apidep2.dll"),
    ]
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    assert set(_verdicts(recording).values()) == {"pass"} and len(_verdicts(recording)) == 4
    (folder / "apidep2.dll").write_bytes(b"not a PE file")
    # A host file name that is not UTF-8 (no Windows form) is never a name the sample uses.
    with open(bytes(folder) + b"/\xff\xfe.dll", "wb") as odd:
        odd.write(b"MZ")
    assert [Path(v.host_path).name for v in _bare(folder, "sideload.exe").files] == ["APIDEP.DLL"]


def test_a_dll_a_dll_beside_the_sample_names_is_taken_too(tmp_path: Path) -> None:
    """chain.exe names apichain.dll only; apichain.dll imports apidep.dll: both are taken."""
    folder = _folder(tmp_path, {"chain.exe": "chain.exe", "apichain.dll": "apichain.dll", "apidep.dll": "apidep.dll"})
    plan = _bare(folder, "chain.exe")
    assert [Path(v.host_path).name for v in plan.files] == ["apichain.dll", "apidep.dll"]
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == {"chained_import_value": "pass"}
    stages = [e.name for e in recording.events if isinstance(e, StageStart) and e.kind == "module"]
    assert sorted(stages) == ["apichain.dll", "apidep.dll"]


def test_alone_leaves_the_folder_out_and_the_outcome_names_the_missing_dll(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"chain.exe": "chain.exe", "apichain.dll": "apichain.dll", "apidep.dll": "apidep.dll"})
    plan = _bare(folder, "chain.exe", "--alone")
    assert plan.files == []
    recording = emulate(plan)
    assert recording.status == "unsupported_api"
    assert recording.detail.startswith(
        "unsupported API apichain.ChainValue (no apichain.dll in the guest and the emulator has none: "
        "put it beside the sample or map it with --file)"
    )
    # A --file for the same guest path wins over the folder's file of that name.
    given = _bare(folder, "chain.exe", "--file", f"{DESKTOP}\\apichain.dll={BINS / 'apidep.dll'}")
    assert [(Path(v.host_path).name, v.emu_path.rsplit(chr(92), 1)[1]) for v in given.files] == [
        ("apidep.dll", "apichain.dll"),
        ("apidep.dll", "apidep.dll"),
    ]


# ---- the printf family: formats as the Windows C runtime and wsprintf give them ---------------

FORMATTED = {
    "fmt wsprintfA_long": "1 -1 etw=7 amsi=80070057",
    "fmt wsprintfA_mix": "[   42|42   |00042|beef|BEEF|Q|narrow|wide|wide|narrow]",
    "fmt sprintf_i64": "1311768467463790320 123456789abcdef0 123456789ABCDEF0 5",
    "fmt sprintf_star": "     7|ab  |xy|abc",
    "fmt sprintf_flags": "0xff 010 10 +3  4 %",
    "fmt sprintf_float": "3.14 1.500000e+03 0.5",
    "fmt snprintf": "host/12345/path",
    "fmt vsprintf": "id-00000ABC--2",
    # _snprintf: 4 characters, no terminator (the Z's after them stay), -1 for the truncation
    "fmt snprintf_truncated": "abcdZZZZ -1",
    # sprintf_s's result and length; _vscprintf's length of "123-ab"
    "fmt sprintf_s_vscprintf": "s|5 3 6",
}


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize(("sample", "pointer"), [("formats.exe", "0000000000001234"), ("formats32.exe", "00001234")])
def test_the_printf_family_formats_as_windows(sample: str, pointer: str, mode: str) -> None:
    """wsprintfA/W, sprintf, _snprintf, _snwprintf, vsprintf, sprintf_s, _swprintf, _vscprintf:
    length modifiers (l, ll, I64, h, hh, z, I), * widths and precisions, flags, floats, %s/%S by
    the function's width, x86's two-slot 64-bit arguments, truncation without a terminator.
    Speakeasy's own formatter ended the replay at "%lu %lx" (an API handler error) and had no
    vsprintf, sprintf_s, _swprintf or _vscprintf."""
    recording = _emulate(sample, mode=mode)
    assert recording.status == "completed", recording.detail
    lines = dict(
        c.args[0].partition(": ")[::2]
        for c in _calls(recording, "kernel32.OutputDebugStringA")
        if c.args[0].startswith("fmt ")
    )
    assert lines == {**FORMATTED, "fmt sprintf_sizes": f"-1 255 77 78 {pointer}"}
    wide = [c.args[0] for c in _calls(recording, "kernel32.OutputDebugStringW")]
    assert wide == ["key=-7 ansi", "w n 9", "50%"]


# ---- the machine: folders, system files and the registry every Windows has -------------------

MACHINE_CHECKS = [
    "windows_is_a_folder",
    "temp_is_a_folder",
    "missing_is_not",
    "create_existing_folder_fails",
    "create_new_folder",
    "create_it_again_fails",
    "create_under_missing_fails",
    "listing_has_the_written_file",
    "listing_starts_with_dots",
    "system32_lists_ntdll",
    "kernel32_file_is_a_pe",
    "attributes_ex_folder",
    "attributes_ex_file",
    "attributes_ex_time_is_the_guests",
    "attributes_ex_missing",
    "file_times_set_are_read_back",
    "file_times_in_attributes_ex",
    "product_name",
    "build_matches_the_api",
    "one_key_per_processor",
    "machine_guid",
]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["machine.exe", "machine32.exe"])
def test_the_guest_has_the_folders_files_and_registry_of_a_windows_machine(sample: str, mode: str) -> None:
    """Each was a one-call emulator tell: C:\\Windows was no folder, CreateDirectory of an existing
    folder succeeded, a listing had no "." / ".." and not the file just written (and lower-cased
    names), System32 held no DLL, and the product name, build, processors and MachineGuid keys
    did not exist."""
    recording = _emulate(sample, mode=mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == dict.fromkeys(MACHINE_CHECKS, "pass")


# ---- combase / kernelbase: the DLLs Windows implements ole32's and kernel32's functions in ------

FORWARDED_CHECKS = [
    "combase_cocreateguid",
    "combase_guid_nonzero",
    "combase_cotaskmemalloc",
    "kernelbase_gettickcount",
    "kernelbase_pid",
    "kernelbase_lstrlena",
]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
def test_imports_from_combase_and_kernelbase_are_served_as_ole32s_and_kernel32s(mode: str) -> None:
    """combase.CoCreateGuid ended the replay as ``unsupported_api``; kernelbase.GetTickCount and
    kernelbase.lstrlenA (by GetProcAddress) now reach kernel32's handlers, recorded under the
    name the guest called."""
    recording = _emulate("forwarded.exe", mode=mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == dict.fromkeys(FORWARDED_CHECKS, "pass")
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]
    assert _calls(recording, "combase.CoCreateGuid") and _calls(recording, "kernelbase.GetTickCount")
    assert not [e for e in recording.events if isinstance(e, Note) and e.what == "signature_emulated"]


def test_an_export_forwarded_to_its_own_dll_resolves_to_that_dll() -> None:
    """fwdlib.dll's Alias forwards to fwdlib.Real: the DLL itself (not a module the emulator
    would make up for the name), as Windows resolves it; the program exits with Real's 42."""
    recording = _emulate("fwdself.exe", ((f"{DESKTOP}\\fwdlib.dll", "fwdlib.dll"),))
    assert recording.status == "completed", recording.detail
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x2a"]
    assert not [e for e in recording.events if isinstance(e, Note) and e.what == "dll_search_hijack"]


CRT_CHECKS = [
    "main_args",
    "strtol_hex_endptr",
    "strtol_octal",
    "strtol_overflow",
    "strtol_no_digits",
    "strtoul",
    "strtod",
    "atof",
    "strtok",
    "strtok_per_thread",
    "mbstowcs",
    "strerror",
    "setlocale_c",
    "localeconv_c",
    "setlocale_user",
    "localeconv_user",
    "setlocale_unknown",
    "setlocale_mixed",
    "mb_cur_max",
    "localtime_guest_clock",
    "gmtime_epoch",
    "mktime_normalizes",
    "strftime",
    "strftime_too_small",
    "time_zone",
    "mkdir",
    "access",
    "stat_file",
    "stat_folder",
    "ungetc",
    "rmdir_not_empty",
    "rename",
    "remove",
    "rmdir",
    "chdir_getcwd",
    "getcwd_allocates",
    "qsort",
    "qsort_strings",
    "bsearch",
    "setjmp_longjmp",
]


CRT_SAMPLES = ["crt.exe", "crt32.exe", "crt-ucrt.exe", "crt-ucrt32.exe"]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", CRT_SAMPLES)
def test_the_c_runtime_beyond_stdio(sample: str, mode: str) -> None:
    """crt.exe (the full mingw-w64 start-up): every function it calls had no handler and ended
    the replay as ``unsupported_api`` (strtol, strtod / atof returning in xmm0 / st(0), strtok,
    setlocale, localtime, _mkdir, qsort, _setjmp, ...), and Speakeasy's _initterm called no
    initializer (mingw's argc / argv were never set): each check passes, qsort's and bsearch's
    comparisons are calls of the guest's function, and the renamed file is recorded as
    MoveFile's (created, written). The same source built against the UCRT (crt-ucrt*.exe:
    api-ms-win-crt-* imports, funnelled into msvcrt's handlers) passes the same checks."""
    recording = _emulate(sample, mode=mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == dict.fromkeys(CRT_CHECKS, "pass")
    assert [c.args[0] for c in _calls(recording, "msvcrt.exit")] == ["0x0"]
    renamed = "C:\\Users\\Public\\crt-dir\\b.txt"
    moved = [(e.op, e.size) for e in recording.events if isinstance(e, FileAccess) and e.path == renamed]
    assert moved == [("create", None), ("write", 5)]


@pytest.mark.parametrize("sample", CRT_SAMPLES)
def test_abort_ends_the_process(sample: str) -> None:
    """abort() ends the process where it is called (it was ``unsupported_api``): nothing after
    it runs, no exit."""
    plan = ReplayPlan(
        name="crt-abort",
        target_path=str(BINS / sample),
        emu_path=f"{DESKTOP}\\{sample}",
        env={"CRT_ABORT": "1"},
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == {"main_args": "pass", "aborting": ""}
    assert [c.ret for c in _calls(recording, "msvcrt.abort")] == ["0x3"]
    assert not _calls(recording, "msvcrt.exit") and not _calls(recording, "msvcrt.strtol")


@pytest.mark.parametrize("sample", ["crt-ucrt.exe", "crt-ucrt32.exe"])
def test_a_ucrt_start_up_gets_its_success_values(sample: str) -> None:
    """The UCRT start-up's pre_c_initialization (run now that _initterm_e calls initializers)
    takes nonzero from _configure_narrow_argv or _set_new_mode for an error and fast-fails
    (``int 0x29``): Speakeasy's handlers returned nothing (the register's garbage), the
    UCRT-only _configure_wide_argv / _crt_at_quick_exit / __p__environ had no handler."""
    recording = _emulate(sample)
    assert recording.status == "completed", recording.detail
    for api in ("msvcrt._configure_narrow_argv", "msvcrt._set_new_mode"):
        assert [c.ret for c in _calls(recording, api)] == ["0x0"], api
    assert _calls(recording, "msvcrt.__p__environ")
