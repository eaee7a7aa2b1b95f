/* AF_INET sockets over loopback (127.0.0.1 only; nothing leaves the
 * machine): socket(2) type, protocol and family errors, bind errors and
 * ephemeral ports, TCP connect/accept with data both ways, MSG_PEEK,
 * MSG_DONTWAIT, shutdown and EOF, refused and non-blocking connects,
 * EPIPE and resets, UDP datagrams (addresses, boundaries, truncation,
 * connected sockets, port unreachable), poll readiness, socket options,
 * SO_RCVTIMEO, FIONREAD and a 1 MiB transfer between two processes.
 * Each group prints "# name" first, so a hang shows where it stopped. */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOOPBACK 0x7f000001u /* 127.0.0.1 */
#define WAIT_MS 5000         /* poll bound: readiness that never comes */
#define BIG (1 << 20)        /* bytes of the large transfer */

static const char *group_name = "";
static volatile sig_atomic_t sigpipes;

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "# HUNG (30 s) in group: ";
    if (write(1, msg, sizeof msg - 1) < 0 || write(1, group_name, strlen(group_name)) < 0 ||
        write(1, "\n", 1) < 0)
        _exit(3);
    _exit(3);
}

static void on_sigpipe(int sig) {
    (void)sig;
    sigpipes++;
}

/* Starts a group: a progress line and a fresh watchdog. */
static void group(const char *name) {
    group_name = name;
    printf("# %s\n", name);
    alarm(30);
}

static struct sockaddr_in addr_of(uint32_t host, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(host);
    return a;
}

static struct sockaddr_in lo(int port) { return addr_of(LOOPBACK, port); }

#define SA(a) ((struct sockaddr *)&(a))

static int local_port(int fd) {
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getsockname(fd, SA(a), &l) != 0)
        return -1;
    return ntohs(a.sin_port);
}

/* True when `a` (of length `l`) is 127.0.0.1:port. */
static int is_lo(const struct sockaddr_in *a, socklen_t l, int port) {
    return l == sizeof *a && a->sin_family == AF_INET && ntohl(a->sin_addr.s_addr) == LOOPBACK &&
           ntohs(a->sin_port) == port;
}

static int bound_socket(int type, int port) {
    int s = socket(AF_INET, type, 0);
    struct sockaddr_in a = lo(port);
    if (s < 0 || bind(s, SA(a), sizeof a) != 0)
        return -1;
    return s;
}

/* A TCP listener on 127.0.0.1 at an ephemeral port (stored in *port). */
static int listener(int *port) {
    int s = bound_socket(SOCK_STREAM, 0);
    if (s < 0 || listen(s, 8) != 0)
        return -1;
    *port = local_port(s);
    return s;
}

/* A connected TCP pair over 127.0.0.1: *client connected, *server accepted. */
static int tcp_pair(int *client, int *server) {
    int port, l = listener(&port);
    if (l < 0)
        return -1;
    *client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(port);
    if (*client < 0 || connect(*client, SA(a), sizeof a) != 0)
        return -1;
    *server = accept(l, NULL, NULL);
    close(l);
    return *server < 0 ? -1 : 0;
}

static short poll_one(int fd, short events, int ms) {
    struct pollfd p = {.fd = fd, .events = events};
    if (poll(&p, 1, ms) < 0)
        return -1;
    return p.revents;
}

static int get_int(int fd, int level, int name) {
    int v = -12345;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l) != 0 || l != sizeof v)
        return -12345;
    return v;
}

static int set_int(int fd, int level, int name, int v) {
    return setsockopt(fd, level, name, &v, sizeof v);
}

static int set_rcvtimeo(int fd, long usec) {
    struct timeval tv = {.tv_sec = usec / 1000000, .tv_usec = usec % 1000000};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int unread(int fd) {
    int n = -1;
    if (ioctl(fd, FIONREAD, &n) != 0)
        return -1;
    return n;
}

static long read_full(int fd, char *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = read(fd, buf + done, len - done);
        if (r <= 0)
            return r < 0 ? -1 : (long)done;
        done += (size_t)r;
    }
    return (long)done;
}

