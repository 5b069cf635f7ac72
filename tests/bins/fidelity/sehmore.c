/* Mode-equivalence sample (i686): harder frame-based SEH shapes, each raised after imports are
 * resolved and each reporting a verdict line (OutputDebugStringA "check NAME: pass|FAIL"):
 * a handler that commits the reserved page a write faulted on and retries it; one that makes a
 * read-only page writable and retries; a write to unmapped memory skipped; a fault in a loop
 * body; RaiseException; a fault in a second thread with the thread's own handler (the thread
 * runs after the main run, as Speakeasy runs threads). Exits 0x5E0 + handler calls. */
#include "fidelity.h"

struct reg { struct reg *next; void *handler; };
static volatile LONG handled;
static volatile DWORD resume;
static char *volatile reserved;
static char *volatile readonly;

static void push_reg(struct reg *r, void *handler)
{
    r->handler = handler;
    __asm__ volatile("movl %%fs:0, %%eax\n\tmovl %%eax, (%0)\n\tmovl %0, %%fs:0" : : "r"(r) : "eax", "memory");
}

static void pop_reg(struct reg *r)
{
    __asm__ volatile("movl (%0), %%eax\n\tmovl %%eax, %%fs:0" : : "r"(r) : "eax", "memory");
}

static EXCEPTION_DISPOSITION __cdecl handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    DWORD old;
    (void)frame;
    (void)dispatcher;
    handled++;
    if (record->ExceptionCode == EXCEPTION_ACCESS_VIOLATION && reserved && context->Ecx == (DWORD)reserved) {
        VirtualAlloc(reserved, 4096, MEM_COMMIT, PAGE_READWRITE); /* commit and retry */
        return ExceptionContinueExecution;
    }
    if (record->ExceptionCode == EXCEPTION_ACCESS_VIOLATION && readonly && context->Ecx == (DWORD)readonly) {
        VirtualProtect(readonly, 4096, PAGE_READWRITE, &old); /* unprotect and retry */
        return ExceptionContinueExecution;
    }
    context->Eip = resume;
    return ExceptionContinueExecution;
}

static DWORD WINAPI worker(LPVOID param)
{
    struct reg r;
    (void)param;
    push_reg(&r, (void *)handler);
    __asm__ volatile("movl $1f, %0\n\tmovl 0x48, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
    pop_reg(&r);
    verdict("fault_in_thread", resume != 0, "");
    return 0;
}

static void check(const char *name, LONG before, LONG want)
{
    char detail[24];
    fmt_u64(detail, (unsigned long long)(handled - before));
    verdict(name, handled - before == want, detail);
}

void __cdecl SehMoreEntry(void)
{
    struct reg r;
    LONG before;
    DWORD old;
    HANDLE thread;
    if (!marker_set())
        ExitProcess(2);
    GetTickCount();
    push_reg(&r, (void *)handler);

    before = handled;
    reserved = VirtualAlloc(NULL, 4096, MEM_RESERVE, PAGE_NOACCESS);
    __asm__ volatile("movl %0, %%ecx\n\tmovl $7, (%%ecx)" : : "r"(reserved) : "ecx", "memory");
    check("commit_on_fault", before, 1);
    verdict("committed_value", reserved[0] == 7, "");
    reserved = 0;

    before = handled;
    readonly = VirtualAlloc(NULL, 4096, MEM_COMMIT, PAGE_READWRITE);
    VirtualProtect(readonly, 4096, PAGE_READONLY, &old);
    __asm__ volatile("movl %0, %%ecx\n\tmovl $9, (%%ecx)" : : "r"(readonly) : "ecx", "memory");
    check("unprotect_on_fault", before, 1);
    verdict("unprotected_value", readonly[0] == 9, "");
    readonly = 0;

    before = handled;
    __asm__ volatile("movl $1f, %0\n\tmovl $5, 0x50\n1:" : "=m"(resume) : : "memory");
    check("unmapped_write_skipped", before, 1);

    before = handled;
    __asm__ volatile("movl $1f, %0\n\tmovl 0x58, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
    check("loop_body_fault_1", before, 1);
    before = handled;
    for (int i = 0; i < 3; i++)
        __asm__ volatile("movl $1f, %0\n\tmovl 0x5c, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
    check("loop_body_fault_3", before, 3);

    before = handled;
    __asm__ volatile("movl $1f, %0" : "=m"(resume) : : "memory");
    RaiseException(0xE0000001, 0, 0, NULL);
    __asm__ volatile("1:");
    check("raise_exception", before, 1);

    pop_reg(&r);
    thread = CreateThread(NULL, 0, worker, NULL, 0, NULL); /* runs after this run (Speakeasy) */
    WaitForSingleObject(thread, INFINITE);
    GetTickCount();
    ExitProcess(0x5E0 + handled);
}
