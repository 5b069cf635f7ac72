/* emutells: checks published against *emulators* (Speakeasy, Qiling, unicorn-based sandboxes,
 * Windows Defender's mpengine emulator research) rather than debuggers or VMs: what a CPU
 * emulator or an API emulator gets subtly wrong. KUSER_SHARED_DATA against the APIs, the PEB,
 * TEB and loader lists against each other, the system images' PE headers and exports, the CPU's
 * instruction set against its CPUID bits, the registers at entry, and APIs an emulator answers
 * with a constant. Each check prints one OutputDebugStringA line
 * "emutells NAME: ok DETAIL" or "emutells NAME: TELL DETAIL"; a Windows 10/11 desktop says ok.
 * It does not repeat antiemu.c's checks. Benign: it reads what the machine says about itself
 * and does nothing without the marker. */
#include <windows.h>
#include "fidelity.h"

#ifdef _WIN64
#define OFF(x64, x86) (x64)
#else
#define OFF(x64, x86) (x86)
#endif

#define KUSER ((volatile unsigned char *)0x7FFE0000)
#define KU32(o) (*(volatile ULONG *)(KUSER + (o)))
#define KU64(o) (*(volatile ULONGLONG *)(KUSER + (o)))
#define BOGUS_HANDLE ((HANDLE)(ULONG_PTR)0x0BADC0DC)

typedef LONG (NTAPI *rtl_get_version_t)(OSVERSIONINFOW *);
typedef void (NTAPI *rtl_get_nt_version_numbers_t)(ULONG *, ULONG *, ULONG *);
typedef LONG (NTAPI *nt_close_t)(HANDLE);
typedef LONG (NTAPI *nt_query_information_thread_t)(HANDLE, ULONG, PVOID, ULONG, PULONG);
typedef void (WINAPI *get_stack_limits_t)(PULONG_PTR, PULONG_PTR);
typedef ULONGLONG (WINAPI *get_tick_count64_t)(void);
typedef BOOL (WINAPI *get_phys_mem_t)(PULONGLONG);

static unsigned int checks, tells;
static char out[600];
/* State at entry, read before anything else ran. */
static ULONG_PTR entry_flags;
static unsigned short entry_fcw, entry_ftw;
static unsigned int entry_mxcsr;

static void put(int *n, const char *s)
{
    while (*s && *n < 580)
        out[(*n)++] = *s++;
}

static void rec(const char *name, int ok, const char *detail)
{
    int n = 0;
    checks++;
    tells += !ok;
    put(&n, "emutells ");
    put(&n, name);
    put(&n, ok ? ": ok" : ": TELL");
    if (detail && *detail) {
        put(&n, " ");
        put(&n, detail);
    }
    out[n] = 0;
    OutputDebugStringA(out);
}

