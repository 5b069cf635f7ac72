/*
 * loader.c - probe: drops the DLL it carries (../build/dll.h) to %TEMP%\svcmon.dll and loads it
 * (benign, emulator-only; see ../../lineage-common/common.h); the DLL's TLS callback and a thread
 * its DllMain starts run the payload. Exit codes: 0 ok, 1 no marker, 2 file, 3 load.
 */
#include "common.h"
#include "dll.h" /* svc_dll[]: the DLL's bytes */

void Entry(void)
{
    char path[MAX_PATH];
    DWORD n, written = 0;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    n = GetTempPathA(MAX_PATH - 16, path);
    if (n == 0)
        ExitProcess(2);
    copy_str(path + n, "svcmon.dll", 16);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, svc_dll, sizeof(svc_dll), &written, 0))
        ExitProcess(2);
    CloseHandle(f);
    if (!LoadLibraryA(path))
        ExitProcess(3);
    Sleep(100);
    ExitProcess(0);
}
