"""Hostile and broken inputs: each ends with exit 2 and one named error line, or exit 0 with a
report whose outcome names the problem. Never a traceback, never a hang.

Every input is generated here (in tmp_path) from tests/bins/hello.dll or from raw bytes; the
robustness samples come from tests/bins/robust/ (see its Makefile).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import CliResult

from emulator.outcome import Status

BINS = Path(__file__).resolve().parent / "bins"
ROBUST = BINS / "robust"
HELLO = BINS / "hello.dll"

OUTCOMES = {status.value for status in Status}


# ---- helpers --------------------------------------------------------------------------------


def report_of(outdir: Path) -> dict[str, Any]:
    path = outdir / "report.json"
    assert path.is_file(), f"no report.json in {outdir}"
    return json.loads(path.read_text(encoding="utf-8"))


def hello_bytes() -> bytearray:
    return bytearray(HELLO.read_bytes())


def pe_offsets(data: bytes | bytearray) -> dict[str, int]:
    e_lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    opt_size = struct.unpack_from("<H", data, e_lfanew + 20)[0]
    optional = e_lfanew + 24
    return {"e_lfanew": e_lfanew, "file_header": e_lfanew + 4, "optional": optional, "sections": optional + opt_size}


def write(tmp_path: Path, name: str, data: bytes | bytearray) -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


# ---- broken PE files: refused before emulation ------------------------------------------------


def _empty(_: bytearray) -> bytes:
    return b""


def _only_mz(_: bytearray) -> bytes:
    return b"MZ"


def _lfanew_past_end(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, 0x3C, len(data) + 0x1000)
    return data


def _lfanew_huge(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, 0x3C, 0xFFFFFFFF)
    return data


def _truncated_optional_header(data: bytearray) -> bytearray:
    return data[: pe_offsets(data)["optional"] + 0x20]


def _truncated_section_table(data: bytearray) -> bytearray:
    return data[: pe_offsets(data)["sections"] + 40 + 12]


def _size_of_image_max(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, pe_offsets(data)["optional"] + 56, 0xFFFFFFFF)
    return data


def _size_of_image_zero(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, pe_offsets(data)["optional"] + 56, 0)
    return data


def _huge_section(data: bytearray) -> bytearray:
    # A 900 MB section (virtual and raw size) in a 4 KB file: must be refused without mapping.
    table = pe_offsets(data)["sections"]
    struct.pack_into("<II", data, table + 8, 900 * 1024 * 1024, 0x1000)
    struct.pack_into("<I", data, table + 16, 900 * 1024 * 1024)
    return data + bytes(4096 - len(data))


def _sections(count: int) -> Callable[[bytearray], bytearray]:
    def patch(data: bytearray) -> bytearray:
        struct.pack_into("<H", data, pe_offsets(data)["file_header"] + 2, count)
        return data

    return patch


def _entry_outside(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, pe_offsets(data)["optional"] + 16, 0x00100000)
    return data


def _arm64(data: bytearray) -> bytearray:
    struct.pack_into("<H", data, pe_offsets(data)["file_header"], 0xAA64)
    return data


def _no_pe_signature(data: bytearray) -> bytearray:
    data[pe_offsets(data)["e_lfanew"] : pe_offsets(data)["e_lfanew"] + 4] = b"NE\0\0"
    return data


def _bad_magic(data: bytearray) -> bytearray:
    struct.pack_into("<H", data, pe_offsets(data)["optional"], 0x1234)
    return data


def _section_outside_image(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, pe_offsets(data)["sections"] + 12, 0x00800000)
    return data


def _machine(machine: int, base: Path = HELLO) -> Callable[[bytearray], bytearray]:
    """The sample at ``base`` with its COFF machine type replaced (the optional header unchanged)."""

    def patch(_: bytearray) -> bytearray:
        data = bytearray(base.read_bytes())
        struct.pack_into("<H", data, pe_offsets(data)["file_header"], machine)
        return data

    return patch


def _size_of_headers(data: bytearray) -> bytearray:
    struct.pack_into("<I", data, pe_offsets(data)["optional"] + 60, 0x7FFFFFF0)
    return data


BROKEN_PE: list[tuple[str, Callable[[bytearray], bytes | bytearray], list[str]]] = [
    ("empty", _empty, ["empty file"]),
    ("only_mz", _only_mz, ["truncated DOS header"]),
    ("lfanew_past_end", _lfanew_past_end, ["e_lfanew", "past the end"]),
    ("lfanew_huge", _lfanew_huge, ["e_lfanew", "past the end"]),
    ("truncated_optional", _truncated_optional_header, ["truncated optional header"]),
    ("truncated_sections", _truncated_section_table, ["truncated section table"]),
    ("size_of_image_max", _size_of_image_max, ["SizeOfImage", "0xffffffff"]),
    ("size_of_image_zero", _size_of_image_zero, ["SizeOfImage"]),
    ("huge_section", _huge_section, [".text", "limit"]),
    ("zero_sections", _sections(0), ["NumberOfSections is 0"]),
    ("ffff_sections", _sections(0xFFFF), ["NumberOfSections is 65535"]),
    ("entry_outside", _entry_outside, ["entry point 0x100000", "outside the image"]),
    ("arm64", _arm64, ["machine type 0xaa64"]),
    ("no_pe_signature", _no_pe_signature, ["no PE signature"]),
    ("bad_magic", _bad_magic, ["optional header magic 0x1234"]),
    ("section_outside_image", _section_outside_image, ["section 0", "outside SizeOfImage"]),
    ("pe32plus_with_i386", _machine(0x14C), ["PE32+ optional header", "contradicts machine type 0x14c"]),
    ("pe32_with_amd64", _machine(0x8664, BINS / "hello32.dll"), ["PE32 optional header", "machine type 0x8664"]),
    ("huge_size_of_headers", _size_of_headers, ["SizeOfHeaders 0x7ffffff0", "larger than the file"]),
]


@pytest.mark.parametrize(("label", "mutate", "needles"), BROKEN_PE, ids=[b[0] for b in BROKEN_PE])
def test_broken_pe_is_refused_with_one_line(
    label: str, mutate: Callable[[bytearray], bytes], needles: list[str], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    sample = write(tmp_path, f"{label}.dll", mutate(hello_bytes()))
    outdir = tmp_path / "out"
    started = time.monotonic()
    line = cli("run", sample, "-o", outdir).error_line()
    assert time.monotonic() - started < 5, "a refused input must be refused before emulation"
    assert sample.name in line
    for needle in needles:
        assert needle in line, line
    assert not outdir.exists(), "a refused input must not create the output folder"


def test_huge_section_is_rejected_before_mapping(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 900 MB section never reaches the engine: replay_target is not even called."""
    import emulator.replay

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("replay_target called for a PE that emulator.pe must refuse")

    monkeypatch.setattr(emulator.replay, "replay_target", boom)
    sample = write(tmp_path, "huge.dll", _huge_section(hello_bytes()))
    assert len(sample.read_bytes()) == 4096
    line = cli("run", sample, "-o", tmp_path / "out").error_line()
    assert "0x38400000" in line  # 900 MiB


