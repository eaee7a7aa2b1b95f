/* Threads: pthread create/join, shared memory, per-thread TLS and ids,
 * mutexes and condition variables (futex wait/wake), futex timeouts,
 * signals to one thread, and exit_group from a thread. */
#include "tessera_test.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* From <linux/futex.h>, which musl's headers do not include. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

#define THREADS 8
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int ready;
static __thread int tls_value;
static volatile pid_t tids[THREADS];

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    tls_value = index * 10;
    tids[index] = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
        if (i % 500 == 0)
            sched_yield();
    }
    return (void *)(intptr_t)(tls_value + 1);
}

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return (void *)7;
}

static volatile sig_atomic_t usr1_tid;
static void on_usr1(int sig) {
    (void)sig;
    usr1_tid = (sig_atomic_t)syscall(SYS_gettid);
}

static volatile int spin_forever = 1;
static void *sleeper(void *arg) {
    (void)arg;
    while (spin_forever)
        usleep(1000);
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    int joined_ok = 1;
    for (int i = 0; i < THREADS; i++) {
        void *result = NULL;
        if (pthread_join(t[i], &result) != 0 || (intptr_t)result != i * 10 + 1)
            joined_ok = 0;
    }
    CHECK(joined_ok);
    CHECK(counter == (long)THREADS * ROUNDS);
    int distinct = 1;
    for (int i = 0; i < THREADS; i++) {
        if (tids[i] == getpid() || tids[i] <= 0)
            distinct = 0;
        for (int j = 0; j < i; j++)
            if (tids[i] == tids[j])
                distinct = 0;
    }
    CHECK(distinct);
    CHECK(tls_value == 0); /* the main thread's TLS is its own */

    /* Condition variable: a thread waits until the main thread signals. */
    pthread_t w;
    CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
    usleep(20000);
    pthread_mutex_lock(&lock);
    ready = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    void *wres = NULL;
    CHECK(pthread_join(w, &wres) == 0 && (intptr_t)wres == 7);

    /* futex: a mismatched value does not sleep; a timeout expires. */
    int word = 1;
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0), EAGAIN);
    struct timespec ts = {0, 20 * 1000 * 1000};
    CHECK_ERR(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0), ETIMEDOUT);
    CHECK(syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 0);
    CHECK_ERR(syscall(SYS_futex, (char *)&word + 1, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0), EINVAL);

    /* A signal sent to one thread runs its handler on that thread. */
    signal(SIGUSR1, on_usr1);
    pthread_t s;
    CHECK(pthread_create(&s, NULL, sleeper, NULL) == 0);
    usleep(20000);
    CHECK(pthread_kill(s, SIGUSR1) == 0);
    for (int i = 0; i < 200 && usr1_tid == 0; i++)
        usleep(1000);
    CHECK(usr1_tid != 0 && usr1_tid != getpid());
    spin_forever = 0;
    CHECK(pthread_join(s, NULL) == 0);

    /* exit() from any thread ends the whole process with that status. */
    pid_t child = fork();
    if (child == 0) {
        pthread_t forever;
        spin_forever = 1;
        pthread_create(&forever, NULL, sleeper, NULL);
        exit(9); /* exit_group while the other thread runs */
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 9);
    return tt_done("threads");
}
