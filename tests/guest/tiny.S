/*
 * tiny.S - a bare multiboot guest of a few hundred bytes, for the KVM paths.
 *
 * Nested paravirtual KVM (see ../shared/reference/test-environment.md) cannot
 * run stock Linux guests, but it runs code like this: QEMU's multiboot loader
 * enters it in 32-bit protected mode without paging; it writes a marker line
 * to COM1 and halts with interrupts off. It executes no iret, takes no
 * interrupt and touches no descriptor table, so a system_reset simply runs it
 * again (the marker appears once per boot).
 */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00010000 /* bit 16: the load addresses below are valid */
    .set COM1, 0x3f8

    .section .text
    .code32
    .globl _start
    .align 4
mb_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long mb_header /* header_addr */
    .long __load_start
    .long __load_end
    .long __bss_end
    .long _start

_start:
    cli
    mov $msg, %esi
1:  movb (%esi), %al
    test %al, %al
    jz 3f
    mov $COM1 + 5, %dx /* line status: wait for an empty transmitter */
2:  inb %dx, %al
    test $0x20, %al
    jz 2b
    movb (%esi), %al
    mov $COM1, %dx
    outb %al, %dx
    inc %esi
    jmp 1b
3:  hlt
    jmp 3b

    .section .rodata
msg:
    .asciz "chcp-tiny: up\n"
