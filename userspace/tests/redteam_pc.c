/* Page cache of a file system in a cell (keyed by mount and inode): hard
 * links, O_TMPFILE + linkat, rename over a mapped file, unlink of a mapped
 * file and the inode number's reuse, a rewrite while another process
 * maps the file privately. Runs in /tmp, or in the directory given. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE 8192
static char dir[256];

static char *at(const char *name) {
    static char buf[4][300];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

static int fill(const char *path, char byte) {
    char buf[SIZE];
    memset(buf, byte, sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    int ok = write(fd, buf, sizeof buf) == SIZE;
    close(fd);
    return ok ? 0 : -1;
}

static char *map(const char *path, int shared) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    char *m = mmap(NULL, SIZE, PROT_READ, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    close(fd);
    return m == MAP_FAILED ? NULL : m;
}

static int byte_at(const char *path, long off, int use_map) {
    if (use_map) {
        char *m = map(path, 0);
        if (!m)
            return -1;
        int b = m[off];
        munmap(m, SIZE);
        return b;
    }
    int fd = open(path, O_RDONLY);
    char c = 0;
    int ok = fd >= 0 && pread(fd, &c, 1, off) == 1;
    close(fd);
    return ok ? c : -1;
}

int main(int argc, char **argv) {
    snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : "/tmp");
    const char *names[] = {"a", "b", "t", "x", "y", "z", "f", "g", "h"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(at(names[i]));

    /* Hard links: one file, one set of pages. */
    CHECK(fill(at("a"), 'A') == 0);
    CHECK(link(at("a"), at("b")) == 0);
    char *mb = map(at("b"), 1);
    CHECK(mb && mb[0] == 'A');
    int fd = open(at("a"), O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "C", 1, 0) == 1 && pwrite(fd, "C", 1, 5000) == 1);
    close(fd);
    CHECK(mb && mb[0] == 'C' && mb[5000] == 'C');
    munmap(mb, SIZE);
    CHECK(byte_at(at("b"), 0, 1) == 'C');
    CHECK(unlink(at("a")) == 0);
    CHECK(byte_at(at("b"), 5000, 1) == 'C');

    /* O_TMPFILE, written through a shared mapping, then given a name. */
    fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd >= 0) {
        char buf[SIZE];
        memset(buf, 'T', sizeof buf);
        CHECK(write(fd, buf, SIZE) == SIZE);
        char *mt = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(mt != MAP_FAILED);
        if (mt != MAP_FAILED) {
            mt[0] = 'U';
            munmap(mt, SIZE);
        }
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, at("t"), AT_SYMLINK_FOLLOW) == 0);
        close(fd);
        CHECK(byte_at(at("t"), 0, 0) == 'U' && byte_at(at("t"), 1, 0) == 'T');
        CHECK(byte_at(at("t"), 0, 1) == 'U' && byte_at(at("t"), 4097, 1) == 'T');
    } else {
        printf("# O_TMPFILE: %s (skipped)\n", strerror(errno));
    }

    /* Rename over a mapped file: the mapping keeps the old file, the name
     * shows the new one; a new file may get the old inode number after. */
    CHECK(fill(at("x"), 'X') == 0 && fill(at("y"), 'Y') == 0);
    char *mx = map(at("x"), 1);
    CHECK(mx && mx[0] == 'X');
    CHECK(rename(at("y"), at("x")) == 0);
    CHECK(mx && mx[0] == 'X' && mx[4096] == 'X');
    CHECK(byte_at(at("x"), 0, 0) == 'Y' && byte_at(at("x"), 0, 1) == 'Y');
    munmap(mx, SIZE);
    CHECK(fill(at("z"), 'Z') == 0);
    CHECK(byte_at(at("z"), 0, 1) == 'Z' && byte_at(at("z"), 4096, 1) == 'Z');

    /* Unlink a mapped file; files made meanwhile and after show theirs. */
    CHECK(fill(at("f"), 'F') == 0);
    char *mf = map(at("f"), 0);
    CHECK(mf && mf[0] == 'F');
    CHECK(unlink(at("f")) == 0);
    CHECK(fill(at("g"), 'G') == 0);
    CHECK(byte_at(at("g"), 0, 1) == 'G');
    CHECK(mf && mf[4096] == 'F');
    munmap(mf, SIZE);
    CHECK(fill(at("h"), 'H') == 0);
    CHECK(byte_at(at("h"), 0, 1) == 'H' && byte_at(at("h"), 4096, 1) == 'H');

    /* Rewritten while another process maps it privately (pages it never
     * wrote show the file, as on Linux). */
    int ready[2], go[2];
    CHECK(pipe(ready) == 0 && pipe(go) == 0);
    pid_t child = fork();
    if (child == 0) {
        char *m = map(at("h"), 0);
        char c = m ? m[0] : 0;
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        _exit(m && m[0] == 'R' && m[4096] == 'R' ? 0 : 1);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'H');
    CHECK(fill(at("h"), 'R') == 0);
    CHECK(write(go[1], "g", 1) == 1);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(at(names[i]));
    return tt_done("redteam_pc");
}
