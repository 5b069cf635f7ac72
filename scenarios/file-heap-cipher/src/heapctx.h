/*
 * heapctx.h - the context block of the file-heap-cipher chain: the suite's sc_ctx (first, so
 * the final payload reads it as its own) and what layer 1 needs to allocate from the heap.
 */
#ifndef HEAPCTX_H
#define HEAPCTX_H
#include "common.h"

typedef LPVOID (WINAPI *HeapAlloc_t)(HANDLE, DWORD, SIZE_T);

struct heap_ctx {
    struct sc_ctx c;
    HeapAlloc_t pHeapAlloc;
    HANDLE heap;
};
#endif
