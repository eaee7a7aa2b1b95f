/* Linux native AIO through the raw system calls (as libaio makes them):
 * io_setup/io_destroy, io_submit of reads, writes, vectored I/O and
 * fsync, io_getevents with minimum counts and time-outs, eventfd
 * notification, and the errors LTP's io_* tests expect. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long aio_context_t;

struct iocb {
    uint64_t aio_data;
    uint32_t aio_key, aio_rw_flags;
    uint16_t aio_lio_opcode;
    int16_t aio_reqprio;
    uint32_t aio_fildes;
    uint64_t aio_buf, aio_nbytes;
    int64_t aio_offset;
    uint64_t aio_reserved2;
    uint32_t aio_flags, aio_resfd;
};

struct io_event {
    uint64_t data, obj;
    int64_t res, res2;
};

enum { PREAD = 0, PWRITE = 1, FSYNC = 2, PREADV = 7, PWRITEV = 8 };

static long io_setup(unsigned n, aio_context_t *ctx) { return syscall(SYS_io_setup, n, ctx); }
static long io_destroy(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long io_submit(aio_context_t ctx, long n, struct iocb **list) { return syscall(SYS_io_submit, ctx, n, list); }
static long io_getevents(aio_context_t ctx, long min, long n, struct io_event *ev, struct timespec *to) {
    return syscall(SYS_io_getevents, ctx, min, n, ev, to);
}

static struct iocb prep(int fd, int op, void *buf, size_t n, long long off, uint64_t data) {
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_fildes = fd;
    cb.aio_lio_opcode = op;
    cb.aio_buf = (uintptr_t)buf;
    cb.aio_nbytes = n;
    cb.aio_offset = off;
    cb.aio_data = data;
    return cb;
}

int main(void) {
    char name[] = "/tmp/aio.XXXXXX";
    int fd = mkstemp(name);
    CHECK(fd >= 0);
    aio_context_t ctx = 0;
    CHECK(io_setup(8, &ctx) == 0 && ctx != 0);
    /* The context id is a readable address (libaio peeks at it). */
    CHECK(((volatile uint32_t *)ctx)[1] == 8 || ((volatile uint32_t *)ctx)[1] > 0);

    /* Two writes and a read of what the first wrote. */
    char out1[] = "hello, ", out2[] = "aio!";
    struct iocb w1 = prep(fd, PWRITE, out1, 7, 0, 11), w2 = prep(fd, PWRITE, out2, 4, 7, 22);
    struct iocb *list[2] = {&w1, &w2};
    CHECK(io_submit(ctx, 2, list) == 2);
    struct io_event ev[8];
    memset(ev, 0, sizeof ev);
    CHECK(io_getevents(ctx, 2, 8, ev, NULL) == 2);
    CHECK(ev[0].data == 11 && ev[0].obj == (uintptr_t)&w1 && ev[0].res == 7);
    CHECK(ev[1].data == 22 && ev[1].res == 4);
    char in[16] = {0};
    struct iocb r = prep(fd, PREAD, in, sizeof in, 0, 33);
    struct iocb *one[1] = {&r};
    CHECK(io_submit(ctx, 1, one) == 1);
    CHECK(io_getevents(ctx, 1, 1, ev, NULL) == 1 && ev[0].res == 11 && memcmp(in, "hello, aio!", 11) == 0);

    /* Vectored, fsync, and an eventfd told of each completion. */
    int efd = eventfd(0, 0);
    char x[3], y[4];
    struct iovec iov[2] = {{x, 3}, {y, 4}};
    struct iocb rv = prep(fd, PREADV, iov, 2, 4, 44);
    rv.aio_flags = 1; /* IOCB_FLAG_RESFD */
    rv.aio_resfd = efd;
    struct iocb fs = prep(fd, FSYNC, NULL, 0, 0, 55);
    struct iocb *both[2] = {&rv, &fs};
    CHECK(io_submit(ctx, 2, both) == 2);
    uint64_t count = 0;
    CHECK(read(efd, &count, 8) == 8 && count == 1);
    CHECK(io_getevents(ctx, 2, 2, ev, NULL) == 2 && ev[0].res == 7 && memcmp(x, "o, ", 3) == 0 && memcmp(y, "aio!", 4) == 0 && ev[1].res == 0);

    /* A failed request still completes, with -errno as its result. */
    int rdonly = open(name, O_RDONLY);
    struct iocb bad_off = prep(fd, PREAD, in, 4, 0, 66);
    bad_off.aio_buf = 8; /* an unmapped buffer */
    struct iocb *b1[1] = {&bad_off};
    CHECK(io_submit(ctx, 1, b1) == 1);
    CHECK(io_getevents(ctx, 1, 1, ev, NULL) == 1 && ev[0].res == -EFAULT);

    /* Nothing more comes: a time-out ends the wait with what there is. */
    struct timespec to = {0, 20000000};
    CHECK(io_getevents(ctx, 1, 4, ev, &to) == 0);

    /* Errors. */
    CHECK_ERR(io_getevents(ctx, 2, 1, ev, NULL), EINVAL); /* min > nr */
    CHECK_ERR(io_getevents(0, 0, 0, NULL, NULL), EINVAL);
    struct iocb w_ro = prep(rdonly, PWRITE, out1, 7, 0, 0);
    struct iocb *b2[1] = {&w_ro};
    CHECK_ERR(io_submit(ctx, 1, b2), EBADF);
    struct iocb badfd = prep(-1, PREAD, in, 4, 0, 0);
    struct iocb *b3[1] = {&badfd};
    CHECK_ERR(io_submit(ctx, 1, b3), EBADF);
    struct iocb *null_entry[1] = {NULL};
    CHECK_ERR(io_submit(ctx, 1, null_entry), EFAULT);
    CHECK_ERR(io_submit(ctx, -1, list), EINVAL);
    CHECK_ERR(io_submit(ctx + 4096, 1, list), EINVAL);
    struct iocb badop = prep(fd, 99, in, 4, 0, 0);
    struct iocb *b4[1] = {&badop};
    CHECK_ERR(io_submit(ctx, 1, b4), EINVAL);
    CHECK_ERR(syscall(SYS_io_cancel, 0, NULL, NULL), EFAULT);
    aio_context_t other = 1;
    CHECK_ERR(io_setup(1, &other), EINVAL); /* *ctxp must be 0 */
    other = 0;
    CHECK_ERR(io_setup(0, &other), EINVAL);
    CHECK_ERR(io_setup(1, NULL), EFAULT);
    unsigned max = 0;
    FILE *f = fopen("/proc/sys/fs/aio-max-nr", "r");
    CHECK(f && fscanf(f, "%u", &max) == 1 && max > 0);
    if (f) fclose(f);
    CHECK_ERR(io_setup(max + 1, &other), EAGAIN);
    CHECK(io_destroy(ctx) == 0);
    CHECK_ERR(io_destroy(ctx), EINVAL);
    CHECK_ERR(io_destroy(~0ul), EINVAL);
    close(rdonly);
    close(efd);
    close(fd);
    unlink(name);
    return tt_done("aio");
}
