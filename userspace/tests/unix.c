/* AF_UNIX sockets: creation (types, protocol, SOCK_NONBLOCK/SOCK_CLOEXEC,
 * S_ISSOCK); stream socketpairs (data both ways, EOF after queued data,
 * EPIPE with and without SIGPIPE, ECONNRESET when the peer closed with
 * unread data, shutdown); datagram and seqpacket record boundaries,
 * truncation, MSG_PEEK/MSG_TRUNC/MSG_DONTWAIT; pathname sockets (bind,
 * getsockname/getpeername lengths, the connect errors, listen/accept with a
 * forked client, accept4, backlog, poll on a listener); abstract names and
 * autobind; unconnected datagrams (sendto/recvfrom addresses, EPERM to a
 * socket connected elsewhere, AF_UNSPEC disconnect, a full receive queue,
 * ECONNREFUSED after the peer closed); stream flow control and poll;
 * MSG_WAITALL; SCM_RIGHTS (two fds, MSG_CMSG_CLOEXEC, MSG_CTRUNC, EBADF,
 * fds in flight at close); credentials (SO_PEERCRED, SO_PASSCRED,
 * SCM_CREDENTIALS); socket options; FIONREAD; select; a thread blocked in
 * recv. Pathname sockets live in /tmp, named with the pid, and are removed
 * at the end. Every expectation is what Linux does. */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUN_OFF ((socklen_t)offsetof(struct sockaddr_un, sun_path))
#define FAMILY_LEN ((socklen_t)sizeof(sa_family_t))
#define SA(a) ((struct sockaddr *)(a))

/* Pathname sockets made by this run, removed at the end. */
#define MAX_PATHS 16
static char tmp_paths[MAX_PATHS][100];
static int n_tmp_paths;

static const char *tmp_path(const char *tag) {
    char *p = tmp_paths[n_tmp_paths++];
    snprintf(p, sizeof tmp_paths[0], "/tmp/tessera-unix-%d-%s", (int)getpid(), tag);
    unlink(p);
    return p;
}

static void remove_tmp_paths(void) {
    for (int i = 0; i < n_tmp_paths; i++) unlink(tmp_paths[i]);
}

static socklen_t path_addr(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return SUN_OFF + strlen(path) + 1;
}

/* An abstract name: sun_path[0] == 0, then `name` without a terminator. */
static socklen_t abstract_addr(struct sockaddr_un *a, const char *tag) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    char name[80];
    snprintf(name, sizeof name, "tessera-unix-%d-%s", (int)getpid(), tag);
    memcpy(a->sun_path + 1, name, strlen(name));
    return SUN_OFF + 1 + strlen(name);
}

static int child_ok(pid_t pid) {
    int status;
    return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static pid_t fork_child(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) alarm(10);
    return pid;
}

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

static int sock_int(int fd, int level, int name) {
    int v = -12345;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l) != 0 || l != sizeof v) return -12345;
    return v;
}

static int set_nonblock(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static short poll_one(int fd, short events) {
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

/* 1. socket(2) for AF_UNIX. */
static void creation(void) {
    int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    for (int i = 0; i < 3; i++) {
        int s = socket(AF_UNIX, types[i], 0);
        CHECK(s >= 0);
        CHECK(sock_int(s, SOL_SOCKET, SO_TYPE) == types[i]);
        struct stat st;
        CHECK(fstat(s, &st) == 0 && S_ISSOCK(st.st_mode));
        CHECK(!(fcntl(s, F_GETFL) & O_NONBLOCK) && !(fcntl(s, F_GETFD) & FD_CLOEXEC));
        close(s);
    }
    /* Surprising: Linux accepts SOCK_RAW for AF_UNIX and makes it a
     * SOCK_DGRAM socket ("BSD has AF_UNIX, SOCK_RAW"). */
    int s = socket(AF_UNIX, SOCK_RAW, 0);
    CHECK(s >= 0 && sock_int(s, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
    close(s);
    CHECK_ERR(socket(AF_UNIX, SOCK_RDM, 0), ESOCKTNOSUPPORT);
    CHECK_ERR(socket(AF_UNIX, SOCK_PACKET, 0), ESOCKTNOSUPPORT);
    /* Protocol 0 and PF_UNIX (1) are accepted; anything else is not.
     * SO_PROTOCOL still reads 0 for a socket made with protocol 1. */
    s = socket(AF_UNIX, SOCK_STREAM, PF_UNIX);
    CHECK(s >= 0 && sock_int(s, SOL_SOCKET, SO_PROTOCOL) == 0);
    close(s);
    CHECK_ERR(socket(AF_UNIX, SOCK_STREAM, 2), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_UNIX, SOCK_DGRAM, 17), EPROTONOSUPPORT);
    int sv[2];
    CHECK_ERR(socketpair(AF_UNIX, SOCK_STREAM, 2, sv), EPROTONOSUPPORT);

    s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) && (fcntl(s, F_GETFD) & FD_CLOEXEC));
    close(s);
    s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) && !(fcntl(s, F_GETFD) & FD_CLOEXEC));
    close(s);
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    for (int i = 0; i < 2; i++) {
        CHECK((fcntl(sv[i], F_GETFL) & O_NONBLOCK) && (fcntl(sv[i], F_GETFD) & FD_CLOEXEC));
        struct stat st;
        CHECK(fstat(sv[i], &st) == 0 && S_ISSOCK(st.st_mode));
        close(sv[i]);
    }
}

