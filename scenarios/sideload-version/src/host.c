/*
 * host.c - generality suite: the program a DLL is side-loaded into (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Imports version.dll (GetFileVersionInfoSizeW, GetFileVersionInfoW, VerQueryValueW) and asks it
 * about its own file, as an updater reads its version. Windows finds version.dll in the program's
 * folder first (it is not a KnownDLL), so a version.dll planted there runs before this code, and
 * the calls reach the genuine DLL only if the planted one forwards them. The genuine version.dll
 * answers "no version resource" (0, ERROR_RESOURCE_TYPE_NOT_FOUND) for this program, which has
 * none; any other answer means the calls reached something else. Then writes
 * C:\Users\Public\sideload_host.txt.
 * Exit codes: 0 ok, 1 no marker, 3 version.dll answered as the genuine would not, 4 file.
 */
#include "common.h"

void Entry(void)
{
    static WCHAR self[MAX_PATH];
    static BYTE block[512];
    static const char text[] = "updater: version.dll answered as Windows does\n";
    DWORD handle = 0, size, size_error, info_error, written;
    BOOL info, query;
    void *value = 0;
    UINT len = 0;
    HANDLE h;

    if (!marker_present())
        ExitProcess(1);
    GetModuleFileNameW(0, self, MAX_PATH);
    SetLastError(0);
    size = GetFileVersionInfoSizeW(self, &handle);
    size_error = GetLastError();
    SetLastError(0);
    info = GetFileVersionInfoW(self, 0, sizeof block, block);
    info_error = GetLastError();
    query = VerQueryValueW(block, L"\\", &value, &len);
    if (size != 0 || size_error != ERROR_RESOURCE_TYPE_NOT_FOUND || info || info_error != ERROR_RESOURCE_TYPE_NOT_FOUND ||
        query)
        ExitProcess(3);
    h = CreateFileA("C:\\Users\\Public\\sideload_host.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        ExitProcess(4);
    WriteFile(h, text, sizeof(text) - 1, &written, 0);
    CloseHandle(h);
    ExitProcess(0);
}
