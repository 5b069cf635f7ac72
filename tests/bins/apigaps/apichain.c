/* A DLL between a program and the DLL it needs (tests/test_apigaps.py): chain.exe imports
 * apichain.dll, which imports apidep.dll, so a bare chain.exe names only the first of the two
 * files beside it. ChainValue is apidep's DepValue plus one. Nothing here acts on anything. */
#include <windows.h>

__declspec(dllimport) int DepValue(void);

__declspec(dllexport) int ChainValue(void)
{
    return DepValue() + 1;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
