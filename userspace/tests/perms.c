/* Users and permissions as Linux has them: supplementary groups, the
 * file-system ids, file permission bits (read, write, search), sticky
 * directories, who may chmod/chown, access(2) with the real ids, signals
 * between users, and set-user-id programs. Run as root; the checks run in
 * children that become uid 1000 (the program itself is copied as a
 * set-user-id helper that reports its effective uid). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define USER 1000
#define GROUP 1000
#define OTHER_GROUP 2000

static char dir[64];

/* Runs `body` in a child as uid USER, gid GROUP, groups {GROUP, OTHER_GROUP};
 * the child's checks count in the child, whose status reports failures. */
static void as_user(void (*body)(void)) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        gid_t groups[] = {GROUP, OTHER_GROUP};
        if (setgroups(2, groups) != 0 || setresgid(GROUP, GROUP, GROUP) != 0 || setresuid(USER, USER, USER) != 0) {
            printf("not ok - could not become uid %d\n", USER);
            _exit(1);
        }
        tt_passed = tt_failed = 0;
        body();
        printf("  child: %d passed, %d failed\n", tt_passed, tt_failed);
        fflush(stdout);
        _exit(tt_failed ? 1 : 0);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static char marker[96];

/* Spins on the raw setresuid(0) (glibc's wrapper would involve every
 * thread): succeeding would mean this thread got root from the exec of a
 * set-user-id program by another thread of its process. */
static void *escalate(void *unused) {
    (void)unused;
    for (;;) {
        if (syscall(SYS_setresuid, 0, 0, 0) == 0) {
            int fd = open(marker, O_CREAT | O_WRONLY, 0644);
            close(fd);
            _exit(42);
        }
    }
    return NULL;
}

