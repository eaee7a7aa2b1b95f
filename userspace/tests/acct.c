/* Process accounting and ustat: with acct(file) on, an ended process
 * leaves a record (version 2 or 3 layout, as the kernel is built) with
 * its name, wait status and AFORK flag; acct's errors; ustat of the root
 * file system's device. Run as root. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct ustat_buf {
    int32_t f_tfree;
    uint64_t f_tinode;
    char f_fname[6], f_fpack[6];
};

/* Finds the record of a process named `name` in the accounting file;
 * returns its flag byte and wait status (or -1). */
static int find_record(const char *file, const char *name, uint32_t *status) {
    int fd = open(file, O_RDONLY);
    if (fd < 0) return -1;
    unsigned char r[64];
    int flag = -1;
    while (read(fd, r, 64) == 64) {
        int version = r[1] & 0x7f;
        const char *comm = (const char *)(version == 3 ? r + 48 : r + 36);
        uint32_t code;
        memcpy(&code, version == 3 ? r + 4 : r + 32, 4);
        if ((version == 2 || version == 3) && strncmp(comm, name, 16) == 0) {
            flag = r[0];
            *status = code;
        }
    }
    close(fd);
    return flag;
}

int main(void) {
    char dir[] = "/tmp/acct-XXXXXX";
    CHECK(mkdtemp(dir) != NULL && chdir(dir) == 0);
    int fd = open("records", O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK(acct("records") == 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* A forked child that never runs exec: AFORK, exit status 3. */
        char name[16] = "acct-child-a";
        syscall(SYS_prctl, 15 /* PR_SET_NAME */, name, 0, 0, 0);
        _exit(3);
    }
    CHECK(waitpid(pid, NULL, 0) == pid);
    pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(acct(NULL) == 0);
    uint32_t code = 0;
    int flag = find_record("records", "acct-child-a", &code);
    CHECK(flag >= 0 && (flag & 0x01) && code == 3 << 8);
    flag = find_record("records", "true", &code);
    CHECK(flag >= 0 && !(flag & 0x01) && code == 0);
    /* Errors. */
    CHECK_ERR(acct("/"), EISDIR);
    CHECK_ERR(acct("/dev/null"), EACCES);
    CHECK_ERR(acct("no-such-file"), ENOENT);
    CHECK_ERR(acct("records/x"), ENOTDIR);
    pid = fork();
    if (pid == 0) {
        if (setuid(1000) != 0) _exit(2);
        errno = 0;
        _exit(acct(NULL) == -1 && errno == EPERM ? 0 : 1);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink("records");
    CHECK(chdir("/") == 0 && rmdir(dir) == 0);

    /* ustat of the device / is on. */
    struct stat st;
    CHECK(stat("/", &st) == 0);
    struct ustat_buf u;
    memset(&u, 0xff, sizeof u);
    CHECK(syscall(SYS_ustat, (unsigned)st.st_dev, &u) == 0 && u.f_tfree >= 0);
    CHECK_ERR(syscall(SYS_ustat, 0xfffffffu, &u), EINVAL);
    CHECK_ERR(syscall(SYS_ustat, (unsigned)st.st_dev, (void *)8), EFAULT);
    return tt_done("acct");
}
