/* inotify as Linux has it: events on a watched file (attributes, open,
 * access, modify, close) and a watched directory (create, delete, moves
 * with a shared cookie, names), merging, one-shot watches, IN_IGNORED,
 * IN_DELETE_SELF, errors and FIONREAD; dnotify (F_NOTIFY). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct seen {
    int wd;
    uint32_t mask, cookie;
    char name[64];
};

/* Reads every queued event (non-blocking instance). */
static int collect(int fd, struct seen *out, int max) {
    char buf[4096] __attribute__((aligned(8)));
    int n = 0;
    ssize_t len;
    while ((len = read(fd, buf, sizeof buf)) > 0) {
        for (char *at = buf; at < buf + len && n < max;) {
            struct inotify_event *e = (struct inotify_event *)at;
            out[n].wd = e->wd;
            out[n].mask = e->mask;
            out[n].cookie = e->cookie;
            snprintf(out[n].name, sizeof out[n].name, "%s", e->len ? e->name : "");
            n++;
            at += sizeof *e + e->len;
        }
    }
    return n;
}

static volatile int dn_fd = -1, dn_count;
static void on_dnotify(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    dn_fd = info->si_fd;
    dn_count++;
}

/* dnotify (fcntl F_NOTIFY): a signal carrying the directory's descriptor,
 * for the directory itself and its entries; one-shot unless multishot. */
static void dnotify(const char *dir) {
    struct sigaction sa = {.sa_sigaction = on_dnotify, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGRTMIN + 1, &sa, NULL) == 0);
    int d = open(dir, O_RDONLY);
    CHECK(d >= 0);
    CHECK_ERR(fcntl(0, F_NOTIFY, DN_CREATE), ENOTDIR);
    CHECK(fcntl(d, F_SETSIG, SIGRTMIN + 1) == 0);
    CHECK(fcntl(d, F_NOTIFY, DN_CREATE | DN_ATTRIB) == 0);
    char path[160];
    snprintf(path, sizeof path, "%s/dn-file", dir);
    int f = open(path, O_CREAT | O_WRONLY, 0644); /* the signal arrives before open returns */
    close(f);
    CHECK(dn_count == 1 && dn_fd == d);
    CHECK(chmod(path, 0600) == 0); /* one-shot: nothing more */
    CHECK(dn_count == 1);
    CHECK(fcntl(d, F_NOTIFY, DN_ATTRIB | DN_MULTISHOT) == 0);
    CHECK(chmod(path, 0644) == 0 && chmod(dir, 0755) == 0);
    CHECK(dn_count == 3);
    CHECK(fcntl(d, F_NOTIFY, 0) == 0);
    CHECK(chmod(path, 0600) == 0 && dn_count == 3);

    /* A directory and its watched subdirectory both hear a change of the
     * subdirectory: two instances of the same real-time signal. */
    char sub[160];
    snprintf(sub, sizeof sub, "%s/dn-sub", dir);
    CHECK(mkdir(sub, 0700) == 0);
    int s = open(sub, O_RDONLY);
    CHECK(s >= 0 && fcntl(s, F_SETSIG, SIGRTMIN + 1) == 0);
    CHECK(fcntl(d, F_NOTIFY, DN_ATTRIB | DN_RENAME | DN_MULTISHOT) == 0);
    CHECK(fcntl(s, F_NOTIFY, DN_ATTRIB | DN_RENAME | DN_MULTISHOT) == 0);
    dn_count = 0;
    CHECK(chmod(sub, 0755) == 0);
    CHECK(dn_count == 2);
    /* DN_RENAME is a rename within the directory, not a move out of it. */
    dn_count = 0;
    char moved[200];
    snprintf(moved, sizeof moved, "%s/dn-file", sub);
    CHECK(rename(path, moved) == 0);
    CHECK(dn_count == 0);
    char renamed[200];
    snprintf(renamed, sizeof renamed, "%s/dn-renamed", sub);
    CHECK(rename(moved, renamed) == 0);
    CHECK(dn_count == 1 && dn_fd == s);
    unlink(renamed);
    close(s);
    rmdir(sub);
    unlink(path);
    close(d);
}

