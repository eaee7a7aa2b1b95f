/* Files and directories: open flags, read/write/seek, stat, directory
 * listing, links, symlinks, renames, permissions, times, the working
 * directory, device files; and the errors for each misuse. Works in a
 * fresh directory under /tmp. */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int listed(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, name) == 0)
            found = 1;
    closedir(d);
    return found;
}

#ifndef RENAME_EXCHANGE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#endif

/* renameat2(RENAME_EXCHANGE): two names swap files atomically. */
static void exchange(void) {
    int a = open("swap-a", O_CREAT | O_WRONLY, 0644);
    CHECK(a >= 0 && write(a, "A", 1) == 1);
    close(a);
    CHECK(mkdir("swap-d", 0755) == 0);
    CHECK(syscall(SYS_renameat2, AT_FDCWD, "swap-a", AT_FDCWD, "swap-d", RENAME_EXCHANGE) == 0);
    struct stat st;
    CHECK(stat("swap-a", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat("swap-d", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 1);
    CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, "swap-a", AT_FDCWD, "no-such", RENAME_EXCHANGE), ENOENT);
    CHECK_ERR(syscall(SYS_renameat2, AT_FDCWD, "swap-a", AT_FDCWD, "swap-d", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
    CHECK(unlink("swap-d") == 0 && rmdir("swap-a") == 0);
}

struct open_how_t {
    uint64_t flags, mode, resolve;
};

static long openat2_(int dirfd, const char *path, struct open_how_t *how, size_t size) {
    return syscall(437 /* SYS_openat2 */, dirfd, path, how, size);
}

/* openat2: strict arguments and the RESOLVE_* rules (run in a fresh
 * directory with a subdirectory "sub"). */
static void openat2_rules(void) {
    CHECK(mkdir("sub", 0755) == 0);
    int dir = open("sub", O_DIRECTORY | O_RDONLY);
    CHECK(dir >= 0);
    CHECK(symlink("/proc/version", "sub/abs-link") == 0 && symlink("target", "sub/rel-link") == 0);
    int f = openat(dir, "target", O_CREAT | O_WRONLY, 0644);
    CHECK(f >= 0);
    close(f);
    struct open_how_t how = {O_RDONLY, 0, 0};
    long fd = openat2_(dir, "target", &how, sizeof how);
    CHECK(fd >= 0);
    close((int)fd);
    how.resolve = 0x04; /* RESOLVE_NO_SYMLINKS */
    CHECK_ERR(openat2_(dir, "rel-link", &how, sizeof how), ELOOP);
    how.resolve = 0x02; /* RESOLVE_NO_MAGICLINKS: ordinary links are fine */
    fd = openat2_(dir, "rel-link", &how, sizeof how);
    CHECK(fd >= 0);
    close((int)fd);
    CHECK_ERR(openat2_(AT_FDCWD, "/proc/self/exe", &how, sizeof how), ELOOP);
    how.resolve = 0x08; /* RESOLVE_BENEATH */
    CHECK_ERR(openat2_(dir, "../sub/target", &how, sizeof how), EXDEV);
    CHECK_ERR(openat2_(dir, "/proc/version", &how, sizeof how), EXDEV);
    CHECK_ERR(openat2_(dir, "abs-link", &how, sizeof how), EXDEV);
    fd = openat2_(dir, "./rel-link", &how, sizeof how);
    CHECK(fd >= 0);
    close((int)fd);
    /* A magic link cannot carry a walk out from under dirfd. */
    int rootdir = open("/", O_DIRECTORY | O_RDONLY);
    CHECK_ERR(openat2_(rootdir, "proc/self/cwd/..", &how, sizeof how), EXDEV);
    how.resolve = 0x10; /* RESOLVE_IN_ROOT */
    CHECK_ERR(openat2_(rootdir, "proc/self/cwd/..", &how, sizeof how), EXDEV);
    close(rootdir);
    how.resolve = 0x01; /* RESOLVE_NO_XDEV */
    CHECK_ERR(openat2_(dir, "/proc/version", &how, sizeof how), EXDEV);
    how.resolve = 0x10; /* RESOLVE_IN_ROOT: "/" is dirfd */
    fd = openat2_(dir, "/target", &how, sizeof how);
    CHECK(fd >= 0);
    close((int)fd);
    CHECK_ERR(openat2_(dir, "/proc/version", &how, sizeof how), ENOENT);
    /* Strict arguments. */
    how.resolve = 0;
    how.mode = 0644; /* a mode without O_CREAT */
    CHECK_ERR(openat2_(dir, "target", &how, sizeof how), EINVAL);
    how.mode = 0;
    how.resolve = 0x08 | 0x10;
    CHECK_ERR(openat2_(dir, "target", &how, sizeof how), EINVAL);
    how.resolve = 1ull << 40;
    CHECK_ERR(openat2_(dir, "target", &how, sizeof how), EINVAL);
    how.resolve = 0;
    CHECK_ERR(openat2_(dir, "target", &how, 16), EINVAL);
    struct {
        struct open_how_t how;
        uint64_t pad;
    } padded = {{O_RDONLY, 0, 0}, 1};
    CHECK_ERR(openat2_(dir, "target", &padded.how, sizeof padded), E2BIG);
    padded.pad = 0;
    fd = openat2_(dir, "target", &padded.how, sizeof padded);
    CHECK(fd >= 0);
    close((int)fd);
    close(dir);
    unlinkat(AT_FDCWD, "sub/target", 0);
    unlink("sub/abs-link");
    unlink("sub/rel-link");
    rmdir("sub");
}

/* O_TMPFILE: an unnamed file in a directory, named later by linkat
 * through /proc/self/fd or AT_EMPTY_PATH; with O_EXCL it stays unnamed. */
static void tmpfiles(void) {
    CHECK(mkdir("tmpdir", 0755) == 0);
    int fd = open("tmpdir", O_TMPFILE | O_RDWR, 0640);
    CHECK(fd >= 0);
    CHECK(write(fd, "unnamed", 7) == 7);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 && st.st_size == 7);
    DIR *d = opendir("tmpdir");
    int entries = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
    if (d) closedir(d);
    CHECK(entries == 0);
    char path[64], target[PATH_MAX] = {0};
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    CHECK(readlink(path, target, sizeof target - 1) > 0 && strstr(target, "(deleted)") != NULL);
    CHECK(linkat(AT_FDCWD, path, AT_FDCWD, "tmpdir/named", AT_SYMLINK_FOLLOW) == 0);
    CHECK(stat("tmpdir/named", &st) == 0 && st.st_nlink == 1 && st.st_size == 7 && (st.st_mode & 0777) == (0640 & ~022));
    close(fd);
    /* O_EXCL: never linkable. */
    fd = open("tmpdir", O_TMPFILE | O_WRONLY | O_EXCL, 0600);
    CHECK(fd >= 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    CHECK_ERR(linkat(AT_FDCWD, path, AT_FDCWD, "tmpdir/never", AT_SYMLINK_FOLLOW), ENOENT);
    close(fd);
    /* Read-only, or on something that is not a directory: EINVAL, ENOTDIR. */
    CHECK_ERR(open("tmpdir", O_TMPFILE | O_RDONLY, 0600), EINVAL);
    CHECK_ERR(open("tmpdir/named", O_TMPFILE | O_RDWR, 0600), ENOTDIR);
    unlink("tmpdir/named");
    rmdir("tmpdir");
}

struct handle_t {
    unsigned int bytes;
    int type;
    unsigned char data[128];
};

/* name_to_handle_at / open_by_handle_at: a handle opens the same file
 * again (root only), EOVERFLOW tells the size, a symlink's is ELOOP. */
static void handles(void) {
    int f = open("handled", O_CREAT | O_RDWR, 0600);
    CHECK(f >= 0 && write(f, "by handle", 9) == 9);
    close(f);
    CHECK(symlink("handled", "handled-link") == 0);
    struct handle_t h;
    memset(&h, 0, sizeof h);
    int mount_id = -1;
    CHECK_ERR(syscall(SYS_name_to_handle_at, AT_FDCWD, "handled", &h, &mount_id, 0), EOVERFLOW);
    CHECK(h.bytes > 0 && h.bytes <= 128);
    CHECK(syscall(SYS_name_to_handle_at, AT_FDCWD, "handled", &h, &mount_id, 0) == 0);
    int again = (int)syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY);
    char buf[16] = {0};
    CHECK(again >= 0 && read(again, buf, sizeof buf) == 9 && memcmp(buf, "by handle", 9) == 0);
    close(again);
    struct handle_t link;
    memset(&link, 0, sizeof link);
    link.bytes = 128;
    CHECK(syscall(SYS_name_to_handle_at, AT_FDCWD, "handled-link", &link, &mount_id, 0) == 0);
    CHECK_ERR(syscall(SYS_open_by_handle_at, AT_FDCWD, &link, O_RDONLY), ELOOP);
    struct handle_t big;
    memset(&big, 0, sizeof big);
    big.bytes = 129;
    CHECK_ERR(syscall(SYS_name_to_handle_at, AT_FDCWD, "handled", &big, &mount_id, 0), EINVAL);
    CHECK_ERR(syscall(SYS_name_to_handle_at, AT_FDCWD, "handled", &h, &mount_id, -1), EINVAL);
    pid_t pid = fork();
    if (pid == 0) {
        if (setuid(1000) != 0) _exit(2);
        errno = 0;
        _exit(syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY) == -1 && errno == EPERM ? 0 : 1);
    }
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink("handled-link");
    unlink("handled");
}

