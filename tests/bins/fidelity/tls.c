/* Mode-equivalence sample (x64): a TLS callback runs before the entry point and records it;
 * threads run and the main thread waits for them. Exits with the sum of what ran. */
#include "fidelity.h"

static volatile LONG tls_calls, thread_sum;

static void NTAPI tls_callback(PVOID module, DWORD reason, PVOID reserved)
{
    (void)module;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        tls_calls++;
        GetTickCount();
    }
}

static ULONG tls_index;
PIMAGE_TLS_CALLBACK tls_callbacks[] = {tls_callback, NULL};
const IMAGE_TLS_DIRECTORY64 _tls_used = {0, 0, (ULONGLONG)&tls_index, (ULONGLONG)tls_callbacks, 0, 0};

static DWORD WINAPI worker(LPVOID param)
{
    thread_sum += (LONG)(ULONG_PTR)param;
    Sleep(10);
    return 0;
}

void __stdcall TlsEntry(void)
{
    HANDLE threads[3];
    int i;
    if (!marker_set())
        ExitProcess(2);
    for (i = 0; i < 3; i++)
        threads[i] = CreateThread(NULL, 0, worker, (LPVOID)(ULONG_PTR)(i + 1), 0, NULL);
    WaitForMultipleObjects(3, threads, TRUE, INFINITE);
    ExitProcess(0x1000 * tls_calls + thread_sum);
}
