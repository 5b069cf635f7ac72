/* Regression sample: CryptGenRandom, RtlGenRandom (SystemFunction036) and BCryptGenRandom asked
 * for ~4 GB into a 16-byte buffer. Windows fails the call (or faults); the sample reports each
 * return value and exits 0. */
#include <windows.h>
#include "fidelity.h"

typedef BOOLEAN (WINAPI *rtl_gen_random_t)(PVOID, ULONG);
typedef LONG (WINAPI *bcrypt_gen_random_t)(PVOID, PUCHAR, ULONG, ULONG);

void __stdcall GenRandomEntry(void)
{
    static unsigned char small[16];
    char text[32];
    HMODULE advapi, bcrypt;
    if (!marker_set())
        ExitProcess(2);
    advapi = LoadLibraryA("advapi32.dll");
    bcrypt = LoadLibraryA("bcrypt.dll");
    fmt_u64(text, (unsigned long long)CryptGenRandom(0, 0xFFFFFFF0u, small));
    verdict("CryptGenRandom_huge_returned", 1, text);
    fmt_u64(text, ((rtl_gen_random_t)(void *)GetProcAddress(advapi, "SystemFunction036"))(small, 0xFFFFFFF0u));
    verdict("RtlGenRandom_huge_returned", 1, text);
    fmt_u64(text, (unsigned long)((bcrypt_gen_random_t)(void *)GetProcAddress(bcrypt, "BCryptGenRandom"))(NULL, small, 0xFFFFFFF0u, 2));
    verdict("BCryptGenRandom_huge_returned", 1, text);
    fmt_u64(text, (unsigned long long)CryptGenRandom(0, sizeof small, small));
    verdict("CryptGenRandom_small_returned", 1, text);
    ExitProcess(0);
}
