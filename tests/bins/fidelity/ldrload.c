/* The loader list a program starts with, and a DLL LoadLibrary loads joining it: a fresh
 * process lists the program, ntdll, kernel32, kernelbase and what the program imports (here
 * kernel32 only), not every DLL the emulator keeps ready; a DLL loaded later is in
 * the list where API-hashing shellcode walks it (InLoadOrderModuleList). x64 and x86; one
 * verdict per check (OutputDebugStringA "check NAME: pass|FAIL DETAIL"). */
#include "fidelity.h"

#ifdef _WIN64
#define OFF(x64, x86) (x64)
#else
#define OFF(x64, x86) (x86)
#endif

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

/* Entries of InLoadOrderModuleList; *found set when one has DllBase == base and BaseDllName
 * equal to name (case-insensitive, ASCII). */
static unsigned int listed(void *base, const char *name, int *found)
{
    unsigned char *ldr = *(unsigned char **)(current_peb() + OFF(0x18, 0xC));
    LIST_ENTRY *head = (LIST_ENTRY *)(ldr + OFF(0x10, 0xC)), *e;
    unsigned int n = 0;
    *found = 0;
    for (e = head->Flink; e != head && n < 256; e = e->Flink, n++) {
        unsigned char *entry = (unsigned char *)e;
        void *dll_base = *(void **)(entry + OFF(0x30, 0x18));
        USHORT length = *(USHORT *)(entry + OFF(0x58, 0x2C));
        const WCHAR *text = *(const WCHAR **)(entry + OFF(0x60, 0x30));
        char ascii[64];
        unsigned int i;
        for (i = 0; i < length / 2 && i < 63 && text; i++)
            ascii[i] = (char)text[i];
        ascii[i] = 0;
        if (dll_base == base && str_eq_i(ascii, name))
            *found = 1;
    }
    return n;
}

void __stdcall LdrLoadEntry(void)
{
    char detail[32];
    unsigned int before, after;
    int found_before, found_after;
    HMODULE module;
    if (!marker_set())
        ExitProcess(0xFFFF);
    before = listed(NULL, "", &found_before);
    fmt_u64(detail, before);
    verdict("ldr_fresh_process_lists_few_modules", before >= 3 && before <= 24, detail);
    module = LoadLibraryA("urlmon.dll");
    listed(module, "urlmon.dll", &found_before);
    after = listed(module, "urlmon.dll", &found_after);
    fmt_u64(detail, after);
    verdict("ldr_LoadLibrary_adds_its_dll", module && found_after && after == before + 1, detail);
    module = LoadLibraryA("urlmon.dll");
    fmt_u64(detail, listed(module, "urlmon.dll", &found_after));
    verdict("ldr_LoadLibrary_again_adds_nothing", found_after && listed(module, "urlmon.dll", &found_after) == after, detail);
    ExitProcess(0);
}
