/* antiemu: an al-khaser / pafish style battery of environment checks (debugger, timing,
 * hardware, artefacts, emulator internals), each reported as one OutputDebugStringA line
 * "antiemu NAME=pass (detail)" or "antiemu NAME=TELL (detail)". A real Windows 10/11 desktop
 * passes every one; an emulator or sandbox that gives itself away says TELL.
 * Benign: it reads what the machine says about itself and does nothing without the marker. */
#include <winsock2.h>
#include <windows.h>
#include <tlhelp32.h>
#include <iphlpapi.h>
#include <winioctl.h>
#include "fidelity.h"

#ifdef _WIN64
#define OFF(x64, x86) (x64)
#else
#define OFF(x64, x86) (x86)
#endif

typedef LONG (NTAPI *nt_query_information_process_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
typedef LONG (NTAPI *nt_set_information_thread_t)(HANDLE, ULONG, PVOID, ULONG);
typedef LONG (NTAPI *nt_query_information_thread_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
typedef LONG (NTAPI *nt_query_system_time_t)(LARGE_INTEGER *);
typedef LONG (NTAPI *nt_delay_execution_t)(BOOLEAN, LARGE_INTEGER *);
typedef LONG (NTAPI *rtl_get_version_t)(OSVERSIONINFOW *);
typedef BOOL (WINAPI *is_wow64_process_t)(HANDLE, PBOOL);
typedef DWORD (WINAPI *get_active_processor_count_t)(WORD);

#define BOGUS_HANDLE ((HANDLE)(ULONG_PTR)0x0BADC0DC)
#define KUSER ((volatile unsigned char *)0x7FFE0000)

static unsigned int checks, tells;
static char out[600];

static void put(int *n, const char *s)
{
    while (*s && *n < 580)
        out[(*n)++] = *s++;
}

/* One verdict line per check. */
static void rec(const char *name, int ok, const char *detail)
{
    int n = 0;
    checks++;
    tells += !ok;
    put(&n, "antiemu ");
    put(&n, name);
    put(&n, ok ? "=pass" : "=TELL");
    if (detail && *detail) {
        put(&n, " (");
        put(&n, detail);
        put(&n, ")");
    }
    out[n] = 0;
    OutputDebugStringA(out);
}

static void rec_u(const char *name, int ok, unsigned long long value)
{
    char text[24];
    fmt_u64(text, value);
    rec(name, ok, text);
}

static void rec_x(const char *name, int ok, unsigned long long value)
{
    char text[24];
    int n = 0, shift;
    text[n++] = '0';
    text[n++] = 'x';
    for (shift = 60; shift > 0 && !((value >> shift) & 0xF); shift -= 4) {
    }
    for (; shift >= 0; shift -= 4)
        text[n++] = "0123456789abcdef"[(value >> shift) & 0xF];
    text[n] = 0;
    rec(name, ok, text);
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

static unsigned long long tsc(void)
{
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}

static void cpuid(unsigned int leaf, unsigned int r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static unsigned long long ksystem_time(ULONG_PTR offset)
{
    volatile ULONG *p = (volatile ULONG *)(0x7FFE0000 + offset);
    ULONG high, low;
    do { /* KSYSTEM_TIME: High1Time, LowPart, High2Time */
        high = p[1];
        low = p[0];
    } while (high != p[2]);
    return ((unsigned long long)high << 32) | low;
}

static unsigned long long filetime_now(void)
{
    FILETIME ft;
    GetSystemTimeAsFileTime(&ft);
    return ((unsigned long long)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
}

static int close_to(unsigned long long a, unsigned long long b, unsigned long long tolerance)
{
    return (a > b ? a - b : b - a) <= tolerance;
}

static FARPROC proc(const char *module, const char *name)
{
    HMODULE m = GetModuleHandleA(module);
    return m ? GetProcAddress(m, name) : NULL;
}

/* ---- debugger ------------------------------------------------------------------------------ */

static volatile int veh_calls;
static volatile DWORD veh_code;
static volatile ULONG_PTR veh_address, veh_pc, veh_dr;
static volatile ULONG_PTR skip_to;

static LONG CALLBACK record_and_skip(EXCEPTION_POINTERS *p)
{
    CONTEXT *c = p->ContextRecord;
    /* the verdicts' own OutputDebugStringA raises DBG_PRINTEXCEPTION_C to this handler too */
    if (p->ExceptionRecord->ExceptionCode == DBG_PRINTEXCEPTION_C ||
        p->ExceptionRecord->ExceptionCode == DBG_PRINTEXCEPTION_WIDE_C)
        return EXCEPTION_CONTINUE_SEARCH;
    veh_calls++;
    veh_code = p->ExceptionRecord->ExceptionCode;
    veh_address = (ULONG_PTR)p->ExceptionRecord->ExceptionAddress;
#ifdef _WIN64
    veh_pc = c->Rip;
    c->Rip = skip_to;
#else
    veh_pc = c->Eip;
    c->Eip = skip_to;
#endif
    veh_dr = c->Dr0 | c->Dr1 | c->Dr2 | c->Dr3 | (c->Dr7 & 0xFF);
    c->EFlags &= ~0x100u;
    return EXCEPTION_CONTINUE_EXECUTION;
}

extern char ae_int3_at[] __asm__("ae_int3_at");
extern char ae_int3_done[] __asm__("ae_int3_done");
extern char ae_icebp_at[] __asm__("ae_icebp_at");
extern char ae_icebp_done[] __asm__("ae_icebp_done");
extern char ae_ud2_at[] __asm__("ae_ud2_at");
extern char ae_ud2_done[] __asm__("ae_ud2_done");
extern char ae_div_done[] __asm__("ae_div_done");

static void debugger_checks(void)
{
    nt_query_information_process_t qip =
        (nt_query_information_process_t)(void *)proc("ntdll.dll", "NtQueryInformationProcess");
    nt_set_information_thread_t sit = (nt_set_information_thread_t)(void *)proc("ntdll.dll", "NtSetInformationThread");
    nt_query_information_thread_t qit =
        (nt_query_information_thread_t)(void *)proc("ntdll.dll", "NtQueryInformationThread");
    unsigned char *peb = current_peb();
    BOOL remote = TRUE;

    rec("IsDebuggerPresent", !IsDebuggerPresent(), "");
    rec("CheckRemoteDebuggerPresent", CheckRemoteDebuggerPresent(GetCurrentProcess(), &remote) && !remote, "");
    rec_u("peb_BeingDebugged", peb[2] == 0, peb[2]);
    rec_x("peb_NtGlobalFlag", (*(ULONG *)(peb + OFF(0xBC, 0x68)) & 0x70) == 0, *(ULONG *)(peb + OFF(0xBC, 0x68)));
    {
        unsigned char *heap = *(unsigned char **)(peb + OFF(0x30, 0x18));
        ULONG flags = heap ? *(ULONG *)(heap + OFF(0x70, 0x40)) : 0xFFFFFFFF;
        ULONG force = heap ? *(ULONG *)(heap + OFF(0x74, 0x44)) : 0xFFFFFFFF;
        rec_x("heap_Flags_ForceFlags", heap && (flags & ~(ULONG)HEAP_GROWABLE) == 0 && (flags & HEAP_GROWABLE) && force == 0,
              ((unsigned long long)flags << 32) | force);
    }
    if (qip) {
        ULONG_PTR port = 1, object = 1;
        ULONG flags = 0, length = 0;
        LONG s = qip(GetCurrentProcess(), 7, &port, sizeof port, NULL);
        rec_x("ProcessDebugPort", s == 0 && port == 0, (ULONG)s);
        s = qip(GetCurrentProcess(), 0x1E, &object, sizeof object, &length);
        rec_x("ProcessDebugObjectHandle", s == (LONG)0xC0000353 && object == 0, (ULONG)s);
        s = qip(GetCurrentProcess(), 0x1F, &flags, sizeof flags, NULL);
        rec_x("ProcessDebugFlags", s == 0 && flags == 1, (ULONG)s);
        /* The kernel probes the output buffer: NULL gives STATUS_ACCESS_VIOLATION, no exception. */
        s = qip(GetCurrentProcess(), 7, NULL, sizeof port, NULL);
        rec_x("ProcessDebugPort_null_buffer_is_access_violation", s == (LONG)0xC0000005, (ULONG)s);
        s = qip(GetCurrentProcess(), 7, &port, 2, NULL);
        rec_x("ProcessDebugPort_short_buffer_is_length_mismatch", s == (LONG)0xC0000004, (ULONG)s);
    } else {
        rec("NtQueryInformationProcess_exported", 0, "");
    }
    {
        unsigned char hidden = 0;
        int ok = sit && qit && sit(GetCurrentThread(), 0x11, NULL, 0) == 0 &&
                 qit(GetCurrentThread(), 0x11, &hidden, 1, NULL) == 0 && hidden == 1;
        rec_u("HideFromDebugger_then_query", ok, hidden);
    }
    {
        DWORD error;
        SetLastError(0x29A);
        OutputDebugStringA("antiemu probe");
        error = GetLastError();
        /* Windows 10/11: no debugger, the DBG_PRINTEXCEPTION_C is handled inside; the error stays. */
        rec_u("OutputDebugString_keeps_last_error", error == 0x29A, error);
    }
    {
        DWORD error;
        BOOL closed;
        SetLastError(0);
        closed = CloseHandle(BOGUS_HANDLE);
        error = GetLastError();
        rec_u("CloseHandle_invalid_no_exception", !closed && error == ERROR_INVALID_HANDLE, error);
    }
    {
        CONTEXT context;
        int ok;
        unsigned int i;
        for (i = 0; i < sizeof context; i++)
            ((volatile unsigned char *)&context)[i] = 0xCC;
        context.ContextFlags = CONTEXT_DEBUG_REGISTERS;
        ok = GetThreadContext(GetCurrentThread(), &context) && !context.Dr0 && !context.Dr1 && !context.Dr2 &&
             !context.Dr3 && !(context.Dr7 & 0xFF);
        rec("GetThreadContext_Dr0_Dr7_zero", ok, "");
    }
    {
        /* The parent: ProcessBasicInformation's InheritedFromUniqueProcessId is explorer.exe. */
        ULONG_PTR basic[6] = {0, 0, 0, 0, 0, 0};
        PROCESSENTRY32 entry;
        HANDLE snap;
        char parent[MAX_PATH];
        int i;
        parent[0] = 0;
        if (qip)
            qip(GetCurrentProcess(), 0, basic, sizeof basic, NULL);
        snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        entry.dwSize = sizeof entry;
        if (snap != INVALID_HANDLE_VALUE) {
            if (Process32First(snap, &entry))
                do {
                    if (basic[5] && entry.th32ProcessID == basic[5])
                        for (i = 0; i < MAX_PATH - 1 && (parent[i] = entry.szExeFile[i]); i++) {
                        }
                } while (Process32Next(snap, &entry));
            CloseHandle(snap);
        }
        rec("parent_is_explorer", str_eq_i(parent, "explorer.exe"), parent);
    }
    {
        /* ntdll!DbgBreakPoint is int3; ret, DbgUiRemoteBreakin a real function (anti-attach checks read both). */
        unsigned char *bp = (unsigned char *)(void *)proc("ntdll.dll", "DbgBreakPoint");
        rec_x("DbgBreakPoint_is_int3", bp && bp[0] == 0xCC, bp ? bp[0] : 0);
    }
}

/* Exceptions last: bare Speakeasy ends its run at the first one. */
static void exception_checks(void)
{
    void *veh;

    veh = AddVectoredExceptionHandler(1, record_and_skip);
    rec("AddVectoredExceptionHandler", veh != NULL, "");
    {
        /* int3: code EXCEPTION_BREAKPOINT, address of the int3 and context pc there too. */
        veh_calls = 0;
        skip_to = (ULONG_PTR)ae_int3_done;
        __asm__ volatile(".globl ae_int3_at\nae_int3_at:\n\tint3\n\tnop\n\t.globl ae_int3_done\nae_int3_done:\n\tnop" ::: "memory");
        rec_x("int3_under_veh", veh_calls == 1 && veh_code == EXCEPTION_BREAKPOINT && veh_address == (ULONG_PTR)ae_int3_at &&
                                     veh_pc == (ULONG_PTR)ae_int3_at,
              veh_calls == 1 ? veh_pc - (ULONG_PTR)ae_int3_at : 0xDEAD);
        rec_x("veh_context_debug_registers_zero", veh_calls == 1 && veh_dr == 0, veh_dr);
    }
    {
        /* icebp (F1): a single-step exception after the instruction. */
        veh_calls = 0;
        skip_to = (ULONG_PTR)ae_icebp_done;
        __asm__ volatile(".globl ae_icebp_at\nae_icebp_at:\n\t.byte 0xF1\n\tnop\n\t.globl ae_icebp_done\nae_icebp_done:\n\tnop" ::: "memory");
        rec_x("icebp_under_veh", veh_calls == 1 && veh_code == EXCEPTION_SINGLE_STEP, veh_code);
    }
    {
        veh_calls = 0;
        skip_to = (ULONG_PTR)ae_ud2_done;
        __asm__ volatile(".globl ae_ud2_at\nae_ud2_at:\n\tud2\n\t.globl ae_ud2_done\nae_ud2_done:\n\tnop" ::: "memory");
        rec_x("ud2_under_veh", veh_calls == 1 && veh_code == EXCEPTION_ILLEGAL_INSTRUCTION && veh_address == (ULONG_PTR)ae_ud2_at,
              veh_code);
    }
    {
        volatile unsigned int zero = 0, result = 1;
        veh_calls = 0;
        skip_to = (ULONG_PTR)ae_div_done;
        __asm__ volatile("xorl %%edx, %%edx\n\tmovl $7, %%eax\n\tdivl %1\n\t.globl ae_div_done\nae_div_done:\n\tmovl %%eax, %0"
                         : "=m"(result) : "m"(zero) : "eax", "edx", "memory");
        rec_x("divide_by_zero_under_veh", veh_calls == 1 && veh_code == EXCEPTION_INT_DIVIDE_BY_ZERO, veh_code);
    }
    {
        /* RaiseException reaches the vectored handler with the code and the flags given. */
        veh_calls = 0;
        skip_to = 0;
        RemoveVectoredExceptionHandler(veh);
        veh = NULL;
    }
}

/* ---- timing -------------------------------------------------------------------------------- */

#define SLEEP_MS 12000ULL

static void timing_checks(void)
{
    nt_query_system_time_t qst = (nt_query_system_time_t)(void *)proc("ntdll.dll", "NtQuerySystemTime");
    nt_delay_execution_t delay = (nt_delay_execution_t)(void *)proc("ntdll.dll", "NtDelayExecution");
    LARGE_INTEGER f, q0, q1, st;
    unsigned long long t0, t1, ft0, ft1, tick0, tick1, it0, it1;
    unsigned int regs[4];

    QueryPerformanceFrequency(&f);
    {
        unsigned long long best = ~0ULL;
        int i;
        for (i = 0; i < 5; i++) {
            t0 = tsc();
            cpuid(0, regs);
            t1 = tsc();
            if (t1 - t0 < best)
                best = t1 - t0;
        }
        rec_u("rdtsc_around_cpuid_cycles", best > 0 && best < 1000, best);
        t0 = tsc();
        t1 = tsc();
        rec_u("rdtsc_back_to_back_moves", t1 > t0 && t1 - t0 < 1000, t1 - t0);
    }
    {
        QueryPerformanceCounter(&q0);
        tick0 = GetTickCount64();
        ft0 = filetime_now();
        it0 = ksystem_time(0x8);
        t0 = tsc();
        Sleep((DWORD)SLEEP_MS);
        QueryPerformanceCounter(&q1);
        tick1 = GetTickCount64();
        ft1 = filetime_now();
        it1 = ksystem_time(0x8);
        t1 = tsc();
        rec_u("Sleep_qpc_ms", close_to((unsigned long long)(q1.QuadPart - q0.QuadPart) * 1000 / (unsigned long long)f.QuadPart,
                                       SLEEP_MS, 100),
              (unsigned long long)(q1.QuadPart - q0.QuadPart) * 1000 / (unsigned long long)f.QuadPart);
        rec_u("Sleep_tickcount64_ms", close_to(tick1 - tick0, SLEEP_MS, 100), tick1 - tick0);
        rec_u("Sleep_filetime_ms", close_to((ft1 - ft0) / 10000, SLEEP_MS, 100), (ft1 - ft0) / 10000);
        rec_u("Sleep_kuser_interrupt_time_ms", close_to((it1 - it0) / 10000, SLEEP_MS, 100), (it1 - it0) / 10000);
        rec_u("Sleep_rdtsc_mcycles", (t1 - t0) / SLEEP_MS >= 1000000 && (t1 - t0) / SLEEP_MS <= 6000000, (t1 - t0) / 1000000);
    }
    if (delay) {
        LARGE_INTEGER interval;
        interval.QuadPart = -50000000LL; /* 5 s, relative */
        tick0 = GetTickCount64();
        ft0 = filetime_now();
        delay(FALSE, &interval);
        tick1 = GetTickCount64();
        ft1 = filetime_now();
        rec_u("NtDelayExecution_advances_clocks_ms", close_to(tick1 - tick0, 5000, 100) && close_to((ft1 - ft0) / 10000, 5000, 100),
              tick1 - tick0);
    } else {
        rec("NtDelayExecution_exported", 0, "");
    }
    {
        DWORD t = GetTickCount();
        unsigned long long k = (ksystem_time(0x320) * *(volatile ULONG *)0x7FFE0004) >> 24;
        rec_u("kuser_TickCount_vs_GetTickCount_ms", close_to(k & 0xFFFFFFFFULL, t, 100), k);
    }
    {
        ULONGLONG unbiased = 0;
        LARGE_INTEGER q;
        QueryPerformanceCounter(&q);
        QueryUnbiasedInterruptTime(&unbiased);
        tick0 = GetTickCount64();
        /* On Windows 10/11 QPC counts from boot: its seconds are the uptime's. */
        rec_u("qpc_counts_from_boot_ms",
              close_to((unsigned long long)q.QuadPart / (unsigned long long)f.QuadPart * 1000, tick0, 2000),
              (unsigned long long)q.QuadPart / (unsigned long long)f.QuadPart * 1000);
        rec_u("unbiased_interrupt_time_vs_tickcount_ms", close_to(unbiased / 10000, tick0, 2000), unbiased / 10000);
        rec_u("uptime_minutes_plausible", tick0 > 10 * 60000ULL && tick0 < 60ULL * 86400000ULL, tick0 / 60000);
    }
    if (qst) {
        unsigned long long k;
        st.QuadPart = 0;
        qst(&st);
        k = ksystem_time(0x14);
        rec_u("NtQuerySystemTime_vs_kuser_SystemTime_ms", close_to((unsigned long long)st.QuadPart / 10000, k / 10000, 100),
              (unsigned long long)st.QuadPart / 10000 - k / 10000);
        rec_u("NtQuerySystemTime_vs_filetime_ms", close_to((unsigned long long)st.QuadPart / 10000, filetime_now() / 10000, 100),
              0);
    } else {
        rec("NtQuerySystemTime_exported", 0, "");
    }
    {
        SYSTEMTIME local, utc;
        TIME_ZONE_INFORMATION tz;
        FILETIME fl, fu;
        LONG bias_minutes;
        DWORD zone = GetTimeZoneInformation(&tz);
        GetLocalTime(&local);
        GetSystemTime(&utc);
        SystemTimeToFileTime(&local, &fl);
        SystemTimeToFileTime(&utc, &fu);
        bias_minutes = (LONG)(((long long)(((unsigned long long)fu.dwHighDateTime << 32) | fu.dwLowDateTime) -
                               (long long)(((unsigned long long)fl.dwHighDateTime << 32) | fl.dwLowDateTime)) /
                              600000000LL);
        {
            LONG want = tz.Bias + (zone == TIME_ZONE_ID_DAYLIGHT ? tz.DaylightBias : zone == TIME_ZONE_ID_STANDARD ? tz.StandardBias : 0);
            /* KUSER_SHARED_DATA.TimeZoneBias (100 ns units) agrees too. */
            long long kbias = (long long)ksystem_time(0x20) / 600000000LL;
            rec_u("local_time_minus_utc_is_time_zone_bias", zone != TIME_ZONE_ID_INVALID && bias_minutes == want && kbias == want,
                  (unsigned long long)(long long)bias_minutes);
        }
    }
}

/* ---- hardware ------------------------------------------------------------------------------ */

static const unsigned char vm_ouis[][3] = {
    {0x00, 0x05, 0x69}, {0x00, 0x0C, 0x29}, {0x00, 0x1C, 0x14}, {0x00, 0x50, 0x56}, /* VMware */
    {0x08, 0x00, 0x27}, {0x0A, 0x00, 0x27},                                          /* VirtualBox */
    {0x00, 0x03, 0xFF}, {0x00, 0x15, 0x5D},                                          /* Hyper-V / Virtual PC */
    {0x52, 0x54, 0x00}, {0x00, 0x16, 0x3E}, {0x00, 0x1C, 0x42},                      /* QEMU/KVM, Xen, Parallels */
};

static int vm_mac(const unsigned char *mac)
{
    unsigned int i;
    for (i = 0; i < sizeof vm_ouis / sizeof vm_ouis[0]; i++)
        if (mac[0] == vm_ouis[i][0] && mac[1] == vm_ouis[i][1] && mac[2] == vm_ouis[i][2])
            return 1;
    return 0;
}

static unsigned char big[16384];

static void hardware_checks(void)
{
    unsigned int regs[4];
    SYSTEM_INFO si, native;
    MEMORYSTATUSEX ms;
    char text[64];
    DWORD n;

    cpuid(1, regs);
    rec_x("cpuid_hypervisor_bit", !(regs[2] & 0x80000000u), regs[2]);
    {
        char vendor[13];
        cpuid(0x40000000, regs);
        *(unsigned int *)(vendor + 0) = regs[1];
        *(unsigned int *)(vendor + 4) = regs[2];
        *(unsigned int *)(vendor + 8) = regs[3];
        vendor[12] = 0;
        rec("cpuid_leaf_40000000_no_hypervisor_vendor",
            !str_has_i(vendor, "vmware") && !str_has_i(vendor, "vbox") && !str_has_i(vendor, "kvm") &&
                !str_has_i(vendor, "microsoft hv") && !str_has_i(vendor, "xen") && !str_has_i(vendor, "tcg"),
            vendor[0] >= ' ' ? vendor : "");
    }
    {
        char brand[49];
        unsigned int i;
        for (i = 0; i < 3; i++) {
            cpuid(0x80000002 + i, regs);
            *(unsigned int *)(brand + 16 * i + 0) = regs[0];
            *(unsigned int *)(brand + 16 * i + 4) = regs[1];
            *(unsigned int *)(brand + 16 * i + 8) = regs[2];
            *(unsigned int *)(brand + 16 * i + 12) = regs[3];
        }
        brand[48] = 0;
        rec("cpuid_brand_string", !str_has_i(brand, "qemu") && !str_has_i(brand, "virtual") && (str_has_i(brand, "intel") || str_has_i(brand, "amd")),
            brand);
    }
    GetSystemInfo(&si);
    GetNativeSystemInfo(&native);
    {
        get_active_processor_count_t active =
            (get_active_processor_count_t)(void *)proc("kernel32.dll", "GetActiveProcessorCount");
        DWORD a = active ? active(0xFFFF) : 0;
        char env[16];
        DWORD env_n = GetEnvironmentVariableA("NUMBER_OF_PROCESSORS", env, sizeof env);
        unsigned long long env_v = 0;
        unsigned char *peb = current_peb();
        for (n = 0; n < env_n; n++)
            env_v = env_v * 10 + (unsigned)(env[n] - '0');
        rec_u("processors_at_least_2", si.dwNumberOfProcessors >= 2, si.dwNumberOfProcessors);
        rec_u("GetActiveProcessorCount_matches", a == si.dwNumberOfProcessors, a);
        rec_u("NUMBER_OF_PROCESSORS_matches", env_n && env_v == si.dwNumberOfProcessors, env_v);
        rec_u("kuser_ActiveProcessorCount_matches", *(volatile ULONG *)(KUSER + 0x3C0) == si.dwNumberOfProcessors,
              *(volatile ULONG *)(KUSER + 0x3C0));
        rec_u("peb_NumberOfProcessors_matches", *(ULONG *)(peb + OFF(0xB8, 0x64)) == si.dwNumberOfProcessors,
              *(ULONG *)(peb + OFF(0xB8, 0x64)));
        rec_u("native_system_info_processors_match", native.dwNumberOfProcessors == si.dwNumberOfProcessors &&
                                                         native.dwActiveProcessorMask == si.dwActiveProcessorMask,
              native.dwNumberOfProcessors);
    }
    ms.dwLength = sizeof ms;
    rec_u("GlobalMemoryStatusEx_total_at_least_4_GiB_MiB", GlobalMemoryStatusEx(&ms) && ms.ullTotalPhys >= (4ULL << 30),
          ms.ullTotalPhys >> 20);
    static ULARGE_INTEGER c_total;
    {
        ULARGE_INTEGER avail, free_bytes;
        c_total.QuadPart = 0;
        rec_u("GetDiskFreeSpaceEx_total_at_least_80_GiB", GetDiskFreeSpaceExA("C:\\", &avail, &c_total, &free_bytes) &&
                                                              c_total.QuadPart >= (80ULL << 30),
              c_total.QuadPart >> 30);
    }
    {
        HANDLE disk = CreateFileA("\\\\.\\PhysicalDrive0", 0, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL);
        GET_LENGTH_INFORMATION length;
        DWORD got = 0;
        int ok = 0;
        length.Length.QuadPart = 0;
        if (disk != INVALID_HANDLE_VALUE) {
            ok = DeviceIoControl(disk, IOCTL_DISK_GET_LENGTH_INFO, NULL, 0, &length, sizeof length, &got, NULL) &&
                 got == sizeof length && length.Length.QuadPart >= (80LL << 30) &&
                 (unsigned long long)length.Length.QuadPart >= c_total.QuadPart;
        }
        rec_u("IOCTL_DISK_GET_LENGTH_INFO_at_least_80_GiB", ok, (unsigned long long)length.Length.QuadPart >> 30);
        ok = 0;
        if (disk != INVALID_HANDLE_VALUE) {
            STORAGE_PROPERTY_QUERY query;
            STORAGE_DEVICE_DESCRIPTOR *d = (STORAGE_DEVICE_DESCRIPTOR *)big;
            query.PropertyId = StorageDeviceProperty;
            query.QueryType = PropertyStandardQuery;
            query.AdditionalParameters[0] = 0;
            big[0] = 0;
            if (DeviceIoControl(disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, sizeof query, big, 1024, &got, NULL) &&
                got >= sizeof *d && d->ProductIdOffset && d->ProductIdOffset < got) {
                const char *product = (const char *)big + d->ProductIdOffset;
                const char *vendor = d->VendorIdOffset && d->VendorIdOffset < got ? (const char *)big + d->VendorIdOffset : "";
                ok = product[0] && !str_has_i(product, "vbox") && !str_has_i(product, "vmware") && !str_has_i(product, "qemu") &&
                     !str_has_i(product, "virtual") && !str_has_i(vendor, "vmware") && !str_has_i(vendor, "qemu");
                rec("IOCTL_STORAGE_QUERY_PROPERTY_disk_model", ok, product);
            } else {
                rec("IOCTL_STORAGE_QUERY_PROPERTY_disk_model", 0, "failed");
            }
            CloseHandle(disk);
        } else {
            rec("IOCTL_STORAGE_QUERY_PROPERTY_disk_model", 0, "PhysicalDrive0 not opened");
        }
    }
    rec_u("screen_at_least_1024x768", GetSystemMetrics(SM_CXSCREEN) >= 1024 && GetSystemMetrics(SM_CYSCREEN) >= 768,
          (unsigned)GetSystemMetrics(SM_CXSCREEN));
    rec_u("monitors_at_least_1", GetSystemMetrics(SM_CMONITORS) >= 1, (unsigned)GetSystemMetrics(SM_CMONITORS));
    {
        POINT a, b;
        a.x = a.y = b.x = b.y = -1;
        GetCursorPos(&a);
        Sleep(3000);
        GetCursorPos(&b);
        rec("GetCursorPos_moves", a.x != b.x || a.y != b.y, "");
    }
    {
        /* GetAdaptersInfo and GetAdaptersAddresses: the same adapter (name, MAC), a MAC of no
         * hypervisor, an IPv4 address that is not loopback (a sandbox with no network). */
        static char info_name[MAX_ADAPTER_NAME_LENGTH + 4];
        static unsigned char info_mac[6];
        ULONG size = sizeof big;
        IP_ADAPTER_INFO *info = (IP_ADAPTER_INFO *)big;
        DWORD r = GetAdaptersInfo(info, &size);
        int count = 0, bad = 0, zero = 0, loopback = 1;
        if (r == ERROR_SUCCESS) {
            for (n = 0; n < sizeof info_name - 1 && (info_name[n] = info->AdapterName[n]); n++) {
            }
            for (n = 0; n < 6; n++)
                info_mac[n] = info->Address[n];
            loopback = info->IpAddressList.IpAddress.String[0] == '1' && info->IpAddressList.IpAddress.String[1] == '2' &&
                       info->IpAddressList.IpAddress.String[2] == '7';
            for (; info; info = info->Next) {
                count++;
                bad |= vm_mac(info->Address);
                zero |= info->AddressLength != 6 || (info->Address[0] | info->Address[1] | info->Address[2] | info->Address[3] |
                                                     info->Address[4] | info->Address[5]) == 0;
                if (count > 16)
                    break;
            }
        }
        rec_u("GetAdaptersInfo_mac_not_a_vm_oui", r == ERROR_SUCCESS && count >= 1 && !bad && !zero, r);
        rec("GetAdaptersInfo_ip_not_loopback", r == ERROR_SUCCESS && !loopback, r == ERROR_SUCCESS ? ((IP_ADAPTER_INFO *)big)->IpAddressList.IpAddress.String : "");
        rec("GetAdaptersInfo_name_is_a_guid", info_name[0] == '{' && !str_has_i(info_name, "00000000-0000"), info_name);
        {
            IP_ADAPTER_ADDRESSES *a = (IP_ADAPTER_ADDRESSES *)big;
            ULONG need = 0, r2;
            int same = 0, v4 = 0;
            bad = 0;
            count = 0;
            r2 = GetAdaptersAddresses(AF_UNSPEC, 0, NULL, NULL, &need);
            size = sizeof big;
            r = GetAdaptersAddresses(AF_UNSPEC, 0, NULL, a, &size);
            if (r == ERROR_SUCCESS) {
                same = str_eq_i(a->AdapterName, info_name) && a->PhysicalAddressLength == 6;
                for (n = 0; same && n < 6; n++)
                    same = a->PhysicalAddress[n] == info_mac[n];
                v4 = a->FirstUnicastAddress && a->FirstUnicastAddress->Address.lpSockaddr &&
                     a->FirstUnicastAddress->Address.lpSockaddr->sa_family == AF_INET &&
                     (unsigned char)a->FirstUnicastAddress->Address.lpSockaddr->sa_data[2] != 127;
                for (; a && count < 16; a = a->Next) {
                    if (a->PhysicalAddressLength == 6) {
                        count++;
                        bad |= vm_mac(a->PhysicalAddress);
                    }
                }
            }
            rec_u("GetAdaptersAddresses_mac_not_a_vm_oui", r == ERROR_SUCCESS && count >= 1 && !bad, r);
            rec_u("GetAdaptersAddresses_size_query", r2 == ERROR_BUFFER_OVERFLOW && need >= sizeof(IP_ADAPTER_ADDRESSES) && need <= size, need);
            rec("GetAdaptersAddresses_matches_GetAdaptersInfo", same && v4, "");
        }
    }
    {
        SYSTEM_POWER_STATUS power;
        int ok = GetSystemPowerStatus(&power) && (power.ACLineStatus == 0 || power.ACLineStatus == 1) &&
                 (power.BatteryFlag == 128 || power.BatteryLifePercent <= 100);
        rec_u("GetSystemPowerStatus_plausible", ok, power.ACLineStatus);
    }
    {
        DWORD serial = 0, max_len = 0, flags = 0;
        char fs[16];
        fs[0] = 0;
        rec_x("volume_serial_and_ntfs",
              GetVolumeInformationA("C:\\", NULL, 0, &serial, &max_len, &flags, fs, sizeof fs) && serial != 0 && str_eq_i(fs, "NTFS"),
              serial);
    }
    (void)text;
}

/* ---- artefacts ----------------------------------------------------------------------------- */

static int reg_value_has(HKEY root, const char *path, const char *value, const char *const *needles, int count, char *got, DWORD size)
{
    HKEY key;
    DWORD type = 0, n = size - 1;
    int i;
    got[0] = 0;
    if (RegOpenKeyExA(root, path, 0, KEY_READ, &key) != ERROR_SUCCESS)
        return -1;
    if (RegQueryValueExA(key, value, NULL, &type, (BYTE *)got, &n) != ERROR_SUCCESS) {
        RegCloseKey(key);
        return -2;
    }
    RegCloseKey(key);
    got[n < size ? n : size - 1] = 0;
    for (i = 0; i < count; i++)
        if (str_has_i(got, needles[i]))
            return 1;
    return 0;
}

static void artefact_checks(void)
{
    static const char *const vm_words[] = {"vbox", "virtualbox", "vmware", "qemu", "bochs", "virtual", "xen", "innotek", "parallels"};
    static const char *const files[] = {"C:\\Windows\\System32\\drivers\\vmmouse.sys", "C:\\Windows\\System32\\drivers\\VBoxGuest.sys",
                                        "C:\\Windows\\System32\\drivers\\vmhgfs.sys", "C:\\Windows\\System32\\drivers\\VBoxMouse.sys",
                                        "C:\\Windows\\System32\\vboxdisp.dll", "C:\\Windows\\System32\\vmGuestLib.dll"};
    static const char *const procs[] = {"vmtoolsd.exe", "vboxservice.exe", "vboxtray.exe", "procmon.exe", "procmon64.exe",
                                        "wireshark.exe", "x64dbg.exe", "x32dbg.exe", "ollydbg.exe", "procexp64.exe",
                                        "fiddler.exe", "tcpview.exe", "vmwaretray.exe", "joeboxcontrol.exe", "regmon.exe"};
    static const char *const dlls[] = {"sbiedll.dll", "dbghelp.dll", "api_log.dll", "dir_watch.dll", "pstorec.dll",
                                       "vmcheck.dll", "wpespy.dll", "cmdvrt32.dll", "cmdvrt64.dll", "snxhk.dll", "avghookx.dll"};
    char got[512];
    unsigned int i;
    int bad = 0, r;

    for (i = 0; i < sizeof files / sizeof files[0]; i++)
        bad |= GetFileAttributesA(files[i]) != INVALID_FILE_ATTRIBUTES;
    rec("no_vm_driver_files", !bad, "");
    /* The machine's BIOS as the registry describes it: present, and no hypervisor's name. */
    r = reg_value_has(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System", "SystemBiosVersion", vm_words, 9, got, sizeof got);
    rec_u("SystemBiosVersion_present_not_vm", r == 0, (unsigned long long)(long long)r);
    r = reg_value_has(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System", "VideoBiosVersion", vm_words, 9, got, sizeof got);
    rec_u("VideoBiosVersion_not_vm", r != 1, (unsigned long long)(long long)r);
    r = reg_value_has(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System\\BIOS", "SystemManufacturer", vm_words, 9, got, sizeof got);
    rec("BIOS_SystemManufacturer_present_not_vm", r == 0, got);
    r = reg_value_has(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System\\BIOS", "SystemProductName", vm_words, 9, got, sizeof got);
    rec("BIOS_SystemProductName_present_not_vm", r == 0, got);
    r = reg_value_has(HKEY_LOCAL_MACHINE, "HARDWARE\\DEVICEMAP\\Scsi\\Scsi Port 0\\Scsi Bus 0\\Target Id 0\\Logical Unit Id 0",
                      "Identifier", vm_words, 9, got, sizeof got);
    rec("scsi_port0_identifier_not_vm", r != 1, got);
    r = reg_value_has(HKEY_LOCAL_MACHINE, "SYSTEM\\CurrentControlSet\\Control\\SystemInformation", "SystemProductName", vm_words, 9, got,
                      sizeof got);
    rec("SystemInformation_SystemProductName_not_vm", r != 1, got);
    {
        HKEY key;
        static const char *const keys[] = {"SOFTWARE\\Oracle\\VirtualBox Guest Additions", "SOFTWARE\\VMware, Inc.\\VMware Tools",
                                           "HARDWARE\\ACPI\\DSDT\\VBOX__", "SYSTEM\\CurrentControlSet\\Enum\\PCI\\VEN_80EE&DEV_CAFE",
                                           "SOFTWARE\\Wine"};
        bad = 0;
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (RegOpenKeyExA(HKEY_LOCAL_MACHINE, keys[i], 0, KEY_READ, &key) == ERROR_SUCCESS) {
                bad = 1;
                RegCloseKey(key);
            }
        rec("no_vm_registry_keys", !bad, "");
    }
    {
        PROCESSENTRY32 entry;
        HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
        unsigned int count = 0, j;
        bad = 0;
        entry.dwSize = sizeof entry;
        if (snap != INVALID_HANDLE_VALUE) {
            if (Process32First(snap, &entry))
                do {
                    count++;
                    for (j = 0; j < sizeof procs / sizeof procs[0]; j++)
                        bad |= str_eq_i(entry.szExeFile, procs[j]);
                } while (Process32Next(snap, &entry));
            CloseHandle(snap);
        }
        rec_u("no_analysis_processes", !bad && count >= 20, count);
    }
    bad = 0;
    for (i = 0; i < sizeof dlls / sizeof dlls[0]; i++)
        bad |= GetModuleHandleA(dlls[i]) != NULL;
    rec("no_sandbox_modules_loaded", !bad, "");
    rec("no_debugger_windows", !FindWindowA("OLLYDBG", NULL) && !FindWindowA("WinDbgFrameClass", NULL) &&
                                   !FindWindowA("Zeta Debugger", NULL) && !FindWindowA("Rock Debugger", NULL) &&
                                   !FindWindowA("ObsidianGUI", NULL),
        "");
    {
        char user[256], host[256], path[MAX_PATH];
        DWORD size = sizeof user;
        user[0] = host[0] = path[0] = 0;
        GetUserNameA(user, &size);
        size = sizeof host;
        GetComputerNameA(host, &size);
        rec("user_name_not_blacklisted", user[0] && !str_eq_i(user, "sandbox") && !str_eq_i(user, "malware") &&
                                             !str_eq_i(user, "virus") && !str_eq_i(user, "currentuser") &&
                                             !str_eq_i(user, "john doe") && !str_eq_i(user, "wdagutilityaccount"),
            user);
        rec("computer_name_not_blacklisted", host[0] && !str_has_i(host, "sandbox") && !str_eq_i(host, "7silvia") &&
                                                 !str_eq_i(host, "hanspeter-pc") && !str_has_i(host, "cuckoo"),
            host);
        GetModuleFileNameA(NULL, path, sizeof path);
        rec("sample_path_not_blacklisted", path[0] && !str_has_i(path, "\\sample") && !str_has_i(path, "\\malware") &&
                                               !str_has_i(path, "\\sandbox") && !str_has_i(path, "\\virus") &&
                                               !(path[0] && path[1] == ':' && path[2] == '\\' && !str_has_i(path + 3, "\\")),
            path);
    }
    rec("no_sandbox_dll_exports", !proc("kernel32.dll", "wine_get_unix_file_name") && !proc("kernel32.dll", "MpVmp32Entry") &&
                                      !proc("ntdll.dll", "wine_server_call"),
        "");
}

/* ---- emulator internals -------------------------------------------------------------------- */

static IMAGE_EXPORT_DIRECTORY *exports_of(HMODULE m)
{
    unsigned char *base = (unsigned char *)m;
    IMAGE_NT_HEADERS *nt;
    DWORD rva;
    if (!base || ((IMAGE_DOS_HEADER *)base)->e_magic != IMAGE_DOS_SIGNATURE)
        return NULL;
    nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        return NULL;
    rva = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT].VirtualAddress;
    return rva ? (IMAGE_EXPORT_DIRECTORY *)(base + rva) : NULL;
}

static SIZE_T image_size(HMODULE m)
{
    unsigned char *base = (unsigned char *)m;
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    return nt->OptionalHeader.SizeOfImage;
}

/* A shellcode-style export walk: the name's address from the export directory. */
static void *walk_export(HMODULE m, const char *name)
{
    IMAGE_EXPORT_DIRECTORY *e = exports_of(m);
    unsigned char *base = (unsigned char *)m;
    DWORD i;
    if (!e)
        return NULL;
    for (i = 0; i < e->NumberOfNames; i++) {
        const char *n = (const char *)(base + ((DWORD *)(base + e->AddressOfNames))[i]);
        if (str_eq_i(n, name) && n[0] == name[0]) {
            WORD ordinal = ((WORD *)(base + e->AddressOfNameOrdinals))[i];
            return base + ((DWORD *)(base + e->AddressOfFunctions))[ordinal];
        }
    }
    return NULL;
}

static int wide_ends_with_i(const WCHAR *s, USHORT bytes, const char *tail)
{
    unsigned int n = bytes / 2, t = 0, i;
    while (tail[t])
        t++;
    if (n < t)
        return 0;
    for (i = 0; i < t; i++) {
        WCHAR x = s[n - t + i];
        char y = tail[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != (WCHAR)y) return 0;
    }
    return 1;
}

typedef struct { USHORT Length, MaximumLength; WCHAR *Buffer; } counted_wide_t;

static void internals_checks(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll"), k32 = GetModuleHandleA("kernel32.dll");
    unsigned char *peb = current_peb(), *teb = current_teb();
    MEMORY_BASIC_INFORMATION mbi;
    IMAGE_EXPORT_DIRECTORY *e;

    rec("wine_get_version_absent", !proc("ntdll.dll", "wine_get_version"), "");
    e = exports_of(ntdll);
    rec_u("ntdll_export_count_plausible", e && e->NumberOfNames >= 1500, e ? e->NumberOfNames : 0);
    e = exports_of(k32);
    rec_u("kernel32_export_count_plausible", e && e->NumberOfNames >= 1200, e ? e->NumberOfNames : 0);
    {
        unsigned char *p = (unsigned char *)(void *)GetProcAddress(ntdll, "NtClose");
#ifdef _WIN64
        int ok = p && p[0] == 0x4C && p[1] == 0x8B && p[2] == 0xD1 && p[3] == 0xB8;
#else
        int ok = p && p[0] == 0xB8;
#endif
        rec_x("NtClose_is_a_syscall_stub", ok, p ? p[0] : 0);
    }
    {
        static const char *const names[] = {"CreateFileW", "VirtualAlloc", "GetProcAddress", "LoadLibraryA", "Sleep"};
        unsigned int i;
        int inside = 1, walked = 1;
        ULONG_PTR lo = (ULONG_PTR)k32, hi = lo + (k32 ? image_size(k32) : 0);
        for (i = 0; i < sizeof names / sizeof names[0]; i++) {
            ULONG_PTR a = (ULONG_PTR)(void *)GetProcAddress(k32, names[i]);
            inside &= a >= lo && a < hi;
            walked &= (void *)a == walk_export(k32, names[i]);
        }
        rec("kernel32_exports_inside_its_image", k32 && inside, "");
        rec("GetProcAddress_matches_export_walk", k32 && walked, "");
    }
    {
        FARPROC p;
        DWORD error;
        SetLastError(0);
        p = GetProcAddress(k32, "QzvNoSuchExportAtAll");
        error = GetLastError();
        rec_u("GetProcAddress_unknown_export_fails", p == NULL && error == ERROR_PROC_NOT_FOUND, error);
    }
    {
        int ok = VirtualQuery(peb, &mbi, sizeof mbi) && mbi.State == MEM_COMMIT && mbi.Type == MEM_PRIVATE &&
                 mbi.Protect == PAGE_READWRITE;
        rec_x("VirtualQuery_peb_private_rw", ok, mbi.Type | mbi.Protect);
        ok = VirtualQuery(teb, &mbi, sizeof mbi) && mbi.State == MEM_COMMIT && mbi.Type == MEM_PRIVATE && mbi.Protect == PAGE_READWRITE;
        rec_x("VirtualQuery_teb_private_rw", ok, mbi.Type | mbi.Protect);
        ok = VirtualQuery((void *)0x7FFE0000, &mbi, sizeof mbi) && mbi.State == MEM_COMMIT && mbi.Protect == PAGE_READONLY;
        rec_x("VirtualQuery_kuser_shared_data_readonly", ok, mbi.Protect);
        rec_x("peb_above_64k", (ULONG_PTR)peb >= 0x10000 && (ULONG_PTR)teb >= 0x10000, (ULONG_PTR)peb);
    }
    {
        volatile int local = 0;
        ULONG_PTR base = *(ULONG_PTR *)(teb + OFF(0x8, 0x4)), limit = *(ULONG_PTR *)(teb + OFF(0x10, 0x8));
        ULONG_PTR here = (ULONG_PTR)&local;
        rec("teb_self_pointer_and_peb", *(unsigned char **)(teb + OFF(0x30, 0x18)) == teb && *(unsigned char **)(teb + OFF(0x60, 0x30)) == peb,
            "");
        rec_x("teb_stack_limits_contain_sp", limit < here && here < base && base - limit >= 0x1000, base - limit);
    }
    {
        char path[MAX_PATH];
        DWORD n = GetModuleFileNameA(ntdll, path, sizeof path);
#ifdef _WIN64
        rec("GetModuleFileName_ntdll", n && str_eq_i(path, "C:\\Windows\\System32\\ntdll.dll"), path);
#else
        rec("GetModuleFileName_ntdll", n && (str_eq_i(path, "C:\\Windows\\System32\\ntdll.dll") || str_eq_i(path, "C:\\Windows\\SysWOW64\\ntdll.dll")),
            path);
#endif
    }
    {
        /* The loader's order: the program, ntdll, kernel32 (shellcode takes the third entry). */
        unsigned char *ldr = *(unsigned char **)(peb + OFF(0x18, 0xC));
        LIST_ENTRY *head = (LIST_ENTRY *)(ldr + OFF(0x10, 0xC)), *entry = head->Flink;
        unsigned char *bases[3] = {0, 0, 0};
        counted_wide_t *names[3] = {0, 0, 0};
        int i;
        for (i = 0; i < 3 && entry != head; i++, entry = entry->Flink) {
            bases[i] = *(unsigned char **)((unsigned char *)entry + OFF(0x30, 0x18));
            names[i] = (counted_wide_t *)((unsigned char *)entry + OFF(0x58, 0x2C));
        }
        rec("loader_order_exe_ntdll_kernel32",
            bases[0] == (unsigned char *)GetModuleHandleA(NULL) && bases[1] == (unsigned char *)ntdll && bases[2] == (unsigned char *)k32 &&
                names[2] && wide_ends_with_i(names[2]->Buffer, names[2]->Length, "kernel32.dll"),
            "");
        rec("kernelbase_loaded", GetModuleHandleA("kernelbase.dll") != NULL, "");
    }
    {
        OSVERSIONINFOEXA v;
        OSVERSIONINFOW rv;
        rtl_get_version_t rtl = (rtl_get_version_t)(void *)GetProcAddress(ntdll, "RtlGetVersion");
        int ok;
        v.dwOSVersionInfoSize = sizeof v;
        rv.dwOSVersionInfoSize = sizeof rv;
        ok = GetVersionExA((OSVERSIONINFOA *)&v) && rtl && rtl(&rv) == 0;
        /* Without a manifest naming Windows 10, GetVersionEx says 6.2 build 9200 on Windows 10/11;
         * RtlGetVersion, the PEB and KUSER_SHARED_DATA tell the truth. */
        rec_u("GetVersionEx_is_6_2_without_manifest", ok && v.dwMajorVersion == 6 && v.dwMinorVersion == 2 && v.dwBuildNumber == 9200,
              v.dwMajorVersion * 100 + v.dwMinorVersion);
        rec_u("RtlGetVersion_peb_kuser_agree",
              ok && rv.dwMajorVersion == 10 && *(ULONG *)(peb + OFF(0x118, 0xA4)) == rv.dwMajorVersion &&
                  *(volatile ULONG *)(KUSER + 0x26C) == rv.dwMajorVersion && (*(volatile ULONG *)(KUSER + 0x260) & 0xFFFF) == rv.dwBuildNumber &&
                  *(USHORT *)(peb + OFF(0x120, 0xAC)) == rv.dwBuildNumber,
              rv.dwBuildNumber);
    }
    {
        char want[MAX_PATH], sys[MAX_PATH];
        volatile WCHAR *root = (volatile WCHAR *)(KUSER + 0x30);
        unsigned int i;
        int ok;
        UINT n = GetWindowsDirectoryA(want, sizeof want);
        ok = n > 0;
        for (i = 0; ok && i <= n; i++)
            ok = (char)root[i] == want[i] || ((char)root[i] ^ 32) == want[i];
        rec("kuser_NtSystemRoot_is_windows_directory", ok, want);
        GetSystemDirectoryA(sys, sizeof sys);
        rec("system_directory", str_eq_i(sys, "C:\\Windows\\system32"), sys);
        rec_u("kuser_NtProductType_workstation", KUSER[0x264] == 1 && KUSER[0x268] == 1, KUSER[0x264]);
        /* The native machine's: AMD64, or i386 on a 32-bit Windows. */
        rec_x("kuser_ImageNumber", *(volatile USHORT *)(KUSER + 0x2C) == OFF(0x8664, *(volatile USHORT *)(KUSER + 0x2C) == 0x14C ? 0x14C : 0x8664) &&
                                       *(volatile USHORT *)(KUSER + 0x2E) == *(volatile USHORT *)(KUSER + 0x2C),
              *(volatile USHORT *)(KUSER + 0x2C));
        rec_u("kuser_SafeBootMode_off", KUSER[0x2EC] == 0, KUSER[0x2EC]);
    }
    {
        char a[128], b[128];
        DWORD size = sizeof b;
        int ok = GetEnvironmentVariableA("USERNAME", a, sizeof a) && GetUserNameA(b, &size) && str_eq_i(a, b);
        rec("USERNAME_matches_GetUserName", ok, a);
        size = sizeof b;
        ok = GetEnvironmentVariableA("COMPUTERNAME", a, sizeof a) && GetComputerNameA(b, &size) && str_eq_i(a, b);
        rec("COMPUTERNAME_matches_GetComputerName", ok, a);
        a[0] = 0;
        ok = GetEnvironmentVariableA("PROCESSOR_ARCHITECTURE", a, sizeof a) && str_eq_i(a, OFF("AMD64", "x86"));
        rec("PROCESSOR_ARCHITECTURE", ok, a);
    }
    {
        /* Successful calls leave the last error alone. */
        DWORD error;
        void *block;
        SetLastError(0x4D2);
        GetCurrentProcessId();
        GetTickCount();
        GetProcessHeap();
        block = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        GetModuleHandleA("kernel32.dll");
        lstrlenA("abc");
        HeapFree(GetProcessHeap(), 0, HeapAlloc(GetProcessHeap(), 0, 32));
        error = GetLastError();
        rec_u("successful_calls_keep_last_error", error == 0x4D2, error);
        if (block)
            VirtualFree(block, 0, MEM_RELEASE);
    }
    {
        DWORD error, got = 0;
        char buffer[8];
        BOOL ok;
        SetLastError(0);
        ok = ReadFile(BOGUS_HANDLE, buffer, sizeof buffer, &got, NULL);
        error = GetLastError();
        rec_u("ReadFile_invalid_handle_error", !ok && error == ERROR_INVALID_HANDLE, error);
        SetLastError(0);
        ok = SetEvent(BOGUS_HANDLE);
        error = GetLastError();
        rec_u("SetEvent_invalid_handle_error", !ok && error == ERROR_INVALID_HANDLE, error);
        SetLastError(0);
        got = GetFileSize(BOGUS_HANDLE, NULL);
        error = GetLastError();
        rec_u("GetFileSize_invalid_handle_error", got == INVALID_FILE_SIZE && error == ERROR_INVALID_HANDLE, error);
    }
    {
        /* A NULL out-pointer: VirtualProtect fails with ERROR_NOACCESS, as Windows does. */
        void *block = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        DWORD error;
        BOOL ok;
        SetLastError(0);
        ok = VirtualProtect(block, 0x1000, PAGE_READONLY, NULL);
        error = GetLastError();
        rec_u("VirtualProtect_null_old_protect_noaccess", block && !ok && error == ERROR_NOACCESS, error);
        if (block)
            VirtualFree(block, 0, MEM_RELEASE);
    }
    {
        is_wow64_process_t wow = (is_wow64_process_t)(void *)GetProcAddress(k32, "IsWow64Process");
        BOOL flag = 2;
        int ok = wow && wow(GetCurrentProcess(), &flag) && (flag == TRUE || flag == FALSE);
#ifndef _WIN64
        /* A 32-bit process on 64-bit Windows is WoW64, and its TEB says so (WOW32Reserved); on a
         * 32-bit Windows neither. The two must agree. */
        ok = ok && ((flag == TRUE) == (*(void **)(teb + 0xC0) != NULL));
#endif
        rec_u("IsWow64Process_consistent", ok, (unsigned long long)flag);
    }
}

void __stdcall AntiEmuEntry(void)
{
    char text[32];
    if (!marker_set())
        ExitProcess(2);
    debugger_checks();
    timing_checks();
    hardware_checks();
    artefact_checks();
    internals_checks();
    exception_checks();
    fmt_u64(text, checks);
    OutputDebugStringA("antiemu checks");
    OutputDebugStringA(text);
    ExitProcess(tells);
}
