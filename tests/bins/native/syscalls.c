/* System calls as hook-avoiding loaders make them (tests/test_native.py), on ntdll's stubs:
 * the number read from NtAllocateVirtualMemory's stub (Hell's Gate) equals ZwAllocateVirtualMemory's
 * and its rank among the Zw* exports sorted by address (SysWhispers2); a direct system call from
 * this program's own code allocates memory; an indirect one (a jump to the stub's syscall
 * instruction on x64, into the stub past its number on x86) allocates too; an unknown number gets
 * STATUS_INVALID_SYSTEM_SERVICE; `int 2Eh` with the number allocates too. Exits with one bit per
 * check (0x7F: all passed).
 * Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

typedef LONG NTSTATUS_T;
#define STATUS_INVALID_SYSTEM_SERVICE_T ((LONG)0xC000001C)

volatile DWORD ssn_value;        /* read by the assembly stubs below */
volatile ULONG_PTR syscall_addr; /* x64: the stub's syscall instruction */

#ifdef _WIN64
__asm__(".text\n"
        ".globl direct_syscall\n"
        "direct_syscall:\n"
        "  mov %rcx, %r10\n"
        "  mov ssn_value(%rip), %eax\n"
        "  syscall\n"
        "  ret\n"
        ".globl indirect_syscall\n"
        "indirect_syscall:\n"
        "  mov %rcx, %r10\n"
        "  mov ssn_value(%rip), %eax\n"
        "  jmp *syscall_addr(%rip)\n"
        ".globl int2e_syscall\n"
        "int2e_syscall:\n"
        "  mov %rcx, %r10\n"
        "  mov ssn_value(%rip), %eax\n"
        "  int $0x2e\n"
        "  ret\n");
#else
/* x86: direct, the number and a call of the kernel's entry (KiFastSystemCall) the stub names;
 * indirect, a jump into the stub past its number (its mov edx / call edx) */
__asm__(".text\n"
        ".globl _direct_syscall@24\n"
        "_direct_syscall@24:\n"
        "  mov _ssn_value, %eax\n"
        "  mov _syscall_addr, %edx\n"
        "  call *%edx\n"
        "  ret $24\n"
        ".globl _indirect_syscall@24\n"
        "_indirect_syscall@24:\n"
        "  mov _ssn_value, %eax\n"
        "  jmp *_stub_rest\n"
        ".globl _int2e_syscall@24\n"
        "_int2e_syscall@24:\n"
        "  mov _ssn_value, %eax\n"
        "  lea 4(%esp), %edx\n"
        "  int $0x2e\n"
        "  ret $24\n");
volatile ULONG_PTR stub_rest; /* x86: the stub past its mov eax */
#endif

typedef NTSTATUS_T (WINAPI *alloc_t)(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);
NTSTATUS_T WINAPI direct_syscall(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);
NTSTATUS_T WINAPI indirect_syscall(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);
NTSTATUS_T WINAPI int2e_syscall(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);

static int same(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* SysWhispers2: the rank of `want` among ntdll's Zw* exports sorted by address; -1 if absent */
static int rank_of(const unsigned char *ntdll, const char *want)
{
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(ntdll + ((const IMAGE_DOS_HEADER *)ntdll)->e_lfanew);
    DWORD rva = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT].VirtualAddress;
    const IMAGE_EXPORT_DIRECTORY *dir = (const IMAGE_EXPORT_DIRECTORY *)(ntdll + rva);
    const DWORD *names = (const DWORD *)(ntdll + dir->AddressOfNames);
    const WORD *ordinals = (const WORD *)(ntdll + dir->AddressOfNameOrdinals);
    const DWORD *functions = (const DWORD *)(ntdll + dir->AddressOfFunctions);
    DWORD target = 0, i;
    int below = 0, found = 0;
    for (i = 0; i < dir->NumberOfNames; i++)
        if (same((const char *)ntdll + names[i], want)) {
            target = functions[ordinals[i]];
            found = 1;
        }
    if (!found)
        return -1;
    for (i = 0; i < dir->NumberOfNames; i++) {
        const char *name = (const char *)ntdll + names[i];
        if (name[0] == 'Z' && name[1] == 'w' && functions[ordinals[i]] < target)
            below++;
    }
    return below;
}

static int stub_number(const unsigned char *stub, DWORD *number)
{
#ifdef _WIN64
    if (stub[0] == 0x4C && stub[1] == 0x8B && stub[2] == 0xD1 && stub[3] == 0xB8) {
        *number = *(const DWORD *)(stub + 4);
        return 1;
    }
#else
    if (stub[0] == 0xB8) {
        *number = *(const DWORD *)(stub + 1);
        return 1;
    }
#endif
    return 0;
}

static int allocates(alloc_t call)
{
    PVOID base = 0;
    SIZE_T size = 0x2000;
    NTSTATUS_T status = call((HANDLE)-1, &base, 0, &size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (status != 0 || !base || size < 0x2000)
        return 0;
    ((volatile char *)base)[0x1FFF] = 1; /* committed and writable */
    return 1;
}

void __stdcall Entry(void)
{
    unsigned bits = 0;
    DWORD nt_number = 0, zw_number = 0;
    const unsigned char *ntdll, *nt_stub, *zw_stub;
    if (!marker_set())
        ExitProcess(0x100);
    ntdll = (const unsigned char *)GetModuleHandleA("ntdll.dll");
    nt_stub = (const unsigned char *)GetProcAddress((HMODULE)ntdll, "NtAllocateVirtualMemory");
    zw_stub = (const unsigned char *)GetProcAddress((HMODULE)ntdll, "ZwAllocateVirtualMemory");
    if (nt_stub && zw_stub && stub_number(nt_stub, &nt_number) && stub_number(zw_stub, &zw_number) &&
        nt_number == zw_number)
        bits |= 0x01; /* Hell's Gate finds the number, the same for both names */
    if (ntdll && rank_of(ntdll, "ZwAllocateVirtualMemory") == (int)nt_number)
        bits |= 0x02; /* SysWhispers2's ranking agrees with the stub */
    ssn_value = nt_number;
#ifdef _WIN64
    syscall_addr = (ULONG_PTR)nt_stub + 18;
    if (bits & 0x01 && allocates(direct_syscall))
        bits |= 0x04;
    if (nt_stub && nt_stub[18] == 0x0F && nt_stub[19] == 0x05 && allocates(indirect_syscall))
        bits |= 0x08;
#else
    syscall_addr = nt_stub && nt_stub[5] == 0xBA ? *(const DWORD *)(nt_stub + 6) : 0;
    stub_rest = (ULONG_PTR)nt_stub + 5;
    if (bits & 0x01 && syscall_addr && allocates(direct_syscall))
        bits |= 0x04;
    if (nt_stub && allocates(indirect_syscall))
        bits |= 0x08;
#endif
    if (nt_stub && allocates((alloc_t)nt_stub))
        bits |= 0x10; /* the stub called as a function still works */
    if (bits & 0x01 && allocates(int2e_syscall))
        bits |= 0x40; /* int 2Eh, the older way in */
    ssn_value = 0x0FFF;
    {
        PVOID base = 0;
        SIZE_T size = 0x1000;
        if (direct_syscall((HANDLE)-1, &base, 0, &size, MEM_COMMIT, PAGE_READWRITE) == STATUS_INVALID_SYSTEM_SERVICE_T)
            bits |= 0x20;
    }
    ExitProcess(bits);
}
