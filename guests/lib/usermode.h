/* Running code in ring 3 and the int 0x80 system calls it uses to talk back. */
#ifndef USERMODE_H
#define USERMODE_H

#include "idt.h"

#define SYSCALL_VECTOR 0x80
#define SYS_EXIT 0   /* leave ring 3: user_enter() returns in the kernel */
#define SYS_WRITE 1  /* EBX = NUL-terminated string to print */

/* Code and data that ring 3 touches go in these sections (own pages, see linker.ld). */
#define USER_TEXT __attribute__((section(".user.text")))
#define USER_DATA __attribute__((section(".user.data")))

/* Install the DPL-3 trap gate for int 0x80 with the default system calls. */
void usermode_init(void);

/* Optional hook run on every system call before the default handling (e.g. to
 * check the frame); may be NULL. */
extern void (*syscall_hook)(struct frame *f);

/* Jump to ring 3 at eip with the given stack (IOPL 0, IF as given); returns
 * when ring 3 makes SYS_EXIT.  Implemented in user.S. */
void user_enter(const void *eip, void *esp, uint32_t eflags);

/* Abandon the current interrupt frame and return from user_enter(). */
void user_return(void) __attribute__((noreturn));

extern char __user_start[], __user_end[];

#endif
