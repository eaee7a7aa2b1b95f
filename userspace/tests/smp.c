/* Many processors: a thread on another processor faults at once after
 * munmap or mprotect of a page it keeps using (the kernel must shoot down
 * that processor's TLB entry), a thread writing while its process forks
 * does not reach the child's copy, and threads hammer futexes, pipes,
 * fork and shared mappings at once, with every byte checked; processors
 * left idle in a process's space while it exits do not keep its freed
 * page tables in use.
 *
 * With one processor the pinned parts run on it (and check less). */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int cpus[CPU_SETSIZE];
static int ncpus;

/* Runs the caller on the n-th processor it may use (wrapping). */
static int pin(int n) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[n % ncpus], &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits (sleeping 1 ms at a time) until *flag is non-zero; 20 s at most,
 * a guard against a hang, not a speed check. */
static int wait_flag(volatile long *flag) {
    double end = now() + 20;
    while (!*flag && now() < end)
        usleep(1000);
    return *flag != 0;
}

/* --- TLB shootdown ------------------------------------------------------ */

static volatile int *page;
static volatile int phase;       /* 1: the page is gone or read-only */
static volatile long uses, stale; /* accesses; accesses after phase 1 that did not fault */
static volatile long faulted;
static void *volatile fault_addr;
static volatile int fault_code;
static sigjmp_buf user_env;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    fault_addr = si->si_addr;
    fault_code = si->si_code;
    faulted = 1;
    siglongjmp(user_env, 1);
}

/* Reads (or writes) the page on another processor until it faults. */
static void *page_user(void *arg) {
    int write = (int)(intptr_t)arg;
    pin(1);
    if (sigsetjmp(user_env, 1) == 0) {
        for (;;) {
            int after = phase;
            if (write)
                *page = (int)uses;
            else
                (void)*page;
            if (after)
                stale++;
            uses++;
        }
    }
    return NULL;
}

static void shootdown(int write) {
    phase = 0;
    uses = stale = faulted = 0;
    fault_addr = NULL;
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    if (page == MAP_FAILED)
        return;
    *page = 1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, page_user, (void *)(intptr_t)write) == 0);
    /* The other processor has the page in its TLB now. */
    double end = now() + 20;
    while (uses < 100000 && now() < end)
        usleep(1000);
    CHECK(uses >= 100000);
    if (write)
        CHECK(mprotect((void *)page, 4096, PROT_READ) == 0);
    else
        CHECK(munmap((void *)page, 4096) == 0);
    phase = 1;
    CHECK(wait_flag(&faulted));
    CHECK(stale == 0);
    CHECK(fault_addr == (void *)page);
    CHECK(fault_code == (write ? SEGV_ACCERR : SEGV_MAPERR));
    if (faulted)
        pthread_join(t, NULL);
    if (write)
        munmap((void *)page, 4096);
}

/* --- fork while another thread writes ----------------------------------- */

static volatile long *counter;
static volatile int stop_counting;

static void *count(void *arg) {
    (void)arg;
    pin(1);
    while (!stop_counting)
        (*counter)++;
    return NULL;
}

/* The child's copy is the memory at the fork: the parent's thread, still
 * writing on another processor, must not reach it. */
static void fork_snapshot(void) {
    counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(counter != MAP_FAILED);
    if (counter == MAP_FAILED)
        return;
    stop_counting = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, count, NULL) == 0);
    while (*counter < 100000)
        usleep(1000);
    int ok = 0;
    for (int round = 0; round < 5; round++) {
        pid_t child = fork();
        if (child == 0) {
            long first = *counter;
            usleep(20000);
            _exit(*counter == first ? 0 : 1);
        }
        int status;
        ok += child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    CHECK(ok == 5);
    long before = *counter;
    usleep(20000);
    CHECK(*counter > before); /* the parent's thread went on counting */
    stop_counting = 1;
    pthread_join(t, NULL);
    munmap((void *)counter, 4096);
}

/* --- everything at once ------------------------------------------------- */

#define RING 3
#define BLOCK 4096
#define RING_ROUNDS 300
#define COUNTERS 4
#define INCREMENTS 20000
#define FORKERS 2
#define FORK_ROUNDS 15
#define SHARED (64 * 1024)

