/* Assorted system calls as Linux has them: eventfd, epoll, madvise
 * (MADV_DONTNEED zeroes private anonymous pages), mlock, MAP_FIXED_NOREPLACE,
 * MREMAP_FIXED, close_range, posix_fadvise, fallocate, execveat, clock
 * setting rights, and the /proc/sys values programs read. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <dirent.h>
#include <utime.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
/* Not in every C library's headers (musl). */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
/* <linux/capability.h> is not in musl's headers. */
#define CAP_VERSION_3 0x20080522
struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static long read_long(const char *path) {
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

static void events(void) {
    /* eventfd: a counter; semaphore mode takes one at a time. */
    int efd = eventfd(3, EFD_NONBLOCK);
    CHECK(efd >= 0);
    uint64_t v = 0;
    CHECK(read(efd, &v, 8) == 8 && v == 3);
    CHECK_ERR(read(efd, &v, 8), EAGAIN);
    v = 5;
    CHECK(write(efd, &v, 8) == 8);
    CHECK_ERR(read(efd, &v, 4), EINVAL);
    v = UINT64_MAX;
    CHECK_ERR(write(efd, &v, 8), EINVAL);
    int sem = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    CHECK(read(sem, &v, 8) == 8 && v == 1 && read(sem, &v, 8) == 8 && v == 1);
    CHECK_ERR(read(sem, &v, 8), EAGAIN);

    /* epoll over a pipe and the eventfd. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    CHECK_ERR(epoll_create1(12345), EINVAL);
    CHECK_ERR(syscall(SYS_epoll_create, 0), EINVAL); /* musl's wrapper may not pass size */
    int fds[2];
    CHECK(pipe(fds) == 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1111};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev), EEXIST);
    ev.data.u64 = 0x2222;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), EINVAL);
    int plain = open("/proc/self/comm", O_RDONLY);
    int regular = open("/tmp", O_RDONLY);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, regular, &ev), EPERM);
    close(regular);
    close(plain);
    struct epoll_event out[4];
    /* The eventfd holds 5: ready; the pipe is empty. */
    int n = epoll_wait(ep, out, 4, 0);
    CHECK(n == 1 && out[0].data.u64 == 0x2222 && (out[0].events & EPOLLIN));
    CHECK(read(efd, &v, 8) == 8);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    CHECK(epoll_wait(ep, out, 4, 50) == 0); /* times out */
    /* A child writes into the pipe while we wait. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        usleep(50000);
        write(fds[1], "x", 1);
        _exit(0);
    }
    n = epoll_wait(ep, out, 4, 10000);
    CHECK(n == 1 && out[0].data.u64 == 0x1111 && (out[0].events & EPOLLIN));
    waitpid(child, NULL, 0);
    /* One-shot: reports once until re-armed. */
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = 0x3333;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fds[0], &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 0x3333);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fds[0], &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 1);
    /* Hang-up is always reported; a closed file leaves the set. */
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, fds[0], NULL) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, fds[0], NULL), ENOENT);
    ev.events = EPOLLOUT;
    ev.data.u64 = 0x4444;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fds[1], &ev) == 0);
    close(fds[0]);
    n = epoll_wait(ep, out, 4, 0);
    CHECK(n == 1 && out[0].data.u64 == 0x4444 && (out[0].events & EPOLLERR));
    close(fds[1]);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    CHECK_ERR(epoll_wait(ep, out, 0, 0), EINVAL);
    CHECK_ERR(epoll_wait(efd, out, 4, 0), EINVAL);
    /* Nested instances: a loop is refused. */
    int inner = epoll_create1(0);
    ev.events = EPOLLIN;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, inner, &ev) == 0);
    CHECK_ERR(epoll_ctl(inner, EPOLL_CTL_ADD, ep, &ev), ELOOP);
    close(inner);
    close(ep);
    close(efd);
    close(sem);
}

