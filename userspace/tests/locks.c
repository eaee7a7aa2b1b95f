/* Advisory file locks as Linux has them: POSIX record locks (per process,
 * ranges split and merged, released by closing any descriptor of the file
 * and at exit, not inherited), F_SETLKW waiting and EDEADLK, open file
 * description locks and flock(2). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[64];

static int lock(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* What F_GETLK says about [start, start+len) for a write lock. */
static struct flock probe(int fd, int cmd, off_t start, off_t len) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &fl) != 0) fl.l_type = -1;
    return fl;
}

/* Runs `body` in a child with its own descriptor of the file; returns its
 * exit status (the number of failed checks). */
static int in_child(int (*body)(int fd)) {
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int fd = open(path, O_RDWR);
        _exit(body(fd));
    }
    int status = -1;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static int sees_parent_lock(int fd) {
    int bad = 0;
    struct flock fl = probe(fd, F_GETLK, 0, 10);
    bad += !(fl.l_type == F_WRLCK && fl.l_pid == getppid() && fl.l_start == 0 && fl.l_len == 100);
    bad += !(lock(fd, F_SETLK, F_WRLCK, 50, 1) == -1 && (errno == EAGAIN || errno == EACCES));
    bad += !(lock(fd, F_SETLK, F_RDLCK, 0, 1) == -1);
    /* Outside the range: free. */
    bad += !(lock(fd, F_SETLK, F_WRLCK, 100, 10) == 0);
    bad += !(probe(fd, F_GETLK, 200, 0).l_type == F_UNLCK);
    return bad;
}

static int hole_is_free(int fd) {
    int bad = 0;
    bad += !(lock(fd, F_SETLK, F_WRLCK, 40, 20) == 0); /* the unlocked middle */
    bad += !(lock(fd, F_SETLK, F_WRLCK, 39, 1) == -1); /* still the parent's */
    bad += !(lock(fd, F_SETLK, F_WRLCK, 60, 1) == -1);
    return bad;
}

static int readers_share(int fd) {
    int bad = 0;
    bad += !(lock(fd, F_SETLK, F_RDLCK, 0, 0) == 0);
    bad += !(lock(fd, F_SETLK, F_WRLCK, 0, 1) == -1);
    return bad;
}

static int waits_for_release(int fd) {
    /* Blocks until the parent closes another descriptor of the file. */
    return lock(fd, F_SETLKW, F_WRLCK, 0, 1) == 0 ? 0 : 1;
}

