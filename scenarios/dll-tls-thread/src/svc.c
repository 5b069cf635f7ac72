/*
 * svc.c - probe: a DLL that runs its payload before and beside DllMain's return (benign,
 * emulator-only; see ../../lineage-common/common.h). Its TLS callback (DLL_PROCESS_ATTACH, run by
 * the loader before DllMain) decodes one copy of the payload (XOR 0x6e) into RWX memory and calls
 * it; DllMain decodes a second copy and starts it in a new thread, then returns TRUE.
 *   TLS callback -> lineage_dll_tls.txt; DllMain's thread -> lineage_dll_thread.txt
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x6e */

static struct sc_ctx g_ctx[2];

static unsigned char *decoded_copy(void)
{
    DWORD i;
    unsigned char *mem = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE,
                                                       PAGE_EXECUTE_READWRITE);
    if (!mem)
        return 0;
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ 0x6e;
    return mem;
}

static void NTAPI tls_callback(PVOID module, DWORD reason, PVOID reserved)
{
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char *code;
    (void)module;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return;
    fill_ctx(&g_ctx[0], "C:\\Users\\Public\\lineage_dll_tls.txt", "run from a DLL's TLS callback\n");
    code = decoded_copy();
    if (code)
        ((entry_t)(void *)code)(&g_ctx[0]);
}

static DWORD tls_index;
static char tls_data[4];
static PIMAGE_TLS_CALLBACK tls_callbacks[] = {tls_callback, 0};
const IMAGE_TLS_DIRECTORY _tls_used = {
    (ULONG_PTR)tls_data, (ULONG_PTR)(tls_data + sizeof(tls_data)), (ULONG_PTR)&tls_index,
    (ULONG_PTR)tls_callbacks, 0, 0,
};

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    unsigned char *code;
    (void)instance;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return TRUE;
    fill_ctx(&g_ctx[1], "C:\\Users\\Public\\lineage_dll_thread.txt", "run in a thread DllMain started\n");
    code = decoded_copy();
    if (code)
        CloseHandle(CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &g_ctx[1], 0, 0));
    return TRUE;
}
