/* Capability sets as Linux keeps them: capget/capset and their limits,
 * the bounding set (PR_CAPBSET_READ/DROP), ambient capabilities, what the
 * set*uid calls do to the sets (PR_SET_KEEPCAPS), what exec gives root,
 * /proc/self/status, and privileged calls refused once the capability is
 * dropped though the uid is still 0. Run as root (an ordinary user's
 * checks run in a child after setuid). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_LOWER 3
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* <linux/capability.h> (musl's tree lacks it). */
#define _LINUX_CAPABILITY_VERSION_3 0x20080522
struct __user_cap_header_struct {
    uint32_t version;
    int pid;
};
struct __user_cap_data_struct {
    uint32_t effective, permitted, inheritable;
};
enum { CAP_CHOWN = 0, CAP_KILL = 5, CAP_NET_RAW = 13, CAP_SYS_ADMIN = 21, CAP_SYS_NICE = 23, CAP_SYS_TIME = 25 };

#define BIT(c) (1ull << (c))
/* What root holds here at the start (a container may hold less than
 * every capability). */
static uint64_t FULL;

struct sets {
    uint64_t effective, permitted, inheritable;
};

static int get_caps(pid_t pid, struct sets *out) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    out->effective = d[0].effective | (uint64_t)d[1].effective << 32;
    out->permitted = d[0].permitted | (uint64_t)d[1].permitted << 32;
    out->inheritable = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
    return 0;
}

static int set_caps(uint64_t e, uint64_t p, uint64_t i) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{(uint32_t)e, (uint32_t)p, (uint32_t)i}, {(uint32_t)(e >> 32), (uint32_t)(p >> 32), (uint32_t)(i >> 32)}};
    return (int)syscall(SYS_capset, &h, d);
}

/* The hexadecimal value of /proc/self/status line `key`. */
static uint64_t status_caps(const char *key) {
    static char text[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return ~0ull;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return ~0ull;
    text[n] = 0;
    char *at = strstr(text, key);
    if (!at) return ~0ull;
    return strtoull(at + strlen(key), NULL, 16);
}

/* After exec: report the sets through the exit status. */
static void after_exec_mode(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "after-exec") != 0) return;
    struct sets s;
    if (get_caps(0, &s) != 0) _exit(10);
    /* Root's exec: the bounding set, which lacks CAP_KILL here. */
    if (s.effective & BIT(CAP_KILL)) _exit(11);
    if (!(s.effective & BIT(CAP_SYS_TIME)) || s.permitted != s.effective) _exit(12);
    if (prctl(PR_CAPBSET_READ, CAP_KILL) != 0) _exit(13);
    _exit(0);
}

static void root_sets(void) {
    struct sets s;
    CHECK(get_caps(0, &s) == 0 && s.effective == s.permitted && s.inheritable == 0);
    FULL = s.permitted;
    CHECK((FULL & (BIT(CAP_SYS_TIME) | BIT(CAP_SYS_NICE) | BIT(CAP_KILL) | BIT(CAP_CHOWN) | BIT(CAP_SYS_ADMIN) | BIT(8))) == (BIT(CAP_SYS_TIME) | BIT(CAP_SYS_NICE) | BIT(CAP_KILL) | BIT(CAP_CHOWN) | BIT(CAP_SYS_ADMIN) | BIT(8)));
    CHECK(get_caps(getpid(), &s) == 0 && s.effective == FULL);
    CHECK(status_caps("CapEff:\t") == FULL && status_caps("CapPrm:\t") == FULL && (status_caps("CapBnd:\t") & FULL) == FULL);
    CHECK(status_caps("CapInh:\t") == 0 && status_caps("CapAmb:\t") == 0);
    CHECK(prctl(PR_CAPBSET_READ, CAP_KILL) == 1);
    CHECK_ERR(prctl(PR_CAPBSET_READ, 64), EINVAL);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, -1};
    struct __user_cap_data_struct d[2];
    CHECK_ERR(syscall(SYS_capget, &h, d), EINVAL); /* negative pid */
    h.pid = 0;
    h.version = 0;
    CHECK_ERR(syscall(SYS_capget, &h, d), EINVAL);
    CHECK(h.version == _LINUX_CAPABILITY_VERSION_3); /* the preferred version written back */
}

