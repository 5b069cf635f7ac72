/* Robustness sample: calls GetTickCount forever (an API-call flood).
 * The replay must stop it at max_api_calls. Benign: reads the tick count only. */
#include <windows.h>

volatile DWORD sink;

void __stdcall FloodEntry(void)
{
    for (;;)
        sink += GetTickCount();
}
