/* Shared by the C++ probes (tests/test_cxx.py): one verdict line a check ("check NAME: pass|fail",
 * OutputDebugStringA) and the sandbox marker (the probes do nothing without it). */
#ifndef CXX_PROBE_H
#define CXX_PROBE_H
#include <windows.h>
#include <cstdio>
#include <cstring>

static inline void verdict(const char *name, bool ok)
{
    char line[128];
    std::snprintf(line, sizeof line, "check %s: %s", name, ok ? "pass" : "fail");
    OutputDebugStringA(line);
}

static inline bool marker_present()
{
    char marker[32];
    return GetEnvironmentVariableA("CHAINREPLAY_SANDBOX", marker, sizeof marker) == 11 &&
           std::strcmp(marker, "replay-only") == 0;
}
#endif
