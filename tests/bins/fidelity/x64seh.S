/* Mode-equivalence sample (x64): table-based exception handling. `faulter` carries an unwind
 * entry in .pdata whose language handler resumes past the faulting 8-byte read. */
    .text
    .globl  faulter
    .def    faulter; .scl 2; .type 32; .endef
    .seh_proc faulter
faulter:
    subq    $40, %rsp
    .seh_stackalloc 40
    .seh_endprologue
    .seh_handler seh_handler, @except
    movq    0, %rax
    movl    $0x64, %eax
    addq    $40, %rsp
    ret
    .seh_endproc
