/* Real-time signal queues (every instance kept, in order, with its value;
 * RLIMIT_SIGPENDING), ignored signals discarded when sent, standard
 * signals kept once with their first details, and the errors Linux gives
 * for a few argument mistakes (dup3, fstatat, statx, fsync, adjtimex,
 * timer_settime). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/select.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int order[16];
static int values[16];
static volatile int seen;

static void on_rt(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    if (seen < 16) {
        order[seen] = sig;
        values[seen] = info->si_value.sival_int;
    }
    seen++;
}

/* Instances of one real-time signal queue up; lower numbers first. */
static void queueing(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGRTMIN + 1, &sa, NULL) == 0);
    CHECK(sigaction(SIGRTMIN + 2, &sa, NULL) == 0);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN + 1);
    sigaddset(&block, SIGRTMIN + 2);
    CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    for (int i = 0; i < 3; i++) {
        union sigval v = {.sival_int = 10 + i};
        CHECK(sigqueue(getpid(), SIGRTMIN + 2, v) == 0);
    }
    union sigval v = {.sival_int = 99};
    CHECK(sigqueue(getpid(), SIGRTMIN + 1, v) == 0);
    CHECK(kill(getpid(), SIGRTMIN + 1) == 0); /* kill queues too */
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGRTMIN + 1) && sigismember(&pending, SIGRTMIN + 2));
    seen = 0;
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    CHECK(seen == 5);
    /* Each signal's instances arrive in the order sent (how handlers of
     * different signals nest is the kernel's business). */
    int twos[3], n2 = 0, ones[2], n1 = 0;
    for (int i = 0; i < 5 && i < seen; i++) {
        if (order[i] == SIGRTMIN + 2 && n2 < 3) twos[n2++] = values[i];
        if (order[i] == SIGRTMIN + 1 && n1 < 2) ones[n1++] = values[i];
    }
    CHECK(n2 == 3 && twos[0] == 10 && twos[1] == 11 && twos[2] == 12);
    CHECK(n1 == 2 && ones[0] == 99);

    /* sigtimedwait takes one instance at a time. */
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    for (int i = 0; i < 2; i++) {
        union sigval w = {.sival_int = 40 + i};
        CHECK(sigqueue(getpid(), SIGRTMIN + 2, w) == 0);
    }
    siginfo_t si;
    struct timespec zero = {0, 0};
    union sigval low = {.sival_int = 7};
    CHECK(sigqueue(getpid(), SIGRTMIN + 1, low) == 0);
    /* The lowest signal first. */
    CHECK(sigtimedwait(&block, &si, &zero) == SIGRTMIN + 1 && si.si_value.sival_int == 7);
    CHECK(sigtimedwait(&block, &si, &zero) == SIGRTMIN + 2 && si.si_value.sival_int == 40 && si.si_code == SI_QUEUE);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGRTMIN + 2));
    CHECK(sigtimedwait(&block, &si, &zero) == SIGRTMIN + 2 && si.si_value.sival_int == 41);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGRTMIN + 2));
    CHECK_ERR(sigtimedwait(&block, &si, &zero), EAGAIN);
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
}

/* Standard signals are pending once: the first sending's details stay. */
static void standard_once(void) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    union sigval a = {.sival_int = 1}, b = {.sival_int = 2};
    CHECK(sigqueue(getpid(), SIGUSR2, a) == 0);
    CHECK(sigqueue(getpid(), SIGUSR2, b) == 0);
    siginfo_t si;
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&block, &si, &zero) == SIGUSR2 && si.si_value.sival_int == 1);
    CHECK_ERR(sigtimedwait(&block, &si, &zero), EAGAIN);
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
}

static volatile pid_t thread_tid;
static volatile int thread_go;

static void *limited_thread(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    thread_tid = (pid_t)syscall(SYS_gettid);
    while (!thread_go) sched_yield();
    return NULL;
}

/* RLIMIT_SIGPENDING: over it, sigqueue and tgkill of a real-time signal
 * fail with EAGAIN, kill still makes it pending. */
