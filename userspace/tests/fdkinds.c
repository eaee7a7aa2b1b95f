/* Descriptors for kernel objects and moving data through pipes, as Linux
 * has them: timerfd, signalfd, pidfd (with waitid(P_PIDFD) and
 * pidfd_send_signal), memfd with seals, splice, tee and vmsplice. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timerfds(void) {
    CHECK_ERR(timerfd_create(CLOCK_MONOTONIC, 0x1234), EINVAL);
    CHECK_ERR(timerfd_create(12345, 0), EINVAL);
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(t >= 0);
    CHECK((fcntl(t, F_GETFD) & FD_CLOEXEC) != 0);
    uint64_t n = 0;
    CHECK_ERR(read(t, &n, 8), EAGAIN); /* disarmed */
    CHECK_ERR(read(t, &n, 4), EINVAL);
    CHECK_ERR(timerfd_settime(0, 0, &(struct itimerspec){0}, NULL), EINVAL); /* not a timerfd */
    struct itimerspec ts = {.it_value = {0, 20 * 1000000}, .it_interval = {0, 20 * 1000000}};
    struct itimerspec old;
    CHECK(timerfd_settime(t, 0, &ts, &old) == 0 && old.it_value.tv_sec == 0 && old.it_value.tv_nsec == 0);
    struct itimerspec cur;
    CHECK(timerfd_gettime(t, &cur) == 0 && cur.it_interval.tv_nsec == 20 * 1000000 && cur.it_value.tv_sec == 0 &&
          cur.it_value.tv_nsec > 0);
    /* poll wakes when it expires; a read takes every expiration so far. */
    struct pollfd pfd = {.fd = t, .events = POLLIN};
    CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN));
    usleep(70 * 1000);
    CHECK(read(t, &n, 8) == 8 && n >= 3);
    /* Blocking read of a one-shot absolute timer. */
    int b = timerfd_create(CLOCK_REALTIME, 0);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    wall.tv_nsec += 30 * 1000000;
    if (wall.tv_nsec >= 1000000000) {
        wall.tv_sec++;
        wall.tv_nsec -= 1000000000;
    }
    uint64_t start = now_ms();
    CHECK(timerfd_settime(b, TFD_TIMER_ABSTIME, &(struct itimerspec){.it_value = wall}, NULL) == 0);
    CHECK(read(b, &n, 8) == 8 && n == 1);
    CHECK(now_ms() - start >= 20);
    CHECK(timerfd_gettime(b, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    /* Disarming drops what was not read. */
    CHECK(timerfd_settime(t, 0, &(struct itimerspec){0}, NULL) == 0);
    CHECK_ERR(read(t, &n, 8), EAGAIN);
    close(t);
    close(b);
}

static void signalfds(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    CHECK_ERR(syscall(SYS_signalfd4, -1, &set, 4, 0), EINVAL); /* sigset size */
    int s = signalfd(-1, &set, SFD_NONBLOCK);
    CHECK(s >= 0);
    struct signalfd_siginfo info[2];
    CHECK_ERR(read(s, info, sizeof info), EAGAIN);
    CHECK_ERR(read(s, info, 10), EINVAL);
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    CHECK(poll(&pfd, 1, 0) == 0);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN));
    union sigval v = {.sival_int = 4242};
    CHECK(sigqueue(getpid(), SIGUSR2, v) == 0);
    CHECK(read(s, info, sizeof info) == 2 * (long)sizeof info[0]);
    CHECK(info[0].ssi_signo == SIGUSR1 && info[0].ssi_code == SI_USER && info[0].ssi_pid == (uint32_t)getpid() &&
          info[0].ssi_uid == getuid());
    CHECK(info[1].ssi_signo == SIGUSR2 && info[1].ssi_code == SI_QUEUE && info[1].ssi_int == 4242);
    /* A new mask on the same descriptor. */
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    CHECK(signalfd(s, &only2, 0) == s);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK_ERR(read(s, info, sizeof info), EAGAIN);
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK_ERR(signalfd(fds[0], &set, 0), EINVAL); /* not a signalfd */
    /* Blocking read, woken by a child's signal. */
    pid_t child = fork();
    if (child == 0) {
        usleep(20 * 1000);
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    int blocking = signalfd(-1, &only2, 0);
    CHECK(read(blocking, info, sizeof info[0]) == sizeof info[0] && info[0].ssi_signo == SIGUSR2 &&
          info[0].ssi_pid == (uint32_t)child);
    CHECK(waitpid(child, NULL, 0) == child);
    close(s);
    close(blocking);
    close(fds[0]);
    close(fds[1]);
    /* SIGUSR1 is still pending: take it before unblocking. */
    int sig = 0;
    CHECK(sigwait(&set, &sig) == 0 && sig == SIGUSR1);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
}

