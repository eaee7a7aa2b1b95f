/* Process controls as Linux has them: prctl (death signal, child
 * subreaper, timer slack, no_new_privs, dumpable), clone's CLONE_PARENT,
 * CLONE_PARENT_SETTID and CLONE_VFORK, unshare, namespaces refused, and
 * a few argument-order rules (mmap's EBADF, MAP_SHARED_VALIDATE, mlock
 * without RLIMIT_MEMLOCK, F_GETLK's first conflicting lock). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#define PR_GET_CHILD_SUBREAPER 37
#endif
#ifndef PR_SET_NO_NEW_PRIVS
#define PR_SET_NO_NEW_PRIVS 38
#define PR_GET_NO_NEW_PRIVS 39
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 3
#endif

static void options(void) {
    int sig = -1;
    CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == 0);
    CHECK_ERR(prctl(PR_SET_PDEATHSIG, 1000), EINVAL);
    CHECK(prctl(PR_GET_DUMPABLE) == 1);
    CHECK_ERR(prctl(PR_SET_DUMPABLE, 2), EINVAL);
    CHECK(prctl(PR_SET_DUMPABLE, 0) == 0 && prctl(PR_GET_DUMPABLE) == 0 && prctl(PR_SET_DUMPABLE, 1) == 0);
    CHECK(prctl(PR_GET_TIMERSLACK) == 50000);
    CHECK(prctl(PR_SET_TIMERSLACK, 200000) == 0 && prctl(PR_GET_TIMERSLACK) == 200000);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/timerslack_ns", getpid());
    FILE *f = fopen(path, "r");
    long slack = 0;
    CHECK(f && fscanf(f, "%ld", &slack) == 1 && slack == 200000);
    if (f) fclose(f);
    CHECK(prctl(PR_SET_TIMERSLACK, 0) == 0 && prctl(PR_GET_TIMERSLACK) == 50000);
    /* A child's default slack is its creator's current one. */
    CHECK(prctl(PR_SET_TIMERSLACK, 70000) == 0);
    pid_t kid = fork();
    if (kid == 0) {
        long now = prctl(PR_GET_TIMERSLACK);
        prctl(PR_SET_TIMERSLACK, 0);
        _exit(now == 70000 && prctl(PR_GET_TIMERSLACK) == 70000 ? 0 : 1);
    }
    int kid_status = -1;
    CHECK(waitpid(kid, &kid_status, 0) == kid && WIFEXITED(kid_status) && WEXITSTATUS(kid_status) == 0);
    CHECK(prctl(PR_SET_TIMERSLACK, 0) == 0 && prctl(PR_GET_TIMERSLACK) == 50000);
    CHECK_ERR(prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0), EINVAL);
    CHECK_ERR(prctl(PR_GET_NO_NEW_PRIVS, 1, 0, 0, 0), EINVAL);
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0);
    CHECK_ERR(prctl(0x7fffffff, 0), EINVAL);
    /* no_new_privs is inherited and sticks. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(2);
        pid_t grandchild = fork();
        if (grandchild == 0) _exit(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : 1);
        int status;
        waitpid(grandchild, &status, 0);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The parent of a child that sets a death signal ends: the child gets it.
 * A subreaper adopts its orphaned grandchild. */
static void orphans(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int on = 0;
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &on) == 0 && on == 1);
    fflush(stdout);
    pid_t middle = fork();
    if (middle == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            close(fds[0]);
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGUSR1);
            sigprocmask(SIG_BLOCK, &set, NULL);
            if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0) _exit(2);
            if (write(fds[1], "r", 1) != 1) _exit(2); /* ready */
            int got = 0;
            sigwait(&set, &got); /* the middle process ended */
            pid_t parent = getppid();
            char answer[2] = {got == SIGUSR1 ? 'y' : 'n', 0};
            if (write(fds[1], answer, 1) != 1 || write(fds[1], &parent, sizeof parent) != sizeof parent) _exit(2);
            _exit(0);
        }
        char c;
        if (read(fds[0], &c, 1) != 1) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    int middle_status;
    CHECK(waitpid(middle, &middle_status, 0) == middle);
    char answer = 0;
    pid_t parent = 0;
    CHECK(read(fds[0], &answer, 1) == 1 && answer == 'y');
    CHECK(read(fds[0], &parent, sizeof parent) == sizeof parent && parent == getpid());
    /* The orphan is this process's child now. */
    int status;
    CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0);
}

static int clone_child(void *arg) {
    (void)arg;
    return 0;
}

static char stack[64 * 1024] __attribute__((aligned(16)));
static char stack_for_ids[64 * 1024] __attribute__((aligned(16)));

static int exit_at_once(void *arg) {
    (void)arg;
    syscall(SYS_exit, 0);
    return 0;
}

/* The ids clone stores are single stores, as Linux's put_user: a bad
 * CLONE_PARENT_SETTID address is ignored (the clone succeeds), and a
 * CLONE_CHILD_SETTID word that runs into an unmapped page is not written
 * at all, not half. */
