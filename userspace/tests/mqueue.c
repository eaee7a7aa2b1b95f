/* POSIX message queues as Linux has them: mq_open's rules and limits,
 * priorities, blocking, time-outs, attributes, notification by signal,
 * unlinking; and /proc/sys tunables root may write. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char name[64];

static void basics(void) {
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 32};
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
    CHECK(q != (mqd_t)-1);
    CHECK_ERR(mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr), EEXIST);
    CHECK_ERR(mq_open("/tessera-no-such-queue", O_RDWR), ENOENT);
    struct mq_attr bad = {.mq_maxmsg = 0, .mq_msgsize = 32};
    CHECK_ERR(mq_open("/tessera-bad-queue", O_CREAT | O_RDWR, 0600, &bad), EINVAL);
    struct mq_attr got;
    CHECK(mq_getattr(q, &got) == 0 && got.mq_maxmsg == 4 && got.mq_msgsize == 32 && got.mq_curmsgs == 0);
    /* Highest priority first, then oldest first. */
    CHECK(mq_send(q, "low", 3, 1) == 0);
    CHECK(mq_send(q, "high", 4, 9) == 0);
    CHECK(mq_send(q, "low2", 4, 1) == 0);
    CHECK_ERR(mq_send(q, "x", 1, 40000), EINVAL); /* priority >= MQ_PRIO_MAX */
    char big[64] = {0};
    CHECK_ERR(mq_send(q, big, 33, 0), EMSGSIZE);
    CHECK(mq_getattr(q, &got) == 0 && got.mq_curmsgs == 3);
    char buf[64];
    unsigned prio = 0;
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 4 && memcmp(buf, "high", 4) == 0 && prio == 9);
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 3 && memcmp(buf, "low", 3) == 0 && prio == 1);
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 4 && memcmp(buf, "low2", 4) == 0);
    CHECK_ERR(mq_receive(q, buf, 16, &prio), EMSGSIZE); /* smaller than mq_msgsize */
    /* Empty: a time-out; non-blocking: EAGAIN. */
    struct timespec when;
    clock_gettime(CLOCK_REALTIME, &when);
    when.tv_nsec += 20 * 1000000;
    if (when.tv_nsec >= 1000000000) {
        when.tv_sec++;
        when.tv_nsec -= 1000000000;
    }
    CHECK_ERR(mq_timedreceive(q, buf, sizeof buf, &prio, &when), ETIMEDOUT);
    struct mq_attr nb = {.mq_flags = O_NONBLOCK};
    CHECK(mq_setattr(q, &nb, &got) == 0 && got.mq_flags == 0);
    CHECK_ERR(mq_receive(q, buf, sizeof buf, &prio), EAGAIN);
    for (int i = 0; i < 4; i++) CHECK(mq_send(q, "m", 1, 0) == 0);
    CHECK_ERR(mq_send(q, "m", 1, 0), EAGAIN); /* full */
    CHECK(mq_getattr(q, &got) == 0 && got.mq_flags == O_NONBLOCK && got.mq_curmsgs == 4);
    /* The descriptor reads as Linux's status line. */
    char status[128] = {0};
    CHECK(read(q, status, sizeof status - 1) > 0 && strncmp(status, "QSIZE:4", 7) == 0);
    CHECK_ERR(mq_send(0, "m", 1, 0), EBADF); /* not a queue */
    mq_close(q);
    /* A receiver blocked on an empty queue is woken by a sender. */
    q = mq_open(name, O_RDWR);
    CHECK(q != (mqd_t)-1);
    while (mq_receive(q, buf, sizeof buf, &prio) >= 0 && mq_getattr(q, &got) == 0 && got.mq_curmsgs > 0) {
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        usleep(20 * 1000);
        _exit(mq_send(q, "wake", 4, 3) == 0 ? 0 : 1);
    }
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 4 && memcmp(buf, "wake", 4) == 0 && prio == 3);
    int st;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mq_close(q);
}

static volatile sig_atomic_t notified;
static volatile int notified_value, notified_code;
static void on_notify(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    notified = 1;
    notified_value = info->si_value.sival_int;
    notified_code = info->si_code;
}

static void notification(void) {
    struct sigaction sa = {.sa_sigaction = on_notify, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    mqd_t q = mq_open(name, O_RDWR);
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1, .sigev_value.sival_int = 77};
    CHECK(mq_notify(q, &ev) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(mq_notify(q, &ev) == -1 && errno == EBUSY ? 0 : 1);
    int st;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(mq_send(q, "n", 1, 0) == 0);
    for (int i = 0; i < 100 && !notified; i++) usleep(1000);
    CHECK(notified && notified_value == 77 && notified_code == SI_MESGQ);
    /* One notification per registration. */
    notified = 0;
    CHECK(mq_send(q, "n", 1, 0) == 0);
    usleep(10 * 1000);
    CHECK(!notified);
    CHECK(mq_notify(q, &ev) == 0 && mq_notify(q, NULL) == 0);
    struct sigevent badsig = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = 1000};
    CHECK_ERR(mq_notify(q, &badsig), EINVAL);
    mq_close(q);
}

static void permissions(void) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (setuid(65534) != 0) _exit(2);
        int ok = mq_open(name, O_RDWR) == (mqd_t)-1 && errno == EACCES;
        ok = ok && mq_unlink(name) == -1 && errno == EACCES;
        /* Beyond the unprivileged limits. */
        struct mq_attr large = {.mq_maxmsg = 1000, .mq_msgsize = 32};
        ok = ok && mq_open("/tessera-large-queue", O_CREAT | O_RDWR, 0600, &large) == (mqd_t)-1 && errno == EINVAL;
        _exit(ok ? 0 : 1);
    }
    int st;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(mq_unlink(name) == 0);
    CHECK_ERR(mq_unlink(name), ENOENT);
}

/* /proc/sys values root may write: a number, checked. */
static void tunables(void) {
    const char *path = "/proc/sys/fs/mqueue/queues_max";
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644);
    FILE *f = fopen(path, "r");
    long value = -1;
    CHECK(f && fscanf(f, "%ld", &value) == 1 && value > 0);
    if (f) fclose(f);
    int fd = open(path, O_WRONLY | O_TRUNC);
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", value);
    CHECK(fd >= 0 && write(fd, text, len) == len);
    close(fd);
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK_ERR(write(fd, "many\n", 5), EINVAL);
    close(fd);
    /* No descriptor left (RLIMIT_NOFILE 0): EMFILE, and no queue made. */
    pid_t kid = fork();
    if (kid == 0) {
        struct rlimit none = {0, 1024};
        setrlimit(RLIMIT_NOFILE, &none);
        errno = 0;
        int bad = mq_open(name, O_CREAT | O_RDWR, 0600, NULL) != -1 || errno != EMFILE;
        none.rlim_cur = 1024;
        setrlimit(RLIMIT_NOFILE, &none);
        errno = 0;
        bad |= mq_open(name, O_RDWR) != -1 || errno != ENOENT;
        _exit(bad);
    }
    int status = -1;
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The request is checked before the descriptor. */
    struct sigevent bad = {.sigev_notify = -1};
    CHECK_ERR(mq_notify(0, &bad), EINVAL);
}

int main(void) {
    snprintf(name, sizeof name, "/tessera-mq-%d", getpid());
    basics();
    notification();
    permissions();
    tunables();
    return tt_done("mqueue");
}
