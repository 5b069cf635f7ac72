/* Mode-equivalence sample (x64), the table-based half: `framed` has an exception handler in
 * .pdata and calls a leaf function with no unwind data and a function whose prolog saves rbx
 * and rsi and allocates stack; both fault. The dispatcher unwinds to `framed` and calls
 * framed_handler, which resumes past each faulting 8-byte read. Returns rbx (still 0x1234). */
    .text
    .globl  framed
    .def    framed; .scl 2; .type 32; .endef
    .seh_proc framed
framed:
    pushq   %rbx
    .seh_pushreg %rbx
    subq    $32, %rsp
    .seh_stackalloc 32
    .seh_endprologue
    .seh_handler framed_handler, @except
    movq    $0x1234, %rbx
    call    leaf_fault
    call    inner_fault
    movq    %rbx, %rax
    addq    $32, %rsp
    popq    %rbx
    ret
    .seh_endproc

leaf_fault:
    movq    0x70, %rax
    ret

    .seh_proc inner_fault
inner_fault:
    pushq   %rbx
    .seh_pushreg %rbx
    pushq   %rsi
    .seh_pushreg %rsi
    subq    $40, %rsp
    .seh_stackalloc 40
    .seh_endprologue
    movq    $0x5678, %rbx
    movq    0x78, %rax
    addq    $40, %rsp
    popq    %rsi
    popq    %rbx
    ret
    .seh_endproc
