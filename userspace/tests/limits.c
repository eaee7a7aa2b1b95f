/* Scheduling policies, CPU affinity, resource limits (RLIMIT_NOFILE,
 * RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_CPU) and positioned vector I/O, as
 * Linux has them. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RWF_APPEND
#define RWF_APPEND 0x10
#endif

/* musl's wrappers of these always fail (POSIX means the process, Linux the
 * thread): the raw calls. */
#define sched_getscheduler(pid) syscall(SYS_sched_getscheduler, pid)
#define sched_setscheduler(pid, policy, param) syscall(SYS_sched_setscheduler, pid, policy, param)
#define sched_getparam(pid, param) syscall(SYS_sched_getparam, pid, param)
#define sched_setparam(pid, param) syscall(SYS_sched_setparam, pid, param)

static void policies(void) {
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    CHECK(sched_get_priority_max(SCHED_FIFO) == 99 && sched_get_priority_min(SCHED_FIFO) == 1);
    CHECK(sched_get_priority_max(SCHED_OTHER) == 0 && sched_get_priority_min(SCHED_BATCH) == 0);
    CHECK_ERR(sched_get_priority_max(1234), EINVAL);
    struct sched_param sp = {.sched_priority = 0};
    CHECK_ERR(sched_setscheduler(0, SCHED_FIFO, &sp), EINVAL); /* FIFO needs 1..99 */
    CHECK_ERR(sched_setscheduler(0, 1234, &sp), EINVAL);
    CHECK_ERR(syscall(SYS_sched_setscheduler, -1, SCHED_OTHER, &sp), EINVAL);
    CHECK_ERR(syscall(SYS_sched_setparam, 0, NULL), EINVAL);
    sp.sched_priority = 10;
    if (geteuid() == 0) {
        CHECK(sched_setscheduler(0, SCHED_RR, &sp) == 0);
        CHECK(sched_getscheduler(0) == SCHED_RR);
        struct sched_param got = {0};
        CHECK(sched_getparam(0, &got) == 0 && got.sched_priority == 10);
        struct timespec slice;
        CHECK(sched_rr_get_interval(0, &slice) == 0 && slice.tv_sec == 0 && slice.tv_nsec > 0);
        sp.sched_priority = 20;
        CHECK(sched_setparam(0, &sp) == 0 && sched_getparam(0, &got) == 0 && got.sched_priority == 20);
        /* A child inherits the policy unless reset on fork. */
        pid_t child = fork();
        if (child == 0) _exit(sched_getscheduler(0) == SCHED_RR ? 0 : 1);
        int status;
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &sp) == 0);
        child = fork();
        if (child == 0) _exit(sched_getscheduler(0) == SCHED_OTHER ? 0 : 1);
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        sp.sched_priority = 0;
        CHECK(sched_setscheduler(0, SCHED_OTHER, &sp) == 0 && sched_getscheduler(0) == SCHED_OTHER);
    }
    sp.sched_priority = 0;
    CHECK(sched_setscheduler(0, SCHED_BATCH, &sp) == 0 && sched_getscheduler(0) == SCHED_BATCH);
    CHECK(sched_setscheduler(0, SCHED_OTHER, &sp) == 0);
    /* Affinity: every CPU the kernel runs on, and no empty mask. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(0, &set));
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(CPU_COUNT(&set) == online);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 3, &set), EINVAL);
    cpu_set_t none;
    CPU_ZERO(&none);
    CHECK_ERR(sched_setaffinity(0, sizeof none, &none), EINVAL);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
    unsigned cpu = 99;
    CHECK(syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 && CPU_ISSET(cpu, &set));
    /* Pinned to the last processor: it runs there, says so, and a child
     * inherits the mask (bits of processors that are not online are kept
     * out of what getaffinity shows). */
    int last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            last = i;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    CPU_SET(CPU_SETSIZE - 1, &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    cpu = 99;
    CHECK(syscall(SYS_getcpu, &cpu, NULL, NULL) == 0 && (int)cpu == last);
    cpu_set_t got;
    CPU_ZERO(&got);
    CHECK(sched_getaffinity(0, sizeof got, &got) == 0 && CPU_COUNT(&got) == 1 && CPU_ISSET(last, &got));
    pid_t child = fork();
    if (child == 0) {
        cpu_set_t mine;
        CPU_ZERO(&mine);
        unsigned where = 99;
        int ok = sched_getaffinity(0, sizeof mine, &mine) == 0 && CPU_COUNT(&mine) == 1 && CPU_ISSET(last, &mine)
                 && syscall(SYS_getcpu, &where, NULL, NULL) == 0 && (int)where == last;
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

static void nofile(void) {
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0 && old.rlim_cur > 10);
    lim = (struct rlimit){.rlim_cur = 10, .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    int last = -1;
    for (int i = 0; i < 20; i++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            CHECK(errno == EMFILE);
            break;
        }
        last = fd;
    }
    CHECK(last == 9);
    CHECK_ERR(dup2(0, 10), EBADF);
    CHECK_ERR(fcntl(0, F_DUPFD, 10), EINVAL);
    for (int fd = 3; fd <= last; fd++) close(fd);
    lim.rlim_cur = lim.rlim_max + 1;
    CHECK_ERR(setrlimit(RLIMIT_NOFILE, &lim), EINVAL); /* soft above hard */
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK_ERR(syscall(SYS_prlimit64, 0, 99, NULL, &lim), EINVAL);
}

static void fsize(void) {
    char path[] = "/tmp/limits-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = (struct rlimit){.rlim_cur = 1000, .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    char buf[600] = {0};
    CHECK(write(fd, buf, 600) == 600);
    CHECK(write(fd, buf, 600) == 400); /* up to the limit */
    CHECK_ERR(write(fd, buf, 1), EFBIG);
    CHECK(write(fd, buf, 0) == 0);
    CHECK_ERR(pwrite(fd, buf, 10, 5000), EFBIG);
    CHECK_ERR(ftruncate(fd, 2000), EFBIG);
    CHECK(ftruncate(fd, 10) == 0);
    /* The signal's default action kills with SIGXFSZ. */
    pid_t child = fork();
    if (child == 0) {
        signal(SIGXFSZ, SIG_DFL);
        lseek(fd, 1000, SEEK_SET);
        write(fd, buf, 1);
        _exit(0);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_DFL);
    close(fd);
}

static void nproc_and_cpu(void) {
    /* RLIMIT_CPU: SIGXCPU at the soft limit, then each second after. */
    pid_t child = fork();
    if (child == 0) {
        struct rlimit lim = {.rlim_cur = 1, .rlim_max = 3};
        if (setrlimit(RLIMIT_CPU, &lim) != 0) _exit(2);
        for (;;) {
        }
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU);
    if (geteuid() != 0) return;
    /* RLIMIT_NPROC binds an ordinary user (root is exempt). */
    child = fork();
    if (child == 0) {
        struct rlimit lim = {.rlim_cur = 1, .rlim_max = 1};
        if (setrlimit(RLIMIT_NPROC, &lim) != 0 || setuid(65534) != 0) _exit(2);
        pid_t grandchild = fork();
        if (grandchild == 0) _exit(0);
        _exit(grandchild < 0 && errno == EAGAIN ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Raising a hard limit needs root. */
    child = fork();
    if (child == 0) {
        struct rlimit lim;
        getrlimit(RLIMIT_CORE, &lim);
        lim.rlim_max = 5;
        lim.rlim_cur = 5;
        if (setrlimit(RLIMIT_CORE, &lim) != 0 || setuid(65534) != 0) _exit(2);
        lim.rlim_max = 6;
        _exit(setrlimit(RLIMIT_CORE, &lim) == -1 && errno == EPERM ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void vectors(void) {
    char path[] = "/tmp/limits-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    struct iovec out[2] = {{"hello ", 6}, {"world", 5}};
    CHECK(pwritev(fd, out, 2, 4) == 11);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0); /* the offset stays */
    char a[4], b[8];
    struct iovec in[2] = {{a, 4}, {b, 8}};
    CHECK(preadv(fd, in, 2, 4) == 11 && memcmp(a, "hell", 4) == 0 && memcmp(b, "o world", 7) == 0);
    CHECK_ERR(preadv(fd, in, 2, -1), EINVAL);
    CHECK_ERR(syscall(SYS_preadv, fd, in, -1, 0, 0), EINVAL);
    CHECK_ERR(preadv(99, in, 2, 0), EBADF);
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK_ERR(preadv(fds[0], in, 2, 0), ESPIPE);
    CHECK_ERR(pwritev(fds[1], out, 2, 0), ESPIPE);
    /* preadv2/pwritev2: offset -1 is the file offset; unknown flags fail. */
    /* (musl has no wrappers: the raw calls, offset in two halves) */
    CHECK(syscall(SYS_pwritev2, fd, out, 1, -1L, 0L, 0) == 6 && lseek(fd, 0, SEEK_CUR) == 6);
    CHECK_ERR(syscall(SYS_preadv2, fd, in, 1, 0L, 0L, 0x1000), EOPNOTSUPP);
    CHECK(syscall(SYS_pwritev2, fd, &out[1], 1, 0L, 0L, RWF_APPEND) == 5);
    CHECK(lseek(fd, 0, SEEK_END) == 20);
    close(fd);
    close(fds[0]);
    close(fds[1]);
}

static void names(void) {
    if (geteuid() != 0) return;
    struct utsname u;
    CHECK(uname(&u) == 0);
    char old[65];
    strcpy(old, u.domainname);
    CHECK(setdomainname("tessera.test", 12) == 0);
    CHECK(uname(&u) == 0 && strcmp(u.domainname, "tessera.test") == 0);
    char longer[66];
    memset(longer, 'x', sizeof longer);
    CHECK_ERR(setdomainname(longer, 65), EINVAL);
    CHECK(setdomainname(old, strlen(old)) == 0);
}

/* Touches `mib` MiB of fresh memory. */
static void touch_mib(int mib) {
    volatile char *m = malloc((size_t)mib << 20);
    if (!m) _exit(50);
    for (size_t i = 0; i < ((size_t)mib << 20); i += 4096) m[i] = 1;
    free((void *)m);
}

/* ru_maxrss: the peak resident set, kept after memory is freed; the
 * children's is the largest of those waited for, grandchildren
 * included; a new child starts with none. */
static void maxrss(void) {
    struct rusage ru;
    pid_t kid = fork();
    if (kid == 0) {
        touch_mib(48);
        struct rusage mine;
        getrusage(RUSAGE_SELF, &mine);
        _exit(mine.ru_maxrss >= 48 * 1024 ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_maxrss >= 48 * 1024 && ru.ru_maxrss < 200 * 1024);
    kid = fork();
    if (kid == 0) {
        struct rusage none;
        getrusage(RUSAGE_CHILDREN, &none);
        if (none.ru_maxrss != 0) _exit(2);
        pid_t grandchild = fork();
        if (grandchild == 0) {
            touch_mib(80);
            _exit(0);
        }
        waitpid(grandchild, NULL, 0);
        _exit(0);
    }
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_maxrss >= 80 * 1024);
}

int main(void) {
    maxrss();
    policies();
    nofile();
    fsize();
    nproc_and_cpu();
    vectors();
    names();
    return tt_done("limits");
}
