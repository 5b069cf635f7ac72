/* advapi32's undocumented ciphers as loaders call them (tests/test_evasion.py): SystemFunction032
 * and SystemFunction033 (RC4 in place over a USTRING, the key a USTRING) against RC4's published
 * test vector (key "Key", "Plaintext" -> bbf316e8d940af0ad3) and each other, bad arguments
 * refused with STATUS_INVALID_PARAMETER; SystemFunction040 / SystemFunction041
 * (RtlEncryptMemory / RtlDecryptMemory) change the bytes and restore them, and refuse a size not a
 * multiple of 8. One verdict line per check (fidelity.h); exits with the number of failures.
 * Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

struct ustring {
    DWORD Length;
    DWORD MaximumLength;
    PVOID Buffer;
};
typedef LONG (WINAPI *rc4_t)(struct ustring *, const struct ustring *);
typedef LONG (WINAPI *memory_t)(PVOID, ULONG, ULONG);
#define STATUS_INVALID_PARAMETER_T ((LONG)0xC000000D)

static int failures;

static void check(const char *name, int ok)
{
    verdict(name, ok, "");
    if (!ok)
        failures++;
}

static int same(const unsigned char *a, const unsigned char *b, DWORD n)
{
    DWORD i;
    for (i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

#ifdef _WIN64
void __stdcall CiphersEntry(void)
#else
void __stdcall Ciphers32Entry(void)
#endif
{
    static const unsigned char vector[9] = {0xbb, 0xf3, 0x16, 0xe8, 0xd9, 0x40, 0xaf, 0x0a, 0xd3};
    static unsigned char text[] = "Plaintext";
    static unsigned char key_bytes[] = "Key";
    static unsigned char secret[16] = "sixteen byte msg";
    unsigned char copy[16];
    struct ustring data, key, empty;
    HMODULE advapi32;
    rc4_t sf032, sf033;
    memory_t encrypt, decrypt;
    DWORD i;

    if (!marker_set())
        ExitProcess(0x100);
    advapi32 = LoadLibraryA("advapi32.dll");
    sf032 = (rc4_t)(void *)GetProcAddress(advapi32, "SystemFunction032");
    sf033 = (rc4_t)(void *)GetProcAddress(advapi32, "SystemFunction033");
    encrypt = (memory_t)(void *)GetProcAddress(advapi32, "SystemFunction040");
    decrypt = (memory_t)(void *)GetProcAddress(advapi32, "SystemFunction041");
    if (!sf032 || !sf033 || !encrypt || !decrypt)
        ExitProcess(0x200);
    data.Length = data.MaximumLength = 9;
    data.Buffer = text;
    key.Length = key.MaximumLength = 3;
    key.Buffer = key_bytes;
    check("rc4_vector", sf032(&data, &key) == 0 && same(text, vector, 9));
    check("rc4_033_undoes", sf033(&data, &key) == 0 && same(text, (const unsigned char *)"Plaintext", 9));
    empty.Length = empty.MaximumLength = 0;
    empty.Buffer = key_bytes;
    check("rc4_empty_key", sf032(&data, &empty) == STATUS_INVALID_PARAMETER_T &&
                               same(text, (const unsigned char *)"Plaintext", 9));
    for (i = 0; i < 16; i++)
        copy[i] = secret[i];
    check("encrypt_memory", encrypt(secret, 16, 0) == 0 && !same(secret, copy, 16));
    check("decrypt_memory", decrypt(secret, 16, 0) == 0 && same(secret, copy, 16));
    check("memory_size_multiple_of_8", encrypt(secret, 12, 0) == STATUS_INVALID_PARAMETER_T && same(secret, copy, 16));
    ExitProcess(failures);
}
