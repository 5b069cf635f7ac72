/* Mode-equivalence sample (x64): self-modifying code. Writes `mov eax, imm32; ret` into RWX
 * memory, calls it, rewrites the immediate in place and calls it again, then patches a byte of
 * its own image (after VirtualProtect) and calls the patched function. */
#include "fidelity.h"

typedef int (*fn_t)(void);

__attribute__((noinline, section(".text$patch"))) static int patched(void)
{
    return 1;
}

void __stdcall SmcEntry(void)
{
    unsigned char *code;
    DWORD old;
    int a, b, c;
    if (!marker_set())
        ExitProcess(2);
    code = (unsigned char *)VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    code[0] = 0xB8; code[1] = 0x11; code[2] = 0; code[3] = 0; code[4] = 0; code[5] = 0xC3;
    a = ((fn_t)code)();
    code[1] = 0x22;
    b = ((fn_t)code)();
    VirtualProtect((void *)patched, 16, PAGE_EXECUTE_READWRITE, &old);
    ((unsigned char *)patched)[0] = 0xB8; /* mov eax, 0x33; ret */
    ((unsigned char *)patched)[1] = 0x33;
    ((unsigned char *)patched)[2] = 0; ((unsigned char *)patched)[3] = 0; ((unsigned char *)patched)[4] = 0;
    ((unsigned char *)patched)[5] = 0xC3;
    c = ((fn_t)(void *)patched)();
    ExitProcess((UINT)(a << 16 | b << 8 | c));
}
