/* Mode-equivalence sample (x64): a vectored exception handler resumes past a faulting read,
 * then a second fault happens inside a thread's callback. Exits with what the handler saw. */
#include "fidelity.h"

static volatile LONG handled;

static LONG CALLBACK vectored(EXCEPTION_POINTERS *info)
{
    if (info->ExceptionRecord->ExceptionCode != EXCEPTION_ACCESS_VIOLATION)
        return EXCEPTION_CONTINUE_SEARCH;
    handled++;
    info->ContextRecord->Rip += 8; /* movq 0x0, %rax */
    return EXCEPTION_CONTINUE_EXECUTION;
}

static DWORD WINAPI worker(LPVOID param)
{
    (void)param;
    __asm__ volatile(".byte 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0" : : : "rax", "memory");
    return 7;
}

void __stdcall VehEntry(void)
{
    HANDLE thread;
    if (!marker_set())
        ExitProcess(2);
    AddVectoredExceptionHandler(1, vectored);
    __asm__ volatile(".byte 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0" : : : "rax", "memory");
    thread = CreateThread(NULL, 0, worker, NULL, 0, NULL);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0x100 + handled);
}