static void memory(void) {
    /* MADV_DONTNEED: private anonymous pages read as zero again. */
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    memset(p, 'x', 4 * PAGE);
    CHECK(madvise(p + PAGE, 2 * PAGE, MADV_DONTNEED) == 0);
    CHECK(p[0] == 'x' && p[PAGE] == 0 && p[3 * PAGE - 1] == 0 && p[3 * PAGE] == 'x');
    CHECK_ERR(madvise(p + 1, PAGE, MADV_DONTNEED), EINVAL);
    CHECK_ERR(madvise(p, PAGE, 12345), EINVAL);
    /* A shared mapping keeps its contents. */
    char *s = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s[0] = 'k';
    CHECK(madvise(s, PAGE, MADV_DONTNEED) == 0 && s[0] == 'k');
    munmap(s, PAGE);

    /* mlock: mapped ranges only. */
    CHECK(mlock(p, 4 * PAGE) == 0 && munlock(p, 4 * PAGE) == 0);
    CHECK(munmap(p + 2 * PAGE, PAGE) == 0);
    CHECK_ERR(mlock(p, 4 * PAGE), ENOMEM);
    CHECK_ERR(madvise(p, 4 * PAGE, MADV_NORMAL), ENOMEM);
    CHECK_ERR(mlockall(0), EINVAL);

    /* MAP_FIXED_NOREPLACE: the hole is free, the rest is not. */
    char *q = mmap(p + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(q == p + 2 * PAGE);
    CHECK(mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED && errno == EEXIST);

    /* MREMAP_FIXED moves the pages to exactly where asked. */
    char *target = mmap(NULL, 8 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 'm', PAGE);
    char *moved = mremap(p, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target + 4 * PAGE);
    CHECK(moved == target + 4 * PAGE);
    CHECK(moved != MAP_FAILED && moved[0] == 'm' && moved[PAGE] == 0);
    CHECK(mremap(p + PAGE, PAGE, PAGE, MREMAP_FIXED, target) == MAP_FAILED && errno == EINVAL);
    munmap(target, 8 * PAGE);
    munmap(p, 4 * PAGE);
}

static void files(void) {
    char path[] = "/tmp/tessera-calls-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    /* fallocate extends (or, with KEEP_SIZE, does not); punching a hole zeroes. */
    CHECK(fallocate(fd, 0, 0, 10000) == 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10000);
    CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 20000) == 0 && fstat(fd, &st) == 0 && st.st_size == 10000);
    CHECK(pwrite(fd, "abcdef", 6, 100) == 6);
    CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 101, 2) == 0);
    char buf[8] = {0};
    CHECK(pread(fd, buf, 6, 100) == 6 && memcmp(buf, "a\0\0def", 6) == 0);
    CHECK_ERR(fallocate(fd, 0, -1, 10), EINVAL);
    CHECK_ERR(fallocate(fd, 0, 0, 0), EINVAL);
    /* posix_fadvise returns the error number. */
    CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) == 0);
    CHECK(posix_fadvise(fd, 0, 0, 99) == EINVAL);
    CHECK(posix_fadvise(999, 0, 0, POSIX_FADV_NORMAL) == EBADF);
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(posix_fadvise(fds[0], 0, 0, POSIX_FADV_NORMAL) == ESPIPE);
    CHECK_ERR(fallocate(fds[1], 0, 0, 10), ESPIPE);

    /* close_range: closes a range, or marks it close-on-exec. */
    int a = dup(fd), b = dup(fd), c = dup(fd);
    CHECK(syscall(SYS_close_range, a, b, 0) == 0);
    CHECK_ERR(fcntl(a, F_GETFD), EBADF);
    CHECK_ERR(fcntl(b, F_GETFD), EBADF);
    CHECK(fcntl(c, F_GETFD) == 0);
    CHECK(syscall(SYS_close_range, c, c, CLOSE_RANGE_CLOEXEC) == 0 && fcntl(c, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(syscall(SYS_close_range, 5, 4, 0), EINVAL);
    CHECK_ERR(syscall(SYS_close_range, 0, 1, 1 << 10), EINVAL);
    close(c);
    close(fds[0]);
    close(fds[1]);
    close(fd);
    unlink(path);

    /* execveat: relative to a directory descriptor, and AT_EMPTY_PATH. */
    int dir = open("/bin", O_RDONLY | O_DIRECTORY);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        char *argv[] = {"true", NULL}, *envp[] = {NULL};
        syscall(SYS_execveat, dir, "true", argv, envp, 0);
        _exit(errno);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int prog = open("/bin/true", O_RDONLY);
    child = fork();
    if (child == 0) {
        char *argv[] = {"true", NULL}, *envp[] = {NULL};
        syscall(SYS_execveat, prog, "", argv, envp, AT_EMPTY_PATH);
        _exit(errno);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *argv[] = {"true", NULL}, *envp[] = {NULL};
    CHECK_ERR(syscall(SYS_execveat, prog, "", argv, envp, 0), ENOENT);
    CHECK_ERR(syscall(SYS_execveat, dir, "true", argv, envp, 0x8000), EINVAL);
    close(prog);
    close(dir);
}

static void descriptors(void) {
    char path[] = "/tmp/tessera-calls2-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "0123456789", 10) == 10);
    /* pwrite on an O_APPEND descriptor appends (Linux). */
    int app = open(path, O_WRONLY | O_APPEND);
    CHECK(pwrite(app, "AB", 2, 0) == 2);
    char buf[16] = {0};
    CHECK(pread(fd, buf, 12, 0) == 12 && memcmp(buf, "0123456789AB", 12) == 0);
    /* sendfile needs a writable output and a readable input. */
    int ro = open(path, O_RDONLY);
    CHECK_ERR(sendfile(ro, fd, NULL, 4), EBADF);
    CHECK_ERR(sendfile(fd, app, NULL, 4), EBADF);
    /* O_PATH names a file but is not open for reading or writing. */
    int opath = open(path, O_PATH);
    CHECK(opath >= 0);
    CHECK_ERR(read(opath, buf, 1), EBADF);
    CHECK_ERR(write(opath, "x", 1), EBADF);
    struct stat st;
    CHECK(fstat(opath, &st) == 0 && st.st_size == 12);
    CHECK((fcntl(opath, F_GETFL) & O_PATH) == O_PATH);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, opath, 0) == MAP_FAILED && errno == EBADF);
    /* writev checks every entry before writing anything. */
    struct iovec bad[2] = {{"good", 4}, {"x", (size_t)-1}};
    off_t before = lseek(fd, 0, SEEK_END);
    CHECK_ERR(writev(fd, bad, 2), EINVAL);
    CHECK(lseek(fd, 0, SEEK_END) == before);
    volatile int minus_one = -1; /* hidden from the compiler's checks */
    CHECK_ERR(writev(fd, bad, minus_one), EINVAL);
    struct iovec many[1025] = {{0}};
    CHECK_ERR(readv(fd, many, 1025), EINVAL);
    struct iovec two[2] = {{"ab", 2}, {"cd", 2}};
    CHECK(writev(fd, two, 2) == 4);
    close(opath);
    close(ro);
    close(app);
    close(fd);
    unlink(path);
    /* Pipe sizes. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(fcntl(fds[0], F_GETPIPE_SZ) == 65536);
    CHECK(fcntl(fds[1], F_SETPIPE_SZ, 100000) == 131072 && fcntl(fds[0], F_GETPIPE_SZ) == 131072);
    CHECK(fcntl(fds[1], F_SETPIPE_SZ, 1) == 4096);
    CHECK(write(fds[1], buf, 10) == 10);
    close(fds[0]);
    close(fds[1]);
    int file = open("/proc/self/comm", O_RDONLY);
    CHECK_ERR(fcntl(file, F_GETPIPE_SZ), EBADF);
    close(file);
    /* personality: asked and set. */
    int old = personality(0xffffffff);
    CHECK(old == PER_LINUX);
    CHECK(personality(ADDR_NO_RANDOMIZE) == PER_LINUX && personality(0xffffffff) == ADDR_NO_RANDOMIZE);
    personality(PER_LINUX);
    /* A thread's name shows in /proc/self/task/TID/comm and /proc/self/comm. */
    CHECK(prctl(PR_SET_NAME, "renamed-thread") == 0);
    char comm_path[64], comm[32] = {0};
    snprintf(comm_path, sizeof comm_path, "/proc/self/task/%d/comm", getpid());
    int c = open(comm_path, O_RDONLY);
    CHECK(c >= 0 && read(c, comm, sizeof comm) > 0 && strcmp(comm, "renamed-thread\n") == 0);
    close(c);
    memset(comm, 0, sizeof comm);
    c = open("/proc/self/comm", O_RDONLY);
    CHECK(c >= 0 && read(c, comm, sizeof comm) > 0 && strcmp(comm, "renamed-thread\n") == 0);
    close(c);
}

