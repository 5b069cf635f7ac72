/*
 * checker.c - generality suite negative control: network and files, no dynamic code.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\settings.ini, GETs
 * http://updates.example-cdn.net/version.txt with WinINet and writes the answer to
 * C:\Users\Public\lineage_version.txt. Nothing it reads or fetches is ever executed.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 network.
 */
#include "common.h"
#include <wininet.h>

static unsigned char g_buf[0x1000];

void Entry(void)
{
    HANDLE f;
    HINTERNET net, url;
    DWORD got = 0, total = 0, written;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\settings.ini", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !ReadFile(f, g_buf, sizeof(g_buf), &got, 0))
        ExitProcess(2);
    CloseHandle(f);
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://updates.example-cdn.net/version.txt", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        ExitProcess(3);
    while (total < sizeof(g_buf) && InternetReadFile(url, g_buf + total, sizeof(g_buf) - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    f = CreateFileA("C:\\Users\\Public\\lineage_version.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, g_buf, total, &written, 0))
        ExitProcess(2);
    CloseHandle(f);
    ExitProcess(0);
}
