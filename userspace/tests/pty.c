/* Pseudo-terminals: posix_openpt/grantpt/unlockpt/ptsname, a locked
 * slave, data both ways through the slave's line discipline (canonical
 * lines, echo, raw mode), EOF with ^D, window size and SIGWINCH, a
 * controlling terminal in a new session with ^C reaching its foreground
 * group, hangup when the master closes, and the ioctls programs use
 * (TIOCGPTN, tcdrain, TIOCOUTQ, FIONREAD; unknown requests: ENOTTY). */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t winches;

static void on_winch(int sig) {
    (void)sig;
    winches++;
}

/* Reads what arrives within `ms` (up to len - 1 bytes, NUL-ended). */
static ssize_t read_within(int fd, char *buf, size_t len, int ms) {
    size_t got = 0;
    while (got + 1 < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0 || !(p.revents & POLLIN))
            break;
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        ms = 100; /* the rest of a burst */
    }
    buf[got] = 0;
    return (ssize_t)got;
}

int main(void) {
    signal(SIGWINCH, on_winch);
    alarm(60);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0);
    if (m < 0)
        return tt_done("pty");
    int n = -1;
    CHECK(ioctl(m, TIOCGPTN, &n) == 0 && n >= 0);
    char *name = ptsname(m);
    char want[32];
    snprintf(want, sizeof want, "/dev/pts/%d", n);
    CHECK(name && strcmp(name, want) == 0);
    /* Locked until unlockpt. */
    CHECK_ERR(open(want, O_RDWR | O_NOCTTY), EIO);
    CHECK(grantpt(m) == 0 && unlockpt(m) == 0);
    int s = open(want, O_RDWR | O_NOCTTY);
    CHECK(s >= 0);
    CHECK(isatty(s) && isatty(m));
    char *tn = ttyname(s);
    CHECK(tn && strcmp(tn, want) == 0);

    /* Canonical mode: a line arrives whole, echoed back to the master. */
    char buf[256];
    CHECK(write(m, "hello\n", 6) == 6);
    CHECK(read_within(s, buf, sizeof buf, 2000) == 6 && strcmp(buf, "hello\n") == 0);
    CHECK(read_within(m, buf, sizeof buf, 2000) > 0 && strstr(buf, "hello") != NULL);
    /* Output from the slave gets \r\n (OPOST|ONLCR). */
    CHECK(write(s, "out\n", 4) == 4);
    CHECK(read_within(m, buf, sizeof buf, 2000) == 5 && strcmp(buf, "out\r\n") == 0);
    /* An incomplete line is not readable; ^D hands it over, and ^D on
     * an empty line is end of file. */
    CHECK(write(m, "part", 4) == 4);
    struct pollfd p = {.fd = s, .events = POLLIN};
    CHECK(poll(&p, 1, 200) == 0);
    CHECK(write(m, "\x04", 1) == 1);
    CHECK(read_within(s, buf, sizeof buf, 2000) == 4 && strcmp(buf, "part") == 0);
    CHECK(write(m, "\x04", 1) == 1);
    CHECK(poll(&p, 1, 2000) == 1 && read(s, buf, sizeof buf) == 0);
    read_within(m, buf, sizeof buf, 200); /* the echo */

    /* Raw mode: bytes as they come, no echo. */
    struct termios t;
    CHECK(tcgetattr(s, &t) == 0);
    struct termios saved = t;
    cfmakeraw(&t);
    CHECK(tcsetattr(s, TCSANOW, &t) == 0);
    CHECK(write(m, "ab\rc", 4) == 4);
    CHECK(read_within(s, buf, sizeof buf, 2000) == 4 && memcmp(buf, "ab\rc", 4) == 0);
    CHECK(read_within(m, buf, sizeof buf, 200) == 0);
    /* A paste larger than any buffer, into a program that reads slowly:
     * the writer is held back, nothing is lost. */
    pid_t paster = fork();
    if (paster == 0) {
        static char big[96 * 1024];
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)('a' + i % 23);
        size_t at = 0;
        while (at < sizeof big) {
            ssize_t w = write(m, big + at, sizeof big - at);
            if (w <= 0)
                _exit(1);
            at += (size_t)w;
        }
        _exit(0);
    }
    size_t total = 0;
    int order_ok = 1;
    while (total < 96 * 1024) {
        ssize_t r = read_within(s, buf, sizeof buf, 3000);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            order_ok &= buf[i] == (char)('a' + (total + (size_t)i) % 23);
        total += (size_t)r;
        if (total % 8192 < sizeof buf)
            usleep(2000);
    }
    int pstatus = -1;
    CHECK(waitpid(paster, &pstatus, 0) == paster && pstatus == 0);
    printf("  raw paste: %zu of %d bytes\n", total, 96 * 1024);
    CHECK(total == 96 * 1024 && order_ok);
    CHECK(tcsetattr(s, TCSANOW, &saved) == 0);

    /* Terminal ioctls. */
    int q = -1;
    CHECK(write(m, "xyz\n", 4) == 4);
    usleep(100000);
    CHECK(ioctl(s, FIONREAD, &q) == 0 && q == 4);
    tcflush(s, TCIFLUSH);
    read_within(m, buf, sizeof buf, 200);
    CHECK(tcdrain(s) == 0);
    CHECK(ioctl(s, TIOCOUTQ, &q) == 0 && q == 0);
    CHECK_ERR(ioctl(s, 0x54ff, 0), ENOTTY);
    int fd = open("/dev/null", O_RDONLY);
    CHECK_ERR(ioctl(fd, TCGETS, &t), ENOTTY);
    close(fd);

    /* Window size: set on the master, read on the slave; the foreground
     * group gets SIGWINCH (checked below in the session). */
    struct winsize ws = {.ws_row = 33, .ws_col = 101};
    CHECK(ioctl(m, TIOCSWINSZ, &ws) == 0);
    struct winsize got = {0};
    CHECK(ioctl(s, TIOCGWINSZ, &got) == 0 && got.ws_row == 33 && got.ws_col == 101);

    /* A new session takes the slave as its controlling terminal: ^C
     * from the master interrupts its foreground group, a window change
     * reaches it as SIGWINCH, /dev/tty is the slave. */
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t child = fork();
    if (child == 0) {
        close(ready[0]);
        setsid();
        int t2 = open(want, O_RDWR); /* no O_NOCTTY: it becomes ours */
        if (t2 < 0 || tcgetpgrp(t2) != getpid())
            _exit(10);
        int dt = open("/dev/tty", O_RDWR);
        if (dt < 0 || write(dt, "via-tty\n", 8) != 8)
            _exit(11);
        winches = 0;
        if (write(ready[1], "r", 1) != 1)
            _exit(12);
        /* Wait for SIGWINCH, then for ^C (SIGINT, default: death). */
        for (int i = 0; i < 200 && !winches; i++)
            usleep(10000);
        if (!winches)
            _exit(13);
        if (write(ready[1], "w", 1) != 1)
            _exit(12);
        pause();
        _exit(14);
    }
    close(ready[1]);
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'r');
    /* What the child wrote to /dev/tty came out of this master. */
    CHECK(read_within(m, buf, sizeof buf, 2000) == 9 && strcmp(buf, "via-tty\r\n") == 0);
    ws.ws_row = 40;
    CHECK(ioctl(m, TIOCSWINSZ, &ws) == 0);
    CHECK(read(ready[0], &c, 1) == 1 && c == 'w');
    CHECK(write(m, "\x03", 1) == 1);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    printf("  child status %#x\n", status);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    close(ready[0]);
    read_within(m, buf, sizeof buf, 200); /* ^C's echo */

    /* Closing the master hangs the slave up: reads give EOF (or EIO),
     * writes fail with EIO, poll says POLLHUP. */
    close(m);
    p.events = POLLIN;
    CHECK(poll(&p, 1, 2000) == 1 && (p.revents & POLLHUP));
    ssize_t r = read(s, buf, sizeof buf);
    CHECK(r == 0 || (r == -1 && errno == EIO));
    CHECK_ERR(write(s, "x", 1), EIO);
    close(s);
    /* The number is free again once the slave is closed. */
    int m2 = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m2 >= 0);
    close(m2);
    alarm(0);
    return tt_done("pty");
}
