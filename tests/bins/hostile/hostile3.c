/* hostile3.c - hostile arguments to session 32's new APIs (tests/test_bad_inputs_new_apis.py):
 * XPRESS streams, NtContinue contexts, APC floods, DPAPI blobs, adapters, Winsock, the disk,
 * waits on many or closed threads, script hosts' encoded commands. The case is the last word of
 * the command line; each result is printed with OutputDebugStringA as name=value. Inert without
 * CHAINREPLAY_SANDBOX. */
#include <winsock2.h>
#include "../fidelity/fidelity.h"
#include <iphlpapi.h>
#include <wincrypt.h>
#include <winioctl.h>

typedef LONG (WINAPI *decompress_t)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG);
typedef LONG (WINAPI *ntcontinue_t)(PCONTEXT, BOOLEAN);

static char line[600];
static unsigned char in[4096];
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

static decompress_t decompressor(void)
{
    return (decompress_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "RtlDecompressBuffer");
}

static VOID CALLBACK apc(ULONG_PTR param) { (void)param; apc_count++; }
static DWORD WINAPI quick(LPVOID param) { return (DWORD)(ULONG_PTR)param; }
static void landed(void) { say("landed", 1); ExitProcess(7); }

static void xpress_cases(const char *name)
{
    decompress_t rtl = decompressor();
    ULONG final = 12345;
    unsigned char *out = VirtualAlloc(NULL, 1 << 20, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    LONG status;
    int i;
    if (str_eq_i(name, "xp_huge")) {
        /* a literal, then one match of length 0xFFFFFFF0 at offset 1 (a run), into a 1 MiB
         * buffer said to be 4 GB: Windows writes until the buffer ends and faults */
        DWORD flags = 0x40000000u; /* bit 31: literal; bit 30: match */
        unsigned char *p = in;
        *(DWORD *)p = flags; p += 4;
        *p++ = 'A';
        *p++ = 7; *p++ = 0;     /* offset 1, length 7: longer */
        *p++ = 15;              /* half byte 15: a byte follows */
        *p++ = 255;             /* 255: 16 bits follow */
        *p++ = 0; *p++ = 0;     /* 0: 32 bits follow */
        *(DWORD *)p = 0xFFFFFFF0u; p += 4;
        status = rtl(COMPRESSION_FORMAT_XPRESS, out, 0xFFFFFFFFu, in, (ULONG)(p - in), &final);
        say("xp_huge_status", (long long)(unsigned long)status);
        say("xp_huge_final", final);
    } else if (str_eq_i(name, "xp_fit")) {
        /* the same run into the 1 MiB it really has */
        unsigned char *p = in;
        *(DWORD *)p = 0x40000000u; p += 4;
        *p++ = 'A';
        *p++ = 7; *p++ = 0; *p++ = 15; *p++ = 255; *p++ = 0; *p++ = 0;
        *(DWORD *)p = 0xFFFFFFF0u; p += 4;
        status = rtl(COMPRESSION_FORMAT_XPRESS, out, 1 << 20, in, (ULONG)(p - in), &final);
        say("xp_fit_status", (long long)(unsigned long)status);
        say("xp_fit_final", final);
        say("xp_fit_last", out[(1 << 20) - 1]);
    } else if (str_eq_i(name, "xp_before")) {
        /* a match before the start of the output */
        *(DWORD *)in = 0x80000000u;
        in[4] = (unsigned char)(9 << 3); in[5] = 0;
        status = rtl(COMPRESSION_FORMAT_XPRESS, out, 4096, in, 6, &final);
        say("xp_before", (long long)(unsigned long)status);
        /* Huffman: every symbol 1 bit long (not a prefix code) */
        for (i = 0; i < 256; i++) in[i] = 0x11;
        for (i = 256; i < 300; i++) in[i] = 0;
        status = rtl(COMPRESSION_FORMAT_XPRESS_HUFF, out, 4096, in, 300, &final);
        say("xh_not_prefix", (long long)(unsigned long)status);
        /* truncated: half a table */
        status = rtl(COMPRESSION_FORMAT_XPRESS_HUFF, out, 4096, in, 100, &final);
        say("xh_truncated", (long long)(unsigned long)status);
        /* every symbol 9 bits (a complete code), a stream of zero bits, 4 GB of output */
        for (i = 0; i < 256; i++) in[i] = 0x99;
        for (i = 256; i < 4096; i++) in[i] = 0;
        status = rtl(COMPRESSION_FORMAT_XPRESS_HUFF, out, 0xFFFFFFFFu, in, 4096, &final);
        say("xh_zeros", (long long)(unsigned long)status);
        say("xh_zeros_final", final);
        /* unmapped input, unmapped final size */
        status = rtl(COMPRESSION_FORMAT_XPRESS, out, 4096, (PUCHAR)0x1000, 64, &final);
        say("xp_unmapped_in", (long long)(unsigned long)status);
    } else if (str_eq_i(name, "xp_unmapped_final")) {
        *(DWORD *)in = 0; in[4] = 'A';
        status = rtl(COMPRESSION_FORMAT_XPRESS, out, 4096, in, 5, (PULONG)0x1000);
        say("xp_unmapped_final", (long long)(unsigned long)status);
    }
}

static void ntcontinue_cases(const char *name)
{
    ntcontinue_t nt = (ntcontinue_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtContinue");
    static CONTEXT ctx;
    LONG status;
    if (str_eq_i(name, "ntc_unmapped")) {
        status = nt((PCONTEXT)0x1000, FALSE);
        say("ntc_unmapped", (long long)(unsigned long)status);
    } else if (str_eq_i(name, "ntc_wildsp")) {
        RtlCaptureContext(&ctx);
        ctx.ContextFlags = CONTEXT_FULL;
#ifdef _WIN64
        ctx.Rip = (DWORD64)(ULONG_PTR)landed;
        ctx.Rsp = 0x10;
#else
        ctx.Eip = (DWORD)(ULONG_PTR)landed;
        ctx.Esp = 0x10;
#endif
        status = nt(&ctx, FALSE);
        say("ntc_wildsp", (long long)(unsigned long)status);
#ifdef _WIN64
    } else if (str_eq_i(name, "ntc_restore")) {
        RtlRestoreContext((PCONTEXT)0x1000, NULL); /* x64 only, from kernel32 as mingw binds it */
        say("ntc_restore", 1);
#endif
    } else if (str_eq_i(name, "ntc_wildpc")) {
        RtlCaptureContext(&ctx);
        ctx.ContextFlags = CONTEXT_FULL;
#ifdef _WIN64
        ctx.Rip = 0xDEAD0000ULL;
#else
        ctx.Eip = 0xDEAD0000u;
#endif
        status = nt(&ctx, FALSE);
        say("ntc_wildpc", (long long)(unsigned long)status);
    }
}

static void apc_flood(long count)
{
    long i, queued = 0;
    DWORD woke;
    for (i = 0; i < count; i++)
        queued += QueueUserAPC(apc, GetCurrentThread(), (ULONG_PTR)i) != 0;
    say("queued", queued);
    woke = SleepEx(0, TRUE);
    say("sleepex", woke);
    say("ran", apc_count);
}

static void dpapi_cases(void)
{
    DATA_BLOB plain, blob, out, bad;
    static unsigned char copy[2048];
    DWORD i;
    plain.pbData = (BYTE *)"payload bytes"; plain.cbData = 13;
    say("protect", CryptProtectData(&plain, L"d", NULL, NULL, NULL, 0, &blob));
    for (i = 0; i < blob.cbData && i < sizeof(copy); i++) copy[i] = blob.pbData[i];
    bad.pbData = copy; bad.cbData = 30;
    say("truncated", CryptUnprotectData(&bad, NULL, NULL, NULL, NULL, 0, &out));
    say("truncated_error", GetLastError());
    /* the description length field: 0x7FFFFFF0 */
    bad.cbData = blob.cbData;
    *(DWORD *)(copy + 40) = 0x7FFFFFF0u;
    say("wrong_length", CryptUnprotectData(&bad, NULL, NULL, NULL, NULL, 0, &out));
    say("wrong_length_error", GetLastError());
    bad.pbData = copy; bad.cbData = 0;
    say("empty", CryptUnprotectData(&bad, NULL, NULL, NULL, NULL, 0, &out));
    say("empty_error", GetLastError());
    say("null_in", CryptUnprotectData(NULL, NULL, NULL, NULL, NULL, 0, &out));
    say("null_in_error", GetLastError());
    say("null_out", CryptUnprotectData(&blob, NULL, NULL, NULL, NULL, 0, NULL));
    say("null_out_error", GetLastError());
    say("good", CryptUnprotectData(&blob, NULL, NULL, NULL, NULL, 0, &out));
    say("good_size", out.cbData);
    bad.pbData = (BYTE *)0x1000; bad.cbData = 100;
    say("unmapped", CryptUnprotectData(&bad, NULL, NULL, NULL, NULL, 0, &out));
    say("unmapped_error", GetLastError());
}

static void adapter_cases(void)
{
    static unsigned char buf[8192];
    ULONG size = 1;
    say("aa_small", GetAdaptersAddresses(AF_UNSPEC, 0, NULL, (PIP_ADAPTER_ADDRESSES)buf, &size));
    say("aa_needed", size);
    say("aa_fits", GetAdaptersAddresses(AF_UNSPEC, 0, NULL, (PIP_ADAPTER_ADDRESSES)buf, &size));
    size = 0;
    say("aa_null", GetAdaptersAddresses(AF_INET, 0, NULL, NULL, &size));
    say("aa_null_needed", size);
    say("aa_null_size", GetAdaptersAddresses(AF_INET, 0, NULL, (PIP_ADAPTER_ADDRESSES)buf, NULL));
    say("aa_family", GetAdaptersAddresses(0x1234, 0, NULL, (PIP_ADAPTER_ADDRESSES)buf, &size));
    size = 1;
    say("ai_small", GetAdaptersInfo((PIP_ADAPTER_INFO)buf, &size));
    say("ai_needed", size);
    say("ai_fits", GetAdaptersInfo((PIP_ADAPTER_INFO)buf, &size));
    say("ai_null_size", GetAdaptersInfo((PIP_ADAPTER_INFO)buf, NULL));
    size = 0;
    say("ai_null", GetAdaptersInfo(NULL, &size));
    say("ai_null_needed", size);
}

static void wsa_cases(void)
{
    WSADATA wsa;
    SOCKET s;
    DWORD got = 77, flags = 0;
    WSABUF one;
    char data[16];
    say("startup", WSAStartup(MAKEWORD(2, 2), &wsa));
    s = WSASocketA(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0);
    say("socket_ok", s != INVALID_SOCKET);
    say("recv_null", WSARecv(s, NULL, 1, &got, &flags, NULL, NULL));
    say("recv_null_error", WSAGetLastError());
    say("recv_zero", WSARecv(s, NULL, 0, &got, &flags, NULL, NULL));
    say("recv_zero_error", WSAGetLastError());
    one.buf = data; one.len = sizeof(data);
    say("recv_huge_count", WSARecv(s, &one, 0x7FFFFFFF, &got, &flags, NULL, NULL));
    say("recv_huge_count_error", WSAGetLastError());
    say("send_null", WSASend(s, NULL, 1, &got, 0, NULL, NULL));
    say("send_null_error", WSAGetLastError());
    one.buf = (char *)0x1000; one.len = 0x7FFFFFFF;
    say("send_unmapped", WSASend(s, &one, 1, &got, 0, NULL, NULL));
    say("send_unmapped_error", WSAGetLastError());
    say("recv_bad_socket", WSARecv((SOCKET)0x12345, &one, 1, &got, &flags, NULL, NULL));
    say("recv_bad_socket_error", WSAGetLastError());
    closesocket(s);
    say("done", 1);
}

static void disk_cases(void)
{
    static unsigned char out[4096];
    DWORD got = 77;
    STORAGE_PROPERTY_QUERY query;
    HANDLE disk = CreateFileA("\\\\.\\PhysicalDrive0", 0, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL);
    say("open", disk != INVALID_HANDLE_VALUE);
    say("geo_tiny", DeviceIoControl(disk, IOCTL_DISK_GET_DRIVE_GEOMETRY, NULL, 0, out, 1, &got, NULL));
    say("geo_tiny_error", GetLastError());
    say("geo_null", DeviceIoControl(disk, IOCTL_DISK_GET_DRIVE_GEOMETRY, NULL, 0, NULL, 0, &got, NULL));
    say("geo_null_error", GetLastError());
    say("len_tiny", DeviceIoControl(disk, IOCTL_DISK_GET_LENGTH_INFO, NULL, 0, out, 4, &got, NULL));
    say("len_tiny_error", GetLastError());
    query.PropertyId = StorageDeviceProperty; query.QueryType = PropertyStandardQuery;
    got = 77;
    say("prop_tiny", DeviceIoControl(disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, sizeof(query), out, 4, &got, NULL));
    say("prop_tiny_error", GetLastError());
    say("prop_tiny_got", got);
    got = 77;
    say("prop_header", DeviceIoControl(disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, sizeof(query), out, 8, &got, NULL));
    say("prop_header_got", got);
    say("prop_header_size", *(DWORD *)(out + 4));
    say("prop_short_in", DeviceIoControl(disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, 2, out, sizeof(out), &got, NULL));
    say("prop_short_in_error", GetLastError());
    say("prop_unmapped_out", DeviceIoControl(disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, sizeof(query), (LPVOID)0x1000, 4096, &got, NULL));
    say("prop_unmapped_out_error", GetLastError());
    say("unknown_ioctl", DeviceIoControl(disk, 0x00DEAD00, NULL, 0, out, sizeof(out), &got, NULL));
    say("unknown_ioctl_error", GetLastError());
    CloseHandle(disk);
    say("done", 1);
}

static void thread_cases(void)
{
    static HANDLE handles[1000];
    int i, done = 0;
    DWORD code;
    for (i = 0; i < 1000; i++)
        handles[i] = CreateThread(NULL, 0, quick, (LPVOID)(ULONG_PTR)i, 0, NULL);
    for (i = 0; i < 1000; i++)
        done += WaitForSingleObject(handles[i], INFINITE) == WAIT_OBJECT_0;
    say("waited", done);
    code = 12345; GetExitCodeThread(handles[1], &code);
    say("code1", code);
    code = 12345; GetExitCodeThread(handles[63], &code);
    say("code63", code);
    code = 12345; GetExitCodeThread(handles[64], &code);
    say("code64", code);
    code = 12345; GetExitCodeThread(handles[500], &code);
    say("code500", code);
    code = 12345; GetExitCodeThread(handles[998], &code);
    say("code998", code);
    code = 12345; GetExitCodeThread(handles[999], &code);
    say("code999", code);
    for (i = 0; i < 1000; i++)
        CloseHandle(handles[i]);
    SetLastError(0);
    say("null_wait", WaitForSingleObject(NULL, INFINITE));
    say("null_wait_error", GetLastError());
    handles[7] = NULL;
    SetLastError(0);
    say("null_many", WaitForMultipleObjects(8, handles, FALSE, INFINITE));
    say("null_many_error", GetLastError());
    say("closed_wait", WaitForSingleObject(handles[5], INFINITE));
    say("closed_wait_error", GetLastError());
    say("closed_many", WaitForMultipleObjects(64, handles, TRUE, INFINITE));
    say("closed_many_error", GetLastError());
    say("done", 1);
}

static void thread_flood(void)
{
    int i, made = 0;
    DWORD error = 0;
    HANDLE h;
    for (i = 0; i < 1100; i++) {
        h = CreateThread(NULL, 0, quick, (LPVOID)(ULONG_PTR)i, 0, NULL);
        if (h)
            made++;
        else if (!error)
            error = GetLastError();
    }
    say("made", made);
    say("error", error);
}

static char cmd[1100000];

static void ps_case(const char *what)
{
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    const char *head = "powershell.exe -NoProfile -EncodedCommand ";
    int n = 0, i;
    for (i = 0; head[i]; i++) cmd[n++] = head[i];
    if (str_eq_i(what, "ps_huge")) {
        for (i = 0; i < 1 << 20; i++) cmd[n++] = "SQBFAFgA"[i & 7];
    } else if (str_eq_i(what, "ps_longest")) {
        for (i = 0; n < 32766; i++) cmd[n++] = "SQBFAFgA"[i & 7]; /* 32766 characters: the most */
    } else if (str_eq_i(what, "ps_invalid")) {
        const char *bad = "SQBF!!AFgA*&^%";
        for (i = 0; bad[i]; i++) cmd[n++] = bad[i];
    } else {
        const char *odd = "SQBFAFg"; /* "IEX" less a byte: odd-length UTF-16 */
        for (i = 0; odd[i]; i++) cmd[n++] = odd[i];
    }
    cmd[n] = 0;
    for (i = 0; i < (int)sizeof(si); i++) ((char *)&si)[i] = 0;
    si.cb = sizeof(si);
    say("created", CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    say("created_error", GetLastError());
    say("done", 1);
}

#ifdef _WIN64
void __stdcall Hostile3Entry(void)
#else
void __stdcall Hostile3Entry32(void)
#endif
{
    const char *name;
    if (!marker_set())
        ExitProcess(1);
    name = case_name();
    if (name[0] == 'x' && name[1] == 'p')
        xpress_cases(name);
    else if (name[0] == 'n' && name[1] == 't')
        ntcontinue_cases(name);
    else if (str_eq_i(name, "apc_flood"))
        apc_flood(20000);
    else if (str_eq_i(name, "apc_flood_max"))
        apc_flood(100000);
    else if (str_eq_i(name, "dpapi"))
        dpapi_cases();
    else if (str_eq_i(name, "adapters"))
        adapter_cases();
    else if (str_eq_i(name, "wsa"))
        wsa_cases();
    else if (str_eq_i(name, "disk"))
        disk_cases();
    else if (str_eq_i(name, "thread_flood"))
        thread_flood();
    else if (str_eq_i(name, "threads"))
        thread_cases();
    else if (name[0] == 'p' && name[1] == 's')
        ps_case(name);
    say("end", 1);
    ExitProcess(0);
}
