/*
 * loader.c - generality suite: three ways of reading an environment variable other than
 * GetEnvironmentVariable -> base64 -> rolling XOR -> RW memory -> RX -> called, one stage each.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Stage 1: the C runtime's getenv("CACHE_A") (msvcrt, resolved with GetProcAddress).
 * Stage 2: ExpandEnvironmentStringsW(L"%CACHE_B%") into a wide buffer on the stack.
 * Stage 3: the CACHE_C=... entry of the block GetEnvironmentStringsW returns (names compared
 *          without case, as Windows looks them up).
 * Each value is base64 text (set by the scenario's [environment]) of the payload XORed with a
 * rolling key of its own; it is decoded with CryptStringToBinaryA/W onto the stack, XORed into
 * a new PAGE_READWRITE allocation, made PAGE_EXECUTE_READ and called (each stage runs before the
 * next variable is read). The stages
 * (../../lineage-common/payload.c) write C:\Users\Public\lineage_env_{getenv,expand,block}.txt.
 * Exit codes: 0 ok, 1 no marker, 2 variable, 3 base64, 4 memory.
 */
#include "common.h"
#include <wincrypt.h>

typedef char *(__cdecl *getenv_t)(const char *);

typedef void (*stage_t)(struct sc_ctx *);

static void run(const BYTE *raw, DWORD n, DWORD k0, DWORD step, const char *path, const char *text)
{
    static struct sc_ctx ctx;
    unsigned char *mem;
    DWORD i, old;

    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = raw[i] ^ (unsigned char)(k0 + i * step);
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, path, text);
    ((stage_t)(void *)mem)(&ctx);
}

static int same_name(const WCHAR *entry, const WCHAR *name)
{
    for (; *name; entry++, name++) {
        WCHAR a = *entry, b = *name;
        if (a >= L'a' && a <= L'z')
            a -= L'a' - L'A';
        if (a != b)
            return 0;
    }
    return *entry == L'=';
}

void Entry(void)
{
    static WCHAR wide[4096];
    BYTE raw[4096];
    DWORD n, cb;
    HMODULE crt;
    getenv_t p_getenv;
    const char *value;
    WCHAR *block, *entry;

    if (!marker_present())
        ExitProcess(1);

    /* 1: getenv */
    crt = LoadLibraryA("msvcrt.dll");
    p_getenv = crt ? (getenv_t)(void *)GetProcAddress(crt, "getenv") : 0;
    value = p_getenv ? p_getenv("CACHE_A") : 0;
    if (!value)
        ExitProcess(2);
    n = sizeof(raw);
    if (!CryptStringToBinaryA(value, 0, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    run(raw, n, 0x21, 3, "C:\\Users\\Public\\lineage_env_getenv.txt", "read with getenv\n");

    /* 2: ExpandEnvironmentStringsW */
    cb = ExpandEnvironmentStringsW(L"%CACHE_B%", wide, sizeof(wide) / sizeof(wide[0]));
    if (cb < 2 || cb > sizeof(wide) / sizeof(wide[0]))
        ExitProcess(2);
    n = sizeof(raw);
    if (!CryptStringToBinaryW(wide, cb - 1, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    run(raw, n, 0x5a, 7, "C:\\Users\\Public\\lineage_env_expand.txt", "read with ExpandEnvironmentStrings\n");

    /* 3: GetEnvironmentStringsW */
    block = GetEnvironmentStringsW();
    if (!block)
        ExitProcess(2);
    for (entry = block; *entry; entry += lstrlenW(entry) + 1)
        if (same_name(entry, L"CACHE_C"))
            break;
    if (!*entry)
        ExitProcess(2);
    n = sizeof(raw);
    if (!CryptStringToBinaryW(entry + 8, 0, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    FreeEnvironmentStringsW(block);
    run(raw, n, 0x93, 13, "C:\\Users\\Public\\lineage_env_block.txt", "read with GetEnvironmentStrings\n");
    ExitProcess(0);
}
