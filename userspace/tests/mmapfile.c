/* mmap of files: private and shared mappings, write-back on msync, munmap
 * and exit, sharing across fork, and the errors for files that cannot be
 * mapped the way a program asks. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096

static char pattern(long i) { return (char)('a' + (i * 7 + i / PAGE) % 26); }

static int file_is(int fd, long offset, const char *want, size_t len) {
    char buf[256];
    if (len > sizeof buf) return 0;
    return pread(fd, buf, len, offset) == (ssize_t)len && memcmp(buf, want, len) == 0;
}

static off_t size_of(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_size : -1;
}

/* remap_file_pages: a page of a shared file mapping shows another page
 * of the file (Linux's emulation); private mappings and a nonzero prot
 * are EINVAL. */
static void remap_pages(void) {
    int fd = open("remap", O_CREAT | O_RDWR | O_TRUNC, 0600);
    CHECK(fd >= 0);
    char page[4096];
    for (int i = 0; i < 3; i++) {
        memset(page, 'a' + i, sizeof page);
        CHECK(write(fd, page, sizeof page) == sizeof page);
    }
    char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    CHECK(remap_file_pages(m, 4096, 0, 2, 0) == 0);
    CHECK(m[0] == 'c' && m[4095] == 'c' && m[4096] == 'b' && m[8192] == 'c');
    CHECK_ERR(remap_file_pages(m, 4096, PROT_READ, 1, 0), EINVAL);
    munmap(m, 3 * 4096);
    char *priv = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(priv != MAP_FAILED);
    CHECK_ERR(remap_file_pages(priv, 4096, 0, 1, 0), EINVAL);
    munmap(priv, 4096);
    close(fd);
    unlink("remap");
}

int main(void) {
    char dir[] = "/tmp/tessera-mmap-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chdir(dir) == 0);
    remap_pages();

    /* A file of three pages and a bit. */
    long size = 3 * PAGE + 100;
    char *data = malloc(size);
    for (long i = 0; i < size; i++) data[i] = pattern(i);
    int fd = open("data", O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, data, size) == size);

    /* Private, read-only: the file's bytes, zeros past its end. */
    char *p = mmap(NULL, 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    CHECK(p != MAP_FAILED && memcmp(p, data, size) == 0);
    CHECK(p != MAP_FAILED && p[size] == 0 && p[4 * PAGE - 1] == 0);
    CHECK(munmap(p, 4 * PAGE) == 0);

    /* At an offset. */
    p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 2 * PAGE);
    CHECK(p != MAP_FAILED && memcmp(p, data + 2 * PAGE, PAGE) == 0);
    CHECK(munmap(p, PAGE) == 0);

    /* Private and writable: writes stay in the process. */
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        memcpy(p, "PRIVATE", 7);
        CHECK(memcmp(p, "PRIVATE", 7) == 0);
        CHECK(munmap(p, PAGE) == 0);
    }
    CHECK(file_is(fd, 0, data, 64));

    /* Shared: msync puts the writes in the file, munmap too. */
    p = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        memcpy(p + 10, "SHARED", 6);
        CHECK(msync(p, 3 * PAGE, MS_SYNC) == 0);
        CHECK(file_is(fd, 10, "SHARED", 6));
        memcpy(p + PAGE + 5, "AGAIN", 5);
        /* A page not yet touched shows what write(2) put in the file. */
        CHECK(pwrite(fd, "VIAWRITE", 8, 2 * PAGE + 1) == 8);
        CHECK(memcmp(p + 2 * PAGE + 1, "VIAWRITE", 8) == 0);
        CHECK(munmap(p, 3 * PAGE) == 0);
        CHECK(file_is(fd, PAGE + 5, "AGAIN", 5));
        CHECK(file_is(fd, 2 * PAGE + 1, "VIAWRITE", 8));
        CHECK(file_is(fd, 0, data, 10));
    }

    /* Writes past the end of the file stay out of it. */
    p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        p[size + 5] = 'X';
        p[size - 1] = 'Y';
        CHECK(munmap(p, 4 * PAGE) == 0);
        CHECK(size_of(fd) == size);
        CHECK(file_is(fd, size - 1, "Y", 1));
    }

    /* /proc/self/maps names the mapped file. */
    p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    {
        char path[PATH_MAX], line[512];
        snprintf(path, sizeof path, "%s/data", dir);
        FILE *maps = fopen("/proc/self/maps", "r");
        int named = 0;
        while (maps && fgets(line, sizeof line, maps))
            if (strstr(line, path) && strstr(line, "r--s")) named = 1;
        if (maps) fclose(maps);
        CHECK(named);
    }
    CHECK(munmap(p, PAGE) == 0);

    /* Shared with a child across fork; the child's writes reach the parent
     * and the file. */
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        pid_t child = fork();
        if (child == 0) {
            memcpy(p + 100, "CHILD", 5);
            _exit(0);
        }
        int status = -1;
        CHECK(waitpid(child, &status, 0) == child && status == 0);
        CHECK(memcmp(p + 100, "CHILD", 5) == 0);
        CHECK(munmap(p, PAGE) == 0);
        CHECK(file_is(fd, 100, "CHILD", 5));
    }

    /* A process that exits without munmap loses nothing. */
    pid_t child = fork();
    if (child == 0) {
        char *q = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
        if (q == MAP_FAILED) _exit(2);
        memcpy(q + 7, "ATEXIT", 6);
        _exit(0);
    }
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child && status == 0);
    CHECK(file_is(fd, PAGE + 7, "ATEXIT", 6));

    /* mprotect away and back: the write still reaches the file. */
    p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        CHECK(p[0] == data[0]);
        CHECK(mprotect(p, PAGE, PROT_READ | PROT_WRITE) == 0);
        p[1] = '!';
        CHECK(munmap(p, PAGE) == 0);
        CHECK(file_is(fd, 1, "!", 1));
    }

    /* Errors. */
    int ro = open("data", O_RDONLY);
    int wo = open("data", O_WRONLY);
    CHECK(ro >= 0 && wo >= 0);
    CHECK(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED && errno == EACCES);
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) munmap(p, PAGE);
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, wo, 0) == MAP_FAILED && errno == EACCES);
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 100) == MAP_FAILED && errno == EINVAL);
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 999, 0) == MAP_FAILED && errno == EBADF);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, pipefd[0], 0) == MAP_FAILED && errno == ENODEV);
    p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    CHECK_ERR(msync(p + 1, PAGE, MS_SYNC), EINVAL);
    CHECK_ERR(msync(p, PAGE, MS_SYNC | MS_ASYNC), EINVAL);
    CHECK(munmap(p, PAGE) == 0);
    CHECK_ERR(msync(p, PAGE, MS_SYNC), ENOMEM);

    close(fd);
    close(ro);
    close(wo);
    unlink("data");
    chdir("/");
    rmdir(dir);
    free(data);
    return tt_done("mmapfile");
}
