/*
 * module.c - combo-hollow-beacon: the module the C2 serves and the implant maps by hand (benign,
 * emulator-only; see ../../lineage-common/common.h). Its DllMain, given a path as lpReserved,
 * writes C:\Users\Public\combo_hollow_module.txt through its own imports.
 */
#include "common.h"

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    static const char text[] = "module mapped by hand in a hollowed svchost\n";
    DWORD written;
    HANDLE h;
    (void)inst;
    if (reason != DLL_PROCESS_ATTACH || !reserved || !marker_present())
        return TRUE;
    h = CreateFileA((const char *)reserved, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return FALSE;
    WriteFile(h, text, sizeof(text) - 1, &written, 0);
    CloseHandle(h);
    return TRUE;
}
