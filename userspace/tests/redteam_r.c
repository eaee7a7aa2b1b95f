/* Red-team checks of the system-call fast path (Linux is the yardstick):
 * - FS/GS bases: a process that loads null selectors into %fs/%gs (which
 *   changes its own bases) shares a CPU with one that checks its bases
 *   after every switch;
 * - a pipe or socket read into a buffer larger than the data, whose tail
 *   runs into an unmapped page, gives the data (Linux copies only what it
 *   has);
 * - SIGSTOP/SIGCONT of a process whose threads spin in system calls;
 *   exit_group from one thread while others spin in system calls;
 * - exec of hand-made ELF files whose program headers / PT_INTERP lie past
 *   the first 4 KiB, and of one whose e_phoff points past its end. */
#define _GNU_SOURCE
#include "tessera_test.h"
#ifndef ARCH_SET_GS
#define ARCH_SET_GS 0x1001
#endif
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin0(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static long raw1(long nr, long a) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"(nr), "D"(a) : "rcx", "r11", "memory");
    return r;
}

/* ---- FS/GS bases ---- */
static uint64_t gs_word = 0x1122334455667788ull;

static void fsgs(void) {
    pin0();
    pid_t child = fork();
    if (child == 0) {
        pin0();
        /* From here on no TLS and no libc: raw system calls only. */
        for (long i = 0; i < 20000; i++) {
            __asm__ volatile("xorl %%eax, %%eax\n\tmovw %%ax, %%fs\n\tmovw %%ax, %%gs" ::: "rax");
            raw1(SYS_sched_yield, 0);
        }
        raw1(SYS_exit_group, 0);
    }
    uint64_t tcb;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(tcb));
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)&gs_word) == 0);
    int bad_fs = 0, bad_gs = 0;
    for (int i = 0; i < 20000; i++) {
        sched_yield();
        uint64_t f, g;
        __asm__ volatile("movq %%fs:0, %0" : "=r"(f));
        __asm__ volatile("movq %%gs:0, %0" : "=r"(g));
        bad_fs += f != tcb;
        bad_gs += g != gs_word;
    }
    CHECK(bad_fs == 0);
    CHECK(bad_gs == 0);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- reads into a buffer whose tail is unmapped ---- */
static void short_buffer(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(map + page, page);
    char *buf = map + page - 100; /* 100 bytes mapped, then a hole */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "hello", 5) == 5);
    ssize_t n = read(p[0], buf, 4096);
    CHECK(n == 5);
    CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
    int s[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    CHECK(write(s[1], "world", 5) == 5);
    n = read(s[0], buf, 4096);
    CHECK(n == 5);
    close(p[0]), close(p[1]), close(s[0]), close(s[1]);
    munmap(map, page);
}

/* ---- the write probe of pipe reads never changes a word ---- */
static volatile unsigned *probe_word;
static volatile int probe_done, probe_go;

static void *bump(void *arg) {
    long n = (long)arg;
    /* Starts once the main thread's reads have begun: however the two
       are scheduled, some reads probe the page while it counts. */
    while (!probe_go)
        ;
    for (long i = 0; i < n; i++)
        *probe_word = *probe_word + 1; /* not atomic: a racing store would lose counts */
    probe_done = 1;
    return NULL;
}

static void probe(void) {
    long page = sysconf(_SC_PAGESIZE);
    char *buf = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    probe_word = (volatile unsigned *)(buf + page);
    *probe_word = 0;
    int p[2];
    CHECK(pipe(p) == 0);
    const long n = 300000;
    pthread_t t;
    probe_done = 0;
    probe_go = 0;
    pthread_create(&t, NULL, bump, (void *)n);
    long reads = 0;
    while (!probe_done) {
        char c = 'p';
        if (write(p[1], &c, 1) != 1 || read(p[0], buf, 2 * page) != 1)
            break;
        reads++;
        probe_go = 1;
    }
    probe_go = 1; /* a failed write or read ends the loop: let it finish */
    pthread_join(t, NULL);
    CHECK(*probe_word == (unsigned)n);
    CHECK(reads > 0);
    close(p[0]), close(p[1]);
    munmap(buf, 3 * page);
}

/* ---- job control of threads in a system-call loop ---- */
struct shared {
    volatile long count[4];
};

