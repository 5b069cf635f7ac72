/* Shared helpers of the fidelity samples: the sandbox marker check and a verdict line.
 * Every sample does nothing unless CHAINREPLAY_SANDBOX=replay-only (only the emulator sets it). */
#ifndef FIDELITY_H
#define FIDELITY_H
#include <windows.h>

static __attribute__((unused)) int marker_set(void)
{
    static const char want[] = "replay-only";
    char value[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", value, sizeof value);
    if (n != sizeof want - 1)
        return 0;
    for (DWORD i = 0; i < n; i++)
        if (value[i] != want[i])
            return 0;
    return 1;
}

static char line_buf[512];

/* OutputDebugStringA("check NAME: pass|FAIL DETAIL"): each verdict is one API call in the report. */
static __attribute__((unused)) void verdict(const char *name, int ok, const char *detail)
{
    int n = 0;
    const char *p;
    for (p = "check "; *p; p++) line_buf[n++] = *p;
    for (p = name; *p && n < 200; p++) line_buf[n++] = *p;
    for (p = ok ? ": pass" : ": FAIL"; *p; p++) line_buf[n++] = *p;
    if (detail && *detail) {
        line_buf[n++] = ' ';
        for (p = detail; *p && n < 500; p++) line_buf[n++] = *p;
    }
    line_buf[n] = 0;
    OutputDebugStringA(line_buf);
}

static __attribute__((unused)) int str_eq_i(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y) return 0;
    }
    return *a == *b;
}

static __attribute__((unused)) int str_has_i(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        const char *h = hay, *n = needle;
        for (; *h && *n; h++, n++) {
            char x = *h, y = *n;
            if (x >= 'A' && x <= 'Z') x += 32;
            if (y >= 'A' && y <= 'Z') y += 32;
            if (x != y) break;
        }
        if (!*n) return 1;
    }
    return 0;
}

static __attribute__((unused)) void fmt_u64(char *out, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *out++ = tmp[--n];
    *out = 0;
}
#endif
