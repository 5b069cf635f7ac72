/*
 * common.h - shared by the generality suite's benign samples (chainreplay, emulator-only).
 *
 * Every sample acts only when CHAINREPLAY_SANDBOX=replay-only is set (only chainreplay's guest
 * sets it); otherwise it returns before any file, registry, network or memory activity.
 * The shellcode stages get everything they call through a context block (function pointers and
 * strings), so they need no data, no relocations and no import resolution of their own.
 */
#ifndef LINEAGE_COMMON_H
#define LINEAGE_COMMON_H
#include <windows.h>

typedef DWORD (WINAPI *GetEnvironmentVariableA_t)(LPCSTR, LPSTR, DWORD);
typedef HANDLE (WINAPI *CreateFileA_t)(LPCSTR, DWORD, DWORD, LPSECURITY_ATTRIBUTES, DWORD, DWORD, HANDLE);
typedef BOOL (WINAPI *WriteFile_t)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
typedef BOOL (WINAPI *CloseHandle_t)(HANDLE);
typedef LPVOID (WINAPI *VirtualAlloc_t)(LPVOID, SIZE_T, DWORD, DWORD);

struct sc_ctx {
    GetEnvironmentVariableA_t pGetEnvironmentVariableA;
    CreateFileA_t pCreateFileA;
    WriteFile_t pWriteFile;
    CloseHandle_t pCloseHandle;
    VirtualAlloc_t pVirtualAlloc;
    const unsigned char *next; /* layer 1 only: the encoded next layer */
    DWORD next_len;
    DWORD key0;     /* rolling XOR key: byte i is (key0 + i * key_step) & 0xff */
    DWORD key_step;
    char marker_name[24];
    char marker_value[16];
    char path[96];
    char text[64];
};

static inline void copy_str(char *dst, const char *src, int max)
{
    int i;
    for (i = 0; i < max - 1 && src[i]; i++)
        dst[i] = src[i];
    dst[i] = 0;
}

static inline int marker_present(void)
{
    static const char want[] = "replay-only";
    char buf[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", buf, sizeof(buf));
    DWORD i;
    if (n != sizeof(want) - 1)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

/* Fill a context block for a payload that writes `text` to `path`. */
static inline void fill_ctx(struct sc_ctx *c, const char *path, const char *text)
{
    HMODULE k32 = GetModuleHandleA("kernel32.dll");
    c->pGetEnvironmentVariableA = (GetEnvironmentVariableA_t)(void *)GetProcAddress(k32, "GetEnvironmentVariableA");
    c->pCreateFileA = (CreateFileA_t)(void *)GetProcAddress(k32, "CreateFileA");
    c->pWriteFile = (WriteFile_t)(void *)GetProcAddress(k32, "WriteFile");
    c->pCloseHandle = (CloseHandle_t)(void *)GetProcAddress(k32, "CloseHandle");
    c->pVirtualAlloc = (VirtualAlloc_t)(void *)GetProcAddress(k32, "VirtualAlloc");
    c->next = 0;
    c->next_len = 0;
    c->key0 = 0;
    c->key_step = 0;
    copy_str(c->marker_name, "CHAINREPLAY_SANDBOX", sizeof(c->marker_name));
    copy_str(c->marker_value, "replay-only", sizeof(c->marker_value));
    copy_str(c->path, path, sizeof(c->path));
    copy_str(c->text, text, sizeof(c->text));
}
#endif