static struct shared *sh;

static void *spin(void *arg) {
    long i = (long)arg;
    for (;;) {
        syscall(SYS_getppid);
        sh->count[i]++;
    }
    return NULL;
}

static void *spin_then_exit(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++)
        syscall(SYS_getppid);
    syscall(SYS_exit_group, 7);
    return NULL;
}

static long total(void) {
    long t = 0;
    for (int i = 0; i < 4; i++)
        t += sh->count[i];
    return t;
}

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void stopcont(void) {
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int round = 0; round < 2; round++) {
        memset((void *)sh, 0, sizeof *sh);
        pid_t child = fork();
        if (child == 0) {
            pthread_t t;
            for (long i = 1; i < 4; i++)
                pthread_create(&t, NULL, spin, (void *)i);
            spin((void *)0);
        }
        for (int i = 0; i < 100 && !(sh->count[0] && sh->count[1] && sh->count[2] && sh->count[3]); i++)
            nap(20); /* every thread running */
        CHECK(kill(child, SIGSTOP) == 0);
        int status;
        CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status));
        nap(30);
        long a = total();
        nap(200);
        long b = total();
        CHECK(a == b); /* stopped: no thread runs */
        for (int i = 0; i < 4; i++)
            CHECK(sh->count[i] > 0);
        CHECK(kill(child, SIGCONT) == 0);
        nap(100);
        CHECK(total() > b);
        CHECK(kill(child, SIGKILL) == 0);
        CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    /* exit_group while the other threads spin in system calls. */
    for (int round = 0; round < 5; round++) {
        pid_t child = fork();
        if (child == 0) {
            alarm(10);
            pthread_t t;
            for (long i = 0; i < 3; i++)
                pthread_create(&t, NULL, spin, (void *)i);
            pthread_create(&t, NULL, spin_then_exit, NULL);
            for (;;)
                syscall(SYS_getppid);
        }
        int status;
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 7);
    }
}

/* ---- exec of ELF files with headers past 4 KiB ---- */
static const unsigned char exit_code[] = {
    0xb8, 0x3c, 0x00, 0x00, 0x00, /* mov $60, %eax */
    0xbf, 0x2a, 0x00, 0x00, 0x00, /* mov $42, %edi */
    0x0f, 0x05,                   /* syscall */
};

/* A static ET_EXEC at 0x400000 with its code at 0x100 and its program
 * headers at `phoff`; the one PT_LOAD maps the whole file. */
static unsigned char *elf_bytes(uint64_t phoff, uint64_t size, int with_interp, uint64_t interp_off,
                                const char *interp, int type, unsigned char code_exit) {
    unsigned char *file = calloc(1, size);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)file;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = type;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    uint64_t base = type == ET_DYN ? 0 : 0x400000;
    eh->e_entry = base + 0x100;
    eh->e_phoff = phoff;
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = with_interp ? 2 : 1;
    memcpy(file + 0x100, exit_code, sizeof exit_code);
    file[0x100 + 6] = code_exit;
    Elf64_Phdr ph[2] = {0};
    ph[0].p_type = PT_LOAD;
    ph[0].p_flags = PF_R | PF_X;
    ph[0].p_offset = 0;
    ph[0].p_vaddr = ph[0].p_paddr = base;
    ph[0].p_filesz = ph[0].p_memsz = size;
    ph[0].p_align = 4096;
    if (with_interp) {
        ph[1] = ph[0];
        ph[0].p_type = PT_INTERP;
        ph[0].p_flags = PF_R;
        ph[0].p_offset = interp_off;
        ph[0].p_vaddr = ph[0].p_paddr = base + interp_off;
        ph[0].p_filesz = ph[0].p_memsz = strlen(interp) + 1;
        ph[0].p_align = 1;
        memcpy(file + interp_off, interp, strlen(interp) + 1);
    }
    if (phoff + sizeof ph <= size)
        memcpy(file + phoff, ph, eh->e_phnum * sizeof(Elf64_Phdr));
    return file;
}

static int make_elf(const char *path, uint64_t phoff, uint64_t size, int with_interp, uint64_t interp_off,
                    const char *interp, int type, unsigned char code_exit) {
    unsigned char *file = elf_bytes(phoff, size, with_interp, interp_off, interp, type, code_exit);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    ssize_t w = write(fd, file, size);
    close(fd);
    free(file);
    return w == (ssize_t)size ? 0 : -1;
}

