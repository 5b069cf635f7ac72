/* Regression sample: functions imported from the DLLs Windows implements them in, combase.dll
 * (ole32's COM functions) and kernelbase.dll (kernel32's and advapi32's), which the emulator
 * handles under ole32's and kernel32's names. Each import must be answered as the forwarding
 * DLL's function is, not end the replay as an unsupported API nor be served from its signature
 * alone (a zero GUID, a zero tick count). Exit code: the failures. Inert without
 * CHAINREPLAY_SANDBOX=replay-only. */
#include "../fidelity/fidelity.h"

/* Imported from combase.dll / kernelbase.dll through import libraries made from forwarded.def. */
__declspec(dllimport) HRESULT WINAPI CoCreateGuid(GUID *guid);
__declspec(dllimport) LPVOID WINAPI CoTaskMemAlloc(SIZE_T size);
__declspec(dllimport) DWORD WINAPI GetTickCount(void);
__declspec(dllimport) DWORD WINAPI GetCurrentProcessId(void);

typedef DWORD(WINAPI *pid_fn)(void);
typedef int(WINAPI *strlen_fn)(LPCSTR);

static int failures;

static void check(const char *name, int ok)
{
    verdict(name, ok, "");
    if (!ok)
        failures++;
}

void __stdcall ForwardedEntry(void)
{
    GUID guid;
    HMODULE k32;
    pid_fn k32_pid;
    strlen_fn base_strlen;
    unsigned char *bytes = (unsigned char *)&guid;
    int nonzero = 0, i;

    if (!marker_set())
        ExitProcess(255);
    for (i = 0; i < (int)sizeof guid; i++)
        bytes[i] = 0;
    check("combase_cocreateguid", CoCreateGuid(&guid) == S_OK);
    for (i = 0; i < (int)sizeof guid; i++)
        nonzero |= bytes[i];
    check("combase_guid_nonzero", nonzero != 0);
    check("combase_cotaskmemalloc", CoTaskMemAlloc(16) != NULL);
    check("kernelbase_gettickcount", GetTickCount() != 0);
    k32 = GetModuleHandleA("kernel32.dll");
    k32_pid = k32 ? (pid_fn)(void *)GetProcAddress(k32, "GetCurrentProcessId") : NULL;
    check("kernelbase_pid", k32_pid != NULL && GetCurrentProcessId() == k32_pid() && k32_pid() != 0);
    base_strlen = (strlen_fn)(void *)GetProcAddress(LoadLibraryA("kernelbase.dll"), "lstrlenA");
    check("kernelbase_lstrlena", base_strlen != NULL && base_strlen("abc") == 3);
    ExitProcess(failures);
}
