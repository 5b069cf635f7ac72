/* Regression sample: a program's DLLs beside it, found as Windows' loader finds them (the
 * application's folder first): apidep.dll through the import table (its DllMain has run before
 * the entry point), apidep2.dll by LoadLibraryA with a bare name. Exit code: the failures.
 * Inert without CHAINREPLAY_SANDBOX=replay-only. */
#include "../fidelity/fidelity.h"

__declspec(dllimport) int DepAttached(void);
__declspec(dllimport) int DepValue(void);

static int failures;

static void check(const char *name, int ok)
{
    verdict(name, ok, "");
    if (!ok)
        failures++;
}

void __stdcall SideloadEntry(void)
{
    HMODULE module;
    int (*value)(void);
    if (!marker_set())
        ExitProcess(255);
    check("import_dllmain_ran", DepAttached() == 1);
    check("import_value", DepValue() == 42);
    module = LoadLibraryA("apidep2.dll");
    check("loadlibrary_bare_name", module != NULL);
    value = module ? (int (*)(void))(void *)GetProcAddress(module, "DepValue") : NULL;
    check("loadlibrary_value", value != NULL && value() == 7);
    ExitProcess(failures);
}
