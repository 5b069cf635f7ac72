/*
 * loader.c - probe: a payload passed through a mailslot (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * The loader creates the mailslot \\.\mailslot\cr_sync_7d1 (CreateMailslotA), opens its client end
 * (CreateFileA OPEN_EXISTING) and posts this program's payload, still XOR-encoded (3-byte key
 * 5b c7 19), as two messages (WriteFile, 160 bytes then the rest). It asks GetMailslotInfo for
 * the next message's size and the count, reads each message (ReadFile) into one stack buffer one
 * after the other, XOR-decodes it into RW memory, makes it RX (VirtualProtect) and runs it in a
 * thread. The stage writes C:\Users\Public\lineage_mailslot.txt.
 * Exit codes: 0 ok, 1 no marker, 2 mailslot, 3 post, 4 info, 5 read, 6 memory, 7 thread.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 5b c7 19 */

static const unsigned char KEY[3] = {0x5b, 0xc7, 0x19};
#define FIRST 160

void Entry(void)
{
    static struct sc_ctx ctx;
    static const char name[] = "\\\\.\\mailslot\\cr_sync_7d1";
    unsigned char buf[1024];
    HANDLE server, client, thread;
    DWORD n = 0, next = 0, count = 0, got = 0, i, old;
    unsigned char *code;

    if (!marker_present())
        ExitProcess(1);
    server = CreateMailslotA(name, 0, MAILSLOT_WAIT_FOREVER, 0);
    if (server == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    client = CreateFileA(name, GENERIC_WRITE, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (client == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    if (!WriteFile(client, payload_enc, FIRST, &n, 0) || n != FIRST)
        ExitProcess(3);
    if (!WriteFile(client, payload_enc + FIRST, sizeof(payload_enc) - FIRST, &n, 0) || n != sizeof(payload_enc) - FIRST)
        ExitProcess(3);
    CloseHandle(client);

    for (;;) {
        if (!GetMailslotInfo(server, 0, &next, &count, 0))
            ExitProcess(4);
        if (next == MAILSLOT_NO_MESSAGE)
            break;
        if (got + next > sizeof(buf) || !ReadFile(server, buf + got, next, &n, 0) || n != next)
            ExitProcess(5);
        got += n;
    }
    CloseHandle(server);
    if (got != sizeof(payload_enc))
        ExitProcess(5);

    code = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(6);
    for (i = 0; i < got; i++)
        code[i] = buf[i] ^ KEY[i % 3];
    if (!VirtualProtect(code, got, PAGE_EXECUTE_READ, &old))
        ExitProcess(6);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_mailslot.txt", "passed through a mailslot\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx, 0, 0);
    if (!thread)
        ExitProcess(7);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
