/*
 * loader.c - generality suite: the three ways x86 code makes its own system calls (benign,
 * emulator-only; see ../../lineage-common/common.h), as SysWhispers-style loaders do.
 *
 * Reads the system service numbers of NtAllocateVirtualMemory, NtProtectVirtualMemory and
 * NtCreateThreadEx from ntdll's stubs (`mov eax, <number>` first), then:
 *  - allocates read-write memory with the WoW64 gate: `call dword ptr fs:[0xC0]` (TEB's
 *    WOW32Reserved; taken only when it is set, as SysWhispers2 does), the number in eax;
 *  - makes it read-execute with `sysenter` from its own code (KiFastSystemCall's
 *    `mov edx, esp; sysenter`, called from the wrapper);
 *  - starts the thread through another function's stub (NtClose's) past its number: the number
 *    in eax, a jump to the stub's `mov edx, <gate>; call edx` (an indirect system call).
 * In between it XOR-decodes the payload embedded in its data (one-byte key 0x5a) into the
 * memory; the payload (../lineage-common/payload.c) writes C:\Users\Public\lineage_wow64.txt.
 * Exit codes: 0 ok, 1 no marker, 3 no system call numbers or gate, 4 memory, 5 thread.
 */
#include "common.h"
#include "payload.h"

typedef LONG NTSTATUS_T;
DWORD ssn_alloc, ssn_protect, ssn_thread; /* read by the wrappers below */
ULONG_PTR donor_rest;                      /* NtClose's stub past its number */

__asm__(".text\n"
        /* WoW64: ecx 0, edx the arguments, the gate in TEB.WOW32Reserved */
        ".globl _wow64_alloc@24\n"
        "_wow64_alloc@24:\n"
        "  mov _ssn_alloc, %eax\n"
        "  xor %ecx, %ecx\n"
        "  lea 4(%esp), %edx\n"
        "  call *%fs:0xc0\n"
        "  ret $24\n"
        /* native x86: KiFastSystemCall's sysenter, called from the wrapper */
        ".globl _sysenter_protect@20\n"
        "_sysenter_protect@20:\n"
        "  mov _ssn_protect, %eax\n"
        "  call fast_system_call\n"
        "  ret $20\n"
        "fast_system_call:\n"
        "  mov %esp, %edx\n"
        "  sysenter\n"
        "  ret\n"
        /* indirect: into another function's stub, past its number */
        ".globl _indirect_thread@44\n"
        "_indirect_thread@44:\n"
        "  mov _ssn_thread, %eax\n"
        "  jmp *_donor_rest\n");
NTSTATUS_T WINAPI wow64_alloc(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);
NTSTATUS_T WINAPI sysenter_protect(HANDLE, PVOID *, PSIZE_T, ULONG, PULONG);
NTSTATUS_T WINAPI indirect_thread(PHANDLE, ACCESS_MASK, PVOID, HANDLE, PVOID, PVOID, ULONG, SIZE_T, SIZE_T, SIZE_T,
                                  PVOID);

static const unsigned char *stub_of(HMODULE ntdll, const char *name)
{
    const unsigned char *stub = (const unsigned char *)GetProcAddress(ntdll, name);
    return stub && stub[0] == 0xB8 ? stub : 0; /* mov eax, <number>; else hooked or absent */
}

static int number_of(HMODULE ntdll, const char *name, DWORD *number)
{
    const unsigned char *stub = stub_of(ntdll, name);
    if (!stub)
        return 0;
    *number = *(const DWORD *)(stub + 1);
    return 1;
}

static ULONG_PTR wow32_reserved(void)
{
    ULONG_PTR value;
    __asm__ volatile("mov %%fs:0xc0, %0" : "=r"(value));
    return value;
}

void Entry(void)
{
    static struct sc_ctx ctx;
    const unsigned char *donor;
    unsigned char *mem = 0;
    PVOID base;
    SIZE_T size;
    ULONG old;
    HANDLE thread = 0;
    HMODULE ntdll;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    if (!number_of(ntdll, "NtAllocateVirtualMemory", &ssn_alloc) || !number_of(ntdll, "NtProtectVirtualMemory", &ssn_protect) ||
        !number_of(ntdll, "NtCreateThreadEx", &ssn_thread) || !wow32_reserved())
        ExitProcess(3);
    donor = stub_of(ntdll, "NtClose");
    if (!donor || donor[5] != 0xBA)
        ExitProcess(3);
    donor_rest = (ULONG_PTR)(donor + 5);
    size = sizeof(payload_enc);
    if (wow64_alloc((HANDLE)-1, (PVOID *)&mem, 0, &size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) != 0 || !mem)
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ 0x5a;
    base = mem;
    size = sizeof(payload_enc);
    if (sysenter_protect((HANDLE)-1, &base, &size, PAGE_EXECUTE_READ, &old) != 0)
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_wow64.txt", "run by x86 system calls\n");
    if (indirect_thread(&thread, THREAD_ALL_ACCESS, 0, (HANDLE)-1, mem, &ctx, 0, 0, 0, 0, 0) != 0 || !thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
