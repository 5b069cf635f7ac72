/*
 * stage2.h - combo-tcp-lznt1-x86: the context block the stager hands the stage it received
 * (benign, emulator-only; see ../../lineage-common/common.h).
 */
#ifndef COMBO_STAGE2_H
#define COMBO_STAGE2_H
#include <windows.h>

struct s2_ctx {
    DWORD (WINAPI *pGetEnvironmentVariableA)(LPCSTR, LPSTR, DWORD);
    LPVOID (WINAPI *pVirtualAlloc)(LPVOID, SIZE_T, DWORD, DWORD);
    LONG (WINAPI *pRtlDecompressBuffer)(USHORT, PUCHAR, ULONG, PUCHAR, ULONG, PULONG);
    HANDLE (WINAPI *pCreateThread)(LPSECURITY_ATTRIBUTES, SIZE_T, LPTHREAD_START_ROUTINE, LPVOID, DWORD, LPDWORD);
    DWORD (WINAPI *pWaitForSingleObject)(HANDLE, DWORD);
    HANDLE (WINAPI *pCreateFileA)(LPCSTR, DWORD, DWORD, LPSECURITY_ATTRIBUTES, DWORD, DWORD, HANDLE);
    BOOL (WINAPI *pWriteFile)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL (WINAPI *pCloseHandle)(HANDLE);
    BOOL (WINAPI *pCreateProcessA)(LPCSTR, LPSTR, LPSECURITY_ATTRIBUTES, LPSECURITY_ATTRIBUTES, BOOL, DWORD, LPVOID,
                                   LPCSTR, LPSTARTUPINFOA, LPPROCESS_INFORMATION);
    BOOL (WINAPI *pGetExitCodeProcess)(HANDLE, LPDWORD);
    unsigned char *self;    /* where the stager put the stage, and its size */
    DWORD self_len;
    unsigned char *unpacked;
    DWORD unpacked_len;
    DWORD mode;             /* 0: unpack and start the worker; 1: the worker */
    DWORD exit_code;        /* the child's */
    char marker_name[24];
    char marker_value[16];
    char path[96];          /* where the worker writes the unpacked program */
    char cmdline[128];
};
#endif