static void pidfds(void) {
    CHECK_ERR(syscall(SYS_pidfd_open, -1, 0), EINVAL);
    CHECK_ERR(syscall(SYS_pidfd_open, getpid(), 0x4000000), EINVAL); /* an unknown flag */
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(7);
    }
    int pfd = syscall(SYS_pidfd_open, child, 0);
    CHECK(pfd >= 0);
    CHECK((fcntl(pfd, F_GETFD) & FD_CLOEXEC) != 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    CHECK(poll(&p, 1, 0) == 0); /* running */
    CHECK_ERR(syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0x100), EINVAL);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, 0, SIGTERM, NULL, 0), EBADF); /* not a pidfd */
    int procdir = open("/proc/self", O_DIRECTORY | O_RDONLY);
    CHECK(syscall(SYS_pidfd_send_signal, procdir, 0, NULL, 0) == 0); /* a /proc/PID directory will do */
    close(procdir);
    CHECK(syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0) == 0);
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
    siginfo_t info;
    memset(&info, 0, sizeof info);
    CHECK(waitid(P_PIDFD, pfd, &info, WEXITED) == 0);
    CHECK(info.si_pid == child && info.si_code == CLD_KILLED && info.si_status == SIGTERM && info.si_signo == SIGCHLD);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0), ESRCH); /* gone */
    close(pfd);
}

static void waits(void) {
    CHECK_ERR(waitid(P_ALL, 0, NULL, 0), EINVAL); /* no event asked for */
    CHECK_ERR(waitid(7, 0, NULL, WEXITED), EINVAL);
    CHECK_ERR(waitid(P_ALL, 0, NULL, WEXITED), ECHILD);
    pid_t child = fork();
    if (child == 0) {
        usleep(10 * 1000);
        _exit(3);
    }
    siginfo_t info;
    memset(&info, 0xff, sizeof info);
    CHECK(waitid(P_PID, child, &info, WEXITED | WNOHANG) == 0);
    CHECK(info.si_pid == 0 && info.si_signo == 0); /* nothing yet: zeroed */
    /* WNOWAIT leaves the zombie for a second wait. */
    CHECK(waitid(P_PID, child, &info, WEXITED | WNOWAIT) == 0 && info.si_pid == child && info.si_code == CLD_EXITED &&
          info.si_status == 3 && info.si_uid == getuid());
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 3);
    /* Stopped and continued children. */
    child = fork();
    if (child == 0) {
        for (;;) pause();
    }
    CHECK(kill(child, SIGSTOP) == 0);
    CHECK(waitid(P_PID, child, &info, WSTOPPED) == 0 && info.si_code == CLD_STOPPED && info.si_status == SIGSTOP);
    CHECK(kill(child, SIGCONT) == 0);
    CHECK(waitid(P_PGID, 0, &info, WCONTINUED) == 0 && info.si_pid == child && info.si_code == CLD_CONTINUED &&
          info.si_status == SIGCONT);
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitid(P_ALL, 0, &info, WEXITED) == 0 && info.si_code == CLD_KILLED && info.si_status == SIGKILL);
    CHECK_ERR(waitpid(INT32_MIN, NULL, 0), ESRCH);
}

