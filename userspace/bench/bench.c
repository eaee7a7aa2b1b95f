/* Micro-benchmarks of the system-call layer, run under Tessera and under
 * Debian's Linux in the same QEMU by `make bench` (and on the host for
 * reference). Prints one line per benchmark:
 *   "bench NAME: N ns/op (ITERATIONS iterations)"
 * `bench [SCALE]`: every benchmark, SCALE times the default iterations.
 * `bench exit`: exits at once (what the exec benchmark runs).
 * `bench time NAME COMMAND [ARG...]`: runs COMMAND once and prints its
 * wall time as benchmark NAME (bench-run.sh's shell workloads). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(const char *name, long long start, long iterations) {
    long long elapsed = now_ns() - start;
    printf("bench %s: %lld ns/op (%ld iterations)\n", name, elapsed / iterations, iterations);
}

static int failed(const char *name, const char *what) {
    printf("bench %s: FAILED (%s)\n", name, what);
    return 1;
}

/* The micro-benchmarks below run in ROUNDS rounds and report the best
 * round's time per operation: another program on the host (the emulator
 * shares it) only ever adds time, so the best round is the operation's
 * own cost, and the same rule applies to both kernels. */
#define ROUNDS 10

/* Runs `op` (which does `count` operations; nonzero on failure) in ROUNDS
 * rounds of n / ROUNDS and prints the best round; nonzero on failure. */
static int best_of(const char *name, int (*op)(long count), long n) {
    long count = n / ROUNDS > 0 ? n / ROUNDS : 1;
    long long best = -1;
    for (int round = 0; round < ROUNDS; round++) {
        long long start = now_ns();
        errno = 0;
        if (op(count) != 0)
            return failed(name, errno ? strerror(errno) : "an operation gave a short or wrong answer");
        long long elapsed = now_ns() - start;
        if (best < 0 || elapsed < best)
            best = elapsed;
    }
    printf("bench %s: %lld ns/op (%ld iterations, best of %d rounds)\n", name, best / count, count * ROUNDS, ROUNDS);
    return 0;
}

/* Pure user-mode work in registers: what the emulator costs, to
 * normalise by (no memory access, so where the host placed the guest's
 * pages cannot change it). */
static int op_spin(long count) {
    uint64_t x = 1;
    for (long i = 0; i < count; i++)
        for (int k = 0; k < 1000000; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            __asm__ volatile("" : "+r"(x));
        }
    return 0;
}

static int op_getppid(long count) {
    for (long i = 0; i < count; i++)
        syscall(SYS_getppid);
    return 0;
}

static struct timespec bench_ts;

static int op_clock_libc(long count) {
    for (long i = 0; i < count; i++)
        clock_gettime(CLOCK_MONOTONIC, &bench_ts);
    return 0;
}

static int op_clock_raw(long count) {
    for (long i = 0; i < count; i++)
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &bench_ts);
    return 0;
}

static int zero_fd = -1;

static int op_read_zero(long count) {
    char byte;
    for (long i = 0; i < count; i++)
        if (read(zero_fd, &byte, 1) != 1)
            return -1;
    return 0;
}

static const char *small_file = "/tmp/bench.4k";
static char block[1 << 16];

static int op_open_read_close(long count) {
    for (long i = 0; i < count; i++) {
        int fd = open(small_file, O_RDONLY);
        if (fd < 0)
            return -1;
        ssize_t got = read(fd, block, 4096);
        close(fd);
        if (got != 4096)
            return -1;
    }
    return 0;
}

static int op_stat(long count) {
    struct stat st;
    for (long i = 0; i < count; i++)
        if (stat(small_file, &st) != 0)
            return -1;
    return 0;
}

/* fork, exec `path` with `args`, wait; 0 when it exited with status 0. */
static int run(const char *path, char *const args[]) {
    pid_t child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        execv(path, args);
        _exit(127);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return 0;
}