static void owners_and_priorities(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(fcntl(fds[0], F_GETOWN) == 0);
    CHECK(fcntl(fds[0], F_SETOWN, getpid()) == 0 && fcntl(fds[0], F_GETOWN) == getpid());
    struct f_owner_ex ex;
    CHECK(fcntl(fds[0], F_GETOWN_EX, &ex) == 0 && ex.type == F_OWNER_PID && ex.pid == getpid());
    ex.type = F_OWNER_PGRP;
    ex.pid = getpgrp();
    CHECK(fcntl(fds[0], F_SETOWN_EX, &ex) == 0 && fcntl(fds[0], F_GETOWN) == -getpgrp());
    ex.type = 7;
    CHECK_ERR(fcntl(fds[0], F_SETOWN_EX, &ex), EINVAL);
    CHECK(fcntl(fds[0], F_SETSIG, SIGUSR1) == 0 && fcntl(fds[0], F_GETSIG) == SIGUSR1);
    CHECK_ERR(fcntl(fds[0], F_SETSIG, 1000), EINVAL);
    close(fds[0]);
    close(fds[1]);
    char path[] = "/tmp/tessera-lease-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fcntl(fd, F_GETLEASE) == F_UNLCK);
    CHECK_ERR(fcntl(fd, F_SETLEASE, F_RDLCK), EAGAIN); /* open for writing */
    close(fd);
    unlink(path);
    /* Nice values: raising is free, lowering needs root. */
    errno = 0;
    CHECK(getpriority(PRIO_PROCESS, 0) == 0 && errno == 0);
    CHECK_ERR(getpriority(99, 0), EINVAL);
    CHECK_ERR(getpriority(PRIO_PROCESS, 999999), ESRCH);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (setpriority(PRIO_PROCESS, 0, 5) != 0 || getpriority(PRIO_PROCESS, 0) != 5) _exit(1);
        if (setuid(1000) != 0) _exit(2);
        if (setpriority(PRIO_PROCESS, 0, 10) != 0) _exit(3);
        errno = 0;
        if (setpriority(PRIO_PROCESS, 0, 0) != -1 || errno != EACCES) _exit(4);
        if (setpriority(PRIO_PROCESS, getppid(), 10) != -1 || errno != EPERM) _exit(5);
        _exit(getpriority(PRIO_PROCESS, 0) == 10 ? 0 : 6);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The state letter of /proc/PID/stat. */
static char proc_state(pid_t pid) {
    char path[64], text[256] = {0};
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *close = strrchr(text, ')');
    return close && close[1] == ' ' ? close[2] : '?';
}

#ifndef SYS_kcmp
#define SYS_kcmp 312
#endif

static int blocker_pipe[2];
static volatile pid_t blocker_tid;
static void *blocker(void *arg) {
    (void)arg;
    blocker_tid = syscall(SYS_gettid);
    char c;
    return (void *)(long)read(blocker_pipe[0], &c, 1);
}

/* The state letter of /proc/self/task/TID/stat. */
static char task_state(pid_t tid) {
    char path[64], text[256] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    char *close = strrchr(text, ')');
    return n && close && close[1] == ' ' ? close[2] : '?';
}

/* <linux/futex.h> is not in musl's headers. */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
static int futex_word;
static volatile pid_t futex_tid;
static void *futex_sleeper(void *arg) {
    (void)arg;
    futex_tid = syscall(SYS_gettid);
    while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0) syscall(SYS_futex, &futex_word, FUTEX_WAIT, 0, NULL, NULL, 0);
    return NULL;
}

