/* System calls copy straight to and from the program's pages, backing a
 * page the way a fault would when it is not mapped yet. What Linux does,
 * checked here:
 * - read() into untouched anonymous memory; into a page shared
 *   copy-on-write with a fork child (the other side keeps its copy); into
 *   a private mapping of a file (the file keeps its bytes);
 * - read() into a read-only or unmapped buffer fails with EFAULT and, for
 *   a pipe, leaves the data for the next read;
 * - a buffer that runs into an unmapped page: a regular file gives the
 *   bytes up to it, a pipe gives EFAULT and keeps its data;
 * - write() from PROT_NONE memory fails with EFAULT; from a private file
 *   mapping it writes what the mapping shows;
 * - clock_gettime into a read-only page: EFAULT. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *path = "/tmp/usercopy-file";

static int make_file(char fill) {
    char buf[8192];
    memset(buf, fill, sizeof buf);
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
        return -1;
    return fd;
}

int main(void) {
    long page = sysconf(_SC_PAGESIZE);
    int fd = make_file('F');
    CHECK(fd >= 0);

    /* Untouched anonymous memory: the copy backs it. */
    char *fresh = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(fresh != MAP_FAILED);
    CHECK(pread(fd, fresh + page - 10, 20, 0) == 20);
    CHECK(fresh[page - 10] == 'F' && fresh[page + 9] == 'F' && fresh[page + 10] == 0);

    /* A page shared copy-on-write with a child: each side's read() lands
     * in its own copy. */
    char *shared = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(shared != MAP_FAILED);
    memset(shared, 'S', page);
    pid_t kid = fork();
    if (kid == 0) {
        if (pread(fd, shared, 16, 0) != 16 || shared[0] != 'F')
            _exit(2);
        usleep(100000);
        _exit(shared[100] == 'S' && shared[0] == 'F' ? 0 : 3);
    }
    usleep(20000);
    CHECK(shared[0] == 'S');
    int status = -1;
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(shared[0] == 'S' && shared[15] == 'S');
    kid = fork();
    if (kid == 0) {
        usleep(50000);
        _exit(shared[0] == 'S' ? 0 : 4);
    }
    CHECK(pread(fd, shared, 8, 0) == 8 && shared[0] == 'F');
    CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* A private mapping of a file: read() into it changes the mapping,
     * never the file or the file's other mappings. */
    int other = open("/tmp/usercopy-other", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(other >= 0 && write(other, "0123456789", 10) == 10);
    char *priv = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *view = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(priv != MAP_FAILED && view != MAP_FAILED);
    CHECK(priv[0] == 'F' && view[0] == 'F');
    CHECK(pread(other, priv, 10, 0) == 10);
    CHECK(memcmp(priv, "0123456789", 10) == 0);
    CHECK(view[0] == 'F');
    char c = 0;
    CHECK(pread(fd, &c, 1, 0) == 1 && c == 'F');
    /* write() from the private copy writes what it shows. */
    CHECK(pwrite(other, priv + 2, 3, 0) == 3);
    char back[4] = {0};
    CHECK(pread(other, back, 3, 0) == 3 && memcmp(back, "234", 3) == 0);
    close(other);
    unlink("/tmp/usercopy-other");

    /* Read-only and unmapped buffers. */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    CHECK(write(pipefd[1], "pipedata", 8) == 8);
    char *ro = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    CHECK_ERR(read(pipefd[0], ro, 8), EFAULT);
    CHECK_ERR(pread(fd, ro, 8, 0), EFAULT);
    char *gone = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(gone != MAP_FAILED);
    CHECK(munmap(gone + page, page) == 0);
    CHECK_ERR(read(pipefd[0], gone + page, 8), EFAULT);
    /* Crossing into the unmapped page: the pipe keeps its data... */
    CHECK_ERR(read(pipefd[0], gone + page - 4, 8), EFAULT);
    char got[9] = {0};
    CHECK(read(pipefd[0], got, 8) == 8 && memcmp(got, "pipedata", 8) == 0);
    /* ...a regular file gives what fits. */
    CHECK(pread(fd, gone + page - 4, 8, 0) == 4);
    CHECK(memcmp(gone + page - 4, "FFFF", 4) == 0);
    CHECK_ERR(pread(fd, gone + page, 8, 0), EFAULT);
    /* So does /dev/zero (read first, checked only when the copy fails). */
    int zero = open("/dev/zero", O_RDONLY);
    CHECK(zero >= 0);
    memset(gone + page - 4, 'x', 4);
    CHECK(read(zero, gone + page - 4, 8) == 4);
    CHECK(memcmp(gone + page - 4, "\0\0\0\0", 4) == 0);
    CHECK_ERR(read(zero, gone + page, 8), EFAULT);
    CHECK_ERR(read(zero, ro, 8), EFAULT);
    close(zero);

    /* write() from memory it may not read. */
    char *none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(none != MAP_FAILED);
    CHECK_ERR(write(pipefd[1], none, 4), EFAULT);
    CHECK_ERR(write(pipefd[1], gone + page, 4), EFAULT);

    /* A result that cannot be stored. */
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, ro), EFAULT);
    struct timespec *ts = (struct timespec *)(fresh + 2 * page);
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, ts) == 0 && (ts->tv_sec > 0 || ts->tv_nsec > 0));

    close(pipefd[0]);
    close(pipefd[1]);
    close(fd);
    unlink(path);
    return tt_done("usercopy");
}
