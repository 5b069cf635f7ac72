/*
 * loader.c - probe: payloads compressed with the XPRESS formats (benign, emulator-only; see
 * ../../lineage-common/common.h). Two files hold the same payload compressed two ways:
 *   s1 update.xph: LZ77+Huffman -> RtlGetCompressionWorkSpaceSize + RtlDecompressBufferEx
 *      (COMPRESSION_FORMAT_XPRESS_HUFF, a workspace from HeapAlloc) -> RW -> RX -> CreateThread
 *      (not waited for)
 *                                                                       -> lineage_xpress_huff.txt
 *   s2 update.xpr: Plain LZ77 -> RtlDecompressBuffer (COMPRESSION_FORMAT_XPRESS) -> RW -> RX
 *      -> called                                                        -> lineage_xpress.txt
 * The ntdll functions are resolved with GetProcAddress.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 decompression, 4 memory.
 */
#include "common.h"

#define FORMAT_XPRESS 0x0003
#define FORMAT_XPRESS_HUFF 0x0004

typedef LONG (WINAPI *RtlDecompressBuffer_t)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG);
typedef LONG (WINAPI *RtlDecompressBufferEx_t)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG, PVOID);
typedef LONG (WINAPI *RtlGetCompressionWorkSpaceSize_t)(USHORT, PULONG, PULONG);
typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);

static unsigned char g_buf[0x4000];
static struct sc_ctx c1, c2;

static DWORD read_file(const char *path)
{
    DWORD got = 0;
    HANDLE f = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(f, g_buf, sizeof(g_buf), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(f);
    return got;
}

static unsigned char *new_rw(void)
{
    unsigned char *mem = (unsigned char *)VirtualAlloc(0, 0x2000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    return mem;
}

static void make_rx(void *mem, ULONG size)
{
    DWORD old;
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
}

void Entry(void)
{
    HMODULE ntdll;
    RtlDecompressBuffer_t decompress;
    RtlDecompressBufferEx_t decompress_ex;
    RtlGetCompressionWorkSpaceSize_t workspace_size;
    ULONG work = 0, fragment = 0, size = 0;
    DWORD got;
    void *workspace;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    decompress = (RtlDecompressBuffer_t)(void *)GetProcAddress(ntdll, "RtlDecompressBuffer");
    decompress_ex = (RtlDecompressBufferEx_t)(void *)GetProcAddress(ntdll, "RtlDecompressBufferEx");
    workspace_size = (RtlGetCompressionWorkSpaceSize_t)(void *)GetProcAddress(ntdll, "RtlGetCompressionWorkSpaceSize");
    if (!decompress || !decompress_ex || !workspace_size)
        ExitProcess(3);

    got = read_file("C:\\ProgramData\\ChainreplayDemo\\update.xph");
    if (workspace_size(FORMAT_XPRESS_HUFF, &work, &fragment) != 0 || work == 0)
        ExitProcess(3);
    workspace = HeapAlloc(GetProcessHeap(), 0, work);
    if (!workspace)
        ExitProcess(4);
    mem = new_rw();
    if (decompress_ex(FORMAT_XPRESS_HUFF, mem, 0x2000, g_buf, got, &size, workspace) != 0 || size == 0)
        ExitProcess(3);
    make_rx(mem, size);
    fill_ctx(&c1, "C:\\Users\\Public\\lineage_xpress_huff.txt", "decompressed with RtlDecompressBufferEx (XPRESS_HUFF)\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &c1, 0, 0);
    if (!thread)
        ExitProcess(4);
    CloseHandle(thread); /* not waited for: it runs once the entry point's run is over */

    got = read_file("C:\\ProgramData\\ChainreplayDemo\\update.xpr");
    mem = new_rw();
    size = 0;
    if (decompress(FORMAT_XPRESS, mem, 0x2000, g_buf, got, &size) != 0 || size == 0)
        ExitProcess(3);
    make_rx(mem, size);
    fill_ctx(&c2, "C:\\Users\\Public\\lineage_xpress.txt", "decompressed with RtlDecompressBuffer (XPRESS)\n");
    ((entry_t)(void *)mem)(&c2);
    ExitProcess(0);
}
