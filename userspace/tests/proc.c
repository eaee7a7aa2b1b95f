/* Processes: fork, exit status, wait4 variants, execve, process groups,
 * sessions, and copy-on-write isolation between parent and child. */
#include "tessera_test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int shared_counter = 5;

static void child_mode(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "exit-with") == 0) {
        /* Re-executed by the parent: prove argv and environment arrived. */
        const char *marker = getenv("TESSERA_MARKER");
        if (marker == NULL || strcmp(marker, "yes") != 0)
            _exit(90);
        _exit(atoi(argv[2]));
    }
}

int main(int argc, char **argv) {
    child_mode(argc, argv);
    pid_t me = getpid();
    CHECK(me > 0);
    CHECK(getppid() >= 0);

    /* fork + _exit status */
    pid_t child = fork();
    if (child == 0) {
        if (getppid() != me)
            _exit(99);
        _exit(42);
    }
    CHECK(child > 0 && child != me);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);

    /* No children left: ECHILD. WNOHANG with a running child: 0. */
    CHECK_ERR(waitpid(-1, &status, 0), ECHILD);
    int pipe_like[1];
    (void)pipe_like;
    child = fork();
    if (child == 0) {
        usleep(200 * 1000);
        _exit(3);
    }
    CHECK(waitpid(child, &status, WNOHANG) == 0);
    CHECK(waitpid(child, &status, 0) == child && WEXITSTATUS(status) == 3);

    /* Copy-on-write: the child's writes stay in the child. */
    char *heap = malloc(3 * 4096);
    CHECK(heap != NULL);
    memset(heap, 'p', 3 * 4096);
    child = fork();
    if (child == 0) {
        shared_counter = 100;
        memset(heap, 'c', 3 * 4096);
        _exit(shared_counter == 100 && heap[5000] == 'c' ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(shared_counter == 5);
    CHECK(heap[0] == 'p' && heap[3 * 4096 - 1] == 'p');
    shared_counter++; /* the parent can still write after the child left */
    CHECK(shared_counter == 6);
    free(heap);

    /* MAP_SHARED anonymous memory is shared with the child. */
    int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    if (shared != MAP_FAILED) {
        *shared = 1;
        child = fork();
        if (child == 0) {
            *shared = 77;
            _exit(0);
        }
        CHECK(waitpid(child, &status, 0) == child);
        CHECK(*shared == 77);
        munmap(shared, 4096);
    }

    /* Many children, reaped in any order. */
    int n = 12, reaped = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0)
            _exit(i);
        CHECK(c > 0);
    }
    while (1) {
        pid_t c = wait(&status);
        if (c < 0)
            break;
        reaped++;
        sum += WEXITSTATUS(status);
    }
    CHECK(reaped == n && sum == n * (n - 1) / 2);

    /* execve: argv and envp reach the new image; exit status comes back. */
    child = fork();
    if (child == 0) {
        char *args[] = {argv[0], "exit-with", "23", NULL};
        char *env[] = {"TESSERA_MARKER=yes", NULL};
        execve("/proc/self/exe", args, env);
        execve(argv[0], args, env);
        _exit(91);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 23);
    char *none[] = {"x", NULL};
    CHECK_ERR(execve("/no/such/program", none, none), ENOENT);

    /* Killed child: WIFSIGNALED with the signal. */
    child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_ERR(kill(child, 0), ESRCH);

    /* Preemption: a child that never blocks still lets its parent run, and
     * the parent, spinning too, lets the child run. */
    volatile long *progress = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(progress != MAP_FAILED);
    if (progress != MAP_FAILED) {
        child = fork();
        if (child == 0) {
            for (;;)
                progress[0]++;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long seen = 0;
        do { /* spin for 300 ms without a system call that blocks */
            seen = progress[0];
            clock_gettime(CLOCK_MONOTONIC, &t1);
        } while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 300000000L);
        CHECK(seen > 0);
        kill(child, SIGKILL);
        CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
    }

    /* Process groups and sessions. */
    child = fork();
    if (child == 0) {
        if (setpgid(0, 0) != 0 || getpgrp() != getpid())
            _exit(1);
        if (setsid() != -1 || errno != EPERM) /* a group leader cannot */
            _exit(2);
        _exit(0);
    }
    CHECK(waitpid(child, &status, 0) == child && WEXITSTATUS(status) == 0);
    child = fork();
    if (child == 0) {
        pid_t s = setsid();
        _exit(s == getpid() && getsid(0) == getpid() && getpgid(0) == getpid() ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WEXITSTATUS(status) == 0);
    CHECK(getpgid(0) == getpgrp());
    return tt_done("proc");
}
