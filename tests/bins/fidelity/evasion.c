/* The anti-evasion catalogue: common sandbox, emulator and debugger checks, each reported as
 * one OutputDebugStringA line "check NAME: pass|FAIL detail". A faithful guest passes them all.
 * Benign: reads only what the machine says about itself; does nothing without the marker. */
#include <windows.h>
#include <tlhelp32.h>
#include <psapi.h>
#include "fidelity.h"

#define SLEEP_MS 30000ULL
#define MINUTE_MS 60000ULL

typedef LONG (NTAPI *nt_query_information_process_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
typedef LONG (NTAPI *nt_set_information_thread_t)(HANDLE, ULONG, PVOID, ULONG);
typedef LONG (NTAPI *nt_query_information_thread_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
typedef LONG (NTAPI *nt_close_t)(HANDLE);
typedef LONG (NTAPI *rtl_get_version_t)(OSVERSIONINFOW *);
typedef LONG (NTAPI *nt_query_virtual_memory_t)(HANDLE, PVOID, ULONG, PVOID, SIZE_T, PSIZE_T);
typedef LONG (NTAPI *nt_query_system_information_t)(ULONG, PVOID, ULONG, PULONG);
typedef LONG (NTAPI *nt_allocate_virtual_memory_t)(HANDLE, PVOID *, ULONG_PTR, PSIZE_T, ULONG, ULONG);

#define STATUS_INFO_LENGTH_MISMATCH ((LONG)0xC0000004)
#define NT_STATUS_INVALID_HANDLE ((LONG)0xC0000008)
#define THREAD_HIDE_FROM_DEBUGGER 0x11
#define BOGUS_HANDLE ((HANDLE)(ULONG_PTR)0x0BADC0DC)
/* Offsets in the PEB, the TEB and the process heap (x64, x86: a WoW64 process's own PEB32/TEB32). */
#ifdef _WIN64
#define OFF(x64, x86) (x64)
#else
#define OFF(x64, x86) (x86)
#endif

static unsigned long long tsc(void)
{
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}

static void cpuid(unsigned int leaf, unsigned int out[4])
{
    __asm__ volatile("cpuid" : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3]) : "a"(leaf), "c"(0));
}

static unsigned long long ksystem_time(ULONG_PTR offset)
{
    volatile ULONG *p = (volatile ULONG *)(0x7FFE0000 + offset);
    return ((unsigned long long)(ULONG)p[1] << 32) | p[0];
}

static unsigned long long kuser_tick_ms(void)
{
    volatile ULONG *multiplier = (volatile ULONG *)0x7FFE0004;
    return (ksystem_time(0x320) * *multiplier) >> 24;
}

static unsigned long long filetime_now(void)
{
    FILETIME ft;
    GetSystemTimeAsFileTime(&ft);
    return ((unsigned long long)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
}

/* |a - b| <= tolerance */
static int close_to(unsigned long long a, unsigned long long b, unsigned long long tolerance)
{
    return (a > b ? a - b : b - a) <= tolerance;
}

static void report_ms(const char *name, int ok, unsigned long long ms)
{
    char text[32];
    fmt_u64(text, ms);
    verdict(name, ok, text);
}

static void timing_checks(void)
{
    LARGE_INTEGER f, q0, q1, q2;
    unsigned long long t0, t1, tick0, tick1, ft0, ft1, k0, k1, ks0, ks1, kt0, kt1, qms, tsc_delta;
    DWORD gtc0, gtc1;
    volatile unsigned int spin = 0;
    unsigned int i;

    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&q0);
    QueryPerformanceCounter(&q1);
    verdict("qpc_consecutive_readings_differ", q1.QuadPart > q0.QuadPart, "");

    /* Around a Sleep: every clock moves by the time slept, and all agree. */
    QueryPerformanceCounter(&q0);
    t0 = tsc();
    tick0 = GetTickCount64();
    gtc0 = GetTickCount();
    ft0 = filetime_now();
    k0 = ksystem_time(0x8);
    ks0 = ksystem_time(0x14);
    kt0 = kuser_tick_ms();
    Sleep((DWORD)SLEEP_MS);
    QueryPerformanceCounter(&q1);
    t1 = tsc();
    tick1 = GetTickCount64();
    gtc1 = GetTickCount();
    ft1 = filetime_now();
    k1 = ksystem_time(0x8);
    ks1 = ksystem_time(0x14);
    kt1 = kuser_tick_ms();
    qms = (unsigned long long)(q1.QuadPart - q0.QuadPart) * 1000 / (unsigned long long)f.QuadPart;
    report_ms("sleep_qpc_delta_ms", close_to(qms, SLEEP_MS, 200), qms);
    report_ms("sleep_tickcount64_delta_ms", close_to(tick1 - tick0, SLEEP_MS, 200), tick1 - tick0);
    report_ms("sleep_tickcount_delta_ms", close_to((DWORD)(gtc1 - gtc0), SLEEP_MS, 200), (DWORD)(gtc1 - gtc0));
    report_ms("sleep_filetime_delta_ms", close_to((ft1 - ft0) / 10000, SLEEP_MS, 200), (ft1 - ft0) / 10000);
    report_ms("sleep_kuser_interrupt_time_delta_ms", close_to((k1 - k0) / 10000, SLEEP_MS, 200), (k1 - k0) / 10000);
    report_ms("sleep_kuser_system_time_delta_ms", close_to((ks1 - ks0) / 10000, SLEEP_MS, 200), (ks1 - ks0) / 10000);
    report_ms("sleep_kuser_tick_count_delta_ms", close_to(kt1 - kt0, SLEEP_MS, 200), kt1 - kt0);
    /* rdtsc: at least 1 GHz and at most 10 GHz over the slept time. */
    tsc_delta = t1 - t0;
    report_ms("sleep_rdtsc_delta_mcycles", tsc_delta >= SLEEP_MS * 1000000ULL && tsc_delta <= SLEEP_MS * 10000000ULL,
              tsc_delta / 1000000);
    verdict("kuser_system_time_matches_filetime", close_to(ks1 / 10000, ft1 / 10000, 200), "");
    verdict("kuser_tick_count_matches_gettickcount64", close_to(kt1, tick1, 200), "");

    /* Around a busy loop with no API call: clocks move forward, a little. */
    QueryPerformanceCounter(&q0);
    t0 = tsc();
    for (i = 0; i < 100000; i++)
        spin += i;
    t1 = tsc();
    QueryPerformanceCounter(&q2);
    verdict("busy_loop_rdtsc_moves", t1 > t0, "");
    verdict("busy_loop_qpc_moves", q2.QuadPart > q0.QuadPart, "");
    qms = (unsigned long long)(q2.QuadPart - q0.QuadPart) * 1000 / (unsigned long long)f.QuadPart;
    report_ms("busy_loop_qpc_under_1s", qms < 1000, qms);
    /* A trapped CPUID (a VM exit) costs thousands of cycles. */
    {
        unsigned int regs[4];
        t0 = tsc();
        cpuid(0, regs);
        t1 = tsc();
        report_ms("rdtsc_around_cpuid_under_1000_cycles", t1 - t0 < 1000, t1 - t0);
    }
    /* Uptime: sandboxes are often freshly booted. */
    report_ms("uptime_over_20_minutes", GetTickCount64() > 20 * MINUTE_MS, GetTickCount64() / MINUTE_MS);
}

