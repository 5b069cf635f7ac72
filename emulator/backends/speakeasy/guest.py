"""The machine as the guest's own instructions see it: CPUID, rdtsc and KUSER_SHARED_DATA.

API handlers (emulator/apis) answer what the guest asks Windows; this module answers what it
asks the CPU and the page every process shares with the kernel, from the same virtual clock and
the same ``[environment]``:

* CPUID answers as Unicorn's CPU model (a Haswell) would, except that the hypervisor bit and the
  hypervisor leaves (0x40000000...) say "no hypervisor", and the vendor and the brand string
  are the environment's (Unicorn's own brand, "Intel Core Processor (Haswell)", is QEMU's);
* ``rdtsc`` / ``rdtscp`` read the virtual clock at TSC_HZ (plus a few cycles per read, so two
  readings always differ), not the host's counter, so a skipped Sleep shows in the TSC as in
  every other clock. Unicorn cannot hook rdtsc, so each rdtsc in code the guest runs (the target,
  then every new stage) gets a code hook at exactly its address, which costs nothing elsewhere;
  and a write hook on that code (the executable sections of an image, the whole of a stage)
  looks at every instruction writing into it, so an rdtsc written into code that is already
  running is hooked before it can run (a range taking more than MAX_WATCHED_WRITES writes is
  rescanned whole at the next API call instead). Code whose pages Unicorn does not let the guest
  write (an image's read-execute sections) gets no write hook until a protection change makes
  it writable: any write hook slows every guest store, wherever it writes;
* KUSER_SHARED_DATA's InterruptTime, SystemTime and TickCount follow the virtual clock instead
  of the host's time at start-up, and its fixed fields (version, build, processors, memory,
  QPC frequency) sit at Windows 10's offsets with the values the APIs report (bare Speakeasy
  writes the version at 0x260-0x268, where NtBuildNumber, NtProductType and
  ProductTypeIsValid are);
* the process blocks (:class:`ProcessBlocks`): the PEB's process heap (with an NT heap's
  flags), processor count and platform, each TEB's ClientId, and the last error kept in
  TEB.LastErrorValue, all agreeing with what the APIs answer.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import Callable
from typing import Any

import unicorn as uc
from unicorn import x86_const as x86

from emulator.backends.speakeasy import compat, compat_blocks, compat_fast, compat_guest
from emulator.backends.speakeasy.config import parent_pid
from emulator.backends.speakeasy.tls import ImplicitTls
from emulator.environment import (
    PROCESSOR_FAMILY,
    PROCESSOR_MODEL,
    PROCESSOR_STEPPING,
    GuestEnvironment,
    environment_block,
)
from emulator.vclock import PERF_FREQUENCY, TSC_HZ, VirtualClock

# Enter the guest at CPL 3 with Windows' selectors (compat_guest.enter_user_mode): `cli` and the
# other privileged instructions fault, and the segment registers read as on Windows. (Session 32
# left it off: the scratch page its iret ran on, once freed, made every later Unicorn mem_map
# cost O(regions^2); the iret now borrows bytes of the GDT's page, docs/performance.md.)
USER_MODE_ENTRY = True

KUSER_SHARED_DATA = 0x7FFE0000
KUSER_TICK_COUNT_MULTIPLIER = 0x0FA00000  # 15.625 ms timer ticks, as on stock Windows
KUSER_TICK_COUNT = 0x320  # offset of TickCount (a KSYSTEM_TIME) in KUSER_SHARED_DATA
# The clock page is rewritten when the clock has moved by this much (100 ns units: 1 ms) or more.
KUSER_UPDATE_UNITS = 10_000
# Cycles a rdtsc reading adds, so consecutive readings differ as on a real CPU.
TSC_CYCLES_PER_READ = 24
HYPERVISOR_BIT = 1 << 31
# Fixed fields of KUSER_SHARED_DATA (Windows 10 layout): offset -> struct format.
KUSER_IMAGE_NUMBERS = 0x02C  # ImageNumberLow, ImageNumberHigh
KUSER_NT_SYSTEM_ROOT = 0x030
KUSER_NT_BUILD_NUMBER = 0x260
KUSER_NT_PRODUCT_TYPE = 0x264  # 1: NtProductWinNt (a workstation)
KUSER_PRODUCT_TYPE_IS_VALID = 0x268  # then Reserved0, NativeProcessorArchitecture
KUSER_NT_MAJOR_VERSION = 0x26C
KUSER_NT_MINOR_VERSION = 0x270
KUSER_TIME_ZONE_ID = 0x240
KUSER_LARGE_PAGE_MINIMUM = 0x244
KUSER_PROCESSOR_FEATURES = 0x274  # BOOLEAN[64], what IsProcessorFeaturePresent reads
KUSER_SUITE_MASK = 0x2D0
KUSER_KD_DEBUGGER_ENABLED = 0x2D4
KUSER_ACTIVE_CONSOLE_ID = 0x2D8
KUSER_NUMBER_OF_PHYSICAL_PAGES = 0x2E8
KUSER_TEST_RET_INSTRUCTION = 0x2F8  # ULONGLONG 0xC3: a ret
KUSER_QPC_FREQUENCY = 0x300
KUSER_COOKIE = 0x330
KUSER_UNPARKED_PROCESSOR_COUNT = 0x36A
KUSER_QPC_BIAS = 0x3B8  # bare Speakeasy writes the QPC frequency here
KUSER_ACTIVE_PROCESSOR_COUNT = 0x3C0  # then ActiveGroupCount (USHORT)
KUSER_PAGE_SIZE = 0x1000
# The floating-point state a Windows process starts with: x87 control word (all exceptions
# masked, 53-bit precision, round to nearest) and MXCSR (all exceptions masked).
FPU_CONTROL_WORD = 0x27F
MXCSR_DEFAULT = 0x1F80
LARGE_PAGE_MINIMUM = 0x200000  # 2 MiB, GetLargePageMinimum's on x86 and x64
# VER_SUITE_TERMINAL | VER_SUITE_SINGLEUSERTS: a desktop edition (Home adds VER_SUITE_PERSONAL).
SUITE_MASK = 0x110
# KUSER_SHARED_DATA.Cookie: a per-boot random value (RtlEncodePointer mixes it); fixed here.
KUSER_COOKIE_VALUE = 0x3C6EF372
# CPUID.1:EAX, the processor signature: family 6, model 0x3C (60), stepping 3, an i7-4790's, as
# the registry's Identifier, %PROCESSOR_IDENTIFIER% / %PROCESSOR_REVISION% and GetSystemInfo say
# (Unicorn's Haswell model says stepping 4).
CPU_SIGNATURE = PROCESSOR_FAMILY << 8 | (PROCESSOR_MODEL >> 4) << 16 | (PROCESSOR_MODEL & 0xF) << 4 | PROCESSOR_STEPPING
# CPUID.1:EDX bit 28 (HTT): EBX[23:16] holds the logical processors per package.
CPUID_HTT = 1 << 28
# The guest's Windows is as wide as the guest (GetNativeSystemInfo and IsWow64Process agree).
IMAGE_FILE_MACHINE = {True: 0x8664, False: 0x014C}
PROCESSOR_ARCHITECTURE = {True: 9, False: 0}  # AMD64, INTEL
VER_PLATFORM_WIN32_NT = 2
# The process heap as an NT heap (HEAP) shows itself: SegmentSignature, Flags, ForceFlags.
HEAP_SEGMENT_SIGNATURE = 0xFFEEFFEE
HEAP_GROWABLE = 0x2
HEAP_OFFSETS = {True: (0x10, 0x70, 0x74), False: (0x08, 0x40, 0x44)}  # x64, x86
HEAP_HEADER_SIZE = 0x1000
# TEB.LastErrorValue
TEB_LAST_ERROR = {True: 0x68, False: 0x34}
# TEB.DeallocationStack (the stack's allocation base) and TEB.TlsSlots[64] (x64, x86).
TEB_DEALLOCATION_STACK = {True: 0x1478, False: 0xE0C}
TEB_TLS_SLOTS = {True: 0x1480, False: 0xE10}
TLS_MINIMUM_AVAILABLE = 64
# Windows 10's TEB size (x64, x86): Speakeasy maps one page at the TEB's address, which the x64
# TEB's DeallocationStack and TlsSlots lie past.
TEB_SIZE = {True: 0x1838, False: 0x1000}
# TEB.CurrentLocale: en-US, what GetThreadLocale reads.
LOCALE_EN_US = 0x409
# The interactive user's session (services run in session 0).
USER_SESSION_ID = 1
# PEB_LDR_DATA.Length, RTL_USER_PROCESS_PARAMETERS' size and its Environment offset (Windows
# 10's), by pointer size.
PEB_LDR_DATA_SIZE = {True: 0x58, False: 0x30}
PROCESS_PARAMETERS_SIZE = {True: 0x440, False: 0x2C0}
PROCESS_PARAMETERS_ENVIRONMENT = {True: 0x80, False: 0x48}
# Optional header fields (the same offsets in PE32 and PE32+).
OPTIONAL_SUBSYSTEM_VERSION = 0x30  # MajorSubsystemVersion, MinorSubsystemVersion (WORDs)
OPTIONAL_SUBSYSTEM = 0x44
# ntdll exports whose address a thread's final x86 registration names as its handler (Windows'
# is ntdll!_except_handler4, which ntdll does not export), the first one found.
FINAL_HANDLER_EXPORTS = ("_except_handler4_common", "RtlUserThreadStart", "KiUserExceptionDispatcher")
RDTSC = b"\x0f\x31"
RDTSCP = b"\x0f\x01\xf9"
# 0F C7 /7 with a register operand: rdseed, or rdpid with an F3 prefix. Unicorn runs both
# whatever CPUID says (QEMU checks rdseed against the rdrand feature); a Haswell has neither.
GROUP9 = b"\x0f\xc7"
RDPID_PREFIX = 0xF3
# CPUID.(EAX=7,ECX=0): EBX bit 18 RDSEED, ECX bit 22 RDPID.
CPUID7_RDSEED = 1 << 18
CPUID7_RDPID = 1 << 22
# Legacy prefixes an instruction may start with (REX, 0x40-0x4F, too on x64); at most this many
# are looked for before a hooked instruction.
LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65})
MAX_PREFIXES = 4
IMAGE_SCN_MEM_EXECUTE = 0x20000000
# Writes into one code range looked at one by one before the range is rescanned at API calls
# instead (a stub decompressing into its own code section writes every byte).
MAX_WATCHED_WRITES = 4096
# Executable bytes scanned for rdtsc at most, per code region.
MAX_SCAN_BYTES = 64 << 20


@functools.lru_cache(maxsize=512)
def _host_cpuid(mode: int, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
    """CPUID as Unicorn's CPU model answers it (one scratch instance per process and mode)."""
    engine = _scratch(mode)
    engine.reg_write(x86.UC_X86_REG_EAX, leaf)
    engine.reg_write(x86.UC_X86_REG_ECX, subleaf)
    engine.emu_start(0x1000, 0x1002)
    return tuple(  # type: ignore[return-value]
        engine.reg_read(r) & 0xFFFFFFFF
        for r in (x86.UC_X86_REG_EAX, x86.UC_X86_REG_EBX, x86.UC_X86_REG_ECX, x86.UC_X86_REG_EDX)
    )


