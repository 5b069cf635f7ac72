/* rdtsc regression sample (x64): time stamp counter reads in code that was not there when the
 * code around it was first scanned. Each reader returns rdtsc as one 64-bit value and is timed
 * around Sleep(1000): the virtual 3 GHz clock moves by ~3e9 cycles, the host's by far less
 * (sleeps are skipped). Readers: code written over an already-executed stub in a running stage,
 * code written into the image's own .text after VirtualProtect, and an export of tscdll.dll
 * loaded with LoadLibrary. Each is a verdict line; exits 0x75C. */
#include "fidelity.h"

typedef unsigned long long (*reader_fn)(void);
static const unsigned char reader_code[] = {
    0x0F, 0x31,             /* rdtsc */
    0x48, 0xC1, 0xE2, 0x20, /* shl rdx, 32 */
    0x48, 0x09, 0xD0,       /* or rax, rdx */
    0xC3,                   /* ret */
};

__attribute__((noinline, used)) unsigned long long patch_me(void)
{
    __asm__ volatile(".fill 32, 1, 0x90");
    return 0;
}

static void timed(const char *name, reader_fn reader)
{
    char detail[24];
    unsigned long long t0 = reader();
    Sleep(1000);
    unsigned long long t1 = reader();
    fmt_u64(detail, (t1 - t0) / 1000000ULL);
    verdict(name, t1 - t0 >= 1000000000ULL && t1 - t0 <= 10000000000ULL, detail);
}

void __stdcall TscWriteEntry(void)
{
    unsigned char *stage;
    DWORD old;
    HMODULE dll;
    if (!marker_set())
        ExitProcess(2);

    stage = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    stage[0] = 0xC3; /* ret: the stage starts and is scanned with no rdtsc in it */
    ((void (*)(void))stage)();
    for (unsigned i = 0; i < sizeof reader_code; i++)
        stage[16 + i] = reader_code[i];
    timed("rdtsc_written_into_running_stage", (reader_fn)(stage + 16));

    VirtualProtect((void *)patch_me, 64, PAGE_EXECUTE_READWRITE, &old);
    for (unsigned i = 0; i < sizeof reader_code; i++)
        ((volatile unsigned char *)patch_me)[i] = reader_code[i];
    timed("rdtsc_written_into_image_text", (reader_fn)patch_me);

    dll = LoadLibraryA("C:\\Users\\analyst\\Desktop\\tscdll.dll");
    if (dll)
        timed("rdtsc_in_loaded_library", (reader_fn)GetProcAddress(dll, "ReadTsc"));
    else
        verdict("rdtsc_in_loaded_library", 0, "not loaded");
    ExitProcess(0x75C);
}
