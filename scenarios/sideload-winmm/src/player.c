/*
 * player.c - generality suite: a program that loads winmm.dll at run time (benign, emulator-only;
 * see ../../lineage-common/common.h).
 *
 * LoadLibraryA("winmm.dll") by its bare name, then GetProcAddress of timeBeginPeriod and
 * timeGetTime, as a media program sets its timer resolution. Windows looks in the program's folder
 * first (winmm.dll is not a KnownDLL), so a winmm.dll planted there is the module it gets. Checks
 * that GetModuleHandleA and GetModuleHandleExA of "winmm.dll" name the same module, that
 * timeBeginPeriod(1) answers TIMERR_NOERROR and that timeGetTime gives a time, then writes
 * C:\Users\Public\sideload_player.txt.
 * Exit codes: 0 ok, 1 no marker, 2 LoadLibrary, 3 GetProcAddress, 4 answers, 5 file.
 */
#include "common.h"

typedef UINT (WINAPI *period_t)(UINT);
typedef DWORD (WINAPI *time_t_)(void);

void Entry(void)
{
    static const char text[] = "player: winmm.dll answered\n";
    HMODULE winmm, by_name = 0;
    period_t begin_period;
    time_t_ get_time;
    DWORD written;
    HANDLE h;

    if (!marker_present())
        ExitProcess(1);
    winmm = LoadLibraryA("winmm.dll");
    if (!winmm || GetModuleHandleA("winmm.dll") != winmm)
        ExitProcess(2);
    if (!GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, "winmm.dll", &by_name) || by_name != winmm)
        ExitProcess(2);
    begin_period = (period_t)(void *)GetProcAddress(winmm, "timeBeginPeriod");
    get_time = (time_t_)(void *)GetProcAddress(winmm, "timeGetTime");
    if (!begin_period || !get_time)
        ExitProcess(3);
    if (begin_period(1) != TIMERR_NOERROR || get_time() == 0)
        ExitProcess(4);
    h = CreateFileA("C:\\Users\\Public\\sideload_player.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL,
                    0);
    if (h == INVALID_HANDLE_VALUE)
        ExitProcess(5);
    WriteFile(h, text, sizeof(text) - 1, &written, 0);
    CloseHandle(h);
    ExitProcess(0);
}
