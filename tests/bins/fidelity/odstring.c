/* OutputDebugString raises DBG_PRINTEXCEPTION_C / DBG_PRINTEXCEPTION_WIDE_C that the process's
 * vectored handlers see when no debugger is attached (an anti-debug check registers one and
 * counts on it), then returns as usual. x64 and x86; one verdict per check, printed after the
 * handler is removed (the verdicts are OutputDebugStringA calls themselves). */
#include "fidelity.h"

static volatile LONG seen_narrow, seen_wide, continue_wide, other;
static ULONG_PTR narrow_params[4], wide_params[4];
static DWORD narrow_count, wide_count;
static char narrow_text[64];

static LONG CALLBACK vectored(EXCEPTION_POINTERS *info)
{
    EXCEPTION_RECORD *r = info->ExceptionRecord;
    if (r->ExceptionCode == DBG_PRINTEXCEPTION_C) {
        seen_narrow++;
        narrow_count = r->NumberParameters;
        for (DWORD i = 0; i < 2 && i < r->NumberParameters; i++) narrow_params[i] = r->ExceptionInformation[i];
        if (r->NumberParameters >= 2 && r->ExceptionInformation[1]) {
            const char *s = (const char *)r->ExceptionInformation[1];
            int n = 0;
            while (s[n] && n < 63) { narrow_text[n] = s[n]; n++; }
            narrow_text[n] = 0;
        }
        return EXCEPTION_CONTINUE_SEARCH;
    }
    if (r->ExceptionCode == DBG_PRINTEXCEPTION_WIDE_C) {
        seen_wide++;
        wide_count = r->NumberParameters;
        for (DWORD i = 0; i < 4 && i < r->NumberParameters; i++) wide_params[i] = r->ExceptionInformation[i];
        return continue_wide ? EXCEPTION_CONTINUE_EXECUTION : EXCEPTION_CONTINUE_SEARCH;
    }
    other++;
    return EXCEPTION_CONTINUE_SEARCH;
}

static const char narrow[] = "narrow text";
static const WCHAR wide[] = L"wide text";
static volatile LONG rounds;

void __stdcall OdStringEntry(void)
{
    PVOID handle;
    int ok[6];
    if (!marker_set())
        ExitProcess(2);
    handle = AddVectoredExceptionHandler(1, vectored);

    OutputDebugStringA(narrow);
    ok[0] = seen_narrow == 1 && narrow_count == 2 && narrow_params[0] == sizeof narrow &&
            narrow_params[1] == (ULONG_PTR)narrow;

    seen_narrow = 0;
    OutputDebugStringW(wide);
    ok[1] = seen_wide == 1 && wide_count == 4 && wide_params[0] == sizeof wide / sizeof(WCHAR) &&
            wide_params[1] == (ULONG_PTR)wide && wide_params[2] == sizeof "wide text";
    /* unhandled by a debugger, the W call prints the ANSI copy: the narrow exception follows */
    ok[2] = seen_narrow == 1 && narrow_count == 2 && str_eq_i(narrow_text, "wide text") &&
            narrow_params[1] == wide_params[3];

    /* a handler that continues the wide exception: no narrow one after it */
    seen_narrow = seen_wide = 0;
    continue_wide = 1;
    OutputDebugStringW(wide);
    continue_wide = 0;
    ok[3] = seen_wide == 1 && seen_narrow == 0;

    /* the same call site many times, nothing in the registers changing: each one is seen */
    seen_narrow = 0;
    while (rounds < 8) {
        GetCurrentProcessId(); /* the loop's count out of the registers: each call's state is the same */
        OutputDebugStringA(narrow);
        rounds = rounds + 1;
    }
    ok[4] = seen_narrow == 8;
    ok[5] = other == 0;

    RemoveVectoredExceptionHandler(handle);
    seen_narrow = 0;
    OutputDebugStringA(narrow); /* no handler left: nothing raised to anyone */
    verdict("narrow_raised_to_vectored", ok[0], "");
    verdict("wide_raised_to_vectored", ok[1], "");
    verdict("wide_then_narrow_copy", ok[2], "");
    verdict("continued_wide_not_printed", ok[3], "");
    verdict("one_site_many_times", ok[4], "");
    verdict("no_other_exception", ok[5], "");
    ExitProcess(0x100 + ok[0] + ok[1] + ok[2] + ok[3] + ok[4] + ok[5] + (seen_narrow ? 0x80 : 0));
}
