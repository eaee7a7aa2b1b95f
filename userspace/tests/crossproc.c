/* Reaching across processes and futex words, as Linux has it:
 * process_vm_readv/writev (with the ptrace-access rule), pidfd_getfd,
 * FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP and futex_waitv. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* <linux/futex.h> (musl's tree lacks it). */
#define FUTEX_WAIT_PRIVATE (0 | 128)
#define FUTEX_WAKE_PRIVATE (1 | 128)
#define FUTEX_CMP_REQUEUE_PRIVATE (4 | 128)
#define FUTEX_WAKE_OP_PRIVATE (5 | 128)
#define FUTEX_OP_SET 0
#define FUTEX_OP_ADD 1
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP_CMP_GT 4
#define FUTEX_OP(op, oparg, cmp, cmparg) \
    ((((op) & 0xf) << 28) | (((cmp) & 0xf) << 24) | (((oparg) & 0xfff) << 12) | ((cmparg) & 0xfff))

struct waitv {
    uint64_t val, uaddr;
    uint32_t flags, reserved;
};

static char secret[64] = "the child's own words";

/* A child that waits on a pipe, so its memory stays as it is. */
static pid_t waiting_child(int *release) {
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        char c;
        read(p[0], &c, 1);
        /* Report what the parent wrote into our memory. */
        _exit(strcmp(secret, "written by the parent") == 0 ? 0 : 1);
    }
    close(p[0]);
    *release = p[1];
    return pid;
}

static void process_vm(void) {
    int release = -1;
    pid_t pid = waiting_child(&release);
    CHECK(pid > 0);
    char got[64] = {0};
    struct iovec local = {got, sizeof got}, remote = {secret, sizeof secret};
    CHECK(process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof secret);
    CHECK(strcmp(got, "the child's own words") == 0);
    /* Scattered: two local pieces from one remote. */
    char a[4] = {0}, b[8] = {0};
    struct iovec two[2] = {{a, 4}, {b, 7}};
    CHECK(process_vm_readv(pid, two, 2, &remote, 1, 0) == 11 && memcmp(a, "the ", 4) == 0 && memcmp(b, "child's", 7) == 0);
    char words[64] = "written by the parent";
    struct iovec out = {words, sizeof words};
    CHECK(process_vm_writev(pid, &out, 1, &remote, 1, 0) == sizeof words);
    /* Errors: flags, a bad remote address, no such process. */
    CHECK_ERR(process_vm_readv(pid, &local, 1, &remote, 1, 1), EINVAL);
    struct iovec bad = {(void *)8, 16};
    CHECK_ERR(process_vm_readv(pid, &local, 1, &bad, 1, 0), EFAULT);
    CHECK_ERR(process_vm_readv(999999, &local, 1, &remote, 1, 0), ESRCH);
    /* Another user's process: EPERM for an ordinary user. */
    if (geteuid() == 0) {
        pid_t checker = fork();
        if (checker == 0) {
            if (setuid(1000) != 0) _exit(2);
            errno = 0;
            long r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
            _exit(r == -1 && errno == EPERM ? 0 : 1);
        }
        int cs = -1;
        CHECK(waitpid(checker, &cs, 0) == checker && WIFEXITED(cs) && WEXITSTATUS(cs) == 0);
    }
    CHECK(write(release, "x", 1) == 1);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(release);
}

static void getfd(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_RDONLY);
        close(ready[0]);
        write(ready[1], &fd, sizeof fd);
        char c;
        read(p[0], &c, 1);
        _exit(0);
    }
    int theirs = -1;
    CHECK(read(ready[0], &theirs, sizeof theirs) == sizeof theirs);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK(pidfd >= 0);
    int mine = (int)syscall(SYS_pidfd_getfd, pidfd, theirs, 0);
    CHECK(mine >= 0 && (fcntl(mine, F_GETFD) & FD_CLOEXEC));
    char path[64] = {0}, link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", mine);
    CHECK(readlink(link, path, sizeof path - 1) > 0 && strcmp(path, "/dev/null") == 0);
    CHECK_ERR(syscall(SYS_pidfd_getfd, pidfd, theirs, 1), EINVAL);
    CHECK_ERR(syscall(SYS_pidfd_getfd, pidfd, 500, 0), EBADF);
    CHECK_ERR(syscall(SYS_pidfd_getfd, 0, theirs, 0), EBADF); /* not a pidfd */
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(waitpid(pid, NULL, 0) == pid);
    close(mine);
    close(pidfd);
    close(p[0]);
    close(p[1]);
    close(ready[0]);
    close(ready[1]);
}

