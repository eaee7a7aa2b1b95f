/* Out of memory: a program that touches memory without end is stopped
 * (killed, or its allocations fail) and the system carries on. On Linux
 * the child limits its address space first, so the host is never at risk. */
#include "tessera_test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = fork();
    if (child == 0) {
        struct rlimit limit = {512u << 20, 512u << 20};
        setrlimit(RLIMIT_AS, &limit);
        for (long mib = 0; mib < 4096; mib++) {
            char *block = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (block == MAP_FAILED)
                _exit(0); /* refused: fine */
            for (int off = 0; off < (1 << 20); off += 4096)
                block[off] = 1;
        }
        _exit(2); /* 4 GiB touched: no limit at all */
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    /* Memory came back: a new child can allocate and run. */
    pid_t again = fork();
    if (again == 0) {
        char *p = malloc(16 << 20);
        if (p == NULL)
            _exit(1);
        for (int off = 0; off < (16 << 20); off += 4096)
            p[off] = 1;
        _exit(0);
    }
    CHECK(again > 0 && waitpid(again, &status, 0) == again && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return tt_done("oom");
}
