/* i686, MSVC-shaped __try/__except: an EH4 registration on the stack whose handler calls
 * msvcrt!_except_handler4_common (an import), a scope table with a filter and an __except
 * block that restores esp from the frame, as cl.exe emits. eh4_try(n) faults n times in a loop
 * (each fault caught by the __except block, which counts it and goes round again);
 * returns the count. */
    .text
    .globl  _eh4_try
_eh4_try:
    pushl   %ebp
    movl    %esp, %ebp
    pushl   $-2                  /* TryLevel          [ebp-4]  */
    movl    $_scope_table, %eax
    xorl    ___security_cookie, %eax
    pushl   %eax                 /* ScopeTable^cookie [ebp-8]  */
    pushl   $_eh4_handler        /* Handler           [ebp-12] */
    pushl   %fs:0                /* Next              [ebp-16] */
    leal    -16(%ebp), %eax
    movl    %eax, %fs:0
    subl    $8, %esp             /* exc ptrs [ebp-20], saved esp [ebp-24] */
    pushl   %ebx
    pushl   %esi
    movl    %esp, -24(%ebp)
    xorl    %esi, %esi           /* caught */
    movl    8(%ebp), %ebx        /* iterations */
1:  testl   %ebx, %ebx
    jz      3f
    decl    %ebx
    movl    $0, -4(%ebp)         /* __try { */
    movl    0x30, %eax           /*   fault  */
    movl    $-2, -4(%ebp)        /* } */
    jmp     1b
    .globl  _eh4_except
_eh4_except:                     /* __except block */
    movl    -24(%ebp), %esp
    movl    $-2, -4(%ebp)
    incl    %esi
    jmp     1b
3:  movl    %esi, %eax
    movl    -16(%ebp), %ecx
    movl    %ecx, %fs:0
    popl    %esi
    popl    %ebx
    movl    %ebp, %esp
    popl    %ebp
    ret

_eh4_filter:                     /* filter expression: EXCEPTION_EXECUTE_HANDLER */
    movl    $1, %eax
    ret

_eh4_handler:                    /* _except_handler4: forwards to the CRT's common handler */
    pushl   %ebp
    movl    %esp, %ebp
    pushl   20(%ebp)
    pushl   16(%ebp)
    pushl   12(%ebp)
    pushl   8(%ebp)
    pushl   $_check_cookie
    pushl   $___security_cookie
    call    *__imp___except_handler4_common
    addl    $24, %esp
    popl    %ebp
    ret

_check_cookie:
    ret

    .data
    .globl ___security_cookie
___security_cookie:
    .long   0xBB40E64E
    .p2align 2
_scope_table:
    .long   -2, 0, -40, 0        /* GS cookie offset (none), EH cookie offset */
    .long   -2                   /* EnclosingLevel */
    .long   _eh4_filter
    .long   _eh4_except