static int exec_bench(const char *name, const char *path, char *const args[], long n) {
    if (access(path, X_OK) != 0)
        return 0; /* not on this system: no line */
    long long start = now_ns();
    for (long i = 0; i < n; i++)
        if (run(path, args) != 0)
            return failed(name, path);
    report(name, start, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exit") == 0)
        _exit(0);
    if (argc > 3 && strcmp(argv[1], "time") == 0) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        long long start = now_ns();
        pid_t child = fork();
        if (child == 0) {
            execvp(argv[3], argv + 3);
            _exit(127);
        }
        int status;
        if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return failed(argv[2], argv[3]);
        report(argv[2], start, 1);
        return 0;
    }
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1)
        scale = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int bad = 0;

    long n;
    long long start;
    bad |= best_of("user_spin_1m", op_spin, 20 * scale);
    bad |= best_of("null_syscall", op_getppid, 20000 * scale);
    bad |= best_of("clock_gettime_libc", op_clock_libc, 20000 * scale);
    bad |= best_of("clock_gettime_raw", op_clock_raw, 20000 * scale);
    zero_fd = open("/dev/zero", O_RDONLY);
    if (zero_fd < 0) {
        bad |= failed("read_zero_1b", "open /dev/zero");
    } else {
        bad |= best_of("read_zero_1b", op_read_zero, 20000 * scale);
        close(zero_fd);
    }

    /* Pipe ping-pong: a byte there and back between two processes. */
    int there[2], back[2];
    if (pipe(there) != 0 || pipe(back) != 0) {
        bad |= failed("pipe_round_trip", "pipe");
    } else {
        n = 2000 * scale;
        pid_t child = fork();
        if (child == 0) {
            char c;
            for (long i = 0; i < n; i++)
                if (read(there[0], &c, 1) != 1 || write(back[1], &c, 1) != 1)
                    _exit(1);
            _exit(0);
        }
        char c = 'x';
        start = now_ns();
        for (long i = 0; i < n; i++)
            if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1) {
                bad |= failed("pipe_round_trip", "read/write");
                break;
            }
        report("pipe_round_trip", start, n);
        waitpid(child, NULL, 0);
        close(there[0]), close(there[1]), close(back[0]), close(back[1]);
    }

    /* A switch between two processes on one processor, both yielding. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    cpu_set_t all;
    if (sched_getaffinity(0, sizeof all, &all) == 0 && sched_setaffinity(0, sizeof one, &one) == 0) {
        n = 5000 * scale;
        pid_t child = fork();
        if (child == 0) {
            for (long i = 0; i < n; i++)
                sched_yield();
            _exit(0);
        }
        start = now_ns();
        for (long i = 0; i < n; i++)
            sched_yield();
        long long elapsed = now_ns() - start;
        waitpid(child, NULL, 0);
        /* Two switches per round (there and back). */
        printf("bench sched_yield_switch: %lld ns/op (%ld iterations)\n", elapsed / (2 * n), n);
        sched_setaffinity(0, sizeof all, &all);
    }

    n = 100 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child == 0)
            _exit(0);
        waitpid(child, NULL, 0);
    }
    report("fork_exit_wait", start, n);

    n = 50 * scale;
    char *self[] = {argv[0], "exit", NULL};
    bad |= exec_bench("fork_exec_wait", argv[0], self, n);
    char *busybox[] = {"true", NULL};
    bad |= exec_bench("fork_exec_busybox", "/bin/true", busybox, n);
    /* A small static (musl) program, where there is one. */
    char *hello[] = {"hello", NULL};
    bad |= exec_bench("fork_exec_small", "/opt/tessera/bin/musl/hello", hello, n);
    /* The same with a dynamically linked program (Debian's true: the
     * loader maps libc and relocates): Tessera's test archive carries it
     * in /opt/tessera/debian, the host has /usr/bin/true. */
    const char *dynamic = access("/opt/tessera/debian/true", X_OK) == 0 ? "/opt/tessera/debian/true" : "/usr/bin/true";
    char *dargs[] = {(char *)dynamic, NULL};
    bad |= exec_bench("fork_exec_dynamic_wait", dynamic, dargs, n);

    /* A 4 KiB file in /tmp: open + read + close, and stat. */
    int fd = open(small_file, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0 || write(fd, block, 4096) != 4096) {
        bad |= failed("open_read_close", "create /tmp/bench.4k");
    } else {
        close(fd);
        bad |= best_of("open_read_close", op_open_read_close, 5000 * scale);
        bad |= best_of("stat", op_stat, 5000 * scale);
        unlink(small_file);
    }

    n = 2000 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return failed("mmap_fault_munmap", "mmap");
        p[0] = 1; /* the page fault */
        munmap(p, 4096);
    }
    report("mmap_fault_munmap", start, n);

    /* 64 MiB mapped, every page touched, unmapped (ns per 64 MiB). */
    const size_t big = 64 << 20;
    n = 2 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        char *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return failed("mmap_touch_64m", "mmap");
        for (size_t off = 0; off < big; off += 4096)
            p[off] = 1;
        munmap(p, big);
    }
    report("mmap_touch_64m", start, n);

    /* A 64 MiB file in /tmp written and read back in 64 KiB pieces. */
    const char *bigfile = "/tmp/bench.64m";
    fd = open(bigfile, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0) {
        bad |= failed("file_write_64m", "create /tmp/bench.64m");
    } else {
        memset(block, 'b', sizeof block);
        start = now_ns();
        for (size_t off = 0; off < big; off += sizeof block)
            if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
                bad |= failed("file_write_64m", "write");
                break;
            }
        report("file_write_64m", start, 1);
        lseek(fd, 0, SEEK_SET);
        start = now_ns();
        for (size_t off = 0; off < big; off += sizeof block)
            if (read(fd, block, sizeof block) != (ssize_t)sizeof block) {
                bad |= failed("file_read_64m", "read");
                break;
            }
        report("file_read_64m", start, 1);
        close(fd);
        unlink(bigfile);
    }
    printf("bench: done\n");
    return bad;
}
