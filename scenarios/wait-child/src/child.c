/*
 * child.c - the program wait-child's parent drops and waits for (benign, emulator-only). Run with
 * "--stash" on its command line and as its own process (GetModuleFileName(NULL) ends with
 * helper.exe), it writes the payload, XORed with 0x77, to C:\Users\Public\stash.bin and exits
 * with code 7 (ExitProcess); otherwise it exits with 9 and writes nothing.
 */
#include "common.h"
#include "payload_enc.h" /* payload_enc[]: the payload XOR 0x5c */

static int ends_with(const char *s, const char *tail)
{
    int n = 0, m = 0;
    while (s[n])
        n++;
    while (tail[m])
        m++;
    if (m > n)
        return 0;
    for (int i = 0; i < m; i++) {
        char a = s[n - m + i], b = tail[i];
        if (a >= 'A' && a <= 'Z')
            a += 32;
        if (a != b)
            return 0;
    }
    return 1;
}

void Entry(void)
{
    static unsigned char stash[sizeof(payload_enc)];
    static char self[MAX_PATH];
    const char *cmd;
    DWORD i, written;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    cmd = GetCommandLineA();
    if (!ends_with(cmd, "--stash") || !GetModuleFileNameA(0, self, MAX_PATH) || !ends_with(self, "helper.exe"))
        ExitProcess(9);
    for (i = 0; i < sizeof(payload_enc); i++)
        stash[i] = payload_enc[i] ^ 0x5c ^ 0x77;
    f = CreateFileA("C:\\Users\\Public\\stash.bin", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, stash, sizeof(stash), &written, 0))
        ExitProcess(9);
    CloseHandle(f);
    ExitProcess(7);
}
