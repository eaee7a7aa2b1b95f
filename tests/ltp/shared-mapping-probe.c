/*
 * The two shared-memory behaviours behind LTP's checkpoint and exec'd-child
 * failures on Tessera (docs/ltp.md, "Findings"): a futex in a MAP_SHARED
 * file mapping woken from another process, and a /dev/shm file mapped by a
 * parent and, after exec, by its child. Linux prints 42, 99, 7 and
 * "woke 1"; Tessera at e7c377f prints 42, 0, 7 and "woke 0".
 *
 *   mkdir -p /tmp/probe/opt && gcc -static -O2 -o /tmp/probe/opt/p tests/ltp/shared-mapping-probe.c
 *   printf 'mount -t proc proc /proc; mkdir -p /dev/shm; mount -t tmpfs shm /dev/shm; /opt/p\n' >/tmp/probe.sh
 *   make exec SCRIPT=/tmp/probe.sh OVERLAY=/tmp/probe
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <errno.h>
#include <string.h>
static char exe[256];

int main(int argc, char **argv) {
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (argc > 1) { /* exec'd child: map the same file and write */
        int fd = open(argv[1], O_RDWR);
        int *p = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
        if (fd < 0 || p == MAP_FAILED) {
            printf("child: open/mmap failed %s\n", strerror(errno));
            return 1;
        }
        p[1] = 99;
        printf("child wrote 99, reads back %d\n", p[1]);
        return 0;
    }
    int fd = open("/dev/shm/probe", O_CREAT|O_RDWR, 0600);
    ftruncate(fd, 4096);
    int *p = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
    printf("mmap %p\n", (void*)p);
    pid_t c = fork();
    if (c == 0) { p[0] = 42; _exit(0); }
    waitpid(c, NULL, 0);
    printf("fork+MAP_SHARED: child wrote 42, parent sees %d\n", p[0]);
    c = fork();
    if (c == 0) { execl(exe, exe, "/dev/shm/probe", NULL); _exit(1); }
    waitpid(c, NULL, 0);
    printf("exec child mapping same file wrote 99, parent sees %d\n", p[1]);
    int *q = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
    c = fork();
    if (c == 0) { q[0] = 7; _exit(0); }
    waitpid(c, NULL, 0);
    printf("fork+MAP_SHARED|MAP_ANONYMOUS: parent sees %d (want 7)\n", q[0]);
    /* futex across processes on the file mapping */
    p[2] = 0;
    c = fork();
    if (c == 0) {
        struct timespec ts = {5, 0};
        long r = syscall(SYS_futex, &p[2], FUTEX_WAIT, 0, &ts, NULL, 0);
        printf("child futex_wait returned %ld errno %s\n", r, r ? strerror(errno) : "-");
        _exit(0);
    }
    usleep(500000);
    p[2] = 1;
    long w = syscall(SYS_futex, &p[2], FUTEX_WAKE, 1, NULL, NULL, 0);
    printf("parent futex_wake woke %ld\n", w);
    waitpid(c, NULL, 0);
    return 0;
}