static int ring[RING][2];
static long ring_bad, ring_blocks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long total;
static volatile long fork_bad, fork_good;

static uint32_t sum(const unsigned char *p, size_t n) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

static int read_all(int fd, unsigned char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, p + put, n - put);
        if (w <= 0)
            return -1;
        put += (size_t)w;
    }
    return 0;
}

/* A block goes round the ring; each stage checks its checksum (the last
 * four bytes), adds its stage number to every byte and seals it again. */
static void *ring_stage(void *arg) {
    int stage = (int)(intptr_t)arg;
    pin(stage);
    unsigned char block[BLOCK];
    uint32_t seal;
    for (int round = 0; round < RING_ROUNDS; round++) {
        if (stage == 0 && round == 0) {
            for (int i = 0; i < BLOCK - 4; i++)
                block[i] = (unsigned char)(i * 7);
        } else if (read_all(ring[stage][0], block, BLOCK) != 0) {
            __atomic_add_fetch(&ring_bad, 1, __ATOMIC_SEQ_CST);
            return NULL;
        } else {
            memcpy(&seal, block + BLOCK - 4, 4);
            if (seal != sum(block, BLOCK - 4))
                __atomic_add_fetch(&ring_bad, 1, __ATOMIC_SEQ_CST);
            for (int i = 0; i < BLOCK - 4; i++)
                block[i] = (unsigned char)(block[i] + stage + 1);
        }
        seal = sum(block, BLOCK - 4);
        memcpy(block + BLOCK - 4, &seal, 4);
        __atomic_add_fetch(&ring_blocks, 1, __ATOMIC_SEQ_CST);
        if (write_all(ring[(stage + 1) % RING][1], block, BLOCK) != 0) {
            __atomic_add_fetch(&ring_bad, 1, __ATOMIC_SEQ_CST);
            return NULL;
        }
    }
    return NULL;
}

static void *counter_thread(void *arg) {
    pin((int)(intptr_t)arg);
    for (int i = 0; i < INCREMENTS; i++) {
        pthread_mutex_lock(&lock);
        total++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

/* Maps shared memory, fills it, lets a child check it and write the
 * complement, checks that, unmaps; over and over. */
static void *forker(void *arg) {
    int n = (int)(intptr_t)arg;
    pin(n);
    for (int round = 0; round < FORK_ROUNDS; round++) {
        unsigned char *m = mmap(NULL, SHARED, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            fork_bad++;
            continue;
        }
        unsigned char seed = (unsigned char)(n * 31 + round);
        for (int i = 0; i < SHARED; i++)
            m[i] = (unsigned char)(seed + i);
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < SHARED; i++) {
                if (m[i] != (unsigned char)(seed + i))
                    _exit(2);
                m[i] = (unsigned char)~m[i];
            }
            _exit(0);
        }
        int status = -1;
        int ok = child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        for (int i = 0; ok && i < SHARED; i++)
            ok = m[i] == (unsigned char)~(unsigned char)(seed + i);
        if (ok)
            __atomic_add_fetch(&fork_good, 1, __ATOMIC_SEQ_CST);
        else
            __atomic_add_fetch(&fork_bad, 1, __ATOMIC_SEQ_CST);
        munmap(m, SHARED);
    }
    return NULL;
}