static void splices(void) {
    char path[] = "/tmp/fdkinds-XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    CHECK(write(f, "0123456789", 10) == 10);
    int a[2], b[2];
    CHECK(pipe(a) == 0 && pipe(b) == 0);
    /* File to pipe at an offset: the file's own offset stays. */
    loff_t off = 2;
    CHECK(splice(f, &off, a[1], NULL, 5, 0) == 5 && off == 7);
    CHECK(lseek(f, 0, SEEK_CUR) == 10);
    /* tee copies without consuming; splice moves pipe to pipe. */
    CHECK(tee(a[0], b[1], 100, 0) == 5);
    char buf[16] = {0};
    CHECK(read(b[0], buf, sizeof buf) == 5 && memcmp(buf, "23456", 5) == 0);
    CHECK(splice(a[0], NULL, b[1], NULL, 3, 0) == 3);
    CHECK(read(b[0], buf, sizeof buf) == 3 && memcmp(buf, "234", 3) == 0);
    /* Pipe to file at the file's offset (which moves). */
    CHECK(lseek(f, 0, SEEK_SET) == 0);
    CHECK(splice(a[0], NULL, f, NULL, 10, 0) == 2);
    CHECK(lseek(f, 0, SEEK_CUR) == 2);
    CHECK(pread(f, buf, 10, 0) == 10 && memcmp(buf, "5623456789", 10) == 0);
    /* Errors as Linux: no pipe, offsets on a pipe, the same pipe, bad flags. */
    CHECK_ERR(splice(f, NULL, f, NULL, 1, 0), EINVAL);
    CHECK_ERR(splice(a[0], &off, f, NULL, 1, 0), ESPIPE);
    CHECK_ERR(splice(a[0], NULL, a[1], NULL, 1, 0), EINVAL);
    CHECK_ERR(splice(f, NULL, a[1], NULL, 1, 0x100), EINVAL);
    CHECK_ERR(tee(a[0], f, 1, 0), EINVAL);
    CHECK_ERR(splice(a[0], NULL, b[1], NULL, 1, SPLICE_F_NONBLOCK), EAGAIN); /* empty */
    /* vmsplice into a pipe takes what fits and returns (no waiting once
     * something went in). */
    static char lots[128 * 1024];
    int c[2];
    CHECK(pipe(c) == 0);
    struct iovec whole = {lots, sizeof lots};
    long took = vmsplice(c[1], &whole, 1, 0);
    CHECK(took > 0 && took <= fcntl(c[1], F_GETPIPE_SZ));
    close(c[0]);
    close(c[1]);
    /* vmsplice in and out of a pipe. */
    struct iovec iov[2] = {{"ab", 2}, {"cde", 3}};
    CHECK(vmsplice(a[1], iov, 2, 0) == 5);
    char out[8] = {0};
    struct iovec in = {out, sizeof out};
    CHECK(vmsplice(a[0], &in, 1, 0) == 5 && memcmp(out, "abcde", 5) == 0);
    close(f);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 1
#define F_SEAL_SHRINK 2
#define F_SEAL_GROW 4
#define F_SEAL_WRITE 8
#endif

static void memfds(void) {
    int m = memfd_create("tessera", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(m >= 0);
    CHECK((fcntl(m, F_GETFD) & FD_CLOEXEC) != 0);
    char link[128] = {0};
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", m);
    CHECK(readlink(self, link, sizeof link - 1) > 0 && strncmp(link, "/memfd:tessera", 14) == 0);
    CHECK(write(m, "hello", 5) == 5 && ftruncate(m, 4096) == 0);
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    CHECK(map != MAP_FAILED && memcmp(map, "hello", 5) == 0);
    map[0] = 'j';
    char buf[8] = {0};
    CHECK(pread(m, buf, 5, 0) == 5 && memcmp(buf, "jello", 5) == 0);
    CHECK(fcntl(m, F_GET_SEALS) == 0);
    CHECK_ERR(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE), EBUSY); /* a writable shared mapping */
    munmap(map, 4096);
    /* A read-only shared mapping that mprotect could make writable counts too. */
    map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);
    CHECK(map != MAP_FAILED);
    CHECK_ERR(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE), EBUSY);
    munmap(map, 4096);
    CHECK(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    CHECK_ERR(ftruncate(m, 100), EPERM);
    CHECK_ERR(ftruncate(m, 8192), EPERM);
    CHECK_ERR(pwrite(m, "x", 1, 4096), EPERM); /* would grow */
    CHECK(pwrite(m, "y", 1, 10) == 1);
    CHECK(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) == 0);
    CHECK(fcntl(m, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL));
    CHECK_ERR(pwrite(m, "z", 1, 10), EPERM);
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0) == MAP_FAILED && errno == EPERM);
    map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);
    CHECK(map != MAP_FAILED && map[10] == 'y');
    CHECK_ERR(mprotect(map, 4096, PROT_READ | PROT_WRITE), EACCES); /* never writable */
    munmap(map, 4096);
    CHECK_ERR(fcntl(m, F_ADD_SEALS, F_SEAL_GROW), EPERM); /* sealed seals */
    /* Without MFD_ALLOW_SEALING the file is born sealed. */
    int n = memfd_create("plain", 0);
    CHECK(n >= 0 && fcntl(n, F_GET_SEALS) == F_SEAL_SEAL);
    CHECK_ERR(fcntl(n, F_ADD_SEALS, F_SEAL_WRITE), EPERM);
    CHECK_ERR(fcntl(0, F_GET_SEALS), EINVAL); /* not a memfd */
    CHECK_ERR(memfd_create("x", 0x100), EINVAL);
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[250] = 0;
    CHECK_ERR(memfd_create(longname, 0), EINVAL);
    longname[249] = 0;
    int l = memfd_create(longname, 0);
    CHECK(l >= 0);
    close(l);
    close(m);
    close(n);
}

