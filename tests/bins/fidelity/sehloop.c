/* Mode-equivalence and regression sample (i686): after its imports are resolved, a frame-based
 * SEH handler returns ExceptionContinueExecution without repairing anything, so the faulting
 * read faults again at the same place. Speakeasy gives up after a few identical faults and ends
 * the run with the fault, in fast and faithful mode alike (fast mode used to loop to the timeout). */
#include "fidelity.h"

static volatile LONG handled;

static EXCEPTION_DISPOSITION __cdecl handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)record;
    (void)frame;
    (void)context;
    (void)dispatcher;
    handled++;
    return ExceptionContinueExecution;
}

void __cdecl SehLoopEntry(void)
{
    struct { void *next; void *handler; } reg;
    if (!marker_set())
        ExitProcess(2);
    GetTickCount();
    reg.handler = (void *)handler;
    __asm__ volatile("movl %%fs:0, %%eax\n\tmovl %%eax, (%0)\n\tmovl %0, %%fs:0" : : "r"(&reg) : "eax", "memory");
    __asm__ volatile("movl 0x20, %%eax" : : : "eax", "memory");
    __asm__ volatile("movl (%0), %%eax\n\tmovl %%eax, %%fs:0" : : "r"(&reg) : "eax", "memory");
    ExitProcess(0x100 + handled);
}
