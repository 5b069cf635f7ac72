/*
 * dropper.c - probe: persistence set up through system programs and the registry for a file the
 * chain dropped, as 2023-2025 loaders do (benign, emulator-only; see
 * ../../lineage-common/common.h). Nothing here runs the dropped file: each mechanism would run it
 * later (at logon, at boot), which the replay says and does not emulate.
 *   1. writes %APPDATA%\SyncHost\synchost.exe (a stand-in body, not a program)
 *   2. WinExec("cmd.exe /c reg add HKCU\...\Run /v SyncHost /t REG_SZ /d \"<file>\" /f")
 *   3. CreateProcessA("schtasks.exe /create /f /sc onlogon /rl highest /tn \"SyncHost Update\" /tr \"\\\"<file>\\\" --update\"")
 *   4. CreateProcessA("sc.exe create SyncHostSvc binPath= \"<file> --service\" start= auto")
 *   5. RegSetValueExA(HKCU\...\RunOnce, "SyncHostSetup", "<file> --setup")
 *   6. CopyFileA(<file>, <Startup folder>\synchost.exe)
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 process, 4 registry.
 */
#include "common.h"
#include <shlobj.h>

static char g_file[MAX_PATH], g_cmd[1024];

static void append(char *dst, const char *src, int max)
{
    int n = 0, i;
    while (dst[n])
        n++;
    for (i = 0; src[i] && n < max - 1; i++)
        dst[n++] = src[i];
    dst[n] = 0;
}

static void start(const char *line)
{
    STARTUPINFOA si = {0};
    PROCESS_INFORMATION pi;
    si.cb = sizeof(si);
    copy_str(g_cmd, line, sizeof(g_cmd));
    if (!CreateProcessA(0, g_cmd, 0, 0, FALSE, CREATE_NO_WINDOW, 0, 0, &si, &pi))
        ExitProcess(3);
    WaitForSingleObject(pi.hProcess, 5000);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
}

void Entry(void)
{
    static const char body[] = "MZ stand-in: a benign placeholder for a dropped program\r\n";
    char dir[MAX_PATH], startup[MAX_PATH], line[1024];
    HANDLE h;
    HKEY key;
    DWORD written = 0, len;

    if (!marker_present())
        ExitProcess(1);
    if (FAILED(SHGetFolderPathA(0, CSIDL_APPDATA, 0, 0, dir)))
        ExitProcess(2);
    append(dir, "\\SyncHost", sizeof(dir));
    CreateDirectoryA(dir, 0);
    copy_str(g_file, dir, sizeof(g_file));
    append(g_file, "\\synchost.exe", sizeof(g_file));
    h = CreateFileA(g_file, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    WriteFile(h, body, sizeof(body) - 1, &written, 0);
    CloseHandle(h);

    line[0] = 0;
    append(line, "cmd.exe /c reg add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v SyncHost /t REG_SZ /d \"", sizeof(line));
    append(line, g_file, sizeof(line));
    append(line, "\" /f", sizeof(line));
    if (WinExec(line, SW_HIDE) < 32)
        ExitProcess(3);

    line[0] = 0;
    append(line, "schtasks.exe /create /f /sc onlogon /rl highest /tn \"SyncHost Update\" /tr \"\\\"", sizeof(line));
    append(line, g_file, sizeof(line));
    append(line, "\\\" --update\"", sizeof(line));
    start(line);

    line[0] = 0;
    append(line, "sc.exe create SyncHostSvc binPath= \"", sizeof(line));
    append(line, g_file, sizeof(line));
    append(line, " --service\" start= auto", sizeof(line));
    start(line);

    if (RegCreateKeyExA(HKEY_CURRENT_USER, "Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce", 0, 0, 0,
                        KEY_SET_VALUE, 0, &key, 0) != ERROR_SUCCESS)
        ExitProcess(4);
    line[0] = 0;
    append(line, g_file, sizeof(line));
    append(line, " --setup", sizeof(line));
    for (len = 0; line[len]; len++)
        ;
    RegSetValueExA(key, "SyncHostSetup", 0, REG_SZ, (const BYTE *)line, len + 1);
    RegCloseKey(key);

    if (SUCCEEDED(SHGetFolderPathA(0, CSIDL_STARTUP, 0, 0, startup))) {
        append(startup, "\\synchost.exe", sizeof(startup));
        CopyFileA(g_file, startup, FALSE);
    }
    ExitProcess(0);
}
