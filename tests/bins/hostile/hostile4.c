/* hostile4.c - hostile arguments to session 33's new APIs (tests/test_bad_inputs_probes4.py):
 * completion routines (SetWaitableTimer, ReadFileEx), registered waits, COM's WinHttpRequest and
 * the SAFEARRAY calls, fiber-local storage callbacks, window procedures. The case is the last
 * word of the command line; each result is printed with OutputDebugStringA as name=value. Inert
 * without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"
#include <oleauto.h>

static char line[600];
static volatile long apc_count;

static void say(const char *what, long long value)
{
    char num[24];
    int n = 0;
    const char *p;
    for (p = what; *p && n < 500; p++) line[n++] = *p;
    line[n++] = '=';
    if (value < 0) { line[n++] = '-'; value = -value; }
    fmt_u64(num, (unsigned long long)value);
    for (p = num; *p; p++) line[n++] = *p;
    line[n] = 0;
    OutputDebugStringA(line);
}

static const char *case_name(void)
{
    const char *cmd = GetCommandLineA(), *last = cmd;
    for (const char *p = cmd; *p; p++)
        if (*p == ' ') last = p + 1;
    return last;
}

static void CALLBACK count_timer(LPVOID arg, DWORD low, DWORD high)
{
    (void)arg; (void)low; (void)high;
    apc_count++;
}

static void CALLBACK count_read(DWORD error, DWORD bytes, LPOVERLAPPED ov)
{
    (void)error; (void)ov;
    apc_count += bytes;
}

static void CALLBACK count_fls(PVOID value)
{
    apc_count += (long)(ULONG_PTR)value;
}

static HANDLE open_self(void)
{
    char self[MAX_PATH];
    GetModuleFileNameA(0, self, sizeof(self));
    return CreateFileA(self, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, 0);
}

static void completion_cases(const char *name)
{
    static OVERLAPPED ov;
    static char buf[64];
    HANDLE file = open_self(), timer = CreateWaitableTimerW(0, FALSE, 0);
    LARGE_INTEGER due;
    int i;
    due.QuadPart = -1;
    if (str_eq_i(name, "readex_badbuf")) {
        ReadFileEx(file, (void *)0x10, 64, &ov, count_read);  /* faults in the call */
        return;
    }
    SetLastError(0);
    say("readex_nooverlapped", ReadFileEx(file, buf, 64, 0, count_read));
    say("readex_nooverlapped_error", GetLastError());
    ov.Offset = 0x7FFFFFF0;
    say("readex_eof", ReadFileEx(file, buf, 64, &ov, count_read));
    say("readex_eof_error", GetLastError());
    say("readex_badhandle", ReadFileEx((HANDLE)(ULONG_PTR)0x1234, buf, 64, &ov, count_read));
    say("readex_badhandle_error", GetLastError());
    ov.Offset = 0;
    say("readex_noroutine", ReadFileEx(file, buf, 16, &ov, 0));
    say("timer_baddue", SetWaitableTimer(timer, (LARGE_INTEGER *)0x10, 0, count_timer, 0, FALSE));
    say("timer_baddue_error", GetLastError());
    say("timer_badhandle", SetWaitableTimer((HANDLE)(ULONG_PTR)0x1234, &due, 0, count_timer, 0, FALSE));
    say("timer_badhandle_error", GetLastError());
    for (i = 0; i < 5000; i++)
        SetWaitableTimer(timer, &due, 0, count_timer, 0, FALSE);
    say("sleep", SleepEx(0, TRUE));
    say("apcs", apc_count);
    say("sleep_again", SleepEx(0, TRUE));
    SetLastError(0);
    say("regwait_null", RegisterWaitForSingleObject(0, timer, (WAITORTIMERCALLBACK)(void *)count_fls, 0, 0, 0));
    say("regwait_null_error", GetLastError());
    say("unregister_bad", UnregisterWait((HANDLE)(ULONG_PTR)0x1234));
    say("unregister_bad_error", GetLastError());
}

static const GUID CLSID_W = {0x2087c2f4, 0x2cef, 0x4953, {0xa8, 0xab, 0x66, 0x77, 0x9b, 0x67, 0x04, 0x95}};
static const GUID IID_W = {0x016fe2ec, 0xb2c8, 0x45f8, {0xb2, 0x3b, 0x39, 0xe5, 0x3a, 0x75, 0x39, 0x6b}};
static const GUID IID_Other = {0x12345678, 0x1234, 0x1234, {1, 2, 3, 4, 5, 6, 7, 8}};

typedef struct Req Req;
typedef struct {
    HRESULT (STDMETHODCALLTYPE *QueryInterface)(Req *, REFIID, void **);
    ULONG (STDMETHODCALLTYPE *AddRef)(Req *);
    ULONG (STDMETHODCALLTYPE *Release)(Req *);
    void *GetTypeInfoCount, *GetTypeInfo, *GetIDsOfNames, *Invoke, *SetProxy, *SetCredentials;
    HRESULT (STDMETHODCALLTYPE *Open)(Req *, BSTR, BSTR, VARIANT);
    void *SetRequestHeader, *GetResponseHeader, *GetAllResponseHeaders;
    HRESULT (STDMETHODCALLTYPE *Send)(Req *, VARIANT);
    HRESULT (STDMETHODCALLTYPE *get_Status)(Req *, LONG *);
    void *get_StatusText, *get_ResponseText;
    HRESULT (STDMETHODCALLTYPE *get_ResponseBody)(Req *, VARIANT *);
} ReqVtbl;
struct Req {
    const ReqVtbl *lpVtbl;
};