int main(void) {
    snprintf(path, sizeof path, "/tmp/tessera-locks-%d", getpid());
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);

    /* A write lock, seen and respected by another process. */
    CHECK(lock(fd, F_SETLK, F_WRLCK, 0, 100) == 0);
    CHECK(probe(fd, F_GETLK, 0, 10).l_type == F_UNLCK); /* own locks never conflict */
    CHECK(in_child(sees_parent_lock) == 0);
    /* Unlocking the middle splits the lock. */
    CHECK(lock(fd, F_SETLK, F_UNLCK, 40, 20) == 0);
    CHECK(in_child(hole_is_free) == 0);
    /* Converting to a read lock lets readers in. */
    CHECK(lock(fd, F_SETLK, F_RDLCK, 0, 0) == 0);
    CHECK(in_child(readers_share) == 0);
    CHECK(lock(fd, F_SETLK, F_UNLCK, 0, 0) == 0);

    /* Bad requests. */
    int ro = open(path, O_RDONLY);
    CHECK_ERR(lock(ro, F_SETLK, F_WRLCK, 0, 1), EBADF);
    CHECK(lock(ro, F_SETLK, F_RDLCK, 0, 1) == 0);
    CHECK_ERR(lock(fd, F_SETLK, 7, 0, 1), EINVAL);
    CHECK_ERR(lock(fd, F_SETLK, F_WRLCK, -10, 5), EINVAL);
    struct flock bad_whence = {.l_type = F_WRLCK, .l_whence = 9};
    CHECK_ERR(fcntl(fd, F_SETLK, &bad_whence), EINVAL);
    /* Closing *any* descriptor of the file drops the process's locks. */
    CHECK(lock(fd, F_SETLK, F_WRLCK, 0, 1) == 0);
    pid_t waiter = fork();
    if (waiter == 0) {
        int cfd = open(path, O_RDWR);
        _exit(waits_for_release(cfd));
    }
    usleep(100000);
    int status = -1;
    CHECK(waitpid(waiter, &status, WNOHANG) == 0); /* still waiting */
    close(ro);
    CHECK(waitpid(waiter, &status, 0) == waiter && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Deadlock: we hold byte 0 and wait for byte 1; the child holds byte 1
     * and waits for byte 0. Exactly one side gets EDEADLK. */
    CHECK(lock(fd, F_SETLK, F_WRLCK, 0, 1) == 0);
    int go[2];
    CHECK(pipe(go) == 0);
    fflush(stdout);
    pid_t other = fork();
    if (other == 0) {
        int cfd = open(path, O_RDWR);
        if (lock(cfd, F_SETLK, F_WRLCK, 1, 1) != 0) _exit(10);
        char c = 1;
        write(go[1], &c, 1);
        int r = lock(cfd, F_SETLKW, F_WRLCK, 0, 1);
        _exit(r == 0 ? 0 : errno == EDEADLK ? 1 : 11);
    }
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    usleep(100000); /* let the child block */
    int r = lock(fd, F_SETLKW, F_WRLCK, 1, 1);
    int mine = r == 0 ? 0 : errno == EDEADLK ? 1 : 11;
    if (mine == 1) lock(fd, F_SETLK, F_UNLCK, 0, 1); /* let the child finish */
    CHECK(waitpid(other, &status, 0) == other && WIFEXITED(status));
    int theirs = WEXITSTATUS(status);
    CHECK(mine + theirs == 1 && mine <= 1 && theirs <= 1);
    lock(fd, F_SETLK, F_UNLCK, 0, 0);

    /* Locks end with the process that holds them. */
    fflush(stdout);
    pid_t holder = fork();
    if (holder == 0) {
        int cfd = open(path, O_RDWR);
        lock(cfd, F_SETLK, F_WRLCK, 0, 0);
        _exit(0);
    }
    CHECK(waitpid(holder, &status, 0) == holder);
    CHECK(probe(fd, F_GETLK, 0, 0).l_type == F_UNLCK);

    /* Open file description locks: two opens in one process conflict. */
    int a = open(path, O_RDWR), b = open(path, O_RDWR);
    CHECK(lock(a, F_OFD_SETLK, F_WRLCK, 0, 10) == 0);
    CHECK_ERR(lock(b, F_OFD_SETLK, F_WRLCK, 5, 1), EAGAIN);
    struct flock seen = probe(b, F_OFD_GETLK, 0, 1);
    CHECK(seen.l_type == F_WRLCK && seen.l_pid == -1);
    struct flock with_pid = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_pid = 1};
    CHECK_ERR(fcntl(b, F_OFD_SETLK, &with_pid), EINVAL);
    close(a); /* its last descriptor: the lock goes */
    CHECK(lock(b, F_OFD_SETLK, F_WRLCK, 5, 1) == 0);
    close(b);

    /* flock: per open file, separate from record locks. */
    a = open(path, O_RDWR);
    b = open(path, O_RDWR);
    CHECK(flock(a, LOCK_EX) == 0);
    CHECK_ERR(flock(b, LOCK_EX | LOCK_NB), EWOULDBLOCK);
    CHECK_ERR(flock(b, LOCK_SH | LOCK_NB), EWOULDBLOCK);
    CHECK(lock(b, F_SETLK, F_WRLCK, 0, 0) == 0); /* record locks do not see flock */
    CHECK(flock(a, LOCK_SH) == 0);              /* converted */
    CHECK(flock(b, LOCK_SH | LOCK_NB) == 0);
    CHECK(flock(a, LOCK_UN) == 0 && flock(b, LOCK_UN) == 0);
    CHECK_ERR(flock(a, 0), EINVAL);
    /* A forked child shares the open file, so its lock is the same. */
    CHECK(flock(a, LOCK_EX) == 0);
    fflush(stdout);
    pid_t sharer = fork();
    if (sharer == 0) _exit(flock(a, LOCK_EX | LOCK_NB) == 0 ? 0 : 1);
    CHECK(waitpid(sharer, &status, 0) == sharer && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(a);
    close(b);
    close(fd);
    unlink(path);
    return tt_done("locks");
}
