/*
 * loader.c - probe: a payload staged in a transacted file (TxF) and run from a section of it
 * after the transaction is rolled back (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * The transacted hollowing / process doppelganging idiom, in the loader's own process:
 * CreateTransaction (ktmw32, resolved with GetProcAddress; the x86 build: ntdll's
 * NtCreateTransaction, and NtRollbackTransaction below, as native-API loaders do) -> CreateFileTransactedA of
 * %TEMP%\~tx5821.tmp -> WriteFile of the payload, decoded first (4-byte XOR) into a heap block ->
 * CreateFileMappingA(PAGE_EXECUTE_READ) of the transacted handle + MapViewOfFile(FILE_MAP_EXECUTE)
 * -> RollbackTransaction: the file never existed outside the transaction (the loader checks it is
 * gone with GetFileAttributesA) -> the view, whose section still holds the bytes, is called.
 * The stage writes C:\Users\Public\lineage_txf.txt.
 * Exit codes: 0 ok, 1 no marker, 2 ktmw32, 3 transaction, 4 file, 5 section, 6 rollback, 7 still there.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 9e 37 c4 51 */

typedef HANDLE (WINAPI *CreateTransaction_t)(LPSECURITY_ATTRIBUTES, LPGUID, DWORD, DWORD, DWORD, DWORD, LPWSTR);
typedef BOOL (WINAPI *RollbackTransaction_t)(HANDLE);
typedef LONG (NTAPI *NtCreateTransaction_t)(PHANDLE, ACCESS_MASK, PVOID, LPGUID, HANDLE, ULONG, ULONG, ULONG, PLARGE_INTEGER,
                                            PVOID);
typedef LONG (NTAPI *NtRollbackTransaction_t)(HANDLE, BOOLEAN);
typedef HANDLE (WINAPI *CreateFileTransactedA_t)(LPCSTR, DWORD, DWORD, LPSECURITY_ATTRIBUTES, DWORD, DWORD, HANDLE,
                                                 HANDLE, PUSHORT, PVOID);
typedef DWORD (WINAPI *stage_t)(struct sc_ctx *);

static const unsigned char KEY[4] = {0x9e, 0x37, 0xc4, 0x51};

void Entry(void)
{
    static struct sc_ctx ctx;
    char path[MAX_PATH];
    HMODULE ktm;
    CreateTransaction_t pCreateTransaction;
    RollbackTransaction_t pRollbackTransaction;
    CreateFileTransactedA_t pCreateFileTransactedA;
    HANDLE tx, f, section;
    DWORD n = 0, i, len;
    unsigned char *plain;
    void *view;

    if (!marker_present())
        ExitProcess(1);
    ktm = LoadLibraryA("ktmw32.dll");
    if (!ktm)
        ExitProcess(2);
    pCreateTransaction = (CreateTransaction_t)(void *)GetProcAddress(ktm, "CreateTransaction");
    pRollbackTransaction = (RollbackTransaction_t)(void *)GetProcAddress(ktm, "RollbackTransaction");
    pCreateFileTransactedA =
        (CreateFileTransactedA_t)(void *)GetProcAddress(GetModuleHandleA("kernel32.dll"), "CreateFileTransactedA");
    if (!pCreateTransaction || !pRollbackTransaction || !pCreateFileTransactedA)
        ExitProcess(2);
#ifdef _WIN64
    tx = pCreateTransaction(0, 0, 0, 0, 0, 0, 0);
#else
    {
        HMODULE nt = GetModuleHandleA("ntdll.dll");
        NtCreateTransaction_t pNtCreateTransaction =
            (NtCreateTransaction_t)(void *)GetProcAddress(nt, "NtCreateTransaction");
        tx = 0;
        if (!pNtCreateTransaction || pNtCreateTransaction(&tx, TRANSACTION_ALL_ACCESS, 0, 0, 0, 0, 0, 0, 0, 0) != 0)
            ExitProcess(3);
    }
#endif
    if (tx == INVALID_HANDLE_VALUE || !tx)
        ExitProcess(3);

    len = GetTempPathA(MAX_PATH - 16, path);
    if (!len)
        ExitProcess(4);
    lstrcatA(path, "~tx5821.tmp");
    f = pCreateFileTransactedA(path, GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE, 0, 0, CREATE_ALWAYS,
                               FILE_ATTRIBUTE_NORMAL, 0, tx, 0, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(4);
    plain = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, sizeof(payload_enc));
    if (!plain)
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        plain[i] = payload_enc[i] ^ KEY[i % 4];
    if (!WriteFile(f, plain, sizeof(payload_enc), &n, 0) || n != sizeof(payload_enc))
        ExitProcess(4);
    HeapFree(GetProcessHeap(), 0, plain);

    section = CreateFileMappingA(f, 0, PAGE_EXECUTE_READ, 0, 0, 0);
    if (!section)
        ExitProcess(5);
    view = MapViewOfFile(section, FILE_MAP_READ | FILE_MAP_EXECUTE, 0, 0, 0);
    if (!view)
        ExitProcess(5);
#ifdef _WIN64
    if (!pRollbackTransaction(tx))
        ExitProcess(6);
#else
    {
        NtRollbackTransaction_t pNtRollbackTransaction =
            (NtRollbackTransaction_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtRollbackTransaction");
        if (!pNtRollbackTransaction || pNtRollbackTransaction(tx, TRUE) != 0)
            ExitProcess(6);
    }
#endif
    CloseHandle(f);
    CloseHandle(tx);
    if (GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES)
        ExitProcess(7); /* rolled back: the file never existed outside the transaction */

    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_txf.txt", "ran from a section of a rolled-back TxF file\n");
    ExitProcess(((stage_t)view)(&ctx) == 0 ? 0 : 8);
}
