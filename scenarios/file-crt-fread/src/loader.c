/*
 * loader.c - generality suite: file read with the C runtime (msvcrt fopen + fread) -> one-byte
 * XOR -> RW memory -> RX -> thread. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Loads msvcrt.dll, resolves fopen / fread / fclose with GetProcAddress, reads
 * C:\ProgramData\ChainreplayDemo\config.dat into a buffer on the stack with fread, XORs it with
 * 0x3c into a new PAGE_READWRITE allocation, makes that PAGE_EXECUTE_READ with VirtualProtect and
 * runs it in a new thread. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_fread.txt.
 * Exit codes: 0 ok, 1 no marker, 2 msvcrt, 3 file, 4 memory, 5 thread.
 */
#include "common.h"

typedef void *(__cdecl *fopen_t)(const char *, const char *);
typedef size_t (__cdecl *fread_t)(void *, size_t, size_t, void *);
typedef int (__cdecl *fclose_t)(void *);

void Entry(void)
{
    static struct sc_ctx ctx;
    unsigned char buf[2048];
    HMODULE crt;
    fopen_t p_fopen;
    fread_t p_fread;
    fclose_t p_fclose;
    void *fp;
    size_t got;
    DWORD i, old;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    crt = LoadLibraryA("msvcrt.dll");
    if (!crt)
        ExitProcess(2);
    p_fopen = (fopen_t)(void *)GetProcAddress(crt, "fopen");
    p_fread = (fread_t)(void *)GetProcAddress(crt, "fread");
    p_fclose = (fclose_t)(void *)GetProcAddress(crt, "fclose");
    if (!p_fopen || !p_fread || !p_fclose)
        ExitProcess(2);
    fp = p_fopen("C:\\ProgramData\\ChainreplayDemo\\config.dat", "rb");
    if (!fp)
        ExitProcess(3);
    got = p_fread(buf, 1, sizeof(buf), fp);
    p_fclose(fp);
    if (got < 64)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < got; i++)
        mem[i] = buf[i] ^ 0x3c;
    if (!VirtualProtect(mem, got, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_fread.txt", "read with fread\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