/* 2. Stream socketpairs. */
static void stream_pair(void) {
    int sv[2];
    char buf[64];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "hello", 5) == 5);
    CHECK(read(sv[1], buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(write(sv[1], "world!", 6) == 6);
    CHECK(read(sv[0], buf, sizeof buf) == 6 && memcmp(buf, "world!", 6) == 0);
    /* No record boundaries: two queued writes come back in one read. */
    CHECK(write(sv[0], "ab", 2) == 2 && write(sv[0], "cd", 2) == 2);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 4 && memcmp(buf, "abcd", 4) == 0);
    /* A short read leaves the rest queued. */
    CHECK(write(sv[0], "012345", 6) == 6);
    CHECK(read(sv[1], buf, 2) == 2 && memcmp(buf, "01", 2) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 4 && memcmp(buf, "2345", 4) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* A zero-length write queues nothing. */
    CHECK(write(sv[0], "", 0) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* Peer closed: the queued data first, then EOF (repeatably). */
    CHECK(write(sv[0], "bye", 3) == 3);
    close(sv[0]);
    CHECK(read(sv[1], buf, sizeof buf) == 3 && memcmp(buf, "bye", 3) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) == 0);
    /* Writing to it: EPIPE, and SIGPIPE unless MSG_NOSIGNAL. */
    struct sigaction sa = {.sa_handler = on_sigpipe}, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGPIPE, &sa, &old) == 0);
    sigpipes = 0;
    CHECK_ERR(write(sv[1], "x", 1), EPIPE);
    CHECK(sigpipes == 1);
    CHECK_ERR(send(sv[1], "x", 1, 0), EPIPE);
    CHECK(sigpipes == 2);
    CHECK_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpipes == 2);
    close(sv[1]);

    /* Surprising: if the closing end still had unread data, the survivor
     * reads its own queued data, then gets ECONNRESET once, then EOF. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "unread", 6) == 6);
    CHECK(write(sv[1], "tail", 4) == 4);
    close(sv[1]);
    CHECK(read(sv[0], buf, sizeof buf) == 4 && memcmp(buf, "tail", 4) == 0);
    CHECK(sock_int(sv[0], SOL_SOCKET, SO_ERROR) == ECONNRESET); /* and reading it clears it */
    CHECK(read(sv[0], buf, sizeof buf) == 0);
    close(sv[0]);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "unread", 6) == 6);
    close(sv[1]);
    CHECK(poll_one(sv[0], POLLIN) & POLLERR);
    CHECK_ERR(read(sv[0], buf, sizeof buf), ECONNRESET);
    CHECK(read(sv[0], buf, sizeof buf) == 0);
    sigpipes = 0;
    CHECK_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpipes == 0);
    close(sv[0]);

    /* shutdown(SHUT_WR): the peer sees EOF, the other direction works. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "last", 4) == 4);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 4);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK((poll_one(sv[1], POLLIN | POLLRDHUP) & (POLLIN | POLLRDHUP)) == (POLLIN | POLLRDHUP));
    CHECK(write(sv[1], "back", 4) == 4);
    CHECK(read(sv[0], buf, sizeof buf) == 4 && memcmp(buf, "back", 4) == 0);
    sigpipes = 0;
    CHECK_ERR(write(sv[0], "x", 1), EPIPE);
    CHECK(sigpipes == 1);
    /* shutdown twice, and SHUT_RDWR, are fine. */
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(shutdown(sv[0], SHUT_RDWR) == 0);
    CHECK(read(sv[0], buf, sizeof buf) == 0);
    close(sv[0]);
    close(sv[1]);

    /* shutdown(SHUT_RD): reads give EOF at once, the peer's writes EPIPE. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(shutdown(sv[1], SHUT_RD) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    sigpipes = 0;
    CHECK_ERR(send(sv[0], "q", 1, MSG_NOSIGNAL), EPIPE);
    CHECK_ERR(write(sv[0], "q", 1), EPIPE);
    CHECK(sigpipes == 1);
    CHECK(write(sv[1], "w", 1) == 1);
    CHECK(read(sv[0], buf, sizeof buf) == 1 && buf[0] == 'w');
    CHECK_ERR(shutdown(sv[0], 3), EINVAL);
    CHECK_ERR(shutdown(sv[0], -1), EINVAL);
    close(sv[0]);
    close(sv[1]);
    CHECK(sigaction(SIGPIPE, &old, NULL) == 0);

    /* Surprising: shutdown on an unconnected unix socket is not ENOTCONN
     * (as it is for TCP) but succeeds; the socket is then shut down. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(shutdown(s, SHUT_RDWR) == 0);
    CHECK_ERR(shutdown(s, 7), EINVAL);
    close(s);
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(shutdown(s, SHUT_WR) == 0);
    close(s);
    CHECK_ERR(shutdown(99, SHUT_RD), EBADF);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(shutdown(p[0], SHUT_RD), ENOTSOCK);
    close(p[0]);
    close(p[1]);
}

/* 3. Datagram socketpairs. */
static void dgram_pair(void) {
    int sv[2];
    char buf[64];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(send(sv[0], "one", 3, 0) == 3);
    CHECK(send(sv[0], "second", 6, 0) == 6);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_PEEK) == 3 && memcmp(buf, "one", 3) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 3 && memcmp(buf, "one", 3) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 6 && memcmp(buf, "second", 6) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* Both directions. */
    CHECK(write(sv[1], "reply", 5) == 5);
    CHECK(read(sv[0], buf, sizeof buf) == 5 && memcmp(buf, "reply", 5) == 0);

    /* Truncation: the rest of the datagram is dropped. */
    CHECK(send(sv[0], "truncated-record", 16, 0) == 16);
    CHECK(recv(sv[1], buf, 4, 0) == 4 && memcmp(buf, "trun", 4) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* MSG_TRUNC on recv: the full length is returned. */
    CHECK(send(sv[0], "truncated-record", 16, 0) == 16);
    memset(buf, 0, sizeof buf);
    CHECK(recv(sv[1], buf, 4, MSG_TRUNC) == 16 && memcmp(buf, "trun", 4) == 0 && buf[4] == 0);
    /* recvmsg sets MSG_TRUNC in msg_flags. */
    CHECK(send(sv[0], "0123456789", 10, 0) == 10);
    struct iovec iov = {.iov_base = buf, .iov_len = 4};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(sv[1], &mh, 0) == 4 && (mh.msg_flags & MSG_TRUNC));
    CHECK(send(sv[0], "0123456789", 10, 0) == 10);
    mh.msg_flags = 0;
    CHECK(recvmsg(sv[1], &mh, MSG_TRUNC) == 10 && (mh.msg_flags & MSG_TRUNC));
    CHECK(send(sv[0], "abc", 3, 0) == 3);
    mh.msg_flags = MSG_TRUNC; /* output only: cleared when nothing is cut */
    CHECK(recvmsg(sv[1], &mh, 0) == 3 && !(mh.msg_flags & MSG_TRUNC));

    /* MSG_PEEK twice, then a real read: the same datagram. */
    CHECK(send(sv[0], "peek", 4, 0) == 4);
    CHECK(recv(sv[1], buf, 2, MSG_PEEK) == 2);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_PEEK) == 4);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 4 && memcmp(buf, "peek", 4) == 0);

    /* A zero-length datagram is a record of its own. */
    CHECK(send(sv[0], "", 0, 0) == 0);
    CHECK(send(sv[0], "z", 1, 0) == 1);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) == 1 && buf[0] == 'z');
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* Datagram sockets are always "connected" here: no ENOTCONN. */
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    CHECK(getpeername(sv[0], SA(&a), &l) == 0 && l == FAMILY_LEN);
    close(sv[0]);
    close(sv[1]);
}

/* 4. Seqpacket socketpairs. */
static void seqpacket_pair(void) {
    int sv[2];
    char buf[64];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    CHECK(write(sv[0], "abc", 3) == 3 && write(sv[0], "defgh", 5) == 5);
    CHECK(read(sv[1], buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 5 && memcmp(buf, "defgh", 5) == 0);
    /* A short read truncates the record. */
    CHECK(write(sv[0], "0123456789", 10) == 10);
    CHECK(write(sv[0], "next", 4) == 4);
    struct iovec iov = {.iov_base = buf, .iov_len = 4};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(sv[1], &mh, 0) == 4 && (mh.msg_flags & MSG_TRUNC) && memcmp(buf, "0123", 4) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 4 && memcmp(buf, "next", 4) == 0);
    /* MSG_TRUNC works as on datagrams. */
    CHECK(write(sv[0], "0123456789", 10) == 10);
    CHECK(recv(sv[1], buf, 3, MSG_TRUNC) == 10);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* The other way. */
    CHECK(write(sv[1], "up", 2) == 2);
    CHECK(read(sv[0], buf, sizeof buf) == 2);
    /* Peer closed: queued records, then EOF; sending: EPIPE. */
    CHECK(write(sv[0], "final", 5) == 5);
    close(sv[0]);
    CHECK(read(sv[1], buf, sizeof buf) == 5);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    close(sv[1]);
    /* Unconnected seqpacket socket. */
    int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK_ERR(send(s, "x", 1, MSG_NOSIGNAL), ENOTCONN);
    close(s);
}

