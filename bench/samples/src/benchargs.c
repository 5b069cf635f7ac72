/*
 * benchargs.c - chainreplay benchmark sample (bench/dispatch.py). Benign: it
 * calls harmless APIs with parameters in a loop.
 *
 * INERT outside the emulator: the Run* export first calls
 * GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", ...) and returns 0 at once
 * unless the value is "replay-only".
 *
 * Built with -nostdlib; DllMain is the real entry point and makes no calls.
 *
 * Exports:
 *   DWORD RunArgFloodCount(DWORD n)
 *       n rounds (clamped to 1,000,000) of: VirtualProtect of the caller's
 *       own 4 KiB scratch page to PAGE_READWRITE (a flags/enum parameter, an
 *       out pointer), WaitForSingleObject(the current process pseudo-handle,
 *       0) (a handle and an integer; the handle from GetCurrentProcess),
 *       SetLastError(i) and GetLastError(). Five API calls per round, four each with parameters rendered for the
 *       trace; nothing is allocated, so the guest's memory map stays the
 *       same size. Returns the sum of the GetLastError results.
 */
#include <windows.h>

#define ARGFLOOD_MAX 1000000u

static unsigned char scratch[8192] __attribute__((aligned(4096)));

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}

static int marker_present(void)
{
    static const char want[] = "replay-only";
    char buf[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", buf, sizeof(buf));
    DWORD i;
    if (n != sizeof(want) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

__declspec(dllexport) DWORD RunArgFloodCount(DWORD n)
{
    DWORD acc = 0, i, old;

    if (!marker_present())
        return 0;
    if (n > ARGFLOOD_MAX)
        n = ARGFLOOD_MAX;
    for (i = 0; i < n; i++) {
        VirtualProtect(scratch, 4096, PAGE_READWRITE, &old);
        WaitForSingleObject(GetCurrentProcess(), 0);
        SetLastError(i & 0xFF);
        acc += GetLastError();
    }
    return acc;
}
