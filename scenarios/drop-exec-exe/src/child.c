/*
 * child.c - generality suite: the program a launcher drops and starts as a new process
 * (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Checks that it runs as a process of its own: GetModuleHandleA(NULL) and the PEB's
 * ImageBaseAddress are its own image, GetModuleFileNameA(NULL) names a file, its command line
 * carries "--child". Writes its command line to C:\Users\Public\lineage_child.txt, then decodes
 * its embedded shellcode (one-byte XOR 0x5c) into RW memory, makes it RX and runs it in a
 * thread: the stage writes C:\Users\Public\lineage_child_stage.txt. With "--forever" on its
 * command line it then starts itself again with the same command line (a test of the child
 * process limit). Exit codes: 0 ok, 1 no marker, 2 module handle, 3 PEB, 4 file name,
 * 5 command line, 6 file, 7 memory, 8 thread, 9 respawn.
 */
#include "common.h"
#include "payload_enc.h"

#define KEY 0x5c

extern IMAGE_DOS_HEADER __ImageBase;

static int has(const char *text, const char *word)
{
    int i, j;
    for (i = 0; text[i]; i++) {
        for (j = 0; word[j] && text[i + j] == word[j]; j++)
            ;
        if (!word[j])
            return 1;
    }
    return 0;
}

static void *peb_image_base(void)
{
    unsigned char *peb;
#ifdef _WIN64
    __asm__ volatile("movq %%gs:0x60, %0" : "=r"(peb));
    return *(void **)(peb + 0x10);
#else
    __asm__ volatile("movl %%fs:0x30, %0" : "=r"(peb));
    return *(void **)(peb + 0x08);
#endif
}

void Entry(void)
{
    static struct sc_ctx ctx;
    static char self[MAX_PATH + 1];
    const char *cmd;
    unsigned char *mem;
    DWORD i, n, old, written;
    HANDLE f, thread;

    if (!marker_present())
        ExitProcess(1);
    if (GetModuleHandleA(0) != (HMODULE)&__ImageBase)
        ExitProcess(2);
    if (peb_image_base() != (void *)&__ImageBase)
        ExitProcess(3);
    n = GetModuleFileNameA(0, self, MAX_PATH);
    if (n == 0 || n >= MAX_PATH)
        ExitProcess(4);
    cmd = GetCommandLineA();
    if (!cmd || !has(cmd, "--child"))
        ExitProcess(5);
    for (n = 0; cmd[n]; n++)
        ;
    f = CreateFileA("C:\\Users\\Public\\lineage_child.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, cmd, n, &written, 0))
        ExitProcess(6);
    CloseHandle(f);
    mem = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(7);
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ KEY;
    if (!VirtualProtect(mem, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(7);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_child_stage.txt", "decoded and run by the child process\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(8);
    WaitForSingleObject(thread, INFINITE);
    if (has(cmd, "--forever")) {
        STARTUPINFOA si;
        PROCESS_INFORMATION pi;
        char again[MAX_PATH + 32];
        for (i = 0; i < sizeof(si); i++)
            ((unsigned char *)&si)[i] = 0;
        si.cb = sizeof(si);
        copy_str(again, cmd, sizeof(again));
        if (!CreateProcessA(self, again, 0, 0, FALSE, 0, 0, 0, &si, &pi))
            ExitProcess(9);
    }
    ExitProcess(0);
}
