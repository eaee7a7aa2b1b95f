/* Job control signals: SIGSTOP/SIGTSTP stop a process, SIGCONT resumes it,
 * and wait4 reports both (WUNTRACED, WCONTINUED); SIGKILL ends a stopped
 * process; a SIGTSTP handler runs instead of stopping. */
#include "tessera_test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_tstp;
static void on_tstp(int sig) {
    (void)sig;
    got_tstp = 1;
}

static volatile long *thread_counter;

static void *spin(void *arg) {
    (void)arg;
    for (;;) thread_counter[0]++;
    return NULL;
}

int main(void) {
    volatile long *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(counter != MAP_FAILED);
    pid_t child = fork();
    if (child == 0) {
        for (;;) {
            counter[0]++;
            usleep(1000);
        }
    }
    usleep(50 * 1000);
    int status = 0;
    CHECK(kill(child, SIGSTOP) == 0);
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
    long frozen = counter[0];
    usleep(100 * 1000);
    CHECK(counter[0] == frozen); /* really stopped */
    CHECK(waitpid(child, &status, WNOHANG | WUNTRACED) == 0); /* reported once */
    CHECK(kill(child, SIGCONT) == 0);
    CHECK(waitpid(child, &status, WCONTINUED) == child && WIFCONTINUED(status));
    usleep(100 * 1000);
    CHECK(counter[0] > frozen); /* running again */
    CHECK(kill(child, SIGTSTP) == 0);
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status) && WSTOPSIG(status) == SIGTSTP);
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* A read blocked when the process is stopped and continued carries on
     * (it does not fail with EINTR); an ignored signal does not end it
     * either. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    child = fork();
    if (child == 0) {
        signal(SIGUSR1, SIG_IGN);
        char buf[8] = {0};
        ssize_t n = read(fds[0], buf, sizeof buf);
        _exit(n == 5 && memcmp(buf, "after", 5) == 0 ? 0 : 1);
    }
    usleep(100 * 1000);
    CHECK(kill(child, SIGSTOP) == 0);
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status));
    CHECK(kill(child, SIGCONT) == 0);
    CHECK(kill(child, SIGUSR1) == 0);
    usleep(100 * 1000);
    CHECK(write(fds[1], "after", 5) == 5);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);

    /* A stop stops every thread of the process, not only the one that
     * took the signal; SIGCONT resumes them all. */
    thread_counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(thread_counter != MAP_FAILED);
    child = fork();
    if (child == 0) {
        pthread_t worker;
        pthread_create(&worker, NULL, spin, NULL);
        pthread_join(worker, NULL); /* never returns */
        _exit(1);
    }
    while (thread_counter[0] == 0) usleep(1000);
    CHECK(kill(child, SIGSTOP) == 0);
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status));
    usleep(50 * 1000);
    long stopped_at = thread_counter[0];
    usleep(200 * 1000);
    CHECK(thread_counter[0] == stopped_at); /* the worker thread stopped too */
    CHECK(kill(child, SIGCONT) == 0);
    usleep(200 * 1000);
    CHECK(thread_counter[0] > stopped_at);
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));

    /* A sleep stopped and continued goes on for the time it had left and
     * returns 0 (not EINTR). */
    child = fork();
    if (child == 0) {
        struct timespec t = {0, 400 * 1000 * 1000}, start, end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int r = nanosleep(&t, NULL);
        clock_gettime(CLOCK_MONOTONIC, &end);
        long ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
        _exit(r == 0 && ms >= 400 ? 0 : 1);
    }
    usleep(100 * 1000);
    CHECK(kill(child, SIGSTOP) == 0);
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status));
    CHECK(kill(child, SIGCONT) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* With a handler, SIGTSTP does not stop. */
    signal(SIGTSTP, on_tstp);
    CHECK(raise(SIGTSTP) == 0);
    CHECK(got_tstp == 1);
    return tt_done("jobs");
}
