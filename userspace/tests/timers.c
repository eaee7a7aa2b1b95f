/* Timers that raise signals, as Linux has them: alarm, setitimer and
 * getitimer (ITIMER_REAL and ITIMER_VIRTUAL), and POSIX timers
 * (timer_create with SIGEV_SIGNAL and SIGEV_NONE, absolute and periodic
 * timers, timer_gettime, timer_delete), and their errors. Only lower
 * bounds on time are checked: a timer never fires early. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms, vtalarms;
static void on_alarm(int sig) { (void)sig; alarms++; }
static void on_vtalarm(int sig) { (void)sig; vtalarms++; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* adjtimex reads the clock's NTP state; setting it needs root; the tick
 * stays within 10% of 1/HZ; only the wall clock is adjustable. Nothing is
 * changed (the test also runs on the Linux host). */
static void ntp_state(void) {
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    int state = adjtimex(&tx);
    CHECK(state >= 0 && state <= 5);
    long hz = sysconf(_SC_CLK_TCK);
    CHECK(tx.tick >= 900000 / hz && tx.tick <= 1100000 / hz);
    CHECK(tx.time.tv_sec > 1000000000); /* the wall-clock time */
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_TICK;
    tx.tick = 1100000 / hz + 1;
    CHECK_ERR(adjtimex(&tx), EINVAL);
    tx.tick = 900000 / hz - 1;
    CHECK_ERR(adjtimex(&tx), EINVAL);
    memset(&tx, 0, sizeof tx);
    CHECK_ERR(clock_adjtime(CLOCK_MONOTONIC, &tx), EOPNOTSUPP);
    CHECK(clock_adjtime(CLOCK_REALTIME, &tx) >= 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (setuid(65534) != 0) _exit(2);
        struct timex t;
        memset(&t, 0, sizeof t);
        t.modes = ADJ_FREQUENCY;
        _exit(adjtimex(&t) == -1 && errno == EPERM ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static volatile int cpu_fired;
static volatile long long fired_at_ns;
static void on_cpu_timer(int sig) {
    (void)sig;
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    fired_at_ns = (long long)t.tv_sec * 1000000000 + t.tv_nsec;
    cpu_fired++;
}

static long long cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (long long)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* CPU-time timers count CPU time, not wall time: asleep they do not
 * fire; busy, they fire once the clock reached their value. */
static void cpu_timers(void) {
    signal(SIGVTALRM, on_cpu_timer);
    struct itimerval v = {{0, 0}, {0, 50000}}; /* 50 ms of user time */
    long long start = cpu_ns();
    cpu_fired = 0;
    CHECK(setitimer(ITIMER_VIRTUAL, &v, NULL) == 0);
    usleep(200000);
    CHECK(cpu_fired == 0);
    while (!cpu_fired && cpu_ns() - start < 5000000000LL) {}
    CHECK(cpu_fired == 1 && fired_at_ns - start >= 50000000);
    signal(SIGVTALRM, SIG_DFL);

    signal(SIGUSR2, on_cpu_timer);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR2;
    timer_t t;
    CHECK(timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &t) == 0);
    struct itimerspec spec = {{0, 0}, {0, 60000000}};
    start = cpu_ns();
    cpu_fired = 0;
    CHECK(timer_settime(t, 0, &spec, NULL) == 0);
    usleep(200000);
    CHECK(cpu_fired == 0);
    struct itimerspec left;
    CHECK(timer_gettime(t, &left) == 0 && left.it_value.tv_sec == 0 && left.it_value.tv_nsec > 0);
    while (!cpu_fired && cpu_ns() - start < 5000000000LL) {}
    CHECK(cpu_fired == 1 && fired_at_ns - start >= 60000000);
    CHECK(timer_delete(t) == 0);
    signal(SIGUSR2, SIG_DFL);
}

int main(void) {
    cpu_timers();
    signal(SIGALRM, on_alarm);
    ntp_state();

    /* alarm returns what the previous one had left. */
    CHECK(alarm(10) == 0);
    unsigned left = alarm(0);
    CHECK(left == 10 || left == 9);
    CHECK(alarm(0) == 0);
    double start = now();
    alarm(1);
    while (alarms == 0) pause();
    CHECK(alarms == 1 && now() - start >= 0.9);

    /* setitimer/getitimer: one shot. */
    struct itimerval tv = {.it_value = {0, 200000}}, got;
    CHECK(setitimer(ITIMER_REAL, &tv, NULL) == 0);
    CHECK(getitimer(ITIMER_REAL, &got) == 0);
    CHECK(got.it_value.tv_sec == 0 && got.it_value.tv_usec > 0 && got.it_value.tv_usec <= 200000);
    CHECK(got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 0);
    start = now();
    while (alarms == 1) pause();
    CHECK(alarms == 2 && now() - start >= 0.15);
    CHECK(getitimer(ITIMER_REAL, &got) == 0 && got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0);

    /* Periodic, then disarmed (the old value comes back). */
    struct itimerval periodic = {.it_interval = {0, 20000}, .it_value = {0, 20000}};
    CHECK(setitimer(ITIMER_REAL, &periodic, NULL) == 0);
    while (alarms < 5) pause();
    struct itimerval off = {0}, old;
    CHECK(setitimer(ITIMER_REAL, &off, &old) == 0);
    CHECK(old.it_interval.tv_usec == 20000);
    int count = alarms;
    usleep(100000);
    CHECK(alarms == count);

    /* Errors. */
    CHECK_ERR(setitimer(7, &tv, NULL), EINVAL);
    struct itimerval bad = {.it_value = {0, 1000000}};
    CHECK_ERR(setitimer(ITIMER_REAL, &bad, NULL), EINVAL);
    CHECK_ERR(getitimer(-1, &got), EINVAL);

    /* ITIMER_VIRTUAL counts while we run: SIGVTALRM during a busy loop. */
    signal(SIGVTALRM, on_vtalarm);
    struct itimerval virt = {.it_value = {0, 50000}};
    CHECK(setitimer(ITIMER_VIRTUAL, &virt, NULL) == 0);
    start = now();
    while (vtalarms == 0 && now() - start < 20) {
    }
    CHECK(vtalarms == 1);

    /* A forked child does not inherit the interval timers. */
    CHECK(setitimer(ITIMER_REAL, &(struct itimerval){.it_value = {30, 0}}, NULL) == 0);
    pid_t child = fork();
    if (child == 0) {
        struct itimerval c;
        _exit(getitimer(ITIMER_REAL, &c) == 0 && c.it_value.tv_sec == 0 && c.it_value.tv_usec == 0 ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    alarm(0);

    /* POSIX timers: a signal with the value asked for, SI_TIMER. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1, .sigev_value.sival_int = 42};
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0);
    struct itimerspec spec = {.it_value = {0, 50000000}}, cur;
    CHECK(timer_settime(timer, 0, &spec, NULL) == 0);
    CHECK(timer_gettime(timer, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0);
    siginfo_t info;
    start = now();
    CHECK(sigwaitinfo(&usr1, &info) == SIGUSR1);
    CHECK(now() - start >= 0.04);
    CHECK(info.si_code == SI_TIMER && info.si_value.sival_int == 42);
    CHECK(timer_gettime(timer, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    CHECK(timer_getoverrun(timer) >= 0);

    /* Absolute, on CLOCK_REALTIME; then periodic. */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    wall.tv_nsec += 100000000;
    if (wall.tv_nsec >= 1000000000) {
        wall.tv_sec++;
        wall.tv_nsec -= 1000000000;
    }
    timer_t abs_timer;
    CHECK(timer_create(CLOCK_REALTIME, &ev, &abs_timer) == 0);
    struct itimerspec at = {.it_value = wall};
    CHECK(timer_settime(abs_timer, TIMER_ABSTIME, &at, NULL) == 0);
    CHECK(sigwaitinfo(&usr1, &info) == SIGUSR1);
    struct timespec after;
    clock_gettime(CLOCK_REALTIME, &after);
    CHECK(after.tv_sec > wall.tv_sec || (after.tv_sec == wall.tv_sec && after.tv_nsec >= wall.tv_nsec - 1000000));
    struct itimerspec every = {.it_interval = {0, 10000000}, .it_value = {0, 10000000}};
    CHECK(timer_settime(timer, 0, &every, NULL) == 0);
    for (int i = 0; i < 3; i++) CHECK(sigwaitinfo(&usr1, &info) == SIGUSR1);
    /* Expiries while its signal is pending send no other: they are the
     * signal's si_overrun, and timer_getoverrun says the same once it is
     * taken (10 periods pass in the sleep: at least 8 after the one that
     * sent it). */
    usleep(100000);
    CHECK(sigwaitinfo(&usr1, &info) == SIGUSR1);
    CHECK(info.si_code == SI_TIMER && info.si_overrun >= 8);
    CHECK(timer_getoverrun(timer) == info.si_overrun);
    CHECK(timer_delete(timer) == 0);
    CHECK(timer_delete(abs_timer) == 0);

    /* SIGEV_NONE: nothing is sent, the timer can be read. */
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    timer_t quiet;
    CHECK(timer_create(CLOCK_MONOTONIC, &none, &quiet) == 0);
    struct itimerspec long_one = {.it_value = {100, 0}};
    CHECK(timer_settime(quiet, 0, &long_one, NULL) == 0);
    CHECK(timer_gettime(quiet, &cur) == 0 && cur.it_value.tv_sec >= 98);
    CHECK(timer_delete(quiet) == 0);

    /* Errors. */
    CHECK_ERR(timer_gettime(quiet, &cur), EINVAL);
    CHECK_ERR(timer_create(99, &ev, &timer), EINVAL);
    struct sigevent bad_sig = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = 1000};
    CHECK_ERR(timer_create(CLOCK_MONOTONIC, &bad_sig, &timer), EINVAL);
    CHECK(timer_create(CLOCK_MONOTONIC, NULL, &timer) == 0);
    struct itimerspec bad_ns = {.it_value = {0, 1000000000}};
    CHECK_ERR(timer_settime(timer, 0, &bad_ns, NULL), EINVAL);
    CHECK(timer_delete(timer) == 0);
    return tt_done("timers");
}
