/* A file's cached pages outlive the moments nobody has it open (the next
 * program that runs or maps it finds them), yet a mapping always shows
 * the file as it is now: after the file was deleted and another took its
 * inode number, after it was rewritten with write(2) or truncated while
 * nobody had it mapped or open. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE 8192

static int fill(const char *path, char byte) {
    char buf[SIZE];
    memset(buf, byte, sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0700);
    if (fd < 0)
        return -1;
    int ok = write(fd, buf, sizeof buf) == (ssize_t)sizeof buf;
    close(fd);
    return ok ? 0 : -1;
}

/* The bytes a fresh read-only mapping shows at `at`, read and unmapped
 * again, the file closed: nobody holds it after. */
static int mapped_byte(const char *path, long at) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    char *m = mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    int byte = m[at];
    munmap(m, SIZE);
    return byte;
}

static void check_dir(const char *dir) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/pagecache-a", dir);
    snprintf(b, sizeof b, "%s/pagecache-b", dir);
    unlink(a);
    unlink(b);
    CHECK(fill(a, 'A') == 0);
    CHECK(mapped_byte(a, 100) == 'A');
    CHECK(mapped_byte(a, SIZE - 1) == 'A');
    /* Deleted, and a file of the same size in its place (it may get the
     * same inode number). */
    struct stat before;
    CHECK(stat(a, &before) == 0);
    CHECK(unlink(a) == 0);
    CHECK(fill(b, 'B') == 0);
    CHECK(mapped_byte(b, 100) == 'B');
    CHECK(mapped_byte(b, SIZE - 1) == 'B');
    /* Rewritten in place with write(2) while nobody has it. */
    int fd = open(b, O_WRONLY);
    char c[4096];
    memset(c, 'C', sizeof c);
    CHECK(fd >= 0 && pwrite(fd, c, sizeof c, 0) == (ssize_t)sizeof c);
    close(fd);
    CHECK(mapped_byte(b, 100) == 'C');
    CHECK(mapped_byte(b, 4096) == 'B');
    /* Truncated and grown again: the old bytes are gone. */
    CHECK(truncate(b, 0) == 0 && truncate(b, SIZE) == 0);
    CHECK(mapped_byte(b, 100) == 0);
    CHECK(mapped_byte(b, 5000) == 0);
    /* And the same through read(2). */
    char got = 1;
    fd = open(b, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, &got, 1, 100) == 1 && got == 0);
    close(fd);
    unlink(b);
}

int main(void) {
    check_dir("/tmp");
    /* The root file system too (a different file system on Tessera). */
    if (access("/opt/tessera", W_OK) == 0)
        check_dir("/opt/tessera");
    return tt_done("pagecache");
}