@functools.lru_cache(maxsize=2)
def _scratch(mode: int) -> Any:
    engine = uc.Uc(uc.UC_ARCH_X86, mode)
    engine.mem_map(0x1000, 0x1000)
    engine.mem_write(0x1000, b"\x0f\xa2")  # cpuid
    return engine


def cpuid(mode: int, leaf: int, subleaf: int, guest: GuestEnvironment) -> tuple[int, int, int, int]:
    """What CPUID(leaf, subleaf) returns to the guest: EAX, EBX, ECX, EDX."""
    if 0x40000000 <= leaf <= 0x4FFFFFFF:
        if guest.hypervisor and leaf == 0x40000000:
            ebx, ecx, edx = struct.unpack("<III", b"Microsoft Hv")
            return 0x40000006, ebx, ecx, edx
        return 0, 0, 0, 0
    eax, ebx, ecx, edx = _host_cpuid(mode, leaf, subleaf if leaf in (4, 7, 0xB, 0xD, 0xF, 0x10, 0x14) else 0)
    if leaf == 0:
        ebx, edx, ecx = struct.unpack("<III", guest.cpu_vendor.encode("latin-1", "replace")[:12].ljust(12))
    elif 0x80000002 <= leaf <= 0x80000004:
        brand = guest.cpu_brand.encode("latin-1", "replace")[:47].ljust(48, b"\0")
        return struct.unpack_from("<IIII", brand, (leaf - 0x80000002) * 16)  # type: ignore[return-value]
    elif leaf == 1:
        ecx = ecx | HYPERVISOR_BIT if guest.hypervisor else ecx & ~HYPERVISOR_BIT
        # The signature, and the processors per package (Unicorn's model says 0 without HTT),
        # covering the count GetSystemInfo gives.
        eax = CPU_SIGNATURE
        ebx = (ebx & 0xFF00FFFF) | (min(guest.processors, 0xFF) << 16)
        edx |= CPUID_HTT
    elif leaf == 0x80000001:
        eax = CPU_SIGNATURE
    return eax, ebx, ecx, edx


