/* cellctl: manage Tessera's cells from user space.
 *
 *   cellctl list                 loaded cells and driver slots
 *   cellctl info NAME            one slot or cell in detail
 *   cellctl load FILE            load and link a cell file
 *   cellctl unload NAME          unload a cell that no slot uses
 *   cellctl swap SLOT FILE       swap the cell in FILE into SLOT, live
 *   cellctl restart SLOT         start a fresh instance (clears a hold)
 *
 * It writes the command to /dev/cellctl (paths made absolute) and prints
 * the kernel's reply: on stdout when the command worked (exit 0), on
 * stderr after "cellctl: " when it did not (exit 1, the write's errno
 * names the kind of failure). /proc/cells lists the cells too. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: cellctl list | info NAME | load FILE | unload NAME | swap SLOT FILE | restart SLOT\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    int want, path_arg = 0;
    if (!strcmp(cmd, "list")) want = 0;
    else if (!strcmp(cmd, "info") || !strcmp(cmd, "unload") || !strcmp(cmd, "restart")) want = 1;
    else if (!strcmp(cmd, "load")) { want = 1; path_arg = 2; }
    else if (!strcmp(cmd, "swap")) { want = 2; path_arg = 3; }
    else if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) { usage(); return 0; }
    else return usage();
    if (argc != 2 + want) return usage();

    char path[PATH_MAX];
    if (path_arg) {
        if (!realpath(argv[path_arg], path)) {
            fprintf(stderr, "cellctl: %s: %s\n", argv[path_arg], strerror(errno));
            return 1;
        }
        argv[path_arg] = path;
    }
    char line[PATH_MAX + 256];
    int len = snprintf(line, sizeof line, "%s", cmd);
    for (int i = 2; i < argc && len < (int)sizeof line; i++)
        len += snprintf(line + len, sizeof line - len, " %s", argv[i]);
    if (len >= (int)sizeof line) {
        fprintf(stderr, "cellctl: arguments too long\n");
        return 1;
    }

    int fd = open("/dev/cellctl", O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "cellctl: /dev/cellctl: %s%s\n", strerror(errno), errno == ENOENT ? " (is this Tessera?)" : "");
        return 1;
    }
    int failed = write(fd, line, len) != len;
    int err = errno;
    FILE *out = failed ? stderr : stdout;
    if (failed) fprintf(stderr, "cellctl: %s: ", strerror(err));
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, n, out);
    close(fd);
    return failed ? 1 : 0;
}
