/* Sharing between processes as Linux does it: the page cache (separate
 * MAP_SHARED mappings of one file, read/write and mappings seeing the same
 * bytes, SIGBUS past the end), futexes in shared memory woken across
 * processes, and FIFOs (named pipes). */
#include "tessera_test.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
/* <linux/futex.h> is not in musl's headers. */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | 128)

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *timeout) {
    return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_signals, bus_code;
static void on_bus(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    bus_signals++;
    bus_code = info->si_code;
    (void)sig;
    siglongjmp(bus_jump, 1);
}

static void page_cache(void) {
    int fd = open("shared", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 2 * PAGE) == 0);
    char *a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(a != MAP_FAILED && b != MAP_FAILED && a != b);
    if (a == MAP_FAILED || b == MAP_FAILED) return;

    /* Two mappings of one file in one process: one page. */
    memcpy(a + 100, "through a", 9);
    CHECK(memcmp(b + 100, "through a", 9) == 0);

    /* Stores through a mapping are what read(2) returns, before msync. */
    char buf[16] = {0};
    CHECK(pread(fd, buf, 9, 100) == 9 && memcmp(buf, "through a", 9) == 0);

    /* write(2) shows in pages already mapped and touched. */
    CHECK(pwrite(fd, "written", 7, PAGE + 5) == 7);
    CHECK(memcmp(a + PAGE + 5, "written", 7) == 0 && memcmp(b + PAGE + 5, "written", 7) == 0);

    /* Another process mapping the file after fork (not inherited) sees
     * and changes the same page. */
    pid_t child = fork();
    if (child == 0) {
        int cfd = open("shared", O_RDWR);
        char *c = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
        if (c == MAP_FAILED || memcmp(c + 100, "through a", 9) != 0) _exit(1);
        memcpy(c + 200, "from child", 10);
        _exit(0); /* exit writes back; the parent's mappings see it at once */
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(a + 200, "from child", 10) == 0);

    /* Truncation zeroes the tail of the last page; a page wholly past the
     * end of the file gives SIGBUS (BUS_ADRERR). */
    CHECK(ftruncate(fd, 10) == 0);
    CHECK(a[10] == 0 && a[200] == 0);
    CHECK(munmap(a, 2 * PAGE) == 0);
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(a != MAP_FAILED);
    struct sigaction sa = {0}, old;
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old);
    if (sigsetjmp(bus_jump, 1) == 0) {
        volatile char x = a[PAGE + 1];
        (void)x;
    }
    CHECK(bus_signals == 1 && bus_code == BUS_ADRERR);
    sigaction(SIGBUS, &old, NULL);

    CHECK(munmap(a, 2 * PAGE) == 0 && munmap(b, 2 * PAGE) == 0);
    close(fd);
}

