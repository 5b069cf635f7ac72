/*
 * benchwork.c - chainreplay benchmark sample (bench/run.py). Benign: it
 * encrypts a buffer it filled itself and calls a harmless API in a loop.
 *
 * INERT outside the emulator: every Run* export first calls
 * GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", ...) and returns 0 at once
 * unless the value is "replay-only".
 *
 * Built with -nostdlib; DllMain is the real entry point and makes no calls.
 *
 * Exports:
 *   void rc4_crypt(unsigned char *buf, size_t len,
 *                  const unsigned char *key, size_t keylen)
 *       RC4 (KSA + PRGA) in place. Makes no calls and touches nothing but
 *       its arguments and its stack, so bench/run.py runs it under bare
 *       Unicorn as well.
 *   DWORD RunRc4(void)          = RunRc4Size(1 MiB)
 *   DWORD RunRc4Size(size_t len)
 *       VirtualAlloc(len), fill with fill_byte(i), rc4_crypt with BENCH_KEY,
 *       FNV-1a over the little-endian 32-bit words of the result (a trailing
 *       partial word is ignored), OutputDebugStringA("benchwork: rc4
 *       checksum 0x%08x"), VirtualFree; returns the checksum. len is clamped
 *       to [0, 64 MiB].
 *   DWORD RunApiFlood(void)     = RunApiFloodCount(100000)
 *   DWORD RunApiFloodCount(DWORD n)
 *       n calls to GetCurrentThreadId (clamped to 10,000,000); returns the
 *       sum of the results.
 */
#include <windows.h>

#define RC4_DEFAULT_LEN (1024u * 1024u)
#define RC4_MAX_LEN (64u * 1024u * 1024u)
#define FLOOD_DEFAULT 100000u
#define FLOOD_MAX 10000000u

static const unsigned char BENCH_KEY[] = "chainreplay-bench-rc4";
#define BENCH_KEY_LEN (sizeof(BENCH_KEY) - 1)

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}

static int marker_present(void)
{
    static const char want[] = "replay-only";
    char buf[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", buf, sizeof(buf));
    DWORD i;
    if (n != sizeof(want) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

__declspec(dllexport) __attribute__((noinline)) void rc4_crypt(
    unsigned char *buf, size_t len, const unsigned char *key, size_t keylen)
{
    unsigned char S[256];
    unsigned int i, j;
    size_t n;
    unsigned char t;

    if (keylen == 0)
        return;
    for (i = 0; i < 256; i++)
        S[i] = (unsigned char)i;
    for (i = 0, j = 0; i < 256; i++) {
        j = (j + S[i] + key[i % keylen]) & 0xff;
        t = S[i]; S[i] = S[j]; S[j] = t;
    }
    i = j = 0;
    for (n = 0; n < len; n++) {
        i = (i + 1) & 0xff;
        j = (j + S[i]) & 0xff;
        t = S[i]; S[i] = S[j]; S[j] = t;
        buf[n] ^= S[(S[i] + S[j]) & 0xff];
    }
}

/* The plaintext RunRc4Size encrypts: byte i of the buffer. */
static unsigned char fill_byte(size_t i)
{
    return (unsigned char)(i * 7u + (i >> 8) * 13u);
}

static void put_hex32(char *out, DWORD v)
{
    static const char digits[] = "0123456789abcdef";
    int k;
    for (k = 0; k < 8; k++)
        out[k] = digits[(v >> (28 - 4 * k)) & 0xf];
}

__declspec(dllexport) DWORD RunRc4Size(size_t len)
{
    static const char prefix[] = "benchwork: rc4 checksum 0x";
    char line[sizeof(prefix) + 8];
    unsigned char *buf;
    DWORD sum = 0x811c9dc5u;
    size_t i, k;

    if (!marker_present())
        return 0;
    if (len > RC4_MAX_LEN)
        len = RC4_MAX_LEN;
    buf = (unsigned char *)VirtualAlloc(NULL, len ? len : 1, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (buf == NULL)
        return 0;
    for (i = 0; i < len; i++)
        buf[i] = fill_byte(i);
    rc4_crypt(buf, len, BENCH_KEY, BENCH_KEY_LEN);
    for (i = 0; i + 4 <= len; i += 4) {
        DWORD w = (DWORD)buf[i] | ((DWORD)buf[i + 1] << 8) | ((DWORD)buf[i + 2] << 16) | ((DWORD)buf[i + 3] << 24);
        sum ^= w;
        sum *= 0x01000193u;
    }
    for (k = 0; k < sizeof(prefix) - 1; k++)
        line[k] = prefix[k];
    put_hex32(line + k, sum);
    line[k + 8] = '\0';
    OutputDebugStringA(line);
    VirtualFree(buf, 0, MEM_RELEASE);
    return sum;
}

__declspec(dllexport) DWORD RunRc4(void)
{
    return RunRc4Size(RC4_DEFAULT_LEN);
}

__declspec(dllexport) DWORD RunApiFloodCount(DWORD n)
{
    DWORD acc = 0, i;

    if (!marker_present())
        return 0;
    if (n > FLOOD_MAX)
        n = FLOOD_MAX;
    for (i = 0; i < n; i++)
        acc += GetCurrentThreadId();
    return acc;
}

__declspec(dllexport) DWORD RunApiFlood(void)
{
    return RunApiFloodCount(FLOOD_DEFAULT);
}