static int write_full(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t r = write(fd, buf, len);
        if (r <= 0)
            return -1;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

static void sockets(void) {
    group("socket: types, protocols, families");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    CHECK(get_int(s, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
    CHECK(get_int(s, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP);
    CHECK(get_int(s, SOL_SOCKET, SO_DOMAIN) == AF_INET);
    CHECK(get_int(s, SOL_SOCKET, SO_ERROR) == 0);
    close(s);
    s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    CHECK(get_int(s, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
    CHECK(get_int(s, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDP);
    close(s);
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    CHECK(s >= 0);
    close(s);
    s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    CHECK(s >= 0);
    close(s);
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(s, F_GETFD) == FD_CLOEXEC);
    close(s);

    CHECK_ERR(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_INET, SOCK_DGRAM, IPPROTO_TCP), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_INET, SOCK_STREAM, 99), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_INET, SOCK_DGRAM, 200), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_INET, 7, 0), ESOCKTNOSUPPORT); /* no such type */
    CHECK_ERR(socket(AF_INET, 11, 0), EINVAL);         /* past SOCK_MAX */
    CHECK_ERR(socket(AF_INET, SOCK_STREAM | 0x100, 0), EINVAL);
    CHECK_ERR(socket(99, SOCK_STREAM, 0), EAFNOSUPPORT);
    CHECK_ERR(socket(-1, SOCK_STREAM, 0), EAFNOSUPPORT);
    CHECK_ERR(socket(13, SOCK_STREAM, 0), EAFNOSUPPORT); /* AF_NETBEUI: never implemented */
    int sv[2];
    CHECK_ERR(socketpair(AF_INET, SOCK_STREAM, 0, sv), EOPNOTSUPP);
    CHECK_ERR(socketpair(AF_INET, SOCK_DGRAM, 0, sv), EOPNOTSUPP);
}

static void binds(void) {
    group("bind: errors, ephemeral ports, getsockname");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(0), name;
    socklen_t l = sizeof name;
    CHECK(getsockname(s, SA(name), &l) == 0);
    CHECK(l == sizeof name && name.sin_family == AF_INET && name.sin_port == 0 && name.sin_addr.s_addr == 0);

    CHECK_ERR(bind(s, SA(a), sizeof a - 1), EINVAL);
    /* Past sockaddr_storage (a fresh socket, in case it binds). */
    char longer[256] = {0};
    memcpy(longer, &a, sizeof a);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(t, (struct sockaddr *)longer, 129), EINVAL);
    close(t);
    a.sin_family = AF_INET6;
    CHECK_ERR(bind(s, SA(a), sizeof a), EAFNOSUPPORT);
    a.sin_family = AF_UNSPEC; /* accepted only with INADDR_ANY */
    CHECK_ERR(bind(s, SA(a), sizeof a), EAFNOSUPPORT);
    a = addr_of(0xc0000201u, 0); /* 192.0.2.1: not an address of this machine */
    CHECK_ERR(bind(s, SA(a), sizeof a), EADDRNOTAVAIL);

    a = lo(0);
    struct sockaddr_storage big;
    memset(&big, 0, sizeof big);
    memcpy(&big, &a, sizeof a);
    CHECK(bind(s, (struct sockaddr *)&big, sizeof big) == 0); /* longer is fine */
    l = sizeof name;
    CHECK(getsockname(s, SA(name), &l) == 0);
    int port = ntohs(name.sin_port);
    CHECK(port != 0 && is_lo(&name, l, port));
    printf("  ephemeral TCP port: %d\n", port);
    l = 4; /* a short buffer: truncated, the full length reported */
    memset(&name, 0, sizeof name);
    CHECK(getsockname(s, SA(name), &l) == 0 && l == sizeof name && name.sin_family == AF_INET &&
          ntohs(name.sin_port) == port && name.sin_addr.s_addr == 0);
    CHECK_ERR(bind(s, SA(a), sizeof a), EINVAL); /* bound already */
    a = lo(port);
    CHECK_ERR(bind(s, SA(a), sizeof a), EINVAL);
    CHECK(listen(s, 4) == 0);

    t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(t, SA(a), sizeof a), EADDRINUSE);
    struct sockaddr_in any = addr_of(0, port);
    CHECK_ERR(bind(t, SA(any), sizeof any), EADDRINUSE);
    CHECK(set_int(t, SOL_SOCKET, SO_REUSEADDR, 1) == 0);
    CHECK_ERR(bind(t, SA(a), sizeof a), EADDRINUSE); /* the listener has no SO_REUSEADDR */
    close(t);

    /* listen() on an unbound socket picks a port. */
    t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listen(t, 1) == 0 && local_port(t) > 0);
    close(t);

    int u = bound_socket(SOCK_DGRAM, 0);
    int uport = local_port(u);
    CHECK(u >= 0 && uport > 0);
    t = socket(AF_INET, SOCK_DGRAM, 0);
    a = lo(uport);
    CHECK_ERR(bind(t, SA(a), sizeof a), EADDRINUSE);
    close(t);
    /* TCP and UDP ports are separate spaces. */
    t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(t, SA(a), sizeof a) == 0 && local_port(t) == uport);
    close(t);
    close(u);
    close(s);

    /* AF_UNSPEC with INADDR_ANY binds like AF_INET (compatibility). */
    t = socket(AF_INET, SOCK_DGRAM, 0);
    any = addr_of(0, 0);
    any.sin_family = AF_UNSPEC;
    CHECK(bind(t, SA(any), sizeof any) == 0 && local_port(t) > 0);
    close(t);
}

