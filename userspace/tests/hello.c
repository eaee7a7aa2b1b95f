/* The first program: startup of a static glibc binary (auxv, TLS, brk),
 * console output, exit status. */
#include "tessera_test.h"

#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

static __thread int tls_counter = 41;

int main(int argc, char **argv, char **envp) {
    printf("hello from %s\n", argc > 0 ? argv[0] : "(no argv)");
    CHECK(argc >= 1);
    CHECK(argv[argc] == NULL);
    CHECK(envp != NULL);
    CHECK(getauxval(AT_PAGESZ) == 4096);
    CHECK(getauxval(AT_RANDOM) != 0);
    CHECK(getauxval(AT_PHDR) != 0);
    CHECK(getauxval(AT_ENTRY) != 0);
    tls_counter++;
    CHECK(tls_counter == 42);
    char *block = malloc(100000); /* brk or mmap */
    CHECK(block != NULL);
    if (block) {
        memset(block, 0xab, 100000);
        CHECK(block[99999] == (char)0xab);
        free(block);
    }
    CHECK(write(1, "raw write\n", 10) == 10);
    return tt_done("hello");
}