/* 5. Pathname sockets. */
static void pathname(void) {
    struct sockaddr_un a, b, x;
    socklen_t l;
    char buf[64];
    const char *path = tmp_path("srv");
    socklen_t al = path_addr(&a, path);

    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    /* Unbound: the name is just the family. */
    l = sizeof b;
    memset(&b, 0x55, sizeof b);
    CHECK(getsockname(s, SA(&b), &l) == 0 && l == FAMILY_LEN && b.sun_family == AF_UNIX);
    l = sizeof b;
    CHECK_ERR(getpeername(s, SA(&b), &l), ENOTCONN);
    CHECK_ERR(listen(s, 1), EINVAL); /* listen needs a bound socket */
    CHECK_ERR(accept(s, NULL, NULL), EINVAL);
    /* An unconnected stream socket: ENOTCONN for write and send, without
     * SIGPIPE. Surprising: read/recv there is EINVAL, not ENOTCONN. */
    struct sigaction sa = {.sa_handler = on_sigpipe}, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGPIPE, &sa, &old) == 0);
    sigpipes = 0;
    CHECK_ERR(write(s, "x", 1), ENOTCONN);
    CHECK_ERR(send(s, "x", 1, 0), ENOTCONN);
    CHECK(sigpipes == 0);
    CHECK(sigaction(SIGPIPE, &old, NULL) == 0);
    CHECK_ERR(read(s, buf, 1), EINVAL);
    CHECK_ERR(recv(s, buf, 1, MSG_DONTWAIT), EINVAL);
    /* sendto with an address on a stream socket: EOPNOTSUPP (EISCONN once
     * connected, below). */
    CHECK_ERR(sendto(s, "x", 1, MSG_NOSIGNAL, SA(&a), al), EOPNOTSUPP);

    /* bind errors */
    a.sun_family = AF_INET;
    CHECK_ERR(bind(s, SA(&a), al), EINVAL);
    a.sun_family = AF_UNIX;
    CHECK_ERR(bind(s, SA(&a), 1), EINVAL);
    CHECK_ERR(bind(s, SA(&a), sizeof a + 1), EINVAL);
    /* Bound with the whole structure as length: the name still ends at the
     * first NUL, and the file exists. */
    CHECK(bind(s, SA(&a), sizeof a) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    l = sizeof b;
    CHECK(getsockname(s, SA(&b), &l) == 0 && l == SUN_OFF + strlen(path) + 1 && l == al);
    CHECK(b.sun_family == AF_UNIX && strcmp(b.sun_path, path) == 0);
    /* A short buffer: truncated, but the full length is reported. */
    l = 4;
    memset(&b, 0, sizeof b);
    CHECK(getsockname(s, SA(&b), &l) == 0 && l == al && b.sun_path[0] == path[0] && b.sun_path[2] == 0);
    const char *other = tmp_path("other");
    socklen_t xl = path_addr(&x, other);
    CHECK_ERR(bind(s, SA(&x), xl), EINVAL); /* already bound */
    CHECK(stat(other, &st) == -1 && errno == ENOENT);
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(bind(s2, SA(&a), al), EADDRINUSE); /* path exists */

    /* connect errors */
    CHECK_ERR(connect(s2, SA(&x), xl), ENOENT);
    const char *file = tmp_path("file");
    int f = open(file, O_CREAT | O_WRONLY, 0600);
    CHECK(f >= 0);
    close(f);
    CHECK_ERR(connect(s2, SA(&x), path_addr(&x, file)), ECONNREFUSED);
    CHECK_ERR(bind(s2, SA(&x), path_addr(&x, file)), EADDRINUSE);
    CHECK_ERR(connect(s2, SA(&a), al), ECONNREFUSED); /* bound, not listening */
    const char *closed = tmp_path("closed");
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(c, SA(&x), path_addr(&x, closed)) == 0);
    CHECK(listen(c, 1) == 0);
    close(c);
    CHECK(stat(closed, &st) == 0 && S_ISSOCK(st.st_mode)); /* the file stays */
    CHECK_ERR(connect(s2, SA(&x), path_addr(&x, closed)), ECONNREFUSED);
    CHECK_ERR(bind(s2, SA(&x), path_addr(&x, closed)), EADDRINUSE);
    const char *dpath = tmp_path("dgram");
    socklen_t dl = path_addr(&x, dpath);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d, SA(&x), dl) == 0);
    CHECK_ERR(connect(s2, SA(&x), dl), EPROTOTYPE);
    CHECK_ERR(listen(d, 1), EOPNOTSUPP);
    CHECK_ERR(accept(d, NULL, NULL), EOPNOTSUPP);
    int d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_ERR(sendto(d2, "x", 1, 0, SA(&a), al), EPROTOTYPE); /* a stream socket's path */
    CHECK_ERR(connect(d2, SA(&a), al), EPROTOTYPE);
    int sp = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK_ERR(connect(sp, SA(&a), al), EPROTOTYPE);
    close(sp);
    close(d2);
    close(d);
    CHECK_ERR(accept(s, NULL, NULL), EINVAL); /* bound, not listening */

    /* listen; nothing pending */
    CHECK(sock_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    CHECK(listen(s, 5) == 0);
    CHECK(sock_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 1);
    CHECK(listen(s, 8) == 0); /* again: fine, changes the backlog */
    CHECK(set_nonblock(s, 1) == 0);
    CHECK_ERR(accept(s, NULL, NULL), EAGAIN);
    CHECK(set_nonblock(s, 0) == 0);
    CHECK(poll_one(s, POLLIN | POLLOUT) == 0);
    CHECK_ERR(connect(s, SA(&a), al), EINVAL); /* a listener cannot connect */
    l = sizeof b;
    CHECK_ERR(getpeername(s, SA(&b), &l), ENOTCONN);
    CHECK_ERR(recv(s, buf, 1, MSG_DONTWAIT), EINVAL);
    CHECK_ERR(send(s, "x", 1, MSG_NOSIGNAL), ENOTCONN);

    /* A forked client: it writes, the server reads and replies. */
    pid_t parent = getpid();
    pid_t kid = fork_child();
    if (kid == 0) {
        int k = socket(AF_UNIX, SOCK_STREAM, 0);
        int ok = k >= 0 && connect(k, SA(&a), al) == 0;
        ok = ok && write(k, "ping", 4) == 4;
        ok = ok && read(k, buf, sizeof buf) == 4 && memcmp(buf, "pong", 4) == 0;
        struct ucred cr;
        socklen_t cl = sizeof cr;
        /* The client sees the credentials of the process that listened. */
        ok = ok && getsockopt(k, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid == parent;
        struct sockaddr_un pn;
        socklen_t pl = sizeof pn;
        ok = ok && getpeername(k, SA(&pn), &pl) == 0 && pl == al && strcmp(pn.sun_path, path) == 0;
        pl = sizeof pn;
        ok = ok && getsockname(k, SA(&pn), &pl) == 0 && pl == FAMILY_LEN;
        ok = ok && read(k, buf, sizeof buf) == 0;
        _exit(ok ? 0 : 1);
    }
    l = sizeof b;
    memset(&b, 0x55, sizeof b);
    int n = accept4(s, SA(&b), &l, SOCK_CLOEXEC);
    CHECK(n >= 0);
    CHECK(l == FAMILY_LEN && b.sun_family == AF_UNIX); /* the client is unbound */
    CHECK(fcntl(n, F_GETFD) & FD_CLOEXEC);
    CHECK(!(fcntl(n, F_GETFL) & O_NONBLOCK));
    CHECK(sock_int(n, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    l = sizeof b;
    CHECK(getsockname(n, SA(&b), &l) == 0 && l == al && strcmp(b.sun_path, path) == 0);
    l = sizeof b;
    CHECK(getpeername(n, SA(&b), &l) == 0 && l == FAMILY_LEN && b.sun_family == AF_UNIX);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    CHECK(getsockopt(n, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cl == sizeof cr);
    CHECK(cr.pid == kid && cr.uid == getuid() && cr.gid == getgid());
    CHECK(read(n, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(write(n, "pong", 4) == 4);
    close(n);
    CHECK(child_ok(kid));

    /* In one process: connect completes at once, before any accept, and
     * the listener polls readable. */
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(connect(c, SA(&a), al) == 0); /* no EINPROGRESS */
    CHECK(poll_one(s, POLLIN) == POLLIN);
    CHECK_ERR(connect(c, SA(&a), al), EISCONN);
    CHECK_ERR(sendto(c, "x", 1, MSG_NOSIGNAL, SA(&a), al), EISCONN);
    CHECK(write(c, "early", 5) == 5); /* before the accept */
    n = accept(s, NULL, NULL);
    CHECK(n >= 0 && !(fcntl(n, F_GETFD) & FD_CLOEXEC));
    CHECK(read(n, buf, sizeof buf) == 5 && memcmp(buf, "early", 5) == 0);
    CHECK(poll_one(s, POLLIN) == 0);
    /* A bound client: the server sees its path. */
    const char *cpath = tmp_path("cli");
    socklen_t cpl = path_addr(&x, cpath);
    int bc = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(bc, SA(&x), cpl) == 0 && connect(bc, SA(&a), al) == 0);
    l = sizeof b;
    int bn = accept(s, SA(&b), &l);
    CHECK(bn >= 0 && l == cpl && strcmp(b.sun_path, cpath) == 0);
    l = sizeof b;
    CHECK(getpeername(bn, SA(&b), &l) == 0 && l == cpl && strcmp(b.sun_path, cpath) == 0);
    close(bn);
    close(bc);
    close(n);
    close(c);

    /* Backlog: Linux queues backlog + 1 connections; then a non-blocking
     * connect fails with EAGAIN (not EINPROGRESS as for TCP). */
    CHECK(listen(s, 1) == 0);
    int q[3];
    for (int i = 0; i < 3; i++) q[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(connect(q[0], SA(&a), al) == 0);
    CHECK(connect(q[1], SA(&a), al) == 0);
    CHECK_ERR(connect(q[2], SA(&a), al), EAGAIN);
    n = accept(s, NULL, NULL);
    CHECK(n >= 0);
    CHECK(connect(q[2], SA(&a), al) == 0);
    close(n);
    /* The listener closes with connections still queued: surprising, those
     * clients read ECONNRESET once, then EOF. */
    CHECK(write(q[1], "lost", 4) == 4);
    close(s);
    CHECK(poll_one(q[1], POLLIN) & POLLHUP);
    CHECK_ERR(read(q[1], buf, sizeof buf), ECONNRESET);
    CHECK(read(q[1], buf, sizeof buf) == 0);
    CHECK_ERR(send(q[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    for (int i = 0; i < 3; i++) close(q[i]);
    /* The listener is gone; its file stays: ECONNREFUSED. */
    CHECK_ERR(connect(s2, SA(&a), al), ECONNREFUSED);
    close(s2);

    /* A seqpacket listener keeps record boundaries on accepted sockets. */
    const char *qpath = tmp_path("seq");
    socklen_t ql = path_addr(&x, qpath);
    int ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(bind(ls, SA(&x), ql) == 0 && listen(ls, 1) == 0);
    c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(connect(c, SA(&x), ql) == 0);
    n = accept(ls, NULL, NULL);
    CHECK(n >= 0 && sock_int(n, SOL_SOCKET, SO_TYPE) == SOCK_SEQPACKET);
    CHECK(send(c, "rec1", 4, 0) == 4 && send(c, "record2", 7, 0) == 7);
    CHECK(recv(n, buf, sizeof buf, 0) == 4 && recv(n, buf, sizeof buf, 0) == 7);
    close(n);
    close(c);
    close(ls);
}

/* 6. Abstract names and autobind. */
static void abstract(void) {
    struct sockaddr_un a, b;
    socklen_t l;
    char buf[16];
    socklen_t al = abstract_addr(&a, "abs");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(s, SA(&a), al) == 0);
    l = sizeof b;
    CHECK(getsockname(s, SA(&b), &l) == 0 && l == al && memcmp(&a, &b, al) == 0);
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(bind(s2, SA(&a), al), EADDRINUSE);
    /* Surprising: abstract names are per socket type. A datagram socket
     * may bind the name a stream socket holds, and connecting to a name
     * only another type holds is ECONNREFUSED (not EPROTOTYPE as for a
     * path). */
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d, SA(&a), al) == 0);
    int d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_ERR(bind(d2, SA(&a), al), EADDRINUSE);
    CHECK(sendto(d2, "t", 1, 0, SA(&a), al) == 1); /* reaches the dgram one */
    char t;
    CHECK(recv(d, &t, 1, MSG_DONTWAIT) == 1 && t == 't');
    close(d2);
    struct sockaddr_un y;
    socklen_t yl = abstract_addr(&y, "dgonly");
    d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d2, SA(&y), yl) == 0);
    int c3 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c3, SA(&y), yl), ECONNREFUSED);
    close(c3);
    close(d2);
    close(d);
    CHECK(listen(s, 2) == 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, SA(&a), al) == 0);
    /* The length is part of the name: one more (NUL) byte is another name. */
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c2, SA(&a), al + 1), ECONNREFUSED);
    CHECK_ERR(connect(c2, SA(&a), al - 1), ECONNREFUSED);
    int n = accept(s, NULL, NULL);
    CHECK(n >= 0);
    l = sizeof b;
    CHECK(getsockname(n, SA(&b), &l) == 0 && l == al && memcmp(&a, &b, al) == 0);
    l = sizeof b;
    CHECK(getpeername(c, SA(&b), &l) == 0 && l == al && b.sun_path[0] == 0 && memcmp(&a, &b, al) == 0);
    CHECK(write(c, "abs", 3) == 3 && read(n, buf, sizeof buf) == 3);
    close(n);
    close(c);
    /* Free again once the owner is closed. */
    close(s);
    CHECK(bind(s2, SA(&a), al) == 0);
    close(s2);
    s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(s2, SA(&a), al) == 0);
    close(s2);
    close(c2);
    /* Autobind: only the family given. */
    d = socket(AF_UNIX, SOCK_DGRAM, 0);
    memset(&b, 0, sizeof b);
    b.sun_family = AF_UNIX;
    CHECK(bind(d, SA(&b), FAMILY_LEN) == 0);
    struct sockaddr_un n1, n2;
    l = sizeof n1;
    CHECK(getsockname(d, SA(&n1), &l) == 0 && l == FAMILY_LEN + 6 && n1.sun_path[0] == 0);
    /* Surprising: autobind of a bound socket is not EINVAL but a no-op
     * that succeeds (a full address would be EINVAL). */
    CHECK(bind(d, SA(&b), FAMILY_LEN) == 0);
    l = sizeof n2;
    CHECK(getsockname(d, SA(&n2), &l) == 0 && l == FAMILY_LEN + 6 && memcmp(&n1, &n2, l) == 0);
    CHECK_ERR(bind(d, SA(&a), al), EINVAL);
    d2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(d2, SA(&b), FAMILY_LEN) == 0);
    l = sizeof n2;
    CHECK(getsockname(d2, SA(&n2), &l) == 0 && l == FAMILY_LEN + 6 && n2.sun_path[0] == 0);
    CHECK(memcmp(n1.sun_path, n2.sun_path, 6) != 0);
    /* The autobound name can be bound by no one else. */
    int d3 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_ERR(bind(d3, SA(&n1), FAMILY_LEN + 6), EADDRINUSE);
    /* and it can be sent to. */
    CHECK(sendto(d3, "auto", 4, 0, SA(&n1), FAMILY_LEN + 6) == 4);
    CHECK(recv(d, buf, sizeof buf, 0) == 4);
    close(d3);
    close(d2);
    close(d);
    /* Surprising: a socket with SO_PASSCRED is autobound when it sends or
     * connects, so its peer sees an address. */
    const char *rpath = tmp_path("passcred");
    socklen_t rl = path_addr(&a, rpath);
    int r = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(r, SA(&a), rl) == 0);
    d = socket(AF_UNIX, SOCK_DGRAM, 0);
    int one = 1;
    CHECK(setsockopt(d, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    l = sizeof b;
    CHECK(getsockname(d, SA(&b), &l) == 0 && l == FAMILY_LEN);
    CHECK(sendto(d, "pc", 2, 0, SA(&a), rl) == 2);
    l = sizeof b;
    CHECK(getsockname(d, SA(&b), &l) == 0 && l == FAMILY_LEN + 6 && b.sun_path[0] == 0);
    l = sizeof n1;
    CHECK(recvfrom(r, buf, sizeof buf, 0, SA(&n1), &l) == 2 && l == FAMILY_LEN + 6 && memcmp(&n1, &b, l) == 0);
    close(d);
    close(r);
}

/* 7. Unconnected datagram sockets. */
static void dgram_addresses(void) {
    struct sockaddr_un ra, sa_, from, x;
    socklen_t l;
    char buf[64];
    const char *rpath = tmp_path("recv");
    const char *spath = tmp_path("send");
    socklen_t rl = path_addr(&ra, rpath), sl = path_addr(&sa_, spath);
    int r = socket(AF_UNIX, SOCK_DGRAM, 0);
    int sb = socket(AF_UNIX, SOCK_DGRAM, 0);
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(r, SA(&ra), rl) == 0 && bind(sb, SA(&sa_), sl) == 0);

    CHECK_ERR(send(u, "x", 1, 0), ENOTCONN);
    CHECK_ERR(write(u, "x", 1), ENOTCONN);
    l = sizeof x;
    CHECK_ERR(getpeername(u, SA(&x), &l), ENOTCONN);
    CHECK_ERR(sendto(u, "x", 1, 0, SA(&x), path_addr(&x, "/tmp/tessera-unix-missing-no-such")), ENOENT);
    x.sun_family = AF_INET;
    CHECK_ERR(sendto(u, "x", 1, 0, SA(&x), sizeof x), EINVAL);
    CHECK_ERR(sendto(u, "x", 1, 0, SA(&ra), 1), EINVAL);
    CHECK_ERR(recv(u, buf, sizeof buf, MSG_DONTWAIT), EAGAIN); /* not ENOTCONN */

    /* From an unbound sender, recvfrom's address length is 0 (surprising:
     * not sizeof(sa_family_t) as getpeername/accept give for unbound). */
    CHECK(sendto(u, "hi", 2, 0, SA(&ra), rl) == 2);
    l = sizeof from;
    memset(&from, 0x55, sizeof from);
    CHECK(recvfrom(r, buf, sizeof buf, 0, SA(&from), &l) == 2 && memcmp(buf, "hi", 2) == 0);
    CHECK(l == 0);
    /* The sender stays unbound: no autobind on send. */
    l = sizeof x;
    CHECK(getsockname(u, SA(&x), &l) == 0 && l == FAMILY_LEN);
    /* From a bound sender: its path. */
    CHECK(sendto(sb, "yo", 2, 0, SA(&ra), rl) == 2);
    l = sizeof from;
    CHECK(recvfrom(r, buf, sizeof buf, 0, SA(&from), &l) == 2);
    CHECK(l == sl && from.sun_family == AF_UNIX && strcmp(from.sun_path, spath) == 0);
    /* and the reply goes back by that address. */
    CHECK(sendto(r, "back", 4, 0, SA(&from), l) == 4);
    CHECK(recv(sb, buf, sizeof buf, 0) == 4);

    /* r connected to sb: only sb may send to it. */
    CHECK(connect(r, SA(&sa_), sl) == 0);
    l = sizeof x;
    CHECK(getpeername(r, SA(&x), &l) == 0 && l == sl && strcmp(x.sun_path, spath) == 0);
    CHECK_ERR(sendto(u, "x", 1, 0, SA(&ra), rl), EPERM);
    CHECK(sendto(sb, "ok", 2, 0, SA(&ra), rl) == 2);
    CHECK(recv(r, buf, sizeof buf, 0) == 2);
    CHECK(send(r, "to-sb", 5, 0) == 5); /* without an address */
    CHECK(recv(sb, buf, sizeof buf, 0) == 5);
    /* sendto with an address on a connected dgram socket: allowed. */
    CHECK(sendto(r, "addr", 4, 0, SA(&sa_), sl) == 4);
    CHECK(recv(sb, buf, sizeof buf, 0) == 4);
    /* Surprising: disconnecting (or reconnecting elsewhere) drops what is
     * queued on the socket. */
    CHECK(sendto(sb, "dropped", 7, 0, SA(&ra), rl) == 7);
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    CHECK(connect(r, &unspec, sizeof unspec) == 0);
    CHECK_ERR(recv(r, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    CHECK_ERR(send(r, "x", 1, 0), ENOTCONN);
    l = sizeof x;
    CHECK_ERR(getpeername(r, SA(&x), &l), ENOTCONN);
    CHECK(sendto(u, "free", 4, 0, SA(&ra), rl) == 4);
    CHECK(recv(r, buf, sizeof buf, 0) == 4 && memcmp(buf, "free", 4) == 0);
    CHECK(connect(r, &unspec, sizeof unspec) == 0); /* twice: fine */

    /* A full receive queue: EAGAIN with MSG_DONTWAIT, until one is read.
     * (The sender is connected one way; the limit is the receiver's
     * queue length, net.unix.max_dgram_qlen.) */
    CHECK(connect(u, SA(&ra), rl) == 0);
    int sent = 0, again = 0;
    for (int i = 0; i < 100000; i++) {
        if (send(u, "f", 1, MSG_DONTWAIT) == 1) {
            sent++;
        } else {
            again = errno == EAGAIN;
            break;
        }
    }
    CHECK(again && sent > 0);
    CHECK_ERR(send(u, "f", 1, MSG_DONTWAIT), EAGAIN);
    CHECK(poll_one(u, POLLOUT) == 0);
    CHECK(recv(r, buf, sizeof buf, 0) == 1);
    CHECK(send(u, "g", 1, MSG_DONTWAIT) == 1);
    /* An unconnected sender hits the same limit. */
    CHECK_ERR(sendto(sb, "h", 1, MSG_DONTWAIT, SA(&ra), rl), EAGAIN);
    int got = 0;
    while (recv(r, buf, sizeof buf, MSG_DONTWAIT) >= 0) got++;
    CHECK(got == sent);
    CHECK(poll_one(u, POLLOUT) == POLLOUT);

    /* The same on a socketpair (there the sender's buffer is the limit). */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    sent = 0;
    again = 0;
    for (int i = 0; i < 100000; i++) {
        if (send(sv[0], "f", 1, MSG_DONTWAIT) == 1) {
            sent++;
        } else {
            again = errno == EAGAIN;
            break;
        }
    }
    CHECK(again && sent > 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 1);
    CHECK(send(sv[0], "g", 1, MSG_DONTWAIT) == 1);

    /* The connected peer closed: ECONNREFUSED once, which disconnects, then
     * ENOTCONN (surprising). Receiving: no EOF for datagrams, EAGAIN. */
    close(sv[1]);
    CHECK_ERR(send(sv[0], "x", 1, MSG_DONTWAIT), ECONNREFUSED);
    CHECK_ERR(send(sv[0], "x", 1, MSG_DONTWAIT), ENOTCONN);
    CHECK_ERR(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    close(sv[0]);
    /* By path: u is connected to r; r closes. The file stays. */
    close(r);
    CHECK_ERR(send(u, "x", 1, 0), ECONNREFUSED);
    CHECK_ERR(send(u, "x", 1, 0), ENOTCONN);
    CHECK_ERR(sendto(u, "x", 1, 0, SA(&ra), rl), ECONNREFUSED);
    CHECK_ERR(connect(u, SA(&ra), rl), ECONNREFUSED);
    close(u);
    close(sb);
}

/* 8. Stream flow control and poll. */
static void flow_control(void) {
    int sv[2];
    static char block[4096];
    char buf[4096];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(poll_one(sv[0], POLLIN | POLLOUT) == POLLOUT);
    CHECK(set_nonblock(sv[0], 1) == 0);
    long total = 0;
    int again = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t n = write(sv[0], block, sizeof block);
        if (n > 0) {
            total += n;
        } else {
            again = n == -1 && errno == EAGAIN;
            break;
        }
    }
    CHECK(again && total > 0);
    CHECK(!(poll_one(sv[0], POLLOUT) & POLLOUT));
    CHECK(poll_one(sv[1], POLLIN | POLLOUT) & POLLIN);
    int q = -1;
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == total);
    long drained = 0;
    ssize_t n;
    while ((n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) drained += n;
    CHECK(n == -1 && errno == EAGAIN && drained == total);
    CHECK(poll_one(sv[0], POLLOUT) == POLLOUT);
    CHECK(write(sv[0], "more", 4) == 4);
    close(sv[0]);
    close(sv[1]);

    /* The peer closed (without unread data): POLLIN|POLLHUP; Linux also
     * reports POLLOUT although a write would be EPIPE. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    short re = poll_one(sv[0], POLLIN | POLLOUT | POLLRDHUP);
    CHECK((re & (POLLIN | POLLHUP | POLLRDHUP)) == (POLLIN | POLLHUP | POLLRDHUP) && !(re & POLLERR));
    CHECK(re & POLLOUT);
    /* POLLHUP is reported even when not asked for. */
    CHECK(poll_one(sv[0], 0) == POLLHUP);
    close(sv[0]);

    /* MSG_WAITALL gathers a forked writer's pieces. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t kid = fork_child();
    if (kid == 0) {
        close(sv[0]);
        char piece[100];
        for (int i = 0; i < 10; i++) {
            memset(piece, 'a' + i, sizeof piece);
            if (write(sv[1], piece, sizeof piece) != sizeof piece) _exit(1);
            sched_yield();
        }
        _exit(0);
    }
    close(sv[1]);
    static char big[2000];
    CHECK(recv(sv[0], big, 1000, MSG_WAITALL) == 1000);
    int good = 1;
    for (int i = 0; i < 1000; i++) good &= big[i] == 'a' + i / 100;
    CHECK(good);
    CHECK(child_ok(kid));
    CHECK(recv(sv[0], big, 1000, MSG_WAITALL) == 0);
    close(sv[0]);
    /* The writer goes away early: MSG_WAITALL returns what there was. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    kid = fork_child();
    if (kid == 0) {
        close(sv[0]);
        _exit(write(sv[1], big, 300) == 300 ? 0 : 1);
    }
    close(sv[1]);
    CHECK(recv(sv[0], big, 1000, MSG_WAITALL) == 300);
    CHECK(child_ok(kid));
    close(sv[0]);
}

/* Sends one byte with `n` descriptors attached. */
static ssize_t send_fds(int sock, const int *fds, int n) {
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {.iov_base = "F", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
    return sendmsg(sock, &mh, 0);
}

/* Receives one byte and up to 4 descriptors into `fds`, with a control
 * buffer of `space` bytes; returns the count of fds, -1 on error. */
static int recv_fds(int sock, int *fds, size_t space, int flags, int *msg_flags) {
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    char c;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = space ? u.buf : NULL,
                        .msg_controllen = space};
    if (recvmsg(sock, &mh, flags) != 1 || c != 'F') return -1;
    *msg_flags = mh.msg_flags;
    int count = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) return -1;
        int k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds + count, CMSG_DATA(cm), k * sizeof(int));
        count += k;
    }
    return count;
}