static void hex(char *text, unsigned long long value)
{
    int n = 0, shift;
    text[n++] = '0';
    text[n++] = 'x';
    for (shift = 60; shift > 0 && !((value >> shift) & 0xF); shift -= 4) {
    }
    for (; shift >= 0; shift -= 4)
        text[n++] = "0123456789abcdef"[(value >> shift) & 0xF];
    text[n] = 0;
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
    hex(text, value);
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

static void cpuid(unsigned int leaf, unsigned int sub, unsigned int r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
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

static int wide_eq_i(const WCHAR *a, unsigned int alen, const WCHAR *b, unsigned int blen)
{
    unsigned int i;
    if (alen != blen)
        return 0;
    for (i = 0; i < alen; i++) {
        WCHAR x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}

static unsigned int wide_len(const WCHAR *s)
{
    unsigned int n = 0;
    while (s[n])
        n++;
    return n;
}

static void narrow(char *dst, const WCHAR *src, unsigned int chars, unsigned int cap)
{
    unsigned int i;
    for (i = 0; i < chars && i + 1 < cap; i++)
        dst[i] = (char)src[i];
    dst[i] = 0;
}

typedef struct { USHORT Length, MaximumLength; WCHAR *Buffer; } ustr_t;

static IMAGE_NT_HEADERS *nt_headers(HMODULE m)
{
    unsigned char *base = (unsigned char *)m;
    IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)base;
    IMAGE_NT_HEADERS *nt;
    if (!base || dos->e_magic != IMAGE_DOS_SIGNATURE || dos->e_lfanew <= 0 || dos->e_lfanew > 0x1000)
        return NULL;
    nt = (IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    return nt->Signature == IMAGE_NT_SIGNATURE ? nt : NULL;
}

static IMAGE_EXPORT_DIRECTORY *exports_of(HMODULE m, DWORD *size)
{
    IMAGE_NT_HEADERS *nt = nt_headers(m);
    IMAGE_DATA_DIRECTORY *d;
    if (!nt)
        return NULL;
    d = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    if (!d->VirtualAddress || !d->Size)
        return NULL;
    if (size)
        *size = d->Size;
    return (IMAGE_EXPORT_DIRECTORY *)((unsigned char *)m + d->VirtualAddress);
}

static int str_cmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int starts_with(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

/* ---- probes: instructions that may fault, each a leaf function of its own ------------------ */
/* A fault inside [probes_begin, probes_end) returns from the probe (its return address is on top
 * of the stack: no probe pushes) with the exception code in probe_fault and 0 in the result. */

volatile ULONG_PTR probe_a __asm__("probe_a"), probe_b __asm__("probe_b");
volatile unsigned char probe_cf __asm__("probe_cf");
static volatile DWORD probe_fault;
static volatile ULONG_PTR probe_fault_at;

extern char probes_begin[] __asm__("probes_begin"), probes_end[] __asm__("probes_end"), probe_fnstenv_at[] __asm__("probe_fnstenv_at");
ULONG_PTR probe_rdrand(void) __asm__("probe_rdrand");
ULONG_PTR probe_rdseed(void) __asm__("probe_rdseed");
ULONG_PTR probe_popcnt(void) __asm__("probe_popcnt");
ULONG_PTR probe_lzcnt(void) __asm__("probe_lzcnt");
ULONG_PTR probe_tzcnt(void) __asm__("probe_tzcnt");
ULONG_PTR probe_andn(void) __asm__("probe_andn");
ULONG_PTR probe_pdep(void) __asm__("probe_pdep");
ULONG_PTR probe_movbe(void) __asm__("probe_movbe");
ULONG_PTR probe_crc32(void) __asm__("probe_crc32");
ULONG_PTR probe_aesenc(void) __asm__("probe_aesenc");
ULONG_PTR probe_pclmul(void) __asm__("probe_pclmul");
ULONG_PTR probe_avx(void) __asm__("probe_avx");
ULONG_PTR probe_avx2(void) __asm__("probe_avx2");
ULONG_PTR probe_xgetbv(void) __asm__("probe_xgetbv");
ULONG_PTR probe_rdtscp(void) __asm__("probe_rdtscp");
ULONG_PTR probe_fnstenv(void) __asm__("probe_fnstenv");
ULONG_PTR probe_cli(void) __asm__("probe_cli");
ULONG_PTR probe_lock_reg(void) __asm__("probe_lock_reg");
ULONG_PTR probe_overlong(void) __asm__("probe_overlong");
ULONG_PTR probe_bsf_zero(void) __asm__("probe_bsf_zero");
ULONG_PTR probe_sse41(void) __asm__("probe_sse41");
ULONG_PTR probe_ssse3(void) __asm__("probe_ssse3");
ULONG_PTR probe_fma(void) __asm__("probe_fma");
ULONG_PTR probe_f16c(void) __asm__("probe_f16c");
ULONG_PTR probe_kuser_write(void) __asm__("probe_kuser_write");

#ifdef _WIN64
__asm__(".intel_syntax noprefix\n"
        ".text\n"
        ".globl probes_begin\nprobes_begin:\n"
        ".globl probe_rdrand\nprobe_rdrand:\n\trdrand rax\n\tsetc byte ptr [rip+probe_cf]\n\tret\n"
        ".globl probe_rdseed\nprobe_rdseed:\n\trdseed rax\n\tsetc byte ptr [rip+probe_cf]\n\tret\n"
        ".globl probe_popcnt\nprobe_popcnt:\n\tmov rcx, [rip+probe_a]\n\tpopcnt rax, rcx\n\tret\n"
        ".globl probe_lzcnt\nprobe_lzcnt:\n\tmov rcx, [rip+probe_a]\n\tlzcnt eax, ecx\n\tret\n"
        ".globl probe_tzcnt\nprobe_tzcnt:\n\tmov rcx, [rip+probe_a]\n\ttzcnt eax, ecx\n\tret\n"
        ".globl probe_andn\nprobe_andn:\n\tmov rcx, [rip+probe_a]\n\tmov rdx, [rip+probe_b]\n\tandn rax, rcx, rdx\n\tret\n"
        ".globl probe_pdep\nprobe_pdep:\n\tmov rcx, [rip+probe_a]\n\tmov rdx, [rip+probe_b]\n\tpdep rax, rcx, rdx\n\tret\n"
        ".globl probe_movbe\nprobe_movbe:\n\tlea rcx, [rip+probe_a]\n\tmovbe eax, dword ptr [rcx]\n\tret\n"
        ".globl probe_crc32\nprobe_crc32:\n\tmov rax, [rip+probe_a]\n\tmov rdx, [rip+probe_b]\n\tcrc32 eax, edx\n\tret\n"
        ".globl probe_aesenc\nprobe_aesenc:\n\tmovq xmm0, [rip+probe_a]\n\tmovq xmm1, [rip+probe_b]\n\taesenc xmm0, xmm1\n\tmovq rax, xmm0\n\tret\n"
        ".globl probe_pclmul\nprobe_pclmul:\n\tmovq xmm0, [rip+probe_a]\n\tmovq xmm1, [rip+probe_b]\n\tpclmulqdq xmm0, xmm1, 0\n\tmovq rax, xmm0\n\tret\n"
        ".globl probe_avx\nprobe_avx:\n\tvpcmpeqd xmm0, xmm0, xmm0\n\tvxorps ymm1, ymm1, ymm1\n\tvaddps ymm1, ymm1, ymm1\n\tvmovd eax, xmm0\n\tvzeroupper\n\tret\n"
        ".globl probe_avx2\nprobe_avx2:\n\tvpcmpeqd ymm0, ymm0, ymm0\n\tvpaddd ymm0, ymm0, ymm0\n\tvmovd eax, xmm0\n\tvzeroupper\n\tret\n"
        ".globl probe_fma\nprobe_fma:\n\tmovq xmm0, [rip+probe_a]\n\tmovq xmm1, [rip+probe_b]\n\tmovq xmm2, [rip+probe_b]\n\tvfmadd231sd xmm0, xmm1, xmm2\n\tmovq rax, xmm0\n\tret\n"
        ".globl probe_f16c\nprobe_f16c:\n\tmovq xmm0, [rip+probe_a]\n\tvcvtph2ps xmm1, xmm0\n\tmovd eax, xmm1\n\tret\n"
        ".globl probe_sse41\nprobe_sse41:\n\tmovq xmm0, [rip+probe_a]\n\tpextrb eax, xmm0, 1\n\tret\n"
        ".globl probe_ssse3\nprobe_ssse3:\n\tmovq xmm0, [rip+probe_a]\n\tpabsb xmm0, xmm0\n\tmovq rax, xmm0\n\tret\n"
        ".globl probe_xgetbv\nprobe_xgetbv:\n\txor ecx, ecx\n\txgetbv\n\tshl rdx, 32\n\tor rax, rdx\n\tret\n"
        ".globl probe_rdtscp\nprobe_rdtscp:\n\trdtscp\n\tmov eax, ecx\n\tret\n"
        ".globl probe_fnstenv\nprobe_fnstenv:\n\tsub rsp, 0x48\n"
        ".globl probe_fnstenv_at\nprobe_fnstenv_at:\n\tfldz\n\tfnstenv [rsp+8]\n\tmov eax, dword ptr [rsp+8+12]\n\tfstp st(0)\n\tadd rsp, 0x48\n\tret\n"
        ".globl probe_cli\nprobe_cli:\n\tcli\n\tmov eax, 1\n\tret\n"
        ".globl probe_lock_reg\nprobe_lock_reg:\n\t.byte 0xF0, 0x01, 0xC8\n\tmov eax, 1\n\tret\n"
        ".globl probe_overlong\nprobe_overlong:\n\t.byte 0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x90\n\tmov eax, 1\n\tret\n"
        ".globl probe_bsf_zero\nprobe_bsf_zero:\n\tmov rax, [rip+probe_a]\n\tmov rdx, [rip+probe_b]\n\tbsf rax, rdx\n\tret\n"
        ".globl probe_kuser_write\nprobe_kuser_write:\n\tmov eax, 0x7FFE02F8\n\tmov byte ptr [rax], 0x90\n\tret\n"
        ".globl probes_end\nprobes_end:\n\tret\n"
        ".att_syntax prefix\n");
#else
__asm__(".intel_syntax noprefix\n"
        ".text\n"
        ".globl probes_begin\nprobes_begin:\n"
        ".globl probe_rdrand\nprobe_rdrand:\n\trdrand eax\n\tsetc byte ptr [probe_cf]\n\tret\n"
        ".globl probe_rdseed\nprobe_rdseed:\n\trdseed eax\n\tsetc byte ptr [probe_cf]\n\tret\n"
        ".globl probe_popcnt\nprobe_popcnt:\n\tmov ecx, [probe_a]\n\tpopcnt eax, ecx\n\tret\n"
        ".globl probe_lzcnt\nprobe_lzcnt:\n\tmov ecx, [probe_a]\n\tlzcnt eax, ecx\n\tret\n"
        ".globl probe_tzcnt\nprobe_tzcnt:\n\tmov ecx, [probe_a]\n\ttzcnt eax, ecx\n\tret\n"
        ".globl probe_andn\nprobe_andn:\n\tmov ecx, [probe_a]\n\tmov edx, [probe_b]\n\tandn eax, ecx, edx\n\tret\n"
        ".globl probe_pdep\nprobe_pdep:\n\tmov ecx, [probe_a]\n\tmov edx, [probe_b]\n\tpdep eax, ecx, edx\n\tret\n"
        ".globl probe_movbe\nprobe_movbe:\n\tlea ecx, [probe_a]\n\tmovbe eax, dword ptr [ecx]\n\tret\n"
        ".globl probe_crc32\nprobe_crc32:\n\tmov eax, [probe_a]\n\tmov edx, [probe_b]\n\tcrc32 eax, edx\n\tret\n"
        ".globl probe_aesenc\nprobe_aesenc:\n\tmovd xmm0, [probe_a]\n\tmovd xmm1, [probe_b]\n\taesenc xmm0, xmm1\n\tmovd eax, xmm0\n\tret\n"
        ".globl probe_pclmul\nprobe_pclmul:\n\tmovd xmm0, [probe_a]\n\tmovd xmm1, [probe_b]\n\tpclmulqdq xmm0, xmm1, 0\n\tmovd eax, xmm0\n\tret\n"
        ".globl probe_avx\nprobe_avx:\n\tvpcmpeqd xmm0, xmm0, xmm0\n\tvxorps ymm1, ymm1, ymm1\n\tvaddps ymm1, ymm1, ymm1\n\tvmovd eax, xmm0\n\tvzeroupper\n\tret\n"
        ".globl probe_avx2\nprobe_avx2:\n\tvpcmpeqd ymm0, ymm0, ymm0\n\tvpaddd ymm0, ymm0, ymm0\n\tvmovd eax, xmm0\n\tvzeroupper\n\tret\n"
        ".globl probe_fma\nprobe_fma:\n\tmovq xmm0, qword ptr [probe_a]\n\tmovq xmm1, qword ptr [probe_b]\n\tmovq xmm2, qword ptr [probe_b]\n\tvfmadd231sd xmm0, xmm1, xmm2\n\tmovd eax, xmm0\n\tret\n"
        ".globl probe_f16c\nprobe_f16c:\n\tmovd xmm0, [probe_a]\n\tvcvtph2ps xmm1, xmm0\n\tmovd eax, xmm1\n\tret\n"
        ".globl probe_sse41\nprobe_sse41:\n\tmovd xmm0, [probe_a]\n\tpextrb eax, xmm0, 1\n\tret\n"
        ".globl probe_ssse3\nprobe_ssse3:\n\tmovd xmm0, [probe_a]\n\tpabsb xmm0, xmm0\n\tmovd eax, xmm0\n\tret\n"
        ".globl probe_xgetbv\nprobe_xgetbv:\n\txor ecx, ecx\n\txgetbv\n\tret\n"
        ".globl probe_rdtscp\nprobe_rdtscp:\n\trdtscp\n\tmov eax, ecx\n\tret\n"
        ".globl probe_fnstenv\nprobe_fnstenv:\n\tsub esp, 0x48\n"
        ".globl probe_fnstenv_at\nprobe_fnstenv_at:\n\tfldz\n\tfnstenv [esp+8]\n\tmov eax, dword ptr [esp+8+12]\n\tfstp st(0)\n\tadd esp, 0x48\n\tret\n"
        ".globl probe_cli\nprobe_cli:\n\tcli\n\tmov eax, 1\n\tret\n"
        ".globl probe_lock_reg\nprobe_lock_reg:\n\t.byte 0xF0, 0x01, 0xC8\n\tmov eax, 1\n\tret\n"
        ".globl probe_overlong\nprobe_overlong:\n\t.byte 0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x66,0x90\n\tmov eax, 1\n\tret\n"
        ".globl probe_bsf_zero\nprobe_bsf_zero:\n\tmov eax, [probe_a]\n\tmov edx, [probe_b]\n\tbsf eax, edx\n\tret\n"
        ".globl probe_kuser_write\nprobe_kuser_write:\n\tmov eax, 0x7FFE02F8\n\tmov byte ptr [eax], 0x90\n\tret\n"
        ".globl probes_end\nprobes_end:\n\tret\n"
        ".att_syntax prefix\n");
#endif

static LONG CALLBACK probe_handler(EXCEPTION_POINTERS *p)
{
    CONTEXT *c = p->ContextRecord;
#ifdef _WIN64
    ULONG_PTR pc = c->Rip;
#else
    ULONG_PTR pc = c->Eip;
#endif
    if (pc < (ULONG_PTR)probes_begin || pc >= (ULONG_PTR)probes_end)
        return EXCEPTION_CONTINUE_SEARCH;
    probe_fault = p->ExceptionRecord->ExceptionCode;
    probe_fault_at = pc;
#ifdef _WIN64
    if (pc >= (ULONG_PTR)probe_fnstenv_at && pc < (ULONG_PTR)probe_cli)
        c->Rsp += 0x48;
    c->Rip = *(ULONG_PTR *)c->Rsp;
    c->Rsp += 8;
    c->Rax = 0;
#else
    if (pc >= (ULONG_PTR)probe_fnstenv_at && pc < (ULONG_PTR)probe_cli)
        c->Esp += 0x48;
    c->Eip = *(ULONG_PTR *)c->Esp;
    c->Esp += 4;
    c->Eax = 0;
#endif
    return EXCEPTION_CONTINUE_EXECUTION;
}

static ULONG_PTR run_probe(ULONG_PTR (*f)(void), ULONG_PTR a, ULONG_PTR b, DWORD *fault)
{
    ULONG_PTR r;
    probe_a = a;
    probe_b = b;
    probe_fault = 0;
    probe_cf = 0;
    r = f();
    *fault = probe_fault;
    return r;
}

/* ---- KUSER_SHARED_DATA --------------------------------------------------------------------- */

static void kuser_checks(void)
{
    unsigned char *peb = current_peb();
    SYSTEM_INFO si;
    char text[64];
    GetSystemInfo(&si);
    {
        OSVERSIONINFOW rv;
        rtl_get_version_t rtl = (rtl_get_version_t)(void *)proc("ntdll.dll", "RtlGetVersion");
        int ok;
        rv.dwOSVersionInfoSize = sizeof rv;
        ok = rtl && rtl(&rv) == 0;
        rec_u("kuser_NtMinorVersion_matches_RtlGetVersion", ok && KU32(0x270) == rv.dwMinorVersion &&
                                                             *(ULONG *)(peb + OFF(0x11C, 0xA8)) == rv.dwMinorVersion,
              KU32(0x270));
        rec_u("peb_OSPlatformId_nt", ok && *(ULONG *)(peb + OFF(0x124, 0xB0)) == VER_PLATFORM_WIN32_NT && rv.dwPlatformId == VER_PLATFORM_WIN32_NT,
              *(ULONG *)(peb + OFF(0x124, 0xB0)));
    }
    {
        rtl_get_nt_version_numbers_t nums = (rtl_get_nt_version_numbers_t)(void *)proc("ntdll.dll", "RtlGetNtVersionNumbers");
        ULONG major = 0, minor = 0, build = 0;
        if (nums)
            nums(&major, &minor, &build);
        rec_x("RtlGetNtVersionNumbers_matches_kuser", nums && major == KU32(0x26C) && minor == KU32(0x270) &&
                                                          (build & 0xF0000000u) == 0xF0000000u && (build & 0xFFFF) == (KU32(0x260) & 0xFFFF),
              build);
    }
    {
        /* GetTickCount is TickCount * TickCountMultiplier >> 24. */
        ULONG mult = KU32(0x4);
        ULONGLONG ticks = KU64(0x320) & 0x00FFFFFFFFFFFFFFull;
        ULONGLONG from_kuser = (ticks * mult) >> 24;
        ULONGLONG api = GetTickCount();
        rec_x("kuser_TickCountMultiplier_gives_GetTickCount", mult != 0 && close_to(from_kuser & 0xFFFFFFFFull, api, 100), mult);
    }
    {
        get_tick_count64_t t64 = (get_tick_count64_t)(void *)proc("kernel32.dll", "GetTickCount64");
        ULONGLONG interrupt = ((ULONGLONG)KU32(0xC) << 32 | KU32(0x8)) / 10000, tick = t64 ? t64() : 0;
        fmt_u64(text, interrupt > tick ? interrupt - tick : tick - interrupt);
        rec("kuser_InterruptTime_vs_GetTickCount64_ms", t64 && close_to(interrupt, tick, 100), text);
    }
    {
        ULONGLONG before = ((ULONGLONG)KU32(0x18) << 32) | KU32(0x14), after;
        Sleep(40);
        after = ((ULONGLONG)KU32(0x18) << 32) | KU32(0x14);
        rec_u("kuser_SystemTime_advances_across_Sleep_ms", after > before && (after - before) / 10000 >= 30, (after - before) / 10000);
    }
    rec_u("kuser_KdDebuggerEnabled_0", KUSER[0x2D4] == 0, KUSER[0x2D4]);
    {
        MEMORYSTATUSEX ms;
        ULONGLONG pages = KU32(0x2E8);
        ms.dwLength = sizeof ms;
        GlobalMemoryStatusEx(&ms);
        /* Total physical memory the OS manages: NumberOfPhysicalPages pages, as ullTotalPhys. */
        rec_u("kuser_NumberOfPhysicalPages_matches_GlobalMemoryStatusEx_MiB",
              pages && close_to(pages * 4096, ms.ullTotalPhys, 16ull << 20), (pages * 4096) >> 20);
    }
    {
        unsigned int i, bad = 0, first_bad = 0xFF;
        for (i = 0; i < 64; i++) {
            int api = IsProcessorFeaturePresent(i) ? 1 : 0;
            if (api != (KUSER[0x274 + i] ? 1 : 0)) {
                bad++;
                if (first_bad == 0xFF)
                    first_bad = i;
            }
        }
        rec_u("kuser_ProcessorFeatures_match_IsProcessorFeaturePresent", bad == 0, first_bad);
    }
    {
        unsigned int r[4];
        cpuid(1, 0, r);
        rec("kuser_ProcessorFeatures_match_cpuid",
            (KUSER[0x274 + PF_XMMI64_INSTRUCTIONS_AVAILABLE] != 0) == !!(r[3] & (1u << 26)) &&
                (KUSER[0x274 + PF_SSE3_INSTRUCTIONS_AVAILABLE] != 0) == !!(r[2] & 1u) &&
                (KUSER[0x274 + PF_RDRAND_INSTRUCTION_AVAILABLE] != 0) == !!(r[2] & (1u << 30)) &&
                /* CMPXCHG16B: reported by 64-bit Windows only */
                (KUSER[0x274 + PF_COMPARE_EXCHANGE128] != 0) == (OFF(1, 0) && (r[2] & (1u << 13))) &&
                KUSER[0x274 + PF_RDTSC_INSTRUCTION_AVAILABLE] &&
                KUSER[0x274 + PF_NX_ENABLED],
            "");
    }
    {
        USHORT native = *(volatile USHORT *)(KUSER + 0x26A);
        SYSTEM_INFO ni;
        GetNativeSystemInfo(&ni);
        rec_u("kuser_NativeProcessorArchitecture_matches_GetNativeSystemInfo", native == ni.wProcessorArchitecture, native);
    }
    {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        rec_u("kuser_QpcFrequency_matches_QueryPerformanceFrequency", KU64(0x300) == (ULONGLONG)f.QuadPart && f.QuadPart > 0,
              KU64(0x300));
    }
    rec_x("kuser_TestRetInstruction_is_ret", KUSER[0x2F8] == 0xC3, KUSER[0x2F8]);
    rec_x("kuser_Cookie_nonzero", KU32(0x330) != 0, KU32(0x330));
    {
        DWORD session = 0xFFFF;
        ProcessIdToSessionId(GetCurrentProcessId(), &session);
        rec_u("kuser_ActiveConsoleId_is_the_session", KU32(0x2D8) == session && session == *(ULONG *)(peb + OFF(0x2C0, 0x1D4)) && session != 0,
              KU32(0x2D8));
    }
    {
        OSVERSIONINFOEXA v;
        v.dwOSVersionInfoSize = sizeof v;
        GetVersionExA((OSVERSIONINFOA *)&v);
        rec_x("kuser_SuiteMask_matches_GetVersionEx", (KU32(0x2D0) & 0xFFFF) == v.wSuiteMask && v.wProductType == KUSER[0x264],
              KU32(0x2D0));
    }
    {
        TIME_ZONE_INFORMATION tz;
        DWORD id = GetTimeZoneInformation(&tz);
        rec_u("kuser_TimeZoneId_matches_GetTimeZoneInformation", id != TIME_ZONE_ID_INVALID && KU32(0x240) == id, KU32(0x240));
    }
    {
#ifdef _WIN64
        ULONG_PTR want = 0x200000;
#else
        ULONG_PTR want = 0x200000;
#endif
        rec_x("kuser_LargePageMinimum_matches_GetLargePageMinimum", KU32(0x244) == GetLargePageMinimum() && KU32(0x244) == want, KU32(0x244));
    }
    {
        ULONG_PTR mask = KU32(0x3C0) >= 8 * sizeof(ULONG_PTR) ? ~(ULONG_PTR)0 : (((ULONG_PTR)1 << KU32(0x3C0)) - 1);
        DWORD_PTR pm = 0, sm = 0;
        GetProcessAffinityMask(GetCurrentProcess(), &pm, &sm);
        rec_x("affinity_masks_match_processor_count", si.dwActiveProcessorMask == mask && pm == mask && sm == mask &&
                                                          *(ULONG_PTR *)(peb + OFF(0x138, 0xC0)) == mask,
              si.dwActiveProcessorMask);
    }
    {
        /* KUSER_SHARED_DATA is read-only to user mode: a write faults. */
        void *veh = AddVectoredExceptionHandler(1, probe_handler);
        DWORD fault;
        probe_fault = 0;
        run_probe(probe_kuser_write, 0, 0, &fault);
        rec_x("kuser_write_faults", fault == EXCEPTION_ACCESS_VIOLATION && KUSER[0x2F8] == 0xC3, fault);
        RemoveVectoredExceptionHandler(veh);
    }
}

/* ---- PEB / TEB ----------------------------------------------------------------------------- */

static void peb_teb_checks(void)
{
    unsigned char *peb = current_peb(), *teb = current_teb();
    unsigned char *params = *(unsigned char **)(peb + OFF(0x20, 0x10));
    char text[600];

    rec("peb_ProcessHeap_is_GetProcessHeap", *(HANDLE *)(peb + OFF(0x30, 0x18)) == GetProcessHeap(), "");
    rec("peb_ImageBaseAddress_is_GetModuleHandle_NULL", *(void **)(peb + OFF(0x10, 0x8)) == (void *)GetModuleHandleA(NULL), "");
    {
        ULONG count = *(ULONG *)(peb + OFF(0xE8, 0x88)), max = *(ULONG *)(peb + OFF(0xEC, 0x8C));
        HANDLE *heaps = *(HANDLE **)(peb + OFF(0xF0, 0x90));
        HANDLE listed[16];
        DWORD n = GetProcessHeaps(16, listed);
        rec_u("peb_ProcessHeaps_match_GetProcessHeaps", count >= 1 && count <= max && heaps && heaps[0] == GetProcessHeap() && n == count &&
                                                            listed[0] == GetProcessHeap(),
              count);
    }
    {
        IMAGE_NT_HEADERS *nt = nt_headers(GetModuleHandleA(NULL));
        rec_u("peb_ImageSubsystem_matches_pe", nt && *(ULONG *)(peb + OFF(0x128, 0xB4)) == nt->OptionalHeader.Subsystem &&
                                                   *(ULONG *)(peb + OFF(0x12C, 0xB8)) == nt->OptionalHeader.MajorSubsystemVersion,
              *(ULONG *)(peb + OFF(0x128, 0xB4)));
    }
    {
        unsigned char *ldr = *(unsigned char **)(peb + OFF(0x18, 0xC));
        rec_u("peb_Ldr_initialized", ldr && *(ULONG *)ldr == OFF(0x58, 0x30) && ldr[4] == 1, ldr ? *(ULONG *)ldr : 0);
    }
    {
        ULONG flags = params ? *(ULONG *)(params + 8) : 0;
        rec_x("peb_ProcessParameters_normalized", params && (flags & 1) && *(ULONG *)(params + 4) >= OFF(0x3F0, 0x290), flags);
    }
    {
        ustr_t *cmd = (ustr_t *)(params + OFF(0x70, 0x40));
        WCHAR *api = GetCommandLineW();
        rec("GetCommandLineW_is_the_PEB_CommandLine", params && api == cmd->Buffer && wide_len(api) * 2 == cmd->Length, "");
    }
    {
        ustr_t *image = (ustr_t *)(params + OFF(0x60, 0x38));
        WCHAR path[MAX_PATH];
        DWORD n = GetModuleFileNameW(NULL, path, MAX_PATH);
        narrow(text, path, n, sizeof text);
        rec("GetModuleFileName_NULL_is_the_PEB_ImagePathName", params && n && wide_eq_i(path, n, image->Buffer, image->Length / 2), text);
    }
    {
        ustr_t *dir = (ustr_t *)(params + OFF(0x38, 0x24));
        WCHAR cur[MAX_PATH];
        DWORD n = GetCurrentDirectoryW(MAX_PATH, cur);
        unsigned int plen = dir->Length / 2;
        /* The PEB's path ends with a backslash; GetCurrentDirectory's only at a drive's root. */
        int ok = params && n && plen && dir->Buffer[plen - 1] == '\\' &&
                 (wide_eq_i(cur, n, dir->Buffer, plen) || wide_eq_i(cur, n, dir->Buffer, plen - 1));
        narrow(text, dir->Buffer ? dir->Buffer : L"", plen, sizeof text);
        rec("GetCurrentDirectory_is_the_PEB_CurrentDirectory", ok, text);
        if (ok) {
            WCHAR windir[MAX_PATH];
            UINT w = GetWindowsDirectoryW(windir, MAX_PATH);
            int moved = SetCurrentDirectoryW(windir);
            plen = dir->Length / 2;
            ok = moved && w && plen && wide_eq_i(windir, w, dir->Buffer, plen - 1) && dir->Buffer[plen - 1] == '\\';
            narrow(text, dir->Buffer ? dir->Buffer : L"", plen, sizeof text);
            SetCurrentDirectoryW(cur);
        } else {
            text[0] = 0;
        }
        rec("SetCurrentDirectory_updates_the_PEB", ok, text);
    }
    {
        /* The environment block of the process parameters holds what GetEnvironmentVariable
         * reads, and a variable set later. */
        WCHAR *env;
        int seen = 0, added = 0;
        SetEnvironmentVariableW(L"EMUTELLS_PROBE", L"42");
        env = params ? *(WCHAR **)(params + OFF(0x80, 0x48)) : NULL;
        for (; env && *env; env += wide_len(env) + 1) {
            if (wide_eq_i(env, 20, L"CHAINREPLAY_SANDBOX=", 20))
                seen = 1;
            if (wide_eq_i(env, 17, L"EMUTELLS_PROBE=42", 17) && env[17] == 0)
                added = 1;
        }
        SetEnvironmentVariableW(L"EMUTELLS_PROBE", NULL);
        rec_u("peb_Environment_holds_the_variables", seen && added, seen * 10 + added);
    }
    {
        nt_query_information_thread_t qit = (nt_query_information_thread_t)(void *)proc("ntdll.dll", "NtQueryInformationThread");
        struct {
            LONG ExitStatus;
            void *TebBaseAddress;
            ULONG_PTR UniqueProcess, UniqueThread;
            ULONG_PTR AffinityMask;
            LONG Priority, BasePriority;
        } tbi;
        LONG s = qit ? qit(GetCurrentThread(), 0, &tbi, sizeof tbi, NULL) : -1;
        rec_x("ThreadBasicInformation_TebBaseAddress_is_the_TEB", s == 0 && tbi.TebBaseAddress == teb &&
                                                                     tbi.UniqueThread == GetCurrentThreadId() && tbi.UniqueProcess == GetCurrentProcessId(),
              (ULONG)s);
    }
    {
        get_stack_limits_t limits = (get_stack_limits_t)(void *)proc("kernel32.dll", "GetCurrentThreadStackLimits");
        ULONG_PTR lo = 0, hi = 0;
        ULONG_PTR dealloc = *(ULONG_PTR *)(teb + OFF(0x1478, 0xE0C));
        MEMORY_BASIC_INFORMATION mbi;
        volatile int local = 0;
        if (limits)
            limits(&lo, &hi);
        rec_x("GetCurrentThreadStackLimits_is_DeallocationStack_to_StackBase",
              limits && hi == *(ULONG_PTR *)(teb + OFF(0x8, 0x4)) && lo == dealloc && dealloc && dealloc <= *(ULONG_PTR *)(teb + OFF(0x10, 0x8)), lo);
        VirtualQuery((void *)&local, &mbi, sizeof mbi);
        rec_x("stack_AllocationBase_is_DeallocationStack", (ULONG_PTR)mbi.AllocationBase == dealloc, (ULONG_PTR)mbi.AllocationBase);
        /* Windows reserves 1 MiB by default (the PE's SizeOfStackReserve); the stack is that reservation. */
        {
            IMAGE_NT_HEADERS *nt = nt_headers(GetModuleHandleA(NULL));
            ULONG_PTR reserve = nt ? (ULONG_PTR)nt->OptionalHeader.SizeOfStackReserve : 0;
            rec_x("stack_reservation_is_SizeOfStackReserve", *(ULONG_PTR *)(teb + OFF(0x8, 0x4)) - dealloc == reserve,
                  *(ULONG_PTR *)(teb + OFF(0x8, 0x4)) - dealloc);
        }
    }
    {
        DWORD slot = TlsAlloc();
        int ok = slot != TLS_OUT_OF_INDEXES && slot < 64 && TlsSetValue(slot, (void *)(ULONG_PTR)0x5A5A1234);
        ok = ok && ((void **)(teb + OFF(0x1480, 0xE10)))[slot] == (void *)(ULONG_PTR)0x5A5A1234;
        if (ok) {
            ((void **)(teb + OFF(0x1480, 0xE10)))[slot] = (void *)(ULONG_PTR)0x777;
            ok = TlsGetValue(slot) == (void *)(ULONG_PTR)0x777;
        }
        rec_u("TlsSetValue_is_the_TEB_TlsSlots", ok, slot);
        if (slot != TLS_OUT_OF_INDEXES)
            TlsFree(slot);
    }
    {
        LCID teb_locale = *(ULONG *)(teb + OFF(0x108, 0xC4));
        rec_x("teb_CurrentLocale_is_GetThreadLocale", teb_locale == GetThreadLocale() && teb_locale != 0, teb_locale);
    }
    {
#ifdef _WIN64
        /* x64 has no frame-based handler list: ExceptionList is NULL. */
        rec_x("teb_ExceptionList", *(void **)teb == NULL, (ULONG_PTR) * (void **)teb);
#else
        /* x86: a chain of registrations on the stack that ends with -1. */
        ULONG_PTR *r = *(ULONG_PTR **)teb;
        ULONG_PTR base = *(ULONG_PTR *)(teb + 4), limit = *(ULONG_PTR *)(teb + 8);
        int n = 0, ok = 1;
        while (r != (ULONG_PTR *)~(ULONG_PTR)0 && n < 64) {
            if ((ULONG_PTR)r < limit || (ULONG_PTR)r >= base) {
                ok = 0;
                break;
            }
            r = (ULONG_PTR *)r[0];
            n++;
        }
        rec_u("teb_ExceptionList", ok && n >= 1 && n < 64, n);
#endif
    }
    {
        HANDLE dup = NULL;
        int ok = GetCurrentProcess() == (HANDLE)(LONG_PTR)-1 && GetCurrentThread() == (HANDLE)(LONG_PTR)-2 &&
                 GetProcessId(GetCurrentProcess()) == GetCurrentProcessId() && GetThreadId(GetCurrentThread()) == GetCurrentThreadId();
        if (ok)
            ok = DuplicateHandle(GetCurrentProcess(), GetCurrentProcess(), GetCurrentProcess(), &dup, 0, FALSE, DUPLICATE_SAME_ACCESS) &&
                 dup != (HANDLE)(LONG_PTR)-1 && dup && GetProcessId(dup) == GetCurrentProcessId();
        rec("pseudo_handles_and_their_duplicates", ok, "");
        if (dup)
            CloseHandle(dup);
    }
}

/* ---- loader lists and the system images ---------------------------------------------------- */

#define MAX_MODULES 128

static void ldr_checks(void)
{
    unsigned char *peb = current_peb();
    unsigned char *ldr = *(unsigned char **)(peb + OFF(0x18, 0xC));
    LIST_ENTRY *heads[3];
    unsigned char *order[3][MAX_MODULES];
    unsigned int counts[3] = {0, 0, 0}, i, j, k;
    int links_ok = 1;
    static const unsigned int link_off[3] = {0, OFF(0x10, 0x8), OFF(0x20, 0x10)};
    char text[600];
    WCHAR sysdir[MAX_PATH];
    UINT syslen = GetSystemDirectoryW(sysdir, MAX_PATH);

    heads[0] = (LIST_ENTRY *)(ldr + OFF(0x10, 0xC));
    heads[1] = (LIST_ENTRY *)(ldr + OFF(0x20, 0x14));
    heads[2] = (LIST_ENTRY *)(ldr + OFF(0x30, 0x1C));
    for (k = 0; k < 3; k++) {
        LIST_ENTRY *e;
        unsigned int back = 0;
        for (e = heads[k]->Flink; e != heads[k] && counts[k] < MAX_MODULES; e = e->Flink) {
            if (e->Flink->Blink != e || e->Blink->Flink != e)
                links_ok = 0;
            order[k][counts[k]++] = (unsigned char *)e - link_off[k];
        }
        for (e = heads[k]->Blink; e != heads[k] && back <= MAX_MODULES; e = e->Blink)
            back++;
        if (back != counts[k] || counts[k] >= MAX_MODULES)
            links_ok = 0;
    }
    text[0] = 0;
    {
        char a[12], b[12], c[12];
        fmt_u64(a, counts[0]);
        fmt_u64(b, counts[1]);
        fmt_u64(c, counts[2]);
        int n = 0;
        for (const char *p = a; *p; p++) text[n++] = *p;
        text[n++] = '/';
        for (const char *p = b; *p; p++) text[n++] = *p;
        text[n++] = '/';
        for (const char *p = c; *p; p++) text[n++] = *p;
        text[n] = 0;
    }
    rec("ldr_lists_linked_both_ways", links_ok, text);
    {
        /* InMemoryOrder holds the same entries as InLoadOrder; InInitializationOrder the DLLs
         * (not the program), ntdll first. */
        int same = counts[0] == counts[1], init_ok = counts[2] + 1 == counts[0];
        for (i = 0; same && i < counts[0]; i++) {
            int found = 0;
            for (j = 0; j < counts[1]; j++)
                found |= order[1][j] == order[0][i];
            same = found;
        }
        rec("ldr_InMemoryOrder_same_entries", same, text);
        for (i = 0; init_ok && i < counts[2]; i++)
            init_ok = order[2][i] != order[0][0];
        init_ok = init_ok && counts[2] && *(HMODULE *)(order[2][0] + OFF(0x30, 0x18)) == GetModuleHandleA("ntdll.dll");
        rec("ldr_InInitializationOrder_dlls_ntdll_first", init_ok, text);
    }
    rec_u("ldr_module_count_plausible", counts[0] >= 3 && counts[0] <= 24, counts[0]);
    {
        /* Every entry: DllBase is GetModuleHandle of its name, SizeOfImage and EntryPoint those of
         * its PE header, BaseDllName the tail of FullDllName, system DLLs in the system folder. */
        int base_ok = 1, size_ok = 1, entry_ok = 1, name_ok = 1, dir_ok = 1;
        const char *first_bad = "";
        static char bad_name[64];
        for (i = 0; i < counts[0]; i++) {
            unsigned char *m = order[0][i];
            HMODULE dll = *(HMODULE *)(m + OFF(0x30, 0x18));
            void *entry = *(void **)(m + OFF(0x38, 0x1C));
            ULONG size = *(ULONG *)(m + OFF(0x40, 0x20));
            ustr_t *full = (ustr_t *)(m + OFF(0x48, 0x24)), *base = (ustr_t *)(m + OFF(0x58, 0x2C));
            IMAGE_NT_HEADERS *nt = nt_headers(dll);
            unsigned int fl = full->Length / 2, bl = base->Length / 2;
            WCHAR name[MAX_PATH];
            int this_ok = 1;
            if (!full->Buffer || !base->Buffer || bl == 0 || bl > fl || bl >= MAX_PATH) {
                name_ok = this_ok = 0;
            } else {
                if (!wide_eq_i(full->Buffer + fl - bl, bl, base->Buffer, bl) || (fl > bl && full->Buffer[fl - bl - 1] != '\\'))
                    name_ok = this_ok = 0;
                for (j = 0; j < bl; j++)
                    name[j] = base->Buffer[j];
                name[bl] = 0;
                if (GetModuleHandleW(name) != dll)
                    base_ok = this_ok = 0;
                if (i > 0 && !(fl == syslen + 1 + bl && wide_eq_i(full->Buffer, syslen, sysdir, syslen)))
                    dir_ok = this_ok = 0;
            }
            if (!nt || nt->OptionalHeader.SizeOfImage != size)
                size_ok = this_ok = 0;
            if (nt && i > 0) {
                void *want = nt->OptionalHeader.AddressOfEntryPoint ? (unsigned char *)dll + nt->OptionalHeader.AddressOfEntryPoint : NULL;
                if (entry != want)
                    entry_ok = this_ok = 0;
            }
            if (!this_ok && !*first_bad && full->Buffer) {
                narrow(bad_name, full->Buffer, fl, sizeof bad_name);
                first_bad = bad_name;
            }
        }
        rec("ldr_BaseDllName_is_the_tail_of_FullDllName", name_ok, first_bad);
        rec("ldr_DllBase_is_GetModuleHandle", base_ok, first_bad);
        rec("ldr_SizeOfImage_matches_pe_header", size_ok, first_bad);
        rec("ldr_EntryPoint_matches_pe_header", entry_ok, first_bad);
        rec("ldr_dlls_in_the_system_directory", dir_ok, first_bad);
    }
    {
        /* ntdll, kernel32, kernelbase: PE headers of the right machine, a DLL, exports named in
         * ascending order (loaders binary-search them), each name resolving to what GetProcAddress
         * gives, in an executable image section. */
        static const char *const mods[] = {"ntdll.dll", "kernel32.dll", "kernelbase.dll"};
        unsigned int mi;
        for (mi = 0; mi < 3; mi++) {
            HMODULE m = GetModuleHandleA(mods[mi]);
            IMAGE_NT_HEADERS *nt = nt_headers(m);
            DWORD esize = 0;
            IMAGE_EXPORT_DIRECTORY *e = exports_of(m, &esize);
            int hdr_ok = nt && nt->FileHeader.Machine == OFF(IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_MACHINE_I386) &&
                         (nt->FileHeader.Characteristics & IMAGE_FILE_DLL) && nt->OptionalHeader.ImageBase &&
                         nt->FileHeader.NumberOfSections >= 3;
            int sorted = e != NULL, resolve = e != NULL, in_code = e != NULL;
            unsigned int mismatches = 0;
            char name[64];
            const char *bad = "";
            if (e) {
                DWORD *names = (DWORD *)((unsigned char *)m + e->AddressOfNames);
                WORD *ords = (WORD *)((unsigned char *)m + e->AddressOfNameOrdinals);
                DWORD *funcs = (DWORD *)((unsigned char *)m + e->AddressOfFunctions);
                const char *prev = NULL;
                for (i = 0; i < e->NumberOfNames; i++) {
                    const char *n = (const char *)m + names[i];
                    DWORD rva = funcs[ords[i]];
                    if (prev && str_cmp(prev, n) >= 0 && sorted) {
                        sorted = 0;
                    }
                    prev = n;
                    if (rva >= (DWORD)((unsigned char *)e - (unsigned char *)m) && rva < (DWORD)((unsigned char *)e - (unsigned char *)m) + esize)
                        continue; /* forwarder */
                    if ((FARPROC)((unsigned char *)m + rva) != GetProcAddress(m, n)) {
                        if (!mismatches)
                            bad = n;
                        mismatches++;
                    }
                    if (in_code) {
                        IMAGE_SECTION_HEADER *s = IMAGE_FIRST_SECTION(nt);
                        int found = 0;
                        for (j = 0; j < nt->FileHeader.NumberOfSections; j++, s++)
                            if (rva >= s->VirtualAddress && rva < s->VirtualAddress + s->Misc.VirtualSize)
                                found = (s->Characteristics & IMAGE_SCN_MEM_EXECUTE) != 0 ||
                                        /* exported data (ntdll's NlsMbCodePageTag, ...) */
                                        !(s->Characteristics & IMAGE_SCN_CNT_CODE);
                        if (!found)
                            in_code = 0;
                    }
                }
                resolve = mismatches == 0;
            }
            for (i = 0; mods[mi][i] && mods[mi][i] != '.'; i++)
                name[i] = mods[mi][i];
            name[i] = 0;
            {
                char label[96];
                int n = 0;
                const char *parts[3];
                parts[0] = name;
                parts[1] = "_pe_header_parses";
                parts[2] = "";
                for (k = 0; k < 2; k++)
                    for (const char *p = parts[k]; *p; p++) label[n++] = *p;
                label[n] = 0;
                rec_x(label, hdr_ok, nt ? nt->FileHeader.Machine : 0);
                n = 0;
                parts[1] = "_export_names_sorted";
                for (k = 0; k < 2; k++)
                    for (const char *p = parts[k]; *p; p++) label[n++] = *p;
                label[n] = 0;
                rec_u(label, sorted && e->NumberOfNames > 100, e ? e->NumberOfNames : 0);
                n = 0;
                parts[1] = "_exports_resolve_like_GetProcAddress";
                for (k = 0; k < 2; k++)
                    for (const char *p = parts[k]; *p; p++) label[n++] = *p;
                label[n] = 0;
                rec(label, resolve, bad);
                n = 0;
                parts[1] = "_exports_in_image_sections";
                for (k = 0; k < 2; k++)
                    for (const char *p = parts[k]; *p; p++) label[n++] = *p;
                label[n] = 0;
                rec(label, in_code, "");
            }
        }
    }
    {
        /* The program's import address table holds what GetProcAddress gives. */
        HMODULE self = GetModuleHandleA(NULL);
        IMAGE_NT_HEADERS *nt = nt_headers(self);
        IMAGE_IMPORT_DESCRIPTOR *d = (IMAGE_IMPORT_DESCRIPTOR *)((unsigned char *)self +
                                                                 nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT].VirtualAddress);
        unsigned int total = 0, bad = 0;
        const char *bad_name = "";
        for (; d->Name; d++) {
            HMODULE m = GetModuleHandleA((const char *)self + d->Name);
            ULONG_PTR *names = (ULONG_PTR *)((unsigned char *)self + d->OriginalFirstThunk);
            ULONG_PTR *iat = (ULONG_PTR *)((unsigned char *)self + d->FirstThunk);
            for (; *names; names++, iat++) {
                const char *n;
                if (IMAGE_SNAP_BY_ORDINAL(*names))
                    continue;
                n = (const char *)((IMAGE_IMPORT_BY_NAME *)((unsigned char *)self + *names))->Name;
                total++;
                if (!m || (FARPROC)*iat != GetProcAddress(m, n)) {
                    if (!bad)
                        bad_name = n;
                    bad++;
                }
            }
        }
        rec("iat_matches_GetProcAddress", total > 10 && bad == 0, bad_name);
    }
    {
        HMODULE h = NULL;
        void *nt_close = (void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtClose");
        BOOL ok = GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, (LPCSTR)nt_close, &h);
        HMODULE self = NULL;
        BOOL ok2 = GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, (LPCSTR)(void *)ldr_checks,
                                      &self);
        rec("GetModuleHandleEx_from_address", ok && h == GetModuleHandleA("ntdll.dll") && ok2 && self == GetModuleHandleA(NULL), "");
    }
    {
        MEMORY_BASIC_INFORMATION mbi;
        void *p = (void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "CreateFileW");
        SIZE_T n = VirtualQuery(p, &mbi, sizeof mbi);
        rec_x("VirtualQuery_kernel32_code_image_rx", n && mbi.Type == MEM_IMAGE && mbi.Protect == PAGE_EXECUTE_READ &&
                                                         mbi.AllocationBase == (void *)GetModuleHandleA("kernel32.dll"),
              mbi.Protect | ((ULONG_PTR)mbi.Type << 8));
    }
    {
        rec("GetModuleHandle_without_extension",
            GetModuleHandleA("KERNEL32") == GetModuleHandleA("kernel32.dll") && GetModuleHandleA("NtDlL.DlL") == GetModuleHandleA("ntdll.dll") &&
                LoadLibraryA("kernel32.dll") == GetModuleHandleA("kernel32.dll"),
            "");
    }
    {
        /* Exports Windows 10 has that are rarely called. */
        static const char *const nt[] = {"RtlGetNtVersionNumbers", "RtlComputeCrc32", "RtlIpv4StringToAddressA", "LdrGetProcedureAddress",
                                         "LdrLoadDll", "RtlAdjustPrivilege", "RtlNtStatusToDosError", "RtlInitUnicodeString",
                                         "RtlRandomEx", "RtlGetCurrentPeb", "RtlPcToFileHeader", "RtlCaptureContext", "RtlUnwind",
                                         "KiUserExceptionDispatcher", "KiUserApcDispatcher", "LdrRegisterDllNotification",
                                         "EtwEventWrite", "EtwEventRegister", "NtTraceEvent", "RtlQueryPerformanceCounter",
                                         "DbgUiRemoteBreakin", "LdrFindResource_U", "LdrAccessResource", "RtlImageNtHeader",
                                         "RtlDosPathNameToNtPathName_U", "RtlGetLastWin32Error", "RtlSetLastWin32Error",
                                         "RtlAllocateHeap", "RtlFreeHeap", "RtlCreateHeap", "RtlUserThreadStart", "LdrInitializeThunk",
                                         "RtlExitUserProcess", "RtlCreateProcessParametersEx", "NtCreateUserProcess", "A_SHAFinal",
                                         "RtlHashUnicodeString", "RtlAddVectoredExceptionHandler", "NtAlertResumeThread",
                                         "RtlGetFullPathName_U", "RtlCompareMemory", "RtlFillMemory", "RtlZeroMemory", "memcpy",
                                         "strstr", "_stricmp", "wcslen", "sprintf", "RtlDecompressBufferEx", "RtlGetCompressionWorkSpaceSize"};
        static const char *const k32[] = {"GetNativeSystemInfo", "IsWow64Process2", "GetSystemFirmwareTable", "K32EnumProcesses",
                                          "K32GetModuleInformation", "CreateToolhelp32Snapshot", "Wow64DisableWow64FsRedirection",
                                          "GetTickCount64", "InitializeProcThreadAttributeList", "UpdateProcThreadAttribute",
                                          "SetProcessMitigationPolicy", "GetProcessMitigationPolicy", "AddDllDirectory",
                                          "SetDefaultDllDirectories", "GetPhysicallyInstalledSystemMemory", "GetCurrentThreadStackLimits",
                                          "QueryFullProcessImageNameW", "GetFirmwareEnvironmentVariableW", "GetFirmwareType", "FlsAlloc",
                                          "GetLogicalProcessorInformationEx", "GetNumaHighestNodeNumber", "GetSystemTimePreciseAsFileTime",
                                          "GetProductInfo", "SetThreadDescription", "GetThreadDescription", "CreateRemoteThreadEx",
                                          "QueryProcessCycleTime", "GetSystemDEPPolicy", "SetProcessDEPPolicy", "GetUserDefaultLocaleName",
                                          "ResolveLocaleName", "GetDynamicTimeZoneInformation", "GetSystemWow64DirectoryA", "WerRegisterRuntimeExceptionModule",
                                          "SetSearchPathMode", "CheckRemoteDebuggerPresent", "GetModuleHandleExW", "SetThreadStackGuarantee",
                                          "InitializeCriticalSectionEx", "AcquireSRWLockExclusive", "InitOnceExecuteOnce"};
        unsigned int missing = 0;
        const char *first = "";
        static char first_buf[64];
        HMODULE nm = GetModuleHandleA("ntdll.dll"), km = GetModuleHandleA("kernel32.dll");
        for (i = 0; i < sizeof nt / sizeof nt[0]; i++)
            if (!GetProcAddress(nm, nt[i])) {
                if (!missing++) first = nt[i];
            }
        for (i = 0; i < sizeof k32 / sizeof k32[0]; i++)
            if (!GetProcAddress(km, k32[i])) {
                if (!missing++) first = k32[i];
            }
        if (missing) {
            char num[12];
            int n = 0;
            fmt_u64(num, missing);
            for (const char *p = num; *p; p++) first_buf[n++] = *p;
            first_buf[n++] = ' ';
            for (const char *p = first; *p && n < 62; p++) first_buf[n++] = *p;
            first_buf[n] = 0;
            first = first_buf;
        }
        rec("rarely_called_exports_resolve", missing == 0, first);
    }
    {
        /* Zw* and Nt* of one service are one stub; the stubs' numbers ranked by address are
         * 0, 1, 2, ... (what SysWhispers relies on). */
        HMODULE m = GetModuleHandleA("ntdll.dll");
        IMAGE_EXPORT_DIRECTORY *e = exports_of(m, NULL);
        unsigned int pairs = 0, split = 0, stubs = 0, bad_numbers = 0;
        if (e) {
            DWORD *names = (DWORD *)((unsigned char *)m + e->AddressOfNames);
            for (i = 0; i < e->NumberOfNames; i++) {
                const char *n = (const char *)m + names[i];
                char twin[128];
                unsigned char *zw;
                if (!starts_with(n, "Zw"))
                    continue;
                for (j = 0; n[j] && j < 126; j++)
                    twin[j] = n[j];
                twin[j] = 0;
                twin[0] = 'N';
                twin[1] = 't';
                zw = (unsigned char *)(void *)GetProcAddress(m, n);
                if (!zw)
                    continue;
                pairs++;
                if ((void *)zw != (void *)GetProcAddress(m, twin))
                    split++;
#ifdef _WIN64
                if (zw[0] == 0x4C && zw[1] == 0x8B && zw[2] == 0xD1 && zw[3] == 0xB8) {
                    ULONG number = *(ULONG *)(zw + 4);
                    unsigned int below = 0;
                    unsigned int q;
                    stubs++;
                    /* its number is the count of stubs at lower addresses */
                    for (q = 0; q < e->NumberOfNames; q++) {
                        const char *o = (const char *)m + names[q];
                        unsigned char *oz;
                        if (!starts_with(o, "Zw"))
                            continue;
                        oz = (unsigned char *)(void *)GetProcAddress(m, o);
                        if (oz && oz < zw && oz[0] == 0x4C && oz[3] == 0xB8)
                            below++;
                    }
                    if (below != number)
                        bad_numbers++;
                }
#else
                if (zw[0] == 0xB8) {
                    ULONG number = *(ULONG *)(zw + 1);
                    unsigned int below = 0, q;
                    stubs++;
                    for (q = 0; q < e->NumberOfNames; q++) {
                        const char *o = (const char *)m + names[q];
                        unsigned char *oz;
                        if (!starts_with(o, "Zw"))
                            continue;
                        oz = (unsigned char *)(void *)GetProcAddress(m, o);
                        if (oz && oz < zw && oz[0] == 0xB8)
                            below++;
                    }
                    if (below != (number & 0xFFFF))
                        bad_numbers++;
                }
#endif
                if (stubs > 40)
                    break; /* enough: the inner walk is quadratic */
            }
        }
        rec_u("Zw_and_Nt_share_one_stub", pairs > 40 && split == 0, split);
        rec_u("syscall_numbers_dense_by_address", stubs > 40 && bad_numbers == 0, bad_numbers);
    }
}

/* ---- CPU ----------------------------------------------------------------------------------- */

static int registry_string(const char *name, char *value, DWORD cap)
{
    HKEY key;
    DWORD type = 0, size = cap;
    LONG r = RegOpenKeyExA(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\0", 0, KEY_READ, &key);
    if (r != ERROR_SUCCESS)
        return 0;
    r = RegQueryValueExA(key, name, NULL, &type, (BYTE *)value, &size);
    RegCloseKey(key);
    if (r != ERROR_SUCCESS || type != REG_SZ || size == 0)
        return 0;
    value[size < cap ? size : cap - 1] = 0;
    return 1;
}

static void cpu_checks(void)
{
    unsigned int r[4], leaf1[4], leaf7[4], ext1[4], max_leaf, max_ext;
    char vendor[13], brand[49], reg[128], text[160];
    DWORD fault;
    ULONG_PTR v;
    unsigned int i;
    void *veh = AddVectoredExceptionHandler(1, probe_handler);

    cpuid(0, 0, r);
    max_leaf = r[0];
    *(unsigned int *)(vendor + 0) = r[1];
    *(unsigned int *)(vendor + 4) = r[3];
    *(unsigned int *)(vendor + 8) = r[2];
    vendor[12] = 0;
    cpuid(0x80000000, 0, r);
    max_ext = r[0];
    for (i = 0; i < 3; i++) {
        cpuid(0x80000002 + i, 0, r);
        *(unsigned int *)(brand + 16 * i + 0) = r[0];
        *(unsigned int *)(brand + 16 * i + 4) = r[1];
        *(unsigned int *)(brand + 16 * i + 8) = r[2];
        *(unsigned int *)(brand + 16 * i + 12) = r[3];
    }
    brand[48] = 0;
    cpuid(1, 0, leaf1);
    cpuid(7, 0, leaf7);
    cpuid(0x80000001, 0, ext1);

    rec_x("cpuid_max_leaves_plausible", max_leaf >= 0xD && max_ext >= 0x80000008, max_leaf);
    rec("cpuid_vendor_matches_brand", (str_eq_i(vendor, "GenuineIntel") && str_has_i(brand, "Intel")) ||
                                          (str_eq_i(vendor, "AuthenticAMD") && str_has_i(brand, "AMD")),
        vendor);
    {
        const char *b = brand;
        int ok;
        while (*b == ' ')
            b++;
        ok = registry_string("ProcessorNameString", reg, sizeof reg);
        {
            /* trim trailing blanks of both */
            unsigned int n = 0;
            while (reg[n]) n++;
            while (n && reg[n - 1] == ' ') reg[--n] = 0;
        }
        {
            char bb[49];
            unsigned int n = 0;
            while (b[n]) { bb[n] = b[n]; n++; }
            bb[n] = 0;
            while (n && bb[n - 1] == ' ') bb[--n] = 0;
            rec("registry_ProcessorNameString_is_the_cpuid_brand", ok && str_eq_i(reg, bb), ok ? reg : "absent");
        }
        ok = registry_string("VendorIdentifier", reg, sizeof reg);
        rec("registry_VendorIdentifier_is_the_cpuid_vendor", ok && str_eq_i(reg, vendor), ok ? reg : "absent");
        ok = registry_string("Identifier", reg, sizeof reg);
        {
            unsigned int family = (leaf1[0] >> 8) & 0xF, model = (leaf1[0] >> 4) & 0xF, stepping = leaf1[0] & 0xF;
            char want[96], num[12];
            int n = 0;
            const char *p;
            if (family == 6 || family == 15)
                model |= ((leaf1[0] >> 16) & 0xF) << 4;
            if (family == 15)
                family += (leaf1[0] >> 20) & 0xFF;
            for (p = OFF("Intel64 Family ", "x86 Family "); *p; p++) want[n++] = *p;
            fmt_u64(num, family);
            for (p = num; *p; p++) want[n++] = *p;
            for (p = " Model "; *p; p++) want[n++] = *p;
            fmt_u64(num, model);
            for (p = num; *p; p++) want[n++] = *p;
            for (p = " Stepping "; *p; p++) want[n++] = *p;
            fmt_u64(num, stepping);
            for (p = num; *p; p++) want[n++] = *p;
            want[n] = 0;
            /* (an AMD's says "AMD64 Family"; a 32-bit program on 64-bit Windows reads "Intel64") */
            rec("registry_Identifier_is_the_cpuid_signature",
                ok && (str_eq_i(reg, want) || (!OFF(1, 0) && str_has_i(reg, want + 3) && str_has_i(reg, "Intel64 Family"))), ok ? reg : want);
        }
        {
            SYSTEM_INFO si;
            GetSystemInfo(&si);
            unsigned int model = (leaf1[0] >> 4) & 0xF, stepping = leaf1[0] & 0xF, family = (leaf1[0] >> 8) & 0xF;
            if (family == 6 || family == 15)
                model |= ((leaf1[0] >> 16) & 0xF) << 4;
            rec_x("GetSystemInfo_processor_level_revision_match_cpuid",
                  si.wProcessorLevel == (family == 15 ? family + ((leaf1[0] >> 20) & 0xFF) : family) &&
                      si.wProcessorRevision == ((model << 8) | stepping),
                  ((unsigned long long)si.wProcessorLevel << 16) | si.wProcessorRevision);
            /* CPUID.1:EBX[23:16], logical processors per package, at least the processor count. */
            rec_u("cpuid_logical_processor_count_covers_GetSystemInfo",
                  (leaf1[3] & (1u << 28)) && ((leaf1[1] >> 16) & 0xFF) >= si.dwNumberOfProcessors, (leaf1[1] >> 16) & 0xFF);
        }
    }
    {
        /* OSXSAVE: XGETBV works and says which states the OS enabled (x87, SSE, AVX). */
        int osxsave = !!(leaf1[2] & (1u << 27)), avx = !!(leaf1[2] & (1u << 28));
        v = run_probe(probe_xgetbv, 0, 0, &fault);
        rec_x("xgetbv_matches_cpuid_osxsave", osxsave ? (!fault && (v & 3) == 3 && (!avx || (v & 6) == 6)) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : v);
        v = run_probe(probe_avx, 0, 0, &fault);
        rec_x("avx_executes_when_cpuid_says_so", avx && osxsave ? (!fault && (ULONG)v == 0xFFFFFFFFu) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : v);
        v = run_probe(probe_avx2, 0, 0, &fault);
        rec_x("avx2_executes_when_cpuid_says_so",
              (leaf7[1] & (1u << 5)) && avx && osxsave ? (!fault && (ULONG)v == 0xFFFFFFFEu) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : v);
        probe_a = 0;
        {
            /* 1.0 + 2.0 * 2.0 = 5.0 */
#ifdef _WIN64
            v = run_probe(probe_fma, 0x3FF0000000000000ull, 0x4000000000000000ull, &fault);
            rec_x("fma_executes_when_cpuid_says_so",
                  (leaf1[2] & (1u << 12)) && avx && osxsave ? (!fault && v == 0x4014000000000000ull) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
                  fault ? fault : v);
#else
            /* x86: probe_a/b are 4 bytes; load the doubles' low words only is meaningless: check the fault only. */
            probe_a = 0;
            v = run_probe(probe_fma, 0, 0, &fault);
            rec_x("fma_executes_when_cpuid_says_so", (leaf1[2] & (1u << 12)) && avx && osxsave ? !fault : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
                  fault);
#endif
        }
        /* half 1.0 (0x3C00) -> float 1.0 (0x3F800000) */
        v = run_probe(probe_f16c, 0x3C00, 0, &fault);
        rec_x("f16c_executes_when_cpuid_says_so",
              (leaf1[2] & (1u << 29)) && avx && osxsave ? (!fault && (ULONG)v == 0x3F800000u) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : v);
    }
    v = run_probe(probe_rdrand, 0, 0, &fault);
    {
        ULONG_PTR v2;
        unsigned char cf1 = probe_cf;
        DWORD fault2;
        v2 = run_probe(probe_rdrand, 0, 0, &fault2);
        rec_x("rdrand_works_when_cpuid_says_so",
              (leaf1[2] & (1u << 30)) ? (!fault && !fault2 && cf1 && probe_cf && v != v2) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : cf1);
    }
    v = run_probe(probe_rdseed, 0, 0, &fault);
    rec_x("rdseed_works_when_cpuid_says_so", (leaf7[1] & (1u << 18)) ? (!fault && probe_cf) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
          fault ? fault : probe_cf);
    v = run_probe(probe_popcnt, 0xF0F0, 0, &fault);
    rec_x("popcnt_when_cpuid_says_so", (leaf1[2] & (1u << 23)) ? (!fault && v == 8) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    /* lzcnt without ABM/LZCNT decodes as bsr (rep bsr): lzcnt(1) = 31, bsr(1) = 0. */
    v = run_probe(probe_lzcnt, 1, 0, &fault);
    rec_x("lzcnt_is_lzcnt_when_cpuid_says_so", !fault && ((ext1[2] & (1u << 5)) ? v == 31 : v == 0), fault ? fault : v);
    v = run_probe(probe_tzcnt, 0, 0, &fault);
    rec_x("tzcnt_of_zero_is_32_when_cpuid_says_bmi1", !fault && ((leaf7[1] & (1u << 3)) ? v == 32 : 1), fault ? fault : v);
    v = run_probe(probe_andn, 0xFF00, 0xFFFF, &fault);
    rec_x("andn_when_cpuid_says_bmi1", (leaf7[1] & (1u << 3)) ? (!fault && v == 0xFF) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    v = run_probe(probe_pdep, 0x5, 0xF0, &fault);
    rec_x("pdep_when_cpuid_says_bmi2", (leaf7[1] & (1u << 8)) ? (!fault && v == 0x50) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    v = run_probe(probe_movbe, 0x11223344, 0, &fault);
    rec_x("movbe_when_cpuid_says_so", (leaf1[2] & (1u << 22)) ? (!fault && (ULONG)v == 0x44332211u) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
          fault ? fault : v);
    /* CRC-32C of four zero bytes from 0xFFFFFFFF, not inverted at the end */
    v = run_probe(probe_crc32, 0xFFFFFFFF, 0, &fault);
    rec_x("crc32_when_cpuid_says_sse42", (leaf1[2] & (1u << 20)) ? (!fault && (ULONG)v == 0xB798B438u) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
          fault ? fault : v);
    v = run_probe(probe_sse41, 0xA1B2, 0, &fault);
    rec_x("sse41_when_cpuid_says_so", (leaf1[2] & (1u << 19)) ? (!fault && v == 0xA1) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    v = run_probe(probe_ssse3, 0xFF, 0, &fault);
    rec_x("ssse3_when_cpuid_says_so", (leaf1[2] & (1u << 9)) ? (!fault && (v & 0xFF) == 1) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    v = run_probe(probe_aesenc, 0, 0, &fault);
    /* aesenc of a zero state with a zero key: ShiftRows/SubBytes give 0x63 bytes, MixColumns keeps them. */
    rec_x("aesenc_when_cpuid_says_so", (leaf1[2] & (1u << 25)) ? (!fault && (ULONG)v == 0x63636363u) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
          fault ? fault : v);
    v = run_probe(probe_pclmul, 3, 3, &fault);
    rec_x("pclmulqdq_when_cpuid_says_so", (leaf1[2] & (1u << 1)) ? (!fault && v == 5) : fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault ? fault : v);
    {
        ULONG_PTR aux = run_probe(probe_rdtscp, 0, 0, &fault);
        rec_x("rdtscp_when_cpuid_says_so", (ext1[3] & (1u << 27)) ? (!fault && aux == (ULONG_PTR)GetCurrentProcessorNumber()) : fault == EXCEPTION_ILLEGAL_INSTRUCTION,
              fault ? fault : aux);
    }
    {
        /* fnstenv stores the address of the last x87 instruction (shellcode's GetPC). */
        v = run_probe(probe_fnstenv, 0, 0, &fault);
        rec_x("fnstenv_records_the_fpu_instruction_pointer", !fault && (ULONG)v == (ULONG)(ULONG_PTR)probe_fnstenv_at, fault ? fault : v);
    }
    v = run_probe(probe_bsf_zero, 0x1234, 0, &fault);
    rec_x("bsf_of_zero_leaves_the_destination", !fault && v == 0x1234, fault ? fault : v);
    v = run_probe(probe_cli, 0, 0, &fault);
    rec_x("cli_is_privileged", fault == 0xC0000096, fault);
    v = run_probe(probe_lock_reg, 0, 0, &fault);
    rec_x("lock_prefix_on_a_register_is_illegal", fault == EXCEPTION_ILLEGAL_INSTRUCTION, fault);
    v = run_probe(probe_overlong, 0, 0, &fault);
    rec_x("instruction_over_15_bytes_faults", fault != 0, fault);
    {
        unsigned short cs, ss, ds, es, fs, gs;
        __asm__ volatile("mov %%cs, %0\n\tmov %%ss, %1\n\tmov %%ds, %2\n\tmov %%es, %3\n\tmov %%fs, %4\n\tmov %%gs, %5"
                         : "=r"(cs), "=r"(ss), "=r"(ds), "=r"(es), "=r"(fs), "=r"(gs));
        {
            /* "cs ss ds es fs gs", each in hex */
            unsigned short sel[6];
            int n = 0, i2;
            sel[0] = cs, sel[1] = ss, sel[2] = ds, sel[3] = es, sel[4] = fs, sel[5] = gs;
            for (i2 = 0; i2 < 6; i2++) {
                char h[24];
                const char *p;
                hex(h, sel[i2]);
                for (p = h; *p; p++) text[n++] = *p;
                text[n++] = i2 < 5 ? ' ' : 0;
            }
        }
#ifdef _WIN64
        rec("segment_selectors", cs == 0x33 && ss == 0x2B && ds == 0x2B && es == 0x2B && fs == 0x53 && gs == 0x2B, text);
#else
        /* 32-bit Windows: cs 0x1B, ss/ds/es 0x23, fs 0x3B, gs 0; under WoW64: cs 0x23, 0x2B, fs 0x53, gs 0x2B. */
        rec("segment_selectors", (cs == 0x1B && ss == 0x23 && ds == 0x23 && es == 0x23 && fs == 0x3B && gs == 0) ||
                                     (cs == 0x23 && ss == 0x2B && ds == 0x2B && es == 0x2B && fs == 0x53 && gs == 0x2B),
            text);
#endif
    }
    rec_x("direction_flag_clear_at_entry", !(entry_flags & 0x400), entry_flags);
    rec_x("x87_control_word_at_entry", entry_fcw == 0x27F, entry_fcw);
    rec_x("x87_stack_empty_at_entry", entry_ftw == 0xFFFF, entry_ftw);
    rec_x("mxcsr_at_entry", entry_mxcsr == 0x1F80, entry_mxcsr);
    RemoveVectoredExceptionHandler(veh);
}

/* ---- APIs an emulator answers with a constant --------------------------------------------- */

static void last_error_check(const char *name, int failed, DWORD want)
{
    DWORD e = GetLastError();
    rec_u(name, failed && e == want, e);
}

static void api_checks(void)
{
    char path[MAX_PATH];
    HANDLE h;
    {
        SetLastError(0);
        h = CreateFileA("C:\\Windows\\emutells-no-such-file.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
        last_error_check("CreateFile_missing_file_error", h == INVALID_HANDLE_VALUE, ERROR_FILE_NOT_FOUND);
        SetLastError(0);
        h = CreateFileA("C:\\emutells-no-such-dir\\x.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
        last_error_check("CreateFile_missing_dir_error", h == INVALID_HANDLE_VALUE, ERROR_PATH_NOT_FOUND);
        SetLastError(0);
        last_error_check("GetFileAttributes_missing_error", GetFileAttributesA("C:\\Windows\\emutells-none.txt") == INVALID_FILE_ATTRIBUTES,
                         ERROR_FILE_NOT_FOUND);
        SetLastError(0);
        last_error_check("DeleteFile_missing_error", !DeleteFileA("C:\\Windows\\emutells-none.txt"), ERROR_FILE_NOT_FOUND);
        {
            WIN32_FIND_DATAA fd;
            SetLastError(0);
            h = FindFirstFileA("C:\\Windows\\emutells-none*.zzz", &fd);
            last_error_check("FindFirstFile_no_match_error", h == INVALID_HANDLE_VALUE, ERROR_FILE_NOT_FOUND);
        }
    }
    {
        HKEY key;
        LONG r = RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\EmutellsNoSuchKey", 0, KEY_READ, &key);
        rec_u("RegOpenKeyEx_missing_key", r == ERROR_FILE_NOT_FOUND, (ULONG)r);
        r = RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", 0, KEY_READ, &key);
        if (r == ERROR_SUCCESS) {
            DWORD size = 8;
            char small[8];
            LONG q = RegQueryValueExA(key, "EmutellsNoSuchValue", NULL, NULL, NULL, NULL);
            LONG m = RegQueryValueExA(key, "ProductName", NULL, NULL, (BYTE *)small, &size);
            RegCloseKey(key);
            rec_u("RegQueryValueEx_missing_value", q == ERROR_FILE_NOT_FOUND, (ULONG)q);
            rec_u("RegQueryValueEx_small_buffer_more_data", m == ERROR_MORE_DATA && size > 8, (ULONG)m);
        } else {
            rec_u("RegQueryValueEx_missing_value", 0, (ULONG)r);
            rec_u("RegQueryValueEx_small_buffer_more_data", 0, (ULONG)r);
        }
    }
    SetLastError(0);
    last_error_check("OpenMutex_missing_error", OpenMutexA(SYNCHRONIZE, FALSE, "EmutellsNoSuchMutex") == NULL, ERROR_FILE_NOT_FOUND);
    SetLastError(0);
    last_error_check("OpenEvent_missing_error", OpenEventA(SYNCHRONIZE, FALSE, "EmutellsNoSuchEvent") == NULL, ERROR_FILE_NOT_FOUND);
    {
        HANDLE a = CreateMutexA(NULL, FALSE, "EmutellsMutex"), b;
        SetLastError(0);
        b = CreateMutexA(NULL, FALSE, "EmutellsMutex");
        last_error_check("CreateMutex_existing_already_exists", a && b && a != b, ERROR_ALREADY_EXISTS);
        if (b) CloseHandle(b);
        if (a) CloseHandle(a);
    }
    SetLastError(0);
    last_error_check("GetModuleHandle_missing_error", GetModuleHandleA("emutells-none.dll") == NULL, ERROR_MOD_NOT_FOUND);
    SetLastError(0);
    last_error_check("GetEnvironmentVariable_missing_error", GetEnvironmentVariableA("EMUTELLS_NONE", path, sizeof path) == 0,
                     ERROR_ENVVAR_NOT_FOUND);
    SetLastError(0);
    last_error_check("OpenProcess_bad_pid_error", OpenProcess(PROCESS_QUERY_INFORMATION, FALSE, 0xFFFFFFF0u) == NULL, ERROR_INVALID_PARAMETER);
    SetLastError(0);
    last_error_check("VirtualFree_bad_address_error", !VirtualFree((void *)(ULONG_PTR)0x10000000, 0, MEM_RELEASE), ERROR_INVALID_ADDRESS);
    SetLastError(0);
    last_error_check("VirtualAlloc_zero_size_error", VirtualAlloc(NULL, 0, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) == NULL, ERROR_INVALID_PARAMETER);
    SetLastError(0);
    last_error_check("WaitForSingleObject_bad_handle_error", WaitForSingleObject(BOGUS_HANDLE, 0) == WAIT_FAILED, ERROR_INVALID_HANDLE);
    SetLastError(0);
    last_error_check("CloseHandle_bad_handle_error", !CloseHandle(BOGUS_HANDLE), ERROR_INVALID_HANDLE);
    {
        nt_close_t nt_close = (nt_close_t)(void *)proc("ntdll.dll", "NtClose");
        LONG s = nt_close ? nt_close(BOGUS_HANDLE) : 0;
        rec_x("NtClose_bad_handle_status", (ULONG)s == 0xC0000008u, (ULONG)s);
    }
    {
        char buf[16];
        SIZE_T got = 99;
        BOOL ok;
        SetLastError(0);
        /* x64: far from anything Windows maps; x86: the no-access 64 KiB below KUSER_SHARED_DATA's end */
        ok = ReadProcessMemory(GetCurrentProcess(), (void *)(ULONG_PTR)OFF(0xCCC00000000ull, 0x7FFF0000), buf, sizeof buf, &got);
        last_error_check("ReadProcessMemory_unmapped_error", !ok && got == 0, ERROR_PARTIAL_COPY);
    }
    {
        char small[8];
        DWORD n;
        SetLastError(0);
        n = GetModuleFileNameA(NULL, small, sizeof small);
        last_error_check("GetModuleFileName_small_buffer_truncates", n == sizeof small && small[sizeof small - 1] == 0, ERROR_INSUFFICIENT_BUFFER);
    }
    {
        UINT need = GetSystemDirectoryA(NULL, 0), got = GetSystemDirectoryA(path, sizeof path);
        rec_u("GetSystemDirectory_size_query_counts_the_nul", need == got + 1, need);
    }
    {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        rec_x("GetSystemInfo_address_range", (ULONG_PTR)si.lpMinimumApplicationAddress == 0x10000 &&
                                                 (ULONG_PTR)si.lpMaximumApplicationAddress == OFF(0x7FFFFFFEFFFFull, 0x7FFEFFFF) &&
                                                 si.dwPageSize == 0x1000 && si.dwAllocationGranularity == 0x10000,
              (ULONG_PTR)si.lpMaximumApplicationAddress);
    }
    {
        get_tick_count64_t t64 = (get_tick_count64_t)(void *)proc("kernel32.dll", "GetTickCount64");
        DWORD t = GetTickCount();
        ULONGLONG t2 = t64 ? t64() : 0;
        rec("GetTickCount_is_the_low_part_of_GetTickCount64", t64 && close_to((DWORD)t2, t, 20), "");
    }
    {
        DWORD adj = 0, inc = 0;
        BOOL disabled = FALSE;
        BOOL ok = GetSystemTimeAdjustment(&adj, &inc, &disabled);
        rec_u("GetSystemTimeAdjustment_default", ok && disabled && inc == 156250 && adj == inc, inc);
    }
    {
        get_phys_mem_t phys = (get_phys_mem_t)(void *)proc("kernel32.dll", "GetPhysicallyInstalledSystemMemory");
        ULONGLONG kb = 0;
        MEMORYSTATUSEX ms;
        ms.dwLength = sizeof ms;
        GlobalMemoryStatusEx(&ms);
        rec_u("GetPhysicallyInstalledSystemMemory_covers_total", phys && phys(&kb) && kb * 1024 >= ms.ullTotalPhys && kb * 1024 - ms.ullTotalPhys < (2ull << 30),
              kb >> 10);
    }
    {
        void *p = HeapAlloc(GetProcessHeap(), 0, 37);
        MEMORY_BASIC_INFORMATION mbi;
        SIZE_T size = p ? HeapSize(GetProcessHeap(), 0, p) : 0;
        int ok = p && ((ULONG_PTR)p & (OFF(16, 8) - 1)) == 0 && HeapValidate(GetProcessHeap(), 0, NULL);
        rec("HeapAlloc_alignment_HeapValidate", ok, "");
        rec_u("HeapSize_is_the_size_asked_for", size == 37, size);
        ok = p && VirtualQuery(p, &mbi, sizeof mbi) && mbi.Type == MEM_PRIVATE && mbi.AllocationBase == (void *)GetProcessHeap();
        rec_x("HeapAlloc_block_inside_the_heap_region", ok, (ULONG_PTR)mbi.AllocationBase);
        if (p)
            HeapFree(GetProcessHeap(), 0, p);
    }
    {
        void *a = VirtualAlloc(NULL, 1, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        MEMORY_BASIC_INFORMATION mbi;
        int ok = a && ((ULONG_PTR)a & 0xFFFF) == 0 && VirtualQuery(a, &mbi, sizeof mbi) && mbi.RegionSize == 0x1000 && mbi.AllocationBase == a;
        rec_x("VirtualAlloc_granularity", ok, (ULONG_PTR)a);
        if (a)
            VirtualFree(a, 0, MEM_RELEASE);
    }
    {
        /* The image in memory starts with the bytes of its file. */
        HANDLE f;
        DWORD got = 0;
        static unsigned char disk[0x400];
        unsigned char *mem = (unsigned char *)GetModuleHandleA(NULL);
        unsigned int i, diff = 0;
        GetModuleFileNameA(NULL, path, sizeof path);
        f = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
        if (f != INVALID_HANDLE_VALUE) {
            ReadFile(f, disk, sizeof disk, &got, NULL);
            CloseHandle(f);
        }
        for (i = 0; i < got; i++)
            diff += disk[i] != mem[i];
        rec_u("image_headers_match_the_file", got == sizeof disk && diff == 0, diff);
    }
}

void __stdcall EmuTellsEntry(void)
{
    char text[32];
    /* First, before any call: the flags, x87 control and tag words and MXCSR the process started with. */
    {
        unsigned char env[28];
        __asm__ volatile(
#ifdef _WIN64
            "pushfq\n\tpopq %0"
#else
            "pushfl\n\tpopl %0"
#endif
            : "=r"(entry_flags));
        __asm__ volatile("fnstenv %0" : "=m"(env));
        __asm__ volatile("fldcw %0" ::"m"(env[0])); /* fnstenv masked exceptions; put the control word back */
        entry_fcw = (unsigned short)(env[0] | env[1] << 8);
        entry_ftw = (unsigned short)(env[8] | env[9] << 8);
        __asm__ volatile("stmxcsr %0" : "=m"(entry_mxcsr));
    }
    if (!marker_set())
        ExitProcess(2);
    kuser_checks();
    peb_teb_checks();
    ldr_checks();
    cpu_checks();
    api_checks();
    fmt_u64(text, checks);
    OutputDebugStringA("emutells checks");
    OutputDebugStringA(text);
    ExitProcess(tells);
}
