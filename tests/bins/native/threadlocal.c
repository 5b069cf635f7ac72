/* Implicit TLS as MSVC and Rust compile it (tests/test_native.py): the image's TLS directory
 * names a template (8 bytes of data then 8 of zero fill) and the variable holding the module's
 * TLS index; code reaches its thread's copy through TEB.ThreadLocalStoragePointer[index].
 * The template lives in read-only data, as a compiler puts it. The main thread exits with one bit
 * per check (0x5F: all passed); the second thread (which the emulator may run only once the main
 * thread's run has ended) says its verdict with OutputDebugStringA. Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

static const unsigned char tls_template[8] = {41, 0, 0, 0, 0x5A, 0x5A, 0x5A, 0x5A};
static volatile ULONG tls_index = 0x55; /* the loader writes the module's index here */

#ifdef _WIN64
const IMAGE_TLS_DIRECTORY64 _tls_used = {(ULONGLONG)tls_template, (ULONGLONG)(tls_template + 8),
                                         (ULONGLONG)&tls_index, 0, 8, 0};
static unsigned char *my_block(void)
{
    void **array = (void **)__readgsqword(0x58);
    return array ? (unsigned char *)array[tls_index] : 0;
}
#else
const IMAGE_TLS_DIRECTORY32 _tls_used = {(DWORD)tls_template, (DWORD)(tls_template + 8), (DWORD)&tls_index, 0, 8, 0};
static unsigned char *my_block(void)
{
    void **array = (void **)__readfsdword(0x2C);
    return array ? (unsigned char *)array[tls_index] : 0;
}
#endif

static unsigned char *volatile main_block;

static int zero_filled(const unsigned char *block)
{
    int i;
    for (i = 8; i < 16; i++)
        if (block[i])
            return 0;
    return 1;
}

static DWORD WINAPI worker(LPVOID param)
{
    unsigned char *block = my_block();
    (void)param;
    /* its own copy, made from the template: not the main thread's (which holds 42 by now) */
    int own = block && block != main_block && block != tls_template;
    int ok = own && *(volatile int *)block == 41 && zero_filled(block);
    if (ok)
        *(volatile int *)block = 7;
    verdict("thread-tls-copy", ok && main_block && *(volatile int *)main_block == 42, own ? "" : "shared or missing block");
    return 0;
}

void __stdcall Entry(void)
{
    unsigned bits = 0;
    unsigned char *block;
    HANDLE thread;
    if (!marker_set())
        ExitProcess(0x100);
    if (tls_index == 0)
        bits |= 0x01;
    block = my_block();
    main_block = block;
    if (block && block != tls_template)
        bits |= 0x02;
    if (block && *(volatile int *)block == 41 && block[4] == 0x5A)
        bits |= 0x04;
    if (block && zero_filled(block))
        bits |= 0x08;
    if (block) {
        *(volatile int *)block = 42; /* a thread-local write: faults if it lands in the template */
        bits |= 0x10;
    }
    thread = CreateThread(NULL, 0, worker, NULL, 0, NULL);
    WaitForSingleObject(thread, INFINITE);
    if (block && *(volatile int *)block == 42 && tls_template[0] == 41)
        bits |= 0x40;
    ExitProcess(bits);
}