/* Reads /proc/self/fdinfo/FD into buf. */
static int fdinfo(int fd, char *buf, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY);
    if (f < 0) return -1;
    ssize_t n = read(f, buf, size - 1);
    close(f);
    if (n < 0) return -1;
    buf[n] = 0;
    return 0;
}

/* /proc/PID/fdinfo: position, flags (octal, with O_CLOEXEC), and what
 * the kind of file adds. */
static void fdinfos(void) {
    char name[] = "/tmp/fdinfo.XXXXXX";
    int fd = mkostemp(name, O_CLOEXEC | O_APPEND);
    CHECK(fd >= 0 && write(fd, "0123456789", 10) == 10 && lseek(fd, 4, SEEK_SET) == 4);
    char buf[1024];
    CHECK(fdinfo(fd, buf, sizeof buf) == 0);
    CHECK(strncmp(buf, "pos:\t4\n", 7) == 0);
    unsigned flags = 0;
    char *at = strstr(buf, "flags:\t");
    CHECK(at != NULL && sscanf(at, "flags:\t%o", &flags) == 1);
    CHECK((flags & O_CLOEXEC) && (flags & O_APPEND) && (flags & O_ACCMODE) == O_RDWR);
    CHECK(strstr(buf, "ino:\t") != NULL);
    unlink(name);
    close(fd);
    int e = eventfd(5, 0);
    CHECK(e >= 0 && fdinfo(e, buf, sizeof buf) == 0);
    unsigned long long count = 0;
    at = strstr(buf, "eventfd-count:");
    CHECK(at != NULL && sscanf(at, "eventfd-count: %llx", &count) == 1 && count == 5);
    close(e);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int sfd = signalfd(-1, &set, 0);
    unsigned long long mask = 0;
    CHECK(sfd >= 0 && fdinfo(sfd, buf, sizeof buf) == 0);
    at = strstr(buf, "sigmask:\t");
    CHECK(at != NULL && sscanf(at, "sigmask:\t%llx", &mask) == 1 && mask == 1ull << (SIGUSR1 - 1));
    close(sfd);
    int in = inotify_init1(0);
    CHECK(in >= 0 && inotify_add_watch(in, "/tmp", IN_MODIFY | IN_ONESHOT) > 0);
    unsigned wmask = 0;
    CHECK(fdinfo(in, buf, sizeof buf) == 0);
    at = strstr(buf, "inotify wd:");
    CHECK(at != NULL && sscanf(at, "inotify wd:%*x ino:%*x sdev:%*x mask:%x", &wmask) == 1 && wmask == (IN_MODIFY | IN_ONESHOT));
    close(in);
    CHECK(fdinfo(999, buf, sizeof buf) == -1 && errno == ENOENT);
}

/* /proc/self/fd/N opens the file again, even one with no name. */
static void reopen(void) {
    int m = memfd_create("reopened", 0);
    CHECK(m >= 0 && write(m, "memfd!", 6) == 6);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", m);
    int again = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(again >= 0);
    struct stat st;
    CHECK(fstat(m, &st) == 0 && st.st_size == 0); /* O_TRUNC reached it */
    CHECK(write(again, "xy", 2) == 2 && pread(m, path, 2, 0) == 2 && memcmp(path, "xy", 2) == 0);
    close(again);
    close(m);
    char name[] = "/tmp/reopen.XXXXXX";
    int f = mkstemp(name);
    CHECK(f >= 0 && write(f, "gone", 4) == 4 && unlink(name) == 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", f);
    int r = open(path, O_RDONLY);
    char buf[8] = {0};
    CHECK(r >= 0 && read(r, buf, sizeof buf) == 4 && memcmp(buf, "gone", 4) == 0);
    close(r);
    close(f);
}

int main(void) {
    reopen();
    fdinfos();
    memfds();
    timerfds();
    signalfds();
    pidfds();
    waits();
    splices();
    return tt_done("fdkinds");
}
