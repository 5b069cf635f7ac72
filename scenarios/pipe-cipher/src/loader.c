/*
 * loader.c - generality suite: file -> an anonymous pipe (CreatePipe, WriteFile on one end,
 * ReadFile on the other) -> the nibble-swap + add cipher in place on the stack -> copied into
 * RWX memory -> called. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\pipe.dat into a stack buffer, writes it into the write end
 * of an anonymous pipe, reads it from the read end into a second stack buffer, decodes it there
 * in place (byte i: swap its nibbles, then add 0x17 + 5*i), copies it into a new
 * PAGE_EXECUTE_READWRITE allocation and calls it. The stage (../../lineage-common/payload.c)
 * writes C:\Users\Public\lineage_pipe.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 pipe, 4 memory.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char raw[1024], buf[1024];
    volatile unsigned char *out;
    HANDLE file, rd, wr;
    DWORD got = 0, put = 0, n = 0, i;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    file = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\pipe.dat", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE || !ReadFile(file, raw, sizeof(raw), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(file);
    if (!CreatePipe(&rd, &wr, 0, 0))
        ExitProcess(3);
    if (!WriteFile(wr, raw, got, &put, 0) || put != got)
        ExitProcess(3);
    CloseHandle(wr);
    if (!ReadFile(rd, buf, sizeof(buf), &n, 0) || n != got)
        ExitProcess(3);
    CloseHandle(rd);
    out = buf;
    for (i = 0; i < n; i++) {
        unsigned char v = out[i];
        out[i] = (unsigned char)(((v << 4) | (v >> 4)) + 0x17 + 5 * i);
    }
    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = out[i];
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_pipe.txt", "passed through a pipe\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 5 : 0);
}