static void limit(void) {
    struct rlimit saved, none = {0, 0};
    CHECK(getrlimit(RLIMIT_SIGPENDING, &saved) == 0 && saved.rlim_cur > 0);
    pid_t child = fork();
    if (child == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGRTMIN);
        sigprocmask(SIG_BLOCK, &set, NULL);
        int bad = 0;
        if (setrlimit(RLIMIT_SIGPENDING, &none) != 0) bad |= 1;
        union sigval v = {.sival_int = 5};
        errno = 0;
        if (sigqueue(getpid(), SIGRTMIN, v) != -1 || errno != EAGAIN) bad |= 2;
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGRTMIN)) bad |= 4;
        if (kill(getpid(), SIGRTMIN) != 0) bad |= 8;
        sigpending(&pending);
        if (!sigismember(&pending, SIGRTMIN)) bad |= 16;
        _exit(bad);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (WIFEXITED(status) && WEXITSTATUS(status)) printf("# limit child: %d\n", WEXITSTATUS(status));

    /* tgkill to a thread of a process whose limit is 0 (LTP tgkill02). */
    child = fork();
    if (child == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, limited_thread, NULL) != 0) _exit(100);
        while (!thread_tid) sched_yield();
        if (setrlimit(RLIMIT_SIGPENDING, &none) != 0) _exit(101);
        errno = 0;
        long r = syscall(SYS_tgkill, getpid(), thread_tid, SIGRTMIN);
        int ok = r == -1 && errno == EAGAIN;
        thread_go = 1;
        pthread_join(t, NULL);
        _exit(ok ? 0 : 102);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* An ignored signal that is not blocked is discarded when sent: it does
 * not show as pending and does not interrupt a wait. */
static void ignored(void) {
    CHECK(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
    CHECK(raise(SIGUSR1) == 0);
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR1));
    /* Blocked, it stays pending ... */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
    /* ... until an action that ignores it is set again. */
    CHECK(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    /* SIGCHLD's default action ignores it: not pending after a child ends. */
    CHECK(signal(SIGCHLD, SIG_DFL) != SIG_ERR);
    pid_t child = fork();
    if (child == 0) _exit(0);
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGCHLD));

    /* A child sending an ignored signal does not cut a timed wait short. */
    pid_t parent = getpid();
    child = fork();
    if (child == 0) {
        for (int i = 0; i < 5; i++) {
            kill(parent, SIGUSR1);
            usleep(20000);
        }
        _exit(0);
    }
    sigset_t none;
    sigemptyset(&none);
    sigaddset(&none, SIGRTMIN + 5);
    struct timespec wait = {0, 300000000};
    siginfo_t si;
    CHECK_ERR(sigtimedwait(&none, &si, &wait), EAGAIN);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(signal(SIGUSR1, SIG_DFL) != SIG_ERR);
}

/* Argument checks, in Linux's order. */
static void argument_errors(void) {
    CHECK_ERR(dup3(500, 500, O_CLOEXEC), EINVAL); /* same fd: EINVAL even unopened */
    CHECK_ERR(dup3(0, 500, -1), EINVAL);
    CHECK(dup2(0, 0) == 0);
    CHECK_ERR(dup2(500, 500), EBADF);
    struct stat st;
    CHECK_ERR(fstatat(AT_FDCWD, "/", &st, 9999), EINVAL);
    char stx[256]; /* struct statx (musl's headers lack it) */
    CHECK_ERR(syscall(SYS_statx, AT_FDCWD, "/", 0x6000, 0x7ff, stx), EINVAL);
    CHECK_ERR(syscall(SYS_statx, AT_FDCWD, "/", 0, 0x80000000u, stx), EINVAL);
    CHECK(syscall(SYS_statx, AT_FDCWD, "/", 0x2000 /* AT_STATX_FORCE_SYNC */, 0x7ff, stx) == 0);
    static char longpath[PATH_MAX + 2];
    memset(longpath, 'a', PATH_MAX + 1);
    CHECK_ERR(fchownat(0, longpath, 0, 0, 0), ENAMETOOLONG); /* before ENOTDIR */
    CHECK_ERR(fchownat(AT_FDCWD, "/", 0, 0, 9999), EINVAL);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(fsync(p[0]), EINVAL);
    CHECK_ERR(fdatasync(p[1]), EINVAL);
    close(p[0]);
    close(p[1]);
    int null = open("/dev/null", O_RDONLY);
    CHECK(null >= 0);
    CHECK_ERR(fdatasync(null), EINVAL);
    close(null);
    char name[] = "/tmp/sigqueue.XXXXXX";
    int fd = mkstemp(name);
    CHECK(fd >= 0 && fsync(fd) == 0 && fdatasync(fd) == 0);
    unlink(name);
    close(fd);
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    tx.modes = 0x8000; /* ADJ_ADJTIME without the single-shot bit */
    CHECK_ERR(adjtimex(&tx), EINVAL);
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, NULL, &timer) == 0);
    CHECK_ERR(syscall(SYS_timer_settime, timer, 0, NULL, NULL), EINVAL);
    CHECK(timer_delete(timer) == 0);
}

