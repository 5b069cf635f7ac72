/* Regression sample: allocates and touches 1 MiB chunks until VirtualAlloc fails (or the
 * replay's max_mapped_memory limit stops it); exits with the number of chunks it got. */
#include "fidelity.h"

void __stdcall AllocLoopEntry(void)
{
    DWORD count = 0;
    if (!marker_set())
        ExitProcess(0xFFFF);
    for (;;) {
        volatile char *p = (volatile char *)VirtualAlloc(NULL, 0x100000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        if (!p)
            break;
        p[0] = 1;
        p[0xFFFFF] = 1;
        count++;
    }
    ExitProcess(count);
}