static int main_word;
static volatile int main_seen_sleeping;
static void *main_watcher(void *arg) {
    (void)arg;
    /* /proc/PID/stat is the main thread's state: sleeping in its futex
     * wait while this thread runs. */
    for (int i = 0; i < 500 && !main_seen_sleeping; i++) {
        usleep(2000);
        if (proc_state(getpid()) == 'S') main_seen_sleeping = 1;
    }
    __atomic_store_n(&main_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &main_word, FUTEX_WAKE, 1, NULL, NULL, 0);
    return NULL;
}

static void clocks_and_threads(void) {
    struct timespec res;
    CHECK(clock_getres(CLOCK_REALTIME, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0 && res.tv_nsec <= 10000000);
    /* A sleep is as precise as the resolution says (within a tick more). */
    struct timespec r0, r1, nap = {0, 3 * res.tv_nsec};
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0);
    clock_gettime(CLOCK_MONOTONIC, &r0);
    CHECK(nanosleep(&nap, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &r1);
    long slept = (r1.tv_sec - r0.tv_sec) * 1000000000L + (r1.tv_nsec - r0.tv_nsec);
    CHECK(slept >= nap.tv_nsec);
    CHECK(clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0);
    CHECK(clock_getres(CLOCK_BOOTTIME, NULL) == 0);
    CHECK_ERR(clock_getres(12345, &res), EINVAL);
    /* Another process's CPU clock. */
    clockid_t cpu;
    CHECK(clock_getcpuclockid(getpid(), &cpu) == 0);
    struct timespec used;
    CHECK(clock_gettime(cpu, &used) == 0 && (used.tv_sec > 0 || used.tv_nsec > 0));
    /* A thread blocked in read sleeps (S) while this one runs (R). */
    CHECK(pipe(blocker_pipe) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocker, NULL) == 0);
    while (!blocker_tid) sched_yield();
    char state = '?';
    for (int i = 0; i < 200 && (state = task_state(blocker_tid)) != 'S'; i++) usleep(5000);
    CHECK(state == 'S');
    CHECK(task_state(syscall(SYS_gettid)) == 'R');
    CHECK(write(blocker_pipe[1], "x", 1) == 1);
    void *got;
    CHECK(pthread_join(t, &got) == 0 && (long)got == 1);
    /* A thread in an untimed futex wait sleeps, however often others
     * sleep and wake meanwhile. */
    CHECK(pthread_create(&t, NULL, futex_sleeper, NULL) == 0);
    while (!futex_tid) sched_yield();
    int sleeping = 0;
    for (int i = 0; i < 200 && sleeping < 20; i++) {
        usleep(2000);
        sleeping = task_state(futex_tid) == 'S' ? sleeping + 1 : 0;
    }
    CHECK(sleeping == 20);
    pthread_t w;
    CHECK(pthread_create(&w, NULL, main_watcher, NULL) == 0);
    while (__atomic_load_n(&main_word, __ATOMIC_SEQ_CST) == 0) syscall(SYS_futex, &main_word, FUTEX_WAIT, 0, NULL, NULL, 0);
    CHECK(pthread_join(w, NULL) == 0 && main_seen_sleeping);
    /* /proc/TID (not listed) is the thread too. */
    char tid_stat[64];
    snprintf(tid_stat, sizeof tid_stat, "/proc/%d/stat", futex_tid);
    CHECK(access(tid_stat, R_OK) == 0);
    __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE, 1, NULL, NULL, 0);
    CHECK(pthread_join(t, NULL) == 0);
    close(blocker_pipe[0]);
    close(blocker_pipe[1]);
}

