/* machine.c - what every Windows machine has that the guest lacked (tests/test_apigaps.py): its
 * folders (attributes, CreateDirectory of an existing one, listings with "." and "..", a file the
 * sample wrote listed in its own case), the system DLLs as files, and the registry keys a beacon
 * or a sandbox check reads (product name and build, one key per processor, MachineGuid).
 * One OutputDebugStringA verdict per check ("check NAME: pass"). Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

static void check(const char *name, int ok) { verdict(name, ok, ""); }

static int first_names(const char *pattern, char *first, char *second, DWORD *attrs)
{
    WIN32_FIND_DATAA d;
    HANDLE h = FindFirstFileA(pattern, &d);
    int n = 0;
    if (h == INVALID_HANDLE_VALUE)
        return 0;
    do {
        if (n == 0) { lstrcpynA(first, d.cFileName, 64); *attrs = d.dwFileAttributes; }
        if (n == 1) lstrcpynA(second, d.cFileName, 64);
        n++;
    } while (FindNextFileA(h, &d));
    FindClose(h);
    return n;
}

#ifdef _WIN64
void __stdcall MachineEntry(void)
#else
void __stdcall MachineEntry32(void)
#endif
{
    char temp[MAX_PATH], path[MAX_PATH], first[64] = "", second[64] = "", value[128];
    DWORD attrs = 0, size, type, written, subkeys = 0;
    HKEY key;
    SYSTEM_INFO si;
    OSVERSIONINFOA version;
    if (!marker_set())
        ExitProcess(255);

    check("windows_is_a_folder", GetFileAttributesA("C:\\Windows") == FILE_ATTRIBUTE_DIRECTORY);
    GetTempPathA(MAX_PATH, temp);
    check("temp_is_a_folder", (GetFileAttributesA(temp) & FILE_ATTRIBUTE_DIRECTORY) != 0 && GetFileAttributesA(temp) != INVALID_FILE_ATTRIBUTES);
    check("missing_is_not", GetFileAttributesA("C:\\No Such Folder\\x") == INVALID_FILE_ATTRIBUTES);
    SetLastError(0);
    check("create_existing_folder_fails", !CreateDirectoryA("C:\\Windows", NULL) && GetLastError() == ERROR_ALREADY_EXISTS);
    lstrcpyA(path, temp);
    lstrcatA(path, "Cache7f");
    check("create_new_folder", CreateDirectoryA(path, NULL) && GetFileAttributesA(path) == FILE_ATTRIBUTE_DIRECTORY);
    check("create_it_again_fails", !CreateDirectoryA(path, NULL) && GetLastError() == ERROR_ALREADY_EXISTS);
    check("create_under_missing_fails", !CreateDirectoryA("C:\\No Such Folder\\x", NULL) && GetLastError() == ERROR_PATH_NOT_FOUND);

    HANDLE f = CreateFileA("C:\\Users\\Public\\Documents\\Report-Q3.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, 0, 0);
    WriteFile(f, "q3", 2, &written, 0);
    CloseHandle(f);
    check("listing_has_the_written_file", first_names("C:\\Users\\Public\\Documents\\*.txt", first, second, &attrs) == 1 && str_eq_i(first, "Report-Q3.txt") && first[0] == 'R');
    check("listing_starts_with_dots", first_names("C:\\Windows\\*", first, second, &attrs) > 3 && str_eq_i(first, ".") && str_eq_i(second, "..") && (attrs & FILE_ATTRIBUTE_DIRECTORY));
    check("system32_lists_ntdll", first_names("C:\\Windows\\System32\\ntdll.dll", first, second, &attrs) == 1);
    f = CreateFileA("C:\\Windows\\System32\\kernel32.dll", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, 0, 0);
    value[0] = value[1] = 0;
    check("kernel32_file_is_a_pe", f != INVALID_HANDLE_VALUE && ReadFile(f, value, 2, &written, 0) && value[0] == 'M' && value[1] == 'Z');
    CloseHandle(f);

    {
        WIN32_FILE_ATTRIBUTE_DATA folder, file;
        FILETIME now;
        ULARGE_INTEGER a, b;
        GetSystemTimeAsFileTime(&now);
        check("attributes_ex_folder", GetFileAttributesExA("C:\\Windows\\System32", GetFileExInfoStandard, &folder)
              && folder.dwFileAttributes == FILE_ATTRIBUTE_DIRECTORY);
        check("attributes_ex_file", GetFileAttributesExA("C:\\Windows\\System32\\kernel32.dll", GetFileExInfoStandard, &file)
              && !(file.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) && file.nFileSizeLow > 4096 && file.nFileSizeHigh == 0);
        a.LowPart = now.dwLowDateTime; a.HighPart = now.dwHighDateTime;
        b.LowPart = file.ftLastWriteTime.dwLowDateTime; b.HighPart = file.ftLastWriteTime.dwHighDateTime;
        /* the guest's clock, not the host's: within ten minutes of GetSystemTimeAsFileTime */
        check("attributes_ex_time_is_the_guests", (a.QuadPart > b.QuadPart ? a.QuadPart - b.QuadPart : b.QuadPart - a.QuadPart) < 6000000000ULL);
        SetLastError(0);
        check("attributes_ex_missing", !GetFileAttributesExA("C:\\No Such\\x", GetFileExInfoStandard, &file) && GetLastError() == ERROR_FILE_NOT_FOUND);
    }
    {
        /* timestomping: the dropped file takes kernel32.dll's times and keeps them */
        FILETIME created, accessed, modified, c2, a2, m2;
        WIN32_FILE_ATTRIBUTE_DATA info;
        HANDLE system = CreateFileA("C:\\Windows\\System32\\kernel32.dll", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, 0, 0);
        int got = GetFileTime(system, &created, &accessed, &modified);
        CloseHandle(system);
        created.dwLowDateTime -= 0x10000000; /* a time before now, as an installed file's */
        modified = created;
        HANDLE dropped = CreateFileA("C:\\Users\\Public\\Documents\\Report-Q3.txt", GENERIC_WRITE, 0, 0, OPEN_EXISTING, 0, 0);
        int set = SetFileTime(dropped, &created, NULL, &modified);
        int back = GetFileTime(dropped, &c2, &a2, &m2);
        CloseHandle(dropped);
        check("file_times_set_are_read_back", got && set && back && c2.dwLowDateTime == created.dwLowDateTime
              && c2.dwHighDateTime == created.dwHighDateTime && m2.dwLowDateTime == modified.dwLowDateTime);
        check("file_times_in_attributes_ex", GetFileAttributesExA("C:\\Users\\Public\\Documents\\Report-Q3.txt", GetFileExInfoStandard, &info)
              && info.ftLastWriteTime.dwLowDateTime == modified.dwLowDateTime && info.nFileSizeLow == 2);
    }
    size = sizeof value;
    check("product_name", RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", 0, KEY_READ, &key) == ERROR_SUCCESS
          && RegQueryValueExA(key, "ProductName", 0, &type, (BYTE *)value, &size) == ERROR_SUCCESS && type == REG_SZ && str_has_i(value, "Windows"));
    /* The machine's build as KUSER_SHARED_DATA holds it (GetVersionEx tells a program without a
     * manifest naming Windows 10 build 9200, as Windows 8.1 and later do). */
    version.dwBuildNumber = *(volatile ULONG *)0x7FFE0260 & 0xFFFF;
    size = sizeof value;
    DWORD build = 0;
    if (RegQueryValueExA(key, "CurrentBuildNumber", 0, &type, (BYTE *)value, &size) == ERROR_SUCCESS)
        for (char *p = value; *p >= '0' && *p <= '9'; p++)
            build = build * 10 + (DWORD)(*p - '0');
    check("build_matches_the_api", build != 0 && build == version.dwBuildNumber);
    RegCloseKey(key);
    GetSystemInfo(&si);
    check("one_key_per_processor", RegOpenKeyExA(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System\\CentralProcessor", 0, KEY_READ, &key) == ERROR_SUCCESS
          && RegQueryInfoKeyA(key, 0, 0, 0, &subkeys, 0, 0, 0, 0, 0, 0, 0) == ERROR_SUCCESS && subkeys == si.dwNumberOfProcessors);
    RegCloseKey(key);
    size = sizeof value;
    check("machine_guid", RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\Microsoft\\Cryptography", 0, KEY_READ, &key) == ERROR_SUCCESS
          && RegQueryValueExA(key, "MachineGuid", 0, &type, (BYTE *)value, &size) == ERROR_SUCCESS && lstrlenA(value) == 36 && value[8] == '-');
    RegCloseKey(key);
    ExitProcess(0);
}