/* 9. SCM_RIGHTS. */
static void pass_fds(void) {
    int p1[2], p2[2], sv[2], got[4], mf;
    char buf[16];
    CHECK(pipe(p1) == 0 && pipe(p2) == 0);
    CHECK(write(p1[1], "piped", 5) == 5 && write(p2[1], "second", 6) == 6);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int two[2] = {p1[0], p2[0]};
    CHECK(send_fds(sv[0], two, 2) == 1);
    CHECK(recv_fds(sv[1], got, CMSG_SPACE(2 * sizeof(int)), 0, &mf) == 2 && !(mf & MSG_CTRUNC));
    CHECK(got[0] != p1[0] && got[0] != p2[0] && got[1] != p1[0] && got[1] != p2[0] && got[0] != got[1]);
    struct stat s1, s2;
    CHECK(fstat(got[0], &s1) == 0 && fstat(p1[0], &s2) == 0 && s1.st_ino == s2.st_ino && S_ISFIFO(s1.st_mode));
    CHECK(read(got[0], buf, sizeof buf) == 5 && memcmp(buf, "piped", 5) == 0);
    CHECK(read(got[1], buf, sizeof buf) == 6 && memcmp(buf, "second", 6) == 0);
    CHECK(!(fcntl(got[0], F_GETFD) & FD_CLOEXEC));
    /* The received fd shares the open file (status flags) with the sent one. */
    CHECK(fcntl(got[0], F_SETFL, O_NONBLOCK) == 0 && (fcntl(p1[0], F_GETFL) & O_NONBLOCK));
    CHECK(fcntl(got[0], F_SETFL, 0) == 0);
    close(got[0]);
    close(got[1]);

    /* MSG_CMSG_CLOEXEC */
    CHECK(send_fds(sv[0], two, 1) == 1);
    CHECK(recv_fds(sv[1], got, CMSG_SPACE(sizeof(int)), MSG_CMSG_CLOEXEC, &mf) == 1);
    CHECK(fcntl(got[0], F_GETFD) & FD_CLOEXEC);
    close(got[0]);

    /* Room for one fd of two: one arrives, the other is closed, MSG_CTRUNC.
     * (CMSG_SPACE(sizeof(int)) already has room for two ints on 64-bit,
     * so the space given here is CMSG_LEN(sizeof(int)).) */
    CHECK(send_fds(sv[0], two, 2) == 1);
    CHECK(recv_fds(sv[1], got, CMSG_LEN(sizeof(int)), 0, &mf) == 1 && (mf & MSG_CTRUNC));
    CHECK(fstat(got[0], &s1) == 0 && fstat(p1[0], &s2) == 0 && s1.st_ino == s2.st_ino);
    close(got[0]);
    /* No control buffer at all: the data arrives, MSG_CTRUNC. */
    CHECK(send_fds(sv[0], two, 1) == 1);
    CHECK(recv_fds(sv[1], got, 0, 0, &mf) == 0 && (mf & MSG_CTRUNC));
    /* Ordinary data that follows is not marked. */
    CHECK(write(sv[0], "F", 1) == 1);
    CHECK(recv_fds(sv[1], got, CMSG_SPACE(sizeof(int)), 0, &mf) == 0 && !(mf & MSG_CTRUNC));

    /* Not descriptors: EBADF, and nothing is sent. */
    int bad = -1;
    CHECK_ERR(send_fds(sv[0], &bad, 1), EBADF);
    int dead = dup(p1[0]);
    close(dead);
    CHECK_ERR(send_fds(sv[0], &dead, 1), EBADF);
    int mixed[2] = {p1[0], dead};
    CHECK_ERR(send_fds(sv[0], mixed, 2), EBADF);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* Over a datagram socketpair too. */
    int dv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dv) == 0);
    CHECK(write(p2[1], "dg", 2) == 2);
    CHECK(send_fds(dv[0], &p2[0], 1) == 1);
    CHECK(recv_fds(dv[1], got, CMSG_SPACE(sizeof(int)), 0, &mf) == 1);
    CHECK(read(got[0], buf, sizeof buf) == 2);
    close(got[0]);
    close(dv[0]);
    close(dv[1]);

    /* Sent, never received: closing the sockets releases them. The last
     * reader of p1 is in flight; after the close, p1 has no reader. */
    CHECK(send_fds(sv[0], two, 1) == 1);
    close(p1[0]);
    close(sv[0]);
    close(sv[1]);
    signal(SIGPIPE, SIG_IGN);
    CHECK_ERR(write(p1[1], "x", 1), EPIPE);
    signal(SIGPIPE, SIG_DFL);
    /* A socket in its own queue (a cycle for the garbage collector):
     * closing it works; nothing here may wait for the collection. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(send_fds(sv[0], &sv[1], 1) == 1);
    CHECK(send_fds(sv[1], &sv[0], 1) == 1);
    CHECK(close(sv[0]) == 0 && close(sv[1]) == 0);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
}

/* Receives one datagram; returns the SCM_CREDENTIALS in it (pid -1 if none). */
static struct ucred recv_creds(int sock) {
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred)) + 64];
        struct cmsghdr align;
    } u;
    char c[8];
    struct iovec iov = {.iov_base = c, .iov_len = sizeof c};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct ucred cr = {.pid = -1};
    if (recvmsg(sock, &mh, 0) < 0) return cr;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
            cm->cmsg_len == CMSG_LEN(sizeof cr))
            memcpy(&cr, CMSG_DATA(cm), sizeof cr);
    return cr;
}

