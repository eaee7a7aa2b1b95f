/* Multiprocessor figures for `make bench` (run under Tessera with 1, 2
 * and 4 processors, and on the host for reference). Prints lines
 * starting with "smpbench ".
 *
 *   smpbench spin N      N processes each do the same fixed CPU-bound
 *                        work at once: wall time (ms)
 *   smpbench pipes N     N shell pipelines (dd | gzip | md5sum) at
 *                        once: wall time (ms)
 *   smpbench wake        pipe ping-pong between two processes on one
 *                        processor and on two (a wake on another
 *                        processor costs an IPI): round trip (ns)
 *   smpbench shootdown   mmap + touch + munmap of one page with the
 *                        process on one processor, then with a second
 *                        thread of it running on another (each munmap
 *                        then shoots that processor's TLB down): ns/op
 *
 * A figure that cannot be measured (one processor only) says so. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The processors this process may use, in order. */
static int cpus[CPU_SETSIZE], ncpus;

static void find_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpus[ncpus++] = i;
}

static int pin(int n) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[n % ncpus], &set);
    return sched_setaffinity(0, sizeof set, &set);
}

/* Fixed CPU-bound work: an LCG the compiler cannot fold away. */
static volatile uint64_t sink;
static void work(long rounds) {
    uint64_t x = 12345;
    for (long i = 0; i < rounds; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    sink = x;
}

#define SPIN_ROUNDS 60000000L

/* Runs job() in n child processes at once and prints the wall time as
 * "smpbench NAME N: MS ms ..."; returns non-zero if any child failed. */
static int at_once(const char *name, int n, void (*job)(void)) {
    long long start = now_ns();
    for (int i = 0; i < n; i++) {
        pid_t child = fork();
        if (child == 0) {
            job();
            _exit(0);
        }
        if (child < 0) {
            perror("smpbench: fork");
            return 1;
        }
    }
    int failed = 0, status;
    for (int i = 0; i < n; i++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    printf("smpbench %s %d: %lld ms on %d processor(s)%s\n", name, n, (now_ns() - start) / 1000000, ncpus, failed ? " (a child failed)" : "");
    return failed != 0;
}

static void spin_job(void) {
    work(SPIN_ROUNDS);
}

static int spin(int n) {
    /* One untimed round first: the emulator translates the loop once. */
    pid_t warm = fork();
    if (warm == 0) {
        work(SPIN_ROUNDS / 4);
        _exit(0);
    }
    if (warm > 0)
        waitpid(warm, NULL, 0);
    return at_once("spin", n, spin_job);
}

/* Round trips of one byte between this process and a child on processor
 * `there` (this one stays on processor 0). */
static long long ping_pong(int there, int rounds) {
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        return -1;
    pin(0);
    pid_t child = fork();
    if (child == 0) {
        pin(there);
        close(down[1]); /* or its read never sees the end */
        close(up[0]);
        char c;
        while (read(down[0], &c, 1) == 1)
            if (write(up[1], &c, 1) != 1)
                break;
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    char c = 'x';
    /* A few round trips first, so that the child has moved. */
    for (int i = 0; i < 20; i++)
        if (write(down[1], &c, 1) != 1 || read(up[0], &c, 1) != 1)
            return -1;
    long long start = now_ns();
    for (int i = 0; i < rounds; i++)
        if (write(down[1], &c, 1) != 1 || read(up[0], &c, 1) != 1)
            return -1;
    long long per = (now_ns() - start) / rounds;
    close(down[1]);
    close(up[0]);
    waitpid(child, NULL, 0);
    return per;
}

static int wake(void) {
    long long same = ping_pong(0, 2000);
    printf("smpbench wake same processor: %lld ns per round trip\n", same);
    if (ncpus < 2) {
        printf("smpbench wake other processor: not measured (one processor)\n");
        return same < 0;
    }
    long long other = ping_pong(1, 2000);
    printf("smpbench wake other processor: %lld ns per round trip\n", other);
    return same < 0 || other < 0;
}

/* N shell pipelines at once, each compressing 8 MiB of zeros with gzip
 * and summing the result with md5sum (a build-like mix of processes,
 * pipes and CPU work): wall time. */
static void pipeline_job(void) {
    execl("/bin/sh", "sh", "-c", "dd if=/dev/zero bs=64k count=128 2>/dev/null | gzip -c | md5sum >/dev/null", (char *)NULL);
    _exit(127);
}

static volatile int stop;
static void *spinner(void *arg) {
    pin((int)(intptr_t)arg);
    while (!stop)
        work(1000);
    return NULL;
}

static long long map_touch_unmap(int rounds) {
    long long start = now_ns();
    for (int i = 0; i < rounds; i++) {
        volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        p[0] = 1;
        munmap((void *)p, 4096);
    }
    return (now_ns() - start) / rounds;
}

static int shootdown(void) {
    pin(0);
    long long alone = map_touch_unmap(5000);
    printf("smpbench shootdown none: %lld ns per mmap+touch+munmap (one processor in use)\n", alone);
    if (ncpus < 2) {
        printf("smpbench shootdown one: not measured (one processor)\n");
        return alone < 0;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, spinner, (void *)(intptr_t)1) != 0)
        return 1;
    usleep(50000); /* let it reach its processor */
    long long shared = map_touch_unmap(5000);
    stop = 1;
    pthread_join(t, NULL);
    printf("smpbench shootdown one: %lld ns per mmap+touch+munmap (a thread of the process runs on another processor)\n", shared);
    return alone < 0 || shared < 0;
}

/* Memory churn: 64 KiB mapped, every page touched (16 frames taken and
 * zeroed), unmapped (given back), 3000 times: the frame allocator and
 * page tables under N processes at once. */
static void memory_job(void) {
    for (int i = 0; i < 3000; i++) {
        volatile char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            _exit(1);
        for (int page = 0; page < 16; page++)
            p[page * 4096] = 1;
        munmap((void *)p, 65536);
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    find_cpus();
    if (ncpus == 0) {
        printf("smpbench: sched_getaffinity failed\n");
        return 1;
    }
    if (argc > 2 && strcmp(argv[1], "spin") == 0)
        return spin(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1);
    if (argc > 2 && strcmp(argv[1], "pipes") == 0)
        return at_once("pipes", atoi(argv[2]) > 0 ? atoi(argv[2]) : 1, pipeline_job);
    if (argc > 2 && strcmp(argv[1], "memory") == 0)
        return at_once("memory", atoi(argv[2]) > 0 ? atoi(argv[2]) : 1, memory_job);
    if (argc > 1 && strcmp(argv[1], "wake") == 0)
        return wake();
    if (argc > 1 && strcmp(argv[1], "shootdown") == 0)
        return shootdown();
    fprintf(stderr, "usage: smpbench spin N | pipes N | memory N | wake | shootdown\n");
    return 2;
}
