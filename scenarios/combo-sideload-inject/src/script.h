/*
 * script.h - combo-sideload-inject: the context block the side-loaded DLL writes beside the code
 * it injects into explorer.exe (benign, emulator-only; see ../../lineage-common/common.h).
 */
#ifndef COMBO_SCRIPT_H
#define COMBO_SCRIPT_H
#include <windows.h>

struct script_ctx {
    DWORD (WINAPI *pGetEnvironmentVariableA)(LPCSTR, LPSTR, DWORD);
    HANDLE (WINAPI *pCreateFileA)(LPCSTR, DWORD, DWORD, LPSECURITY_ATTRIBUTES, DWORD, DWORD, HANDLE);
    BOOL (WINAPI *pWriteFile)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL (WINAPI *pCloseHandle)(HANDLE);
    UINT (WINAPI *pWinExec)(LPCSTR, UINT);
    char marker_name[24];
    char marker_value[16];
    char script_path[64];
    char script[160];
    char command[256];
};
#endif
