/*
 * loader.c - generality suite: file -> CryptoAPI RC4 (CryptDecrypt) -> new allocation -> call.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\update.dat, derives an RC4 key from the MD5 of a
 * passphrase (CryptAcquireContextA, CryptCreateHash, CryptHashData, CryptDeriveKey), decrypts
 * the file in its read buffer with CryptDecrypt, copies the plaintext into a new
 * PAGE_EXECUTE_READWRITE allocation and calls it. The stage writes
 * C:\Users\Public\lineage_rc4.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 crypto, 4 memory.
 */
#include "common.h"
#include <wincrypt.h>

static unsigned char g_buf[0x4000];

void Entry(void)
{
    static struct sc_ctx ctx;
    static const char pass[] = "chainreplay-demo-passphrase";
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    HANDLE f;
    DWORD got = 0, len, i;
    HCRYPTPROV prov;
    HCRYPTHASH hash;
    HCRYPTKEY key;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\update.dat", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(f, g_buf, sizeof(g_buf), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(f);
    if (!CryptAcquireContextA(&prov, 0, 0, PROV_RSA_FULL, CRYPT_VERIFYCONTEXT))
        ExitProcess(3);
    if (!CryptCreateHash(prov, CALG_MD5, 0, 0, &hash) || !CryptHashData(hash, (const BYTE *)pass, sizeof(pass) - 1, 0))
        ExitProcess(3);
    if (!CryptDeriveKey(prov, CALG_RC4, hash, 128u << 16, &key))
        ExitProcess(3);
    len = got;
    if (!CryptDecrypt(key, 0, TRUE, 0, g_buf, &len))
        ExitProcess(3);
    CryptDestroyKey(key);
    CryptDestroyHash(hash);
    CryptReleaseContext(prov, 0);
    mem = (unsigned char *)VirtualAlloc(0, len, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < len; i++)
        mem[i] = g_buf[i];
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_rc4.txt", "decrypted with CryptoAPI RC4\n");
    ((entry_t)(void *)mem)(&ctx);
    ExitProcess(0);
}
