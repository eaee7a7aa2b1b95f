/*
 * Tessera's vDSO: the time calls every program makes, answered in user
 * mode from a page of clock data the kernel keeps (the "[vvar]" page,
 * mapped read-only one page below this image), as Linux's vDSO does.
 *
 * The kernel's clock is the TSC: nanoseconds since boot are
 * ((rdtsc - boot_tsc) * mult) >> shift, the same formula the kernel uses
 * (framekernel::time), so the two never disagree. Whatever this code
 * cannot answer (a clock it does not know, the clock not calibrated yet)
 * goes to the system call, whose answers are the reference.
 *
 * Built freestanding as a shared object (Makefile: userspace/vdso); the
 * kernel embeds the file and maps it into every process, announcing it
 * with AT_SYSINFO_EHDR. It runs in user mode: nothing here is trusted.
 */
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

/* Layout shared with framekernel/src/time.rs (ClockPage). */
struct clock_page {
    volatile u32 seq;       /* odd while the kernel updates the page */
    volatile u32 flags;     /* CLOCK_READY, CPU_IN_TSC_AUX */
    volatile u64 boot_tsc;  /* TSC at the zero of the monotonic clock */
    volatile u64 mult;      /* ns = (tsc delta * mult) >> shift */
    volatile u64 shift;
    volatile u64 realtime_at_boot_ns; /* Unix time at the zero */
};

#define CLOCK_READY 1u
#define CPU_IN_TSC_AUX 2u

extern const struct clock_page __clock_page __attribute__((visibility("hidden")));

struct timespec64 { i64 tv_sec; i64 tv_nsec; };
struct timeval64 { i64 tv_sec; i64 tv_usec; };
struct timezone32 { int tz_minuteswest; int tz_dsttime; };

static inline long sys2(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline long sys3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static inline u64 rdtsc_ordered(void)
{
    u32 lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((u64)hi << 32) | lo;
}

/* Nanoseconds since boot, plus the Unix time at boot where `realtime` is
 * all ones, into *ns; 0 when the page cannot answer: the clock is not
 * calibrated, `known` is 0, or the kernel is rewriting the page (the
 * caller then asks the kernel, whose answer is the reference; the page
 * changes only when the clock is set, so this is rare).
 *
 * Written with one conditional branch on the way in and one on the way
 * out, inlined into each caller: under an emulator every branch, call and
 * return ends a translated block, and going from one block to the next
 * is most of what this costs. */
static inline __attribute__((always_inline)) int clock_ns(u64 realtime, u32 known, u64 *ns)
{
    const struct clock_page *page = &__clock_page;
    u32 seq = page->seq;
    u32 flags = page->flags;
    __asm__ volatile("" ::: "memory");
    if ((seq & 1) | (~flags & CLOCK_READY) | (known ^ 1))
        return 0;
    u64 now = rdtsc_ordered();
    u64 base = page->boot_tsc;
    u64 delta = now > base ? now - base : 0;
    u64 t = (u64)(((unsigned __int128)delta * page->mult) >> (page->shift & 63));
    t += page->realtime_at_boot_ns & realtime;
    __asm__ volatile("" ::: "memory");
    if (page->seq != seq)
        return 0;
    *ns = t;
    return 1;
}

#define NR_gettimeofday 96
#define NR_time 201
#define NR_clock_gettime 228
#define NR_getcpu 309

/* The clocks the page answers, one bit each: REALTIME (0), MONOTONIC (1),
 * MONOTONIC_RAW (4), REALTIME_COARSE (5), MONOTONIC_COARSE (6), BOOTTIME
 * (7), TAI (11); and which of them count from the epoch. */
#define PAGE_CLOCKS 0x8f3ull
#define EPOCH_CLOCKS 0x821ull

int __vdso_clock_gettime(int clock, struct timespec64 *ts)
{
    u64 bit = (1ull << ((u32)clock & 63)) & -(u64)((u32)clock < 12);
    u64 ns;
    if (!clock_ns(-(u64)((bit & EPOCH_CLOCKS) != 0), (bit & PAGE_CLOCKS) != 0, &ns))
        return (int)sys2(NR_clock_gettime, clock, (long)ts);
    ts->tv_sec = (i64)(ns / 1000000000u);
    ts->tv_nsec = (i64)(ns % 1000000000u);
    return 0;
}

int __vdso_gettimeofday(struct timeval64 *tv, struct timezone32 *tz)
{
    u64 ns;
    if (!clock_ns(~0ull, 1, &ns))
        return (int)sys2(NR_gettimeofday, (long)tv, (long)tz);
    if (tv) {
        tv->tv_sec = (i64)(ns / 1000000000u);
        tv->tv_usec = (i64)(ns % 1000000000u / 1000u);
    }
    if (tz) {
        tz->tz_minuteswest = 0;
        tz->tz_dsttime = 0;
    }
    return 0;
}

i64 __vdso_time(i64 *t)
{
    u64 ns;
    if (!clock_ns(~0ull, 1, &ns))
        return sys2(NR_time, (long)t, 0);
    i64 s = (i64)(ns / 1000000000u);
    if (t)
        *t = s;
    return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
    if (!(__clock_page.flags & CPU_IN_TSC_AUX))
        return (int)sys3(NR_getcpu, (long)cpu, (long)node, (long)unused);
    u32 lo, hi, aux;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    (void)lo;
    (void)hi;
    if (cpu)
        *cpu = aux & 0xfff;
    if (node)
        *node = aux >> 12;
    return 0;
}

int clock_gettime(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval64 *, struct timezone32 *) __attribute__((weak, alias("__vdso_gettimeofday")));
i64 time(i64 *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