static int run(const char *path) {
    pid_t child = fork();
    if (child == 0) {
        char *argv[] = {(char *)path, NULL};
        execve(path, argv, NULL);
        _exit(100 + errno);
    }
    int status;
    if (waitpid(child, &status, 0) != child)
        return -1;
    if (WIFSIGNALED(status))
        return 1000 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static void exec_heads(void) {
    CHECK(make_elf("/tmp/rt-near", 0x40, 0x2000, 0, 0, NULL, ET_EXEC, 42) == 0);
    CHECK(run("/tmp/rt-near") == 42);
    CHECK(make_elf("/tmp/rt-far", 0x1ff0, 0x3000, 0, 0, NULL, ET_EXEC, 42) == 0); /* straddles 8 KiB, past 4 KiB */
    CHECK(run("/tmp/rt-far") == 42);
    CHECK(make_elf("/tmp/rt-farther", 0x9000, 0xa000, 0, 0, NULL, ET_EXEC, 42) == 0);
    CHECK(run("/tmp/rt-farther") == 42);
    /* e_phoff past the end of the file: ENOEXEC. */
    CHECK(make_elf("/tmp/rt-past", 0x100000, 0x2000, 0, 0, NULL, ET_EXEC, 42) == 0);
    CHECK(run("/tmp/rt-past") == 100 + ENOEXEC);
    /* An interpreter (ET_DYN, exit 43) named by a PT_INTERP past 4 KiB,
     * in a program whose program headers lie past 4 KiB too. */
    CHECK(make_elf("/tmp/rt-ld", 0x40, 0x2000, 0, 0, NULL, ET_DYN, 43) == 0);
    CHECK(make_elf("/tmp/rt-dyn", 0x1800, 0x3000, 1, 0x2ff0 - 8, "/tmp/rt-ld", ET_EXEC, 42) == 0);
    CHECK(run("/tmp/rt-dyn") == 43);
    /* Interpreter whose own program headers lie past 4 KiB. */
    CHECK(make_elf("/tmp/rt-ld2", 0x1100, 0x2000, 0, 0, NULL, ET_DYN, 44) == 0);
    CHECK(make_elf("/tmp/rt-dyn2", 0x40, 0x2000, 1, 0x1f00, "/tmp/rt-ld2", ET_EXEC, 42) == 0);
    CHECK(run("/tmp/rt-dyn2") == 44);
    /* A script whose interpreter is such a program. */
    int fd = open("/tmp/rt-script", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    CHECK(write(fd, "#!/tmp/rt-far\n", 14) == 14);
    close(fd);
    CHECK(run("/tmp/rt-script") == 42);
    unlink("/tmp/rt-near"), unlink("/tmp/rt-far"), unlink("/tmp/rt-farther"), unlink("/tmp/rt-past");
    unlink("/tmp/rt-ld"), unlink("/tmp/rt-dyn"), unlink("/tmp/rt-ld2"), unlink("/tmp/rt-dyn2"), unlink("/tmp/rt-script");
}

/* A program written through a shared mapping (still mapped) and run: exec
 * sees what the mapping shows, as read(2) does (one page cache). */
static void exec_mapped(void) {
    const char *path = "/tmp/rt-mapped";
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0755);
    CHECK(fd >= 0 && ftruncate(fd, 0x2000) == 0);
    unsigned char *m = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    unsigned char *elf = elf_bytes(0x40, 0x2000, 0, 0, NULL, ET_EXEC, 42);
    memcpy(m, elf, 0x2000);
    free(elf);
    unsigned char head[4];
    CHECK(pread(fd, head, 4, 0) == 4 && memcmp(head, ELFMAG, 4) == 0); /* read(2) sees it */
    close(fd);
    /* Linux refuses while a writable mapping exists (ETXTBSY); a kernel
     * without that check must run what the mapping shows. */
    int r = run(path);
    CHECK(r == 42 || r == 100 + ETXTBSY);
    if (r != 42 && r != 100 + ETXTBSY)
        printf("exec while mapped: %d\n", r);
    munmap(m, 0x2000);
    CHECK(run(path) == 42);
    unlink(path);
}

/* ---- signals on the fast path ---- */
static volatile int handled;
static void on_usr1(int sig) {
    (void)sig;
    handled++;
}

static pthread_t main_thread;
static int restart_pipe[2];

static void *poke(void *arg) {
    long mode = (long)arg;
    nap(100);
    pthread_kill(main_thread, SIGUSR1);
    if (mode == 1) {
        nap(100);
        if (write(restart_pipe[1], "x", 1) != 1)
            return NULL;
    }
    return NULL;
}

static const char *execd_mode = "execd";

static void *exec_from_thread(void *arg) {
    char *path = arg;
    nap(50);
    char *argv[] = {path, (char *)execd_mode, NULL};
    execve("/proc/self/exe", argv, NULL);
    _exit(99);
}

static void signals_fast(const char *self) {
    main_thread = pthread_self();
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    /* rt_sigsuspend: the handler runs once, then the old mask is back. */
    sigset_t block, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);
    pthread_t t;
    pthread_create(&t, NULL, poke, (void *)0);
    handled = 0;
    errno = 0;
    CHECK(sigsuspend(&empty) == -1 && errno == EINTR);
    CHECK(handled == 1);
    sigprocmask(SIG_BLOCK, NULL, &now);
    CHECK(sigismember(&now, SIGUSR1));
    pthread_join(t, NULL);
    /* Blocked again: a signal sent now stays pending, unhandled, across
     * many system calls. */
    pthread_kill(main_thread, SIGUSR1);
    for (int i = 0; i < 1000; i++)
        getppid();
    CHECK(handled == 1);
    sigset_t pend;
    sigpending(&pend);
    CHECK(sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &block, NULL); /* delivered on the way out */
    CHECK(handled == 2);
    /* SA_RESTART: a read interrupted by a handled signal goes on. */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    CHECK(pipe(restart_pipe) == 0);
    pthread_create(&t, NULL, poke, (void *)1);
    char c = 0;
    CHECK(read(restart_pipe[0], &c, 1) == 1 && c == 'x');
    CHECK(handled == 3);
    pthread_join(t, NULL);
    /* Without it: EINTR. */
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_create(&t, NULL, poke, (void *)1);
    errno = 0;
    CHECK(read(restart_pipe[0], &c, 1) == -1 && errno == EINTR);
    pthread_join(t, NULL);
    CHECK(read(restart_pipe[0], &c, 1) == 1 && c == 'x');
    close(restart_pipe[0]), close(restart_pipe[1]);
    signal(SIGUSR1, SIG_DFL);
    /* execve from a thread while the others spin in system calls. */
    for (int round = 0; round < 3; round++) {
        pid_t child = fork();
        if (child == 0) {
            alarm(10);
            sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            for (long i = 0; i < 3; i++)
                pthread_create(&t, NULL, spin, (void *)i);
            pthread_create(&t, NULL, exec_from_thread, (void *)self);
            for (;;)
                syscall(SYS_getppid);
        }
        int status = 0;
        pid_t w = waitpid(child, &status, 0);
        CHECK(w == child && WIFEXITED(status) && WEXITSTATUS(status) == 33);
        if (!(w == child && WIFEXITED(status) && WEXITSTATUS(status) == 33))
            printf("exec from a thread: waitpid %d status %#x\n", (int)w, status);
    }
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : "";
    if (!strcmp(only, "execd"))
        return 33;
    if (!strcmp(only, "execd-tid")) /* Linux: the thread that called execve takes the pid as its tid */
        return syscall(SYS_gettid) == getpid() ? 33 : 34;
    if (!*only || !strcmp(only, "fsgs"))
        fsgs();
    if (!*only || !strcmp(only, "short"))
        short_buffer();
    if (!*only || !strcmp(only, "probe"))
        probe();
    if (!*only || !strcmp(only, "stop"))
        stopcont();
    if (!*only || !strcmp(only, "exec"))
        exec_heads();
    if (!*only || !strcmp(only, "signals"))
        signals_fast(argv[0]);
    if (!strcmp(only, "exectid")) { /* Tessera: the new program's tid is not its pid (see the report) */
        execd_mode = "execd-tid";
        signals_fast(argv[0]);
    }
    if (!*only || !strcmp(only, "mapped"))
        exec_mapped();
    return tt_done("redteam_r");
}
