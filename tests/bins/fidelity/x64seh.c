/* The C half of x64seh: the language handler and the entry point. Exits with faulter()'s
 * return value (0x64 when the handler resumed it). */
#include "fidelity.h"

int faulter(void);
static volatile LONG handled;

EXCEPTION_DISPOSITION seh_handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame;
    (void)dispatcher;
    if (record->ExceptionCode == EXCEPTION_ACCESS_VIOLATION)
        handled++;
    context->Rip += 8; /* movq 0x0, %rax */
    return ExceptionContinueExecution;
}

void __stdcall X64SehEntry(void)
{
    int value;
    if (!marker_set())
        ExitProcess(2);
    value = faulter();
    ExitProcess((UINT)(value + 0x100 * handled));
}