def test_oversized_file_is_refused(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    from emulator.limits import MAX_SAMPLE_FILE_SIZE

    sample = tmp_path / "big.dll"
    with sample.open("wb") as f:
        f.write(HELLO.read_bytes())
        f.truncate(MAX_SAMPLE_FILE_SIZE + 1)
    line = cli("run", sample, "-o", tmp_path / "out").error_line()
    assert "larger than" in line


def test_oversized_shellcode_is_refused_before_reading(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.limits import MAX_SAMPLE_FILE_SIZE

    sample = tmp_path / "big.bin"
    with sample.open("wb") as f:
        f.truncate(MAX_SAMPLE_FILE_SIZE + 1)  # sparse: nothing is written
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read"))
    line = cli("run", sample, "--shellcode", "--arch", "x64", "-o", tmp_path / "out").error_line()
    assert "big.bin" in line and "larger than" in line


def test_oversized_scenario_target_is_refused(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    from emulator.limits import MAX_SAMPLE_FILE_SIZE

    folder = make_scenario(
        tmp_path, GOOD_SCENARIO.replace("[target]\n", '[target]\nkind = "shellcode"\narch = "x64"\n')
    )
    with (folder / "hello.dll").open("r+b") as f:
        f.truncate(MAX_SAMPLE_FILE_SIZE + 1)
    line = cli("run", folder, "--allow-unverified", "-o", tmp_path / "out").error_line()
    assert "target.path" in line and "larger than" in line


# ---- usage errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    line = cli("run", tmp_path / "nope.dll", "-o", tmp_path / "out").error_line()
    assert "nope.dll" in line and "no such file" in line


def test_not_a_pe_without_arch(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    sample = write(tmp_path, "blob.bin", b"\x90" * 64 + b"\xc3")
    line = cli("run", sample, "-o", tmp_path / "out").error_line()
    assert "blob.bin" in line and "not a PE" in line and "--arch" in line


def test_shellcode_flag_without_arch(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    sample = write(tmp_path, "sc.bin", b"\xc3")
    line = cli("run", sample, "--shellcode", "-o", tmp_path / "out").error_line()
    assert "sc.bin" in line and "--arch" in line


def test_empty_shellcode(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    sample = write(tmp_path, "sc.bin", b"")
    line = cli("run", sample, "--shellcode", "--arch", "x64", "-o", tmp_path / "out").error_line()
    assert "empty file" in line


def test_arg_without_export(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    line = cli("run", HELLO, "--arg", "world", "-o", tmp_path / "out").error_line()
    assert "--arg" in line and "--export" in line


@pytest.mark.parametrize(
    ("flag", "value"), [("--timeout", "0"), ("--max-api-calls", "-5"), ("--max-instructions", "lots")]
)
def test_bad_limit_flag(flag: str, value: str, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    line = cli("run", HELLO, f"{flag}={value}", "-o", tmp_path / "out").error_line()
    assert flag in line


def test_bad_file_mapping(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    line = cli("run", HELLO, "--file", "no-equals-sign", "-o", tmp_path / "out").error_line()
    assert "--file" in line and "EMU_PATH=HOST_PATH" in line
    line = cli("run", HELLO, "--file", f"C:\\x.txt={tmp_path / 'missing.txt'}", "-o", tmp_path / "out").error_line()
    assert "missing.txt" in line


def test_output_is_a_file(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    out = write(tmp_path, "out", b"")
    line = cli("run", HELLO, "-o", out).error_line()
    assert "not a folder" in line


def test_folder_without_scenario(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    line = cli("run", tmp_path, "-o", tmp_path / "out").error_line()
    assert "scenario.toml" in line


def test_unknown_export_is_named_in_the_report(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    outdir = tmp_path / "out"
    result = cli("run", HELLO, "--export", "NoSuchExport", "--arg", "1", "-o", outdir, "-q")
    if result.rc == 2:
        line = result.error_line()
        assert "NoSuchExport" in line
        return
    assert result.rc == 0, result.err
    outcome = report_of(outdir)["outcome"]
    assert outcome["status"] == "error"
    assert "NoSuchExport" in outcome["detail"]
    assert "Greet" in outcome["detail"]  # the exports that do exist are listed


# ---- scenario.toml problems ---------------------------------------------------------------------

GOOD_SCENARIO = """\
[scenario]
name = "bad-inputs"

[target]
path = "hello.dll"
emu_path = 'C:\\Users\\analyst\\Desktop\\hello.dll'
exports = [{ name = "Greet", args = [{ ansi = "world" }, 3] }]
"""


def make_scenario(tmp_path: Path, toml: str = GOOD_SCENARIO, *, manifest: bool = True) -> Path:
    folder = tmp_path / "scen"
    folder.mkdir()
    shutil.copy(HELLO, folder / "hello.dll")
    (folder / "scenario.toml").write_text(toml, encoding="utf-8")
    if manifest:
        digest = hashlib.sha256((folder / "hello.dll").read_bytes()).hexdigest()
        (folder / "SHA256SUMS").write_text(f"{digest}  hello.dll\n", encoding="utf-8")
    return folder


C2_NO_VICTIM = (
    GOOD_SCENARIO
    + """
[[responders]]
type = "c2"
name = "c2"
hosts = ["c2.test"]
routes = [{ method = "GET" }]
"""
)

BAD_SCENARIOS: list[Any] = [
    ("bad_syntax", GOOD_SCENARIO + "\n[target\npath = 1\n", ["not valid TOML", "line"]),
    ("unknown_key", GOOD_SCENARIO.replace("[target]\n", "[target]\nbogus = 1\n"), ["target.bogus", "unknown key"]),
    ("unknown_section", GOOD_SCENARIO + "\n[bogus]\nx = 1\n", ["bogus", "unknown key"]),
    (
        "wrong_type",
        GOOD_SCENARIO.replace('name = "bad-inputs"', 'name = "bad-inputs"\nseed = "x"'),
        ["scenario.seed", "integer"],
    ),
    ("wrong_kind", GOOD_SCENARIO.replace("[target]\n", '[target]\nkind = "elf"\n'), ["target.kind"]),
    ("missing_name", GOOD_SCENARIO.replace('name = "bad-inputs"\n', ""), ["scenario.name", "required"]),
    (
        "missing_target_file",
        GOOD_SCENARIO.replace('path = "hello.dll"', 'path = "nope.dll"'),
        ["target.path", "nope.dll", "not found"],
    ),
    (
        "target_outside",
        GOOD_SCENARIO.replace('path = "hello.dll"', 'path = "../../../etc/passwd"'),
        ["target.path", "outside the scenario folder"],
    ),
    ("shellcode_without_arch", GOOD_SCENARIO.replace("[target]\n", '[target]\nkind = "shellcode"\n'), ["target.arch"]),
    (
        "unknown_responder",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "ftp"\nname = "f"\n',
        ["responders[0]", "unknown responder type 'ftp'"],
    ),
    ("c2_without_victim_id", C2_NO_VICTIM, ["responders[0]", "victim_id", "required"]),
    (
        "github_without_root",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "github"\n',
        ["responders[0]", "root", "required"],
    ),
    ("python_without_class", GOOD_SCENARIO + '\n[[responders]]\ntype = "python"\n', ["responders[0]", "class"]),
    # A class that cannot be imported is the replay's outcome, not a load error: the loader
    # imports no user code (tests/test_containment.py::test_unimportable_user_responder_is_the_outcome).
    (
        "static_body_outside",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "static"\nhosts = ["x.test"]\n'
        'response = { body_file = "../../../../etc/hostname" }\n',
        ["responders[0]", "body_file", "outside"],
    ),
    (
        "c2_bad_body_regex",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "c2"\nhosts = ["x"]\n'
        'victim_id = { body_regex = "(" }\nroutes = [{}]\n',
        ["responders[0]", "body_regex"],
    ),
    (
        "nul_in_target_path",
        GOOD_SCENARIO.replace('path = "hello.dll"', 'path = "hel\\u0000lo.dll"'),
        ["target.path", "is not a valid path"],
    ),
    (
        "long_target_path",
        GOOD_SCENARIO.replace('path = "hello.dll"', f'path = "{"x" * 300}"'),
        ["target.path", "is not a valid path"],
    ),
    (
        "long_file_path",
        GOOD_SCENARIO + f'\n[[files]]\nemu_path = "C:\\\\x"\npath = "{"y" * 300}"\n',
        ["files[0].path", "is not a valid path"],
    ),
    (
        "nul_in_body_file",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "static"\nhosts = ["x.test"]\n'
        'response = { body_file = "a\\u0000b" }\n',
        ["responders[0].response.body_file", "is not a valid path"],
    ),
    (
        "responder_options_not_table",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "static"\noptions = 5\n',
        ["responders[0].options", "expected a table"],
    ),
    (
        "responder_class_not_str",
        GOOD_SCENARIO + '\n[[responders]]\ntype = "python"\nclass = 5\n',
        ["responders[0].class", "expected a string"],
    ),
    (
        "start_time_out_of_range",
        GOOD_SCENARIO.replace('name = "bad-inputs"', 'name = "bad-inputs"\nstart_time = 1e300'),
        ["scenario.start_time", "less than or equal to 253402300799"],
    ),
    (
        "start_time_negative",
        GOOD_SCENARIO.replace('name = "bad-inputs"', 'name = "bad-inputs"\nstart_time = -1'),
        ["scenario.start_time", "greater than or equal to 0"],
    ),
    (
        "start_time_nan",
        GOOD_SCENARIO.replace('name = "bad-inputs"', 'name = "bad-inputs"\nstart_time = nan'),
        ["scenario.start_time", "finite"],
    ),
    ("bad_limit", GOOD_SCENARIO + "\n[limits]\ntimeout = -1\n", ["limits.timeout"]),
    ("unknown_limit", GOOD_SCENARIO + "\n[limits]\nmax_bananas = 1\n", ["limits.max_bananas", "unknown key"]),
    ("bad_network_default", GOOD_SCENARIO + '\n[network]\ndefault = "allow"\n', ["network.default"]),
]


def _scenario_id(case: Any) -> str:
    return str(case.values[0] if hasattr(case, "values") else case[0])


@pytest.mark.parametrize(("label", "toml", "needles"), BAD_SCENARIOS, ids=[_scenario_id(b) for b in BAD_SCENARIOS])
def test_malformed_scenario_names_file_and_key(
    label: str, toml: str, needles: list[str], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    folder = make_scenario(tmp_path, toml)
    line = cli("run", folder, "-o", tmp_path / "out").error_line()
    assert "scenario.toml" in line, line
    for needle in needles:
        assert needle in line, line


def test_scenario_not_utf8(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = make_scenario(tmp_path)
    (folder / "scenario.toml").write_bytes(b'[scenario]\nname = "\xff\xfe"\n')
    line = cli("run", folder, "-o", tmp_path / "out").error_line()
    assert "scenario.toml" in line


def test_unverified_sample_refused_then_accepted(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = make_scenario(tmp_path)
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  hello.dll\n", encoding="utf-8")
    outdir = tmp_path / "out"
    line = cli("run", folder, "-o", outdir).error_line()
    assert "hello.dll" in line and "sha256" in line and "--allow-unverified" in line
    assert not outdir.exists()

    result = cli("run", folder, "--allow-unverified", "-o", outdir, "-q")
    assert result.rc == 0, result.err
    report = report_of(outdir)
    assert report["outcome"]["status"] == "completed", report["outcome"]
    assert report["target"]["sha256"] == hashlib.sha256(HELLO.read_bytes()).hexdigest()


def test_manifest_missing_or_unlisted(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = make_scenario(tmp_path, manifest=False)
    line = cli("run", folder, "-o", tmp_path / "out").error_line()
    assert "SHA256SUMS" in line and "missing" in line
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  other.dll\n", encoding="utf-8")
    line = cli("run", folder, "-o", tmp_path / "out").error_line()
    assert "hello.dll" in line and "not listed" in line


# ---- runaway samples: stopped by a named limit, report still written ---------------------------


def test_jmp_self_ends_at_a_limit(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    sample = write(tmp_path, "jmp.bin", b"\xeb\xfe")
    outdir = tmp_path / "out"
    started = time.monotonic()
    result = cli(
        "run",
        sample,
        "--shellcode",
        "--arch",
        "x64",
        "--timeout",
        "5",
        "--max-instructions",
        "2000000",
        "-o",
        outdir,
        "-q",
    )
    elapsed = time.monotonic() - started
    assert result.rc == 0, result.err
    assert elapsed < 30
    outcome = report_of(outdir)["outcome"]
    assert outcome["status"] in ("timeout", "instruction_limit"), outcome
    assert outcome["limit"] in ("timeout", "max_instructions"), outcome


def test_api_flood_ends_at_api_limit(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    outdir = tmp_path / "out"
    result = cli("run", ROBUST / "tickflood.exe", "--max-api-calls", "5000", "--timeout", "40", "-o", outdir, "-q")
    assert result.rc == 0, result.err
    report = report_of(outdir)
    assert report["outcome"]["status"] == "api_limit", report["outcome"]
    assert report["outcome"]["limit"] == "max_api_calls"
    assert 0 < len(report["api_calls"]) <= 5000
    assert {c["api"] for c in report["api_calls"]} == {"kernel32.GetTickCount"}


def test_unbounded_recursion_ends_with_a_named_outcome(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    # call $+5 ; jmp back to the call: pushes a return address forever until the stack runs out.
    sample = write(tmp_path, "recurse.bin", b"\xe8\x00\x00\x00\x00\xeb\xf9")
    outdir = tmp_path / "out"
    started = time.monotonic()
    result = cli(
        "run",
        sample,
        "--shellcode",
        "--arch",
        "x64",
        "--timeout",
        "10",
        "--max-instructions",
        "5000000",
        "-o",
        outdir,
        "-q",
    )
    assert time.monotonic() - started < 40
    assert result.rc == 0, result.err
    report = report_of(outdir)
    outcome = report["outcome"]
    assert outcome["status"] in ("fault", "timeout", "instruction_limit"), outcome
    assert outcome["detail"], outcome
    if outcome["status"] == "fault":
        # the stack ran out: the outcome names the run and the fault, and the run records it
        assert outcome["detail"].startswith("run shellcode: invalid_"), outcome
        assert outcome["limit"] is None
        assert any(r["error"] for r in report["runs"]), report["runs"]


GUEST_FAULTS = [
    ("null_read", b"\x48\x8b\x04\x25\x00\x00\x00\x00", "invalid_read pc=0x10000 address=0x0"),  # mov rax, [0]
    ("null_write", b"\x48\xc7\x04\x25\x00\x00\x00\x00\x01\x00\x00\x00", "invalid_write pc=0x10000 address=0x0"),
    ("jump_to_null", b"\x31\xc0\xff\xe0", "invalid_fetch pc=0x0 address=0x0"),  # xor eax, eax; jmp rax
    ("ud2", b"\x0f\x0b", "Invalid instruction (UC_ERR_INSN_INVALID) pc=0x10000"),
    ("int3", b"\xcc", "unhandled_interrupt pc=0x10001"),
    ("divide_by_zero", b"\x31\xc0\xf7\xf0", "unhandled_interrupt pc=0x10002"),  # xor eax, eax; div eax
]


@pytest.mark.parametrize(("label", "code", "cause"), GUEST_FAULTS, ids=[f[0] for f in GUEST_FAULTS])
def test_guest_fault_is_outcome_fault(
    label: str, code: bytes, cause: str, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """A fault in the guest's own code is outcome "fault" naming the run, the fault and the address."""
    sample = write(tmp_path, f"{label}.bin", code)
    outdir = tmp_path / "out"
    result = cli("run", sample, "--shellcode", "--arch", "x64", "--timeout", "10", "-o", outdir, "-q")
    assert result.rc == 0, result.err
    report = report_of(outdir)
    assert report["outcome"]["status"] == "fault", report["outcome"]
    assert report["outcome"]["detail"].startswith(f"run shellcode: {cause}"), report["outcome"]
    assert report["outcome"]["limit"] is None
    assert [r["error"] for r in report["runs"]] == [cause.split(" pc=")[0]]


def test_outcome_names_the_first_run_error() -> None:
    from emulator.outcome import Outcome, RunEnd, Status, decide

    assert decide(runs=[RunEnd("dll_entry", None)]) == Outcome(Status.COMPLETED)
    assert decide(runs=[RunEnd("dll_entry", None), RunEnd("thread", "invalid_read", "invalid_read pc=0x5")]) == (
        Outcome(Status.FAULT, "run thread: invalid_read pc=0x5")
    )
    assert decide(runs=[RunEnd("x", "max_total_time", "max_total_time pc=0x1")]) == (
        Outcome(Status.TIMEOUT, "run x: max_total_time pc=0x1", "timeout")
    )
    # a Python exception in an API handler is an emulator problem, not the guest's fault
    assert decide(runs=[RunEnd("x", "year 10000 is out of range")]) == (
        Outcome(Status.ERROR, "run x: API handler failed: year 10000 is out of range")
    )
    # a limit in any run wins over a fault in an earlier one
    assert decide(runs=[RunEnd("a", "invalid_read"), RunEnd("b", "max_api_count", "max_api_count pc=0x9")]) == (
        Outcome(Status.API_LIMIT, "run b: max_api_count pc=0x9", "max_api_calls")
    )
    # a stop decided by the backend is kept as it is; a containment refusal wins over everything
    stopped = Outcome(Status.LIMIT, "more than 64 stages", "max_stages")
    assert decide(stop=stopped, runs=[RunEnd("x", "invalid_read")]) == stopped
    assert decide(violations=["socket"], failure=stopped, stop=stopped) == Outcome(Status.CONTAINMENT, "socket")


def test_outcome_values_are_the_documented_interface() -> None:
    """report.outcome.status values: every one documented in docs/containment.md, none renamed."""
    from emulator.outcome import Status

    assert [s.value for s in Status] == [
        "completed",
        "timeout",
        "instruction_limit",
        "api_limit",
        "unsupported_api",
        "limit",
        "containment",
        "fault",
        "error",
        "interrupted",
    ]
    text = (Path(__file__).resolve().parent.parent / "docs" / "containment.md").read_text(encoding="utf-8")
    section = text.split("## Outcomes", 1)[1].split("\n## ", 1)[0]
    for status in Status:
        assert f"`{status.value}`" in section, status


def test_huge_virtualalloc_hits_max_allocation(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    """VirtualAlloc(3.5 GB): either the limit max_allocation fires (outcome "limit") or the API
    fails and the sample exits by itself. Here the limit fires, so the outcome must say so."""
    outdir = tmp_path / "out"
    result = cli("run", ROBUST / "bigalloc.exe", "--timeout", "20", "-o", outdir, "-q")
    assert result.rc == 0, result.err
    report = report_of(outdir)
    outcome = report["outcome"]
    exit_codes = [c["args"] for c in report["api_calls"] if c["api"] == "kernel32.ExitProcess"]
    api_failed = exit_codes == [["0x1"]] and outcome["status"] == "completed"
    limit_fired = outcome["status"] == "limit" and outcome["limit"] == "max_allocation"
    assert api_failed or limit_fired, outcome


# ---- corrupt but structurally plausible PE files: passed to the engine, which must not crash ----


def _pe32plus_dir(data: bytearray, index: int, rva: int, size: int) -> bytearray:
    struct.pack_into("<II", data, pe_offsets(data)["optional"] + 112 + 8 * index, rva, size)
    return data


def _image_base(data: bytearray, base: int) -> bytearray:
    struct.pack_into("<Q", data, pe_offsets(data)["optional"] + 24, base)
    return data


CORRUPT_PE: list[tuple[str, Callable[[bytearray], bytearray]]] = [
    ("garbage_import_directory", lambda d: _pe32plus_dir(d, 1, 0x4FF0, 0xFFFF)),
    ("garbage_export_directory", lambda d: _pe32plus_dir(d, 0, 0x4FF8, 0xFFFFFF)),
    ("garbage_tls_directory", lambda d: _pe32plus_dir(d, 9, 0x3000, 0x28)),
    ("image_base_at_top", lambda d: _image_base(d, 0xFFFFFFFFFFFFF000)),
]


@pytest.mark.parametrize(("label", "mutate"), CORRUPT_PE, ids=[c[0] for c in CORRUPT_PE])
def test_corrupt_pe_gives_a_named_outcome(
    label: str, mutate: Callable[[bytearray], bytearray], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    sample = write(tmp_path, f"{label}.dll", mutate(hello_bytes()))
    outdir = tmp_path / "out"
    result = cli(
        "run", sample, "--export", "Greet", "--arg", "str:w", "--arg", "1", "--timeout", "10", "-o", outdir, "-q"
    )
    if result.rc == 2:
        assert sample.name in result.error_line()
        return
    assert result.rc == 0, result.err
    outcome = report_of(outdir)["outcome"]
    assert outcome["status"] in OUTCOMES
    if outcome["status"] != "completed":
        assert outcome["detail"], outcome
