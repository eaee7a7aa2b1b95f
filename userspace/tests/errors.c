/* Bad input from a program: bad pointers give EFAULT, bad numbers and flags
 * EINVAL/EBADF/ESRCH, unknown system calls ENOSYS; nothing crashes. */
#include "tessera_test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KERNEL_PTR ((void *)(uintptr_t)0xffffffff80100000ull)
#define LOW_PTR ((void *)(uintptr_t)0x10)
#define NONCANON ((void *)(uintptr_t)0x0000900000000000ull)

int main(void) {
    char buf[64];
    /* EFAULT for every kind of bad pointer, for calls that read user memory... */
    void *bad[] = {NULL, LOW_PTR, KERNEL_PTR, NONCANON};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_ERR(syscall(SYS_write, 1, bad[i], 10), EFAULT);
        CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, bad[i]), EFAULT);
        CHECK_ERR(syscall(SYS_uname, bad[i]), EFAULT);
        CHECK_ERR(syscall(SYS_getrandom, bad[i], 16, 0), EFAULT);
        CHECK_ERR(syscall(SYS_nanosleep, bad[i], NULL), EFAULT);
        CHECK_ERR(syscall(SYS_execve, bad[i], NULL, NULL), EFAULT);
        if (bad[i] != NULL) { /* NULL means "no argument" for these */
            CHECK_ERR(syscall(SYS_rt_sigaction, SIGUSR1, bad[i], NULL, 8), EFAULT);
            CHECK_ERR(syscall(SYS_rt_sigprocmask, SIG_BLOCK, bad[i], NULL, 8), EFAULT);
            CHECK_ERR(syscall(SYS_prlimit64, 0, RLIMIT_STACK, NULL, bad[i]), EFAULT);
        }
        CHECK_ERR(syscall(SYS_openat, AT_FDCWD, bad[i], O_RDONLY), EFAULT);
        CHECK_ERR(syscall(SYS_readlink, bad[i], buf, sizeof buf), EFAULT);
    }
    /* ...a buffer that runs off the end of mapped memory... */
    char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    CHECK(munmap(page + 4096, 4096) == 0);
    /* Linux may fill the part that fits and return a short count. */
    errno = 0;
    long got = syscall(SYS_getrandom, page + 4000, 200, 0);
    CHECK((got == -1 && errno == EFAULT) || (got >= 0 && got < 200));
    /* ...and a read-only buffer the kernel must write. */
    CHECK(mprotect(page, 4096, PROT_READ) == 0);
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, page), EFAULT);
    /* wait4 writing the status to a bad address. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    CHECK_ERR(syscall(SYS_wait4, child, KERNEL_PTR, 0, NULL), EFAULT);
    waitpid(child, NULL, 0);

    /* Bad numbers and flags. */
    CHECK_ERR(close(12345), EBADF);
    CHECK_ERR(write(-1, "x", 1), EBADF);
    CHECK_ERR(syscall(SYS_read, 999, buf, 1), EBADF);
    CHECK_ERR(syscall(SYS_kill, 1 << 30, SIGTERM), ESRCH);
    CHECK_ERR(syscall(SYS_kill, getpid(), 1000), EINVAL);
    CHECK_ERR(syscall(SYS_rt_sigaction, SIGKILL, NULL, NULL, 4), EINVAL);
    CHECK_ERR(syscall(SYS_arch_prctl, 0x9999, 0), EINVAL);
    /* A thread pointer outside the user half, or in its last page (Linux's
     * TASK_SIZE_MAX), is EPERM: for arch_prctl, and for clone's
     * CLONE_SETTLS, which then makes no child. */
    CHECK_ERR(syscall(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, 0xffff800000000000ull), EPERM);
    CHECK_ERR(syscall(SYS_arch_prctl, 0x1001 /* ARCH_SET_GS */, 0x7ffffffff000ull), EPERM);
    {
        long r = syscall(SYS_clone, SIGCHLD | 0x80000 /* CLONE_SETTLS */, 0, 0, 0, 0xffff800000000000ull);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid(r, NULL, 0);
        CHECK(r == -1 && errno == EPERM);
    }
    CHECK_ERR(syscall(SYS_getrandom, buf, 8, 0xff00), EINVAL);
    CHECK_ERR(syscall(SYS_wait4, -1, NULL, 0x12345, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_clock_gettime, 12345, buf), EINVAL);
    CHECK_ERR(syscall(SYS_prlimit64, 0, 999, NULL, buf), EINVAL);
    CHECK_ERR(syscall(SYS_dup2, 555, 3), EBADF);

    /* Unknown system calls. */
    CHECK_ERR(syscall(1000), ENOSYS);
    CHECK_ERR(syscall(450 + 100), ENOSYS);

    /* Valid calls still work afterwards. */
    struct utsname u;
    CHECK(uname(&u) == 0 && strcmp(u.machine, "x86_64") == 0);
    int null = open("/dev/null", O_WRONLY);
    CHECK(null >= 3);
    CHECK(write(null, "gone", 4) == 4);
    CHECK(dup2(null, 9) == 9);
    CHECK(fcntl(9, F_SETFD, FD_CLOEXEC) == 0 && fcntl(9, F_GETFD) == FD_CLOEXEC);
    CHECK(close(9) == 0 && close(null) == 0);
    return tt_done("errors");
}
