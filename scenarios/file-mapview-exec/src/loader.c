/*
 * loader.c - generality suite: a shellcode file mapped executable and called in place, with no
 * allocation, copy or ReadFile. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Opens C:\ProgramData\ChainreplayDemo\update.bin, maps it with CreateFileMappingA
 * (PAGE_EXECUTE_READ) and MapViewOfFile (FILE_MAP_READ | FILE_MAP_EXECUTE) and calls the view.
 * The file is the suite's final payload (../../lineage-common/payload.c), which writes
 * C:\Users\Public\lineage_mapexec.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 mapping, 6 the stage failed.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    HANDLE f, section;
    unsigned char *view;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\update.bin", GENERIC_READ | GENERIC_EXECUTE, FILE_SHARE_READ,
                    0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    section = CreateFileMappingA(f, 0, PAGE_EXECUTE_READ, 0, 0, 0);
    if (!section)
        ExitProcess(3);
    view = (unsigned char *)MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_EXECUTE, 0, 0, 0);
    if (!view)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_mapexec.txt", "run from a view of the file\n");
    ExitProcess(((entry_t)(void *)view)(&ctx) ? 6 : 0);
}
