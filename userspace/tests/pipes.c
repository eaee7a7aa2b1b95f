/* Pipes and waiting on descriptors: data through a pipe between
 * processes, end of file, EPIPE with SIGPIPE, capacity and non-blocking
 * mode, poll and select with timeouts, a shell-style pipeline. */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void on_alarm_signal(int sig) { (void)sig; }

/* A child's body: fill the pipe, then block writing one more byte until
 * SIGALRM (handled) interrupts it; exits 0 if that write gave EINTR.
 * With `forever`, goes on blocking instead of exiting. */
static void fill_and_block(int fd, int forever) {
    struct sigaction sa = {.sa_handler = on_alarm_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char block[4096] = {0};
    while (write(fd, block, sizeof block) > 0) {
    }
    fcntl(fd, F_SETFL, 0);
    alarm(1);
    ssize_t n = write(fd, block, 1);
    int interrupted = n == -1 && errno == EINTR;
    while (forever) write(fd, block, sizeof block); /* blocks for good */
    _exit(interrupted ? 0 : 1);
}

/* A writer blocked on a full pipe: a handled signal ends the write with
 * EINTR, SIGKILL ends the process (even when it holds the read end). */
static void blocked_writers(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) fill_and_block(fds[1], 1);
    /* Let it block, then kill it: it holds its own read end open. */
    struct timespec pause_for = {2, 0};
    nanosleep(&pause_for, NULL);
    CHECK(kill(child, SIGKILL) == 0);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    close(fds[0]);
    close(fds[1]);
    /* The EINTR part, checked through the exit code of a second child. */
    CHECK(pipe(fds) == 0);
    child = fork();
    if (child == 0) fill_and_block(fds[1], 0);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);
}

/* O_ASYNC: data arriving in a pipe signals the read end's owner, with the
 * F_SETSIG signal (POLL_IN, si_band) or SIGIO. */
static void signal_driven(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGIO);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    CHECK(fcntl(fds[0], F_SETOWN, getpid()) == 0 && fcntl(fds[0], F_SETSIG, SIGUSR1) == 0);
    CHECK(fcntl(fds[0], F_SETFL, O_ASYNC) == 0 && (fcntl(fds[0], F_GETFL) & O_ASYNC));
    CHECK(write(fds[1], "x", 1) == 1);
    struct timespec zero = {1, 0};
    siginfo_t info;
    CHECK(sigtimedwait(&set, &info, &zero) == SIGUSR1 && info.si_code == POLL_IN && (info.si_band & POLLIN));
    CHECK(fcntl(fds[0], F_SETSIG, 0) == 0);
    CHECK(write(fds[1], "y", 1) == 1);
    CHECK(sigtimedwait(&set, &info, &zero) == SIGIO);
    /* Without O_ASYNC: nothing. */
    CHECK(fcntl(fds[0], F_SETFL, 0) == 0);
    CHECK(write(fds[1], "z", 1) == 1);
    struct timespec brief = {0, 20 * 1000000};
    CHECK_ERR(sigtimedwait(&set, &info, &brief), EAGAIN);
    /* An ordinary user cannot aim the signal at another user's process. */
    fflush(stdout);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &usr2, NULL) == 0);
    pid_t child = fork();
    if (child == 0) {
        int q[2];
        if (setuid(65534) != 0 || pipe(q) != 0) _exit(2);
        fcntl(q[0], F_SETOWN, getppid());
        fcntl(q[0], F_SETSIG, SIGUSR2);
        fcntl(q[0], F_SETFL, O_ASYNC);
        _exit(write(q[1], "x", 1) == 1 ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sigset_t pending;
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR2));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    close(fds[0]);
    close(fds[1]);
}

/* A new pipe of an unprivileged user gets at most pipe-max-size; root
 * (CAP_SYS_RESOURCE) gets the full 64 KiB (LTP fcntl35). */
static void default_capacity(void) {
    if (geteuid() != 0) return;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    long saved = 0;
    CHECK(f && fscanf(f, "%ld", &saved) == 1);
    if (f) fclose(f);
    f = fopen("/proc/sys/fs/pipe-max-size", "w");
    CHECK(f && fprintf(f, "4096\n") > 0);
    if (f) fclose(f);
    /* Root's share depends on CAP_SYS_RESOURCE (a container may lack it). */
    unsigned long long eff = 0;
    char line[256];
    f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "CapEff:", 7)) eff = strtoull(line + 7, NULL, 16);
    if (f) fclose(f);
    int fds[2];
    CHECK(pipe(fds) == 0 && fcntl(fds[1], F_GETPIPE_SZ) == ((eff >> 24) & 1 ? 65536 : 4096));
    close(fds[0]);
    close(fds[1]);
    pid_t kid = fork();
    if (kid == 0) {
        if (setuid(1000) != 0 || pipe(fds) != 0) _exit(2);
        _exit(fcntl(fds[1], F_GETPIPE_SZ) == 4096 ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    f = fopen("/proc/sys/fs/pipe-max-size", "w");
    CHECK(f && fprintf(f, "%ld\n", saved) > 0);
    if (f) fclose(f);
}

/* epoll instances nest at most five deep (LTP epoll_ctl04). */
static void epoll_depth(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    int inner = fds[0];
    struct epoll_event ev = {.events = EPOLLIN};
    for (int depth = 0; depth < 5; depth++) {
        int ep = epoll_create1(0);
        ev.data.fd = inner;
        CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, inner, &ev) == 0);
        inner = ep;
    }
    int top = epoll_create1(0);
    ev.data.fd = inner;
    errno = 0;
    CHECK(epoll_ctl(top, EPOLL_CTL_ADD, inner, &ev) == -1 && (errno == EINVAL || errno == ELOOP));
    /* Five levels work: data in the pipe shows at the top. */
    CHECK(write(fds[1], "x", 1) == 1);
    struct epoll_event got;
    CHECK(epoll_wait(inner, &got, 1, 0) == 1);
    close(top);
    for (int fd = inner; fd > fds[1]; fd--) close(fd);
    close(fds[0]);
    close(fds[1]);
}