/* O_PATH descriptors name a file for *at calls and fstat, and refuse
 * I/O-style calls (EBADF); readlinkat with an empty path reads the
 * link a descriptor was opened on. */
static void o_path_and_links(void) {
    CHECK(symlink("target-of-link", "a-link") == 0);
    int fd = open("a-link", O_PATH | O_NOFOLLOW);
    CHECK(fd >= 0);
    char buf[64] = {0};
    CHECK(readlinkat(fd, "", buf, sizeof buf) == 14 && memcmp(buf, "target-of-link", 14) == 0);
    int dir = open(".", O_PATH | O_DIRECTORY);
    CHECK_ERR(readlinkat(dir, "", buf, sizeof buf), ENOENT);
    int file = open("o-path-file", O_CREAT | O_WRONLY, 0644);
    CHECK(file >= 0 && write(file, "data", 4) == 4);
    close(file);
    file = open("o-path-file", O_PATH);
    int n = 0;
    CHECK_ERR(ioctl(file, FIONREAD, &n), EBADF);
    CHECK_ERR(lseek(file, 0, SEEK_SET), EBADF);
    CHECK_ERR(syscall(SYS_readahead, file, 0, 4096), EBADF);
    CHECK_ERR(flock(file, LOCK_SH), EBADF);
    struct stat st;
    CHECK(fstat(file, &st) == 0 && st.st_size == 4);
    CHECK(fcntl(file, F_GETFD) == 0);
    close(file);
    close(dir);
    close(fd);
    unlink("o-path-file");
    unlink("a-link");
}

