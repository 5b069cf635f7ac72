/*
 * syncnames.c - benign test EXE: creates and opens named synchronisation objects (mutex, event,
 * semaphore, waitable timer) so the replay's sync-object events can be checked name by name.
 * Acts only inside chainreplay (CHAINREPLAY_SANDBOX=replay-only); touches nothing else.
 */
#include <windows.h>

static int in_sandbox(void)
{
    char value[32];
    DWORD n = GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", value, sizeof(value));
    const char *want = "replay-only";
    if (n != 11)
        return 0;
    for (DWORD i = 0; i < n; i++)
        if (value[i] != want[i])
            return 0;
    return 1;
}

void WINAPI SyncEntry(void)
{
    if (!in_sandbox())
        ExitProcess(1);
    CreateMutexW(NULL, FALSE, L"cr-mutex-w");
    OpenMutexW(SYNCHRONIZE, FALSE, L"cr-mutex-w");
    CreateMutexA(NULL, FALSE, "cr-mutex-a");
    CreateMutexA(NULL, FALSE, "cr-mutex-a");
    OpenMutexA(SYNCHRONIZE, FALSE, "cr-mutex-a");
    CreateEventA(NULL, TRUE, FALSE, "cr-event-a");
    OpenEventA(SYNCHRONIZE, FALSE, "cr-event-a");
    CreateSemaphoreW(NULL, 0, 1, L"cr-semaphore-w");
    CreateWaitableTimerW(NULL, TRUE, L"cr-timer-w");
    OpenWaitableTimerW(SYNCHRONIZE, FALSE, L"cr-timer-w");
    ExitProcess(0);
}
