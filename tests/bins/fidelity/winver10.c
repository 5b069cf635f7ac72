/* GetVersionEx of a program whose manifest names Windows 10: the machine's version (10.0),
 * where antiemu.exe (no manifest) is told 6.2 build 9200. One verdict line. Inert without the marker. */
#include <windows.h>
#include "fidelity.h"

void __stdcall WinVer10Entry(void)
{
    OSVERSIONINFOA v;
    char text[24];
    if (!marker_set())
        ExitProcess(2);
    v.dwOSVersionInfoSize = sizeof v;
    GetVersionExA(&v);
    fmt_u64(text, v.dwMajorVersion * 100 + v.dwMinorVersion);
    verdict("GetVersionEx_with_windows_10_manifest", v.dwMajorVersion == 10 && v.dwMinorVersion == 0, text);
    ExitProcess(0);
}
