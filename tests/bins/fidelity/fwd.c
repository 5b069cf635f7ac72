/* Regression sample: a DLL whose exports include forwarders. Tick forwards to
 * kernel32.GetTickCount, Chain to Tick, and LoopA / LoopB to each other. */
#include "fidelity.h"

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) DWORD WINAPI Real(void)
{
    if (!marker_set())
        return 0;
    return GetTickCount();
}
