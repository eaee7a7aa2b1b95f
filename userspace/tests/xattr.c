/* Extended attributes as Linux has them: the set/get/list/remove calls by
 * path, by path without following links and by descriptor, with
 * XATTR_CREATE/XATTR_REPLACE, sizes, namespaces and permissions. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static int listed(const char *list, ssize_t len, const char *name) {
    for (ssize_t at = 0; at < len; at += strlen(list + at) + 1)
        if (strcmp(list + at, name) == 0) return 1;
    return 0;
}

int main(void) {
    CHECK(geteuid() == 0); /* the test runs as root */
    char dir[] = "/tmp/xattr-XXXXXX";
    CHECK(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
    char file[128], link[128];
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    int fd = open(file, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    CHECK(symlink(file, link) == 0);

    CHECK(setxattr(file, "user.colour", "blue", 4, 0) == 0);
    char value[64] = {0};
    CHECK(getxattr(file, "user.colour", value, sizeof value) == 4 && memcmp(value, "blue", 4) == 0);
    CHECK(getxattr(file, "user.colour", NULL, 0) == 4); /* the size */
    CHECK_ERR(getxattr(file, "user.colour", value, 2), ERANGE);
    CHECK_ERR(getxattr(file, "user.none", value, sizeof value), ENODATA);
    /* XATTR_CREATE / XATTR_REPLACE. */
    CHECK_ERR(setxattr(file, "user.colour", "red", 3, XATTR_CREATE), EEXIST);
    CHECK_ERR(setxattr(file, "user.size", "1", 1, XATTR_REPLACE), ENODATA);
    CHECK(setxattr(file, "user.colour", "red", 3, XATTR_REPLACE) == 0);
    CHECK(getxattr(file, "user.colour", value, sizeof value) == 3 && memcmp(value, "red", 3) == 0);
    CHECK_ERR(setxattr(file, "user.colour", "x", 1, 4), EINVAL);
    /* Names and sizes. */
    CHECK_ERR(setxattr(file, "", "x", 1, 0), ERANGE);
    char longname[300] = "user.";
    memset(longname + 5, 'n', 260);
    CHECK_ERR(setxattr(file, longname, "x", 1, 0), ERANGE);
    CHECK_ERR(setxattr(file, "nonamespace", "x", 1, 0), EOPNOTSUPP);
    static char big[65537];
    CHECK_ERR(setxattr(file, "user.big", big, sizeof big, 0), E2BIG);
    /* By descriptor, and security.* (root writes). */
    CHECK(fsetxattr(fd, "security.label", "L", 1, 0) == 0);
    CHECK(fgetxattr(fd, "security.label", value, sizeof value) == 1 && value[0] == 'L');
    char list[256];
    ssize_t len = listxattr(file, list, sizeof list);
    CHECK(len > 0 && listed(list, len, "user.colour") && listed(list, len, "security.label"));
    CHECK(flistxattr(fd, NULL, 0) == len);
    CHECK_ERR(listxattr(file, list, 3), ERANGE);
    /* The l* calls do not follow the link: the link has none of its own. */
    CHECK(lgetxattr(link, "user.colour", value, sizeof value) == -1);
    CHECK(getxattr(link, "user.colour", value, sizeof value) == 3);
    CHECK(llistxattr(link, list, sizeof list) >= 0 && !listed(list, llistxattr(link, list, sizeof list), "user.colour"));
    CHECK_ERR(lsetxattr(link, "user.x", "1", 1, 0), EPERM); /* user.* only on files and directories */
    /* Remove. */
    CHECK(removexattr(file, "user.colour") == 0);
    CHECK_ERR(removexattr(file, "user.colour"), ENODATA);
    CHECK_ERR(getxattr(file, "user.colour", value, sizeof value), ENODATA);
    CHECK(fremovexattr(fd, "security.label") == 0);
    CHECK(listxattr(file, list, sizeof list) == 0);
    CHECK_ERR(getxattr("/tmp/no-such-file-xattr", "user.a", value, sizeof value), ENOENT);
    /* An ordinary user: user.* needs write permission to set; security.*
     * and trusted.* are root's to write. */
    CHECK(setxattr(file, "user.shared", "v", 1, 0) == 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (setuid(65534) != 0) _exit(2);
        char v[8];
        int ok = getxattr(file, "user.shared", v, sizeof v) == 1;
        ok = ok && setxattr(file, "user.mine", "1", 1, 0) == -1 && errno == EACCES;
        ok = ok && setxattr(file, "security.x", "1", 1, 0) == -1 && errno == EPERM;
        ok = ok && setxattr(file, "trusted.x", "1", 1, 0) == -1 && errno == EPERM;
        _exit(ok ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd);
    unlink(link);
    unlink(file);
    rmdir(dir);
    return tt_done("xattr");
}
