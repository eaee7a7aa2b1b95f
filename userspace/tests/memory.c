/* Memory: mmap/munmap/mprotect, MAP_FIXED, PROT_NONE, brk, large
 * reservations touched sparsely, and faults on unmapped or protected pages
 * (checked in children, which must die of SIGSEGV). */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Runs `fn(arg)` in a child; returns the signal that killed it (0 if none). */
static int dies_of(void (*fn)(char *), char *arg) {
    pid_t child = fork();
    if (child == 0) {
        fn(arg);
        _exit(0);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void write_to(char *p) { *(volatile char *)p = 1; }
static void read_from(char *p) { (void)*(volatile char *)p; }

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif

/* MADV_WIPEONFORK: a child sees zeros there (private anonymous memory
 * only); MADV_KEEPONFORK undoes it. */
static void fork_advice(void) {
    const size_t page = 4096;
    char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 7, 3 * page);
    CHECK(madvise(m + page, page, MADV_WIPEONFORK) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(m[0] == 7 && m[page] == 0 && m[2 * page - 1] == 0 && m[2 * page] == 7 ? 0 : 1);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(m[page] == 7); /* the parent keeps its data */
    CHECK(madvise(m + page, page, MADV_KEEPONFORK) == 0);
    child = fork();
    if (child == 0) _exit(m[page] == 7 ? 0 : 1);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *shared = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK_ERR(madvise(shared, page, MADV_WIPEONFORK), EINVAL);
    CHECK_ERR(madvise(m, page, MADV_REMOVE), EINVAL); /* not shared */
    munmap(shared, page);
    munmap(m, 3 * page);
    /* Raw and coarse clocks cannot be slept on. */
    struct timespec t = {0, 1000};
    CHECK(clock_nanosleep(CLOCK_MONOTONIC_COARSE, 0, &t, NULL) == EOPNOTSUPP);
    /* /proc/self/status: the memory lines programs read. */
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    int swap = 0, rss = 0;
    while (f && fgets(line, sizeof line, f)) {
        long kb;
        if (sscanf(line, "VmSwap: %ld", &kb) == 1) swap = kb == 0;
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) rss = kb > 0;
    }
    if (f) fclose(f);
    CHECK(swap && rss);
}

/* 1 when a fork child sees byte `want` at the start of each of `n` pages. */
static int child_sees(const char *p, int n, char want) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < n; i++)
            if (p[i * 4096] != want) _exit(1);
        _exit(0);
    }
    int status;
    return waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* MADV_WIPEONFORK follows the pages through mremap, moved or grown in
 * place (a Linux mapping keeps its flags; red team, nineteenth review),
 * and a new mapping where wiped pages were is not wiped. */
