/*
 * loader.c - generality suite: a section of the paging file mapped twice, a writable view and an
 * executable one; the payload decoded into the first runs from the second. Benign,
 * emulator-only (see ../../lineage-common/common.h).
 *
 * CreateFileMappingA(INVALID_HANDLE_VALUE, PAGE_EXECUTE_READWRITE, one page), MapViewOfFile with
 * FILE_MAP_WRITE and again with FILE_MAP_READ | FILE_MAP_EXECUTE: no memory is ever both writable
 * and executable. The payload (../../lineage-common/payload.c) is in the program's data under
 * the one-byte XOR key 0xa5; it is decoded into the writable view and the executable view is
 * called. The stage writes C:\Users\Public\lineage_section.txt.
 * Exit codes: 0 ok, 1 no marker, 2 section, 3 view, 6 the stage failed.
 */
#include "common.h"
#include "payload.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    HANDLE section;
    unsigned char *rw, *rx;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    section = CreateFileMappingA(INVALID_HANDLE_VALUE, 0, PAGE_EXECUTE_READWRITE, 0, 0x1000, 0);
    if (!section)
        ExitProcess(2);
    rw = (unsigned char *)MapViewOfFile(section, FILE_MAP_WRITE, 0, 0, 0x1000);
    rx = (unsigned char *)MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_EXECUTE, 0, 0, 0x1000);
    if (!rw || !rx || rw == rx)
        ExitProcess(3);
    for (i = 0; i < sizeof(payload_enc); i++)
        rw[i] = payload_enc[i] ^ 0xa5;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_section.txt", "written through one view, run from another\n");
    ExitProcess(((entry_t)(void *)rx)(&ctx) ? 6 : 0);
}
