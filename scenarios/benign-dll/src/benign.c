/*
 * benign.c - chainreplay negative-control sample: a DLL that does nothing
 * suspicious. One stage, no network, no files, no dynamic code.
 *
 * INERT outside the emulator: Compute first calls
 * GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", ...) and returns -1 unless
 * the value is L"replay-only".
 *
 * Built with -nostdlib; DllMain is the real entry point and makes no calls.
 *
 * Export:  int WINAPI Compute(int n)
 *   GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32);
 *   GetTickCount; GetCurrentThreadId;
 *   a small checksum loop over 0..n-1 (pure arithmetic, no calls; n is
 *   clamped to [0, 4096] so that garbage arguments, e.g. Speakeasy's
 *   all_entrypoints placeholders, cannot make it spin);
 *   OutputDebugStringA("benign: done");
 *   returns the checksum (a pure function of n; tick/tid are not mixed in).
 */
#include <windows.h>

#define COMPUTE_MAX_N 4096

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}

static int marker_present(void)
{
    static const WCHAR want[] = L"replay-only";
    WCHAR buf[32];
    DWORD n = GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32);
    DWORD i;
    if (n != (sizeof(want) / sizeof(want[0])) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

__declspec(dllexport) int WINAPI Compute(int n)
{
    unsigned int sum = 0x811c9dc5u; /* FNV-1a over the little-endian bytes of 0..n-1 */
    DWORD tick, tid;
    int i, b;

    if (!marker_present())
        return -1;

    tick = GetTickCount();
    tid = GetCurrentThreadId();
    (void)tick; (void)tid;

    if (n < 0)
        n = 0;
    if (n > COMPUTE_MAX_N)
        n = COMPUTE_MAX_N;
    for (i = 0; i < n; i++) {
        for (b = 0; b < 4; b++) {
            sum ^= ((unsigned int)i >> (8 * b)) & 0xffu;
            sum *= 0x01000193u;
        }
    }

    OutputDebugStringA("benign: done");
    return (int)(sum & 0x7fffffff);
}
