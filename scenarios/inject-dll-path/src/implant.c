/*
 * implant.c - the DLL inject-dll-path's injector drops and has notepad load (benign,
 * emulator-only). DllMain, on DLL_PROCESS_ATTACH and only when CHAINREPLAY_SANDBOX=replay-only,
 * writes C:\Users\Public\lineage_dllinject.txt.
 */
#include "common.h"

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    static const char text[] = "DllMain ran in the injected process\n";
    HANDLE h;
    DWORD written;
    (void)inst;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return TRUE;
    h = CreateFileA("C:\\Users\\Public\\lineage_dllinject.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (h != INVALID_HANDLE_VALUE) {
        WriteFile(h, text, sizeof(text) - 1, &written, 0);
        CloseHandle(h);
    }
    return TRUE;
}
