/* Regression sample: passes a bad pointer (0x0BADBAD0) to an API that writes through it;
 * Windows faults at that address inside the API. With "engine" on its command line the API is
 * one Speakeasy implements (GetComputerNameA), otherwise one chainreplay implements
 * (GetSystemTimeAsFileTime). */
#include "fidelity.h"

void __stdcall BadPtrEntry(void)
{
    if (!marker_set())
        ExitProcess(2);
    if (str_has_i(GetCommandLineA(), "engine"))
        GetComputerNameA((char *)(ULONG_PTR)0x0BADBAD0, (DWORD *)(ULONG_PTR)0x0BADBAD0);
    else
        GetSystemTimeAsFileTime((FILETIME *)(ULONG_PTR)0x0BADBAD0);
    ExitProcess(0);
}
