/*
 * loader.c - generality suite: a payload started from a TLS callback and from an APC queued to
 * the loader's own thread (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * The payload (../../lineage-common/payload.c) is in this program's data, XORed with the
 * one-byte key 0x3c. The TLS callback (run before the entry point) decodes one copy into a new
 * PAGE_EXECUTE_READWRITE allocation and calls it; the entry point decodes a second copy and
 * queues it as an APC to the current thread (QueueUserAPC + SleepEx alertable). Each copy writes
 * its own file C:\Users\Public\lineage_self_N.txt.
 * Exit codes: 0 ok, 1 no marker, 2 memory, 3 APC refused.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x3c */

#define KEY 0x3c

static struct sc_ctx g_ctx[2];

static unsigned char *decoded_copy(void)
{
    DWORD i;
    unsigned char *mem = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE,
                                                       PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(2);
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ KEY;
    return mem;
}

static void NTAPI tls_callback(PVOID module, DWORD reason, PVOID reserved)
{
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    (void)module;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return;
    fill_ctx(&g_ctx[0], "C:\\Users\\Public\\lineage_self_1.txt", "run from a TLS callback\n");
    ((entry_t)(void *)decoded_copy())(&g_ctx[0]);
}

/* The TLS directory the linker points the PE's TLS data directory at (no CRT here). */
static DWORD tls_index;
static char tls_data[4];
static PIMAGE_TLS_CALLBACK tls_callbacks[] = {tls_callback, 0};
const IMAGE_TLS_DIRECTORY _tls_used = {
    (ULONG_PTR)tls_data, (ULONG_PTR)(tls_data + sizeof(tls_data)), (ULONG_PTR)&tls_index,
    (ULONG_PTR)tls_callbacks, 0, 0,
};

void Entry(void)
{
    if (!marker_present())
        ExitProcess(1);
    fill_ctx(&g_ctx[1], "C:\\Users\\Public\\lineage_self_2.txt", "run from an APC to the loader's own thread\n");
    if (!QueueUserAPC((PAPCFUNC)(void *)decoded_copy(), GetCurrentThread(), (ULONG_PTR)&g_ctx[1]))
        ExitProcess(3);
    SleepEx(100, TRUE);
    ExitProcess(0);
}
