/* The vDSO as Linux gives it: AT_SYSINFO_EHDR points at an ELF image
 * mapped as [vdso] (with its data page [vvar]) that exports
 * __vdso_clock_gettime, __vdso_gettimeofday, __vdso_time and
 * __vdso_getcpu (version LINUX_2.6); its answers agree with the system
 * calls' (never behind a system call's earlier answer, never ahead of a
 * later one), and the C library's time calls use it: they work under a
 * seccomp filter that kills the process on those system calls. */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <elf.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uintptr_t base;
static const Elf64_Sym *symtab;
static const char *strtab;
static const Elf64_Word *hash;
static const Elf64_Half *versym;
static const Elf64_Verdef *verdef;
static uintptr_t bias;

/* Finds the vDSO's dynamic tables (as a dynamic linker does). */
static int parse_vdso(void) {
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_type != ET_DYN) return 0;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    const Elf64_Dyn *dyn = NULL;
    int loads = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && loads++ == 0) bias = base + ph[i].p_offset - ph[i].p_vaddr;
        if (ph[i].p_type == PT_DYNAMIC) dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
    }
    if (!dyn || !loads) return 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t at = bias + dyn->d_un.d_ptr;
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const Elf64_Sym *)at; break;
        case DT_STRTAB: strtab = (const char *)at; break;
        case DT_HASH: hash = (const Elf64_Word *)at; break;
        case DT_VERSYM: versym = (const Elf64_Half *)at; break;
        case DT_VERDEF: verdef = (const Elf64_Verdef *)at; break;
        }
    }
    return symtab && strtab && hash && versym && verdef;
}

/* The version name of symbol `i`. */
static const char *version_of(unsigned i) {
    unsigned want = versym[i] & 0x7fff;
    for (const Elf64_Verdef *d = verdef;; d = (const Elf64_Verdef *)((const char *)d + d->vd_next)) {
        if (d->vd_ndx == want) {
            const Elf64_Verdaux *aux = (const Elf64_Verdaux *)((const char *)d + d->vd_aux);
            return strtab + aux->vda_name;
        }
        if (!d->vd_next) return "";
    }
}

static void *lookup(const char *name) {
    unsigned nchain = hash[1];
    for (unsigned i = 1; i < nchain; i++) {
        const Elf64_Sym *s = &symtab[i];
        if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF) continue;
        if (strcmp(strtab + s->st_name, name) == 0 && strcmp(version_of(i), "LINUX_2.6") == 0) return (void *)(bias + s->st_value);
    }
    return NULL;
}

static long long ns_of(const struct timespec *t) { return t->tv_sec * 1000000000LL + t->tv_nsec; }

static int raw_clock(int clock, struct timespec *t) { return (int)syscall(SYS_clock_gettime, clock, t); }

static void check_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    if (!f) return;
    char line[512];
    int vdso = 0, vvar = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3) continue;
        if (strstr(line, "[vdso]")) vdso = start == base && strcmp(perms, "r-xp") == 0;
        if (strstr(line, "[vvar]")) vvar = perms[0] == 'r' && perms[1] == '-';
    }
    fclose(f);
    CHECK(vdso);
    CHECK(vvar);
}

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef int (*getcpu_fn)(unsigned *, unsigned *, void *);

