/* A tiny test harness for Tessera's user test programs.
 *
 * Each program checks real Linux behaviour with CHECK(...) and ends with
 * `return tt_done("name");`, which prints "name: N passed, N failed" and
 * exits non-zero on failure. The same binaries run on the Linux host
 * (`make userspace-host-check`) and under Tessera, so the expectations are
 * Linux's, not ours. */
#ifndef TESSERA_TEST_H
#define TESSERA_TEST_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int tt_passed, tt_failed;

/* Line-buffered output, so that a fork never duplicates pending text and a
 * crash loses at most one line. */
__attribute__((constructor)) static void tt_init(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            tt_passed++;                                                               \
        } else {                                                                       \
            tt_failed++;                                                               \
            printf("not ok - %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond,    \
                   errno, strerror(errno));                                            \
        }                                                                              \
    } while (0)

/* A syscall that must fail with `err`. */
#define CHECK_ERR(call, err)                                                           \
    do {                                                                               \
        errno = 0;                                                                     \
        long tt_r = (long)(call);                                                      \
        CHECK(tt_r == -1 && errno == (err));                                           \
    } while (0)

static int tt_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, tt_passed, tt_failed);
    fflush(stdout);
    return tt_failed ? 1 : 0;
}

#endif