static void com_cases(void)
{
    Req *req = 0;
    void *other = (void *)1;
    VARIANT v, body;
    LONG status = -1;
    SAFEARRAY *sa;
    void *data = (void *)1;
    LONG bound = -1;
    CoInitializeEx(0, COINIT_MULTITHREADED);
    say("create", CoCreateInstance(&CLSID_W, 0, CLSCTX_INPROC_SERVER, &IID_W, (void **)&req));
    say("create_other_iid", CoCreateInstance(&CLSID_W, 0, CLSCTX_INPROC_SERVER, &IID_Other, &other));
    say("create_other_iid_out", (long long)(ULONG_PTR)other);
    say("qi_other", req->lpVtbl->QueryInterface(req, &IID_Other, &other));
    say("qi_other_out", (long long)(ULONG_PTR)other);
    VariantInit(&v);
    VariantInit(&body);
    say("status_before_open", req->lpVtbl->get_Status(req, &status));
    say("open_null", req->lpVtbl->Open(req, 0, 0, v));
    say("open_ftp", req->lpVtbl->Open(req, SysAllocString(L"GET"), SysAllocString(L"ftp://x.example/"), v));
    say("open", req->lpVtbl->Open(req, SysAllocString(L"GET"), SysAllocString(L"http://nowhere.invalid:99999/"), v));
    say("open_host", req->lpVtbl->Open(req, SysAllocString(L"GET"), SysAllocString(L"http://nowhere.invalid/a"), v));
    say("body_before_send", req->lpVtbl->get_ResponseBody(req, &body));
    say("send_unresolved", req->lpVtbl->Send(req, v));
    say("status_after_failed_send", req->lpVtbl->get_Status(req, &status));
    say("status_null", req->lpVtbl->get_Status(req, 0));
    say("release", req->lpVtbl->Release(req));
    say("sa_null", SafeArrayAccessData(0, &data));
    sa = (SAFEARRAY *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, 64);
    sa->cDims = 1;
    sa->rgsabound[0].cElements = 10;
    sa->rgsabound[0].lLbound = 5;
    say("sa_ubound", SafeArrayGetUBound(sa, 1, &bound));
    say("sa_ubound_value", bound);
    say("sa_dim2", SafeArrayGetUBound(sa, 2, &bound));
    say("sa_lbound_null", SafeArrayGetLBound(sa, 1, 0));
    say("strlen_null", SysStringLen(0));
}

static void fls_cases(void)
{
    DWORD empty = FlsAlloc(0), slot = FlsAlloc(count_fls), unset = FlsAlloc(count_fls);
    FlsSetValue(empty, (void *)7);
    say("free_empty", FlsFree(empty));
    FlsSetValue(slot, (void *)5);
    say("free", FlsFree(slot));
    say("free_again", FlsFree(slot));
    say("free_unset", FlsFree(unset));
    say("calls", apc_count);
}

static LRESULT CALLBACK count_wnd(HWND w, UINT m, WPARAM wp, LPARAM lp)
{
    (void)w; (void)wp; (void)lp;
    apc_count += m == WM_USER ? 100 : 1;
    return 1;
}

static void window_cases(void)
{
    WNDCLASSA wc = {0};
    HWND w;
    SetLastError(0);
    say("register_null", RegisterClassA(0));
    say("register_null_error", GetLastError());
    wc.lpfnWndProc = 0;
    wc.lpszClassName = "NoProc";
    say("register_noproc", RegisterClassA(&wc) != 0);
    say("create_noproc", CreateWindowExA(0, "NoProc", "", 0, 0, 0, 0, 0, 0, 0, 0, 0) != 0);
    wc.lpfnWndProc = count_wnd;
    wc.lpszClassName = "Counted";
    say("register", RegisterClassA(&wc) != 0);
    w = CreateWindowExA(0, "counted", "", 0, (int)CW_USEDEFAULT, 0, -5, 0, 0, 0, 0, 0);
    say("created_calls", apc_count);
    say("send", SendMessageA(w, WM_USER, 0, 0));
    say("send_calls", apc_count);
    say("send_unknown", SendMessageA((HWND)(ULONG_PTR)0x4321, WM_USER, 0, 0));
    say("subclass_zero", SetWindowLongPtrA(w, GWLP_WNDPROC, 0) == (LONG_PTR)count_wnd);
    say("send_after_zero", SendMessageA(w, WM_USER, 0, 0));
    say("calls", apc_count);
}

#ifdef _WIN64
void __stdcall Hostile4Entry(void)
#else
void __stdcall Hostile4Entry32(void)
#endif
{
    const char *name;
    if (!marker_set())
        ExitProcess(1);
    name = case_name();
    if (str_eq_i(name, "completion") || str_eq_i(name, "readex_badbuf"))
        completion_cases(name);
    else if (str_eq_i(name, "com"))
        com_cases();
    else if (str_eq_i(name, "fls"))
        fls_cases();
    else if (str_eq_i(name, "windows"))
        window_cases();
    say("end", 1);
    ExitProcess(0);
}