static void user_checks(void) {
    char path[128];
    /* Ids and groups. */
    CHECK(getuid() == USER && geteuid() == USER && getgid() == GROUP);
    gid_t groups[8];
    CHECK(getgroups(0, NULL) == 2);
    CHECK(getgroups(8, groups) == 2 && groups[0] == GROUP && groups[1] == OTHER_GROUP);
    CHECK_ERR(getgroups(1, groups), EINVAL);
    CHECK_ERR(setgroups(0, NULL), EPERM);
    CHECK_ERR(setuid(0), EPERM);
    CHECK(setfsuid(-1) == USER);
    CHECK(setfsuid(0) == USER && setfsuid(-1) == USER); /* refused: stays */

    /* Reading and writing by mode bits. */
    snprintf(path, sizeof path, "%s/secret", dir);
    CHECK_ERR(open(path, O_RDONLY), EACCES);
    snprintf(path, sizeof path, "%s/readable", dir);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(open(path, O_WRONLY), EACCES);
    CHECK_ERR(open(path, O_RDONLY | O_TRUNC), EACCES);
    CHECK_ERR(truncate(path, 0), EACCES);
    /* Group rights through a supplementary group. */
    snprintf(path, sizeof path, "%s/group-writable", dir);
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    close(fd);
    /* A directory without search permission hides its entries. */
    snprintf(path, sizeof path, "%s/closed/inside", dir);
    struct stat st;
    CHECK_ERR(stat(path, &st), EACCES);
    snprintf(path, sizeof path, "%s/closed", dir);
    CHECK_ERR(chdir(path), EACCES);
    CHECK_ERR(mkdir(path, 0755), EEXIST);
    /* No writing into a directory that is not ours. */
    snprintf(path, sizeof path, "%s/mine", dir);
    CHECK_ERR(open(path, O_CREAT | O_WRONLY, 0644), EACCES);
    CHECK_ERR(mkdir(path, 0755), EACCES);

    /* A file made in the sticky /tmp-like directory is ours. */
    snprintf(path, sizeof path, "%s/sticky/mine", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK(fstat(fd, &st) == 0 && st.st_uid == USER && st.st_gid == GROUP);
    /* Its group may become another of our groups, not someone else's. */
    CHECK(fchown(fd, -1, OTHER_GROUP) == 0);
    CHECK_ERR(fchown(fd, -1, 4242), EPERM);
    CHECK_ERR(fchown(fd, 0, -1), EPERM);
    close(fd);
    /* Someone else's file in a sticky directory cannot be removed or
     * renamed away, though the directory is writable. */
    snprintf(path, sizeof path, "%s/sticky/roots", dir);
    CHECK_ERR(unlink(path), EPERM);
    char to[128];
    snprintf(to, sizeof to, "%s/sticky/moved", dir);
    CHECK_ERR(rename(path, to), EPERM);
    /* Only the owner changes the mode. */
    CHECK_ERR(chmod(path, 0777), EPERM);
    snprintf(path, sizeof path, "%s/sticky/mine", dir);
    CHECK(chmod(path, 0640) == 0);
    CHECK(unlink(path) == 0);

    /* access(2) asks with the real ids. */
    snprintf(path, sizeof path, "%s/secret", dir);
    CHECK_ERR(access(path, R_OK), EACCES);
    snprintf(path, sizeof path, "%s/readable", dir);
    CHECK(access(path, R_OK) == 0);
    CHECK_ERR(access(path, W_OK), EACCES);

    /* Not executable: EACCES. Set-user-id root: runs with euid 0. */
    snprintf(path, sizeof path, "%s/readable", dir);
    char *argv[] = {path, NULL};
    pid_t child = fork();
    if (child == 0) {
        execv(path, argv);
        _exit(errno);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == EACCES);
    snprintf(path, sizeof path, "%s/setuid-helper", dir);
    char *helper[] = {path, "--report-euid", NULL};
    child = fork();
    if (child == 0) {
        execv(path, helper);
        _exit(100);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* execve ends the other threads first (Linux's de_thread): none of
     * them runs on with the set-user-id program's credentials. */
    snprintf(marker, sizeof marker, "/tmp/tessera-escalated-%d", getpid());
    fflush(stdout);
    child = fork();
    if (child == 0) {
        pthread_t spinner;
        pthread_create(&spinner, NULL, escalate, NULL);
        usleep(20000);
        execv(helper[0], helper);
        _exit(100);
    }
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_ERR(access(marker, F_OK), ENOENT);
    /* O_PATH opens for nothing: no reading, writing, truncating or
     * changing the file through it. */
    snprintf(path, sizeof path, "%s/readable", dir);
    int opath = open(path, O_PATH | O_RDWR | O_TRUNC);
    CHECK(opath >= 0);
    CHECK(stat(path, &st) == 0 && st.st_size == 1);
    char byte;
    CHECK_ERR(read(opath, &byte, 1), EBADF);
    CHECK_ERR(write(opath, "x", 1), EBADF);
    CHECK_ERR(syscall(SYS_fchmod, opath, 0666), EBADF); /* musl's fchmod retries through /proc */
    CHECK_ERR(ftruncate(opath, 0), EBADF);
    close(opath);
    /* A shared mapping of a file opened read-only cannot become writable. */
    int ro = open(path, O_RDONLY);
    char *map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(map != MAP_FAILED);
    CHECK_ERR(mprotect(map, 4096, PROT_READ | PROT_WRITE), EACCES);
    munmap(map, 4096);
    close(ro);

    /* Signals: not to root's processes, but to our own. */
    CHECK_ERR(kill(getppid(), 0), EPERM); /* the parent is root */
    CHECK(kill(getpid(), 0) == 0);
    /* mount and friends need privilege. */
    CHECK_ERR(sethostname("x", 1), EPERM);
}

static int copy_self(const char *to) {
    int in = open("/proc/self/exe", O_RDONLY);
    int out = open(to, O_CREAT | O_WRONLY | O_TRUNC, 0755);
    if (in < 0 || out < 0) return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) return -1;
    close(in);
    close(out);
    return n == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--report-euid") == 0) {
        /* The set-user-id helper: euid 0, real uid the caller's. */
        return geteuid() == 0 && getuid() == USER ? 0 : 1;
    }
    CHECK(geteuid() == 0); /* the test runs as root */
    /* /tmp (a tmpfs mounted at boot) is everyone's, sticky. */
    struct stat tmp;
    CHECK(stat("/tmp", &tmp) == 0 && (tmp.st_mode & 07777) == 01777);
    snprintf(dir, sizeof dir, "/tmp/tessera-perms-%d", getpid());
    CHECK(mkdir(dir, 0755) == 0);
    char path[128];
    snprintf(path, sizeof path, "%s/secret", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0 && write(fd, "s", 1) == 1);
    close(fd);
    snprintf(path, sizeof path, "%s/readable", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "r", 1) == 1);
    close(fd);
    CHECK(chmod(path, 0644) == 0);
    snprintf(path, sizeof path, "%s/group-writable", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0620);
    close(fd);
    CHECK(chmod(path, 0620) == 0 && chown(path, 0, OTHER_GROUP) == 0);
    snprintf(path, sizeof path, "%s/closed", dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/closed/inside", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    close(fd);
    snprintf(path, sizeof path, "%s/sticky", dir);
    CHECK(mkdir(path, 0777) == 0 && chmod(path, 01777) == 0);
    snprintf(path, sizeof path, "%s/sticky/roots", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0666);
    close(fd);
    CHECK(chmod(path, 0666) == 0);
    snprintf(path, sizeof path, "%s/setuid-helper", dir);
    CHECK(copy_self(path) == 0);
    CHECK(chmod(path, 04755) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 04755);
    /* chown clears the set-user-id bit (even root's). */
    snprintf(path, sizeof path, "%s/readable", dir);
    CHECK(chmod(path, 04755) == 0 && chown(path, 0, 0) == 0 && stat(path, &st) == 0 && (st.st_mode & 07777) == 0755);
    CHECK(chmod(path, 0644) == 0);

    /* Root's own group list. */
    gid_t g[] = {7, 8, 9};
    pid_t child = fork();
    if (child == 0) {
        gid_t got[4];
        _exit(setgroups(3, g) == 0 && getgroups(4, got) == 3 && got[2] == 9 ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    as_user(user_checks);

    const char *names[] = {"secret", "readable", "group-writable", "closed/inside", "closed", "sticky/roots", "sticky", "setuid-helper"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (remove(path) != 0) printf("  cannot remove %s\n", path);
    }
    rmdir(dir);
    return tt_done("perms");
}
