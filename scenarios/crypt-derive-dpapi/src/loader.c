/*
 * loader.c - probe: two CryptoAPI decryptions loaders of 2023-2025 use (benign, emulator-only;
 * see ../../lineage-common/common.h):
 *   s1 update.bin: AES-256-CBC with a key derived from a password the common way
 *      (CryptAcquireContextW PROV_RSA_AES + CryptCreateHash CALG_SHA_256 + CryptHashData +
 *      CryptDeriveKey CALG_AES_256 + CryptDecrypt Final) in place in RW memory -> RX -> called
 *                                                                       -> lineage_aes_derive.txt
 *   s2 cache.dat: a DPAPI blob an earlier run left (entropy "probe3") -> CryptUnprotectData ->
 *      copied into RW memory -> RX -> CreateThread                      -> lineage_dpapi.txt
 *   Before s2, a CryptProtectData / CryptUnprotectData round trip of a short text must agree.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 crypto, 4 memory, 5 round trip.
 */
#include "common.h"
#include <wincrypt.h>

typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);

static unsigned char g_buf[0x4000];
static struct sc_ctx c1, c2;

static DWORD read_file(const char *path)
{
    DWORD got = 0;
    HANDLE f = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(f, g_buf, sizeof(g_buf), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(f);
    return got;
}

void Entry(void)
{
    static const char password[] = "correct horse battery staple";
    static const char text[] = "round trip";
    static char entropy_text[] = "probe3";
    HCRYPTPROV prov;
    HCRYPTHASH hash;
    HCRYPTKEY key;
    DATA_BLOB in, out, back, entropy;
    DWORD size, old, i;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);

    size = read_file("C:\\ProgramData\\ChainreplayDemo\\update.bin");
    mem = (unsigned char *)VirtualAlloc(0, 0x2000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < size; i++)
        mem[i] = g_buf[i];
    if (!CryptAcquireContextW(&prov, 0, 0, PROV_RSA_AES, CRYPT_VERIFYCONTEXT))
        ExitProcess(3);
    if (!CryptCreateHash(prov, CALG_SHA_256, 0, 0, &hash))
        ExitProcess(3);
    if (!CryptHashData(hash, (const BYTE *)password, sizeof(password) - 1, 0))
        ExitProcess(3);
    if (!CryptDeriveKey(prov, CALG_AES_256, hash, 0, &key))
        ExitProcess(3);
    if (!CryptDecrypt(key, 0, TRUE, 0, mem, &size))
        ExitProcess(3);
    CryptDestroyKey(key);
    CryptDestroyHash(hash);
    CryptReleaseContext(prov, 0);
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&c1, "C:\\Users\\Public\\lineage_aes_derive.txt", "decrypted with a key from CryptDeriveKey\n");
    ((entry_t)(void *)mem)(&c1);

    in.pbData = (BYTE *)text;
    in.cbData = sizeof(text);
    if (!CryptProtectData(&in, L"probe", 0, 0, 0, 0, &out))
        ExitProcess(5);
    if (!CryptUnprotectData(&out, 0, 0, 0, 0, 0, &back) || back.cbData != sizeof(text))
        ExitProcess(5);
    for (i = 0; i < sizeof(text); i++)
        if (back.pbData[i] != (BYTE)text[i])
            ExitProcess(5);
    LocalFree(out.pbData);
    LocalFree(back.pbData);

    in.cbData = read_file("C:\\ProgramData\\ChainreplayDemo\\cache.dat");
    in.pbData = g_buf;
    entropy.pbData = (BYTE *)entropy_text;
    entropy.cbData = sizeof(entropy_text) - 1;
    if (!CryptUnprotectData(&in, 0, &entropy, 0, 0, CRYPTPROTECT_UI_FORBIDDEN, &out))
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, out.cbData, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < out.cbData; i++)
        mem[i] = out.pbData[i];
    if (!VirtualProtect(mem, out.cbData, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&c2, "C:\\Users\\Public\\lineage_dpapi.txt", "decrypted with CryptUnprotectData\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &c2, 0, 0);
    if (!thread)
        ExitProcess(4);
    ExitProcess(0);
}
