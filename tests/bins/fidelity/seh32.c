/* Mode-equivalence and regression sample (i686): after its imports are resolved and called, the
 * EXE installs a frame-based SEH handler (fs:[0]) and faults twice: a read of address 0 that the
 * handler skips (Eip + 5), then a read through a NULL register that the handler repairs (Ecx) and
 * resumes at the same instruction, as packers do. Exits 0x5E4 + handler calls, or 1. */
#include "fidelity.h"

static volatile LONG handled;
static volatile LONG target = 0x1234;

static EXCEPTION_DISPOSITION __cdecl handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame;
    (void)dispatcher;
    if (record->ExceptionCode != EXCEPTION_ACCESS_VIOLATION)
        return ExceptionContinueSearch;
    handled++;
    GetTickCount(); /* an API call inside the handler */
    if (context->Ecx == 0x0BAD0000)
        context->Ecx = (DWORD)&target; /* repair and retry the same instruction */
    else
        context->Eip += 5; /* skip movl 0x0, %eax */
    return ExceptionContinueExecution;
}

void __cdecl Seh32Entry(void)
{
    struct { void *next; void *handler; } reg;
    LONG value;
    if (!marker_set())
        ExitProcess(2);
    GetTickCount();
    reg.handler = (void *)handler;
    __asm__ volatile("movl %%fs:0, %%eax\n\tmovl %%eax, (%0)\n\tmovl %0, %%fs:0" : : "r"(&reg) : "eax", "memory");
    __asm__ volatile(".byte 0xA1, 0, 0, 0, 0" : : : "eax", "memory"); /* movl 0x0, %eax */
    __asm__ volatile("movl $0x0BAD0000, %%ecx\n\tmovl (%%ecx), %0" : "=a"(value) : : "ecx", "memory");
    __asm__ volatile("movl (%0), %%eax\n\tmovl %%eax, %%fs:0" : : "r"(&reg) : "eax", "memory");
    GetTickCount();
    ExitProcess(value == 0x1234 ? 0x5E4 + handled : 1);
}
