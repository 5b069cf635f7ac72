/* Regression sample: ntdll RtlAllocateHeap / RtlReAllocateHeap / RtlFreeHeap and msvcrt realloc
 * had no handler (the run ended as unsupported_api). The sample checks that a zeroed block is
 * zero, that each reallocation keeps the bytes, and that freeing succeeds; then it decodes a
 * tiny function (mov eax, 42; ret, then filler) with a nibble-swap + add cipher into a block
 * from RtlAllocateHeap, moves it with HeapReAlloc then realloc and calls it there: the flow watch names the
 * decoding instruction, through the reallocation. */
#include <windows.h>
#include "fidelity.h"

typedef PVOID (NTAPI *rtl_allocate_heap_t)(PVOID, ULONG, SIZE_T);
typedef PVOID (NTAPI *rtl_reallocate_heap_t)(PVOID, ULONG, PVOID, SIZE_T);
typedef BOOLEAN (NTAPI *rtl_free_heap_t)(PVOID, ULONG, PVOID);
typedef void *(__cdecl *realloc_t)(void *, size_t);
typedef int (*code_t)(void);

/* mov eax, 42; ret; then 26 filler bytes, each encoded as swap_nibbles((b - 0x2b - 5*i) & 0xff). */
static const unsigned char plain[32] = {
    0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
    0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78, 0x89, 0x9a, 0xab};

void __stdcall HeapApisEntry(void)
{
    static unsigned char encoded[32];
    HMODULE ntdll, crt;
    rtl_allocate_heap_t alloc;
    rtl_reallocate_heap_t grow;
    rtl_free_heap_t release;
    realloc_t crt_realloc;
    unsigned char *p, *q, *r, *code, *moved, b;
    char text[32];
    int ok, i;
    if (!marker_set())
        ExitProcess(2);
    for (i = 0; i < 32; i++) {
        b = (unsigned char)(plain[i] - 0x2b - 5 * i);
        encoded[i] = (unsigned char)((b << 4) | (b >> 4));
    }
    ntdll = GetModuleHandleA("ntdll.dll");
    crt = LoadLibraryA("msvcrt.dll");
    alloc = (rtl_allocate_heap_t)(void *)GetProcAddress(ntdll, "RtlAllocateHeap");
    grow = (rtl_reallocate_heap_t)(void *)GetProcAddress(ntdll, "RtlReAllocateHeap");
    release = (rtl_free_heap_t)(void *)GetProcAddress(ntdll, "RtlFreeHeap");
    crt_realloc = (realloc_t)(void *)GetProcAddress(crt, "realloc");
    p = (unsigned char *)alloc(GetProcessHeap(), HEAP_ZERO_MEMORY, 300);
    for (ok = p != 0, i = 0; ok && i < 300; i++)
        ok = p[i] == 0;
    verdict("RtlAllocateHeap_zeroed", ok, "");
    for (i = 0; p && i < 300; i++)
        p[i] = (unsigned char)(i * 7);
    q = (unsigned char *)grow(GetProcessHeap(), 0, p, 600);
    for (ok = q != 0, i = 0; ok && i < 300; i++)
        ok = q[i] == (unsigned char)(i * 7);
    verdict("RtlReAllocateHeap_keeps_bytes", ok, "");
    r = (unsigned char *)crt_realloc(q, 900);
    for (ok = r != 0, i = 0; ok && i < 300; i++)
        ok = r[i] == (unsigned char)(i * 7);
    verdict("realloc_keeps_bytes", ok, "");
    verdict("RtlFreeHeap_succeeds", release(GetProcessHeap(), 0, p) != 0, "");
    code = (unsigned char *)alloc(GetProcessHeap(), 0, 64);
    for (i = 0; code && i < 32; i++) {
        b = encoded[i];
        code[i] = (unsigned char)(((b << 4) | (b >> 4)) + 0x2b + 5 * i);
    }
    moved = code ? (unsigned char *)HeapReAlloc(GetProcessHeap(), 0, code, 2048) : 0;
    moved = moved ? (unsigned char *)crt_realloc(moved, 4096) : 0;
    fmt_u64(text, moved ? (unsigned long long)((code_t)(void *)moved)() : 0);
    verdict("decoded_heap_code_returned", 1, text);
    ExitProcess(0);
}
