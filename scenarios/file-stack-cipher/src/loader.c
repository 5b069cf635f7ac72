/*
 * loader.c - generality suite: file -> a buffer on the stack -> custom cipher in place there ->
 * copied into new memory twice (by a guest loop, then by RtlMoveMemory) -> each copy called.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\blob.dat with ReadFile into a buffer on the stack (memory
 * no flow watch follows), decodes it there with a cipher no lineage rule names (nibble swap +
 * add, the suite's `nibble` encoding), then copies the decoded bytes into a new RWX allocation
 * with a loop of its own and calls it, and into a second one with kernel32!RtlMoveMemory
 * (resolved with GetProcAddress) and calls that. Each copy is the suite's final payload
 * (../../lineage-common/payload.c) and writes one text file.
 * Exit codes: 0 ok, 1 no marker, 2 file, 4 memory, 6 a stage failed.
 */
#include "common.h"

typedef VOID (WINAPI *RtlMoveMemory_t)(PVOID, const VOID *, SIZE_T);
typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);

void Entry(void)
{
    static struct sc_ctx ctx1, ctx2;
    unsigned char buf[2048];
    volatile unsigned char *mem1;
    unsigned char *mem2;
    RtlMoveMemory_t move;
    DWORD got = 0, i;
    unsigned char b;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\blob.dat", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !ReadFile(f, buf, sizeof(buf), &got, 0) || got < 64)
        ExitProcess(2);
    CloseHandle(f);
    for (i = 0; i < got; i++) {
        b = buf[i];
        buf[i] = (unsigned char)(((b << 4) | (b >> 4)) + 0x2b + i * 5);
    }
    mem1 = (volatile unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem1)
        ExitProcess(4);
    for (i = 0; i < got; i++)
        mem1[i] = buf[i];
    fill_ctx(&ctx1, "C:\\Users\\Public\\lineage_stack_loop.txt", "copied by a loop\n");
    if (((entry_t)(void *)mem1)(&ctx1))
        ExitProcess(6);
    move = (RtlMoveMemory_t)(void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "RtlMoveMemory");
    mem2 = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!move || !mem2)
        ExitProcess(4);
    move(mem2, buf, got);
    fill_ctx(&ctx2, "C:\\Users\\Public\\lineage_stack_api.txt", "copied by RtlMoveMemory\n");
    ExitProcess(((entry_t)(void *)mem2)(&ctx2) ? 6 : 0);
}