/* In a child: drop capabilities and watch root lose what they allowed. */
static int dropping(void) {
    int bad = 0;
    struct timeval now;
    gettimeofday(&now, NULL);
    /* Effective without CAP_SYS_TIME: setting the clock is refused. */
    if (set_caps(FULL & ~BIT(CAP_SYS_TIME), FULL, 0) != 0) bad |= 1;
    errno = 0;
    if (settimeofday(&now, NULL) != -1 || errno != EPERM) bad |= 2;
    /* Still permitted: it can come back. */
    if (set_caps(FULL, FULL, 0) != 0) bad |= 4;
    gettimeofday(&now, NULL);
    if (settimeofday(&now, NULL) != 0) bad |= 8;
    /* Out of the permitted set: gone for good. */
    if (set_caps(FULL & ~BIT(CAP_SYS_NICE), FULL & ~BIT(CAP_SYS_NICE), 0) != 0) bad |= 16;
    errno = 0;
    if (set_caps(FULL, FULL, 0) != -1 || errno != EPERM) bad |= 32;
    errno = 0;
    if (nice(-1) != -1 || errno != EPERM) bad |= 64;
    /* Effective beyond permitted: EPERM. */
    errno = 0;
    if (set_caps(BIT(CAP_SYS_NICE), 0, 0) != -1 || errno != EPERM) bad |= 128;
    /* The bounding set: dropped, and inheritable may not reach past it. */
    if (prctl(PR_CAPBSET_DROP, CAP_KILL) != 0 || prctl(PR_CAPBSET_READ, CAP_KILL) != 0) bad |= 256;
    errno = 0;
    if (set_caps(FULL & ~BIT(CAP_SYS_NICE), FULL & ~BIT(CAP_SYS_NICE), BIT(CAP_KILL)) != -1 || errno != EPERM) bad |= 512;
    /* Without CAP_SETPCAP, inheritable grows only from permitted. */
    uint64_t keep = BIT(CAP_SYS_TIME) | BIT(CAP_CHOWN);
    if (set_caps(keep, keep, keep) != 0) bad |= 1024;
    errno = 0;
    if (set_caps(keep, keep, keep | BIT(CAP_NET_RAW)) != -1 || errno != EPERM) bad |= 2048;
    /* CAP_SETPCAP gone: the bounding set cannot be changed. */
    errno = 0;
    if (prctl(PR_CAPBSET_DROP, CAP_CHOWN) != -1 || errno != EPERM) bad |= 4096;
    /* Ambient: only what is permitted and inheritable. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_CHOWN, 0, 0) != 0) bad |= 8192;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) != 1) bad |= 16384;
    errno = 0;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0) != -1 || errno != EPERM) bad |= 32768;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_CHOWN, 0, 0) != 0) bad |= 65536;
    if (bad) printf("# dropping: %#x\n", bad);
    return bad != 0;
}

/* set*uid: leaving uid 0 entirely clears the sets unless kept. */
static int uid_changes(void) {
    int bad = 0;
    struct sets s;
    if (setresuid(0, 1000, 0) != 0) bad |= 1; /* effective only */
    if (get_caps(0, &s) != 0 || s.effective != 0 || s.permitted != FULL) bad |= 2;
    if (seteuid(0) != 0) bad |= 4; /* back: effective = permitted */
    if (get_caps(0, &s) != 0 || s.effective != FULL) bad |= 8;
    if (prctl(PR_SET_KEEPCAPS, 1) != 0 || prctl(PR_GET_KEEPCAPS) != 1) bad |= 16;
    if (setresuid(1000, 1000, 1000) != 0) bad |= 32;
    if (get_caps(0, &s) != 0 || s.effective != 0 || s.permitted != FULL) bad |= 64;
    /* The kept permitted set can be made effective again. */
    if (set_caps(BIT(CAP_SYS_TIME), FULL, 0) != 0) bad |= 128;
    if (bad) printf("# uid_changes: %#x\n", bad);
    return bad != 0;
}

static int ordinary(void) {
    int bad = 0;
    struct sets s;
    if (setresuid(1000, 1000, 1000) != 0) bad |= 1;
    if (get_caps(0, &s) != 0 || s.effective || s.permitted || s.inheritable) bad |= 2;
    if (prctl(PR_CAPBSET_READ, CAP_KILL) != 1) bad |= 4; /* the bounding set stays */
    errno = 0;
    if (prctl(PR_CAPBSET_DROP, CAP_KILL) != -1 || errno != EPERM) bad |= 8;
    errno = 0;
    if (set_caps(BIT(CAP_KILL), BIT(CAP_KILL), 0) != -1 || errno != EPERM) bad |= 16;
    if (set_caps(0, 0, 0) != 0) bad |= 32;
    if (status_caps("CapEff:\t") != 0) bad |= 64;
    if (bad) printf("# ordinary: %#x\n", bad);
    return bad != 0;
}

static pid_t parent_pid;
static int parent_memfd = -1;

/* Another user's process is closed to an ordinary user: its descriptors,
 * their details, its program and memory map (EACCES), and a process that
 * changed its ids is no longer dumpable. */
static int prying(void) {
    int bad = 0;
    if (setresuid(1000, 1000, 1000) != 0) return 1;
    if (prctl(PR_GET_DUMPABLE) != 0) bad |= 2;
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/fd", parent_pid);
    errno = 0;
    if (open(path, O_RDONLY | O_DIRECTORY) != -1 || errno != EACCES) bad |= 4;
    snprintf(path, sizeof path, "/proc/%d/fd/%d", parent_pid, parent_memfd);
    errno = 0;
    if (open(path, O_RDWR) != -1 || errno != EACCES) bad |= 8;
    snprintf(path, sizeof path, "/proc/%d/exe", parent_pid);
    errno = 0;
    if (readlink(path, buf, sizeof buf) != -1 || errno != EACCES) bad |= 16;
    snprintf(path, sizeof path, "/proc/%d/maps", parent_pid);
    errno = 0;
    if (open(path, O_RDONLY) != -1 || errno != EACCES) bad |= 32;
    /* Its own are open to it. */
    if (readlink("/proc/self/exe", buf, sizeof buf) <= 0) bad |= 64;
    if (bad) printf("# prying: %#x\n", bad);
    return bad;
}

static void in_child(int (*body)(void), const char *what) {
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) printf("# %s failed\n", what);
}

int main(int argc, char **argv) {
    after_exec_mode(argc, argv);
    CHECK(getuid() == 0 && geteuid() == 0);
    root_sets();
    in_child(dropping, "dropping");
    in_child(uid_changes, "uid_changes");
    in_child(ordinary, "ordinary");
    parent_pid = getpid();
    parent_memfd = (int)syscall(SYS_memfd_create, "secret", 0);
    CHECK(parent_memfd >= 0);
    in_child(prying, "prying");
    close(parent_memfd);
    CHECK(prctl(PR_GET_DUMPABLE) == 1);
    /* exec as root after dropping effective capabilities and CAP_KILL
     * from the bounding set: the new program holds the bounding set. */
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_CAPBSET_DROP, CAP_KILL);
        set_caps(0, FULL, 0);
        execl("/proc/self/exe", argv[0], "after-exec", (char *)NULL);
        _exit(99);
    }
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (WIFEXITED(status) && WEXITSTATUS(status)) printf("# after exec: %d\n", WEXITSTATUS(status));
    return tt_done("caps");
}
