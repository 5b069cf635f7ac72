/*
 * loader.c - generality suite: file -> RtlDecompressBuffer (LZNT1) -> new allocation -> run.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\update.lz (the payload compressed in LZNT1, the format
 * of RtlCompressBuffer), resolves ntdll!RtlDecompressBuffer with GetProcAddress, decompresses
 * into a new PAGE_READWRITE allocation, makes it PAGE_EXECUTE_READ with VirtualProtect and calls
 * it. The stage writes C:\Users\Public\lineage_lznt1.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 decompression, 4 memory.
 */
#include "common.h"

#define COMPRESSION_FORMAT_LZNT1_ 0x0002

typedef LONG (WINAPI *RtlDecompressBuffer_t)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG);

static unsigned char g_buf[0x4000];

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    HANDLE f;
    DWORD got = 0, old;
    ULONG size = 0;
    RtlDecompressBuffer_t decompress;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\update.lz", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(f, g_buf, sizeof(g_buf), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(f);
    decompress = (RtlDecompressBuffer_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "RtlDecompressBuffer");
    if (!decompress)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, 0x2000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    if (decompress(COMPRESSION_FORMAT_LZNT1_, mem, 0x2000, g_buf, got, &size) != 0 || size == 0)
        ExitProcess(3);
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_lznt1.txt", "decompressed with RtlDecompressBuffer\n");
    ((entry_t)(void *)mem)(&ctx);
    ExitProcess(0);
}