/* 10. Credentials. */
static void credentials(void) {
    int sv[2];
    struct ucred cr;
    socklen_t cl = sizeof cr;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cl == sizeof cr);
    CHECK(cr.pid == getpid() && cr.uid == getuid() && cr.gid == getgid());
    /* Fixed when the pair is made: a child that inherits an end still sees
     * the parent as the peer. */
    pid_t parent = getpid();
    pid_t kid = fork_child();
    if (kid == 0) {
        struct ucred kc;
        socklen_t kl = sizeof kc;
        _exit(getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &kc, &kl) == 0 && kc.pid == parent ? 0 : 1);
    }
    CHECK(child_ok(kid));
    /* A short buffer: truncated to the size given. */
    cl = sizeof(int);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cl == sizeof(int));
    close(sv[0]);
    close(sv[1]);
    /* Unconnected: no peer; Linux gives pid 0 and uid/gid -1 (overflow). */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    cl = sizeof cr;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid == 0);
    close(s);

    /* SO_PASSCRED: the sender's credentials at send time (here a child). */
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    int one = 1;
    CHECK(sock_int(sv[1], SOL_SOCKET, SO_PASSCRED) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    CHECK(sock_int(sv[1], SOL_SOCKET, SO_PASSCRED) == 1);
    kid = fork_child();
    if (kid == 0) _exit(send(sv[0], "c", 1, 0) == 1 ? 0 : 1);
    cr = recv_creds(sv[1]);
    CHECK(cr.pid == kid && cr.uid == getuid() && cr.gid == getgid());
    CHECK(child_ok(kid));
    /* Explicit SCM_CREDENTIALS with one's own ids. */
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {.iov_base = "e", .iov_len = 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred mine = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    memcpy(CMSG_DATA(cm), &mine, sizeof mine);
    CHECK(sendmsg(sv[0], &mh, 0) == 1);
    cr = recv_creds(sv[1]);
    CHECK(cr.pid == getpid() && cr.uid == getuid() && cr.gid == getgid());
    /* Without SO_PASSCRED on the receiver, none arrive. */
    int zero = 0;
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &zero, sizeof zero) == 0);
    CHECK(sendmsg(sv[0], &mh, 0) == 1);
    cr = recv_creds(sv[1]);
    CHECK(cr.pid == -1);
    close(sv[0]);
    close(sv[1]);

    /* On a stream pair too. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    CHECK(write(sv[0], "s", 1) == 1);
    cr = recv_creds(sv[1]);
    CHECK(cr.pid == getpid() && cr.uid == getuid() && cr.gid == getgid());
    close(sv[0]);
    close(sv[1]);
}

/* 11. Socket options. */
static void options(void) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sock_int(s, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
    CHECK(sock_int(d, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
    CHECK(sock_int(s, SOL_SOCKET, SO_DOMAIN) == AF_UNIX);
    CHECK(sock_int(d, SOL_SOCKET, SO_DOMAIN) == AF_UNIX);
    CHECK(sock_int(s, SOL_SOCKET, SO_PROTOCOL) == 0);
    CHECK(sock_int(s, SOL_SOCKET, SO_ERROR) == 0);
    CHECK(sock_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    struct sockaddr_un a;
    const char *path = tmp_path("opt");
    socklen_t al = path_addr(&a, path);
    CHECK(bind(s, SA(&a), al) == 0 && listen(s, 1) == 0);
    CHECK(sock_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 1);
    CHECK(sock_int(d, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    /* TCP options on a unix socket: EOPNOTSUPP both ways. */
    int v = 1;
    socklen_t l = sizeof v;
    CHECK_ERR(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &l), EOPNOTSUPP);
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v), EOPNOTSUPP);
    CHECK_ERR(getsockopt(d, IPPROTO_IP, IP_TTL, &v, &l), EOPNOTSUPP);
    CHECK_ERR(getsockopt(s, SOL_SOCKET, 9999, &v, &l), ENOPROTOOPT);
    /* SO_SNDBUF: set succeeds; Linux reports double what was set. */
    v = 65536;
    CHECK(setsockopt(d, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    CHECK(sock_int(d, SOL_SOCKET, SO_SNDBUF) >= 65536);
    CHECK(setsockopt(d, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == 0);
    CHECK(sock_int(d, SOL_SOCKET, SO_RCVBUF) > 0);
    CHECK(setsockopt(d, SOL_SOCKET, SO_SNDBUF, &v, 2) == -1 && errno == EINVAL);
    /* SO_RCVTIMEO: a blocking recv on an empty socket times out (EAGAIN). */
    struct timeval tv = {0, 10000};
    CHECK(setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    char c;
    CHECK_ERR(recv(d, &c, 1, 0), EAGAIN);
    close(s);
    close(d);
}

/* 12. FIONREAD. */
static void fionread(void) {
    int sv[2], q = -1;
    char buf[16];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 0);
    CHECK(write(sv[0], "abc", 3) == 3 && write(sv[0], "defg", 4) == 4);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 7); /* all queued bytes */
    CHECK(read(sv[1], buf, 2) == 2);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 5);
    close(sv[0]);
    close(sv[1]);
    /* Datagram: the size of the next datagram only. */
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 0);
    CHECK(write(sv[0], "abc", 3) == 3 && write(sv[0], "defghi", 6) == 6);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 3);
    CHECK(read(sv[1], buf, sizeof buf) == 3);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 6);
    CHECK(write(sv[0], "", 0) == 0); /* an empty one counts 0 */
    CHECK(read(sv[1], buf, sizeof buf) == 6);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 0);
    close(sv[0]);
    close(sv[1]);
    /* Surprising: seqpacket counts like a stream, all queued bytes, though
     * reads return one record at a time. */
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 0);
    CHECK(write(sv[0], "abc", 3) == 3 && write(sv[0], "defghi", 6) == 6);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 9);
    CHECK(read(sv[1], buf, sizeof buf) == 3);
    CHECK(ioctl(sv[1], FIONREAD, &q) == 0 && q == 6);
    close(sv[0]);
    close(sv[1]);
    /* On a listening socket: EINVAL. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    a.sun_family = AF_UNIX;
    CHECK(bind(s, SA(&a), FAMILY_LEN) == 0 && listen(s, 1) == 0);
    CHECK_ERR(ioctl(s, FIONREAD, &q), EINVAL);
    close(s);
}

/* 13. select */
static void selecting(void) {
    int sv[2];
    char c;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fd_set r, w;
    struct timeval tv = {0, 0};
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(sv[1], &r);
    FD_SET(sv[1], &w);
    CHECK(select(sv[1] + 1, &r, &w, NULL, &tv) == 1 && !FD_ISSET(sv[1], &r) && FD_ISSET(sv[1], &w));
    CHECK(write(sv[0], "s", 1) == 1);
    FD_ZERO(&r);
    FD_SET(sv[0], &r);
    FD_SET(sv[1], &r);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    int hi = sv[0] > sv[1] ? sv[0] : sv[1];
    CHECK(select(hi + 1, &r, NULL, NULL, &tv) == 1 && FD_ISSET(sv[1], &r) && !FD_ISSET(sv[0], &r));
    CHECK(read(sv[1], &c, 1) == 1);
    /* A blocking select wakes for data written by a child. */
    pid_t kid = fork_child();
    if (kid == 0) _exit(write(sv[0], "k", 1) == 1 ? 0 : 1);
    FD_ZERO(&r);
    FD_SET(sv[1], &r);
    CHECK(select(sv[1] + 1, &r, NULL, NULL, NULL) == 1 && FD_ISSET(sv[1], &r));
    CHECK(read(sv[1], &c, 1) == 1 && c == 'k');
    CHECK(child_ok(kid));
    /* Peer closed: readable (EOF). */
    close(sv[0]);
    FD_ZERO(&r);
    FD_SET(sv[1], &r);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    CHECK(select(sv[1] + 1, &r, NULL, NULL, &tv) == 1 && FD_ISSET(sv[1], &r));
    CHECK(read(sv[1], &c, 1) == 0);
    close(sv[1]);
}

