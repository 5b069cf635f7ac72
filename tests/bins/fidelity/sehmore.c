/* Mode-equivalence sample (i686): harder frame-based SEH shapes, each raised after imports are
 * resolved and each reporting a verdict line (OutputDebugStringA "check NAME: pass|FAIL"):
 * a handler that commits the reserved page a write faulted on and retries it; one that makes a
 * read-only page writable and retries; a write to unmapped memory skipped; a fault in a loop
 * body; ud2; RaiseException; an inner handler passing (ExceptionContinueSearch) to an outer one; a
 * fault inside a handler (nested: the search skips that handler's registration); a vectored
 * handler before the frame-based ones; a fault in a second thread with the thread's own handler (the thread
 * runs inside the main thread's wait for it). Exits 0x5E0 + handler calls. */
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

static volatile LONG passes, catches, nest_calls, nested_flag, veh_calls;
static volatile DWORD nested_fault_pc;

static EXCEPTION_DISPOSITION __cdecl passer(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)record; (void)frame; (void)context; (void)dispatcher;
    passes++;
    return ExceptionContinueSearch;
}

/* Outer handler: resumes at `resume`, or past the read that faulted inside `nesting`. */
static EXCEPTION_DISPOSITION __cdecl catcher(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame; (void)dispatcher;
    catches++;
    if (context->Eip == nested_fault_pc) {
        nested_flag = (record->ExceptionFlags & 0x10) != 0; /* EXCEPTION_NESTED_CALL */
        context->Eip += 5;
        return ExceptionContinueExecution;
    }
    context->Eip = resume;
    return ExceptionContinueExecution;
}

/* Inner handler that faults itself: the nested exception skips it and reaches `catcher`. */
static EXCEPTION_DISPOSITION __cdecl nesting(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)record; (void)frame; (void)dispatcher;
    nest_calls++;
    __asm__ volatile("movl $1f, %0\n1:\tmovl 0x44, %%eax" : "=m"(nested_fault_pc) : : "eax", "memory");
    context->Eip = resume;
    return ExceptionContinueExecution;
}

static LONG CALLBACK veh32(EXCEPTION_POINTERS *info)
{
    veh_calls++;
    if (info->ExceptionRecord->ExceptionCode != EXCEPTION_BREAKPOINT)
        return EXCEPTION_CONTINUE_SEARCH;
    info->ContextRecord->Eip += 1; /* past the int3 */
    return EXCEPTION_CONTINUE_EXECUTION;
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
    __asm__ volatile("movl $1f, %0\n\tud2\n1:" : "=m"(resume) : : "memory");
    check("illegal_instruction", before, 1);

    before = handled;
    __asm__ volatile("movl $1f, %0" : "=m"(resume) : : "memory");
    RaiseException(0xE0000001, 0, 0, NULL);
    __asm__ volatile("1:");
    check("raise_exception", before, 1);

    pop_reg(&r);
    {
        struct reg outer, inner;
        char d[24];
        push_reg(&outer, (void *)catcher);
        push_reg(&inner, (void *)passer);
        __asm__ volatile("movl $1f, %0\n\tmovl 0x64, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
        pop_reg(&inner);
        fmt_u64(d, (unsigned long long)(passes * 10 + catches));
        verdict("continue_search_reaches_outer", passes == 1 && catches == 1, d);
        push_reg(&inner, (void *)nesting);
        __asm__ volatile("movl $1f, %0\n\tmovl 0x68, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
        pop_reg(&inner);
        fmt_u64(d, (unsigned long long)(nest_calls * 10 + catches));
        verdict("nested_exception_skips_its_handler", nest_calls == 1 && catches == 2 && nested_flag, d);
        AddVectoredExceptionHandler(1, veh32);
        __asm__ volatile("movl $1f, %0\n\tint3\n1:" : "=m"(resume) : : "memory");
        __asm__ volatile("movl $1f, %0\n\tmovl 0x6c, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
        fmt_u64(d, (unsigned long long)(veh_calls * 10 + catches));
        verdict("vectored_before_frames", veh_calls == 2 && catches == 3, d);
        pop_reg(&outer);
    }
    thread = CreateThread(NULL, 0, worker, NULL, 0, NULL); /* runs inside the wait */
    WaitForSingleObject(thread, INFINITE);
    GetTickCount();
    ExitProcess(0x5E0 + handled);
}
