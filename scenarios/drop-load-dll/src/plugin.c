/*
 * plugin.c - the DLL that drop-load-dll's fetcher downloads and loads (benign, emulator-only).
 * Export PluginRun: unless CHAINREPLAY_SANDBOX=replay-only, returns 1; otherwise writes
 * C:\Users\Public\lineage_plugin.txt.
 */
#include "common.h"

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) DWORD WINAPI PluginRun(void)
{
    static const char text[] = "plugin loaded from %TEMP%\n";
    HANDLE h;
    DWORD written;
    if (!marker_present())
        return 1;
    h = CreateFileA("C:\\Users\\Public\\lineage_plugin.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return 2;
    WriteFile(h, text, sizeof(text) - 1, &written, 0);
    CloseHandle(h);
    return 0;
}