static void check_agreement(void) {
    clock_gettime_fn vclock = (clock_gettime_fn)lookup("__vdso_clock_gettime");
    gettimeofday_fn vtod = (gettimeofday_fn)lookup("__vdso_gettimeofday");
    time_fn vtime = (time_fn)lookup("__vdso_time");
    getcpu_fn vcpu = (getcpu_fn)lookup("__vdso_getcpu");
    CHECK(vclock && vtod && vtime && vcpu);
    if (!vclock || !vtod || !vtime || !vcpu) return;
    /* Monotonic clocks: vDSO and system call answers interleaved never go
     * back; the realtime clock neither (nobody sets it meanwhile). */
    int clocks[] = {CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW, CLOCK_REALTIME};
    for (unsigned c = 0; c < sizeof clocks / sizeof clocks[0]; c++) {
        struct timespec t;
        long long last = 0;
        int ordered = 1, ok = 1;
        for (int i = 0; i < 2000; i++) {
            int r = (i & 1) ? raw_clock(clocks[c], &t) : vclock(clocks[c], &t);
            ok &= r == 0 && t.tv_nsec >= 0 && t.tv_nsec < 1000000000;
            ordered &= ns_of(&t) >= last;
            last = ns_of(&t);
        }
        CHECK(ok);
        CHECK(ordered);
    }
    /* Coarse clocks tick at most as fast as the fine ones (Linux: a tick
     * behind at most). */
    struct timespec coarse, fine;
    CHECK(vclock(CLOCK_MONOTONIC_COARSE, &coarse) == 0 && raw_clock(CLOCK_MONOTONIC, &fine) == 0);
    CHECK(ns_of(&coarse) <= ns_of(&fine));
    /* gettimeofday and time against the realtime system call. */
    struct timespec before, after;
    struct timeval tv;
    raw_clock(CLOCK_REALTIME, &before);
    CHECK(vtod(&tv, NULL) == 0);
    raw_clock(CLOCK_REALTIME, &after);
    long long us = tv.tv_sec * 1000000LL + tv.tv_usec;
    CHECK(us >= ns_of(&before) / 1000 && us <= ns_of(&after) / 1000);
    CHECK(vtod(NULL, NULL) == 0);
    /* time() follows the coarse wall clock on Linux (the seconds of the
     * last tick), which may still be in the previous second when the fine
     * clock has moved on: bracket it with that clock. */
    time_t stored = 0;
    raw_clock(CLOCK_REALTIME_COARSE, &before);
    time_t now = vtime(&stored);
    raw_clock(CLOCK_REALTIME_COARSE, &after);
    CHECK(now == stored && now >= before.tv_sec && now <= after.tv_sec);
    CHECK(vtime(NULL) >= now);
    /* Clocks the vDSO does not serve go to the system call: a CPU-time
     * clock works, an unknown one is EINVAL. */
    struct timespec cpu;
    CHECK(vclock(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0 && ns_of(&cpu) > 0);
    CHECK(vclock(99, &cpu) == -EINVAL);
    /* getcpu: the processor this thread is pinned to. */
    unsigned here = 0, node = 99;
    CHECK(syscall(SYS_getcpu, &here, NULL, NULL) == 0);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(here, &set);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
    unsigned got = 12345;
    CHECK(vcpu(&got, &node, NULL) == 0 && got == here && node == 0);
    CPU_ZERO(&set);
    for (int i = 0; i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* The C library's time calls do not enter the kernel: a filter that
 * kills the process on those system calls does not stop them. */
struct insn { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct prog { unsigned short len; struct insn *filter; };

static void check_no_system_calls(void) {
    pid_t child = fork();
    if (child == 0) {
        struct insn filter[] = {
            {0x20, 0, 0, 0},                                   /* load nr */
            {0x15, 0, 1, SYS_clock_gettime}, {0x06, 0, 0, 0x80000000u},
            {0x15, 0, 1, SYS_gettimeofday}, {0x06, 0, 0, 0x80000000u},
            {0x15, 0, 1, SYS_time}, {0x06, 0, 0, 0x80000000u},
            {0x06, 0, 0, 0x7fff0000u},                         /* allow */
        };
        struct prog p = {sizeof filter / sizeof filter[0], filter};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, 1, 0, &p) != 0) _exit(2);
        struct timespec t;
        struct timeval tv;
        long long sum = 0;
        for (int i = 0; i < 100; i++) {
            if (clock_gettime(CLOCK_MONOTONIC, &t) != 0 || clock_gettime(CLOCK_REALTIME, &t) != 0) _exit(3);
            if (gettimeofday(&tv, NULL) != 0) _exit(4);
            sum += time(NULL) > 0;
        }
        _exit(sum == 100 ? 0 : 5);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("child status %#x\n", status);
}

int main(void) {
    base = getauxval(AT_SYSINFO_EHDR);
    CHECK(base != 0);
    if (!base) return tt_done("vdso");
    CHECK(parse_vdso());
    check_maps();
    if (symtab) check_agreement();
    check_no_system_calls();
    /* A child made by fork has it at the same place. */
    pid_t child = fork();
    if (child == 0) {
        struct timespec t;
        _exit(getauxval(AT_SYSINFO_EHDR) == base && clock_gettime(CLOCK_MONOTONIC, &t) == 0 ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return tt_done("vdso");
}
