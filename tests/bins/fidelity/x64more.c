/* Mode-equivalence sample (x64): vectored and table-based handlers together. The vectored
 * handler runs first: it resumes after an int3, after RaiseException, after a ud2, after a
 * write to a read-only page it makes writable and after a read of a PAGE_NOACCESS page it makes
 * readable, and passes other access violations on (EXCEPTION_CONTINUE_SEARCH)
 * to the .pdata handler of `framed` (x64more.S), reached by unwinding a leaf function and a
 * function with a prolog. Each check is a verdict line; exits 0x640 + handler calls. */
#include "fidelity.h"

long long outer(void);
static volatile LONG vectored_calls, frame_calls, outer_calls, outer_nested;
static volatile DWORD64 inner_rbx;
static char *volatile readonly;
static char *volatile noaccess;

EXCEPTION_DISPOSITION framed_handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame;
    (void)dispatcher;
    if (record->ExceptionCode != EXCEPTION_ACCESS_VIOLATION)
        return ExceptionContinueSearch;
    frame_calls++;
    if (frame_calls == 2)
        inner_rbx = context->Rbx;
    if (frame_calls == 3)
        __asm__ volatile(".byte 0x48, 0x8b, 0x04, 0x25, 0x88, 0, 0, 0" : : : "rax", "memory"); /* a fault in the handler */
    context->Rip += 8; /* movq 0x70 / 0x78 / 0x80, %rax */
    return ExceptionContinueExecution;
}

EXCEPTION_DISPOSITION outer_handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context, void *dispatcher)
{
    (void)frame;
    (void)dispatcher;
    outer_calls++;
    outer_nested = (record->ExceptionFlags & 0x10) != 0; /* EXCEPTION_NESTED_CALL */
    context->Rip += 8;
    return ExceptionContinueExecution;
}

static LONG CALLBACK vectored(EXCEPTION_POINTERS *info)
{
    DWORD old;
    DWORD code = info->ExceptionRecord->ExceptionCode;
    if (code == DBG_PRINTEXCEPTION_C) /* the verdicts' own OutputDebugStringA, as on Windows */
        return EXCEPTION_CONTINUE_SEARCH;
    vectored_calls++;
    if (code == EXCEPTION_BREAKPOINT) {
        info->ContextRecord->Rip += 1;
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    if (code == 0xE0000002)
        return EXCEPTION_CONTINUE_EXECUTION;
    if (code == EXCEPTION_ILLEGAL_INSTRUCTION) {
        info->ContextRecord->Rip += 2; /* past the ud2 */
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    if (code == EXCEPTION_ACCESS_VIOLATION && readonly && info->ExceptionRecord->ExceptionInformation[1] == (ULONG_PTR)readonly) {
        VirtualProtect(readonly, 4096, PAGE_READWRITE, &old);
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    if (code == EXCEPTION_ACCESS_VIOLATION && noaccess && info->ExceptionRecord->ExceptionInformation[0] == 0 &&
        info->ExceptionRecord->ExceptionInformation[1] == (ULONG_PTR)noaccess) {
        VirtualProtect(noaccess, 4096, PAGE_READONLY, &old);
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    return EXCEPTION_CONTINUE_SEARCH;
}

static void count_check(const char *name, LONG got, LONG want)
{
    char detail[24];
    fmt_u64(detail, (unsigned long long)got);
    verdict(name, got == want, detail);
}

void __stdcall X64MoreEntry(void)
{
    long long rbx;
    DWORD old;
    if (!marker_set())
        ExitProcess(2);
    AddVectoredExceptionHandler(1, vectored);

    __asm__ volatile("int3" : : : "memory");
    count_check("vectored_int3", vectored_calls, 1);

    RaiseException(0xE0000002, 0, 0, NULL);
    count_check("vectored_raise_exception", vectored_calls, 2);

    __asm__ volatile("ud2" : : : "memory");
    count_check("vectored_ud2", vectored_calls, 3);

    readonly = VirtualAlloc(NULL, 4096, MEM_COMMIT, PAGE_READWRITE);
    VirtualProtect(readonly, 4096, PAGE_READONLY, &old);
    *(volatile char *)readonly = 5;
    count_check("vectored_unprotect", vectored_calls, 4);
    verdict("unprotected_value", readonly[0] == 5, "");

    noaccess = VirtualAlloc(NULL, 4096, MEM_COMMIT, PAGE_READWRITE);
    noaccess[0] = 7;
    VirtualProtect(noaccess, 4096, PAGE_NOACCESS, &old);
    verdict("noaccess_read_retried", *(volatile char *)noaccess == 7, "");
    count_check("vectored_noaccess", vectored_calls, 5);

    rbx = outer();
    count_check("frame_handler_calls", frame_calls, 3);
    count_check("vectored_saw_every_fault_first", vectored_calls, 9);
    count_check("nested_fault_reaches_outer_frame", outer_calls * 10 + outer_nested, 11);
    verdict("nonvolatile_preserved", rbx == 0x1234, "");
    verdict("context_is_the_faulting_frames", inner_rbx == 0x5678, "");
    ExitProcess(0x640 + vectored_calls + frame_calls + outer_calls);
}
