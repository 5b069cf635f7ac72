/* formats.c - the printf family as Windows formats it (tests/test_apigaps.py). Each case formats
 * into a buffer with one of user32's wsprintfA/W or msvcrt's sprintf/_snprintf/swprintf/vsprintf
 * and reports the text with OutputDebugStringA/W ("fmt NAME: TEXT"); the test compares the text
 * with what the Microsoft format specification gives. Inert without CHAINREPLAY_SANDBOX. */
#include <stdarg.h>
#include "../fidelity/fidelity.h"

int __cdecl sprintf(char *, const char *, ...);
int __cdecl _snprintf(char *, size_t, const char *, ...);
int __cdecl _snwprintf(wchar_t *, size_t, const wchar_t *, ...);
int __cdecl vsprintf(char *, const char *, va_list);
/* The secure and legacy functions are taken from msvcrt.dll by name, as a program built with
 * another toolchain imports them (mingw-w64 wraps them in stubs of its own). */
typedef int(__cdecl *vscprintf_t)(const char *, va_list);
typedef int(__cdecl *sprintf_s_t)(char *, size_t, const char *, ...);
typedef int(__cdecl *swprintf_t)(wchar_t *, const wchar_t *, ...);
static vscprintf_t p_vscprintf;

static char out[600];
static wchar_t wout[300];

static void emit(const char *name, const char *text)
{
    int n = 0;
    const char *p;
    for (p = "fmt "; *p; p++) out[n++] = *p;
    for (p = name; *p; p++) out[n++] = *p;
    out[n++] = ':';
    out[n++] = ' ';
    for (p = text; *p && n < 590; p++) out[n++] = *p;
    out[n] = 0;
    OutputDebugStringA(out);
}

static char text[300];

static int length_of(const char *fmt, ...)
{
    int n;
    va_list ap;
    va_start(ap, fmt);
    n = p_vscprintf(fmt, ap);
    va_end(ap);
    return n;
}

static void via_vsprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsprintf(text, fmt, ap);
    va_end(ap);
}

#ifdef _WIN64
void __stdcall FormatsEntry(void)
#else
void __stdcall FormatsEntry32(void)
#endif
{
    static wchar_t wide_text[] = L"wide";
    unsigned long long big = 0x123456789abcdef0ULL;
    int n;
    if (!marker_set())
        ExitProcess(1);
    wsprintfA(text, "%d %d etw=%lu amsi=%lx", 1, -1, 7UL, 0x80070057UL);
    emit("wsprintfA_long", text);
    wsprintfA(text, "[%5d|%-5d|%05u|%x|%X|%c|%s|%S|%ls|%hs]", 42, 42, 42u, 0xbeef, 0xbeef, 'Q', "narrow", wide_text,
              wide_text, "narrow");
    emit("wsprintfA_mix", text);
    wsprintfW(wout, L"%s=%d %S", L"key", -7, "ansi");
    OutputDebugStringW(wout);
    sprintf(text, "%I64u %I64x %llX %d", big, big, big, 5);
    emit("sprintf_i64", text);
    sprintf(text, "%*d|%-*s|%.*s|%.3s", 6, 7, 4, "ab", 2, "xyz", "abcdef");
    emit("sprintf_star", text);
    sprintf(text, "%hd %hhu %zu %Iu %p", 0x1ffff, 0x1ff, (size_t)77, (size_t)78, (void *)0x1234);
    emit("sprintf_sizes", text);
    sprintf(text, "%#x %#o %o %+d % d %%", 255, 8, 8, 3, 4);
    emit("sprintf_flags", text);
    sprintf(text, "%.2f %e %g", 3.14159, 1500.0, 0.5);
    emit("sprintf_float", text);
    _snprintf(text, sizeof text, "%s/%lu/%s", "host", 12345UL, "path");
    emit("snprintf", text);
    via_vsprintf("%s-%08lX-%I64d", "id", 0xabcUL, -2LL);
    emit("vsprintf", text);
    _snwprintf(wout, 100, L"%ls %hs %d", L"w", "n", 9);
    OutputDebugStringW(wout);
    for (int i = 0; i < 8; i++)
        text[i] = 'Z';
    text[8] = 0;
    n = _snprintf(text, 4, "%s", "abcdef");
    wsprintfA(text + 20, "%s %d", text, n);
    emit("snprintf_truncated", text + 20);
    HMODULE crt = GetModuleHandleA("msvcrt.dll");
    sprintf_s_t p_sprintf_s = (sprintf_s_t)(void *)GetProcAddress(crt, "sprintf_s");
    swprintf_t p_swprintf = (swprintf_t)(void *)GetProcAddress(crt, "_swprintf");
    p_vscprintf = (vscprintf_t)(void *)GetProcAddress(crt, "_vscprintf");
    n = p_sprintf_s(text, 300, "%s|%u", "s", 5u);
    wsprintfA(text + 20, "%s %d %d", text, n, length_of("%d-%s", 123, "ab"));
    emit("sprintf_s_vscprintf", text + 20);
    p_swprintf(wout, L"%d%%", 50);
    OutputDebugStringW(wout);
    ExitProcess(0);
}
