/*
 * loader.c - generality suite: file -> custom cipher into the heap -> copied to new memory -> run;
 * then a second layer decoded into the heap and run from there. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\cache.bin (two u32 lengths, then layer 1 and layer 2,
 * each under a cipher no lineage rule names: nibble swap + add) into a heap block (HeapAlloc),
 * decodes layer 1 into a second heap block, copies that with kernel32!RtlMoveMemory (resolved
 * with GetProcAddress) into a new PAGE_READWRITE allocation, makes it PAGE_EXECUTE_READ with
 * VirtualProtect and runs it in a new thread. Layer 1 (layer1_heap.c) decodes layer 2 from the
 * file's heap copy into a heap block of its own and calls it there; layer 2
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_heap.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 format, 4 memory, 5 thread.
 */
#include "heapctx.h"

typedef VOID (WINAPI *RtlMoveMemory_t)(PVOID, const VOID *, SIZE_T);

#define MAX_FILE 0x4000

void Entry(void)
{
    static struct heap_ctx ctx;
    HANDLE f, heap, thread;
    DWORD got = 0, len1, len2, i, old;
    unsigned char *file, *decoded, *mem, b;
    RtlMoveMemory_t move;

    if (!marker_present())
        ExitProcess(1);
    heap = GetProcessHeap();
    file = (unsigned char *)HeapAlloc(heap, 0, MAX_FILE);
    if (!file)
        ExitProcess(4);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\cache.bin", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(f, file, MAX_FILE, &got, 0) || got < 8)
        ExitProcess(2);
    CloseHandle(f);
    len1 = *(DWORD *)file;
    len2 = *(DWORD *)(file + 4);
    if (len1 == 0 || len2 == 0 || 8 + len1 + len2 > got)
        ExitProcess(3);
    decoded = (unsigned char *)HeapAlloc(heap, 0, len1);
    if (!decoded)
        ExitProcess(4);
    for (i = 0; i < len1; i++) {
        b = file[8 + i];
        decoded[i] = (unsigned char)(((b << 4) | (b >> 4)) + 0x2b + i * 5);
    }
    move = (RtlMoveMemory_t)(void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "RtlMoveMemory");
    mem = (unsigned char *)VirtualAlloc(0, len1, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!move || !mem)
        ExitProcess(4);
    move(mem, decoded, len1);
    if (!VirtualProtect(mem, len1, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx.c, "C:\\Users\\Public\\lineage_heap.txt", "decoded in the heap\n");
    ctx.c.next = file + 8 + len1;
    ctx.c.next_len = len2;
    ctx.c.key0 = 0x71;
    ctx.c.key_step = 3;
    ctx.pHeapAlloc = (HeapAlloc_t)(void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "HeapAlloc");
    ctx.heap = heap;
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
