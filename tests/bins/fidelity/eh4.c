/* Mode-equivalence and regression sample (i686): MSVC-shaped __try/__except (eh4.S) whose
 * handler is msvcrt!_except_handler4_common, an import: the filter and the __except block run
 * after the imports are resolved, once per faulting loop iteration. Exits 0xE40 + caught. */
#include "fidelity.h"

int eh4_try(int iterations);

void __cdecl Eh4Entry(void)
{
    int caught;
    if (!marker_set())
        ExitProcess(2);
    GetTickCount();
    caught = eh4_try(6);
    GetTickCount();
    ExitProcess(0xE40 + caught);
}
