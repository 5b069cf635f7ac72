/* Robustness sample: drops one small file under each of a set of hostile names (path
 * traversal, an absolute POSIX path, a UNC path, a device name, a 300-character name, a
 * right-to-left override) and exits. The replay must store every file as
 * OUTDIR/dropped/<sha256> and show each name only sanitised.
 * Benign: does nothing unless CHAINREPLAY_SANDBOX=replay-only (only the emulator sets it). */
#include <windows.h>

static const WCHAR *const NAMES[] = {
    L"..\\..\\dotdot.txt",
    L"C:\\..\\..\\drive-dotdot.txt",
    L"/etc/passwd",
    L"\\\\evil-server\\share\\unc.txt",
    L"CON",
    L"C:\\Users\\Public\\invoice\x202Etxt.exe",
};

static char content[32];
static WCHAR long_name[340];

static int marker_set(void)
{
    static const char want[] = "replay-only";
    char value[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", value, sizeof value);
    if (n != sizeof want - 1)
        return 0;
    for (DWORD i = 0; i < n; i++)
        if (value[i] != want[i])
            return 0;
    return 1;
}

static void drop(const WCHAR *name, int index)
{
    static const char text[] = "dropped file #";
    DWORD len = 0, written = 0;
    for (; text[len]; len++)
        content[len] = text[len];
    content[len++] = (char)('0' + index / 10);
    content[len++] = (char)('0' + index % 10);
    content[len++] = '\n';
    HANDLE h = CreateFileW(name, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return;
    WriteFile(h, content, len, &written, NULL);
    CloseHandle(h);
}

void __stdcall DropNamesEntry(void)
{
    if (!marker_set())
        ExitProcess(2);
    int i = 0;
    for (; i < (int)(sizeof NAMES / sizeof NAMES[0]); i++)
        drop(NAMES[i], i);
    /* C:\Users\Public\ followed by 300 'A's and .txt */
    static const WCHAR prefix[] = L"C:\\Users\\Public\\";
    int k = 0;
    for (; prefix[k]; k++)
        long_name[k] = prefix[k];
    for (int j = 0; j < 300; j++)
        long_name[k++] = L'A';
    long_name[k++] = L'.';
    long_name[k++] = L't';
    long_name[k++] = L'x';
    long_name[k++] = L't';
    long_name[k] = 0;
    drop(long_name, i);
    ExitProcess(0);
}
