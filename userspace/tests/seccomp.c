/* seccomp as Linux has it: strict mode (read, write, exit, sigreturn;
 * anything else SIGKILL), filter mode with classic BPF programs (ERRNO,
 * TRAP with a SYS_SECCOMP SIGSYS, KILL_PROCESS, ALLOW), filters passed to
 * children, the no_new_privs rule, and program checks. Each case runs in
 * a child, since seccomp cannot be undone. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

/* <linux/filter.h> and <linux/seccomp.h>, absent from musl's tree. */
struct insn {
    uint16_t code;
    uint8_t jt, jf;
    uint32_t k;
};
struct prog {
    unsigned short len;
    struct insn *filter;
};
#define STMT(c, k) {(uint16_t)(c), 0, 0, (uint32_t)(k)}
#define JUMP(c, k, t, f) {(uint16_t)(c), (uint8_t)(t), (uint8_t)(f), (uint32_t)(k)}
#define LD_NR 0x20 /* BPF_LD|BPF_W|BPF_ABS, k = offsetof(seccomp_data, nr) = 0 */
#define JEQ_K 0x15
#define RET_K 0x06
#define RET_ALLOW 0x7fff0000u
#define RET_ERRNO(e) (0x00050000u | (e))
#define RET_TRAP 0x00030000u
#define RET_KILL_PROCESS 0x80000000u

static long install(struct insn *insns, unsigned short len) {
    struct prog p = {len, insns};
    return syscall(SYS_seccomp, 1 /* SET_MODE_FILTER */, 0, &p);
}

/* A program refusing `nr` with `action`, allowing the rest. */
static long refuse(long nr, uint32_t action) {
    struct insn f[] = {
        STMT(LD_NR, 0),
        JUMP(JEQ_K, nr, 0, 1),
        STMT(RET_K, action),
        STMT(RET_K, RET_ALLOW),
    };
    return install(f, 4);
}

static int in_child(int (*body)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = -1;
    waitpid(pid, &status, 0);
    return status;
}

static int strict(void) {
    if (syscall(SYS_seccomp, 0 /* SET_MODE_STRICT */, 0, NULL) != 0) return 1;
    if (write(1, "", 0) != 0) return 2;
    syscall(SYS_getpid); /* killed here */
    return 3;
}

static int errno_filter(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 1;
    if (refuse(SYS_getpid, RET_ERRNO(EPERM)) != 0) return 2;
    errno = 0;
    if (syscall(SYS_getpid) != -1 || errno != EPERM) return 3;
    struct utsname u;
    if (uname(&u) != 0) return 4;
    if (prctl(PR_GET_SECCOMP) != 2) return 5;
    /* A child keeps the filter. */
    pid_t pid = fork();
    if (pid == 0) _exit(syscall(SYS_getpid) == -1 && errno == EPERM ? 0 : 1);
    int status = -1;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 6;
    /* A second filter stacks: the stricter answer wins. */
    if (refuse(SYS_getpid, RET_ERRNO(EACCES)) != 0) return 7;
    errno = 0;
    long r = syscall(SYS_getpid);
    return r == -1 && (errno == EPERM || errno == EACCES) ? 0 : 8;
}

static volatile int trapped_nr = -1, trapped_code = -1;
static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    trapped_code = info->si_code;
    trapped_nr = info->si_syscall;
}

static int trap_filter(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSYS, &sa, NULL) != 0) return 1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 2;
    if (refuse(SYS_getppid, RET_TRAP) != 0) return 3;
    syscall(SYS_getppid);
    return trapped_nr == SYS_getppid && trapped_code == 1 /* SYS_SECCOMP */ ? 0 : 4;
}

static int kill_filter(void) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 1;
    if (refuse(SYS_getuid, RET_KILL_PROCESS) != 0) return 2;
    syscall(SYS_getuid);
    return 3;
}

static int rules(void) {
    /* Without no_new_privs an ordinary user may not install a filter. */
    if (setuid(1000) != 0) return 1;
    struct insn allow[] = {STMT(RET_K, RET_ALLOW)};
    errno = 0;
    if (install(allow, 1) != -1 || errno != EACCES) return 2;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 3;
    /* A jump past the end, a load outside the data, no return at the end. */
    struct insn far[] = {JUMP(JEQ_K, 1, 5, 0), STMT(RET_K, RET_ALLOW)};
    errno = 0;
    if (install(far, 2) != -1 || errno != EINVAL) return 4;
    struct insn outside[] = {STMT(LD_NR, 64), STMT(RET_K, RET_ALLOW)};
    errno = 0;
    if (install(outside, 2) != -1 || errno != EINVAL) return 5;
    struct insn open_end[] = {STMT(LD_NR, 0)};
    errno = 0;
    if (install(open_end, 1) != -1 || errno != EINVAL) return 6;
    errno = 0;
    if (install(allow, 0) != -1 || errno != EINVAL) return 7;
    if (install(allow, 1) != 0) return 8;
    /* Strict mode cannot follow filter mode. */
    errno = 0;
    if (syscall(SYS_seccomp, 0, 0, NULL) != -1 || errno != EINVAL) return 9;
    return 0;
}

int main(void) {
    int status = in_child(strict);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    status = in_child(errno_filter);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (WIFEXITED(status) && WEXITSTATUS(status)) printf("# errno_filter: %d\n", WEXITSTATUS(status));
    status = in_child(trap_filter);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    status = in_child(kill_filter);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
    if (geteuid() == 0) {
        status = in_child(rules);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (WIFEXITED(status) && WEXITSTATUS(status)) printf("# rules: %d\n", WEXITSTATUS(status));
    }
    CHECK(prctl(PR_GET_SECCOMP) == 0);
    return tt_done("seccomp");
}