/* 14. A thread blocked in recv. */
static void *receiver(void *arg) {
    int fd = *(int *)arg;
    static char buf[32];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n != 6 || memcmp(buf, "thread", 6) != 0) return (void *)1;
    n = recv(fd, buf, sizeof buf, 0); /* then EOF */
    return (void *)(n == 0 ? 0L : 2L);
}

static void threads(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, receiver, &sv[1]) == 0);
    CHECK(write(sv[0], "thread", 6) == 6);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    void *res = (void *)99;
    CHECK(pthread_join(t, &res) == 0 && res == NULL);
    close(sv[0]);
    close(sv[1]);
}

/* Behaviours a red-team run found wrong once (each as Linux does it). */
static void regressions(void) {
    int sv[2];
    char b[8];
    /* An empty stream send queues nothing (no false end of file). */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(send(sv[0], "", 0, 0) == 0);
    CHECK_ERR(recv(sv[1], b, sizeof b, MSG_DONTWAIT), EAGAIN);
    /* A long non-blocking stream send sends part, not EMSGSIZE. */
    static char big[300000];
    ssize_t n = send(sv[0], big, sizeof big, MSG_DONTWAIT);
    CHECK(n > 0 && n < (ssize_t)sizeof big);
    close(sv[0]);
    close(sv[1]);
    /* A listener: SO_PEERCRED gives its own, an accepted socket inherits
     * SO_PASSCRED, and after shutdown accept fails with EINVAL. */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    a.sun_path[0] = 0;
    snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "tessera-regress-%d", (int)getpid());
    socklen_t al = SUN_OFF + 1 + strlen(a.sun_path + 1);
    CHECK(bind(l, SA(&a), al) == 0 && listen(l, 4) == 0);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    CHECK(getsockopt(l, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 && cr.pid == getpid());
    int one = 1;
    CHECK(setsockopt(l, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, SA(&a), al) == 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0 && sock_int(s, SOL_SOCKET, SO_PASSCRED) == 1);
    /* After shutdown, accept waits no more: EINVAL (EAGAIN when
     * non-blocking, as before). */
    CHECK(shutdown(l, SHUT_RDWR) == 0);
    CHECK_ERR(accept(l, NULL, NULL), EINVAL);
    CHECK(set_nonblock(l, 1) == 0);
    CHECK_ERR(accept(l, NULL, NULL), EAGAIN);
    close(s);
    close(c);
    close(l);
}

int main(void) {
    alarm(10);
    creation();
    stream_pair();
    dgram_pair();
    seqpacket_pair();
    pathname();
    abstract();
    dgram_addresses();
    flow_control();
    pass_fds();
    credentials();
    options();
    fionread();
    selecting();
    threads();
    regressions();
    remove_tmp_paths();
    return tt_done("unix");
}
