/*
 * hello.c - tiny, benign test DLL for chainreplay's foundation tests.
 *
 * Harmless by construction (it only writes a greeting to
 * C:\Users\Public\greeting.txt), so it skips the CHAINREPLAY_SANDBOX marker.
 *
 * Built with -nostdlib: DllMain is the real entry point and makes no calls.
 *
 * Export:  int WINAPI Greet(const char *name, int times)
 *   GetCurrentProcessId; lstrlenA(name); GetTickCount;
 *   CreateFileW(L"C:\\Users\\Public\\greeting.txt", GENERIC_WRITE, 0, NULL,
 *               CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
 *   WriteFile(h, "hello, <name>\n" x times, ...);   (one call)
 *   CloseHandle(h);
 *   returns the number of bytes written (-1 if CreateFileW failed).
 */
#include <windows.h>

#define GREET_BUF 1024

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}

__declspec(dllexport) int WINAPI Greet(const char *name, int times)
{
    static const char prefix[] = "hello, ";
    char buf[GREET_BUF];
    DWORD pid, tick, written = 0;
    int nlen, len = 0, i, j;
    HANDLE h;

    pid = GetCurrentProcessId();
    nlen = lstrlenA(name);
    tick = GetTickCount();
    (void)pid; (void)tick;

    for (i = 0; i < times; i++) {
        if (len + (int)sizeof(prefix) - 1 + nlen + 1 > GREET_BUF)
            break;
        for (j = 0; prefix[j]; j++)
            buf[len++] = prefix[j];
        for (j = 0; j < nlen; j++)
            buf[len++] = name[j];
        buf[len++] = '\n';
    }

    h = CreateFileW(L"C:\\Users\\Public\\greeting.txt", GENERIC_WRITE, 0, NULL,
                    CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return -1;
    WriteFile(h, buf, (DWORD)len, &written, NULL);
    CloseHandle(h);
    return (int)written;
}