# IsProcessorFeaturePresent's features (PF_*) and the CPUID bit that says each is there:
# (leaf, subleaf, register index (EAX 0 .. EDX 3), bit); None: a fixed answer below.
_CPUID_FEATURES: dict[int, tuple[int, int, int, int]] = {
    2: (1, 0, 3, 8),  # PF_COMPARE_EXCHANGE_DOUBLE: CX8
    3: (1, 0, 3, 23),  # PF_MMX_INSTRUCTIONS_AVAILABLE
    6: (1, 0, 3, 25),  # PF_XMMI_INSTRUCTIONS_AVAILABLE: SSE
    8: (1, 0, 3, 4),  # PF_RDTSC_INSTRUCTION_AVAILABLE
    9: (1, 0, 3, 6),  # PF_PAE_ENABLED
    10: (1, 0, 3, 26),  # PF_XMMI64_INSTRUCTIONS_AVAILABLE: SSE2
    13: (1, 0, 2, 0),  # PF_SSE3_INSTRUCTIONS_AVAILABLE
    17: (1, 0, 2, 26),  # PF_XSAVE_ENABLED
    28: (1, 0, 2, 30),  # PF_RDRAND_INSTRUCTION_AVAILABLE
    32: (0x80000001, 0, 3, 27),  # PF_RDTSCP_INSTRUCTION_AVAILABLE
    36: (1, 0, 2, 9),  # PF_SSSE3_INSTRUCTIONS_AVAILABLE
    37: (1, 0, 2, 19),  # PF_SSE4_1_INSTRUCTIONS_AVAILABLE
    38: (1, 0, 2, 20),  # PF_SSE4_2_INSTRUCTIONS_AVAILABLE
    39: (1, 0, 2, 28),  # PF_AVX_INSTRUCTIONS_AVAILABLE
    40: (7, 0, 1, 5),  # PF_AVX2_INSTRUCTIONS_AVAILABLE
    41: (7, 0, 1, 16),  # PF_AVX512F_INSTRUCTIONS_AVAILABLE
    42: (7, 0, 1, 9),  # PF_ERMS_AVAILABLE
}
# Present on every x86/x64 Windows 10 machine: PF_SSE_DAZ_MODE_AVAILABLE (11), PF_NX_ENABLED (12),
# PF_SECOND_LEVEL_ADDRESS_TRANSLATION (20), PF_VIRT_FIRMWARE_ENABLED (21), PF_FASTFAIL_AVAILABLE (23).
_ALWAYS_FEATURES = (11, 12, 20, 21, 23)
PF_COMPARE_EXCHANGE128 = 14  # CMPXCHG16B, reported by a 64-bit Windows only
PF_RDWRFSGSBASE_AVAILABLE = 22  # x64 only


