/* Micro-benchmarks of the system-call layer, run under Tessera by
 * `make bench` (and on the host for reference). Prints one line per
 * benchmark: "bench NAME: N ns/op (ITERATIONS iterations)". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(const char *name, long long start, long iterations) {
    long long elapsed = now_ns() - start;
    printf("bench %s: %lld ns/op (%ld iterations)\n", name, elapsed / iterations, iterations);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exit") == 0)
        _exit(0);
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1)
        scale = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);

    long n = 20000 * scale;
    long long start = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
    report("null_syscall", start, n);

    n = 100 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child == 0)
            _exit(0);
        waitpid(child, NULL, 0);
    }
    report("fork_exit_wait", start, n);

    n = 50 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t child = fork();
        if (child == 0) {
            char *args[] = {argv[0], "exit", NULL};
            execv(argv[0], args);
            _exit(127);
        }
        int status;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("bench fork_exec_wait: exec failed\n");
            return 1;
        }
    }
    report("fork_exec_wait", start, n);

    /* The same with a dynamically linked program (Debian's true: the
     * loader maps libc and relocates): Tessera's test archive carries it
     * in /opt/tessera/debian, the host has /usr/bin/true. */
    const char *dynamic = access("/opt/tessera/debian/true", X_OK) == 0 ? "/opt/tessera/debian/true" : "/usr/bin/true";
    if (access(dynamic, X_OK) == 0) {
        start = now_ns();
        for (long i = 0; i < n; i++) {
            pid_t child = fork();
            if (child == 0) {
                char *args[] = {(char *)dynamic, NULL};
                execv(dynamic, args);
                _exit(127);
            }
            int status;
            waitpid(child, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                printf("bench fork_exec_dynamic_wait: %s failed\n", dynamic);
                return 1;
            }
        }
        report("fork_exec_dynamic_wait", start, n);
    }

    n = 2000 * scale;
    start = now_ns();
    for (long i = 0; i < n; i++) {
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        p[0] = 1; /* the page fault */
        munmap(p, 4096);
    }
    report("mmap_fault_munmap", start, n);
    return 0;
}
