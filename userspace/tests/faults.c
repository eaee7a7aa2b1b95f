/* A misbehaving program dies of the right signal and the kernel keeps
 * running: kernel memory, kernel code, privileged instructions, division by
 * zero, undefined instructions, breakpoints. Also: fork without end meets a
 * limit. */
#include "tessera_test.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile uintptr_t kernel_addr = 0xffffffff80100000ull;

static void read_kernel(void) { (void)*(volatile uint64_t *)kernel_addr; }
static void write_kernel(void) { *(volatile uint64_t *)kernel_addr = 0; }
static void jump_kernel(void) { ((void (*)(void))kernel_addr)(); }
static void do_hlt(void) { __asm__ volatile("hlt"); }
static void do_cli(void) { __asm__ volatile("cli"); }
static void do_div0(void) {
    volatile int zero = 0;
    volatile int r = 7 / zero; /* (1 / x needs no division: gcc avoids it) */
    (void)r;
}
static void do_ud2(void) { __asm__ volatile("ud2"); }
static void do_int3(void) { __asm__ volatile("int3"); }
static void do_null_call(void) {
    volatile uintptr_t zero = 0;
    ((void (*)(void))zero)();
}
static void do_wrmsr(void) { __asm__ volatile("wrmsr" ::"c"(0xc0000080), "a"(0), "d"(0)); }
static void do_lgdt(void) {
    static char gdt[10];
    __asm__ volatile("lgdt %0" ::"m"(gdt));
}
static void do_out(void) { __asm__ volatile("outb %%al, $0xf4" ::"a"(0x10)); }

static int signal_of(void (*fn)(void)) {
    pid_t child = fork();
    if (child == 0) {
        fn();
        _exit(0);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

int main(void) {
    CHECK(signal_of(read_kernel) == SIGSEGV);
    CHECK(signal_of(write_kernel) == SIGSEGV);
    CHECK(signal_of(jump_kernel) == SIGSEGV);
    CHECK(signal_of(do_hlt) == SIGSEGV);
    CHECK(signal_of(do_cli) == SIGSEGV);
    CHECK(signal_of(do_wrmsr) == SIGSEGV);
    CHECK(signal_of(do_lgdt) == SIGSEGV);
    CHECK(signal_of(do_out) == SIGSEGV); /* QEMU's exit port: no way out */
    CHECK(signal_of(do_div0) == SIGFPE);
    CHECK(signal_of(do_ud2) == SIGILL);
    CHECK(signal_of(do_int3) == SIGTRAP);
    CHECK(signal_of(do_null_call) == SIGSEGV);

    /* Fork without end: a limit stops it (EAGAIN, or ENOMEM when memory runs
     * out first); the children are cleaned up and forking works again. */
    int made = 0, err = 0;
    pid_t kids[4096];
    for (; made < 4096; made++) {
        pid_t c = fork();
        if (c == 0) {
            pause();
            _exit(0);
        }
        if (c < 0) {
            err = errno;
            break;
        }
        kids[made] = c;
    }
    CHECK(made > 10);
    CHECK(made == 4096 || err == EAGAIN || err == ENOMEM);
    for (int i = 0; i < made; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < made; i++)
        waitpid(kids[i], NULL, 0);
    pid_t again = fork();
    if (again == 0)
        _exit(5);
    int status;
    CHECK(again > 0 && waitpid(again, &status, 0) == again && WEXITSTATUS(status) == 5);
    return tt_done("faults");
}
