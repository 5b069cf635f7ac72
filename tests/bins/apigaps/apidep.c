/* A DLL that sits beside its program (tests/test_apigaps.py): built twice, as apidep.dll (an
 * import of sideload.exe) and apidep2.dll (loaded by bare name). DllMain records that the loader
 * ran it; DepValue tells the two apart. Nothing here acts on anything. */
#include <windows.h>

static int attached;

__declspec(dllexport) int DepAttached(void)
{
    return attached;
}

__declspec(dllexport) int DepValue(void)
{
    return DEP_VALUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH)
        attached = 1;
    return TRUE;
}