/* Self events of a directory carry no IN_ISDIR; a change to a watched
 * entry is reported to the directory's watch first. */
static void directory_self(const char *dir) {
    char sub[160];
    snprintf(sub, sizeof sub, "%s/self-dir", dir);
    CHECK(mkdir(sub, 0755) == 0);
    int in = inotify_init1(IN_NONBLOCK);
    int parent = inotify_add_watch(in, dir, IN_ATTRIB);
    int child = inotify_add_watch(in, sub, IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
    CHECK(parent > 0 && child > 0);
    CHECK(chmod(sub, 0700) == 0);
    struct seen ev[8];
    int n = collect(in, ev, 8);
    CHECK(n == 2 && ev[0].wd == parent && ev[0].mask == (IN_ATTRIB | IN_ISDIR) && strcmp(ev[0].name, "self-dir") == 0);
    CHECK(n == 2 && ev[1].wd == child && ev[1].mask == (IN_ATTRIB | IN_ISDIR) && ev[1].name[0] == 0);
    char other[200];
    snprintf(other, sizeof other, "%s/self-dir2", dir);
    CHECK(rename(sub, other) == 0);
    n = collect(in, ev, 8);
    CHECK(n == 1 && ev[0].wd == child && ev[0].mask == IN_MOVE_SELF);
    CHECK(rmdir(other) == 0);
    n = collect(in, ev, 8);
    CHECK(n == 2 && ev[0].mask == IN_DELETE_SELF && ev[1].mask == IN_IGNORED);
    close(in);
}

int main(void) {
    char dir[] = "/tmp/inotify-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char file[128], other[128], sub[128];
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(other, sizeof other, "%s/renamed", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    int f = open(file, O_CREAT | O_WRONLY, 0644);
    CHECK(f >= 0);
    close(f);

    CHECK_ERR(inotify_init1(0x1), EINVAL);
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK(in >= 0);
    CHECK_ERR(inotify_add_watch(in, file, 0), EINVAL);
    CHECK_ERR(inotify_add_watch(0, file, IN_ALL_EVENTS), EINVAL); /* not an inotify descriptor */
    CHECK_ERR(inotify_add_watch(in, "/tmp/no-such-inotify-file", IN_ALL_EVENTS), ENOENT);
    CHECK_ERR(inotify_add_watch(in, file, IN_ALL_EVENTS | IN_ONLYDIR), ENOTDIR);
    int wf = inotify_add_watch(in, file, IN_ALL_EVENTS);
    CHECK(wf > 0);
    CHECK(inotify_add_watch(in, file, IN_ALL_EVENTS) == wf); /* the same watch */
    CHECK_ERR(inotify_add_watch(in, file, IN_ALL_EVENTS | IN_MASK_CREATE), EEXIST);
    struct seen ev[64];
    char c;
    CHECK_ERR(read(in, &c, 1), EAGAIN);

    /* A file's life, event by event. */
    CHECK(chmod(file, 0600) == 0);
    f = open(file, O_RDWR);
    CHECK(write(f, "abc", 3) == 3);
    CHECK(write(f, "def", 3) == 3); /* merged with the one before */
    CHECK(pread(f, &c, 1, 0) == 1);
    close(f);
    f = open(file, O_RDONLY);
    close(f);
    int bytes = 0;
    CHECK(ioctl(in, FIONREAD, &bytes) == 0 && bytes == 7 * (int)sizeof(struct inotify_event));
    CHECK_ERR(read(in, &c, 1), EINVAL); /* too small for one event */
    uint32_t want[] = {IN_ATTRIB, IN_OPEN, IN_MODIFY, IN_ACCESS, IN_CLOSE_WRITE, IN_OPEN, IN_CLOSE_NOWRITE};
    int n = collect(in, ev, 64);
    CHECK(n == 7);
    for (int i = 0; i < n && i < 7; i++) CHECK(ev[i].wd == wf && ev[i].mask == want[i] && ev[i].name[0] == 0);

    /* A directory: entries by name, moves paired by a cookie. */
    int wd = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE | IN_MOVE | IN_ONLYDIR);
    CHECK(wd > 0 && wd != wf);
    CHECK(mkdir(sub, 0755) == 0);
    CHECK(rename(file, other) == 0);
    CHECK(rmdir(sub) == 0);
    n = collect(in, ev, 64);
    /* create sub (dir), moved from/to, file's own IN_MOVE_SELF, delete sub */
    int creates = 0, froms = 0, tos = 0, selfs = 0, deletes = 0;
    uint32_t from_cookie = 0, to_cookie = 1;
    for (int i = 0; i < n; i++) {
        if (ev[i].wd == wd && ev[i].mask == (IN_CREATE | IN_ISDIR) && strcmp(ev[i].name, "sub") == 0) creates++;
        if (ev[i].wd == wd && ev[i].mask == IN_MOVED_FROM && strcmp(ev[i].name, "file") == 0) froms++, from_cookie = ev[i].cookie;
        if (ev[i].wd == wd && ev[i].mask == IN_MOVED_TO && strcmp(ev[i].name, "renamed") == 0) tos++, to_cookie = ev[i].cookie;
        if (ev[i].wd == wf && ev[i].mask == IN_MOVE_SELF) selfs++;
        if (ev[i].wd == wd && ev[i].mask == (IN_DELETE | IN_ISDIR) && strcmp(ev[i].name, "sub") == 0) deletes++;
    }
    CHECK(n == 5 && creates == 1 && froms == 1 && tos == 1 && selfs == 1 && deletes == 1);
    CHECK(from_cookie == to_cookie && from_cookie != 0);

    /* Deleting the watched file: IN_ATTRIB (links), IN_DELETE_SELF, IN_IGNORED. */
    CHECK(unlink(other) == 0);
    n = collect(in, ev, 64);
    int attrib = 0, gone = 0, ignored = 0, deleted = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].wd == wf && ev[i].mask == IN_ATTRIB) attrib++;
        if (ev[i].wd == wf && ev[i].mask == IN_DELETE_SELF) gone++;
        if (ev[i].wd == wf && ev[i].mask == IN_IGNORED) ignored++;
        if (ev[i].wd == wd && ev[i].mask == IN_DELETE && strcmp(ev[i].name, "renamed") == 0) deleted++;
    }
    CHECK(attrib == 1 && gone == 1 && ignored == 1 && deleted == 1);
    CHECK_ERR(inotify_rm_watch(in, wf), EINVAL); /* already gone */

    /* One-shot: one event, then IN_IGNORED. */
    CHECK(inotify_rm_watch(in, wd) == 0);
    n = collect(in, ev, 64);
    CHECK(n == 1 && ev[0].wd == wd && ev[0].mask == IN_IGNORED);
    int once = inotify_add_watch(in, dir, IN_CREATE | IN_ONESHOT);
    f = open(file, O_CREAT | O_WRONLY, 0644);
    close(f);
    snprintf(other, sizeof other, "%s/second", dir);
    f = open(other, O_CREAT | O_WRONLY, 0644);
    close(f);
    n = collect(in, ev, 64);
    CHECK(n == 2 && ev[0].wd == once && ev[0].mask == IN_CREATE && strcmp(ev[0].name, "file") == 0 && ev[1].mask == IN_IGNORED);

    /* A blocking reader is woken by poll. */
    int w2 = inotify_add_watch(in, file, IN_MODIFY);
    CHECK(w2 > 0);
    struct pollfd pfd = {.fd = in, .events = POLLIN};
    CHECK(poll(&pfd, 1, 0) == 0);
    f = open(file, O_WRONLY);
    CHECK(write(f, "x", 1) == 1);
    close(f);
    CHECK(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN));
    close(in);
    dnotify(dir);
    directory_self(dir);
    unlink(file);
    unlink(other);
    rmdir(dir);
    return tt_done("inotify");
}