def processor_features(mode: int, guest: GuestEnvironment) -> bytes:
    """KUSER_SHARED_DATA.ProcessorFeatures: one byte per PF_* index, from the guest's CPUID (what
    IsProcessorFeaturePresent answers; Speakeasy's handler answered from a table of its own)."""
    features = bytearray(64)
    for index, (leaf, subleaf, register, bit) in _CPUID_FEATURES.items():
        features[index] = (cpuid(mode, leaf, subleaf, guest)[register] >> bit) & 1
    for index in _ALWAYS_FEATURES:
        features[index] = 1
    if mode == uc.UC_MODE_64:
        features[PF_COMPARE_EXCHANGE128] = (cpuid(mode, 1, 0, guest)[2] >> 13) & 1
        features[PF_RDWRFSGSBASE_AVAILABLE] = cpuid(mode, 7, 0, guest)[1] & 1
    # XSAVE counts only when the OS enabled it (OSXSAVE).
    features[17] &= (cpuid(mode, 1, 0, guest)[2] >> 27) & 1
    return bytes(features)


class GuestMachine:
    def __init__(self, emu: Any, clock: VirtualClock, guest: GuestEnvironment, x64: bool) -> None:
        self.emu = emu
        self.clock = clock
        self.guest = guest
        self.x64 = x64
        self.mode = uc.UC_MODE_64 if x64 else uc.UC_MODE_32
        self.tsc_reads = 0
        self.hooked: set[int] = set()
        self.write_watched: dict[tuple[int, int], int] = {}  # code range -> write hook
        # Code ranges no guest instruction can write (Unicorn's pages not writable): no hook
        # until a protection change makes them writable (see _watch_writes).
        self.parked: set[tuple[int, int]] = set()
        # Told when a write hook was added (see FlowWatch.on_hooked).
        self.on_hooked: Callable[[], None] | None = None
        # Raises STATUS_ILLEGAL_INSTRUCTION at a pc to the guest's handlers: False when none
        # takes it (ExceptionDispatcher.illegal_instruction_at).
        self.on_illegal_instruction: Callable[[int], bool] | None = None
        self.write_budget: dict[tuple[int, int], int] = {}
        self.dirty: set[tuple[int, int]] = set()
        self._kuser_units = -1
        self.blocks: ProcessBlocks | None = None

    @property
    def final_handler(self) -> int:
        """x86: the handler of each thread's final fs:[0] registration (0: none placed)."""
        return self.blocks.final_handler if self.blocks is not None else 0

    def install(self, code_ranges: list[tuple[int, int]]) -> None:
        unicorn = compat.unicorn_of(self.emu)
        compat.add_cpuid_hook(unicorn, self._on_cpuid)
        compat_guest.set_initial_fpu_state(unicorn, FPU_CONTROL_WORD, MXCSR_DEFAULT)
        if USER_MODE_ENTRY:
            compat_guest.enter_user_mode(self.emu, self.x64)
        self.write_fixed_shared_data()
        self.update_shared_data()
        self.blocks = ProcessBlocks(self.emu, self.guest, self.x64)
        self.blocks.install()
        ImplicitTls(self.emu, self.x64).install()
        for base, size in code_ranges:
            self.watch_code(base, size)

    # -- CPUID ----------------------------------------------------------------------------------

    def _on_cpuid(self, engine: Any, _user: Any) -> bool:
        leaf = engine.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        subleaf = engine.reg_read(x86.UC_X86_REG_ECX) & 0xFFFFFFFF
        for reg, value in zip(
            (x86.UC_X86_REG_RAX, x86.UC_X86_REG_RBX, x86.UC_X86_REG_RCX, x86.UC_X86_REG_RDX)
            if self.x64
            else (x86.UC_X86_REG_EAX, x86.UC_X86_REG_EBX, x86.UC_X86_REG_ECX, x86.UC_X86_REG_EDX),
            cpuid(self.mode, leaf, subleaf, self.guest),
            strict=True,
        ):
            engine.reg_write(reg, value)
        return True  # skip the instruction: the registers hold the answer

    # -- rdtsc ----------------------------------------------------------------------------------

    def watch_code(self, base: int, size: int) -> None:
        """Hook every rdtsc / rdtscp in [base, base + size) (code the guest is about to run), and
        every rdtsc the guest's instructions write into that code later."""
        try:
            data = bytes(self.emu.mem_read(base, min(size, MAX_SCAN_BYTES)))
        except Exception:
            return
        self._hook_found(base, data)
        for start, end in code_ranges(data, base, size):
            if (start, end) not in self.write_watched and (start, end) not in self.parked:
                self._watch_writes(start, end)

    def _watch_writes(self, start: int, end: int) -> None:
        unicorn = compat.unicorn_of(self.emu)
        if not compat_guest.engine_writable(unicorn, start, end):
            # Unicorn refuses a guest write there (a fault, which the guest sees), and a memory
            # write hook, whatever its range, sends every guest store through Unicorn's slow path
            # (RC4 in native code: 1.3-1.5x the CPU). Hooked when a protection change makes the
            # range writable (protection_changed).
            self.parked.add((start, end))
            # A range rescanned after its hook went (dirty) holds that hook's handle still.
            self.write_watched.pop((start, end), None)
            self.write_budget.pop((start, end), None)
            return
        self.parked.discard((start, end))
        self.write_watched[(start, end)] = compat_guest.add_write_hook(unicorn, start, end - 1, self._on_code_write)
        self.write_budget[(start, end)] = MAX_WATCHED_WRITES
        if self.on_hooked is not None:
            self.on_hooked()

    def write_hooked(self) -> bool:
        """Whether a write hook of this machine exists now (a dirty range's hook is gone)."""
        dirty = self.dirty
        return any(watched not in dirty for watched in self.write_watched)

    def protection_changed(self, address: int, size: int) -> None:
        """[address, address + size) was mapped or given another protection: watch the writes
        of parked code that became writable, and park watched code no guest write can reach now."""
        end = address + size
        for watched in [r for r in self.parked if r[0] < end and address < r[1]]:
            self._watch_writes(*watched)
        unicorn = compat.unicorn_of(self.emu)
        for watched in [r for r in self.write_watched if r[0] < end and address < r[1]]:
            if watched in self.dirty or compat_guest.engine_writable(unicorn, *watched):
                continue  # (a dirty range's hook is gone already: rescanned and watched at the next API call)
            compat_fast.remove_native_hook(unicorn, self.write_watched.pop(watched))
            self.write_budget.pop(watched, None)
            self.parked.add(watched)

    def after_api_call(self) -> None:
        """Between two API calls: the clock page, and code that took too many writes to watch
        one by one, rescanned whole and watched again."""
        if self._kuser_units < 0 or self.clock.uptime_units() - self._kuser_units >= KUSER_UPDATE_UNITS:
            self.update_shared_data()
        while self.dirty:
            start, end = self.dirty.pop()
            before = len(self.hooked)
            self._hook_found(start, bytes(self.emu.mem_read(start, min(end - start, MAX_SCAN_BYTES))))
            if len(self.hooked) != before:  # code translated before the new hooks has none
                compat_guest.drop_translations(compat.unicorn_of(self.emu), start, end)
            self._watch_writes(start, end)

    def _hook_found(self, base: int, data: bytes) -> None:
        unicorn = compat.unicorn_of(self.emu)
        for pattern in (RDTSC, RDTSCP):
            index = data.find(pattern)
            while index >= 0:
                address = base + index
                if address not in self.hooked:
                    self.hooked.add(address)
                    compat.add_code_hook_at(unicorn, address, self._on_rdtsc)
                index = data.find(pattern, index + 1)
        index = data.find(GROUP9)
        while index >= 0:
            if index + 2 < len(data) and data[index + 2] & 0xF8 == 0xF8:
                # the instruction may start at a prefix before it: hook those too (the hook
                # decodes what starts where it fires)
                first = index
                while first > 0 and index - first < MAX_PREFIXES and self._is_prefix(data[first - 1]):
                    first -= 1
                for address in range(base + first, base + index + 1):
                    if address not in self.hooked:
                        self.hooked.add(address)
                        compat.add_code_hook_at(unicorn, address, self._on_group9)
            index = data.find(GROUP9, index + 1)

    def _is_prefix(self, byte: int) -> bool:
        return byte in LEGACY_PREFIXES or (self.x64 and 0x40 <= byte <= 0x4F)

    def _on_group9(self, engine: Any, address: int, _size: int, _user: Any) -> None:
        """An rdseed or rdpid about to run: an undefined opcode when CPUID says the CPU lacks it
        (as a Haswell's does), as on a CPU without it."""
        try:
            code = bytes(engine.mem_read(address, MAX_PREFIXES + 3))
        except uc.UcError:
            return
        at = 0
        while at < MAX_PREFIXES and self._is_prefix(code[at]):
            at += 1
        if code[at : at + 2] != GROUP9 or code[at + 2] & 0xF8 != 0xF8:
            return  # not where an rdseed starts (the bytes changed, or a prefix was data)
        _eax, ebx, ecx, _edx = cpuid(self.mode, 7, 0, self.guest)
        if (ecx & CPUID7_RDPID) if RDPID_PREFIX in code[:at] else (ebx & CPUID7_RDSEED):
            return
        if self.on_illegal_instruction is None or not self.on_illegal_instruction(address):
            raise uc.UcError(uc.UC_ERR_INSN_INVALID)  # unhandled: Unicorn's own error for an undefined opcode

    def _on_code_write(self, engine: Any, _access: int, address: int, size: int, value: int, _user: Any) -> None:
        """An instruction is about to write ``value`` into watched code: hook any rdtsc / rdtscp
        the bytes will form with their neighbours (Unicorn translates the new code later)."""
        for watched in self.write_budget:
            if watched[0] <= address < watched[1]:
                self.write_budget[watched] -= 1
                if self.write_budget[watched] <= 0:
                    # Decompressing into code: stop looking at each write, rescan at the next API call.
                    compat_fast.remove_native_hook(compat.unicorn_of(self.emu), self.write_watched[watched])
                    self.dirty.add(watched)
                    self.write_budget[watched] = MAX_WATCHED_WRITES
                break
        size = min(size, 8)
        start = address - (len(RDTSCP) - 1)
        try:
            window = bytearray(engine.mem_read(start, size + 2 * (len(RDTSCP) - 1)))
        except Exception:
            return
        window[len(RDTSCP) - 1 : len(RDTSCP) - 1 + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if RDTSC[:1] in window:
            self._hook_found(start, bytes(window))

    def _on_rdtsc(self, engine: Any, address: int, _size: int, _user: Any) -> None:
        code = bytes(engine.mem_read(address, 3))
        if code[:2] == RDTSC:
            length = 2
        elif code == RDTSCP:
            length = 3
            engine.reg_write(x86.UC_X86_REG_RCX if self.x64 else x86.UC_X86_REG_ECX, 0)  # IA32_TSC_AUX: processor 0
        else:
            return  # the bytes changed since the scan: not a time stamp read any more
        self.tsc_reads += 1
        value = self.clock.tsc() + self.tsc_reads * TSC_CYCLES_PER_READ
        # rdtsc writes EAX and EDX, which on x64 clears the upper halves of RAX and RDX
        # (writing EAX through Unicorn would keep them).
        low, high = (x86.UC_X86_REG_RAX, x86.UC_X86_REG_RDX) if self.x64 else (x86.UC_X86_REG_EAX, x86.UC_X86_REG_EDX)
        engine.reg_write(low, value & 0xFFFFFFFF)
        engine.reg_write(high, (value >> 32) & 0xFFFFFFFF)
        engine.reg_write(x86.UC_X86_REG_RIP if self.x64 else x86.UC_X86_REG_EIP, address + length)

    # -- KUSER_SHARED_DATA ----------------------------------------------------------------------

    def write_fixed_shared_data(self) -> None:
        """The fields of KUSER_SHARED_DATA that do not move, at Windows 10's offsets."""
        major, minor, build = compat_blocks.os_version(self.emu)
        guest = self.guest
        fields: list[tuple[int, bytes]] = [
            (KUSER_IMAGE_NUMBERS, struct.pack("<HH", IMAGE_FILE_MACHINE[self.x64], IMAGE_FILE_MACHINE[self.x64])),
            (KUSER_NT_SYSTEM_ROOT, "C:\\Windows".encode("utf-16-le") + b"\0\0"),
            (KUSER_NT_BUILD_NUMBER, struct.pack("<I", build)),
            (KUSER_NT_PRODUCT_TYPE, struct.pack("<I", 1)),
            (KUSER_PRODUCT_TYPE_IS_VALID, struct.pack("<BBH", 1, 0, PROCESSOR_ARCHITECTURE[self.x64])),
            (KUSER_NT_MAJOR_VERSION, struct.pack("<II", major, minor)),
            (KUSER_LARGE_PAGE_MINIMUM, struct.pack("<I", LARGE_PAGE_MINIMUM)),
            (KUSER_PROCESSOR_FEATURES, processor_features(self.mode, guest)),
            (KUSER_SUITE_MASK, struct.pack("<I", SUITE_MASK)),
            (KUSER_KD_DEBUGGER_ENABLED, b"\0"),
            (KUSER_TEST_RET_INSTRUCTION, struct.pack("<Q", 0xC3)),
            (KUSER_COOKIE, struct.pack("<I", KUSER_COOKIE_VALUE)),
            (KUSER_ACTIVE_CONSOLE_ID, struct.pack("<I", 1)),
            (KUSER_NUMBER_OF_PHYSICAL_PAGES, struct.pack("<I", guest.memory_mb * 256)),
            (KUSER_QPC_FREQUENCY, struct.pack("<q", PERF_FREQUENCY)),
            (KUSER_UNPARKED_PROCESSOR_COUNT, struct.pack("<H", guest.processors)),
            (KUSER_QPC_BIAS, struct.pack("<q", 0)),
            (KUSER_ACTIVE_PROCESSOR_COUNT, struct.pack("<IH", guest.processors, 1)),
        ]
        try:
            for offset, data in fields:
                self.emu.mem_write(KUSER_SHARED_DATA + offset, data)
        except Exception:
            return  # no shared page mapped (another mapping owns the address)
        # Read-only to the guest, as on Windows (a write faults); the clock's writes are the
        # emulator's, which Unicorn lets through whatever the protection.
        compat_guest.make_read_only(compat.unicorn_of(self.emu), KUSER_SHARED_DATA, KUSER_PAGE_SIZE)

    def update_shared_data(self) -> None:
        """Write the clock into KUSER_SHARED_DATA when it has moved by a timer tick or more."""
        uptime = self.clock.uptime_units()
        if self._kuser_units >= 0 and uptime - self._kuser_units < KUSER_UPDATE_UNITS:
            return
        self._kuser_units = uptime
        system = self.clock.now_filetime()
        ticks = (uptime // 10_000 << 24) // KUSER_TICK_COUNT_MULTIPLIER
        # TickCountLowDeprecated, TickCountMultiplier, InterruptTime, SystemTime; TickCount.
        head = struct.pack("<II", ticks & 0xFFFFFFFF, KUSER_TICK_COUNT_MULTIPLIER)
        head += _ksystem_time(uptime) + _ksystem_time(system)
        tail = _ksystem_time(ticks)
        try:
            # One write with the bytes between as they are: each write costs 15-35 us (Unicorn's
            # write, then Speakeasy's invalidation of translated code), every 20 calls of a flood.
            between = self.emu.emu_eng.mem_read(KUSER_SHARED_DATA + len(head), KUSER_TICK_COUNT - len(head))
        except Exception:
            between = None
        try:
            if between is not None and len(between) == KUSER_TICK_COUNT - len(head):
                self.emu.mem_write(KUSER_SHARED_DATA, head + bytes(between) + tail)
                return
            self.emu.mem_write(KUSER_SHARED_DATA, head)
            self.emu.mem_write(KUSER_SHARED_DATA + KUSER_TICK_COUNT, tail)
        except Exception:
            return  # no shared page mapped (another mapping owns the address)


class ProcessBlocks:
    """The PEB and TEBs as Windows fills them, agreeing with the APIs: the PEB's ProcessHeap is
    the heap GetProcessHeap returns, with an NT heap's header (HEAP_GROWABLE, no debug-heap
    ForceFlags); NumberOfProcessors is GetSystemInfo's; OSPlatformId is VER_PLATFORM_WIN32_NT;
    TEB.ClientId holds GetCurrentProcessId / GetCurrentThreadId; the last error is
    TEB.LastErrorValue. Bare Speakeasy leaves all of them zero (a NULL process heap)."""

    def __init__(self, emu: Any, guest: GuestEnvironment, x64: bool) -> None:
        self.emu = emu
        self.guest = guest
        self.x64 = x64
        # x86: the handler of the final registration each thread's fs:[0] starts with (an
        # ntdll address, as _except_handler4 of RtlUserThreadStart's frame is), and the records
        # placed so far
        self.final_handler = 0
        self.final_records: set[int] = set()

    def install(self) -> None:
        if not self.x64:
            exports = {name: address for name, address, _trap in compat.ntdll_function_exports(self.emu)}
            self.final_handler = next((exports[n] for n in FINAL_HANDLER_EXPORTS if n in exports), 0)
        if self.final_handler:
            compat_guest.final_registration_hidden(self.emu, lambda: self.final_handler)
            compat_guest.after_run_prepared(self.emu, self._final_registration)
        compat_blocks.whole_teb_mapped(self.emu, TEB_SIZE[self.x64])
        compat_blocks.on_new_peb(self.emu, self._fill_peb)
        compat_blocks.on_new_teb(self.emu, self._fill_teb)
        compat_blocks.mirror_last_error(self.emu, self._teb_address, TEB_LAST_ERROR[self.x64])
        compat_blocks.own_process_listed(self.emu, parent_pid)

    def _teb_address(self) -> int | None:
        thread = self.emu.curr_thread
        teb = getattr(thread, "teb", None) if thread is not None else None
        return getattr(teb, "address", None)

    def _fill_peb(self, process: Any) -> None:
        heaps = compat_blocks.process_heaps(self.emu)
        if not heaps:
            heaps.append(self._new_heap())
        ptr = 8 if self.x64 else 4
        heap_list: int = self.emu.mem_map(0x1000, tag="emu.process_heaps")
        self.emu.mem_write(heap_list, heaps[0].to_bytes(ptr, "little"))
        mask = (1 << min(self.guest.processors, ptr * 8)) - 1
        process.session = USER_SESSION_ID  # ProcessIdToSessionId's answer
        fields = {
            "ProcessHeap": heaps[0],
            "NumberOfHeaps": 1,
            "MaximumNumberOfHeaps": 16,
            "ProcessHeaps": heap_list,
            "NumberOfProcessors": self.guest.processors,
            "OSPlatformId": VER_PLATFORM_WIN32_NT,
            "ActiveProcessAffinityMask": mask,
            "SessionId": USER_SESSION_ID,
        }
        fields.update(self._subsystem(int(process.peb.object.ImageBaseAddress or 0)))
        compat_blocks.set_fields(process.peb, fields)
        compat_blocks.set_loader_data(process, PEB_LDR_DATA_SIZE[self.x64])
        compat_blocks.entry_points_as_headers(self.emu, process)
        self._fill_parameters(int(process.peb.object.ProcessParameters or 0))
        write_environment(self.emu, compat_blocks.peb_address(process), self.x64, {})

    def _subsystem(self, base: int) -> dict[str, int]:
        """PEB.ImageSubsystem and its version: the program's optional header's."""
        try:
            lfanew = struct.unpack("<I", bytes(self.emu.mem_read(base + 0x3C, 4)))[0]
            optional = base + lfanew + 24
            major, minor = struct.unpack("<HH", bytes(self.emu.mem_read(optional + OPTIONAL_SUBSYSTEM_VERSION, 4)))
            (subsystem,) = struct.unpack("<H", bytes(self.emu.mem_read(optional + OPTIONAL_SUBSYSTEM, 2)))
        except Exception:
            return {}
        return {"ImageSubsystem": subsystem, "ImageSubsystemMajorVersion": major, "ImageSubsystemMinorVersion": minor}

    def _fill_parameters(self, address: int) -> None:
        """RTL_USER_PROCESS_PARAMETERS' length as Windows 10's (Speakeasy's structure stops early;
        its strings follow it)."""
        if not address:
            return
        try:
            maximum, length = struct.unpack("<II", bytes(self.emu.mem_read(address, 8)))
            strings = max(0, length - compat_blocks.process_parameters_size(self.emu))
            size = max(length, PROCESS_PARAMETERS_SIZE[self.x64] + strings)
            self.emu.mem_write(address, struct.pack("<II", max(maximum, size), size))
        except Exception:
            return

    def _new_heap(self) -> int:
        heap: int = self.emu.mem_map(HEAP_HEADER_SIZE, tag="emu.process_heap")
        signature, flags, force_flags = HEAP_OFFSETS[self.x64]
        self.emu.mem_write(heap + signature, struct.pack("<I", HEAP_SEGMENT_SIGNATURE))
        self.emu.mem_write(heap + flags, struct.pack("<II", HEAP_GROWABLE, 0))
        assert force_flags == flags + 4
        return heap

    def _fill_teb(self, thread: Any) -> None:
        process = getattr(thread, "process", None) or self.emu.get_current_process()
        thread.teb.object.LastErrorValue = thread.last_error & 0xFFFFFFFF
        thread.teb.object.CurrentLocale = LOCALE_EN_US
        compat_blocks.set_stack_limit(self.emu, thread)
        compat_blocks.set_deallocation_stack(self.emu, thread, TEB_DEALLOCATION_STACK[self.x64])
        compat_blocks.set_client_id(thread, process.id if process is not None else 0, self.x64)
        self._own_tls_slots(thread)

    def _final_registration(self, thread: Any) -> None:
        """x86: fs:[0] of a thread starting a run is the final registration (next -1) on its
        stack, as Windows' RtlUserThreadStart leaves it, not empty."""
        record = compat_guest.write_final_registration(self.emu, thread, self.final_handler, self.final_records)
        if record is not None:
            self.final_records.add(record)

    def _own_tls_slots(self, thread: Any) -> None:
        """The thread's own TLS values (Speakeasy's list of them) in its TEB's slots: a thread run
        at the one TEB address must not see the previous thread's."""
        if not compat_blocks.teb_holds(self.emu, int(thread.teb.address), TEB_TLS_SLOTS[self.x64]):
            return
        values = [int(v or 0) for v in (getattr(thread, "tls", None) or [])][:TLS_MINIMUM_AVAILABLE]
        values += [0] * (TLS_MINIMUM_AVAILABLE - len(values))
        width = 8 if self.x64 else 4
        data = b"".join((v & ((1 << (8 * width)) - 1)).to_bytes(width, "little") for v in values)
        with contextlib.suppress(Exception):
            self.emu.mem_write(int(thread.teb.address) + TEB_TLS_SLOTS[self.x64], data)


def write_environment(emu: Any, peb: int, x64: bool, names: dict[str, str]) -> None:
    """PEB.ProcessParameters.Environment: the block of the process's
    variables (Speakeasy's dictionary, which GetEnvironmentVariable reads), in a new allocation
    each time they change, as RtlSetEnvironmentVariable reallocates it."""
    if not peb:
        return
    ptr = 8 if x64 else 4
    try:
        parameters = int.from_bytes(bytes(emu.mem_read(peb + (0x20 if x64 else 0x10), ptr)), "little")
        if not parameters:
            return
        data = environment_block(dict(emu.get_env()), names).encode("utf-16-le")
        block = int(emu.mem_map(max(len(data), 0x1000), tag="emu.environment"))
        emu.mem_write(block, data)
        emu.mem_write(parameters + PROCESS_PARAMETERS_ENVIRONMENT[x64], block.to_bytes(ptr, "little"))
    except Exception:
        return


def code_ranges(data: bytes, base: int, size: int) -> list[tuple[int, int]]:
    """The executable sections of a PE image at ``base`` (its data is written often, its code
    rarely), or the whole region when it is not an image."""
    try:
        lfanew = struct.unpack_from("<I", data, 0x3C)[0] if data[:2] == b"MZ" else 0
        if not lfanew or data[lfanew : lfanew + 4] != b"PE\0\0":
            return [(base, base + size)]
        sections, optional = struct.unpack_from("<H12xH", data, lfanew + 6)
        table = lfanew + 24 + optional
        ranges = []
        for index in range(sections):
            vsize, rva = struct.unpack_from("<II", data, table + 40 * index + 8)
            characteristics = struct.unpack_from("<I", data, table + 40 * index + 36)[0]
            if characteristics & IMAGE_SCN_MEM_EXECUTE and vsize:
                ranges.append((base + rva, base + rva + ((vsize + 0xFFF) & ~0xFFF)))
        return ranges
    except struct.error:
        return [(base, base + size)]


def _ksystem_time(value: int) -> bytes:
    """KSYSTEM_TIME: LowPart, High1Time, High2Time."""
    return struct.pack("<IiI", value & 0xFFFFFFFF, (value >> 32) & 0x7FFFFFFF, (value >> 32) & 0xFFFFFFFF)


assert TSC_HZ % 10_000_000 == 0
assert CPU_SIGNATURE == 0x306C3
