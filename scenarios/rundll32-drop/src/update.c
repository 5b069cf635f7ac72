/*
 * update.c - generality suite: the DLL a system program runs (benign, emulator-only; see
 * ../../lineage-common/common.h). DllMain does nothing but succeed. Its exports:
 *
 *   Start (rundll32's signature: hwnd, hinst, lpszCmdLine, nCmdShow)
 *   DllRegisterServer, DllUnregisterServer (regsvr32), DllInstall (regsvr32 /i)
 *
 * each check that they run as that program runs them (hinst is the DLL's own base, nCmdShow is
 * SW_SHOWDEFAULT, the process's command line names the program), write what they saw to
 * C:\Users\Public\lineage_lolbin.txt ("ok <export> <text>", or "bad <n>"), then decode their
 * embedded shellcode (one-byte XOR 0x5c) into RW memory, make it RX and run it in a thread:
 * the stage writes C:\Users\Public\lineage_lolbin_stage.txt.
 */
#include "common.h"
#include "payload_enc.h"

#define KEY 0x5c

extern IMAGE_DOS_HEADER __ImageBase;

static int has(const char *text, const char *word)
{
    int i, j;
    for (i = 0; text[i]; i++) {
        for (j = 0; word[j] && (text[i + j] | 0x20) == (word[j] | 0x20); j++)
            ;
        if (!word[j])
            return 1;
    }
    return 0;
}

static void report(const char *what, const char *text)
{
    static char line[256];
    DWORD n = 0, written;
    HANDLE f;
    while (*what && n < 64)
        line[n++] = *what++;
    while (text && *text && n < sizeof(line) - 1)
        line[n++] = *text++;
    f = CreateFileA("C:\\Users\\Public\\lineage_lolbin.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        return;
    WriteFile(f, line, n, &written, 0);
    CloseHandle(f);
}

static HRESULT run_payload(const char *what, const char *text, const char *program)
{
    static struct sc_ctx ctx;
    unsigned char *mem;
    DWORD i, old;
    HANDLE thread;
    if (!marker_present())
        return 1;
    if (!has(GetCommandLineA(), program)) {
        report("bad 1 ", GetCommandLineA());
        return 1;
    }
    report(what, text);
    mem = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        return 2;
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ KEY;
    if (!VirtualProtect(mem, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        return 2;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_lolbin_stage.txt", "decoded and run by the DLL\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        return 3;
    WaitForSingleObject(thread, INFINITE);
    return S_OK;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) void CALLBACK Start(HWND hwnd, HINSTANCE inst, LPSTR text, int show)
{
    if (hwnd != 0 || inst != (HINSTANCE)&__ImageBase || show != SW_SHOWDEFAULT) {
        report("bad 2 ", text);
        return;
    }
    run_payload("ok Start ", text, "rundll32");
}

__declspec(dllexport) HRESULT WINAPI DllRegisterServer(void)
{
    return run_payload("ok DllRegisterServer", "", "regsvr32");
}

__declspec(dllexport) HRESULT WINAPI DllUnregisterServer(void)
{
    return run_payload("ok DllUnregisterServer", "", "regsvr32");
}

__declspec(dllexport) HRESULT WINAPI DllInstall(BOOL install, LPCWSTR text)
{
    (void)text;
    return run_payload(install ? "ok DllInstall 1" : "ok DllInstall 0", "", "regsvr32");
}
