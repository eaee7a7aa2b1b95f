/* A program's x87/SSE registers are its own: across system calls, task
 * switches between processes sharing one processor, and signal handlers
 * that change them, every register keeps the program's value (the kernel
 * keeps the state lazily in the registers between system calls). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void set_xmm(uint64_t seed) {
    uint64_t v[16];
    for (int i = 0; i < 16; i++) v[i] = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i;
    __asm__ volatile(
        "movq 0(%0), %%xmm0\n movq 8(%0), %%xmm1\n movq 16(%0), %%xmm2\n movq 24(%0), %%xmm3\n"
        "movq 32(%0), %%xmm4\n movq 40(%0), %%xmm5\n movq 48(%0), %%xmm6\n movq 56(%0), %%xmm7\n"
        "movq 64(%0), %%xmm8\n movq 72(%0), %%xmm9\n movq 80(%0), %%xmm10\n movq 88(%0), %%xmm11\n"
        "movq 96(%0), %%xmm12\n movq 104(%0), %%xmm13\n movq 112(%0), %%xmm14\n movq 120(%0), %%xmm15\n"
        :: "r"(v) : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
        "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

/* Number of registers that no longer hold the value set_xmm(seed) put there.
 * Only raw system calls (no C library code that may use SSE) run between. */
static int xmm_mismatches(uint64_t seed) {
    uint64_t v[16];
    __asm__ volatile(
        "movq %%xmm0, 0(%0)\n movq %%xmm1, 8(%0)\n movq %%xmm2, 16(%0)\n movq %%xmm3, 24(%0)\n"
        "movq %%xmm4, 32(%0)\n movq %%xmm5, 40(%0)\n movq %%xmm6, 48(%0)\n movq %%xmm7, 56(%0)\n"
        "movq %%xmm8, 64(%0)\n movq %%xmm9, 72(%0)\n movq %%xmm10, 80(%0)\n movq %%xmm11, 88(%0)\n"
        "movq %%xmm12, 96(%0)\n movq %%xmm13, 104(%0)\n movq %%xmm14, 112(%0)\n movq %%xmm15, 120(%0)\n"
        :: "r"(v) : "memory");
    int bad = 0;
    for (int i = 0; i < 16; i++) bad += v[i] != seed * 0x9e3779b97f4a7c15ull + (uint64_t)i;
    return bad;
}

static inline long raw0(long nr) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
    return r;
}

/* Sets the registers, makes system calls and yields `rounds` times, and
 * returns how many times a register had changed. */
static int churn(uint64_t seed, int rounds) {
    int bad = 0;
    for (int i = 0; i < rounds; i++) {
        set_xmm(seed + (uint64_t)i);
        raw0(SYS_getppid);
        raw0(SYS_sched_yield);
        raw0(SYS_getpid);
        bad += xmm_mismatches(seed + (uint64_t)i) != 0;
    }
    return bad;
}

static volatile sig_atomic_t handled;

static void clobber(int sig) {
    (void)sig;
    set_xmm(0xdead);
    handled++;
}

int main(void) {
    /* Everyone on one processor: the processes take turns in it. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] == 0) _exit(churn(1000u * (uint64_t)(k + 1), 3000) == 0 ? 0 : 1);
    }
    CHECK(churn(77, 3000) == 0);
    for (int k = 0; k < 3; k++) {
        int status = -1;
        CHECK(kids[k] > 0 && waitpid(kids[k], &status, 0) == kids[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* A handler that changes every register: they come back on return. */
    struct sigaction sa = {0};
    sa.sa_handler = clobber;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    int bad = 0;
    long me = getpid();
    for (int i = 0; i < 200; i++) {
        set_xmm(5000 + (uint64_t)i);
        __asm__ volatile("syscall" :: "a"((long)SYS_kill), "D"(me), "S"((long)SIGUSR1) : "rcx", "r11", "memory");
        bad += xmm_mismatches(5000 + (uint64_t)i) != 0;
    }
    CHECK(handled == 200);
    CHECK(bad == 0);
    return tt_done("fpu");
}
