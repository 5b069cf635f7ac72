/* Regression sample: %TEMP% as GetTempPathA/W return it, plus a file name, as droppers do.
 * Windows ends the path with a backslash, so the files are ...\Temp\a.dll and ...\Temp\w.dll. */
#include "fidelity.h"

static char path_a[MAX_PATH + 16];
static WCHAR path_w[MAX_PATH + 16];

void __stdcall TempPathEntry(void)
{
    DWORD n, written;
    HANDLE h;
    if (!marker_set())
        ExitProcess(2);
    n = GetTempPathA(MAX_PATH, path_a);
    path_a[n] = 'a'; path_a[n + 1] = '.'; path_a[n + 2] = 'd'; path_a[n + 3] = 'l'; path_a[n + 4] = 'l'; path_a[n + 5] = 0;
    h = CreateFileA(path_a, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    WriteFile(h, "A", 1, &written, NULL);
    CloseHandle(h);
    n = GetTempPathW(MAX_PATH, path_w);
    path_w[n] = L'w'; path_w[n + 1] = L'.'; path_w[n + 2] = L'd'; path_w[n + 3] = L'l'; path_w[n + 4] = L'l'; path_w[n + 5] = 0;
    h = CreateFileW(path_w, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    WriteFile(h, "W", 1, &written, NULL);
    CloseHandle(h);
    ExitProcess(0);
}