static void everything_at_once(void) {
    pthread_t threads[RING + COUNTERS + FORKERS];
    int made = 0;
    for (int i = 0; i < RING; i++)
        CHECK(pipe(ring[i]) == 0);
    for (int i = 0; i < RING; i++)
        made += pthread_create(&threads[made], NULL, ring_stage, (void *)(intptr_t)i) == 0;
    for (int i = 0; i < COUNTERS; i++)
        made += pthread_create(&threads[made], NULL, counter_thread, (void *)(intptr_t)i) == 0;
    for (int i = 0; i < FORKERS; i++)
        made += pthread_create(&threads[made], NULL, forker, (void *)(intptr_t)i) == 0;
    CHECK(made == RING + COUNTERS + FORKERS);
    for (int i = 0; i < made; i++)
        pthread_join(threads[i], NULL);
    /* The block stage 0 sent last comes back to it: read and check it. */
    unsigned char block[BLOCK];
    uint32_t seal;
    CHECK(read_all(ring[0][0], block, BLOCK) == 0);
    memcpy(&seal, block + BLOCK - 4, 4);
    CHECK(seal == sum(block, BLOCK - 4));
    /* Each byte went round RING_ROUNDS times, gaining 1 + 2 + 3 per lap
     * (stage 0's first round only seeded it). */
    int whole = 1;
    for (int i = 0; i < BLOCK - 4; i++)
        whole &= block[i] == (unsigned char)(i * 7 + (RING_ROUNDS - 1) * 6 + 2 + 3);
    CHECK(whole);
    CHECK(ring_bad == 0 && ring_blocks == RING * RING_ROUNDS);
    CHECK(total == (long)COUNTERS * INCREMENTS);
    CHECK(fork_bad == 0 && fork_good == FORKERS * FORK_ROUNDS);
    for (int i = 0; i < RING; i++) {
        close(ring[i][0]);
        close(ring[i][1]);
    }
}

/* FIFO opens meet from two processors, many times: the writer writes and
 * closes at once, which may be before the reader has looked for it (a
 * reader that counted itself and then waited for a writer opened after
 * that slept for ever). The reader gives up after 20 s (SIGALRM) and
 * exits with 11 if its open never returned, 12 if its read did not. */
static volatile int fifo_phase;
static void on_alarm(int sig) {
    (void)sig;
    _exit(10 + fifo_phase);
}

static void fifo_meetings(void) {
    char path[] = "/tmp/tessera-smp-fifo-XXXXXX";
    int tmp = mkstemp(path);
    CHECK(tmp >= 0);
    close(tmp);
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0);
    int good = 0, rounds = 300;
    for (int i = 0; i < rounds; i++) {
        pid_t child = fork();
        if (child == 0) {
            pin(1);
            signal(SIGALRM, on_alarm);
            alarm(20);
            fifo_phase = 1;
            int r = open(path, O_RDONLY);
            fifo_phase = 2;
            if (r < 0)
                _exit(1);
            char got[8] = {0};
            ssize_t n = read(r, got, sizeof got);
            _exit(n == 4 && memcmp(got, "meet", 4) == 0 ? 0 : 2);
        }
        if (child < 0)
            break;
        int w = open(path, O_WRONLY);
        if (w >= 0) {
            if (write(w, "meet", 4) != 4)
                fprintf(stderr, "smp: fifo write failed\n");
            close(w);
        }
        int status = -1;
        waitpid(child, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            good++;
        else
            fprintf(stderr, "smp: fifo meeting %d: wait status %#x\n", i, status);
    }
    CHECK(good == rounds);
    unlink(path);
}

/* --- busy processors even out ------------------------------------------ */

/* A CPU-bound process pinned to the second processor keeps it busy (it
 * never idles, so it never steals work); three CPU-bound workers start
 * on the first and may run on either. Linux moves one of them to the
 * second processor (three against one becomes two and two); so must we.
 * Each worker watches which processor runs it; the shared page says
 * when one ran on the second. 20 s is a guard against a hang. */
