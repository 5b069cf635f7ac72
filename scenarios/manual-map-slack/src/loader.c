/*
 * loader.c - probe: a DLL mapped by hand ("manual mapping", as reflective loaders do) into an
 * allocation larger than its image, then a second stage run from the allocation's spare pages
 * (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * The DLL (XOR 0x3c in this program's data) is decoded into a heap block; VirtualAlloc
 * (SizeOfImage + 64 KiB, PAGE_READWRITE); headers and sections copied; base relocations applied;
 * imports resolved with LoadLibraryA + GetProcAddress; each section VirtualProtect-ed to what
 * its characteristics ask; DllMain(base, DLL_PROCESS_ATTACH, 0) called. Then the shellcode (XOR
 * 0x5a) is decoded into the pages after the image, made PAGE_EXECUTE_READ and called.
 * The DLL writes C:\Users\Public\lineage_manualmap.txt, the shellcode lineage_slack.txt.
 * Exit codes: 0 ok, 1 no marker, 2 heap, 3 memory, 4 headers, 5 imports, 6 DllMain.
 */
#include "common.h"
#include "blobs.h" /* module_enc[]: the DLL XOR 0x3c; payload_enc[]: the shellcode XOR 0x5a */

#define SLACK 0x10000

static DWORD section_protect(DWORD ch)
{
    int x = (ch & IMAGE_SCN_MEM_EXECUTE) != 0, w = (ch & IMAGE_SCN_MEM_WRITE) != 0;
    if (x)
        return w ? PAGE_EXECUTE_READWRITE : PAGE_EXECUTE_READ;
    return w ? PAGE_READWRITE : PAGE_READONLY;
}

void Entry(void)
{
    typedef BOOL (WINAPI *dllmain_t)(HINSTANCE, DWORD, LPVOID);
    typedef DWORD (WINAPI *sc_t)(struct sc_ctx *);
    static struct sc_ctx ctx;
    unsigned char *file, *base, *slack;
    IMAGE_NT_HEADERS *nt;
    IMAGE_SECTION_HEADER *sec;
    IMAGE_DATA_DIRECTORY *dir;
    ULONG_PTR delta;
    DWORD i, old, size, entry;

    if (!marker_present())
        ExitProcess(1);
    file = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, sizeof(module_enc));
    if (!file)
        ExitProcess(2);
    for (i = 0; i < sizeof(module_enc); i++)
        file[i] = module_enc[i] ^ 0x3c;
    nt = (IMAGE_NT_HEADERS *)(file + ((IMAGE_DOS_HEADER *)file)->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        ExitProcess(4);
    size = nt->OptionalHeader.SizeOfImage;
    entry = nt->OptionalHeader.AddressOfEntryPoint;
    base = (unsigned char *)VirtualAlloc(0, size + SLACK, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!base)
        ExitProcess(3);
    for (i = 0; i < nt->OptionalHeader.SizeOfHeaders; i++)
        base[i] = file[i];
    sec = IMAGE_FIRST_SECTION(nt);
    for (i = 0; i < nt->FileHeader.NumberOfSections; i++) {
        DWORD j;
        for (j = 0; j < sec[i].SizeOfRawData; j++)
            base[sec[i].VirtualAddress + j] = file[sec[i].PointerToRawData + j];
    }
    delta = (ULONG_PTR)base - (ULONG_PTR)nt->OptionalHeader.ImageBase;
    dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
    if (delta && dir->Size) {
        IMAGE_BASE_RELOCATION *rel = (IMAGE_BASE_RELOCATION *)(base + dir->VirtualAddress);
        while (rel->VirtualAddress && rel->SizeOfBlock) {
            WORD *item = (WORD *)(rel + 1);
            DWORD n = (rel->SizeOfBlock - sizeof(*rel)) / sizeof(WORD);
            for (i = 0; i < n; i++)
                if ((item[i] >> 12) == IMAGE_REL_BASED_DIR64)
                    *(ULONG_PTR *)(base + rel->VirtualAddress + (item[i] & 0xfff)) += delta;
            rel = (IMAGE_BASE_RELOCATION *)((unsigned char *)rel + rel->SizeOfBlock);
        }
    }
    dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (dir->Size) {
        IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(base + dir->VirtualAddress);
        for (; imp->Name; imp++) {
            HMODULE mod = LoadLibraryA((char *)(base + imp->Name));
            IMAGE_THUNK_DATA *names = (IMAGE_THUNK_DATA *)(base + (imp->OriginalFirstThunk ? imp->OriginalFirstThunk : imp->FirstThunk));
            IMAGE_THUNK_DATA *iat = (IMAGE_THUNK_DATA *)(base + imp->FirstThunk);
            if (!mod)
                ExitProcess(5);
            for (; names->u1.AddressOfData; names++, iat++) {
                IMAGE_IMPORT_BY_NAME *by = (IMAGE_IMPORT_BY_NAME *)(base + names->u1.AddressOfData);
                iat->u1.Function = (ULONG_PTR)GetProcAddress(mod, (char *)by->Name);
                if (!iat->u1.Function)
                    ExitProcess(5);
            }
        }
    }
    /* the mapped headers' section table (the file's is wiped below) */
    nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    sec = IMAGE_FIRST_SECTION(nt);
    for (i = 0; i < nt->FileHeader.NumberOfSections; i++)
        VirtualProtect(base + sec[i].VirtualAddress, sec[i].Misc.VirtualSize, section_protect(sec[i].Characteristics), &old);
    SecureZeroMemory(file, sizeof(module_enc));
    HeapFree(GetProcessHeap(), 0, file);
    if (!((dllmain_t)(void *)(base + entry))((HINSTANCE)base, DLL_PROCESS_ATTACH, 0))
        ExitProcess(6);
    /* The second stage, in the allocation's spare pages after the image. */
    slack = base + ((size + 0xfff) & ~0xfffu);
    for (i = 0; i < sizeof(payload_enc); i++)
        slack[i] = payload_enc[i] ^ 0x5a;
    VirtualProtect(slack, sizeof(payload_enc), PAGE_EXECUTE_READ, &old);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_slack.txt", "ran from the spare pages after a mapped image\n");
    ((sc_t)(void *)slack)(&ctx);
    ExitProcess(0);
}