static void shared_futex(void) {
    /* A file mapped separately by each process: no address in common. */
    int fd = open("futex", O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, PAGE) == 0);
    pid_t child = fork();
    if (child == 0) {
        uint32_t *w = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (w == MAP_FAILED) _exit(2);
        /* Wait (shared, not private) until the parent changes the word. */
        while (__atomic_load_n(&w[1], __ATOMIC_SEQ_CST) == 0) {
            __atomic_store_n(&w[2], 1, __ATOMIC_SEQ_CST); /* "I am about to wait" */
            struct timespec limit = {10, 0};
            long r = futex(&w[1], FUTEX_WAIT, 0, &limit);
            if (r == -1 && errno == ETIMEDOUT) _exit(3);
        }
        _exit(0);
    }
    uint32_t *w = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(w != MAP_FAILED);
    if (w == MAP_FAILED) return;
    while (__atomic_load_n(&w[2], __ATOMIC_SEQ_CST) == 0) usleep(1000);
    usleep(20000); /* let it sleep in the kernel */
    __atomic_store_n(&w[1], 1, __ATOMIC_SEQ_CST);
    long woken = 0;
    for (int i = 0; i < 200 && woken == 0; i++) {
        woken = futex(&w[1], FUTEX_WAKE, 1, NULL);
        if (woken == 0) usleep(1000);
    }
    CHECK(woken == 1);
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* A private futex op on the same word wakes nobody in another process
     * but still works inside one: no waiter here, so 0. */
    CHECK(futex(&w[1], FUTEX_WAKE_PRIVATE, 1, NULL) == 0);
    munmap(w, 2 * PAGE);
    close(fd);

    /* Anonymous MAP_SHARED memory inherited by fork. */
    uint32_t *anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(anon != MAP_FAILED);
    child = fork();
    if (child == 0) {
        while (__atomic_load_n(&anon[0], __ATOMIC_SEQ_CST) == 0) {
            __atomic_store_n(&anon[1], 1, __ATOMIC_SEQ_CST);
            struct timespec limit = {10, 0};
            if (futex(&anon[0], FUTEX_WAIT, 0, &limit) == -1 && errno == ETIMEDOUT) _exit(3);
        }
        _exit(0);
    }
    while (__atomic_load_n(&anon[1], __ATOMIC_SEQ_CST) == 0) usleep(1000);
    usleep(20000);
    __atomic_store_n(&anon[0], 1, __ATOMIC_SEQ_CST);
    woken = 0;
    for (int i = 0; i < 200 && woken == 0; i++) {
        woken = futex(&anon[0], FUTEX_WAKE, 1, NULL);
        if (woken == 0) usleep(1000);
    }
    CHECK(woken == 1);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void fifos(void) {
    CHECK(mkfifo("fifo", 0600) == 0);
    struct stat st;
    CHECK(stat("fifo", &st) == 0 && S_ISFIFO(st.st_mode));

    /* Non-blocking: a writer without a reader gets ENXIO; a reader does
     * not wait, reads nothing, and then a writer may open. */
    CHECK_ERR(open("fifo", O_WRONLY | O_NONBLOCK), ENXIO);
    int r = open("fifo", O_RDONLY | O_NONBLOCK);
    CHECK(r >= 0);
    char buf[32];
    CHECK(read(r, buf, sizeof buf) == 0); /* no writer: end of file */
    int w = open("fifo", O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0);
    CHECK(fstat(w, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(write(w, "hello", 5) == 5);
    CHECK(read(r, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_ERR(read(r, buf, sizeof buf), EAGAIN); /* writer open, no data */
    CHECK_ERR(lseek(r, 0, SEEK_SET), ESPIPE);
    close(w);
    CHECK(read(r, buf, sizeof buf) == 0);
    close(r);

    /* Blocking opens meet: the child's reader waits for our writer. */
    pid_t child = fork();
    if (child == 0) {
        int cr = open("fifo", O_RDONLY);
        if (cr < 0) _exit(1);
        char got[16] = {0};
        ssize_t n = read(cr, got, sizeof got);
        _exit(n == 6 && memcmp(got, "rendez", 6) == 0 ? 0 : 2);
    }
    w = open("fifo", O_WRONLY);
    CHECK(w >= 0);
    CHECK(write(w, "rendez", 6) == 6);
    close(w);
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* O_RDWR never waits and is both ends. */
    int rw = open("fifo", O_RDWR);
    CHECK(rw >= 0);
    CHECK(write(rw, "loop", 4) == 4 && read(rw, buf, 4) == 4 && memcmp(buf, "loop", 4) == 0);
    close(rw);

    /* The data of a FIFO goes when the last end closes. */
    rw = open("fifo", O_RDWR);
    CHECK(write(rw, "stale", 5) == 5);
    close(rw);
    r = open("fifo", O_RDONLY | O_NONBLOCK);
    CHECK(read(r, buf, sizeof buf) == 0);
    close(r);
    CHECK(unlink("fifo") == 0);
}

int main(void) {
    char dir[] = "/tmp/tessera-sharing-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chdir(dir) == 0);
    page_cache();
    shared_futex();
    fifos();
    unlink("shared");
    unlink("futex");
    chdir("/");
    rmdir(dir);
    return tt_done("sharing");
}
