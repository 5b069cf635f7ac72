/* Regression sample: a URL whose last byte sits 52 bytes below the end of its memory region
 * (as a string near the top of the stack does) is fetched with InternetOpenUrlA. */
#include <windows.h>
#include <wininet.h>
#include "fidelity.h"

void __stdcall StrEndEntry(void)
{
    static const char url[] = "http://updates.example.test/stage/next.bin";
    char *region, *p;
    HINTERNET net;
    int i;
    if (!marker_set())
        ExitProcess(2);
    region = (char *)VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    p = region + 0x1000 - 52;
    for (i = 0; url[i] && i < 51; i++)
        p[i] = url[i];
    p[i] = 0;
    net = InternetOpenA("Mozilla/5.0", INTERNET_OPEN_TYPE_DIRECT, NULL, NULL, 0);
    InternetOpenUrlA(net, p, NULL, 0, 0, 0);
    ExitProcess(0);
}