static volatile int overrun_seen = -2;
static timer_t overrun_timer;

static void on_alarm_rt(int sig) {
    (void)sig;
    if (overrun_seen == -2) {
        overrun_seen = timer_getoverrun(overrun_timer);
        struct itimerspec off;
        memset(&off, 0, sizeof off);
        timer_settime(overrun_timer, 0, &off, NULL);
    }
}

/* An absolute deadline far in the past on a short period: the overrun
 * count is capped at INT_MAX (LTP timer_settime03, CVE-2018-12896). */
static void overrun_cap(void) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    CHECK(signal(SIGUSR1, on_alarm_rt) != SIG_ERR);
    CHECK(timer_create(CLOCK_REALTIME, &sev, &overrun_timer) == 0);
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    CHECK(clock_gettime(CLOCK_REALTIME, &spec.it_value) == 0);
    spec.it_value.tv_sec -= 10000000; /* about four months ago */
    spec.it_interval.tv_nsec = 1000000;  /* 1 ms: 10^10 periods since */
    CHECK(timer_settime(overrun_timer, TIMER_ABSTIME, &spec, NULL) == 0);
    /* The first expiry is due at once; 20 s only bounds a wait that a
     * busy host can stretch (it ends when the handler has run). */
    for (int i = 0; i < 2000 && overrun_seen == -2; i++) usleep(10000);
    if (overrun_seen != INT_MAX)
        printf("# overrun seen: %d (-2: no signal)\n", overrun_seen);
    CHECK(overrun_seen == INT_MAX);
    CHECK(timer_delete(overrun_timer) == 0);
    CHECK(signal(SIGUSR1, SIG_DFL) != SIG_ERR);
}

static volatile int usr1_handled;
static void on_usr1(int sig) {
    (void)sig;
    usr1_handled++;
}

/* ppoll/pselect with a signal mask: a pending signal the mask lets in
 * interrupts the wait (EINTR, its handler runs), and the caller's mask
 * is back afterwards. */
static void wait_masks(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    sigset_t block, old, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigemptyset(&empty);
    CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    CHECK(raise(SIGUSR1) == 0 && usr1_handled == 0);
    struct timespec second = {1, 0};
    CHECK_ERR(ppoll(NULL, 0, &second, &empty), EINTR);
    CHECK(usr1_handled == 1);
    CHECK(sigprocmask(SIG_SETMASK, NULL, &now) == 0 && sigismember(&now, SIGUSR1));
    CHECK(raise(SIGUSR1) == 0);
    CHECK_ERR(pselect(0, NULL, NULL, NULL, &second, &empty), EINTR);
    CHECK(usr1_handled == 2);
    /* The mask keeps a signal out: the wait times out. */
    struct timespec short_wait = {0, 20000000};
    CHECK(raise(SIGUSR1) == 0);
    CHECK(ppoll(NULL, 0, &short_wait, &block) == 0 && usr1_handled == 2);
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0 && usr1_handled == 3);
    signal(SIGUSR1, SIG_DFL);
}

int main(void) {
    wait_masks();
    queueing();
    standard_once();
    limit();
    ignored();
    argument_errors();
    overrun_cap();
    return tt_done("sigqueue");
}
