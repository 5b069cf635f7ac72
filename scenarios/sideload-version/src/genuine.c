/*
 * genuine.c - generality suite: the stand-in for a renamed copy of Windows' version.dll
 * (version_orig.dll) that a side-loaded version.dll forwards to. The repository cannot ship
 * Microsoft's DLL; this one is linked as VERSION.dll (its export directory names it so, as the
 * renamed genuine's does) and exports the same names, but answers as the genuine never would
 * (FALSE, ERROR_CALL_NOT_IMPLEMENTED): the emulator binds a renamed copy of a system DLL to its
 * own module of that DLL, so this code must never run (the host program checks the answers).
 */
#include <windows.h>

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) DWORD WINAPI GetFileVersionInfoSizeW(LPCWSTR name, LPDWORD handle)
{
    (void)name;
    (void)handle;
    SetLastError(ERROR_CALL_NOT_IMPLEMENTED);
    return 1;
}

__declspec(dllexport) BOOL WINAPI GetFileVersionInfoW(LPCWSTR name, DWORD handle, DWORD len, LPVOID data)
{
    (void)name;
    (void)handle;
    (void)len;
    (void)data;
    SetLastError(ERROR_CALL_NOT_IMPLEMENTED);
    return TRUE;
}

__declspec(dllexport) BOOL WINAPI VerQueryValueW(LPCVOID block, LPCWSTR sub, LPVOID *value, PUINT len)
{
    (void)block;
    (void)sub;
    (void)value;
    (void)len;
    return TRUE;
}
