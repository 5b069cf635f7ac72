/* Robustness sample: asks VirtualAlloc for 3.5 GB, touches the first and last page if it
 * got them, then exits with 1 (allocation failed) or 0. The replay must refuse or cap it
 * (limit max_allocation) without crashing. Benign: touches only its own memory. */
#include <windows.h>

#define HUGE_SIZE ((SIZE_T)0xE0000000u) /* 3.5 GiB */

void __stdcall BigAllocEntry(void)
{
    volatile unsigned char *p =
        (volatile unsigned char *)VirtualAlloc(NULL, HUGE_SIZE, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (p == NULL)
        ExitProcess(1);
    p[0] = 1;
    p[HUGE_SIZE - 1] = 1;
    ExitProcess(0);
}
