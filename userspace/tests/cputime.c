/* CPU time as Linux accounts it: times(), getrusage() (self, children,
 * thread), wait4's rusage, CLOCK_PROCESS_CPUTIME_ID, /proc/self/stat and
 * /proc/stat. A busy loop counts; a sleep does not. Only bounds that
 * cannot fail on a busy machine are checked: CPU time never exceeds the
 * wall time that passed, and a loop that ran for 300 ms of CPU time (as
 * the process clock measures it) shows at least that. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Spins until this process has used `seconds` of CPU time. */
static void burn(double seconds) {
    double start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    volatile unsigned long x = 0;
    while (clock_s(CLOCK_PROCESS_CPUTIME_ID) - start < seconds) x++;
}

static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

/* Red team: threads that burn a little and exit while another thread
 * reads the process's CPU time, which must never go back (an ending
 * thread was counted twice for a moment, then once). */
static void *burn_briefly(void *arg) {
    (void)arg;
    double start = clock_s(CLOCK_THREAD_CPUTIME_ID);
    while (clock_s(CLOCK_THREAD_CPUTIME_ID) - start < 0.003) ;
    return 0;
}
static volatile int sampling = 1;
static int went_back;
static void *sample_process_time(void *arg) {
    (void)arg;
    double last_clock = 0, last_usage = 0;
    while (sampling) {
        double now = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double usage = tv(ru.ru_utime) + tv(ru.ru_stime);
        if (now < last_clock || usage + 1e-6 < last_usage) went_back++;
        last_clock = now;
        last_usage = usage;
    }
    return 0;
}

int main(void) {
    long hz = sysconf(_SC_CLK_TCK);
    CHECK(hz == 100);
    double wall0 = clock_s(CLOCK_MONOTONIC), cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    burn(0.3);
    double wall1 = clock_s(CLOCK_MONOTONIC), cpu1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    CHECK(cpu1 - cpu0 >= 0.3 && cpu1 - cpu0 <= wall1 - wall0 + 0.01);
    struct tms t;
    CHECK(times(&t) != (clock_t)-1);
    CHECK(t.tms_utime + t.tms_stime >= 28); /* >= 0.28 s in ticks */
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0 && tv(ru.ru_utime) + tv(ru.ru_stime) >= 0.28);
    CHECK(ru.ru_maxrss > 0);
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0 && tv(ru.ru_utime) + tv(ru.ru_stime) >= 0.28);
    CHECK(clock_s(CLOCK_THREAD_CPUTIME_ID) >= 0.28);
    /* Sleeping uses (almost) no CPU time. */
    double before = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    usleep(300000);
    CHECK(clock_s(CLOCK_PROCESS_CPUTIME_ID) - before < 0.15);
    /* A child's time shows in wait4's rusage and, once waited for, in the
     * children's totals. */
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && tv(ru.ru_utime) + tv(ru.ru_stime) < 0.01);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        burn(0.2);
        _exit(0);
    }
    int status;
    CHECK(wait4(child, &status, 0, &ru) == child && tv(ru.ru_utime) + tv(ru.ru_stime) >= 0.19);
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && tv(ru.ru_utime) + tv(ru.ru_stime) >= 0.19);
    CHECK(times(&t) != (clock_t)-1 && t.tms_cutime + t.tms_cstime >= 19);
    /* /proc/self/stat: utime+stime (fields 14, 15), starttime (22), vsize (23). */
    FILE *f = fopen("/proc/self/stat", "r");
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    CHECK(f && fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu",
                      &utime, &stime, &start, &vsize) == 4);
    if (f) fclose(f);
    CHECK(utime + stime >= 28 && vsize > 4096);
    /* /proc/stat: the figures only grow, and together they grow with time
     * (what share is idle depends on what else the machine does). */
    unsigned long long user1, nice1, sys1, idle1, user2, nice2, sys2, idle2;
    f = fopen("/proc/stat", "r");
    CHECK(f && fscanf(f, "cpu %llu %llu %llu %llu", &user1, &nice1, &sys1, &idle1) == 4);
    if (f) fclose(f);
    usleep(300000);
    f = fopen("/proc/stat", "r");
    CHECK(f && fscanf(f, "cpu %llu %llu %llu %llu", &user2, &nice2, &sys2, &idle2) == 4);
    if (f) fclose(f);
    CHECK(idle2 >= idle1 && user2 >= user1 && sys2 >= sys1);
    CHECK(user2 + sys2 + idle2 > user1 + sys1 + idle1);
    /* The process's CPU time only grows while its threads come and go. */
    pthread_t sampler;
    CHECK(pthread_create(&sampler, 0, sample_process_time, 0) == 0);
    for (int round = 0; round < 100; round++) {
        pthread_t burners[3];
        for (int i = 0; i < 3; i++) pthread_create(&burners[i], 0, burn_briefly, 0);
        for (int i = 0; i < 3; i++) pthread_join(burners[i], 0);
    }
    sampling = 0;
    pthread_join(sampler, 0);
    CHECK(went_back == 0);
    return tt_done("cputime");
}