static void fork_advice_follows_mremap(void) {
    const size_t page = 4096;
    char *hole = mmap(NULL, 64 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(hole != MAP_FAILED);
    CHECK(munmap(hole, 64 * page) == 0);
    char *a = mmap(hole, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(a == hole);
    memset(a, 'x', 4 * page);
    CHECK(madvise(a, 4 * page, MADV_WIPEONFORK) == 0);
    CHECK(mremap(a, 4 * page, 8 * page, 0) == a); /* grown in place */
    memset(a + 4 * page, 'y', 4 * page);
    CHECK(child_sees(a, 8, 0));
    char *c = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(c != MAP_FAILED);
    memset(c, 'm', 4 * page);
    CHECK(madvise(c, 4 * page, MADV_WIPEONFORK) == 0);
    char *d = mremap(c, 4 * page, 4 * page, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 32 * page);
    CHECK(d == hole + 32 * page);
    CHECK(child_sees(d, 4, 0));
    CHECK(d[0] == 'm'); /* the parent keeps its data */
    char *e = mmap(c, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(e == c);
    memset(e, 'n', 4 * page);
    CHECK(child_sees(e, 4, 'n'));
    munmap(a, 8 * page);
    munmap(d, 4 * page);
    munmap(e, 4 * page);
}

/* Errors of ranges that are empty, wrap or leave user space, as Linux
 * gives them (red team, nineteenth review). */
static void range_errors(void) {
    const size_t page = 4096;
    char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(syscall(SYS_mprotect, m, 0, PROT_READ) == 0);                  /* empty: nothing to do */
    CHECK_ERR(syscall(SYS_mprotect, m + 1, 0, PROT_READ), EINVAL);       /* unaligned comes first */
    CHECK_ERR(syscall(SYS_mprotect, (void *)0xffff800000000000UL, page, PROT_READ), ENOMEM);
    CHECK_ERR(syscall(SYS_mprotect, NULL, ~0UL, PROT_READ), ENOMEM);     /* wraps */
    CHECK_ERR(syscall(SYS_mprotect, (void *)0x7ffffffff000UL, page, PROT_READ), ENOMEM);
    CHECK_ERR(syscall(SYS_mprotect, m, page, 0x100), EINVAL);
    CHECK(syscall(SYS_mprotect, m, page, PROT_READ) == 0);
    void *last = (void *)0x7ffffffff000UL;                  /* above the top of user space */
    CHECK(mmap(last, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED && errno == ENOMEM);
    CHECK(mmap(last, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED && errno == ENOMEM);
    CHECK(mmap(m + 1, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK_ERR(munmap(m, 0), EINVAL);
    CHECK_ERR(munmap((void *)0xffff800000000000UL, page), EINVAL);
    munmap(m, 2 * page);
}

/* VmLck of /proc/self/status, in kB (-1 if missing). */
static long locked_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

/* mlock marks memory locked (VmLck); munlock, munlockall undo it; a
 * child inherits no locks. */
/* The sum of the "Locked:" lines of /proc/self/smaps (kB). */
static long smaps_locked_kb(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[256];
    long total = 0, kb;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Locked: %ld kB", &kb) == 1) total += kb;
    fclose(f);
    return total;
}

static void locking(void) {
    const size_t page = 4096;
    char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    long before = locked_kb();
    CHECK(before >= 0);
    CHECK(mlock(m, 3 * page) == 0 && locked_kb() == before + 12);
    CHECK(smaps_locked_kb() >= 12); /* LTP mlock05 */
    CHECK(munlock(m + page, page) == 0 && locked_kb() == before + 8);
    /* Locked memory cannot be dropped or invalidated (LTP madvise02,
     * msync03); the unlocked page can. */
    CHECK_ERR(madvise(m, page, MADV_DONTNEED), EINVAL);
    CHECK_ERR(msync(m, page, MS_INVALIDATE), EBUSY);
    CHECK(madvise(m + page, page, MADV_DONTNEED) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(locked_kb() == 0 ? 0 : 1);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(munlock(m, 3 * page) == 0 && locked_kb() == before);
    /* MAP_LOCKED: locked from the start (LTP mmap14). */
    long base_lock = locked_kb();
    char *l = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    CHECK(l != MAP_FAILED && locked_kb() == base_lock + 16);
    munmap(l, 4 * page);
    CHECK(locked_kb() == base_lock);
    CHECK(mlockall(MCL_CURRENT) == 0 && locked_kb() > 12);
    CHECK(munlockall() == 0 && locked_kb() == 0);
    munmap(m, 3 * page);
}

/* MAP_GROWSDOWN: a touch just below grows the mapping, unless a mapping
 * below would come within Linux's 256-page guard gap (SIGSEGV). */
static void grows_down(void) {
    const size_t page = 4096;
    for (int crowded = 0; crowded <= 1; crowded++) {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            size_t reserved = 300 * page;
            char *base = mmap(NULL, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            munmap(base, reserved);
            char *stack = mmap(base + reserved - 2 * page, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
            if (stack == MAP_FAILED) _exit(2);
            if (crowded) mmap(stack - 30 * page, page, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            char *below = stack - 10 * page;
            *below = 1; /* grows, or SIGSEGV when crowded */
            _exit(*below == 1 ? 0 : 3);
        }
        int status;
        CHECK(waitpid(child, &status, 0) == child);
        if (crowded)
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
        else
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

int main(void) {
    fork_advice();
    fork_advice_follows_mremap();
    range_errors();
    grows_down();
    locking();
    const size_t page = 4096;
    char *a = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    CHECK(((uintptr_t)a & (page - 1)) == 0);
    CHECK(a[0] == 0 && a[4 * page - 1] == 0); /* zero filled */
    memset(a, 0x5a, 4 * page);
    CHECK(a[3 * page + 7] == 0x5a);

    /* munmap the second page: it faults, its neighbours stay. */
    CHECK(munmap(a + page, page) == 0);
    CHECK(dies_of(read_from, a + page) == SIGSEGV);
    CHECK(a[0] == 0x5a && a[2 * page] == 0x5a);

    /* mprotect read-only: writes fault, reads work; back to RW keeps data. */
    CHECK(mprotect(a + 2 * page, page, PROT_READ) == 0);
    CHECK(dies_of(write_to, a + 2 * page) == SIGSEGV);
    CHECK(a[2 * page + 1] == 0x5a);
    CHECK(mprotect(a + 2 * page, page, PROT_READ | PROT_WRITE) == 0);
    a[2 * page + 1] = 7;
    CHECK(a[2 * page + 1] == 7);

    /* PROT_NONE hides the page; restoring access brings the contents back. */
    CHECK(mprotect(a + 3 * page, page, PROT_NONE) == 0);
    CHECK(dies_of(read_from, a + 3 * page) == SIGSEGV);
    CHECK(mprotect(a + 3 * page, page, PROT_READ) == 0);
    CHECK(a[3 * page] == 0x5a);

    /* MAP_FIXED replaces what was there. */
    char *fixed = mmap(a, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(fixed == a);
    CHECK(fixed[0] == 0);
    munmap(a, 4 * page);

    /* A large reservation costs nothing until touched. */
    size_t big = 256u << 20;
    char *r = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(r != MAP_FAILED);
    if (r != MAP_FAILED) {
        for (size_t off = 0; off < big; off += 32u << 20)
            r[off] = 1;
        CHECK(r[big - (32u << 20)] == 1 && r[1] == 0);
        CHECK(munmap(r, big) == 0);
    }

    /* brk grows and shrinks (the raw call: musl's sbrk only reports). */
    char *start = (char *)syscall(SYS_brk, 0);
    CHECK(start != NULL);
    CHECK((char *)syscall(SYS_brk, start + 3 * page) == start + 3 * page);
    memset(start, 3, 3 * page);
    CHECK(start[3 * page - 1] == 3);
    CHECK((char *)syscall(SYS_brk, start + page) == start + page);
    CHECK((char *)syscall(SYS_brk, 0) == start + page);
    CHECK(dies_of(read_from, start + 2 * page) == SIGSEGV);
    /* An impossible break leaves it unchanged. */
    CHECK((char *)syscall(SYS_brk, (char *)16) == start + page);

    /* mremap: grow (moving if needed) keeps the contents; shrink. */
    char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    m[0] = 'x';
    m[2 * page - 1] = 'y';
    char *grown = mremap(m, 2 * page, 64 * page, MREMAP_MAYMOVE);
    CHECK(grown != MAP_FAILED && grown[0] == 'x' && grown[2 * page - 1] == 'y');
    grown[64 * page - 1] = 'z';
    char *shrunk = mremap(grown, 64 * page, page, 0);
    CHECK(shrunk == grown && shrunk[0] == 'x');
    CHECK(munmap(shrunk, page) == 0);

    /* Invalid requests. */
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK(mmap(NULL, page, PROT_READ, MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK_ERR(syscall(SYS_munmap, 0x1001, page), EINVAL); /* raw: musl rounds the address */
    CHECK_ERR(syscall(SYS_mprotect, 0x1001, page, PROT_READ), EINVAL);
    CHECK(mmap((void *)(uintptr_t)0xffff800000000000ull, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
          MAP_FAILED);

    /* Copy-on-write survives mprotect: a child that makes a shared page
     * read-only and then writable again writes its own copy. */
    char *cow = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(cow != MAP_FAILED);
    cow[0] = 'p';
    fflush(stdout);
    pid_t cow_child = fork();
    if (cow_child == 0) {
        mprotect(cow, page, PROT_READ);
        mprotect(cow, page, PROT_READ | PROT_WRITE);
        cow[0] = 'c';
        _exit(cow[0] == 'c' ? 0 : 1);
    }
    int cow_status = -1;
    CHECK(waitpid(cow_child, &cow_status, 0) == cow_child && WIFEXITED(cow_status) && WEXITSTATUS(cow_status) == 0);
    CHECK(cow[0] == 'p');
    munmap(cow, page);

    /* The stack grows on demand. */
    volatile char deep[512 * 1024];
    deep[0] = 1;
    deep[sizeof deep - 1] = 2;
    CHECK(deep[0] + deep[sizeof deep - 1] == 3);
    return tt_done("memory");
}