static void debugger_checks(void)
{
    BOOL remote = TRUE;
    ULONG_PTR port = 1, object = 1;
    ULONG flags = 0;
    unsigned char *peb;
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    nt_query_information_process_t query =
        (nt_query_information_process_t)(void *)GetProcAddress(ntdll, "NtQueryInformationProcess");

    verdict("IsDebuggerPresent", !IsDebuggerPresent(), "");
    verdict("CheckRemoteDebuggerPresent", CheckRemoteDebuggerPresent(GetCurrentProcess(), &remote) && !remote, "");
    if (query) {
        LONG s1 = query(GetCurrentProcess(), 7, &port, sizeof port, NULL);
        LONG s2 = query(GetCurrentProcess(), 0x1E, &object, sizeof object, NULL);
        LONG s3 = query(GetCurrentProcess(), 0x1F, &flags, sizeof flags, NULL);
        verdict("NtQueryInformationProcess_debug_port", s1 == 0 && port == 0, "");
        verdict("NtQueryInformationProcess_debug_object", s2 != 0 && object == 0, "");
        verdict("NtQueryInformationProcess_debug_flags", s3 == 0 && flags == 1, "");
    } else {
        verdict("NtQueryInformationProcess_found", 0, "");
    }
#ifdef _WIN64
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
    verdict("peb_being_debugged", peb[2] == 0, "");
    verdict("peb_nt_global_flag", (*(ULONG *)(peb + 0xBC) & 0x70) == 0, "");
#else
    __asm__ volatile("movl %%fs:0x30, %0" : "=r"(peb));
    verdict("peb_being_debugged", peb[2] == 0, "");
    verdict("peb_nt_global_flag", (*(ULONG *)(peb + 0x68) & 0x70) == 0, "");
#endif
}

static void cpu_checks(void)
{
    unsigned int regs[4];
    char vendor[13];
    static const char *const hypervisors[] = {"VMwareVMware", "Microsoft Hv", "KVMKVMKVM", "VBoxVBoxVBox",
                                              "XenVMMXenVMM", "TCGTCGTCGTCG", " lrpepyh  vr", "prl hyperv  "};
    unsigned int i;
    int bad = 0;

    cpuid(1, regs);
    verdict("cpuid_hypervisor_bit_clear", (regs[2] & 0x80000000u) == 0, "");
    cpuid(0, regs);
    *(unsigned int *)(vendor + 0) = regs[1];
    *(unsigned int *)(vendor + 4) = regs[3];
    *(unsigned int *)(vendor + 8) = regs[2];
    vendor[12] = 0;
    verdict("cpuid_vendor_is_a_cpu", str_eq_i(vendor, "GenuineIntel") || str_eq_i(vendor, "AuthenticAMD"), vendor);
    cpuid(0x40000000, regs);
    *(unsigned int *)(vendor + 0) = regs[1];
    *(unsigned int *)(vendor + 4) = regs[2];
    *(unsigned int *)(vendor + 8) = regs[3];
    vendor[12] = 0;
    for (i = 0; i < sizeof hypervisors / sizeof hypervisors[0]; i++)
        bad |= str_eq_i(vendor, hypervisors[i]);
    verdict("cpuid_no_hypervisor_vendor", !bad, "");
    {
        char brand[49];
        for (i = 0; i < 3; i++) {
            cpuid(0x80000002 + i, regs);
            *(unsigned int *)(brand + 16 * i + 0) = regs[0];
            *(unsigned int *)(brand + 16 * i + 4) = regs[1];
            *(unsigned int *)(brand + 16 * i + 8) = regs[2];
            *(unsigned int *)(brand + 16 * i + 12) = regs[3];
        }
        brand[48] = 0;
        verdict("cpuid_brand_is_a_retail_cpu",
                !str_has_i(brand, "qemu") && !str_has_i(brand, "virtual") && !str_has_i(brand, "kvm") &&
                    !str_has_i(brand, "processor (") && (str_has_i(brand, "intel(r)") || str_has_i(brand, "amd")),
                brand);
    }
}

static void hardware_checks(void)
{
    MEMORYSTATUSEX memory;
    SYSTEM_INFO info;
    ULARGE_INTEGER avail, total, free_bytes;
    POINT p0, p1;

    memory.dwLength = sizeof memory;
    GlobalMemoryStatusEx(&memory);
    report_ms("memory_at_least_4_gib_mib", memory.ullTotalPhys >= (4ULL << 30), memory.ullTotalPhys >> 20);
    GetSystemInfo(&info);
    report_ms("processors_at_least_2", info.dwNumberOfProcessors >= 2, info.dwNumberOfProcessors);
    total.QuadPart = 0;
    GetDiskFreeSpaceExA("C:\\", &avail, &total, &free_bytes);
    report_ms("disk_at_least_80_gib", total.QuadPart >= (80ULL << 30), total.QuadPart >> 30);
    report_ms("screen_width_at_least_1024", GetSystemMetrics(SM_CXSCREEN) >= 1024, (unsigned)GetSystemMetrics(SM_CXSCREEN));
    report_ms("screen_height_at_least_768", GetSystemMetrics(SM_CYSCREEN) >= 768, (unsigned)GetSystemMetrics(SM_CYSCREEN));
    p0.x = p0.y = p1.x = p1.y = -1;
    GetCursorPos(&p0);
    Sleep(2000);
    GetCursorPos(&p1);
    verdict("cursor_moves", p0.x != p1.x || p0.y != p1.y, "");
}