static int futexes[3];
static volatile int woke[8];

static long futex(int *addr, int op, int val, long val2, int *addr2, int val3) {
    return syscall(SYS_futex, addr, op, val, val2, addr2, val3);
}

static void *wait_on_first(void *arg) {
    long i = (long)arg;
    long r = futex(&futexes[0], FUTEX_WAIT_PRIVATE, 0, 0, NULL, 0);
    woke[i] = r == 0 ? 1 : 2;
    return NULL;
}

/* Polls until `n` waiters are asleep (the requeue must find them). */
static void settle(void) {
    struct timespec t = {0, 50000000};
    nanosleep(&t, NULL);
}

static void requeue(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, wait_on_first, (void *)i);
    settle();
    /* A stale expected value: EAGAIN. */
    CHECK_ERR(futex(&futexes[0], FUTEX_CMP_REQUEUE_PRIVATE, 1, 1, &futexes[1], 7), EAGAIN);
    /* Wake one, move two to the second word: three counted. */
    CHECK(futex(&futexes[0], FUTEX_CMP_REQUEUE_PRIVATE, 1, 2, &futexes[1], 0) == 3);
    settle();
    int awake = 0;
    for (int i = 0; i < 4; i++) awake += woke[i] == 1;
    CHECK(awake == 1);
    /* The moved ones answer a wake of the second word. */
    CHECK(futex(&futexes[1], FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 2);
    CHECK(futex(&futexes[0], FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0) == 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(woke[i] == 1);
    /* FUTEX_WAKE_OP: futexes[2] += 5, then wake on both if it was 0. */
    futexes[2] = 0;
    int op = FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_EQ, 0);
    CHECK(futex(&futexes[0], FUTEX_WAKE_OP_PRIVATE, 1, 1, &futexes[2], op) == 0);
    CHECK(futexes[2] == 5);
    op = FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_GT, 100);
    CHECK(futex(&futexes[0], FUTEX_WAKE_OP_PRIVATE, 1, 1, &futexes[2], op) == 0 && futexes[2] == 1);
}

static int vwords[3];

static void *wake_second(void *arg) {
    (void)arg;
    settle();
    vwords[1] = 1;
    futex(&vwords[1], FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0);
    return NULL;
}

static void waitv(void) {
    struct waitv w[3];
    for (int i = 0; i < 3; i++) w[i] = (struct waitv){0, (uintptr_t)&vwords[i], 2 | 128, 0};
    struct timespec to;
    clock_gettime(CLOCK_MONOTONIC, &to);
    to.tv_sec += 5;
    pthread_t t;
    pthread_create(&t, NULL, wake_second, NULL);
    CHECK(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_MONOTONIC) == 1);
    pthread_join(t, NULL);
    /* vwords[1] is 1 now: EAGAIN before sleeping. */
    CHECK_ERR(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_MONOTONIC), EAGAIN);
    w[1].val = 1;
    clock_gettime(CLOCK_MONOTONIC, &to);
    to.tv_nsec += 20000000;
    if (to.tv_nsec >= 1000000000) {
        to.tv_sec++;
        to.tv_nsec -= 1000000000;
    }
    CHECK_ERR(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_MONOTONIC), ETIMEDOUT);
    CHECK_ERR(syscall(SYS_futex_waitv, w, 0, 0, &to, CLOCK_MONOTONIC), EINVAL);
    CHECK_ERR(syscall(SYS_futex_waitv, w, 129, 0, &to, CLOCK_MONOTONIC), EINVAL);
    CHECK_ERR(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_TAI), EINVAL);
    w[0].flags = 128; /* no FUTEX_32 */
    CHECK_ERR(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_MONOTONIC), EINVAL);
    w[0].flags = 2 | 128;
    w[0].uaddr = 1;
    CHECK_ERR(syscall(SYS_futex_waitv, w, 3, 0, &to, CLOCK_MONOTONIC), EINVAL);
}

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

