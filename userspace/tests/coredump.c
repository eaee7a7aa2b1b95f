/* Core dumps as Linux makes them with core_pattern "core": with
 * RLIMIT_CORE allowing it, a signal whose default action dumps core
 * leaves an ELF core file ("core", mode 0600, in the working directory)
 * holding the registers and the memory, and the wait status carries the
 * core-dump bit; no file and no bit without the limit, for a process made
 * undumpable, or for a signal that only terminates. The file checks run
 * only where core_pattern is "core" (the kernel's default). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char MARKER[] = "tessera-core-marker-5f3a";

static int plain_pattern(void) {
    char text[64] = {0};
    int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    return n >= 4 && strncmp(text, "core\n", 5) == 0;
}

/* Runs `how` in a child with RLIMIT_CORE `limit`; returns the status. */
static int child_status(rlim_t limit, int how) {
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {limit, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &rl);
        /* Something to find in the dump. */
        char *heap = malloc(4096);
        strcpy(heap, MARKER);
        __asm__ volatile("" : : "r"(heap) : "memory");
        switch (how) {
        case 0: abort();
        case 1: kill(getpid(), SIGQUIT); break;
        case 2: kill(getpid(), SIGTERM); break;
        case 3: prctl(PR_SET_DUMPABLE, 0); abort();
        case 4: { volatile int *volatile bad = (volatile int *)8; *bad = 1; break; } /* SIGSEGV */
        }
        _exit(99);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    return status;
}

/* The core file: an x86-64 ELF core with the signal in NT_PRSTATUS and
 * the marker among its bytes. */
static void check_core_file(int sig) {
    struct stat st;
    CHECK(stat("core", &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600 && st.st_size > 4096);
    int fd = open("core", O_RDONLY);
    CHECK(fd >= 0);
    if (fd < 0) return;
    size_t size = (size_t)st.st_size;
    char *data = malloc(size);
    CHECK(data && read(fd, data, size) == (ssize_t)size);
    close(fd);
    if (!data) return;
    Elf64_Ehdr *eh = (Elf64_Ehdr *)data;
    CHECK(memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64);
    CHECK(eh->e_type == ET_CORE && eh->e_machine == EM_X86_64 && eh->e_phnum > 1);
    int found_note = 0, loads = 0;
    for (int i = 0; i < eh->e_phnum && eh->e_phoff + (i + 1) * sizeof(Elf64_Phdr) <= size; i++) {
        Elf64_Phdr *ph = (Elf64_Phdr *)(data + eh->e_phoff + i * sizeof(Elf64_Phdr));
        if (ph->p_type == PT_LOAD) loads++;
        if (ph->p_type != PT_NOTE || ph->p_offset + ph->p_filesz > size) continue;
        for (size_t at = ph->p_offset; at + 12 <= ph->p_offset + ph->p_filesz;) {
            Elf64_Nhdr *nh = (Elf64_Nhdr *)(data + at);
            size_t desc = at + 12 + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_PRSTATUS && desc + 4 <= size && *(int *)(data + desc) == sig) found_note = 1;
            at = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    CHECK(found_note);
    CHECK(loads > 0);
    CHECK(memmem(data, size, MARKER, sizeof MARKER - 1) != NULL);
    free(data);
}

int main(void) {
    char dir[] = "/tmp/coredump-XXXXXX";
    CHECK(mkdtemp(dir) != NULL && chdir(dir) == 0);
    int files = plain_pattern();
    /* No core limit: no core, no bit. */
    int status = child_status(0, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && !WCOREDUMP(status));
    CHECK(access("core", F_OK) != 0);
    /* abort() with room: a core, and the bit. */
    status = child_status(RLIM_INFINITY, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && WCOREDUMP(status));
    if (files) check_core_file(SIGABRT);
    unlink("core");
    /* SIGQUIT and SIGSEGV dump; SIGTERM does not. */
    status = child_status(RLIM_INFINITY, 1);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGQUIT && WCOREDUMP(status));
    if (files) check_core_file(SIGQUIT);
    unlink("core");
    status = child_status(RLIM_INFINITY, 4);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && WCOREDUMP(status));
    unlink("core");
    status = child_status(RLIM_INFINITY, 2);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM && !WCOREDUMP(status));
    CHECK(access("core", F_OK) != 0);
    /* Not dumpable: no core. */
    status = child_status(RLIM_INFINITY, 3);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && !WCOREDUMP(status));
    CHECK(access("core", F_OK) != 0);
    /* waitid reports CLD_DUMPED. */
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &rl);
        abort();
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    CHECK(waitid(P_PID, pid, &info, WEXITED) == 0 && info.si_code == CLD_DUMPED && info.si_status == SIGABRT);
    unlink("core");

    /* MADV_DONTDUMP leaves memory out; coredump_filter reads 0x33. */
    FILE *f = fopen("/proc/self/coredump_filter", "r");
    unsigned filter = 0;
    CHECK(f && fscanf(f, "%x", &filter) == 1 && filter == 0x33);
    if (f) fclose(f);
    pid = fork();
    if (pid == 0) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &rl);
        char *hidden = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        strcpy(hidden, "tessera-hidden-marker-77");
        madvise(hidden, 8192, MADV_DONTDUMP);
        abort();
    }
    int hidden_status = -1;
    CHECK(waitpid(pid, &hidden_status, 0) == pid && WCOREDUMP(hidden_status));
    if (files) {
        int fd = open("core", O_RDONLY);
        struct stat st;
        CHECK(fd >= 0 && fstat(fd, &st) == 0);
        char *data = malloc(st.st_size);
        CHECK(data && read(fd, data, st.st_size) == st.st_size);
        CHECK(data && memmem(data, st.st_size, "tessera-hidden-marker-77", 24) == NULL);
        free(data);
        close(fd);
    }
    unlink("core");

    /* core_pattern with %p, where it may be changed (root, not a container). */
    char saved[256] = {0};
    int pf = open("/proc/sys/kernel/core_pattern", O_RDONLY);
    ssize_t n = pf >= 0 ? read(pf, saved, sizeof saved - 1) : -1;
    if (pf >= 0) close(pf);
    pf = open("/proc/sys/kernel/core_pattern", O_WRONLY | O_TRUNC);
    if (files && n > 0 && pf >= 0 && write(pf, "dump-%p", 7) == 7) {
        close(pf);
        pid = fork();
        if (pid == 0) {
            struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
            setrlimit(RLIMIT_CORE, &rl);
            abort();
        }
        CHECK(waitpid(pid, &status, 0) == pid && WCOREDUMP(status));
        char name[64];
        snprintf(name, sizeof name, "dump-%d", pid);
        CHECK(access(name, F_OK) == 0);
        unlink(name);
        pf = open("/proc/sys/kernel/core_pattern", O_WRONLY | O_TRUNC);
        CHECK(pf >= 0 && write(pf, saved, n) == n);
    }
    if (pf >= 0) close(pf);
    CHECK(chdir("/") == 0 && rmdir(dir) == 0);
    return tt_done("coredump");
}