static void identity_checks(void)
{
    static const char *const users[] = {"sandbox", "malware", "virus", "maltest", "test user", "john doe",
                                        "currentuser", "sand box", "timmy", "wdagutilityaccount", "vmware",
                                        "user", "admin", "administrator", "test", "abby", "peter wilson",
                                        "hmarc", "patex", "frank", "lisa", "john", "george", "emily"};
    static const char *const hosts[] = {"sandbox", "7silvia", "hanspeter-pc", "john-pc", "mueller-pc",
                                        "win7-traps", "fortinet", "tequilaboombomb", "desktop-vm",
                                        "vmware", "virtualbox", "cuckoo", "analysis", "malware", "test"};
    char name[256];
    DWORD size = sizeof name;
    unsigned int i;
    int bad = 0;

    name[0] = 0;
    GetUserNameA(name, &size);
    for (i = 0; i < sizeof users / sizeof users[0]; i++)
        bad |= str_eq_i(name, users[i]);
    bad |= str_has_i(name, "sandbox") | str_has_i(name, "malware") | str_has_i(name, "virus");
    verdict("user_name_not_on_blocklist", !bad && name[0], name);
    size = sizeof name;
    name[0] = 0;
    bad = 0;
    GetComputerNameA(name, &size);
    for (i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        bad |= str_eq_i(name, hosts[i]);
    bad |= str_has_i(name, "sandbox") | str_has_i(name, "cuckoo") | str_has_i(name, "vbox");
    verdict("host_name_not_on_blocklist", !bad && name[0], name);
}

static void process_checks(void)
{
    static const char *const tools[] = {"vmtoolsd.exe", "vmwaretray.exe", "vboxservice.exe", "vboxtray.exe",
                                        "wireshark.exe", "procmon.exe", "procmon64.exe", "procexp.exe",
                                        "ollydbg.exe", "x64dbg.exe", "x32dbg.exe", "idaq.exe", "ida64.exe",
                                        "sandboxiedcomlaunch.exe", "joeboxserver.exe", "vmsrvc.exe",
                                        "qemu-ga.exe", "fakenet.exe", "sysmon.exe", "python.exe", "prl_tools.exe"};
    PROCESSENTRY32 entry;
    HANDLE snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    unsigned int count = 0, i;
    int bad = 0;

    entry.dwSize = sizeof entry;
    if (snapshot != INVALID_HANDLE_VALUE && Process32First(snapshot, &entry)) {
        do {
            count++;
            for (i = 0; i < sizeof tools / sizeof tools[0]; i++)
                bad |= str_eq_i(entry.szExeFile, tools[i]);
        } while (Process32Next(snapshot, &entry));
        CloseHandle(snapshot);
    }
    verdict("no_analysis_tool_process", !bad && count > 0, "");
    report_ms("at_least_20_processes", count >= 20, count);
}

static void artifact_checks(void)
{
    static const char *const files[] = {
        "C:\\windows\\system32\\drivers\\vmmouse.sys", "C:\\windows\\system32\\drivers\\vmhgfs.sys",
        "C:\\windows\\system32\\drivers\\VBoxMouse.sys", "C:\\windows\\system32\\drivers\\VBoxGuest.sys",
        "C:\\windows\\system32\\drivers\\VBoxSF.sys", "C:\\windows\\system32\\vboxhook.dll",
        "C:\\windows\\system32\\drivers\\prleth.sys", "C:\\windows\\system32\\drivers\\vioinput.sys",
        "C:\\analysis\\sample.exe", "C:\\sandbox\\starter.exe", "C:\\insidetm"};
    static const char *const devices[] = {"\\\\.\\VBoxMiniRdrDN", "\\\\.\\VBoxGuest", "\\\\.\\vmci", "\\\\.\\HGFS"};
    static const char *const keys[] = {
        "SOFTWARE\\Oracle\\VirtualBox Guest Additions", "SOFTWARE\\VMware, Inc.\\VMware Tools",
        "HARDWARE\\ACPI\\DSDT\\VBOX__", "HARDWARE\\ACPI\\FADT\\VBOX__", "SYSTEM\\CurrentControlSet\\Services\\VBoxGuest",
        "SYSTEM\\CurrentControlSet\\Services\\vmci", "SOFTWARE\\Wine", "SYSTEM\\ControlSet001\\Services\\vioscsi"};
    static const char *const dlls[] = {"SbieDll.dll", "dbghelp.dll", "dbghelp_sandbox.dll", "api_log.dll", "dir_watch.dll",
                                       "pstorec.dll", "vmcheck.dll", "wpespy.dll", "cmdvrt32.dll", "cuckoomon.dll"};
    static const char *const drivers[] = {"vmmouse", "vmhgfs", "vboxguest", "vboxmouse", "vboxsf", "vboxvideo",
                                          "prleth", "vioinput", "sbiedrv"};
    unsigned int i, j;
    int bad = 0;
    HKEY key;
    LPVOID bases[512];
    DWORD needed = 0;
    char base_name[MAX_PATH];

    for (i = 0; i < sizeof files / sizeof files[0]; i++)
        bad |= GetFileAttributesA(files[i]) != INVALID_FILE_ATTRIBUTES;
    verdict("no_sandbox_files", !bad, "");
    bad = 0;
    for (i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        HANDLE h = CreateFileA(devices[i], GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
        if (h != INVALID_HANDLE_VALUE) {
            bad = 1;
            CloseHandle(h);
        }
    }
    verdict("no_sandbox_devices", !bad, "");
    bad = 0;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (RegOpenKeyExA(HKEY_LOCAL_MACHINE, keys[i], 0, KEY_READ, &key) == ERROR_SUCCESS) {
            bad = 1;
            RegCloseKey(key);
        }
    }
    verdict("no_sandbox_registry_keys", !bad, "");
    bad = 0;
    for (i = 0; i < sizeof dlls / sizeof dlls[0]; i++)
        bad |= GetModuleHandleA(dlls[i]) != NULL;
    verdict("no_sandbox_dlls_loaded", !bad, "");
    bad = 0;
    if (EnumDeviceDrivers(bases, sizeof bases, &needed)) {
        for (i = 0; i < needed / sizeof bases[0] && i < 512; i++) {
            base_name[0] = 0;
            GetDeviceDriverBaseNameA(bases[i], base_name, sizeof base_name);
            for (j = 0; j < sizeof drivers / sizeof drivers[0]; j++)
                bad |= str_has_i(base_name, drivers[j]);
        }
        report_ms("no_sandbox_drivers", !bad && needed >= 10 * sizeof bases[0], needed / sizeof bases[0]);
    } else {
        verdict("no_sandbox_drivers", 0, "EnumDeviceDrivers failed");
    }
}

static unsigned char *current_peb(void)
{
    unsigned char *peb;
#ifdef _WIN64
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
#else
    __asm__ volatile("movl %%fs:0x30, %0" : "=r"(peb));
#endif
    return peb;
}

static unsigned char *current_teb(void)
{
    unsigned char *teb;
#ifdef _WIN64
    __asm__ volatile("movq %%gs:0x30, %0" : "=r"(teb));
#else
    __asm__ volatile("movl %%fs:0x18, %0" : "=r"(teb));
#endif
    return teb;
}

static volatile int filter_calls;

/* Skips the int3 and resumes, as anti-debugging code does (a debugger would take the int3 first). */
static LONG WINAPI resume_after_int3(EXCEPTION_POINTERS *pointers)
{
    filter_calls++;
#ifdef _WIN64
    pointers->ContextRecord->Rip += 1;
#else
    pointers->ContextRecord->Eip += 1;
#endif
    return EXCEPTION_CONTINUE_EXECUTION;
}

/* Windows internals read directly (the PEB, the TEB, KUSER_SHARED_DATA, native APIs), each
 * compared with what the documented APIs say: an emulator filling one and not the other shows. */
static void internals_checks(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    nt_query_information_process_t query_process =
        (nt_query_information_process_t)(void *)GetProcAddress(ntdll, "NtQueryInformationProcess");
    nt_set_information_thread_t set_thread =
        (nt_set_information_thread_t)(void *)GetProcAddress(ntdll, "NtSetInformationThread");
    nt_query_information_thread_t query_thread =
        (nt_query_information_thread_t)(void *)GetProcAddress(ntdll, "NtQueryInformationThread");
    nt_close_t nt_close = (nt_close_t)(void *)GetProcAddress(ntdll, "NtClose");
    rtl_get_version_t rtl_get_version = (rtl_get_version_t)(void *)GetProcAddress(ntdll, "RtlGetVersion");
    volatile unsigned char *kuser = (volatile unsigned char *)0x7FFE0000;
    unsigned char *peb = current_peb(), *teb = current_teb();
    SYSTEM_INFO info;
    MEMORYSTATUSEX memory;
    DWORD parent = 0;

    GetSystemInfo(&info);
    memory.dwLength = sizeof memory;
    GlobalMemoryStatusEx(&memory);
    {
        unsigned char *heap = *(unsigned char **)(peb + OFF(0x30, 0x18));
        int ok = heap && heap == (unsigned char *)GetProcessHeap();
        if (ok) /* HEAP.Flags: HEAP_GROWABLE only; ForceFlags: none (a debugger's heap sets both) */
            ok = (*(ULONG *)(heap + OFF(0x70, 0x40)) & ~(ULONG)HEAP_GROWABLE) == 0 && *(ULONG *)(heap + OFF(0x74, 0x44)) == 0;
        verdict("peb_process_heap_is_a_plain_heap", ok, "");
    }
    report_ms("peb_processors_match_system_info", *(ULONG *)(peb + OFF(0xB8, 0x64)) == info.dwNumberOfProcessors,
              *(ULONG *)(peb + OFF(0xB8, 0x64)));
    report_ms("kuser_processors_match_system_info", *(volatile ULONG *)(kuser + 0x3C0) == info.dwNumberOfProcessors,
              *(volatile ULONG *)(kuser + 0x3C0));
    report_ms("kuser_physical_pages_match_memory_status_mib",
              close_to((unsigned long long)*(volatile ULONG *)(kuser + 0x2E8) * 4096, memory.ullTotalPhys, memory.ullTotalPhys / 100),
              ((unsigned long long)*(volatile ULONG *)(kuser + 0x2E8) * 4096) >> 20);
    {
        OSVERSIONINFOW v;
        ULONG build = 0;
        int ok = 0;
        v.dwOSVersionInfoSize = sizeof v;
        if (rtl_get_version && rtl_get_version(&v) == 0) {
            build = v.dwBuildNumber;
            ok = v.dwPlatformId == VER_PLATFORM_WIN32_NT && *(ULONG *)(peb + OFF(0x124, 0xB0)) == VER_PLATFORM_WIN32_NT &&
                 *(ULONG *)(peb + OFF(0x118, 0xA4)) == v.dwMajorVersion && *(ULONG *)(peb + OFF(0x11C, 0xA8)) == v.dwMinorVersion &&
                 *(USHORT *)(peb + OFF(0x120, 0xAC)) == v.dwBuildNumber && *(volatile ULONG *)(kuser + 0x26C) == v.dwMajorVersion &&
                 *(volatile ULONG *)(kuser + 0x270) == v.dwMinorVersion &&
                 (*(volatile ULONG *)(kuser + 0x260) & 0xFFFF) == v.dwBuildNumber;
        }
        report_ms("version_agrees_in_rtl_peb_and_kuser", ok, build);
    }
    verdict("teb_client_id_matches_current_ids",
            *(ULONG_PTR *)(teb + OFF(0x40, 0x20)) == GetCurrentProcessId() &&
                *(ULONG_PTR *)(teb + OFF(0x48, 0x24)) == GetCurrentThreadId(), "");
    {
        volatile ULONG *last_error = (volatile ULONG *)(teb + OFF(0x68, 0x34));
        int ok;
        SetLastError(0x4E21);
        ok = *last_error == 0x4E21;
        *last_error = 0x4E22;
        ok = ok && GetLastError() == 0x4E22;
        verdict("teb_last_error_is_get_last_error", ok, "");
    }
    {
        PROCESSENTRY32 entry;
        HANDLE snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        DWORD pids[1024], needed = 0, i;
        char parent_name[MAX_PATH];
        int listed = 0;
        parent_name[0] = 0;
        entry.dwSize = sizeof entry;
        if (snapshot != INVALID_HANDLE_VALUE) {
            if (Process32First(snapshot, &entry))
                do {
                    if (entry.th32ProcessID == GetCurrentProcessId())
                        parent = entry.th32ParentProcessID;
                } while (Process32Next(snapshot, &entry));
            if (parent && Process32First(snapshot, &entry))
                do {
                    if (entry.th32ProcessID == parent)
                        for (i = 0; i <= MAX_PATH - 1 && (parent_name[i] = entry.szExeFile[i]); i++) {
                        }
                } while (Process32Next(snapshot, &entry));
            CloseHandle(snapshot);
        }
        if (EnumProcesses(pids, sizeof pids, &needed))
            for (i = 0; i < needed / sizeof pids[0]; i++)
                listed |= pids[i] == GetCurrentProcessId();
        verdict("own_process_listed_by_enum_processes", listed, "");
        verdict("toolhelp_parent_is_explorer", str_eq_i(parent_name, "explorer.exe"), parent_name);
    }
    {
        ULONG_PTR basic[6] = {0, 0, 0, 0, 0, 0};
        ULONG length = 0;
        LONG status = query_process ? query_process(GetCurrentProcess(), 0, basic, sizeof basic, &length) : -1;
        /* PROCESS_BASIC_INFORMATION: PebBaseAddress, UniqueProcessId, InheritedFromUniqueProcessId */
        verdict("process_basic_information_matches",
                status == 0 && length == sizeof basic && basic[1] == (ULONG_PTR)peb && basic[4] == GetCurrentProcessId() &&
                    basic[5] == parent && parent != 0, "");
    }
    {
        ULONG bogus = 0;
        unsigned char hidden = 0;
        int ok = set_thread && query_thread;
        ok = ok && set_thread(GetCurrentThread(), THREAD_HIDE_FROM_DEBUGGER, &bogus, sizeof bogus) == STATUS_INFO_LENGTH_MISMATCH;
        ok = ok && set_thread(BOGUS_HANDLE, THREAD_HIDE_FROM_DEBUGGER, NULL, 0) == NT_STATUS_INVALID_HANDLE;
        ok = ok && set_thread(GetCurrentThread(), THREAD_HIDE_FROM_DEBUGGER, NULL, 0) == 0;
        ok = ok && query_thread(GetCurrentThread(), THREAD_HIDE_FROM_DEBUGGER, &hidden, 1, NULL) == 0 && hidden == 1;
        verdict("hide_from_debugger_checks_its_arguments", ok, "");
    }
    {
        BOOL closed;
        DWORD error;
        SetLastError(0);
        closed = CloseHandle(BOGUS_HANDLE);
        error = GetLastError();
        verdict("closing_a_bad_handle_fails_quietly",
                !closed && error == ERROR_INVALID_HANDLE && nt_close && nt_close(BOGUS_HANDLE) == NT_STATUS_INVALID_HANDLE, "");
    }
    {
        HMODULE module;
        DWORD error;
        SetLastError(0);
        module = LoadLibraryA("qzv7x_no_such_module.dll");
        error = GetLastError();
        report_ms("missing_module_is_not_found", module == NULL && error == ERROR_MOD_NOT_FOUND, error);
    }
    {
        ULONGLONG installed_kib = 0;
        report_ms("installed_memory_at_least_total_mib",
                  GetPhysicallyInstalledSystemMemory(&installed_kib) && installed_kib * 1024 >= memory.ullTotalPhys,
                  installed_kib >> 10);
    }
    {
        LPTOP_LEVEL_EXCEPTION_FILTER previous = SetUnhandledExceptionFilter(resume_after_int3);
        filter_calls = 0;
        __asm__ volatile("int3");
        SetUnhandledExceptionFilter(previous);
        report_ms("unhandled_filter_resumes_after_int3", filter_calls == 1, filter_calls);
    }
}

/* The address space as VirtualQuery describes it: images MEM_IMAGE with one region per section
 * protection, allocations MEM_PRIVATE, views MEM_MAPPED, reserved pages MEM_RESERVE, and a walk
 * from 0 that ends at the end of user space (an emulator answering only mapped memory stops at
 * the first hole). */
static volatile ULONG_PTR data_word = 1;

static unsigned char *volatile reserved_page;
static volatile int reserved_faults;

/* Commits the reserved page a write faulted on, then resumes: Windows' commit-on-demand. */
static LONG CALLBACK commit_on_fault(EXCEPTION_POINTERS *pointers)
{
    EXCEPTION_RECORD *record = pointers->ExceptionRecord;
    if (record->ExceptionCode != EXCEPTION_ACCESS_VIOLATION || (unsigned char *)record->ExceptionInformation[1] != reserved_page)
        return EXCEPTION_CONTINUE_SEARCH;
    reserved_faults++;
    return VirtualAlloc(reserved_page, 0x1000, MEM_COMMIT, PAGE_READWRITE) ? EXCEPTION_CONTINUE_EXECUTION : EXCEPTION_CONTINUE_SEARCH;
}

static SIZE_T query(const void *address, MEMORY_BASIC_INFORMATION *mbi)
{
    return VirtualQuery(address, mbi, sizeof *mbi);
}

static void memory_checks(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    nt_query_virtual_memory_t nt_query =
        (nt_query_virtual_memory_t)(void *)GetProcAddress(ntdll, "NtQueryVirtualMemory");
    unsigned char *image = (unsigned char *)GetModuleHandleA(NULL);
    unsigned char *code = (unsigned char *)(void *)memory_checks;
    MEMORY_BASIC_INFORMATION mbi, nt_mbi;
    SYSTEM_INFO info;
    ULONG_PTR user_end;
    unsigned char *top;

    GetSystemInfo(&info);
    user_end = (ULONG_PTR)info.lpMaximumApplicationAddress + 1;
    {
        int ok = query(image, &mbi) == sizeof mbi && mbi.Type == MEM_IMAGE && mbi.AllocationBase == image &&
                 mbi.BaseAddress == image && mbi.State == MEM_COMMIT && mbi.Protect == PAGE_READONLY &&
                 mbi.RegionSize == 0x1000 && mbi.AllocationProtect == PAGE_EXECUTE_WRITECOPY;
        report_ms("own_image_headers_are_mem_image_readonly", ok, mbi.Type);
    }
    {
        int ok = query(code, &mbi) == sizeof mbi && mbi.Type == MEM_IMAGE && mbi.AllocationBase == image &&
                 mbi.Protect == PAGE_EXECUTE_READ && (unsigned char *)mbi.BaseAddress == (unsigned char *)((ULONG_PTR)code & ~(ULONG_PTR)0xFFF);
        report_ms("own_code_is_execute_read", ok, mbi.Protect);
    }
    {
        int ok = query((const void *)&data_word, &mbi) == sizeof mbi && mbi.Type == MEM_IMAGE &&
                 mbi.AllocationBase == image && mbi.Protect == PAGE_READWRITE;
        report_ms("own_data_is_readwrite", ok, mbi.Protect);
    }
    {
        DWORD old = 0, back = 0;
        int ok = VirtualProtect(code, 1, PAGE_EXECUTE_READWRITE, &old) && old == PAGE_EXECUTE_READ &&
                 query(code, &mbi) && mbi.Protect == PAGE_EXECUTE_READWRITE && mbi.RegionSize == 0x1000 &&
                 VirtualProtect(code, 1, old, &back) && back == PAGE_EXECUTE_READWRITE && query(code, &mbi) &&
                 mbi.Protect == PAGE_EXECUTE_READ;
        report_ms("virtual_protect_returns_section_protection", ok, old);
    }
    {
        unsigned char *at = 0;
        unsigned long long regions = 0;
        int image_seen = 0, free_seen = 0;
        while (regions < 100000 && query(at, &mbi) == sizeof mbi && mbi.RegionSize) {
            regions++;
            image_seen |= mbi.AllocationBase == image && mbi.Type == MEM_IMAGE;
            free_seen |= mbi.State == MEM_FREE && mbi.Type == 0 && mbi.AllocationBase == 0;
            at = (unsigned char *)mbi.BaseAddress + mbi.RegionSize;
        }
        top = at;
        report_ms("virtual_query_walk_reaches_end_of_user_space",
                  (ULONG_PTR)top == user_end && regions >= 10 && regions < 100000 && image_seen && free_seen, regions);
    }
    {
        SIZE_T n;
        SetLastError(0);
        n = query(top, &mbi);
        report_ms("virtual_query_past_user_space_fails", n == 0 && GetLastError() == ERROR_INVALID_PARAMETER, GetLastError());
    }
    {
        unsigned char *reserved = (unsigned char *)VirtualAlloc(NULL, 0x10000, MEM_RESERVE, PAGE_READWRITE);
        int ok = reserved && query(reserved, &mbi) && mbi.State == MEM_RESERVE && mbi.Type == MEM_PRIVATE &&
                 mbi.AllocationBase == reserved && mbi.AllocationProtect == PAGE_READWRITE && mbi.Protect == 0 &&
                 mbi.RegionSize == 0x10000;
        ok = ok && VirtualAlloc(reserved + 0x1000, 0x1000, MEM_COMMIT, PAGE_READWRITE) == reserved + 0x1000;
        ok = ok && query(reserved + 0x1000, &mbi) && mbi.State == MEM_COMMIT && mbi.Protect == PAGE_READWRITE &&
             mbi.RegionSize == 0x1000 && mbi.AllocationBase == reserved;
        ok = ok && query(reserved, &mbi) && mbi.State == MEM_RESERVE && mbi.RegionSize == 0x1000;
        ok = ok && query(reserved + 0x2000, &mbi) && mbi.State == MEM_RESERVE && mbi.RegionSize == 0xE000;
        if (ok) {
            reserved[0x1000] = 7;
            ok = VirtualFree(reserved + 0x1000, 0x1000, MEM_DECOMMIT) && query(reserved, &mbi) &&
                 mbi.State == MEM_RESERVE && mbi.RegionSize == 0x10000;
        }
        report_ms("reserved_pages_are_mem_reserve", ok, mbi.State);
        if (ok) {
            /* A reserved page is not memory yet: touching it faults (commit on demand). */
            void *handler = AddVectoredExceptionHandler(1, commit_on_fault);
            reserved_page = reserved + 0x3000;
            reserved_faults = 0;
            *(volatile unsigned char *)reserved_page = 5;
            if (handler)
                RemoveVectoredExceptionHandler(handler);
            ok = reserved_faults == 1 && *(volatile unsigned char *)reserved_page == 5 && query(reserved_page, &mbi) &&
                 mbi.State == MEM_COMMIT;
            report_ms("reserved_page_faults_until_committed", ok, reserved_faults);
        } else {
            verdict("reserved_page_faults_until_committed", 0, "not reserved");
        }
        if (reserved)
            VirtualFree(reserved, 0, MEM_RELEASE);
    }
    {
        /* The native call reserves and commits as VirtualAlloc does (loaders that avoid kernel32). */
        nt_allocate_virtual_memory_t nt_alloc =
            (nt_allocate_virtual_memory_t)(void *)GetProcAddress(ntdll, "NtAllocateVirtualMemory");
        void *base = NULL, *page;
        SIZE_T size = 0x2000, one = 0x1000;
        LONG status = nt_alloc ? nt_alloc(GetCurrentProcess(), &base, 0, &size, MEM_RESERVE, PAGE_READWRITE) : -1;
        int ok = status == 0 && base && size == 0x2000 && query(base, &mbi) && mbi.State == MEM_RESERVE &&
                 mbi.Type == MEM_PRIVATE && mbi.RegionSize == 0x2000;
        page = base;
        ok = ok && nt_alloc(GetCurrentProcess(), &page, 0, &one, MEM_COMMIT, PAGE_READONLY) == 0 && page == base &&
             query(base, &mbi) && mbi.State == MEM_COMMIT && mbi.Protect == PAGE_READONLY && mbi.RegionSize == 0x1000;
        report_ms("nt_allocate_virtual_memory_reserves_and_commits", ok, (ULONG)status);
        if (base)
            VirtualFree(base, 0, MEM_RELEASE);
    }
    {
        unsigned char *block = (unsigned char *)VirtualAlloc(NULL, 0x3000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        int ok = block && query(block + 0x1800, &mbi) && mbi.Type == MEM_PRIVATE && mbi.State == MEM_COMMIT &&
                 mbi.AllocationBase == block && mbi.BaseAddress == block + 0x1000 && mbi.RegionSize == 0x2000 &&
                 mbi.Protect == PAGE_READWRITE;
        report_ms("allocation_is_mem_private", ok, mbi.Type);
        if (block)
            VirtualFree(block, 0, MEM_RELEASE);
    }
    {
        HANDLE section = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 0x2000, NULL);
        void *view = section ? MapViewOfFile(section, FILE_MAP_ALL_ACCESS, 0, 0, 0x2000) : NULL;
        int ok = view && query(view, &mbi) && mbi.Type == MEM_MAPPED && mbi.State == MEM_COMMIT &&
                 mbi.AllocationBase == view && mbi.Protect == PAGE_READWRITE;
        report_ms("mapped_view_is_mem_mapped", ok, mbi.Type);
        if (view)
            UnmapViewOfFile(view);
        if (section)
            CloseHandle(section);
    }
    {
        /* al-khaser's write-watch checks: pages written since the last reset, and only those. */
        unsigned char *watched = (unsigned char *)VirtualAlloc(NULL, 0x4000, MEM_RESERVE | MEM_COMMIT | MEM_WRITE_WATCH, PAGE_READWRITE);
        void *pages[8];
        ULONG_PTR hits = 8;
        ULONG granularity = 0;
        int ok = watched && GetWriteWatch(0, watched, 0x4000, pages, &hits, &granularity) == 0 && hits == 0 &&
                 granularity == 0x1000;
        if (ok) {
            watched[0x1000] = 1;
            watched[0x1008] = 2;
            watched[0x3000] = 3;
            hits = 8;
            ok = GetWriteWatch(WRITE_WATCH_FLAG_RESET, watched, 0x4000, pages, &hits, &granularity) == 0 && hits == 2 &&
                 pages[0] == watched + 0x1000 && pages[1] == watched + 0x3000;
            hits = 8;
            ok = ok && GetWriteWatch(0, watched, 0x4000, pages, &hits, &granularity) == 0 && hits == 0;
            watched[0x2000] = 4;
            hits = 8;
            ok = ok && GetWriteWatch(0, watched, 0x4000, pages, &hits, &granularity) == 0 && hits == 1 &&
                 pages[0] == watched + 0x2000 && ResetWriteWatch(watched, 0x4000) == 0;
            hits = 8;
            ok = ok && GetWriteWatch(0, watched, 0x4000, pages, &hits, &granularity) == 0 && hits == 0 &&
                 watched[0x1000] == 1 && watched[0x2000] == 4 && watched[0x3000] == 3;
        }
        report_ms("write_watch_counts_pages_written", ok, hits);
        if (watched)
            VirtualFree(watched, 0, MEM_RELEASE);
    }
    {
        volatile int local = 0;
        unsigned char *teb = current_teb();
        ULONG_PTR stack_base = *(ULONG_PTR *)(teb + OFF(0x8, 0x4)), stack_limit = *(ULONG_PTR *)(teb + OFF(0x10, 0x8));
        ULONG_PTR here = (ULONG_PTR)&local;
        int ok = query((const void *)here, &mbi) && mbi.Type == MEM_PRIVATE && mbi.State == MEM_COMMIT &&
                 mbi.Protect == PAGE_READWRITE && stack_limit <= here && here < stack_base &&
                 (ULONG_PTR)mbi.AllocationBase <= stack_limit && stack_base <= (ULONG_PTR)mbi.BaseAddress + mbi.RegionSize;
        report_ms("stack_region_matches_teb_limits", ok, mbi.Protect);
    }
    {
        SIZE_T length = 0;
        LONG status = nt_query ? nt_query(GetCurrentProcess(), code, 0, &nt_mbi, sizeof nt_mbi, &length) : -1;
        int ok = status == 0 && length == sizeof nt_mbi && query(code, &mbi) &&
                 nt_mbi.BaseAddress == mbi.BaseAddress && nt_mbi.AllocationBase == mbi.AllocationBase &&
                 nt_mbi.RegionSize == mbi.RegionSize && nt_mbi.Protect == mbi.Protect && nt_mbi.Type == mbi.Type;
        ok = ok && nt_query(GetCurrentProcess(), top, 0, &nt_mbi, sizeof nt_mbi, &length) == (LONG)0xC000000D;
        report_ms("nt_query_virtual_memory_agrees", ok, (ULONG)status);
    }
}

/* More anti-debugging checks of al-khaser / pafish kind: the last error read twice, the image
 * name the loader, the PEB and GetModuleFileName give, the kernel debugger as ntdll and
 * KUSER_SHARED_DATA report it, hardware breakpoints in the thread's context, INT 2D reaching
 * the guest's own vectored handler, and the SMBIOS table GetSystemFirmwareTable returns. */
typedef struct { USHORT Length, MaximumLength; WCHAR *Buffer; } counted_wide_t; /* UNICODE_STRING */
#define RSMB_PROVIDER 0x52534D42 /* 'RSMB' */
static volatile int int2d_calls;
static volatile DWORD int2d_code;
extern char int2d_resume[] __asm__("int2d_resume");

static LONG CALLBACK on_int2d(EXCEPTION_POINTERS *pointers)
{
    int2d_calls++;
    int2d_code = pointers->ExceptionRecord->ExceptionCode;
#ifdef _WIN64
    pointers->ContextRecord->Rip = (ULONG_PTR)int2d_resume;
#else
    pointers->ContextRecord->Eip = (ULONG_PTR)int2d_resume;
#endif
    return EXCEPTION_CONTINUE_EXECUTION;
}

static volatile int single_steps;

static LONG CALLBACK on_single_step(EXCEPTION_POINTERS *pointers)
{
    if (pointers->ExceptionRecord->ExceptionCode != EXCEPTION_SINGLE_STEP)
        return EXCEPTION_CONTINUE_SEARCH;
    single_steps++;
    pointers->ContextRecord->EFlags &= ~0x100u;
    return EXCEPTION_CONTINUE_EXECUTION;
}

static int wide_eq_i(const WCHAR *a, const WCHAR *b, unsigned int n)
{
    unsigned int i;
    for (i = 0; i < n; i++) {
        WCHAR x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y) return 0;
        if (!x) return 1;
    }
    return 1;
}