struct clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static volatile int got_usr2;
static void on_usr2(int sig) {
    (void)sig;
    got_usr2 = 1;
}

/* clone3: like fork with its exit signal given apart, CLONE_PIDFD puts a
 * pidfd where asked; unknown trailing bytes must be zero. */
static void clone3_calls(void) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(7);
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 7);
    /* CLONE_PIDFD: the descriptor, close-on-exec, readable once the child ends. */
    int pidfd = -1;
    memset(&args, 0, sizeof args);
    args.flags = 0x1000; /* CLONE_PIDFD */
    args.pidfd = (uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(3);
    CHECK(pid > 0 && pidfd >= 0 && (fcntl(pidfd, F_GETFD) & FD_CLOEXEC));
    CHECK(waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 3);
    close(pidfd);
    /* Another exit signal: the parent gets SIGUSR2 instead of SIGCHLD. */
    signal(SIGUSR2, on_usr2);
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGUSR2;
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) _exit(0);
    CHECK(pid > 0 && waitpid(pid, &status, __WALL) == pid);
    CHECK(got_usr2 == 1);
    signal(SIGUSR2, SIG_DFL);
    /* Errors. */
    memset(&args, 0, sizeof args);
    CHECK_ERR(syscall(SYS_clone3, &args, 32), EINVAL);
    args.flags = SIGCHLD; /* the low byte is not the exit signal here */
    CHECK_ERR(syscall(SYS_clone3, &args, sizeof args), EINVAL);
    args.flags = 0;
    args.exit_signal = 65;
    CHECK_ERR(syscall(SYS_clone3, &args, sizeof args), EINVAL);
    args.exit_signal = SIGCHLD;
    args.stack = 4096; /* a stack without a size */
    CHECK_ERR(syscall(SYS_clone3, &args, sizeof args), EINVAL);
    char big[200];
    memset(big, 0, sizeof big);
    memcpy(big, &args, sizeof args);
    ((struct clone_args *)big)->stack = 0;
    big[150] = 1;
    CHECK_ERR(syscall(SYS_clone3, big, sizeof big), E2BIG);
}

static volatile int vm_shared;

static int vm_child(void *arg) {
    (void)arg;
    vm_shared = 42;
    _exit(0);
}

/* CLONE_VM without CLONE_THREAD: the child's writes are the parent's
 * (vfork, clone(CLONE_VM|CLONE_VFORK), posix_spawn's exec error). */
static void shared_memory_children(void) {
    vm_shared = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        vm_shared = 7;
        _exit(0);
    }
    CHECK(pid > 0 && vm_shared == 7);
    CHECK(waitpid(pid, NULL, 0) == pid);
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(stack != MAP_FAILED);
    pid = clone(vm_child, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
    CHECK(pid > 0 && vm_shared == 42);
    CHECK(waitpid(pid, NULL, 0) == pid);
    munmap(stack, size);
    /* posix_spawn of a program that does not exist reports ENOENT. */
    char *args[] = {"no-such-program", NULL};
    pid_t spawned = -1;
    CHECK(posix_spawn(&spawned, "/no/such/program", NULL, NULL, args, NULL) == ENOENT);
    /* And of one that does, runs it. */
    char *ok[] = {"true", NULL};
    int status = -1;
    CHECK(posix_spawn(&spawned, "/bin/true", NULL, NULL, ok, NULL) == 0);
    CHECK(waitpid(spawned, &status, 0) == spawned && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int exec_status_fd = -1;

/* exec in a child that shares the descriptor table (CLONE_FILES) closes
 * its close-on-exec descriptors in its own copy, not in the parent's. */
static int files_child(void *arg) {
    (void)arg;
    execl("/bin/true", "true", (char *)NULL);
    _exit(127);
}

static void exec_unshares_files(void) {
    exec_status_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(exec_status_fd >= 0);
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pid_t pid = clone(files_child, stack + size, CLONE_FILES | SIGCHLD, NULL);
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(fcntl(exec_status_fd, F_GETFD) == FD_CLOEXEC); /* still open here */
    close(exec_status_fd);
    munmap(stack, size);
}

int main(void) {
    exec_unshares_files();
    shared_memory_children();
    clone3_calls();
    process_vm();
    getfd();
    requeue();
    waitv();
    return tt_done("crossproc");
}
