/* hostile.c - odd and hostile API inputs (tests/test_bad_inputs_guest.py). The case to run is the
 * last word of the command line; each reports with OutputDebugStringA. Inert without
 * CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

int __cdecl sprintf(char *, const char *, ...);
int __cdecl _snprintf(char *, size_t, const char *, ...);
typedef int(__cdecl *scprintf_t)(const char *, ...);
struct ustring { DWORD length; DWORD maximum; PVOID buffer; };
typedef LONG (WINAPI *rc4_t)(struct ustring *, const struct ustring *);

static char text[4096];
static char line[600];

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

static PTP_WAIT rearm_wait;
static HANDLE rearm_event;
static long rearm_count;

static VOID CALLBACK rearm(PTP_CALLBACK_INSTANCE instance, PVOID context, PTP_WAIT wait, TP_WAIT_RESULT result)
{
    (void)instance; (void)context; (void)result;
    rearm_count++;
    SetThreadpoolWait(wait, rearm_event, NULL);
}

static VOID CALLBACK tick(HWND hwnd, UINT msg, UINT_PTR id, DWORD time)
{
    (void)hwnd; (void)msg; (void)time;
    rearm_count++;
    SetTimer(NULL, id, 0, tick);
}

static const char *case_name(void)
{
    const char *cmd = GetCommandLineA(), *last = cmd;
    for (const char *p = cmd; *p; p++)
        if (*p == ' ') last = p + 1;
    return last;
}

static void find_all(const char *pattern)
{
    WIN32_FIND_DATAA data;
    HANDLE h = FindFirstFileA(pattern, &data);
    long long n = 0;
    if (h != INVALID_HANDLE_VALUE) {
        n = 1;
        while (n < 100000 && FindNextFileA(h, &data))
            n++;
        FindClose(h);
    }
    say(pattern, h == INVALID_HANDLE_VALUE ? -(long long)GetLastError() : n);
}

#ifdef _WIN64
void __stdcall HostileEntry(void)
#else
void __stdcall HostileEntry32(void)
#endif
{
    const char *name;
    if (!marker_set())
        ExitProcess(1);
    name = case_name();
    if (str_eq_i(name, "width")) {
        say("width", sprintf(text, "%999999999d", 1));
    } else if (str_eq_i(name, "precision")) {
        scprintf_t p = (scprintf_t)(void *)GetProcAddress(LoadLibraryA("msvcrt.dll"), "_scprintf");
        say("precision_f", p("%.999999999f", 1.0));
        say("precision_d", p("%.999999999d", 1));
        say("star", p("%*d", 0x7fffffff, 1));
    } else if (str_eq_i(name, "snwidth")) {
        say("snwidth", _snprintf(text, 16, "%999999999d", 1));
    } else if (str_eq_i(name, "many")) {
        static char fmt[20002];
        for (int i = 0; i < 10000; i++) { fmt[2 * i] = '%'; fmt[2 * i + 1] = 'c'; }
        say("many", sprintf(text, fmt, 'a'));
    } else if (str_eq_i(name, "badptr")) {
        say("badptr", sprintf(text, "[%s]", (char *)0x41414141));
        OutputDebugStringA(text);
    } else if (str_eq_i(name, "percent_n")) {
        int count = 77;
        say("percent_n", sprintf(text, "abc%n", &count));
        say("count", count);
    } else if (str_eq_i(name, "unterminated")) {
        char *page = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        for (int i = 0; i < 4096; i++) page[i] = 'A';
        page[4094] = '%';
        page[4095] = 'd';
        say("unterminated", wsprintfA(text, page + 4000, 5));
    } else if (str_eq_i(name, "find")) {
        find_all("");
        find_all("C:");
        find_all("\\\\?\\C:\\*");
        find_all("C:\\Windows\\System32\\*");
        find_all("..\\..\\*");
        find_all("C:\\*\\*");
        find_all("*");
        find_all("C:\\nope\\*");
    } else if (str_eq_i(name, "relative")) {
        WIN32_FIND_DATAA data;
        HANDLE h;
        say("mkdir_rel", CreateDirectoryA("made", NULL));
        say("attr_abs", GetFileAttributesA("C:\\Users\\analyst\\Desktop\\made") == FILE_ATTRIBUTE_DIRECTORY);
        say("attr_rel", GetFileAttributesA("..\\Desktop\\made") == FILE_ATTRIBUTE_DIRECTORY);
        h = FindFirstFileA("*", &data);
        if (h != INVALID_HANDLE_VALUE) {
            do say(data.cFileName, (data.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0);
            while (FindNextFileA(h, &data));
            FindClose(h);
        }
        h = FindFirstFileA("\\Users\\*", &data);
        if (h != INVALID_HANDLE_VALUE) {
            do say(data.cFileName, 2);
            while (FindNextFileA(h, &data));
            FindClose(h);
        }
    } else if (str_eq_i(name, "longdir")) {
        static char path[40000];
        int n = 0;
        path[n++] = 'C'; path[n++] = ':';
        while (n < 39000) { path[n++] = '\\'; for (int i = 0; i < 200; i++) path[n++] = 'd'; }
        path[n] = 0;
        say("longdir", CreateDirectoryA(path, NULL) ? 1 : -(long long)GetLastError());
        HANDLE f = CreateFileA("C:\\Users\\Public\\afile.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
        CloseHandle(f);
        say("filedir", CreateDirectoryA("C:\\Users\\Public\\afile.txt", NULL) ? 1 : -(long long)GetLastError());
        say("underfile", CreateDirectoryA("C:\\Users\\Public\\afile.txt\\sub", NULL) ? 1 : -(long long)GetLastError());
    } else if (str_eq_i(name, "rc4")) {
        rc4_t f = (rc4_t)(void *)GetProcAddress(LoadLibraryA("advapi32.dll"), "SystemFunction032");
        static char data[16] = "0123456789abcdef";
        struct ustring key = {4, 4, "keyk"}, d0 = {0, 16, data}, dh = {0xffffffff, 0xffffffff, data},
                       dn = {16, 16, NULL}, k0 = {0, 0, NULL};
        say("rc4_zero", f(&d0, &key));
        say("rc4_huge", f(&dh, &key));
        say("rc4_null", f(&dn, &key));
        say("rc4_nokey", f(&d0, &k0));
        say("rc4_nullstruct", f(NULL, NULL));
    } else if (str_eq_i(name, "rc4big") || str_eq_i(name, "rc4loop")) {
        rc4_t f = (rc4_t)(void *)GetProcAddress(LoadLibraryA("advapi32.dll"), "SystemFunction032");
        DWORD size = 64 * 1024 * 1024;
        char *big = VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        struct ustring key = {4, 4, "keyk"}, d = {size, size, big};
        int rounds = str_eq_i(name, "rc4loop") ? 20 : 1;
        for (int r = 0; r < rounds; r++)
            say("rc4big", f(&d, &key));
    } else if (str_eq_i(name, "tpstorm")) {
        rearm_event = CreateEventA(NULL, TRUE, TRUE, NULL);
        rearm_wait = CreateThreadpoolWait(rearm, NULL, NULL);
        SetThreadpoolWait(rearm_wait, rearm_event, NULL);
        Sleep(1000000);
        say("tpstorm", rearm_count);
    } else if (str_eq_i(name, "timerstorm")) {
        MSG msg;
        SetTimer(NULL, 0, 0, tick);
        while (GetMessageA(&msg, NULL, 0, 0) > 0)
            DispatchMessageA(&msg);
        say("timerstorm", rearm_count);
    } else if (str_eq_i(name, "patch")) {
        unsigned char *fn = (unsigned char *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "Beep");
        DWORD old;
        for (int i = 0; i < 5000; i++) {
            VirtualProtect(fn + (i % 64), 1, PAGE_EXECUTE_READWRITE, &old);
            fn[i % 64] = (unsigned char)(fn[i % 64] ^ 0x5a);
            VirtualProtect(fn + (i % 64), 1, old, &old);
        }
        say("patched", 5000);
    } else if (str_eq_i(name, "patchspread")) {
        unsigned char *base = (unsigned char *)GetModuleHandleA("kernel32.dll");
        IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
        IMAGE_SECTION_HEADER *s = IMAGE_FIRST_SECTION(nt);
        unsigned char *code = base + s->VirtualAddress;
        DWORD size = s->Misc.VirtualSize, old;
        VirtualProtect(code, size, PAGE_EXECUTE_READWRITE, &old);
        for (DWORD i = 0; i < size && i < 64 * 5000; i += 64)
            code[i] ^= 0x5a;
        VirtualProtect(code, size, old, &old);
        say("spread", size);
    } else if (str_eq_i(name, "protect")) {
        unsigned char *base = (unsigned char *)GetModuleHandleA("kernel32.dll");
        IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
        DWORD old;
        say("protect", VirtualProtect(base, nt->OptionalHeader.SizeOfImage, PAGE_READWRITE, &old));
        say("tick", GetTickCount() > 0);
    } else if (str_eq_i(name, "ntdll")) {
        static char buf[65536];
        long long total = 0;
        for (int i = 0; i < 1000; i++) {
            HANDLE f = CreateFileA("C:\\Windows\\System32\\ntdll.dll", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
            DWORD got = 0;
            if (f == INVALID_HANDLE_VALUE) { say("ntdll_open", -(long long)GetLastError()); break; }
            ReadFile(f, buf, sizeof buf, &got, NULL);
            total += got;
            CloseHandle(f);
        }
        say("ntdll", total);
    } else if (str_eq_i(name, "self")) {
        char me[MAX_PATH];
        STARTUPINFOA si = {0};
        PROCESS_INFORMATION pi;
        si.cb = sizeof si;
        GetModuleFileNameA(NULL, me, sizeof me);
        say("self", CreateProcessA(me, (char *)"hostile self", NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    } else if (str_eq_i(name, "child")) {
        STARTUPINFOA si = {0};
        PROCESS_INFORMATION pi;
        si.cb = sizeof si;
        say("child", CreateProcessA("C:\\Users\\Public\\child.exe", NULL, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    } else if (str_eq_i(name, "ctlname")) {
        STARTUPINFOA si = {0};
        PROCESS_INFORMATION pi;
        si.cb = sizeof si;
        say("ctlname", CreateProcessA("C:\\Users\\Public\\a\x1b[31mred\x07.exe", NULL, NULL, NULL, FALSE, 0, NULL,
                                      NULL, &si, &pi));
    } else if (str_eq_i(name, "regvalues")) {
        HKEY key;
        char vname[256];
        BYTE data[256];
        DWORD nlen, dlen, type, i;
        say("open", RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", 0, KEY_READ, &key));
        dlen = sizeof data - 1;
        say("query", RegQueryValueExA(key, "ProductName", NULL, &type, data, &dlen));
        data[dlen < sizeof data ? dlen : sizeof data - 1] = 0;
        say((char *)data, dlen);
        for (i = 0; i < 100000; i++) {
            nlen = sizeof vname;
            dlen = sizeof data;
            if (RegEnumValueA(key, i, vname, &nlen, NULL, &type, data, &dlen) != ERROR_SUCCESS)
                break;
            say(vname, type);
        }
        say("values", i);
    } else if (str_eq_i(name, "regenum")) {
        HKEY key;
        char vname[64];
        BYTE data[64];
        DWORD nlen = sizeof vname, dlen = sizeof data, type;
        say("open", RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", 0, KEY_READ, &key));
        say("bad_index", RegEnumValueA(key, 0xffffffff, vname, &nlen, NULL, &type, data, &dlen));
        nlen = sizeof vname;
        say("null_name", RegEnumValueA(key, 0, NULL, &nlen, NULL, &type, data, &dlen));
        say("null_len", RegEnumValueA(key, 0, vname, NULL, NULL, &type, data, &dlen));
        nlen = 0;
        say("zero_len", RegEnumValueA(key, 0, vname, &nlen, NULL, &type, data, &dlen));
        nlen = sizeof vname;
        say("bad_key", RegEnumValueA((HKEY)(ULONG_PTR)0x1234, 0, vname, &nlen, NULL, &type, data, &dlen));
        nlen = sizeof vname;
        say("bad_data", RegEnumValueA(key, 0, vname, &nlen, NULL, &type, (BYTE *)0x41414141, &dlen));
    }
    say("done", 1);
    ExitProcess(0);
}
