/* Regression sample: passes a bad pointer (0x00BADBAD0) to an API that writes through it;
 * Windows faults at that address inside the API. */
#include "fidelity.h"

void __stdcall BadPtrEntry(void)
{
    if (!marker_set())
        ExitProcess(2);
    GetSystemTimeAsFileTime((FILETIME *)(ULONG_PTR)0x0BADBAD0);
    GetComputerNameA((char *)(ULONG_PTR)0x0BADBAD0, (DWORD *)(ULONG_PTR)0x0BADBAD0);
    ExitProcess(0);
}
