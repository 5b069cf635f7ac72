/*
 * chainreplay synthetic 3CX scenario: d3dcompiler_47.dll (carrier).
 *
 * Written from scratch. A tiny, benign DLL that does nothing: it only exists so the
 * stage-1 loader (ffmpeg.dll) finds a valid PE ("MZ") named d3dcompiler_47.dll next to
 * itself. The build (tools/build.py) appends, after the end of this image:
 *
 *     FE ED FA CE | uint32 LE length | RC4("3jB(2bsG#@c7", stage-2 shellcode)
 *
 * The real carrier hid the payload inside the Authenticode signature area of a
 * Microsoft-signed DLL; this one is unsigned, and the payload is plain overlay data
 * appended after the last section. It performs no API calls at all, so it needs no
 * sandbox-marker check: loading or calling it has no effect anywhere.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#ifndef E_NOTIMPL
#define E_NOTIMPL ((HRESULT)0x80004001L)
#endif

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

/* Same parameter count as the real D3DCompile; never compiles anything. */
__declspec(dllexport) HRESULT WINAPI D3DCompile(const void *src, SIZE_T src_size, const char *name,
                                                const void *defines, void *include,
                                                const char *entry, const char *target,
                                                UINT flags1, UINT flags2, void **code,
                                                void **errors)
{
    (void)src; (void)src_size; (void)name; (void)defines; (void)include;
    (void)entry; (void)target; (void)flags1; (void)flags2;
    if (code)
        *code = NULL;
    if (errors)
        *errors = NULL;
    return E_NOTIMPL;
}

__declspec(dllexport) HRESULT WINAPI D3DGetBlobPart(const void *src, SIZE_T src_size, UINT part,
                                                    UINT flags, void **blob)
{
    (void)src; (void)src_size; (void)part; (void)flags;
    if (blob)
        *blob = NULL;
    return E_NOTIMPL;
}
