/*
 * chainreplay: TEST-ONLY stand-in for samcli.dll, used to exercise the stage-2
 * reflective loader before (or without) the real stage-2 DLL. Never shipped in a
 * sample: the Makefile only uses it with `make PLACEHOLDER=1`.
 *
 * Written from scratch; inert outside the emulator (CHAINREPLAY_SANDBOX check first).
 * It has an absolute-address table (forces base relocations) and kernel32 imports
 * (exercises import resolution), and leaves two visible marks in an API trace:
 * OutputDebugStringA(user_agent) and CreateFileW of a harmless temp path.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

static const char *const g_msgs[2] = {"placeholder samcli: attach", "placeholder samcli: run"};
static DWORD g_args[2];

static int sandbox_marker_ok(void)
{
    static const WCHAR want[] = L"replay-only";
    WCHAR buf[32];
    DWORD n = GetEnvironmentVariableW(L"CHAINREPLAY_SANDBOX", buf, 32), i;
    if (n != 11)
        return 0;
    for (i = 0; i < n; i++)
        if (buf[i] != want[i])
            return 0;
    return 1;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH && sandbox_marker_ok())
        OutputDebugStringA(g_msgs[0]);
    return TRUE;
}

__declspec(dllexport) HRESULT WINAPI DllGetClassObject(DWORD a, DWORD b, const char *user_agent)
{
    HANDLE h;
    if (!sandbox_marker_ok())
        return E_FAIL;
    g_args[0] = a;
    g_args[1] = b;
    OutputDebugStringA(g_msgs[1]);
    OutputDebugStringA(user_agent);
    if (a != 1200 || b != 2400)
        return E_INVALIDARG;
    h = CreateFileW(L"C:\\Windows\\Temp\\chainreplay_placeholder_1200_2400.txt", GENERIC_WRITE, 0,
                    NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h != INVALID_HANDLE_VALUE)
        CloseHandle(h);
    return S_OK;
}
