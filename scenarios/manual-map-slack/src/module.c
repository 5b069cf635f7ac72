/*
 * module.c - the DLL manual-map-slack's loader maps by hand (benign, emulator-only).
 * Imports from kernel32 (resolved by the loader), relocations (it is mapped elsewhere than its
 * preferred base). DllMain, on DLL_PROCESS_ATTACH and only when CHAINREPLAY_SANDBOX=replay-only,
 * writes C:\Users\Public\lineage_manualmap.txt.
 */
#include "common.h"

const char *g_text = "DllMain ran in a hand-mapped image\n"; /* a pointer: a base relocation */

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    HANDLE h;
    DWORD written, len;
    (void)inst;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return TRUE;
    h = CreateFileA("C:\\Users\\Public\\lineage_manualmap.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (h != INVALID_HANDLE_VALUE) {
        for (len = 0; g_text[len]; len++)
            ;
        WriteFile(h, g_text, len, &written, 0);
        CloseHandle(h);
    }
    return TRUE;
}