static void antidebug_checks(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    nt_query_system_information_t query_system =
        (nt_query_system_information_t)(void *)GetProcAddress(ntdll, "NtQuerySystemInformation");
    unsigned char *peb = current_peb();
    {
        DWORD first, second;
        SetLastError(0x4E23);
        first = GetLastError();
        second = GetLastError();
        report_ms("get_last_error_reads_twice", first == 0x4E23 && second == 0x4E23, second);
    }
    {
        WCHAR name[MAX_PATH];
        DWORD n = GetModuleFileNameW(NULL, name, MAX_PATH);
        unsigned char *params = *(unsigned char **)(peb + OFF(0x20, 0x10));
        counted_wide_t *image_path = (counted_wide_t *)(params + OFF(0x60, 0x38));
        unsigned char *ldr = *(unsigned char **)(peb + OFF(0x18, 0xC));
        unsigned char *first = *(unsigned char **)(ldr + OFF(0x10, 0xC)); /* InLoadOrderModuleList.Flink */
        counted_wide_t *full = (counted_wide_t *)(first + OFF(0x48, 0x24));
        void *dll_base = *(void **)(first + OFF(0x30, 0x18));
        int ok = n && n < MAX_PATH && image_path->Length == n * 2 && wide_eq_i(image_path->Buffer, name, n) &&
                 full->Length == n * 2 && wide_eq_i(full->Buffer, name, n) &&
                 dll_base == (void *)GetModuleHandleA(NULL) && *(void **)(peb + OFF(0x10, 0x8)) == dll_base;
        report_ms("module_file_name_matches_peb_and_loader", ok, n);
    }
    {
        unsigned char info[2] = {1, 0};
        ULONG length = 0;
        LONG status = query_system ? query_system(0x23, info, sizeof info, &length) : -1;
        /* SYSTEM_KERNEL_DEBUGGER_INFORMATION: KernelDebuggerEnabled FALSE, KernelDebuggerNotPresent TRUE */
        SYSTEM_INFO system;
        unsigned char basic[64];
        GetSystemInfo(&system);
        status = query_system ? query_system(0, basic, OFF(64, 44), &length) : -1;
        report_ms("system_basic_information_matches_system_info",
                  status == 0 && length == OFF(64, 44) && *(ULONG *)(basic + 8) == system.dwPageSize &&
                      (ULONG)basic[OFF(56, 40)] == system.dwNumberOfProcessors &&
                      *(ULONG_PTR *)(basic + OFF(40, 32)) == (ULONG_PTR)system.lpMaximumApplicationAddress,
                  basic[OFF(56, 40)]);
        status = query_system ? query_system(0x23, info, sizeof info, &length) : -1;
        report_ms("kernel_debugger_absent",
                  status == 0 && info[0] == 0 && info[1] == 1 && *(volatile unsigned char *)0x7FFE02D4 == 0,
                  ((ULONG)status & 0xFFFF0000) | (ULONG)info[0] << 8 | info[1]);
    }
    {
        CONTEXT context;
        int ok;
        for (unsigned int i = 0; i < sizeof context; i++)
            ((volatile unsigned char *)&context)[i] = 0xCC;
        context.ContextFlags = CONTEXT_DEBUG_REGISTERS;
        ok = GetThreadContext(GetCurrentThread(), &context) && !context.Dr0 && !context.Dr1 && !context.Dr2 && !context.Dr3 &&
             !(context.Dr7 & 0xFF);
        verdict("no_hardware_breakpoints", ok, "");
    }
    {
        void *handler = AddVectoredExceptionHandler(1, on_int2d);
        int2d_calls = 0;
        __asm__ volatile("int $0x2d\n\tnop\n\tnop\n\t.globl int2d_resume\nint2d_resume:\n\tnop" ::: "memory");
        if (handler)
            RemoveVectoredExceptionHandler(handler);
        report_ms("int2d_reaches_own_handler", int2d_calls == 1 && int2d_code == EXCEPTION_BREAKPOINT, int2d_calls);
    }
    {
        void *handler = AddVectoredExceptionHandler(1, on_single_step);
        single_steps = 0;
#ifdef _WIN64
        __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tnop\n\tnop" ::: "memory", "cc");
#else
        __asm__ volatile("pushfl\n\torl $0x100, (%%esp)\n\tpopfl\n\tnop\n\tnop" ::: "memory", "cc");
#endif
        if (handler)
            RemoveVectoredExceptionHandler(handler);
        report_ms("trap_flag_reaches_own_handler", single_steps == 1, single_steps);
    }
    {
        int ok = !FindWindowA("OLLYDBG", NULL) && !FindWindowA("WinDbgFrameClass", NULL) && !FindWindowA("ID", NULL) &&
                 !FindWindowA(NULL, "x64dbg") && !FindWindowW(L"Qt5QWindowIcon", L"x32dbg");
        verdict("no_debugger_windows", ok, "");
    }
    {
        PROCESSENTRY32 entry;
        HANDLE snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0), process = NULL;
        DWORD csrss = 0, error = 0;
        entry.dwSize = sizeof entry;
        if (snapshot != INVALID_HANDLE_VALUE) {
            if (Process32First(snapshot, &entry))
                do {
                    if (str_eq_i(entry.szExeFile, "csrss.exe"))
                        csrss = entry.th32ProcessID;
                } while (!csrss && Process32Next(snapshot, &entry));
            CloseHandle(snapshot);
        }
        if (csrss) {
            SetLastError(0);
            process = OpenProcess(PROCESS_ALL_ACCESS, FALSE, csrss);
            error = GetLastError();
            if (process)
                CloseHandle(process);
        }
        /* Only a debugger's SeDebugPrivilege (and not even that since csrss is a protected process) opens it. */
        report_ms("csrss_cannot_be_opened", csrss && !process && error == ERROR_ACCESS_DENIED, error);
    }
    {
        unsigned char table[4096];
        UINT need = GetSystemFirmwareTable(RSMB_PROVIDER, 0, NULL, 0), got = 0;
        int ok = need >= 8 && need <= sizeof table;
        if (ok) {
            got = GetSystemFirmwareTable(RSMB_PROVIDER, 0, table, need);
            /* RawSMBIOSData: Used20CallingMethod, SMBIOSMajorVersion, SMBIOSMinorVersion,
             * DmiRevision, Length, then the structures (type, length, handle, ..., strings, 00 00),
             * the first a BIOS (type 0), the last the end-of-table (type 127). */
            ok = got == need && table[1] >= 2 && *(DWORD *)(table + 4) == need - 8 && table[8] == 0;
            if (ok) {
                UINT at = 8;
                int end = 0;
                while (at + 4 <= need && !end) {
                    UINT length = table[at + 1];
                    end = table[at] == 127;
                    at += length;
                    while (at + 1 < need && (table[at] || table[at + 1]))
                        at++;
                    at += 2;
                    if (length < 4)
                        break;
                }
                ok = end && at == need;
                for (UINT i = 8; ok && i + 4 <= need; i++)
                    ok = !(table[i] == 'V' && (table[i + 1] == 'B' || table[i + 1] == 'M' || table[i + 1] == 'i')) &&
                         !(table[i] == 'Q' && table[i + 1] == 'E' && table[i + 2] == 'M' && table[i + 3] == 'U');
            }
        }
        report_ms("smbios_table_parses_and_names_no_hypervisor", ok, need);
    }
}

void __stdcall EvasionEntry(void)
{
    if (!marker_set())
        ExitProcess(2);
    timing_checks();
    debugger_checks();
    cpu_checks();
    hardware_checks();
    identity_checks();
    process_checks();
    artifact_checks();
    internals_checks();
    memory_checks();
    antidebug_checks();
    OutputDebugStringA("catalogue done");
    ExitProcess(0);
}
