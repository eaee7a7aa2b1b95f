/* Signals: handlers with siginfo, masks, sigsuspend, default actions,
 * ignored signals, fault signals with recovery, the alternate stack. */
#include "tessera_test.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_signo, got_code, got_pid, count;
static volatile uintptr_t got_addr, handler_sp;
static sigjmp_buf recover;
static volatile uintptr_t bad_address = 0x10;

static void on_info(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    got_signo = info->si_signo == sig ? sig : -1;
    got_code = info->si_code;
    got_pid = info->si_pid;
    count++;
}

static void on_fault(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    got_signo = sig;
    got_addr = (uintptr_t)info->si_addr;
    siglongjmp(recover, 1);
}

static void on_alt(int sig) {
    int local;
    (void)sig;
    handler_sp = (uintptr_t)&local;
}

static void nothing(int sig) { (void)sig; }

static volatile sig_atomic_t reaped, alarmed;

static void reap_all(int sig) {
    if (sig == SIGALRM) {
        alarmed = 1;
        return;
    }
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        reaped++;
    errno = saved;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    /* A signal to ourselves runs the handler before kill returns to us. */
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(count == 1 && got_signo == SIGUSR1 && got_code == SI_USER && got_pid == getpid());

    /* Blocked: stays pending until unblocked. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(count == 1);
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    CHECK(count == 2);

    /* The handler's mask is restored after it returns. */
    sigset_t now;
    CHECK(sigprocmask(SIG_SETMASK, NULL, &now) == 0 && !sigismember(&now, SIGUSR1));

    /* sigsuspend: wait for a signal from a child. */
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        usleep(50 * 1000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    sigset_t wait_mask;
    sigemptyset(&wait_mask);
    CHECK(sigsuspend(&wait_mask) == -1 && errno == EINTR);
    CHECK(count == 3 && got_pid == child);
    CHECK(sigprocmask(SIG_SETMASK, NULL, &now) == 0 && sigismember(&now, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    int status;
    CHECK(waitpid(child, &status, 0) == child);

    /* SIGCHLD reaches a handler when a child exits. */
    got_signo = 0;
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
    child = fork();
    if (child == 0)
        _exit(0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(got_signo == SIGCHLD && got_code == CLD_EXITED);
    /* Again, many times: with several processors the child ends while
     * the parent is in waitpid, and the handler must still have run when
     * waitpid returns (the end and the signal become visible together).
     * (Without SA_RESTART, Linux may also fail the wait with EINTR when
     * the signal comes just as it looks: then it is made again.) */
    int late = 0;
    for (int i = 0; i < 200; i++) {
        got_signo = 0;
        child = fork();
        if (child == 0)
            _exit(0);
        pid_t r;
        while ((r = waitpid(child, &status, 0)) == -1 && errno == EINTR)
            ;
        CHECK(r == child);
        if (got_signo != SIGCHLD)
            late++;
    }
    CHECK(late == 0);
    /* A handler that reaps with WNOHANG finds the child it was told of
     * (a shell's way): each child is reaped by the handler, and an alarm
     * ends the wait if one is missed. */
    struct sigaction reaper;
    memset(&reaper, 0, sizeof reaper);
    reaper.sa_handler = reap_all;
    CHECK(sigaction(SIGCHLD, &reaper, NULL) == 0);
    CHECK(sigaction(SIGALRM, &reaper, NULL) == 0);
    sigset_t chld, unblocked;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigaddset(&chld, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &chld, &unblocked) == 0);
    sigdelset(&unblocked, SIGCHLD);
    sigdelset(&unblocked, SIGALRM);
    reaped = 0;
    alarmed = 0;
    alarm(20);
    for (int i = 1; i <= 200 && !alarmed; i++) {
        if (fork() == 0)
            _exit(0);
        while (reaped < i && !alarmed)
            sigsuspend(&unblocked);
    }
    alarm(0);
    CHECK(!alarmed && reaped == 200);
    CHECK(sigprocmask(SIG_SETMASK, &unblocked, NULL) == 0);
    signal(SIGALRM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);

    /* Ignored signals do nothing; default SIGTERM kills. */
    CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR);
    CHECK(raise(SIGUSR2) == 0);
    child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    CHECK(kill(child, SIGTERM) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);

    /* SIGKILL cannot be caught. */
    CHECK_ERR(sigaction(SIGKILL, &sa, NULL), EINVAL);

    /* A blocked sleep is interrupted by a signal with a handler. */
    signal(SIGUSR2, nothing);
    child = fork();
    if (child == 0) {
        struct timespec ts = {5, 0}, rem = {0, 0};
        int r = nanosleep(&ts, &rem);
        _exit(r == -1 && errno == EINTR && rem.tv_sec <= 5 ? 0 : 1);
    }
    usleep(100 * 1000);
    CHECK(kill(child, SIGUSR2) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* SA_RESTART: a wait interrupted by a handled signal resumes; without
     * it the wait fails with EINTR. A helper child signals us while we wait
     * for a slower child. */
    for (int restart = 0; restart <= 1; restart++) {
        struct sigaction r;
        memset(&r, 0, sizeof r);
        r.sa_handler = nothing;
        r.sa_flags = restart ? SA_RESTART : 0;
        CHECK(sigaction(SIGUSR2, &r, NULL) == 0);
        pid_t slow = fork();
        if (slow == 0) {
            usleep(300 * 1000);
            _exit(4);
        }
        pid_t poke = fork();
        if (poke == 0) {
            usleep(50 * 1000);
            kill(getppid(), SIGUSR2);
            _exit(0);
        }
        errno = 0;
        pid_t got = waitpid(slow, &status, 0);
        if (restart)
            CHECK(got == slow && WEXITSTATUS(status) == 4);
        else
            CHECK(got == -1 && errno == EINTR);
        if (!restart)
            CHECK(waitpid(slow, &status, 0) == slow);
        CHECK(waitpid(poke, &status, 0) == poke);
    }

    /* Faults with handlers: recover with siglongjmp. */
    struct sigaction fault;
    memset(&fault, 0, sizeof fault);
    fault.sa_sigaction = on_fault;
    fault.sa_flags = SA_SIGINFO | SA_NODEFER;
    CHECK(sigaction(SIGSEGV, &fault, NULL) == 0);
    CHECK(sigaction(SIGFPE, &fault, NULL) == 0);
    /* (A CHECK after the fault could be hoisted above it by the compiler:
     * a volatile flag records that execution went past instead.) */
    static volatile int went_past;
    if (sigsetjmp(recover, 1) == 0) {
        *(volatile int *)bad_address = 1;
        went_past = 1;
    }
    CHECK(!went_past && got_signo == SIGSEGV && got_addr == 0x10);
    got_signo = 0;
    if (sigsetjmp(recover, 1) == 0) {
        volatile int zero = 0;
        volatile int x = 7 / zero;
        (void)x;
        went_past = 1;
    }
    CHECK(!went_past && got_signo == SIGFPE);

    /* The alternate signal stack. */
    stack_t ss;
    ss.ss_sp = malloc(65536);
    ss.ss_size = 65536;
    ss.ss_flags = 0;
    CHECK(sigaltstack(&ss, NULL) == 0);
    struct sigaction alt;
    memset(&alt, 0, sizeof alt);
    alt.sa_handler = on_alt;
    alt.sa_flags = SA_ONSTACK;
    CHECK(sigaction(SIGUSR2, &alt, NULL) == 0);
    CHECK(raise(SIGUSR2) == 0);
    CHECK(handler_sp >= (uintptr_t)ss.ss_sp && handler_sp < (uintptr_t)ss.ss_sp + 65536);
    return tt_done("signals");
}