static void tcp_basic(void) {
    group("tcp: connect, accept, data both ways");
    int port, l = listener(&port);
    CHECK(l >= 0 && port > 0);
    CHECK(get_int(l, SOL_SOCKET, SO_ACCEPTCONN) == 1);
    struct sockaddr_in a, peer;
    socklen_t pl = sizeof peer;
    CHECK_ERR(getpeername(l, SA(peer), &pl), ENOTCONN);
    /* An unconnected socket. (shutdown fails with ENOTCONN but still
     * marks it shut down, so it is not used to connect afterwards.) */
    int u = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(get_int(u, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    pl = sizeof peer;
    CHECK_ERR(getpeername(u, SA(peer), &pl), ENOTCONN);
    char buf[256];
    CHECK_ERR(recv(u, buf, sizeof buf, 0), ENOTCONN);
    CHECK_ERR(send(u, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK_ERR(accept(u, NULL, NULL), EINVAL); /* not listening */
    CHECK_ERR(shutdown(u, SHUT_WR), ENOTCONN);
    close(u);
    CHECK_ERR(recv(l, buf, sizeof buf, MSG_DONTWAIT), ENOTCONN);
    int c = socket(AF_INET, SOCK_STREAM, 0);

    CHECK(poll_one(l, POLLIN, 0) == 0);
    a = lo(port);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    CHECK(poll_one(l, POLLIN, WAIT_MS) == POLLIN); /* a connection to accept */
    pl = sizeof peer;
    int s = accept(l, SA(peer), &pl);
    CHECK(s >= 0);
    int cport = local_port(c);
    CHECK(cport > 0 && is_lo(&peer, pl, cport));
    struct sockaddr_in name;
    socklen_t nl = sizeof name;
    CHECK(getsockname(c, SA(name), &nl) == 0 && is_lo(&name, nl, cport));
    nl = sizeof name;
    CHECK(getsockname(s, SA(name), &nl) == 0 && is_lo(&name, nl, port));
    pl = sizeof peer;
    CHECK(getpeername(c, SA(peer), &pl) == 0 && is_lo(&peer, pl, port));
    pl = sizeof peer;
    CHECK(getpeername(s, SA(peer), &pl) == 0 && is_lo(&peer, pl, cport));
    CHECK(get_int(s, SOL_SOCKET, SO_ACCEPTCONN) == 0);
    CHECK(get_int(s, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);

    CHECK_ERR(connect(c, SA(a), sizeof a), EISCONN);
    CHECK_ERR(accept(c, NULL, NULL), EINVAL);
    CHECK_ERR(listen(c, 1), EINVAL);

    group("tcp: MSG_DONTWAIT, poll, FIONREAD, MSG_PEEK");
    CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    CHECK(poll_one(s, POLLIN, 0) == 0);
    CHECK(poll_one(c, POLLOUT, 0) == POLLOUT);
    CHECK(unread(s) == 0);
    CHECK(write(c, "hello", 5) == 5);
    CHECK(poll_one(s, POLLIN | POLLOUT, WAIT_MS) == (POLLIN | POLLOUT));
    CHECK(unread(s) == 5);
    memset(buf, 0, sizeof buf);
    CHECK(recv(s, buf, sizeof buf, MSG_PEEK) == 5 && memcmp(buf, "hello", 5) == 0);
    memset(buf, 0, sizeof buf);
    CHECK(recv(s, buf, 3, MSG_PEEK) == 3 && memcmp(buf, "hel", 3) == 0);
    CHECK(unread(s) == 5);
    memset(buf, 0, sizeof buf);
    CHECK(read(s, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(unread(s) == 0);
    CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    CHECK(poll_one(s, POLLIN, 0) == 0);

    CHECK(send(s, "world!", 6, 0) == 6);
    memset(buf, 0, sizeof buf);
    CHECK(recv(c, buf, 6, MSG_WAITALL) == 6 && memcmp(buf, "world!", 6) == 0);
    /* Two writes are one byte stream. */
    CHECK(write(c, "ab", 2) == 2 && write(c, "cd", 2) == 2);
    memset(buf, 0, sizeof buf);
    CHECK(recv(s, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "abcd", 4) == 0);
    /* sendmsg with two pieces, recvmsg: no address for a stream. */
    struct iovec iov[2] = {{.iov_base = "gather", .iov_len = 6}, {.iov_base = "ed", .iov_len = 2}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    CHECK(sendmsg(c, &m, 0) == 8);
    memset(buf, 0, sizeof buf);
    struct sockaddr_in from;
    struct iovec rio = {.iov_base = buf, .iov_len = 8};
    struct msghdr rm = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &rio, .msg_iovlen = 1};
    CHECK(recvmsg(s, &rm, MSG_WAITALL) == 8 && memcmp(buf, "gathered", 8) == 0);
    CHECK(rm.msg_namelen == 0 && rm.msg_flags == 0);

    group("tcp: shutdown(SHUT_WR) gives EOF");
    CHECK_ERR(shutdown(c, 3), EINVAL);
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(read(s, buf, sizeof buf) == 0);
    CHECK(poll_one(s, POLLIN, 0) & POLLIN); /* EOF is readable */
    CHECK(read(s, buf, sizeof buf) == 0);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(send(s, "bye", 3, 0) == 3); /* the other direction still works */
    memset(buf, 0, sizeof buf);
    CHECK(recv(c, buf, 3, MSG_WAITALL) == 3 && memcmp(buf, "bye", 3) == 0);
    close(s);
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);
    close(l);
}

static void connects(void) {
    group("tcp: refused connect");
    /* A port that is bound but not listening: nobody accepts there. */
    int b = bound_socket(SOCK_STREAM, 0), port = local_port(b);
    CHECK(b >= 0 && port > 0);
    struct sockaddr_in a = lo(port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, SA(a), sizeof a), ECONNREFUSED);
    CHECK(get_int(c, SOL_SOCKET, SO_ERROR) == 0);
    close(c);

    group("tcp: non-blocking refused connect");
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(c, SA(a), sizeof a), EINPROGRESS);
    short ev = poll_one(c, POLLOUT, WAIT_MS);
    printf("  refused: poll revents %#x\n", ev);
    CHECK(ev > 0 && (ev & POLLERR));
    int e1 = get_int(c, SOL_SOCKET, SO_ERROR), e2 = get_int(c, SOL_SOCKET, SO_ERROR);
    printf("  refused: SO_ERROR %d, then %d\n", e1, e2);
    CHECK(e1 == ECONNREFUSED);
    CHECK(e2 == 0); /* read once */
    close(c);
    close(b);

    group("tcp: non-blocking connect");
    int l = listener(&port);
    CHECK(l >= 0);
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
    CHECK_ERR(accept(l, NULL, NULL), EAGAIN);
    a = lo(port);
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(c, SA(a), sizeof a), EINPROGRESS);
    CHECK(poll_one(c, POLLOUT, WAIT_MS) == POLLOUT);
    CHECK(get_int(c, SOL_SOCKET, SO_ERROR) == 0);
    /* The next connect reports the outcome, the one after it EISCONN. */
    CHECK(connect(c, SA(a), sizeof a) == 0);
    CHECK_ERR(connect(c, SA(a), sizeof a), EISCONN);
    CHECK(poll_one(l, POLLIN, WAIT_MS) == POLLIN);
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(s >= 0);
    CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(s, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(syscall(SYS_accept4, l, NULL, NULL, 0x100), EINVAL); /* past musl's wrapper */
    char buf[16];
    CHECK_ERR(read(s, buf, sizeof buf), EAGAIN); /* O_NONBLOCK, no data */
    CHECK(write(c, "nb", 2) == 2);
    CHECK(poll_one(s, POLLIN, WAIT_MS) == (POLLIN));
    CHECK(read(s, buf, sizeof buf) == 2 && memcmp(buf, "nb", 2) == 0);
    close(s);
    close(c);
    close(l);
}

static void closed_peers(void) {
    group("tcp: send after the peer closed (EPIPE)");
    int c, s;
    CHECK(tcp_pair(&c, &s) == 0);
    close(s);
    char buf[16];
    CHECK(read(c, buf, sizeof buf) == 0);
    /* The first send after the FIN is allowed; the peer answers it with a
     * reset, after which sends fail with EPIPE. */
    ssize_t r = 0;
    int sent = 0;
    for (int i = 0; i < 200; i++) {
        errno = 0;
        r = send(c, "x", 1, MSG_NOSIGNAL);
        if (r < 0)
            break;
        sent++;
        usleep(10000);
    }
    printf("  sends before EPIPE: %d\n", sent);
    CHECK(r == -1 && errno == EPIPE);
    CHECK(sigpipes == 0);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpipes == 0);
    CHECK_ERR(write(c, "x", 1), EPIPE);
    CHECK(sigpipes == 1);
    close(c);

    group("tcp: SO_LINGER 0 close resets (ECONNRESET)");
    CHECK(tcp_pair(&c, &s) == 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(s);
    short ev = poll_one(c, POLLIN, WAIT_MS);
    printf("  reset: poll revents %#x\n", ev);
    CHECK(ev > 0 && (ev & POLLIN) && (ev & POLLHUP));
    CHECK_ERR(recv(c, buf, sizeof buf, 0), ECONNRESET);
    CHECK(recv(c, buf, sizeof buf, 0) == 0);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    close(c);
}

static void udp(void) {
    group("udp: sendto/recvfrom with addresses");
    int a = bound_socket(SOCK_DGRAM, 0), b = bound_socket(SOCK_DGRAM, 0);
    int ap = local_port(a), bp = local_port(b);
    CHECK(a >= 0 && b >= 0 && ap > 0 && bp > 0 && ap != bp);
    char buf[64];
    CHECK_ERR(recv(b, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    CHECK(poll_one(b, POLLIN, 0) == 0);
    CHECK(poll_one(a, POLLOUT, 0) == POLLOUT);
    CHECK(unread(b) == 0);
    struct sockaddr_in to = lo(bp), from;
    socklen_t fl;
    CHECK(sendto(a, "ping", 4, 0, SA(to), sizeof to) == 4);
    CHECK(poll_one(b, POLLIN, WAIT_MS) == POLLIN);
    CHECK(unread(b) == 4);
    memset(buf, 0, sizeof buf);
    fl = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, MSG_PEEK, SA(from), &fl) == 4 && is_lo(&from, fl, ap));
    memset(&from, 0, sizeof from);
    fl = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, 0, SA(from), &fl) == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(is_lo(&from, fl, ap));
    CHECK_ERR(recv(b, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    group("udp: boundaries, truncation, empty datagrams");
    CHECK(sendto(a, "one", 3, 0, SA(to), sizeof to) == 3);
    CHECK(sendto(a, "three", 5, 0, SA(to), sizeof to) == 5);
    CHECK(recv(b, buf, sizeof buf, 0) == 3);
    CHECK(recv(b, buf, sizeof buf, 0) == 5 && memcmp(buf, "three", 5) == 0);
    CHECK(sendto(a, "0123456789", 10, 0, SA(to), sizeof to) == 10);
    CHECK(poll_one(b, POLLIN, WAIT_MS) == POLLIN);
    CHECK(unread(b) == 10);
    CHECK(recv(b, buf, 4, MSG_PEEK | MSG_TRUNC) == 10); /* the real length */
    struct iovec io = {.iov_base = buf, .iov_len = 4};
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &io, .msg_iovlen = 1};
    memset(buf, 0, sizeof buf);
    CHECK(recvmsg(b, &m, 0) == 4 && memcmp(buf, "0123", 4) == 0);
    CHECK((m.msg_flags & MSG_TRUNC) && is_lo(&from, m.msg_namelen, ap));
    CHECK_ERR(recv(b, buf, sizeof buf, MSG_DONTWAIT), EAGAIN); /* the rest is gone */
    CHECK(sendto(a, "", 0, 0, SA(to), sizeof to) == 0);
    CHECK(poll_one(b, POLLIN, WAIT_MS) == POLLIN);
    fl = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, 0, SA(from), &fl) == 0 && is_lo(&from, fl, ap));
    CHECK_ERR(recv(b, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    group("udp: unbound sender, unconnected errors");
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_ERR(send(c, "x", 1, 0), EDESTADDRREQ);
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    CHECK_ERR(getpeername(c, SA(peer), &pl), ENOTCONN);
    CHECK_ERR(sendto(c, "x", 1, 0, SA(to), sizeof to - 1), EINVAL);
    CHECK(sendto(c, "auto", 4, 0, SA(to), sizeof to) == 4); /* binds a port */
    int cp = local_port(c);
    CHECK(cp > 0);
    struct sockaddr_in name;
    socklen_t nl = sizeof name;
    CHECK(getsockname(c, SA(name), &nl) == 0 && name.sin_addr.s_addr == htonl(INADDR_ANY));
    fl = sizeof from;
    CHECK(recvfrom(b, buf, sizeof buf, 0, SA(from), &fl) == 4 && is_lo(&from, fl, cp));
    CHECK_ERR(listen(b, 1), EOPNOTSUPP);
    CHECK_ERR(accept(b, NULL, NULL), EOPNOTSUPP);

    group("udp: connected sockets");
    to = lo(bp);
    CHECK(connect(a, SA(to), sizeof to) == 0);
    pl = sizeof peer;
    CHECK(getpeername(a, SA(peer), &pl) == 0 && is_lo(&peer, pl, bp));
    CHECK(send(a, "conn", 4, 0) == 4);
    fl = sizeof from;
    memset(buf, 0, sizeof buf);
    CHECK(recvfrom(b, buf, sizeof buf, 0, SA(from), &fl) == 4 && memcmp(buf, "conn", 4) == 0 && is_lo(&from, fl, ap));
    struct sockaddr_in back = lo(ap);
    CHECK(connect(b, SA(back), sizeof back) == 0);
    CHECK(write(b, "back", 4) == 4);
    memset(buf, 0, sizeof buf);
    CHECK(read(a, buf, sizeof buf) == 4 && memcmp(buf, "back", 4) == 0);
    /* A connected socket takes datagrams from its peer only: c's is dropped,
     * so the marker sent after it is the first thing a receives. */
    back = lo(ap);
    CHECK(sendto(c, "stray", 5, 0, SA(back), sizeof back) == 5);
    CHECK(send(b, "marker", 6, 0) == 6);
    memset(buf, 0, sizeof buf);
    CHECK(recv(a, buf, sizeof buf, 0) == 6 && memcmp(buf, "marker", 6) == 0);
    CHECK_ERR(recv(a, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* AF_UNSPEC dissolves the association. */
    struct sockaddr_in unspec = {.sin_family = AF_UNSPEC};
    CHECK(connect(a, SA(unspec), sizeof unspec) == 0);
    pl = sizeof peer;
    CHECK_ERR(getpeername(a, SA(peer), &pl), ENOTCONN);
    CHECK_ERR(send(a, "x", 1, 0), EDESTADDRREQ);
    close(c);

    group("udp: port unreachable on a connected socket");
    int gone = bound_socket(SOCK_DGRAM, 0), gp = local_port(gone);
    CHECK(gone >= 0 && gp > 0);
    close(gone);
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    to = lo(gp);
    CHECK(connect(d, SA(to), sizeof to) == 0);
    CHECK(set_rcvtimeo(d, 2000000) == 0);
    CHECK(send(d, "anyone?", 7, 0) == 7);
    errno = 0;
    ssize_t r = recv(d, buf, sizeof buf, 0);
    printf("  recv after sending to a closed port: %zd errno %d (%s)\n", r, errno, strerror(errno));
    CHECK(r == -1 && errno == ECONNREFUSED);
    close(d);
    close(a);
    close(b);
}

static void options(void) {
    group("socket options");
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(get_int(t, SOL_SOCKET, SO_REUSEADDR) == 0);
    CHECK(set_int(t, SOL_SOCKET, SO_REUSEADDR, 1) == 0);
    int v = get_int(t, SOL_SOCKET, SO_REUSEADDR);
    printf("  SO_REUSEADDR after 1: %d\n", v);
    CHECK(v == 1);
    CHECK(set_int(t, SOL_SOCKET, SO_REUSEADDR, 0) == 0 && get_int(t, SOL_SOCKET, SO_REUSEADDR) == 0);
    CHECK(set_int(t, SOL_SOCKET, SO_RCVBUF, 32768) == 0);
    v = get_int(t, SOL_SOCKET, SO_RCVBUF);
    printf("  SO_RCVBUF after 32768: %d\n", v);
    CHECK(v == 65536); /* Linux doubles it for its bookkeeping */
    CHECK(set_int(t, SOL_SOCKET, SO_SNDBUF, 32768) == 0);
    v = get_int(t, SOL_SOCKET, SO_SNDBUF);
    printf("  SO_SNDBUF after 32768: %d\n", v);
    CHECK(v == 65536);
    CHECK(get_int(t, IPPROTO_TCP, TCP_NODELAY) == 0);
    CHECK(set_int(t, IPPROTO_TCP, TCP_NODELAY, 1) == 0);
    v = get_int(t, IPPROTO_TCP, TCP_NODELAY);
    printf("  TCP_NODELAY after 1: %d\n", v);
    CHECK(v == 1);
    CHECK(set_int(t, SOL_SOCKET, SO_KEEPALIVE, 1) == 0 && get_int(t, SOL_SOCKET, SO_KEEPALIVE) == 1);
    v = get_int(t, IPPROTO_IP, IP_TTL);
    printf("  IP_TTL: %d\n", v);
    CHECK(v == 64);

    /* Kept in clock ticks: 1.5 s is a whole number of them for HZ 100,
     * 250 and 1000. */
    struct timeval tv = {.tv_sec = 1, .tv_usec = 500000}, got;
    socklen_t l = sizeof tv;
    CHECK(getsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &got, &l) == 0 && l == sizeof got && got.tv_sec == 0 && got.tv_usec == 0);
    CHECK(setsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    memset(&got, 0xff, sizeof got);
    l = sizeof got;
    CHECK(getsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &got, &l) == 0 && l == sizeof got);
    printf("  SO_RCVTIMEO after 1.5 s: %ld.%06ld\n", (long)got.tv_sec, (long)got.tv_usec);
    CHECK(got.tv_sec == 1 && got.tv_usec == 500000);
    CHECK_ERR(setsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &tv, 4), EINVAL);
    tv.tv_usec = 1000000;
    CHECK_ERR(setsockopt(t, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), EDOM);

    short shrt = 1;
    CHECK_ERR(setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &shrt, sizeof shrt), EINVAL);
    v = 1;
    CHECK_ERR(setsockopt(t, SOL_SOCKET, 9999, &v, sizeof v), ENOPROTOOPT);
    l = sizeof v;
    CHECK_ERR(getsockopt(t, SOL_SOCKET, 9999, &v, &l), ENOPROTOOPT);
    CHECK_ERR(setsockopt(t, IPPROTO_TCP, 9999, &v, sizeof v), ENOPROTOOPT);
    close(t);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    l = sizeof v;
    errno = 0;
    int r = getsockopt(u, IPPROTO_TCP, TCP_NODELAY, &v, &l);
    printf("  TCP_NODELAY on UDP: %d errno %d (%s)\n", r, errno, strerror(errno));
    CHECK(r == -1 && errno == EOPNOTSUPP);
    close(u);
}

static void timeouts(void) {
    group("SO_RCVTIMEO: blocking calls give EAGAIN");
    char buf[16];
    int u = bound_socket(SOCK_DGRAM, 0);
    CHECK(set_rcvtimeo(u, 200000) == 0);
    CHECK_ERR(recv(u, buf, sizeof buf, 0), EAGAIN);
    close(u);
    int c, s;
    CHECK(tcp_pair(&c, &s) == 0);
    CHECK(set_rcvtimeo(c, 200000) == 0);
    CHECK_ERR(read(c, buf, sizeof buf), EAGAIN);
    /* Data that arrives is read as usual. */
    CHECK(write(s, "late", 4) == 4);
    CHECK(recv(c, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "late", 4) == 0);
    close(c);
    close(s);
    int port, l = listener(&port);
    CHECK(set_rcvtimeo(l, 200000) == 0);
    CHECK_ERR(accept(l, NULL, NULL), EAGAIN);
    close(l);
}

static void reuse(void) {
    group("SO_REUSEADDR: rebinding a port in TIME_WAIT");
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(set_int(l, SOL_SOCKET, SO_REUSEADDR, 1) == 0);
    struct sockaddr_in a = lo(0);
    CHECK(bind(l, SA(a), sizeof a) == 0 && listen(l, 4) == 0);
    int port = local_port(l);
    a = lo(port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    close(s); /* the server closes first: its end waits in TIME_WAIT */
    char buf[4];
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);
    close(l);
    int n = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(bind(n, SA(a), sizeof a), EADDRINUSE);
    close(n);
    n = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(set_int(n, SOL_SOCKET, SO_REUSEADDR, 1) == 0);
    CHECK(bind(n, SA(a), sizeof a) == 0 && listen(n, 4) == 0);
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    s = accept(n, NULL, NULL);
    CHECK(s >= 0 && write(c, "ok", 2) == 2 && read_full(s, buf, 2) == 2);
    close(s);
    close(c);
    close(n);
}

/* The byte stream of the large transfer and its checksum (FNV-1a). */
static void fill(char *buf, size_t len, uint32_t *state) {
    for (size_t i = 0; i < len; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        buf[i] = (char)(*state >> 11);
    }
}

static uint64_t fnv(uint64_t h, const char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)buf[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_START 0xcbf29ce484222325ull

static void transfer(void) {
    group("tcp: 1 MiB between two processes");
    char *data = malloc(BIG), *got = malloc(BIG);
    CHECK(data != NULL && got != NULL);
    uint32_t state = 2463534242u;
    fill(data, BIG, &state);
    uint64_t expect = fnv(FNV_START, data, BIG);
    int port, l = listener(&port);
    CHECK(l >= 0);
    pid_t child = fork();
    if (child == 0) {
        /* The sender: odd-sized writes, then its checksum against the
         * receiver's. */
        alarm(60);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = lo(port);
        if (c < 0 || connect(c, SA(a), sizeof a) != 0)
            _exit(10);
        uint64_t sum = FNV_START;
        size_t off = 0, step = 7919;
        while (off < BIG) {
            size_t n = BIG - off < step ? BIG - off : step;
            if (write_full(c, data + off, n) != 0)
                _exit(11);
            sum = fnv(sum, data + off, n);
            off += n;
            step = step * 3 % 65521 + 1;
        }
        if (shutdown(c, SHUT_WR) != 0)
            _exit(12);
        uint64_t theirs = 0;
        if (read_full(c, (char *)&theirs, sizeof theirs) != sizeof theirs)
            _exit(13);
        _exit(theirs == sum ? 0 : 14);
    }
    CHECK(child > 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    size_t total = 0;
    for (;;) {
        ssize_t r = read(s, got + total, total < BIG ? BIG - total : 1);
        if (r <= 0) {
            CHECK(r == 0);
            break;
        }
        total += (size_t)r;
        if (total > BIG)
            break;
    }
    uint64_t sum = fnv(FNV_START, got, total < BIG ? total : BIG);
    printf("  received %zu bytes\n", total);
    CHECK(total == BIG);
    CHECK(sum == expect && memcmp(got, data, BIG) == 0);
    CHECK(write_full(s, (char *)&sum, sizeof sum) == 0);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        printf("# sender: status %#x\n", status);
    close(s);
    close(l);
    free(data);
    free(got);
}

/* ICMP echo ("ping") datagram sockets exist only for the groups in
 * net.ipv4.ping_group_range; where this one may not have one, it says so
 * and checks nothing. */
static void ping(void) {
    group("icmp: ping socket to 127.0.0.1");
    int p = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (p < 0) {
        printf("  ping socket: errno %d (%s), not checked\n", errno, strerror(errno));
        CHECK(errno == EACCES);
        return;
    }
    CHECK(get_int(p, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_ICMP);
    struct icmphdr h = {.type = ICMP_ECHO};
    h.un.echo.sequence = htons(7);
    char pkt[sizeof h + 8];
    memcpy(pkt, &h, sizeof h);
    memcpy(pkt + sizeof h, "tessera!", 8);
    struct sockaddr_in to = lo(0), from;
    CHECK(sendto(p, pkt, sizeof pkt, 0, SA(to), sizeof to) == (ssize_t)sizeof pkt);
    short ev = poll_one(p, POLLIN, WAIT_MS);
    CHECK(ev == POLLIN);
    if (ev != POLLIN) {
        printf("  no echo reply in %d ms (revents %#x)\n", WAIT_MS, ev);
        close(p);
        return;
    }
    char buf[128];
    socklen_t fl = sizeof from;
    ssize_t r = recvfrom(p, buf, sizeof buf, 0, SA(from), &fl);
    CHECK(r == (ssize_t)sizeof pkt && fl == sizeof from && ntohl(from.sin_addr.s_addr) == LOOPBACK);
    struct icmphdr reply;
    memcpy(&reply, buf, sizeof reply);
    CHECK(reply.type == ICMP_ECHOREPLY && ntohs(reply.un.echo.sequence) == 7 &&
          reply.un.echo.id == htons((uint16_t)local_port(p)));
    CHECK(memcmp(buf + sizeof h, "tessera!", 8) == 0);
    close(p);
}

/* Runs `call` in a child on `fd` (shared), and `shutdown(fd, how)` in
 * the parent once the child has had time to block: the child's exit
 * status is 0 when the call returned `want` with errno `want_errno`.
 * shutdown's own result and errno go to *sret and *serr. */
static int blocked_then_shut(int fd, int how, int (*call)(int), int want, int want_errno, int *sret, int *serr) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        errno = 0;
        int r = call(fd);
        _exit(r == want && (want >= 0 || errno == want_errno) ? 0 : 1);
    }
    usleep(200000);
    errno = 0;
    *sret = shutdown(fd, how);
    *serr = errno;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int recv_one(int fd) {
    char c;
    return (int)recv(fd, &c, 1, 0);
}

static int accept_one(int fd) { return accept(fd, NULL, NULL); }

static void shutdowns(void) {
    group("shutdown wakes blocked calls");
    int sret, serr;
    /* An unconnected UDP socket: ENOTCONN, but a blocked recv returns 0. */
    int u = bound_socket(SOCK_DGRAM, 0);
    CHECK(u >= 0);
    CHECK(blocked_then_shut(u, SHUT_RD, recv_one, 0, 0, &sret, &serr) == 0);
    CHECK(sret == -1 && serr == ENOTCONN);
    CHECK(recv_one(u) == 0); /* and later ones too */
    close(u);
    /* A listener shut for reading stops listening: a blocked accept
     * fails with EINVAL, connects are refused, and it can listen again. */
    int port;
    int l = listener(&port);
    CHECK(l >= 0);
    CHECK(blocked_then_shut(l, SHUT_RD, accept_one, -1, EINVAL, &sret, &serr) == 0);
    CHECK(sret == 0);
    CHECK_ERR(accept(l, NULL, NULL), EINVAL);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(port);
    CHECK_ERR(connect(c, SA(a), sizeof a), ECONNREFUSED);
    close(c);
    /* Listening again takes a port again (the ephemeral one was given
     * back, as Linux does for a port bind did not name). */
    CHECK(listen(l, 4) == 0);
    a = lo(local_port(l));
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    close(s);
    close(c);
    /* Shutting a listener for writing only changes nothing. */
    CHECK(shutdown(l, SHUT_WR) == 0);
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    close(s);
    close(c);
    close(l);
}

/* accept with no free descriptor fails with EMFILE and leaves the
 * connection queued for the next accept. */
static void accept_emfile(void) {
    group("accept at the descriptor limit");
    int port;
    int l = listener(&port);
    CHECK(l >= 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(port);
    CHECK(connect(c, SA(a), sizeof a) == 0);
    CHECK(write(c, "queued", 6) == 6);
    /* A limit just above the descriptors in use, then every free one
     * below it taken. */
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int fill[64], n = 0;
    low = old;
    low.rlim_cur = (rlim_t)(l > c ? l : c) + 4;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (;;) {
        int d = dup(0);
        if (d < 0)
            break;
        if (n < 64)
            fill[n++] = d;
    }
    CHECK_ERR(accept(l, NULL, NULL), EMFILE);
    close(fill[--n]);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    char buf[8] = {0};
    CHECK(s >= 0 && read_full(s, buf, 6) == 6 && memcmp(buf, "queued", 6) == 0);
    while (n > 0)
        close(fill[--n]);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    close(s);
    close(c);
    close(l);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, on_sigpipe);
    sockets();
    binds();
    tcp_basic();
    connects();
    closed_peers();
    udp();
    options();
    timeouts();
    reuse();
    transfer();
    ping();
    shutdowns();
    accept_emfile();
    alarm(0);
    return tt_done("inet");
}
