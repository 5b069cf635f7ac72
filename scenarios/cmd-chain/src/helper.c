/*
 * helper.c - the program cmd-chain's dropper runs through a cmd one-liner (benign,
 * emulator-only; see ../../lineage-common/common.h). Its last command-line word says what it does,
 * each writing C:\Users\Public\chain_<word>.txt first:
 *   fail     exits with code 3 (ExitProcess): the && after it must not run, the || must
 *   skipped  exits with 0 (never runs: it follows && after "fail")
 *   recover  returns 4 from its entry point (no ExitProcess): its exit code is that value,
 *            so the || after it must run
 *   retry    exits with 0 (ExitProcess): the || after it must not run
 *   nope     exits with 0 (never runs: it follows || after "retry")
 *   last     ends itself with TerminateProcess(GetCurrentProcess(), 5): the && after it must not run
 *   never    exits with 0 (never runs: it follows && after "last")
 *   late     exits with 0 (runs after the dropper, on || after "fail")
 * Without the marker, or with another word, it exits with 9 and writes nothing.
 */
#include "common.h"

static int ends_with(const char *s, const char *tail)
{
    int n = 0, m = 0;
    while (s[n])
        n++;
    while (tail[m])
        m++;
    if (m > n)
        return 0;
    for (int i = 0; i < m; i++)
        if (s[n - m + i] != tail[i])
            return 0;
    return 1;
}

static const char *const words[] = {"fail", "skipped", "recover", "retry", "nope", "last", "never", "late"};

int Entry(void)
{
    static char path[64];
    const char *cmd;
    DWORD written;
    HANDLE f;
    int which = -1, i;

    if (!marker_present())
        ExitProcess(9);
    cmd = GetCommandLineA();
    for (i = 0; i < 8; i++)
        if (ends_with(cmd, words[i]))
            which = i;
    if (which < 0)
        ExitProcess(9);
    copy_str(path, "C:\\Users\\Public\\chain_", 64);
    copy_str(path + 22, words[which], 16);
    for (i = 22; path[i]; i++)
        ;
    copy_str(path + i, ".txt", 8);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, cmd, 8, &written, 0))
        ExitProcess(9);
    CloseHandle(f);
    if (which == 0)
        ExitProcess(3);
    if (which == 2)
        return 4;
    if (which == 5)
        TerminateProcess(GetCurrentProcess(), 5);
    ExitProcess(0);
}
