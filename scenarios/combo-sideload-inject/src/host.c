/*
 * host.c - combo-sideload-inject: the signed-looking program a DLL is side-loaded into (benign,
 * emulator-only; see ../../lineage-common/common.h). Imports version.dll
 * (GetFileVersionInfoSizeW) and asks it about its own file, as an updater does, then waits a
 * little and exits. A version.dll planted beside it runs first.
 * Exit codes: 0, 1 no marker.
 */
#include "common.h"

void Entry(void)
{
    static WCHAR self[MAX_PATH];
    DWORD handle = 0;
    if (!marker_present())
        ExitProcess(1);
    GetModuleFileNameW(0, self, MAX_PATH);
    GetFileVersionInfoSizeW(self, &handle);
    Sleep(500);
    ExitProcess(0);
}