static void more_calls(void) {
    /* mincore: resident pages of a mapping. */
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    m[0] = 1;
    m[2 * page] = 1;
    unsigned char vec[4] = {9, 9, 9, 9};
    CHECK(mincore(m, 4 * page, vec) == 0 && (vec[0] & 1) && !(vec[1] & 1) && (vec[2] & 1) && !(vec[3] & 1));
    CHECK_ERR(mincore(m + 1, page, vec), EINVAL);
    munmap(m + 3 * page, page);
    CHECK_ERR(mincore(m, 4 * page, vec), ENOMEM);
    munmap(m, 3 * page);
    /* sysfs(2): the file-system types /proc/filesystems lists. */
    long count = syscall(SYS_sysfs, 3);
    CHECK(count >= 2);
    long tmpfs = syscall(SYS_sysfs, 1, "tmpfs");
    char name[64] = {0};
    CHECK(tmpfs >= 0 && syscall(SYS_sysfs, 2, tmpfs, name) == 0 && strcmp(name, "tmpfs") == 0);
    CHECK_ERR(syscall(SYS_sysfs, 1, "no-such-fs"), EINVAL);
    CHECK_ERR(syscall(SYS_sysfs, 2, 100000, name), EINVAL);
    CHECK_ERR(syscall(SYS_sysfs, 9), EINVAL);
    /* kcmp: what a fork shares and what it copies. */
    int fd = open("/dev/null", O_RDONLY);
    int dupped = dup(fd);
    int other = open("/dev/null", O_RDONLY);
    pid_t me = getpid();
    CHECK(syscall(SYS_kcmp, me, me, 0, fd, dupped) == 0);
    long differ = syscall(SYS_kcmp, me, me, 0, fd, other);
    CHECK(differ == 1 || differ == 2);
    CHECK_ERR(syscall(SYS_kcmp, me, me, 0, fd, 999), EBADF);
    CHECK_ERR(syscall(SYS_kcmp, me, me, 99, 0, 0), EINVAL);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    CHECK(syscall(SYS_kcmp, me, child, 0, fd, fd) == 0); /* the same open file */
    long vm = syscall(SYS_kcmp, me, child, 1, 0, 0);
    CHECK(vm == 1 || vm == 2); /* its own memory */
    long files = syscall(SYS_kcmp, me, child, 2, 0, 0);
    CHECK(files == 1 || files == 2);
    CHECK(syscall(SYS_kcmp, me, me, 1, 0, 0) == 0);
    /* /proc/PID/stat: a paused child sleeps, a spinning one runs. */
    for (int i = 0; i < 200 && proc_state(child) != 'S'; i++) usleep(10000);
    CHECK(proc_state(child) == 'S');
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    child = fork();
    if (child == 0) {
        for (;;) {
        }
    }
    CHECK(proc_state(child) == 'R');
    CHECK(proc_state(getpid()) == 'R');
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(fd);
    close(dupped);
    close(other);
    /* copy_file_range between files; sync_file_range's checks; syncfs. */
    char path[] = "/tmp/calls-copy-XXXXXX";
    int a = mkstemp(path);
    unlink(path);
    char path2[] = "/tmp/calls-copy-XXXXXX";
    int b = mkstemp(path2);
    unlink(path2);
    CHECK(write(a, "abcdefgh", 8) == 8);
    loff_t from = 2, to = 0;
    CHECK(copy_file_range(a, &from, b, &to, 4, 0) == 4 && from == 6 && to == 4);
    char got[8] = {0};
    CHECK(pread(b, got, 8, 0) == 4 && memcmp(got, "cdef", 4) == 0);
    CHECK(lseek(a, 0, SEEK_CUR) == 8); /* offsets given: the files' own stay */
    CHECK_ERR(copy_file_range(a, &from, b, &to, 4, 1), EINVAL);
    from = 0;
    to = 2;
    CHECK_ERR(copy_file_range(a, &from, a, &to, 4, 0), EINVAL); /* overlap */
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK_ERR(copy_file_range(fds[0], NULL, b, NULL, 4, 0), EINVAL);
    CHECK(sync_file_range(a, 0, 8, SYNC_FILE_RANGE_WRITE) == 0);
    CHECK_ERR(sync_file_range(a, -1, 8, 0), EINVAL);
    CHECK_ERR(sync_file_range(a, 0, 8, 0x100), EINVAL);
    CHECK_ERR(sync_file_range(fds[0], 0, 8, 0), ESPIPE);
    CHECK(syncfs(a) == 0);
    CHECK_ERR(syncfs(999), EBADF);
    close(a);
    close(b);
    close(fds[0]);
    close(fds[1]);
}