static void clone_id_stores(void) {
    int *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    *ro = 5;
    CHECK(mprotect(ro, 4096, PROT_READ) == 0);
    long child = syscall(SYS_clone, SIGCHLD | CLONE_PARENT_SETTID, 0, ro, 0, 0);
    if (child == 0)
        _exit(0);
    CHECK(child > 0 && *ro == 5);
    CHECK(waitpid((pid_t)child, NULL, 0) == child);
    char *edge = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(edge != MAP_FAILED && munmap(edge + 4096, 4096) == 0);
    unsigned short *split = (unsigned short *)(edge + 4094);
    *split = 0x1111;
    pid_t c = clone(exit_at_once, stack_for_ids + sizeof stack_for_ids, CLONE_VM | CLONE_VFORK | CLONE_CHILD_SETTID | SIGCHLD, NULL, NULL, NULL, split);
    CHECK(c > 0 && *split == 0x1111);
    CHECK(waitpid(c, NULL, 0) == c);
    munmap(edge, 4096);
    munmap(ro, 4096);
}

static void clones(void) {
    clone_id_stores();
    /* CLONE_PARENT: a sibling, reported to this process's parent, so this
     * process has no child to wait for. */
    fflush(stdout);
    pid_t helper = fork();
    if (helper == 0) {
        pid_t ptid = 0;
        pid_t sibling = clone(clone_child, stack + sizeof stack, CLONE_PARENT | CLONE_PARENT_SETTID | SIGCHLD, NULL, &ptid);
        int ok = sibling > 0 && ptid == sibling && waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
        _exit(ok ? 0 : 1);
    }
    int status;
    CHECK(waitpid(helper, &status, 0) == helper && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The sibling came to this process: reap it. */
    CHECK(waitpid(-1, &status, 0) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* CLONE_VFORK: the parent goes on only once the child has ended (or
     * run exec). (On Linux the child is not yet a zombie at that moment:
     * the parent then waits for it as usual.) */
    pid_t v = fork();
    if (v == 0) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t c = vfork();
        if (c == 0) {
            usleep(50 * 1000);
            _exit(5);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        int st;
        _exit(waited >= 40 && waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 5 ? 0 : 1);
    }
    CHECK(waitpid(v, &status, 0) == v && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Namespaces: refused to an ordinary user. */
    v = fork();
    if (v == 0) {
        if (setuid(65534) != 0) _exit(2);
        _exit(unshare(CLONE_NEWPID) == -1 && errno == EPERM && unshare(CLONE_NEWUTS) == -1 && errno == EPERM ? 0 : 1);
    }
    CHECK(waitpid(v, &status, 0) == v && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* unshare(CLONE_FILES): a private descriptor table. */
    v = fork();
    if (v == 0) {
        if (unshare(CLONE_FILES | CLONE_FS) != 0) _exit(2);
        _exit(fcntl(1, F_GETFD) >= 0 ? 0 : 1);
    }
    CHECK(waitpid(v, &status, 0) == v && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_ERR(unshare(0x1), EINVAL); /* no such flag */
}

static void ordering(void) {
    int fd = open("/dev/null", O_RDONLY);
    close(fd);
    /* The descriptor is checked before the length. */
    CHECK(mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == EBADF);
    char path[] = "/tmp/prctl-XXXXXX";
    fd = mkstemp(path);
    unlink(path);
    CHECK(ftruncate(fd, 4096) == 0);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE | 0x200000, fd, 0) == MAP_FAILED && errno == EOPNOTSUPP);
    void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED_VALIDATE, fd, 0);
    CHECK(m != MAP_FAILED);
    munmap(m, 4096);
    /* F_GETLK reports the lowest conflicting lock. */
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 5};
    CHECK(fcntl(fd, F_SETLK, &lk) == 0);
    lk = (struct flock){.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 5};
    CHECK(fcntl(fd, F_SETLK, &lk) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(fd, F_GETLK, &q) != 0) _exit(2);
        _exit(q.l_type == F_RDLCK && q.l_start == 1 && q.l_len == 5 && q.l_pid == getppid() ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd);
    /* mlock without RLIMIT_MEMLOCK: EPERM for an ordinary user. */
    child = fork();
    if (child == 0) {
        struct rlimit zero = {0, 0};
        static char page[4096] __attribute__((aligned(4096)));
        if (setrlimit(RLIMIT_MEMLOCK, &zero) != 0 || setuid(65534) != 0) _exit(2);
        _exit(mlock(page, 4096) == -1 && errno == EPERM && mlockall(MCL_CURRENT) == -1 && errno == EPERM ? 0 : 1);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    CHECK(geteuid() == 0); /* the test runs as root */
    options();
    orphans();
    clones();
    ordering();
    return tt_done("prctl");
}
