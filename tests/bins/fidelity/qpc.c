/* Regression sample: an anti-debugging check that compares two consecutive
 * QueryPerformanceCounter readings; equal readings mean a frozen (emulated) clock.
 * Exits 0 when the readings move forward, 1 when caught. */
#include "fidelity.h"

void __stdcall QpcEntry(void)
{
    LARGE_INTEGER a, b;
    if (!marker_set())
        ExitProcess(2);
    QueryPerformanceCounter(&a);
    QueryPerformanceCounter(&b);
    if (b.QuadPart <= a.QuadPart) {
        OutputDebugStringA("caught by QueryPerformanceCounter");
        ExitProcess(1);
    }
    ExitProcess(0);
}
