/*
 * hello_sc.c - tiny, benign position-independent shellcode for chainreplay's
 * "--arch x64|x86 shellcode" tests. Built for both x86-64 and i686, then
 * flattened to raw bytes (objcopy -O binary -j .text of the object file).
 *
 * Harmless by construction (GetTickCount, ExitThread(0)); skips the
 * CHAINREPLAY_SANDBOX marker.
 *
 * Resolves kernel32 by walking PEB->Ldr->InMemoryOrderModuleList and hashing
 * BaseDllName; resolves exports by ROR13 hash of the export name.
 * The whole blob is one function (everything else is always_inline) with no
 * data references and no relocations; the Makefile checks the latter.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#if defined(__x86_64__)
typedef unsigned long long uptr_t;
#define API __attribute__((ms_abi))
#else
typedef unsigned long uptr_t;
#define API __attribute__((stdcall))
#endif

#define INL static inline __attribute__((always_inline))

/* ROR13 hashes, computed offline (see tests/bins/README.md). */
#define H_KERNEL32_DLL   0x6e2bca17u /* "KERNEL32.DLL" (BaseDllName, upper-cased) */
#define H_GETTICKCOUNT   0xf791fb23u /* "GetTickCount" */
#define H_EXITTHREAD     0x60e0ceefu /* "ExitThread" */

typedef u32 (API *GetTickCount_t)(void);
typedef void (API *ExitThread_t)(u32);

INL u32 ror13(u32 h) { return (h >> 13) | (h << 19); }

INL uptr_t get_peb(void)
{
    uptr_t peb;
#if defined(__x86_64__)
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
#else
    __asm__ volatile("movl %%fs:0x30, %0" : "=r"(peb));
#endif
    return peb;
}

INL uptr_t find_module(u32 want)
{
    uptr_t peb = get_peb();
#if defined(__x86_64__)
    uptr_t ldr = *(uptr_t *)(peb + 0x18);
    uptr_t head = ldr + 0x20;                  /* InMemoryOrderModuleList */
#define LINK_BASE 0x20                          /* DllBase - InMemoryOrderLinks */
#define LINK_NAME_LEN 0x48                      /* BaseDllName.Length */
#define LINK_NAME_BUF 0x50                      /* BaseDllName.Buffer */
#else
    uptr_t ldr = *(uptr_t *)(peb + 0x0c);
    uptr_t head = ldr + 0x14;
#define LINK_BASE 0x10
#define LINK_NAME_LEN 0x24
#define LINK_NAME_BUF 0x28
#endif
    uptr_t e;
    for (e = *(uptr_t *)head; e != head; e = *(uptr_t *)e) {
        u16 len = *(u16 *)(e + LINK_NAME_LEN) / 2;
        u16 *nm = *(u16 **)(e + LINK_NAME_BUF);
        u32 h = 0;
        u16 i;
        if (!nm)
            continue;
        for (i = 0; i < len; i++) {
            u16 c = nm[i];
            if (c >= 'a' && c <= 'z')
                c -= 0x20;
            h = ror13(h) + (u8)c;
        }
        if (h == want)
            return *(uptr_t *)(e + LINK_BASE);
    }
    return 0;
}

INL void *find_export(uptr_t base, u32 want)
{
    u32 pe = *(u32 *)(base + 0x3c);
#if defined(__x86_64__)
    u32 exp_rva = *(u32 *)(base + pe + 0x88);
#else
    u32 exp_rva = *(u32 *)(base + pe + 0x78);
#endif
    uptr_t ed = base + exp_rva;
    u32 n = *(u32 *)(ed + 0x18);
    u32 *names = (u32 *)(base + *(u32 *)(ed + 0x20));
    u16 *ords = (u16 *)(base + *(u32 *)(ed + 0x24));
    u32 *funcs = (u32 *)(base + *(u32 *)(ed + 0x1c));
    u32 i;
    if (!exp_rva)
        return 0;
    for (i = 0; i < n; i++) {
        const u8 *s = (const u8 *)(base + names[i]);
        u32 h = 0;
        while (*s)
            h = ror13(h) + *s++;
        if (h == want)
            return (void *)(base + funcs[ords[i]]);
    }
    return 0;
}

void API sc_entry(void)
{
    uptr_t k32 = find_module(H_KERNEL32_DLL);
    GetTickCount_t pGetTickCount;
    ExitThread_t pExitThread;
    if (!k32)
        return;
    pGetTickCount = (GetTickCount_t)find_export(k32, H_GETTICKCOUNT);
    pExitThread = (ExitThread_t)find_export(k32, H_EXITTHREAD);
    if (!pGetTickCount || !pExitThread)
        return;
    pGetTickCount();
    pExitThread(0);
}
