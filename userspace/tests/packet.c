/* Packet sockets (AF_PACKET) and socket errors that need no network:
 * the type and flag checks of socket(2), bind and sendto address checks,
 * EAGAIN on an empty socket, the operations packet sockets lack, and the
 * errors for descriptors that are not sockets. Runs as root (CAP_NET_RAW). */
#define _GNU_SOURCE
#include "tessera_test.h"

#include <arpa/inet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    CHECK_ERR(socket(AF_PACKET, SOCK_STREAM, 0), ESOCKTNOSUPPORT);
    CHECK_ERR(socket(AF_PACKET, SOCK_SEQPACKET, 0), ESOCKTNOSUPPORT);
    CHECK_ERR(socket(AF_PACKET, SOCK_DGRAM | 0x100, 0), EINVAL);
    CHECK_ERR(socket(99, SOCK_DGRAM, 0), EAFNOSUPPORT);
    int s = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
    CHECK(s >= 0);

    struct sockaddr_ll a = {.sll_family = AF_PACKET};
    CHECK_ERR(bind(s, (struct sockaddr *)&a, 10), EINVAL);
    a.sll_family = AF_INET;
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EINVAL);
    a.sll_family = AF_PACKET;
    a.sll_ifindex = 9999;
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), ENODEV);

    char buf[64] = {0};
    /* Unbound, no address: no interface to send on. */
    CHECK_ERR(send(s, buf, 20, 0), ENXIO);
    CHECK_ERR(sendto(s, buf, 20, 0, (struct sockaddr *)&a, 5), EINVAL);
    CHECK_ERR(sendto(s, buf, 20, 0, (struct sockaddr *)&a, sizeof a), ENXIO);
    CHECK_ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    int v = 0;
    socklen_t l = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_DGRAM && l == sizeof v);
    struct sockaddr_ll name;
    l = sizeof name;
    CHECK(getsockname(s, (struct sockaddr *)&name, &l) == 0);
    CHECK(l == 12 && name.sll_family == AF_PACKET && ntohs(name.sll_protocol) == ETH_P_ARP && name.sll_halen == 0);

    CHECK_ERR(connect(s, (struct sockaddr *)&a, sizeof a), EOPNOTSUPP);
    CHECK_ERR(listen(s, 1), EOPNOTSUPP);
    CHECK_ERR(accept(s, NULL, NULL), EOPNOTSUPP);
    CHECK_ERR(shutdown(s, SHUT_RDWR), EOPNOTSUPP);
    l = sizeof name;
    CHECK_ERR(getpeername(s, (struct sockaddr *)&name, &l), EOPNOTSUPP);
    int sv[2];
    CHECK_ERR(socketpair(AF_PACKET, SOCK_DGRAM, 0, sv), EOPNOTSUPP);

    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "nosuch0");
    CHECK_ERR(ioctl(s, SIOCGIFINDEX, &ifr), ENODEV);
    ifr.ifr_ifindex = 9999;
    CHECK_ERR(ioctl(s, SIOCGIFNAME, &ifr), ENODEV);

    int pfd[2];
    CHECK(pipe(pfd) == 0);
    CHECK_ERR(bind(pfd[0], (struct sockaddr *)&a, sizeof a), ENOTSOCK);
    CHECK_ERR(recv(pfd[0], buf, 1, MSG_DONTWAIT), ENOTSOCK);
    CHECK_ERR(bind(99, (struct sockaddr *)&a, sizeof a), EBADF);
    close(s);
    return tt_done("packet");
}
