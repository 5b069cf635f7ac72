/*
 * loader.c - probe: NTFS alternate data stream + executable heap (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Writes a decoy line to C:\Users\Public\log.txt, then this program's XOR-encoded payload (5-byte
 * key 3c a1 5e 77 d2) to the stream C:\Users\Public\log.txt:blob. Reopens the stream, reads it
 * into a process-heap block, and decodes it into a block of a private heap created with
 * HEAP_CREATE_ENABLE_EXECUTE, which it calls: no VirtualAlloc, no VirtualProtect.
 * The stage writes C:\Users\Public\lineage_ads.txt.
 * Exit codes: 0 ok, 1 no marker, 2 write, 3 read, 4 heap.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 3c a1 5e 77 d2 */

static const unsigned char KEY[5] = {0x3c, 0xa1, 0x5e, 0x77, 0xd2};
typedef DWORD (WINAPI *stage_t)(struct sc_ctx *);

void Entry(void)
{
    static struct sc_ctx ctx;
    static const char decoy[] = "2024-11-02 08:14:55 service started\r\n";
    HANDLE f, heap;
    DWORD n = 0, size, i;
    unsigned char *raw, *code;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\Users\\Public\\log.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, decoy, sizeof(decoy) - 1, &n, 0))
        ExitProcess(2);
    CloseHandle(f);
    f = CreateFileA("C:\\Users\\Public\\log.txt:blob", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, payload_enc, sizeof(payload_enc), &n, 0) || n != sizeof(payload_enc))
        ExitProcess(2);
    CloseHandle(f);

    f = CreateFileA("C:\\Users\\Public\\log.txt:blob", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(3);
    size = GetFileSize(f, 0);
    if (size == INVALID_FILE_SIZE || size < 64)
        ExitProcess(3);
    raw = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, size);
    if (!raw || !ReadFile(f, raw, size, &n, 0) || n != size)
        ExitProcess(3);
    CloseHandle(f);

    heap = HeapCreate(HEAP_CREATE_ENABLE_EXECUTE, 0, 0);
    if (!heap)
        ExitProcess(4);
    code = (unsigned char *)HeapAlloc(heap, 0, size);
    if (!code)
        ExitProcess(4);
    for (i = 0; i < size; i++)
        code[i] = raw[i] ^ KEY[i % 5];
    HeapFree(GetProcessHeap(), 0, raw);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_ads.txt", "ran from an executable heap, via an ADS\n");
    ExitProcess(((stage_t)(void *)code)(&ctx) == 0 ? 0 : 5);
}
