/* Regression sample: Windows APIs real programs call that Speakeasy served wrongly or not at all
 * (found on a corpus of third-party launchers, installers and runtime DLLs). Each check is a
 * verdict line (OutputDebugStringA "check NAME: pass|FAIL"); the exit code is the failures.
 * Inert without CHAINREPLAY_SANDBOX=replay-only (see ../fidelity/fidelity.h). */
#include "../fidelity/fidelity.h"
#include <shlobj.h>
#include <knownfolders.h>

int WINAPI MessageBoxTimeoutA(HWND, LPCSTR, LPCSTR, UINT, WORD, DWORD);
char *__cdecl getenv(const char *);
int __cdecl _ismbblead(unsigned int);

static int failures;
static const char rodata[64] = "read-only data the pseudo-relocation code patches";
static WCHAR expected[MAX_PATH];

static void check(const char *name, int ok, const char *detail)
{
    verdict(name, ok, detail);
    if (!ok)
        failures++;
}

static int wstr_eq(const WCHAR *a, const WCHAR *b)
{
    for (; *a && *b; a++, b++)
        if (*a != *b)
            return 0;
    return *a == *b;
}

static int str_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (*a != *b)
            return 0;
    return *a == *b;
}

#ifdef _WIN64
void __stdcall ApiGapsEntry(void)
#else
void __stdcall ApiGaps32Entry(void)
#endif
{
    static const GUID unknown = {0x12345678, 0x1234, 0x1234, {1, 2, 3, 4, 5, 6, 7, 8}};
    PWSTR path = (PWSTR)1;
    HRESULT hr;
    char *value, *again;
    DWORD before, after;
    if (!marker_set())
        ExitProcess(255);

    /* A known folder is the profile's, as %LOCALAPPDATA% says; the caller frees it. */
    hr = SHGetKnownFolderPath(&FOLDERID_LocalAppData, 0, NULL, &path);
    GetEnvironmentVariableW(L"LOCALAPPDATA", expected, MAX_PATH);
    check("known_folder_ok", hr == S_OK && path != NULL, "");
    if (hr == S_OK && path) {
        OutputDebugStringW(path);
        check("known_folder_is_localappdata", wstr_eq(path, expected), "");
        CoTaskMemFree(path);
    }
    path = (PWSTR)1;
    hr = SHGetKnownFolderPath(&unknown, 0, NULL, &path);
    check("unknown_folder_invalidarg", hr == E_INVALIDARG && path == NULL, "");

    /* lstrlen swallows a bad pointer. */
    check("lstrlenW_null", lstrlenW(NULL) == 0, "");
    check("lstrlenA_null", lstrlenA(NULL) == 0, "");
    check("lstrlenA_unmapped", lstrlenA((LPCSTR)(ULONG_PTR)0x10) == 0, "");
    check("lstrlenA_abc", lstrlenA("abc") == 3, "");

    /* The C runtime's environment and multibyte classification. */
    value = getenv("CHAINREPLAY_SANDBOX");
    again = getenv("chainreplay_sandbox");
    check("getenv_marker", value != NULL && str_eq(value, "replay-only") && again == value, "");
    check("getenv_missing", getenv("CHAINREPLAY_NO_SUCH_VARIABLE") == NULL, "");
    check("ismbblead_ascii", _ismbblead('A') == 0, "");

    /* A message box with a timeout times out after it, in virtual time. */
    before = GetTickCount();
    check("messagebox_timeout", MessageBoxTimeoutA(NULL, "text", "caption", MB_OK, 0, 5000) == 32000, "");
    after = GetTickCount();
    check("messagebox_waited", after - before >= 5000, "");

    /* An image's pages report their section's protection, as mingw's pseudo-relocation code
     * reads it: VirtualProtect only what is not writable, patch, restore. */
    {
        MEMORY_BASIC_INFORMATION mbi;
        DWORD old = 0;
        volatile char *target = (volatile char *)rodata;
        SIZE_T n = VirtualQuery((LPCVOID)rodata, &mbi, sizeof mbi);
        check("virtualquery_rdata_readonly", n == sizeof mbi && mbi.Protect == PAGE_READONLY, "");
        check("virtualquery_rdata_bounds",
              (char *)mbi.BaseAddress <= rodata && rodata < (char *)mbi.BaseAddress + mbi.RegionSize, "");
        n = VirtualQuery((LPCVOID)check, &mbi, sizeof mbi);
        check("virtualquery_text_not_writable", n == sizeof mbi && mbi.Protect == PAGE_EXECUTE_READ, "");
        VirtualQuery((LPCVOID)rodata, &mbi, sizeof mbi);
        if (mbi.Protect != PAGE_READWRITE && mbi.Protect != PAGE_EXECUTE_READWRITE)
            VirtualProtect(mbi.BaseAddress, mbi.RegionSize, PAGE_READWRITE, &old);
        target[0] = 'R';
        VirtualProtect(mbi.BaseAddress, mbi.RegionSize, old ? old : PAGE_READONLY, &old);
        check("pseudo_reloc_patched", target[0] == 'R', "");
    }

    /* No handler anywhere: served from its signature (the report notes it). */
    SetConsoleMode(GetStdHandle(STD_OUTPUT_HANDLE), 3);
    ExitProcess(failures);
}