/* chroot: a directory becomes "/" for the process and its children. */
static void chroots(void) {
    char dir[] = "/tmp/calls-root-XXXXXX";
    CHECK(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/inside", dir);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/marker", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(chroot("/no/such/dir"), ENOENT);
    CHECK_ERR(chroot(path), ENOTDIR);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (chroot(dir) != 0 || chdir("/") != 0) _exit(2);
        char cwd[64];
        int ok = getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") == 0;
        ok = ok && access("/marker", F_OK) == 0 && access("/tmp", F_OK) == -1;
        ok = ok && access("/../../marker", F_OK) == 0; /* ".." stops at the new root */
        ok = ok && chdir("/inside/..") == 0 && getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") == 0;
        ok = ok && chdir("inside") == 0 && getcwd(cwd, sizeof cwd) && strcmp(cwd, "/inside") == 0;
        /* An ordinary user may not chroot. */
        ok = ok && setuid(65534) == 0 && chroot("/") == -1 && errno == EPERM;
        _exit(ok ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(access("/tmp", F_OK) == 0); /* the parent's root is unchanged */
    snprintf(path, sizeof path, "%s/marker", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/inside", dir);
    rmdir(path);
    rmdir(dir);
}

static void on_usr1_info(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)info;
    (void)ctx;
}

/* Rules LTP found, each as Linux has it. */
static void linux_rules(char *self) {
    /* A zombie can still be signalled (nothing happens). */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(0);
    siginfo_t si;
    CHECK(waitid(P_PID, child, &si, WEXITED | WNOWAIT) == 0);
    CHECK(kill(child, SIGTERM) == 0);
    CHECK(waitpid(child, NULL, 0) == child);
    /* tgkill and tkill take pid_t values: -1 is invalid, not a large number. */
    CHECK_ERR(syscall(SYS_tgkill, -1, getpid(), 0), EINVAL);
    CHECK_ERR(syscall(SYS_tgkill, getpid(), -1, 0), EINVAL);
    /* SA_RESETHAND resets the handler, not SA_SIGINFO. */
    struct sigaction sa = {.sa_sigaction = on_usr1_info, .sa_flags = SA_SIGINFO | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);
    struct sigaction now;
    CHECK(sigaction(SIGUSR1, NULL, &now) == 0 && now.sa_handler == SIG_DFL && (now.sa_flags & SA_SIGINFO));
    /* setpgid: only into an existing group of the session, and only before exec. */
    child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    CHECK_ERR(setpgid(child, -1), EINVAL);
    CHECK_ERR(setpgid(child, 32769), EPERM); /* no such group */
    CHECK(setpgid(child, child) == 0 && getpgid(child) == child);
    CHECK_ERR(setpgid(999999, 0), ESRCH);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    child = fork();
    if (child == 0) {
        char *argv[] = {self, "--pause", NULL};
        execv(self, argv);
        _exit(1);
    }
    usleep(200 * 1000); /* it has run exec by now */
    CHECK_ERR(setpgid(child, child), EACCES);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* execve with an empty argv: the program gets "" as argv[0]. */
    child = fork();
    if (child == 0) {
        char *none[] = {NULL};
        execve(self, none, environ);
        _exit(1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 42);
    /* syslog: negative lengths, console levels outside 1..8, a null buffer. */
    char log[64];
    CHECK_ERR(syscall(SYS_syslog, 3, log, -1), EINVAL);
    CHECK_ERR(syscall(SYS_syslog, 8, NULL, 0), EINVAL);
    CHECK_ERR(syscall(SYS_syslog, 8, NULL, 9), EINVAL);
    CHECK_ERR(syscall(SYS_syslog, 2, NULL, 10), EINVAL);
    CHECK_ERR(syscall(SYS_syslog, 100, log, 10), EINVAL);
    /* An absolute path ignores the directory descriptor. */
    char path[] = "/tmp/calls-abs-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && fchmodat(fd, path, 0600, 0) == 0);
    /* O_NOATIME: the owner or root only. */
    CHECK(fchmod(fd, 0644) == 0);
    close(fd);
    child = fork();
    if (child == 0) {
        if (setuid(65534) != 0) _exit(2);
        int ok = open(path, O_RDONLY | O_NOATIME) == -1 && errno == EPERM && open(path, O_RDONLY) >= 0;
        _exit(ok ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(path);
    /* The older time calls, the old setrlimit, and a few small ones. */
    char tpath[] = "/tmp/calls-times-XXXXXX";
    fd = mkstemp(tpath);
    close(fd);
    struct utimbuf ub = {.actime = 1000, .modtime = 2000};
    struct stat st;
    CHECK(utime(tpath, &ub) == 0 && stat(tpath, &st) == 0 && st.st_atime == 1000 && st.st_mtime == 2000);
    struct timeval tv[2] = {{3000, 5}, {4000, 6}};
    CHECK(utimes(tpath, tv) == 0 && stat(tpath, &st) == 0 && st.st_mtime == 4000 && st.st_mtim.tv_nsec == 6000);
    tv[0].tv_usec = 1000000;
    CHECK_ERR(utimes(tpath, tv), EINVAL);
    CHECK(syscall(SYS_futimesat, AT_FDCWD, tpath, NULL) == 0 && stat(tpath, &st) == 0 && st.st_mtime > 4000);
    unlink(tpath);
    struct rlimit old_lim, lim;
    CHECK(getrlimit(RLIMIT_NOFILE, &old_lim) == 0);
    lim = (struct rlimit){.rlim_cur = 100, .rlim_max = old_lim.rlim_max};
    CHECK(syscall(SYS_setrlimit, RLIMIT_NOFILE, &lim) == 0 && getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur == 100);
    CHECK(syscall(SYS_setrlimit, RLIMIT_NOFILE, &old_lim) == 0);
    void *head = NULL;
    size_t head_len = 0;
    CHECK(syscall(SYS_get_robust_list, 0, &head, &head_len) == 0 && head_len == 24);
    CHECK_ERR(syscall(SYS_get_robust_list, 999999, &head, &head_len), ESRCH);
    long supported = syscall(SYS_membarrier, 0, 0, 0); /* MEMBARRIER_CMD_QUERY */
    CHECK(supported > 0 && (supported & 1));
    CHECK(syscall(SYS_membarrier, 1, 0, 0) == 0);
    CHECK_ERR(syscall(SYS_membarrier, 0, 1, 0), EINVAL);
    CHECK_ERR(syscall(SYS_membarrier, 3, 0, 0), EINVAL); /* two commands at once */
    /* PRIVATE_EXPEDITED needs REGISTER_PRIVATE_EXPEDITED first (EPERM);
     * GLOBAL_EXPEDITED needs no registration of the caller. */
    CHECK(supported & 8 && supported & 16);
    CHECK_ERR(syscall(SYS_membarrier, 8, 0, 0), EPERM);
    CHECK(syscall(SYS_membarrier, 16, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, 8, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, 2, 0, 0) == 0);
    /* I/O priorities: none set, then best effort level 6; RT needs root. */
    CHECK(syscall(SYS_ioprio_get, 1, 0) == 0);
    CHECK(syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 6) == 0 && syscall(SYS_ioprio_get, 1, 0) == ((2 << 13) | 6));
    CHECK_ERR(syscall(SYS_ioprio_set, 1, 0, 4 << 13), EINVAL); /* no such class */
    CHECK_ERR(syscall(SYS_ioprio_set, 9, 0, 0), EINVAL);
    CHECK_ERR(syscall(SYS_ioprio_set, 1, 999999, 0), ESRCH);
    CHECK(syscall(SYS_ioprio_set, 1, 0, 0) == 0 && syscall(SYS_ioprio_get, 1, 0) == 0);
    /* The old getdents: the same entries as getdents64. */
    int dfd = open("/", O_RDONLY | O_DIRECTORY);
    char ents[4096];
    long got = syscall(SYS_getdents, dfd, ents, sizeof ents);
    int found_tmp = 0;
    for (long at = 0; at < got;) {
        unsigned short reclen = *(unsigned short *)(ents + at + 16);
        if (strcmp(ents + at + 18, "tmp") == 0 && ents[at + reclen - 1] == DT_DIR) found_tmp = 1;
        at += reclen;
    }
    CHECK(got > 0 && found_tmp);
    close(dfd);
    int rfd = open("/proc/self/status", O_RDONLY);
    CHECK_ERR(readahead(rfd < 0 ? 0 : 999, 0, 4096), EBADF);
    close(rfd);
}

/* A read-only mount: every change is EROFS, reading works; remounting
 * read-write undoes it. */
static void read_only_mount(void) {
    char dir[] = "/tmp/calls-ro-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(mount("tmpfs", dir, "tmpfs", 0, NULL) == 0);
    char file[128], sub[128], other[128];
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    int fd = open(file, O_CREAT | O_WRONLY, 0666);
    CHECK(fd >= 0 && write(fd, "data", 4) == 4);
    close(fd);
    CHECK(mkdir(sub, 0755) == 0);
    CHECK(mount("tmpfs", dir, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL) == 0);
    CHECK_ERR(open(file, O_WRONLY), EROFS);
    CHECK_ERR(open(file, O_RDONLY | O_TRUNC), EROFS);
    CHECK_ERR(open(other, O_CREAT | O_WRONLY, 0644), EROFS);
    CHECK_ERR(mkdir(other, 0755), EROFS);
    CHECK_ERR(rmdir(sub), EROFS);
    CHECK_ERR(unlink(file), EROFS);
    CHECK_ERR(rename(file, other), EROFS);
    CHECK_ERR(link(file, other), EROFS);
    CHECK_ERR(symlink("file", other), EROFS);
    CHECK_ERR(chmod(file, 0600), EROFS);
    CHECK_ERR(chown(file, 1, 1), EROFS);
    CHECK_ERR(truncate(file, 0), EROFS);
    CHECK_ERR(utimes(file, NULL), EROFS);
    CHECK_ERR(access(file, W_OK), EROFS);
    CHECK(access(file, R_OK) == 0);
    char buf[8] = {0};
    fd = open(file, O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 4 && memcmp(buf, "data", 4) == 0);
    close(fd);
    /* /proc/self/mounts says ro. */
    FILE *m = fopen("/proc/self/mounts", "r");
    char line[512];
    int ro = 0;
    while (m && fgets(line, sizeof line, m))
        if (strstr(line, dir) && strstr(line, " ro")) ro = 1;
    if (m) fclose(m);
    CHECK(ro);
    CHECK(mount("tmpfs", dir, "tmpfs", MS_REMOUNT, NULL) == 0);
    CHECK(unlink(file) == 0 && rmdir(sub) == 0);
    CHECK(umount(dir) == 0 && rmdir(dir) == 0);
}

#ifndef RNDGETENTCNT
#define RNDGETENTCNT 0x80045200 /* <linux/random.h>, absent from musl's tree */
#endif

/* kernel.ns_last_pid chooses the next pid (as checkpoint/restore tools
 * use it); kernel.pid_max reads back what was written. */
static void pid_tunables(void) {
    if (geteuid() != 0) return;
    FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
    if (!f) return; /* not on every kernel */
    int target = 4000 + (getpid() % 1000);
    int ok = fprintf(f, "%d\n", target - 1) > 0;
    if (fclose(f) == 0 && ok) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        /* The next free id from there (others may fork meanwhile). */
        CHECK(pid >= target && pid < target + 200);
        waitpid(pid, NULL, 0);
    }
    f = fopen("/proc/sys/kernel/pid_max", "r");
    long max = 0;
    CHECK(f && fscanf(f, "%ld", &max) == 1 && max >= 301);
    if (f) fclose(f);
    f = fopen("/proc/sys/kernel/pid_max", "w");
    CHECK(f && fprintf(f, "%ld\n", max) > 0);
    if (f) CHECK(fclose(f) == 0);
    f = fopen("/proc/sys/kernel/pid_max", "w");
    if (f) {
        fprintf(f, "12\n"); /* below the minimum */
        CHECK(fclose(f) != 0 && errno == EINVAL);
    }
}

/* /proc/sys/kernel/{version,hostname} show uname's fields; root may set
 * the host name by writing the file. */
static void uts_files(void) {
    struct utsname u;
    CHECK(uname(&u) == 0);
    char text[128] = {0};
    FILE *f = fopen("/proc/sys/kernel/version", "r");
    CHECK(f && fgets(text, sizeof text, f) && strncmp(text, u.version, strlen(u.version)) == 0);
    if (f) fclose(f);
    if (geteuid() != 0) return;
    char saved[65];
    snprintf(saved, sizeof saved, "%s", u.nodename);
    f = fopen("/proc/sys/kernel/hostname", "w");
    if (!f) return; /* a container may keep it read-only */
    int wrote = fprintf(f, "tessera-host-test\n") > 0;
    int closed = fclose(f) == 0;
    if (wrote && closed) {
        CHECK(uname(&u) == 0 && strcmp(u.nodename, "tessera-host-test") == 0);
        CHECK(sethostname(saved, strlen(saved)) == 0);
    }
}

/* /dev/urandom's entropy count matches /proc (LTP ioctl07); CPUID
 * faulting is not offered (ARCH_GET_CPUID 1, ARCH_SET_CPUID ENODEV). */
static void entropy_and_cpuid(void) {
    int fd = open("/dev/urandom", O_RDONLY);
    int count = -1, proc = -2;
    CHECK(fd >= 0 && ioctl(fd, RNDGETENTCNT, &count) == 0 && count > 0);
    FILE *f = fopen("/proc/sys/kernel/random/entropy_avail", "r");
    CHECK(f && fscanf(f, "%d", &proc) == 1 && proc - count <= 2 && count - proc <= 2);
    if (f) fclose(f);
    close(fd);
    int cpuinfo_fault = 0;
    f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5) && strstr(line, " cpuid_fault")) cpuinfo_fault = 1;
    if (f) fclose(f);
    if (!cpuinfo_fault) {
        CHECK(syscall(SYS_arch_prctl, 0x1011 /* ARCH_GET_CPUID */, 0) == 1);
        CHECK_ERR(syscall(SYS_arch_prctl, 0x1012 /* ARCH_SET_CPUID */, 0), ENODEV);
    }
}

/* A million system calls in a row, with the kernel's 1 kHz watchdog NMIs
 * arriving throughout: some land between `syscall` and the kernel's
 * swapgs, where GS is still the program's (Tessera's NMI entry must swap it
 * itself, or it reads its per-CPU data from user memory). */
static void many_calls(void) {
    pid_t parent = getppid();
    long wrong = 0;
    for (long i = 0; i < 1000000; i++) wrong += syscall(SYS_getppid) != parent;
    CHECK(wrong == 0);
}

int main(int argc, char **argv) {
    if (argc == 1 && argv[0][0] == 0) return 42; /* the empty-argv exec */
    if (argc > 1 && strcmp(argv[1], "--pause") == 0) {
        pause();
        return 0;
    }
    many_calls();
    entropy_and_cpuid();
    uts_files();
    pid_tunables();
    linux_rules(argv[0][0] == '/' ? argv[0] : realpath(argv[0], NULL));
    read_only_mount();
    events();
    clocks_and_threads();
    chroots();
    more_calls();
    owners_and_priorities();
    descriptors();
    memory();
    files();
    /* Clocks: only CLOCK_REALTIME can be set, and only by root. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    CHECK_ERR(clock_settime(CLOCK_MONOTONIC, &now), EINVAL);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (setuid(1000) != 0) _exit(2);
        clock_gettime(CLOCK_REALTIME, &now);
        _exit(clock_settime(CLOCK_REALTIME, &now) == -1 && errno == EPERM ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* /proc/sys values programs read. */
    CHECK(read_long("/proc/sys/kernel/pid_max") > 300);
    CHECK(read_long("/proc/sys/kernel/tainted") == 0);
    CHECK(read_long("/proc/sys/fs/pipe-max-size") >= 65536);
    CHECK(read_long("/proc/sys/kernel/ngroups_max") == 65536);
    FILE *mounts = fopen("/proc/self/mounts", "r");
    char line[256] = {0};
    CHECK(mounts && fgets(line, sizeof line, mounts) && strchr(line, ' '));
    if (mounts) fclose(mounts);
    /* Capabilities: root holds them all (CAP_SYS_ADMIN is 21). */
    struct cap_header hdr = {CAP_VERSION_3, 0};
    struct cap_data caps[2];
    CHECK(syscall(SYS_capget, &hdr, caps) == 0 && (caps[0].effective & (1u << 21)) && (caps[0].permitted & (1u << 21)));
    hdr.version = 0x12345678;
    CHECK_ERR(syscall(SYS_capget, &hdr, caps), EINVAL);
    CHECK(hdr.version == CAP_VERSION_3);
    return tt_done("calls");
}
