/* A private mapping never writes memory another mapping shows, whatever
 * the order of mprotect calls: a page made inaccessible (PROT_NONE) and
 * then writable again is still copied at the first write. Checked for a
 * file's page-cache page (of a file this process may only read) and for
 * a page shared copy-on-write with a fork child. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    char buf[4096];
    memset(buf, 'A', sizeof buf);
    const char *path = "/tmp/privatecopy-file";
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0444);
    CHECK(fd >= 0 && write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
    close(fd);
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    volatile char *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(m != MAP_FAILED);
    if (m != MAP_FAILED) {
        CHECK(m[0] == 'A');
        CHECK(mprotect((void *)m, 4096, PROT_NONE) == 0);
        CHECK(mprotect((void *)m, 4096, PROT_READ | PROT_WRITE) == 0);
        m[0] = 'C';
        CHECK(m[0] == 'C');
        char c = 0;
        CHECK(pread(fd, &c, 1, 0) == 1 && c == 'A');
        /* Another mapping of the file shows the file, not the copy. */
        volatile char *other = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(other != MAP_FAILED && other[0] == 'A');
    }
    close(fd);
    unlink(path);

    /* A page shared copy-on-write with a child. */
    volatile char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    if (page != MAP_FAILED) {
        page[0] = 'P';
        pid_t kid = fork();
        if (kid == 0) {
            if (mprotect((void *)page, 4096, PROT_NONE) != 0 || mprotect((void *)page, 4096, PROT_READ | PROT_WRITE) != 0)
                _exit(2);
            page[0] = 'Q';
            _exit(page[0] == 'Q' ? 0 : 3);
        }
        int status = -1;
        CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(page[0] == 'P');
        /* And the other way round: the parent writes after the round trip. */
        kid = fork();
        if (kid == 0) {
            usleep(100000);
            _exit(page[0] == 'P' ? 0 : 4);
        }
        CHECK(mprotect((void *)page, 4096, PROT_NONE) == 0 && mprotect((void *)page, 4096, PROT_READ | PROT_WRITE) == 0);
        page[0] = 'R';
        CHECK(waitpid(kid, &status, 0) == kid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    return tt_done("privatecopy");
}
