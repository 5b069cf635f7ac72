/* Library half of tscwrite: ReadTsc returns rdtsc as one 64-bit value. Inert: it only reads
 * the counter. */
#include <windows.h>

__declspec(dllexport) unsigned long long ReadTsc(void)
{
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}