static void busy_processors_even_out(void) {
    volatile long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    if (shared == MAP_FAILED)
        return;
    shared[0] = shared[1] = shared[2] = 0; /* hog running; moved; stop */
    pid_t hog = fork();
    if (hog == 0) {
        pin(1);
        shared[0] = 1;
        volatile uint64_t x = 1;
        while (!shared[2])
            x = x * 6364136223846793005ULL + 1;
        _exit(0);
    }
    CHECK(hog > 0 && wait_flag(&shared[0]));
    pid_t workers[3];
    for (int i = 0; i < 3; i++) {
        workers[i] = fork();
        if (workers[i] == 0) {
            /* Started on the first processor (inherited), then allowed
             * both: it stays where it is until the kernel moves it. */
            cpu_set_t two;
            CPU_ZERO(&two);
            CPU_SET(cpus[0], &two);
            CPU_SET(cpus[1], &two);
            if (sched_setaffinity(0, sizeof two, &two) != 0)
                _exit(2);
            double end = now() + 20;
            volatile uint64_t x = 1;
            while (!shared[2] && now() < end) {
                for (int k = 0; k < 100000; k++)
                    x = x * 6364136223846793005ULL + 1;
                unsigned cpu = 99;
                if (syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 && (int)cpu == cpus[1])
                    shared[1] = 1;
                if (shared[1])
                    break;
            }
            _exit(0);
        }
        CHECK(workers[i] > 0);
    }
    int status, clean = 0;
    for (int i = 0; i < 3; i++)
        if (workers[i] > 0 && waitpid(workers[i], &status, 0) == workers[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            clean++;
    shared[2] = 1;
    if (hog > 0)
        waitpid(hog, &status, 0);
    CHECK(clean == 3);
    if (!shared[1])
        fprintf(stderr, "smp: no worker ran on processor %d while a hog kept it busy and three waited on %d\n", cpus[1], cpus[0]);
    CHECK(shared[1] == 1);
    munmap((void *)shared, 4096);
}

/* --- address spaces come and go ---------------------------------------- */

/* A processor that goes idle keeps the user space it ran last loaded
 * until something tells it to leave; that space must not be freed (and
 * its page-table frames handed out again) while a processor still uses
 * it. Short-lived processes, each with a thread, run on every processor
 * in turn and exit, leaving those processors idle in their space; the
 * parent at once fills fresh memory (which reuses the freed frames) with
 * a pattern and checks it. A stale page table in use would corrupt the
 * pattern or bring the idle processor (and the kernel) down on its next
 * interrupt. */
static char *volatile touch_at;

static void *touch_and_leave(void *arg) {
    pin((int)(long)arg);
    volatile char *p = touch_at;
    for (int i = 0; i < 16; i++)
        p[i * 4096] = (char)i;
    return NULL;
}

static void address_spaces_come_and_go(void) {
    enum { ROUNDS = 200, FILL = 64 * 4096 };
    int bad_children = 0, bad_bytes = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pid_t child = fork();
        if (child == 0) {
            /* The child on one processor, its thread on the next (with
             * two, the thread shares the first's; with more, the thread's
             * processor goes idle in the space the child then frees). */
            pin(1 + round % (ncpus - 1));
            char *mem = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem == MAP_FAILED)
                _exit(2);
            touch_at = mem;
            pthread_t t;
            if (pthread_create(&t, NULL, touch_and_leave, (void *)(long)(1 + (round + 1) % (ncpus - 1))) != 0 || pthread_join(t, NULL) != 0)
                _exit(3);
            for (int i = 0; i < 16; i++)
                if (mem[i * 4096] != (char)i)
                    _exit(4);
            _exit(0);
        }
        int status;
        if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad_children++;
        unsigned char *fill = mmap(NULL, FILL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (fill == MAP_FAILED) {
            bad_bytes++;
            continue;
        }
        for (size_t i = 0; i < FILL; i++)
            fill[i] = (unsigned char)(0xff ^ (i * 7 + round));
        for (size_t i = 0; i < FILL; i++)
            if (fill[i] != (unsigned char)(0xff ^ (i * 7 + round)))
                bad_bytes++;
        munmap(fill, FILL);
    }
    if (bad_children || bad_bytes)
        fprintf(stderr, "smp: address spaces: %d of %d children failed, %d bytes wrong\n", bad_children, ROUNDS, bad_bytes);
    CHECK(bad_children == 0);
    CHECK(bad_bytes == 0);
}

int main(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            cpus[ncpus++] = i;
    CHECK(ncpus >= 1);
    if (ncpus == 0)
        return tt_done("smp");
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    CHECK(pin(0) == 0);
    unsigned cpu = 99;
    CHECK(syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 && (int)cpu == cpus[0]);
    if (ncpus > 1) {
        shootdown(0);
        shootdown(1);
        fork_snapshot();
        busy_processors_even_out();
        address_spaces_come_and_go();
    }
    fifo_meetings();
    everything_at_once();
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
    printf("smp: %d processor(s)\n", ncpus);
    return tt_done("smp");
}
