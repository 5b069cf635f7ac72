/* Mode-equivalence sample (i686): one frame-based SEH handler (fs:[0]) catches, in turn, a
 * breakpoint (int3), an integer division by zero, a single step
 * (trap flag), int 0x2d and an access violation, each raised after imports are resolved; the
 * handler resumes at a label after the faulting instruction. Exits 0x100 + handler calls. */
#include "fidelity.h"

static volatile LONG handled;
static volatile DWORD resume;
static volatile DWORD codes[8];

static EXCEPTION_DISPOSITION __cdecl handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame;
    (void)dispatcher;
    if (handled < 8)
        codes[handled] = record->ExceptionCode;
    handled++;
    context->Eip = resume;
    context->EFlags &= ~0x100u;
    return ExceptionContinueExecution;
}

void __cdecl SehKindsEntry(void)
{
    struct { void *next; void *handler; } reg;
    if (!marker_set())
        ExitProcess(2);
    GetTickCount();
    reg.handler = (void *)handler;
    __asm__ volatile("movl %%fs:0, %%eax\n\tmovl %%eax, (%0)\n\tmovl %0, %%fs:0" : : "r"(&reg) : "eax", "memory");
    __asm__ volatile("movl $1f, %0\n\tint3\n1:" : "=m"(resume) : : "memory");
    GetTickCount();
    __asm__ volatile("movl $1f, %0\n\txorl %%ecx, %%ecx\n\txorl %%edx, %%edx\n\tmovl $7, %%eax\n\tdivl %%ecx\n1:"
                     : "=m"(resume) : : "eax", "ecx", "edx", "memory");
    GetTickCount();
    __asm__ volatile("movl $1f, %0\n\tpushfl\n\torl $0x100, (%%esp)\n\tpopfl\n\tnop\n\tnop\n1:" : "=m"(resume) : : "memory");
    GetTickCount();
    __asm__ volatile("movl $1f, %0\n\tint $0x2d\n\tnop\n1:" : "=m"(resume) : : "memory");
    GetTickCount();
    __asm__ volatile("movl $1f, %0\n\tmovl 0x10, %%eax\n1:" : "=m"(resume) : : "eax", "memory");
    __asm__ volatile("movl (%0), %%eax\n\tmovl %%eax, %%fs:0" : : "r"(&reg) : "eax", "memory");
    GetTickCount();
    ExitProcess(0x100 + handled);
}