/* Removing entries while reading the directory (what `rm -r` does) must
 * not skip any: 3000 files, each unlinked as readdir returns it, then the
 * directory is empty. */
static void remove_while_reading(void) {
    CHECK(mkdir("many", 0755) == 0);
    char name[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "many/file-with-a-longer-name-%04d", i);
        int fd = open(name, O_CREAT | O_WRONLY, 0644);
        if (fd < 0) {
            CHECK(fd >= 0);
            return;
        }
        close(fd);
    }
    DIR *d = opendir("many");
    CHECK(d != NULL);
    int removed = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    CHECK(removed == 3000);
    CHECK(rmdir("many") == 0);
}

/* A working directory whose path is longer than a page: the getcwd call
 * says ENAMETOOLONG, whatever the buffer (Linux's d_path limit), and the
 * directory still works by relative names. */
static void deep_working_directory(void) {
    char here[PATH_MAX];
    CHECK(getcwd(here, sizeof here) != NULL);
    int levels = 0;
    for (; levels < 1500; levels++)
        if (mkdir("ddd", 0755) != 0 || chdir("ddd") != 0)
            break;
    CHECK(levels == 1500); /* 6000 bytes of path */
    /* The system call itself (a C library may fall back to walking
     * "..", which glibc does). */
    static char big[65536];
    CHECK(syscall(SYS_getcwd, big, sizeof big) == -1 && errno == ENAMETOOLONG);
    CHECK(syscall(SYS_getcwd, big, 4096) == -1 && errno == ENAMETOOLONG);
    int fd = open("f", O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK(unlink("f") == 0);
    for (int i = 0; i < levels; i++)
        if (chdir("..") != 0 || rmdir("ddd") != 0) {
            CHECK(!"climbing back");
            break;
        }
    char back[PATH_MAX];
    CHECK(getcwd(back, sizeof back) != NULL && strcmp(back, here) == 0);
}

/* O_CREAT | O_EXCL on a /proc/self/fd/N link to an open file: EEXIST,
 * as on Linux (the link names a file that exists). */
static void exclusive_create_through_fd_link(void) {
    int fd = open("named", O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    CHECK_ERR(open(path, O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
    if (fd >= 0) close(fd);
    CHECK(unlink("named") == 0);
}

int main(void) {
    char dir[] = "/tmp/tessera-files-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chdir(dir) == 0);
    exchange();
    remove_while_reading();
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL && strcmp(cwd, dir) == 0);
    CHECK(getcwd(cwd, 3) == NULL && errno == ERANGE);
    deep_working_directory();
    exclusive_create_through_fd_link();

    /* create, write, seek, read */
    umask(022);
    int fd = open("a.txt", O_CREAT | O_EXCL | O_RDWR, 0666);
    CHECK(fd >= 0);
    CHECK(write(fd, "hello world", 11) == 11);
    CHECK(lseek(fd, 0, SEEK_CUR) == 11);
    CHECK(lseek(fd, 6, SEEK_SET) == 6);
    char buf[64] = {0};
    CHECK(read(fd, buf, sizeof buf) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(read(fd, buf, sizeof buf) == 0);
    CHECK(pwrite(fd, "W", 1, 6) == 1);
    CHECK(pread(fd, buf, 5, 6) == 5 && memcmp(buf, "World", 5) == 0);
    CHECK(lseek(fd, -1, SEEK_SET) == -1 && errno == EINVAL);
    CHECK(lseek(fd, 0, SEEK_END) == 11);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 11 && S_ISREG(st.st_mode));
    CHECK((st.st_mode & 0777) == 0644); /* umask applied */
    CHECK(ftruncate(fd, 3) == 0 && fstat(fd, &st) == 0 && st.st_size == 3);
    CHECK(close(fd) == 0);
    CHECK_ERR(open("a.txt", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);

    /* One read of a regular file returns everything asked for (dd bs=1M). */
    {
        static char big[300000], back[300000];
        for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
        int b = open("big.bin", O_CREAT | O_TRUNC | O_RDWR, 0644);
        CHECK(b >= 0);
        CHECK(write(b, big, sizeof big) == (ssize_t)sizeof big);
        CHECK(lseek(b, 0, SEEK_SET) == 0);
        CHECK(read(b, back, sizeof back) == (ssize_t)sizeof back && memcmp(big, back, sizeof big) == 0);
        CHECK(pread(b, back, 1000, sizeof big - 500) == 500);
        CHECK(pwrite(b, big, sizeof big, 1000) == (ssize_t)sizeof big);
        CHECK(pread(b, back, sizeof back, 1000) == (ssize_t)sizeof back && memcmp(big, back, sizeof big) == 0);
        CHECK(close(b) == 0 && unlink("big.bin") == 0);
    }

    /* O_APPEND and O_TRUNC */
    fd = open("a.txt", O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "++", 2) == 2);
    close(fd);
    CHECK(stat("a.txt", &st) == 0 && st.st_size == 5);
    fd = open("a.txt", O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK(read(fd, buf, 1) == -1 && errno == EBADF); /* write-only */
    close(fd);
    CHECK(stat("a.txt", &st) == 0 && st.st_size == 0);

    /* directories */
    CHECK(mkdir("sub", 0755) == 0);
    CHECK_ERR(mkdir("sub", 0755), EEXIST);
    CHECK(mkdir("sub/deeper", 0700) == 0);
    CHECK(stat("sub/deeper", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_ERR(rmdir("sub"), ENOTEMPTY);
    CHECK_ERR(rmdir("a.txt"), ENOTDIR);
    CHECK_ERR(unlink("sub"), EISDIR);
    CHECK_ERR(open("sub", O_WRONLY), EISDIR);
    CHECK_ERR(open("a.txt", O_RDONLY | O_DIRECTORY), ENOTDIR);
    CHECK_ERR(open("a.txt/x", O_RDONLY), ENOTDIR);
    CHECK_ERR(open("missing/x", O_RDONLY), ENOENT);
    CHECK(listed(".", "a.txt") && listed(".", "sub") && listed(".", ".") && listed(".", ".."));
    CHECK(listed("sub", "deeper") && !listed("sub", "a.txt"));

    /* symbolic links */
    CHECK(symlink("a.txt", "link") == 0);
    CHECK(lstat("link", &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(stat("link", &st) == 0 && S_ISREG(st.st_mode));
    ssize_t n = readlink("link", buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "a.txt", 5) == 0);
    CHECK_ERR(readlink("a.txt", buf, sizeof buf), EINVAL);
    CHECK(symlink("loop-b", "loop-a") == 0 && symlink("loop-a", "loop-b") == 0);
    CHECK_ERR(open("loop-a", O_RDONLY), ELOOP);
    CHECK_ERR(open("link", O_RDONLY | O_NOFOLLOW), ELOOP);
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK_ERR(open(longname, O_RDONLY), ENAMETOOLONG);

    /* hard links and renames */
    CHECK(link("a.txt", "hard") == 0);
    CHECK(stat("a.txt", &st) == 0 && st.st_nlink == 2);
    CHECK(unlink("hard") == 0 && stat("a.txt", &st) == 0 && st.st_nlink == 1);
    fd = open("b.txt", O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "bbb", 3) == 3);
    close(fd);
    CHECK(rename("b.txt", "a.txt") == 0); /* replaces */
    CHECK(stat("a.txt", &st) == 0 && st.st_size == 3);
    CHECK_ERR(stat("b.txt", &st), ENOENT);
    CHECK(rename("sub", "moved") == 0 && stat("moved/deeper", &st) == 0);
    CHECK_ERR(rename("moved", "moved/deeper/inside"), EINVAL);
    CHECK_ERR(rename("a.txt", "moved"), EISDIR);

    /* permissions, access, times */
    CHECK(chmod("a.txt", 0600) == 0 && stat("a.txt", &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(access("a.txt", R_OK | W_OK) == 0);
    CHECK_ERR(access("a.txt", X_OK), EACCES);
    CHECK(chmod("a.txt", 0755) == 0 && access("a.txt", X_OK) == 0);
    struct timespec times[2] = {{1000000000, 0}, {1234567890, 500}};
    CHECK(utimensat(AT_FDCWD, "a.txt", times, 0) == 0);
    CHECK(stat("a.txt", &st) == 0 && st.st_mtim.tv_sec == 1234567890 && st.st_mtim.tv_nsec == 500);
    CHECK(umask(077) == 022 && umask(022) == 077);

    /* *at calls relative to a directory descriptor, fchdir */
    int dfd = open("moved", O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    CHECK(mkdirat(dfd, "via-fd", 0755) == 0);
    CHECK(fstatat(dfd, "via-fd", &st, 0) == 0 && S_ISDIR(st.st_mode));
    CHECK(fchdir(dfd) == 0 && getcwd(cwd, sizeof cwd) && strstr(cwd, "/moved") != NULL);
    CHECK(chdir("..") == 0);
    CHECK(unlinkat(dfd, "via-fd", AT_REMOVEDIR) == 0);
    close(dfd);

    /* device files */
    fd = open("/dev/null", O_RDWR);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1 && read(fd, buf, 4) == 0);
    close(fd);
    fd = open("/dev/zero", O_RDONLY);
    memset(buf, 1, 8);
    CHECK(fd >= 0 && read(fd, buf, 8) == 8 && buf[0] == 0 && buf[7] == 0);
    close(fd);
    fd = open("/dev/full", O_WRONLY);
    CHECK(fd >= 0 && write(fd, "x", 1) == -1 && errno == ENOSPC);
    close(fd);
    CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
    struct statfs sfs;
    CHECK(statfs(".", &sfs) == 0 && sfs.f_bsize > 0);

    o_path_and_links();
    openat2_rules();
    tmpfiles();
    if (geteuid() == 0) handles();

    /* clean up */
    CHECK(unlink("loop-a") == 0 && unlink("loop-b") == 0 && unlink("link") == 0);
    CHECK(unlink("a.txt") == 0);
    CHECK(rmdir("moved/deeper") == 0 && rmdir("moved") == 0);
    CHECK(chdir("/") == 0 && rmdir(dir) == 0);
    CHECK_ERR(chdir(dir), ENOENT);
    return tt_done("files");
}
