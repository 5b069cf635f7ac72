/* Regression sample: a DLL (not a system DLL's name) beside the program, with an export forwarded
 * to another export of its own name (fwdlib.def: Alias = fwdlib.Real). The forwarder resolves to
 * the DLL itself, as Windows resolves it; the program exits with Real's value (42). Inert without
 * CHAINREPLAY_SANDBOX=replay-only. */
#include "../fidelity/fidelity.h"

#ifdef FWDSELF_DLL
BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

int Real(void)
{
    return 42;
}
#else
__declspec(dllimport) int Alias(void);

void __stdcall FwdSelfEntry(void)
{
    if (!marker_set())
        ExitProcess(255);
    ExitProcess((UINT)Alias());
}
#endif
