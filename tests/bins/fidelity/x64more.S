/* Mode-equivalence sample (x64), the table-based half: `framed` has an exception handler in
 * .pdata and calls a leaf function with no unwind data and a function whose prolog saves rbx
 * and rsi and allocates stack; both fault. The dispatcher unwinds to `framed` and calls
 * framed_handler, which resumes past each faulting 8-byte read; on the third it faults itself,
 * and outer_handler (outer's frame, beyond framed's) resumes it. Returns rbx (still 0x1234). */
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
    call    leaf_fault2
    movq    %rbx, %rax
    addq    $32, %rsp
    popq    %rbx
    ret
    .seh_endproc

leaf_fault:
    movq    0x70, %rax
    ret

leaf_fault2:
    movq    0x80, %rax
    ret

/* `outer` calls `framed` under a handler of its own, which catches the fault raised inside
 * framed_handler (a nested exception: the search goes past framed's frame to outer's). */
    .globl  outer
    .def    outer; .scl 2; .type 32; .endef
    .seh_proc outer
outer:
    subq    $40, %rsp
    .seh_stackalloc 40
    .seh_endprologue
    .seh_handler outer_handler, @except
    call    framed
    addq    $40, %rsp
    ret
    .seh_endproc

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
