/* Regression sample: a program whose DLL needs a DLL of its own, both beside it
 * (chain.exe -> apichain.dll -> apidep.dll). Exit code: the failures.
 * Inert without CHAINREPLAY_SANDBOX=replay-only. */
#include "../fidelity/fidelity.h"

__declspec(dllimport) int ChainValue(void);

void __stdcall ChainEntry(void)
{
    int ok;
    if (!marker_set())
        ExitProcess(255);
    ok = ChainValue() == 43;
    verdict("chained_import_value", ok, "");
    ExitProcess(ok ? 0 : 1);
}