int main(void) {
    default_capacity();
    epoll_depth();
    signal_driven();
    blocked_writers();
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(write(fds[1], "abc", 3) == 3);
    char buf[128];
    CHECK(read(fds[0], buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);

    /* Between processes: the child writes, the parent reads to EOF. */
    pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        for (int i = 0; i < 100; i++)
            if (write(fds[1], "0123456789", 10) != 10)
                _exit(1);
        _exit(0);
    }
    close(fds[1]);
    long total = 0;
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0)
        total += n;
    CHECK(n == 0 && total == 1000);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WEXITSTATUS(status) == 0);
    close(fds[0]);

    /* No reader: EPIPE and SIGPIPE (ignored here, so we see EPIPE). */
    signal(SIGPIPE, SIG_IGN);
    CHECK(pipe(fds) == 0);
    close(fds[0]);
    CHECK(write(fds[1], "x", 1) == -1 && errno == EPIPE);
    close(fds[1]);
    /* Default SIGPIPE kills a writer. (The read end is closed before the
     * fork, so no reader can exist when the child writes.) */
    CHECK(pipe(fds) == 0);
    close(fds[0]);
    child = fork();
    if (child == 0) {
        signal(SIGPIPE, SIG_DFL);
        write(fds[1], "x", 1);
        _exit(0);
    }
    close(fds[1]);
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE);

    /* Non-blocking: an empty pipe is EAGAIN; a full one too. */
    CHECK(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK(read(fds[0], buf, 1) == -1 && errno == EAGAIN);
    CHECK((fcntl(fds[0], F_GETFL) & O_NONBLOCK) && (fcntl(fds[1], F_GETFD) & FD_CLOEXEC));
    long filled = 0;
    char block[4096];
    memset(block, 'z', sizeof block);
    while ((n = write(fds[1], block, sizeof block)) > 0)
        filled += n;
    CHECK(n == -1 && errno == EAGAIN && filled >= 4096);

    /* poll: readable now; a timeout when nothing happens. */
    struct pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLOUT, 0}};
    CHECK(poll(p, 2, 0) == 1 && (p[0].revents & POLLIN) && !(p[1].revents & POLLOUT));
    while (read(fds[0], block, sizeof block) > 0) {
    }
    long long start = ms_now();
    struct pollfd q = {fds[0], POLLIN, 0};
    CHECK(poll(&q, 1, 100) == 0);
    CHECK(ms_now() - start >= 90);
    close(fds[1]);
    CHECK(poll(&q, 1, 1000) == 1 && (q.revents & POLLHUP));
    close(fds[0]);

    /* select: a child makes the pipe readable after a while. */
    CHECK(pipe(fds) == 0);
    child = fork();
    if (child == 0) {
        usleep(50 * 1000);
        write(fds[1], "!", 1);
        _exit(0);
    }
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fds[0], &rd);
    struct timeval tv = {2, 0};
    CHECK(select(fds[0] + 1, &rd, NULL, NULL, &tv) == 1 && FD_ISSET(fds[0], &rd));
    waitpid(child, NULL, 0);
    close(fds[0]);
    close(fds[1]);

    /* A pipeline of two processes, as a shell builds it. */
    CHECK(pipe(fds) == 0);
    pid_t left = fork();
    if (left == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        printf("through the pipeline\n");
        fflush(stdout);
        _exit(0);
    }
    int out[2];
    CHECK(pipe(out) == 0);
    pid_t right = fork();
    if (right == 0) {
        dup2(fds[0], 0);
        dup2(out[1], 1);
        close(fds[0]);
        close(fds[1]);
        close(out[0]);
        close(out[1]);
        char line[64];
        ssize_t got = read(0, line, sizeof line);
        for (ssize_t i = 0; i < got; i++)
            if (line[i] >= 'a' && line[i] <= 'z')
                line[i] -= 32;
        write(1, line, got > 0 ? got : 0);
        _exit(0);
    }
    close(fds[0]);
    close(fds[1]);
    close(out[1]);
    n = read(out[0], buf, sizeof buf);
    CHECK(n == 21 && memcmp(buf, "THROUGH THE PIPELINE\n", 21) == 0);
    waitpid(left, NULL, 0);
    waitpid(right, NULL, 0);
    return tt_done("pipes");
}
