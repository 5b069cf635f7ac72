/* Regression sample: prints its command line (GetCommandLineA) and each CommandLineToArgvW
 * argument with OutputDebugString, as a sample printing its argv would. */
#include <windows.h>
#include <shellapi.h>
#include "fidelity.h"

void __stdcall ArgvEntry(void)
{
    int argc = 0, i;
    LPWSTR *argv;
    if (!marker_set())
        ExitProcess(2);
    OutputDebugStringA(GetCommandLineA());
    argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    for (i = 0; argv && i < argc; i++)
        OutputDebugStringW(argv[i]);
    ExitProcess((UINT)argc);
}
