/* Mode-equivalence sample (x64): mingw's __try1/__except1, the shape of MSVC's x64
 * __try/__except: the function's .pdata entry names msvcrt!__C_specific_handler with a scope
 * table whose filter is `filter`. A read faults in `faulter`, a callee with its own unwind data;
 * the filter first repairs the context and continues execution, then asks for the __except
 * block (EXCEPTION_EXECUTE_HANDLER), which unwinds `faulter` and resumes `guarded` after the
 * guarded block. Each is a verdict line; exits 0x700 + filter calls. Built with unwind tables. */
#include "fidelity.h"
#include <excpt.h>

static volatile LONG filter_calls, mode;
static volatile DWORD seen_code;

__attribute__((noinline)) static int faulter(volatile int *p)
{
    int value;
    __asm__ volatile(".byte 0x48, 0x8b, 0x04, 0x25, 0x7c, 0, 0, 0" : : : "rax", "memory"); /* movq 0x7c, %rax */
    value = *p + 1;
    *p = value;
    return value;
}

long filter(EXCEPTION_POINTERS *info);
__attribute__((used)) long filter(EXCEPTION_POINTERS *info)
{
    filter_calls++;
    seen_code = info->ExceptionRecord->ExceptionCode;
    if (mode == 0) {
        info->ContextRecord->Rip += 8;
        return EXCEPTION_CONTINUE_EXECUTION;
    }
    return EXCEPTION_EXECUTE_HANDLER;
}

__attribute__((noinline)) static int guarded(void)
{
    volatile int reached = 0;
    __try1(filter)
        faulter(&reached);
        reached += 10;
    __except1
    return reached;
}

void __stdcall X64TryEntry(void)
{
    char detail[24];
    int got;
    if (!marker_set())
        ExitProcess(2);
    mode = 0;
    got = guarded();
    fmt_u64(detail, (unsigned long long)got);
    verdict("filter_continues_execution", got == 11 && filter_calls == 1, detail);
    mode = 1;
    got = guarded();
    fmt_u64(detail, (unsigned long long)got);
    verdict("except_block_after_unwind", got == 0 && filter_calls == 2, detail);
    verdict("filter_saw_access_violation", seen_code == EXCEPTION_ACCESS_VIOLATION, "");
    ExitProcess(0x700 + filter_calls);
}
