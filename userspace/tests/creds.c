/* Credentials: setuid and its relatives follow Linux's rules (root may
 * set any id; others only one of their own real, effective or saved ids),
 * a child inherits them, /proc/self/status shows them. On Tessera,
 * /dev/cellctl refuses the commands that load or change cells to a
 * caller whose effective uid is not 0 (EPERM); the device does not exist
 * on the Linux host, where that part is skipped. Run as root. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* The rest of the /proc/self/status line starting with `key`, or "". */
static void status_line(const char *key, char *out, size_t size) {
    static char text[4096];
    out[0] = 0;
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return;
    text[n] = 0;
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, key, strlen(key))) {
            size_t len = strcspn(line, "\n");
            if (len >= size) len = size - 1;
            memcpy(out, line, len);
            out[len] = 0;
            return;
        }
    }
}

static int have_cellctl(void) { return access("/dev/cellctl", F_OK) == 0; }

/* Writes `command` to /dev/cellctl; returns the write's errno (0: it
 * worked) and leaves the reply in `reply`. */
static int cellctl(const char *command, char *reply, size_t size) {
    reply[0] = 0;
    int fd = open("/dev/cellctl", O_RDWR);
    if (fd < 0) return errno;
    int err = write(fd, command, strlen(command)) == (ssize_t)strlen(command) ? 0 : errno;
    ssize_t n = read(fd, reply, size - 1);
    reply[n > 0 ? n : 0] = 0;
    close(fd);
    return err;
}

static int as_user(void) {
    uid_t r, e, s;
    gid_t gr, ge, gs;
    char line[256], reply[512];
    /* Root may set any ids; keep 0 as the saved uid for now. */
    CHECK(setresgid(1000, 1000, 1000) == 0);
    CHECK(setresuid(1000, 1000, 0) == 0);
    CHECK(getresuid(&r, &e, &s) == 0 && r == 1000 && e == 1000 && s == 0);
    CHECK(getresgid(&gr, &ge, &gs) == 0 && gr == 1000 && ge == 1000 && gs == 1000);
    CHECK(getuid() == 1000 && geteuid() == 1000 && getgid() == 1000 && getegid() == 1000);
    /* A process that is not root may take its saved id back... */
    CHECK(seteuid(0) == 0 && geteuid() == 0 && getuid() == 1000);
    /* ...and, root again, drop all three for good. */
    CHECK(setuid(1000) == 0);
    CHECK(getresuid(&r, &e, &s) == 0 && r == 1000 && e == 1000 && s == 1000);
    CHECK_ERR(setuid(0), EPERM);
    CHECK_ERR(seteuid(0), EPERM);
    CHECK_ERR(setresuid(-1, 2000, -1), EPERM);
    CHECK_ERR(setreuid(0, -1), EPERM);
    CHECK_ERR(setgid(0), EPERM);
    CHECK(setreuid(-1, 1000) == 0 && setresuid(-1, -1, -1) == 0 && geteuid() == 1000);
    status_line("Uid:", line, sizeof line);
    CHECK(!strcmp(line, "Uid:\t1000\t1000\t1000\t1000"));
    status_line("Gid:", line, sizeof line);
    CHECK(!strcmp(line, "Gid:\t1000\t1000\t1000\t1000"));
    /* A child inherits them. */
    pid_t pid = fork();
    if (pid == 0) _exit(getuid() == 1000 && geteuid() == 1000 && getgid() == 1000 ? 0 : 1);
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (have_cellctl()) {
        /* Loading or changing cells needs root; looking does not. */
        int fd = open("/dev/cellctl", O_RDWR);
        if (fd < 0) {
            CHECK(errno == EACCES || errno == EPERM);
        } else {
            close(fd);
            CHECK(cellctl("restart virtio_blk", reply, sizeof reply) == EPERM);
            CHECK(strstr(reply, "needs root (effective uid 0)") != NULL);
            CHECK(cellctl("load /lib/cells/probe.cell", reply, sizeof reply) == EPERM);
            CHECK(cellctl("swap virtio_blk /lib/cells/virtio_blk.cell", reply, sizeof reply) == EPERM);
            CHECK(cellctl("unload probe", reply, sizeof reply) == EPERM);
            CHECK(cellctl("list", reply, sizeof reply) == 0);
        }
    }
    return tt_done("creds (uid 1000)");
}

int main(void) {
    char reply[512];
    CHECK(getuid() == 0 && geteuid() == 0);
    if (have_cellctl()) {
        /* Root passes the privilege check: the slot is what is missing. */
        CHECK(cellctl("restart no-such-slot", reply, sizeof reply) == ENOENT);
    }
    pid_t pid = fork();
    if (pid == 0) _exit(as_user());
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent kept its ids. */
    CHECK(getuid() == 0 && geteuid() == 0 && getgid() == 0);
    return tt_done("creds");
}
