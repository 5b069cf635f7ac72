/*
 * player.c - combo-apc-dns-x86: the program a DLL is side-loaded into at run time (benign,
 * emulator-only; see ../../lineage-common/common.h). LoadLibraryA("winmm.dll") by its bare name
 * (the application's folder comes first), timeBeginPeriod(1), timeGetTime twice (by
 * GetProcAddress), timeEndPeriod(1), as a media player sets its timer resolution.
 * Exit codes: 0 ok, 1 no marker, 2 winmm.
 */
#include "common.h"

typedef UINT (WINAPI *period_t)(UINT);
typedef DWORD (WINAPI *time_t_)(void);

void Entry(void)
{
    HMODULE winmm;
    period_t begin, end;
    time_t_ now;
    if (!marker_present())
        ExitProcess(1);
    winmm = LoadLibraryA("winmm.dll");
    if (!winmm)
        ExitProcess(2);
    begin = (period_t)(void *)GetProcAddress(winmm, "timeBeginPeriod");
    end = (period_t)(void *)GetProcAddress(winmm, "timeEndPeriod");
    now = (time_t_)(void *)GetProcAddress(winmm, "timeGetTime");
    if (!begin || !end || !now)
        ExitProcess(2);
    begin(1);
    now();
    now();
    end(1);
    ExitProcess(0);
}
