/* Regression sample: Windows APIs real programs call that Speakeasy served wrongly or not at all
 * (found on a corpus of third-party launchers, installers and runtime DLLs). Each check is a
 * verdict line (OutputDebugStringA "check NAME: pass|FAIL"); the exit code is the failures.
 * Inert without CHAINREPLAY_SANDBOX=replay-only (see ../fidelity/fidelity.h). */
#include "../fidelity/fidelity.h"
#include <shlobj.h>
#include <knownfolders.h>
#include <ctype.h>
#include <wctype.h>

int WINAPI MessageBoxTimeoutA(HWND, LPCSTR, LPCSTR, UINT, WORD, DWORD);
char *__cdecl getenv(const char *);
int __cdecl _ismbblead(unsigned int);
int __cdecl _open(const char *, int, ...);
int __cdecl _read(int, void *, unsigned int);
int __cdecl _write(int, const void *, unsigned int);
long __cdecl _lseek(int, long, int);
long long __cdecl _lseeki64(int, long long, int);
int __cdecl _close(int);
int __cdecl _setmode(int, int);
int __cdecl _isatty(int);
struct stat64_layout { /* msvcrt's struct _stat64 */
    unsigned int st_dev; unsigned short st_ino, st_mode; short st_nlink, st_uid, st_gid;
    unsigned int st_rdev; long long st_size, st_atime, st_mtime, st_ctime;
};
int __cdecl _fstat64(int, struct stat64_layout *);

static int failures;
static char self_path[MAX_PATH];
static char final_path[MAX_PATH + 8];
static char drop_path[MAX_PATH + 16];
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
    check("ctype", isspace(' ') && isspace('\t') && !isspace('x') && !isspace(-1) && isalpha('q')
          && !isalpha('1') && isxdigit('F') && !isxdigit('g') && isalnum('7') && ispunct('#')
          && !ispunct('a') && iscntrl('\n') && isupper('Q') && !islower('Q') && isprint(' ')
          && !isgraph(' ') && !isalpha(0xE9), "");
    check("wctype", iswalpha(0xE9) && !iswspace(0xE9) && iswspace(L' ') && iswdigit(L'5')
          && !iswdigit(L'x'), "");
    value = _strdup("duplicate me");
    check("strdup", value != NULL && str_eq(value, "duplicate me") && _strdup(NULL) == NULL, "");

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

    /* The C runtime's file descriptors over the guest's files, opened by the path
     * GetFinalPathNameByHandle gives for a handle (as Python's launchers open themselves). */
    {
        HANDLE h;
        DWORD n, size;
        int fd;
        char mz[2] = {0, 0};
        GetModuleFileNameA(NULL, self_path, MAX_PATH);
        h = CreateFileA(self_path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
        size = GetFileSize(h, NULL);
        n = GetFinalPathNameByHandleA(h, final_path, sizeof final_path, 0);
        CloseHandle(h);
        check("final_path_dos", n > 4 && final_path[0] == '\\' && final_path[1] == '\\' && final_path[2] == '?'
              && final_path[3] == '\\' && str_eq(final_path + 4, self_path), "");
        fd = _open(final_path, 0x8000 /* _O_BINARY */);
        check("open_self", fd >= 3, "");
        check("read_mz", _read(fd, mz, 2) == 2 && mz[0] == 'M' && mz[1] == 'Z', "");
        check("lseek_end_is_size", _lseek(fd, 0, 2) == (long)size, "");
        check("lseeki64_back", _lseeki64(fd, -(long long)size + 1, 1) == 1, "");
        check("read_after_seek", _read(fd, mz, 1) == 1 && mz[0] == 'Z', "");
        {
            struct stat64_layout st;
            check("fstat64_file", _fstat64(fd, &st) == 0 && st.st_size == (long long)size
                  && (st.st_mode & 0xF000) == 0x8000 && st.st_atime > 1000000000, "");
            check("fstat64_console", _fstat64(2, &st) == 0 && (st.st_mode & 0xF000) == 0x2000, "");
            check("fstat64_bad_fd", _fstat64(99, &st) == -1, "");
            check("setmode", _setmode(fd, 0x4000) == 0x8000 && _setmode(fd, 0x8000) == 0x4000
                  && _setmode(99, 0x8000) == -1, "");
            check("isatty", _isatty(2) != 0 && _isatty(fd) == 0, "");
        }
        check("close", _close(fd) == 0 && _close(fd) == -1, "");
        check("open_missing", _open("C:\\no\\such\\file.bin", 0) == -1, "");
        n = GetTempPathA(MAX_PATH, drop_path);
        drop_path[n] = 'c'; drop_path[n + 1] = '.'; drop_path[n + 2] = 'b'; drop_path[n + 3] = 'i'; drop_path[n + 4] = 'n';
        drop_path[n + 5] = 0;
        fd = _open(drop_path, 0x1 | 0x100 | 0x200 /* _O_WRONLY | _O_CREAT | _O_TRUNC */, 0600);
        check("write_new", fd >= 3 && _write(fd, "crt bytes", 9) == 9 && _close(fd) == 0, "");
    }

    /* No handler anywhere: served from its signature (the report notes it). */
    SetConsoleMode(GetStdHandle(STD_OUTPUT_HANDLE), 3);
    SetConsoleMode(GetStdHandle(STD_OUTPUT_HANDLE), 1);
    ExitProcess(failures);
}
