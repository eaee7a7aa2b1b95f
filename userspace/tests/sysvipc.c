/* System V IPC as Linux has it: message queues (types, IPC_NOWAIT,
 * E2BIG/MSG_NOERROR, blocking receive across fork, removal waking a
 * waiter with EIDRM), semaphore sets (SETVAL/GETVAL/GETALL/SETALL, semop
 * that blocks until another process posts, IPC_NOWAIT, semtimedop timing
 * out, ERANGE/EFBIG) and shared memory (shmget/shmat/shmdt/shmctl, sharing
 * with a child, nattch, removal while attached, read-only attachments,
 * permissions for another user). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

struct msg {
    long type;
    char text[64];
};

static int wait_child(pid_t child) {
    int status = -1;
    if (waitpid(child, &status, 0) != child) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static void queues(void) {
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    CHECK(q >= 0);
    struct msg m = {2, "two"};
    CHECK(msgsnd(q, &m, 4, 0) == 0);
    m.type = 1;
    strcpy(m.text, "one");
    CHECK(msgsnd(q, &m, 4, 0) == 0);
    m.type = 3;
    strcpy(m.text, "three-long-text");
    CHECK(msgsnd(q, &m, 16, 0) == 0);
    struct msqid_ds ds;
    CHECK(msgctl(q, IPC_STAT, &ds) == 0 && ds.msg_qnum == 3 && ds.msg_perm.mode == 0600);
    /* By type; negative takes the lowest type not above |type|. */
    struct msg got = {0};
    CHECK(msgrcv(q, &got, sizeof got.text, 1, 0) == 4 && got.type == 1 && strcmp(got.text, "one") == 0);
    CHECK(msgrcv(q, &got, sizeof got.text, -5, 0) == 4 && got.type == 2);
    /* Too big for the buffer: E2BIG, or cut with MSG_NOERROR. */
    CHECK_ERR(msgrcv(q, &got, 4, 0, 0), E2BIG);
    CHECK(msgrcv(q, &got, 5, 0, MSG_NOERROR) == 5 && memcmp(got.text, "three", 5) == 0);
    CHECK_ERR(msgrcv(q, &got, sizeof got.text, 0, IPC_NOWAIT), ENOMSG);
    m.type = 0;
    CHECK_ERR(msgsnd(q, &m, 4, 0), EINVAL);
    /* A child blocks in msgrcv until we send. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        struct msg c = {0};
        _exit(msgrcv(q, &c, sizeof c.text, 7, 0) == 3 && strcmp(c.text, "hi") == 0 ? 0 : 1);
    }
    usleep(50000);
    m.type = 7;
    strcpy(m.text, "hi");
    CHECK(msgsnd(q, &m, 3, 0) == 0);
    CHECK(wait_child(child) == 0);
    /* Removal wakes a blocked receiver with EIDRM. */
    child = fork();
    if (child == 0) {
        struct msg c;
        _exit(msgrcv(q, &c, sizeof c.text, 0, 0) == -1 && errno == EIDRM ? 0 : 1);
    }
    usleep(50000);
    CHECK(msgctl(q, IPC_RMID, NULL) == 0);
    CHECK(wait_child(child) == 0);
    CHECK_ERR(msgsnd(q, &m, 3, 0), EINVAL);
    /* Keys: the same key finds the same queue; IPC_EXCL refuses it. */
    key_t key = 0x7e55e7a;
    int a = msgget(key, IPC_CREAT | 0644);
    CHECK(a >= 0 && msgget(key, 0) == a);
    CHECK_ERR(msgget(key, IPC_CREAT | IPC_EXCL | 0644), EEXIST);
    CHECK_ERR(msgget(0x7e55e7b, 0), ENOENT);
    CHECK(msgctl(a, IPC_RMID, NULL) == 0);
}

/* Waits until semctl(cmd) of semaphore `num` reads `want` (at most ~5 s). */
static int wait_count(int s, int num, int cmd, int want) {
    for (int i = 0; i < 500; i++) {
        if (semctl(s, num, cmd) == want) return 1;
        usleep(10000);
    }
    return 0;
}

/* GETNCNT and GETZCNT count the processes blocked on a semaphore, by the
 * operation that blocks them (LTP semctl01). */
static void waiter_counts(void) {
    int s = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    CHECK(s >= 0);
    CHECK(semctl(s, 1, SETVAL, (union semun){.val = 1}) == 0);
    CHECK(semctl(s, 0, GETNCNT) == 0 && semctl(s, 1, GETZCNT) == 0);
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            /* Two wait for semaphore 0 to grow, one for semaphore 1 to be 0. */
            struct sembuf op = i < 2 ? (struct sembuf){0, -1, 0} : (struct sembuf){1, 0, 0};
            _exit(semop(s, &op, 1) == 0 ? 0 : 1);
        }
    }
    CHECK(wait_count(s, 0, GETNCNT, 2));
    CHECK(wait_count(s, 1, GETZCNT, 1));
    CHECK(semctl(s, 1, GETNCNT) == 0 && semctl(s, 0, GETZCNT) == 0);
    /* One unit for semaphore 0 lets one waiter go. */
    struct sembuf up = {0, 1, 0};
    CHECK(semop(s, &up, 1) == 0);
    CHECK(wait_count(s, 0, GETNCNT, 1));
    CHECK(semctl(s, 0, SETVAL, (union semun){.val = 1}) == 0);
    CHECK(semctl(s, 1, SETVAL, (union semun){.val = 0}) == 0);
    for (int i = 0; i < 3; i++) {
        int status = -1;
        CHECK(waitpid(kids[i], &status, 0) == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(semctl(s, 0, GETNCNT) == 0 && semctl(s, 1, GETZCNT) == 0);
    semctl(s, 0, IPC_RMID);
}

static long read_long(const char *path) {
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f && fscanf(f, "%ld", &v) != 1) v = -1;
    if (f) fclose(f);
    return v;
}

static int write_long(const char *path, long v) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fprintf(f, "%ld\n", v) > 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* kernel.msgmni and kernel.shmmax bound what msgget and shmget give. */
static void tunable_limits(void) {
    long msgmni = read_long("/proc/sys/kernel/msgmni"), shmmax = read_long("/proc/sys/kernel/shmmax");
    CHECK(msgmni > 0 && shmmax > 0);
    struct msginfo info;
    int used = msgctl(0, MSG_INFO, (struct msqid_ds *)&info);
    CHECK(used >= 0);
    long in_use = info.msgpool;
    if (write_long("/proc/sys/kernel/msgmni", in_use + 2) == 0) {
        int a = msgget(IPC_PRIVATE, IPC_CREAT | 0600), b = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        CHECK(a >= 0 && b >= 0);
        CHECK_ERR(msgget(IPC_PRIVATE, IPC_CREAT | 0600), ENOSPC);
        msgctl(a, IPC_RMID, NULL);
        msgctl(b, IPC_RMID, NULL);
        CHECK(write_long("/proc/sys/kernel/msgmni", msgmni) == 0);
    }
    if (write_long("/proc/sys/kernel/shmmax", 8192) == 0) {
        CHECK_ERR(shmget(IPC_PRIVATE, 8193, IPC_CREAT | 0600), EINVAL);
        int seg = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
        CHECK(seg >= 0);
        shmctl(seg, IPC_RMID, NULL);
        CHECK(write_long("/proc/sys/kernel/shmmax", shmmax) == 0);
    }
}

static void semaphores(void) {
    tunable_limits();
    waiter_counts();
    int s = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
    CHECK(s >= 0);
    CHECK(semctl(s, 0, SETVAL, (union semun){.val = 2}) == 0 && semctl(s, 0, GETVAL) == 2);
    unsigned short all[3] = {1, 0, 5}, back[3] = {0};
    CHECK(semctl(s, 0, SETALL, (union semun){.array = all}) == 0);
    CHECK(semctl(s, 0, GETALL, (union semun){.array = back}) == 0 && back[0] == 1 && back[2] == 5);
    CHECK(semctl(s, 0, GETPID) == getpid());
    CHECK_ERR(semctl(s, 0, SETVAL, (union semun){.val = 40000}), ERANGE);
    struct semid_ds ds;
    CHECK(semctl(s, 0, IPC_STAT, (union semun){.buf = &ds}) == 0 && ds.sem_nsems == 3);
    /* Operations apply all at once or not at all. */
    struct sembuf two[2] = {{0, -1, 0}, {1, -1, IPC_NOWAIT}};
    CHECK_ERR(semop(s, two, 2), EAGAIN);
    CHECK(semctl(s, 0, GETVAL) == 1);
    struct sembuf bad = {7, 1, 0};
    CHECK_ERR(semop(s, &bad, 1), EFBIG);
    /* A child waits on semaphore 1 until we post it. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        struct sembuf take = {1, -1, 0};
        _exit(semop(s, &take, 1) == 0 ? 0 : 1);
    }
    usleep(50000);
    CHECK(waitpid(child, NULL, WNOHANG) == 0);
    struct sembuf post = {1, 1, 0};
    CHECK(semop(s, &post, 1) == 0);
    CHECK(wait_child(child) == 0);
    CHECK(semctl(s, 1, GETVAL) == 0);
    /* SEM_UNDO: what an exiting process took comes back. */
    CHECK(semctl(s, 1, SETVAL, (union semun){.val = 3}) == 0);
    fflush(stdout);
    child = fork();
    if (child == 0) {
        struct sembuf take = {1, -2, SEM_UNDO};
        _exit(semop(s, &take, 1) == 0 && semctl(s, 1, GETVAL) == 1 ? 0 : 1);
    }
    CHECK(wait_child(child) == 0);
    CHECK(semctl(s, 1, GETVAL) == 3);
    CHECK(semctl(s, 1, SETVAL, (union semun){.val = 0}) == 0);
    /* Wait-for-zero and a timeout. */
    struct sembuf zero = {2, 0, 0};
    struct timespec short_wait = {0, 50000000};
    CHECK_ERR(semtimedop(s, &zero, 1, &short_wait), EAGAIN);
    /* Removal wakes a waiter with EIDRM. */
    child = fork();
    if (child == 0) {
        struct sembuf take = {1, -1, 0};
        _exit(semop(s, &take, 1) == -1 && errno == EIDRM ? 0 : 1);
    }
    usleep(50000);
    CHECK(semctl(s, 0, IPC_RMID) == 0);
    CHECK(wait_child(child) == 0);
    CHECK_ERR(semctl(s, 0, GETVAL), EINVAL);
    CHECK_ERR(semget(IPC_PRIVATE, 0, IPC_CREAT | 0600), EINVAL);
}

static sigjmp_buf segv_jump;
static void on_segv(int sig) {
    (void)sig;
    siglongjmp(segv_jump, 1);
}

static void shared_memory(void) {
    int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    CHECK(id >= 0);
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK(p[0] == 0 && p[9999] == 0);
    strcpy(p, "parent");
    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_segsz == 10000 && ds.shm_nattch == 1 && ds.shm_cpid == getpid());
    /* A child shares it (inherited attachment) and attaches it again. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        char *again = shmat(id, NULL, 0);
        if (again == (void *)-1 || strcmp(again, "parent") != 0 || strcmp(p, "parent") != 0) _exit(1);
        struct shmid_ds cds;
        if (shmctl(id, IPC_STAT, &cds) != 0 || cds.shm_nattch != 3) _exit(2);
        strcpy(again + 5000, "child");
        _exit(shmdt(again) == 0 ? 0 : 3);
    }
    CHECK(wait_child(child) == 0);
    CHECK(strcmp(p + 5000, "child") == 0);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 1);
    /* Read-only attachment: a store is SIGSEGV. */
    char *ro = shmat(id, NULL, SHM_RDONLY);
    CHECK(ro != (void *)-1 && strcmp(ro, "parent") == 0);
    signal(SIGSEGV, on_segv);
    int faulted = 0;
    if (sigsetjmp(segv_jump, 1) == 0) {
        ((volatile char *)ro)[0] = 'x';
    } else {
        faulted = 1;
    }
    signal(SIGSEGV, SIG_DFL);
    CHECK(faulted);
    CHECK(shmdt(ro) == 0);
    CHECK_ERR(shmdt(ro), EINVAL);
    CHECK(shmat(id, p + 1, 0) == (void *)-1 && errno == EINVAL);
    /* Removed while attached: still usable, gone after the last detach. */
    CHECK(shmctl(id, IPC_RMID, NULL) == 0);
    strcpy(p, "still here");
    CHECK(strcmp(p, "still here") == 0);
    CHECK(shmdt(p) == 0);
    CHECK_ERR(shmctl(id, IPC_STAT, &ds), EINVAL);
    /* Another user without rights: EACCES. */
    int private_id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    child = fork();
    if (child == 0) {
        if (setuid(1000) != 0) _exit(9);
        _exit(shmat(private_id, NULL, 0) == (void *)-1 && errno == EACCES ? 0 : 1);
    }
    CHECK(wait_child(child) == 0);
    CHECK(shmctl(private_id, IPC_RMID, NULL) == 0);
    CHECK_ERR(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600), EINVAL);
}

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

/* MSG_COPY reads a message by index and leaves it; SHM_LOCK shows in the mode. */
static void copies_and_locks(void) {
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    CHECK(q >= 0);
    struct {
        long type;
        char text[16];
    } m = {5, "first"}, got;
    CHECK(msgsnd(q, &m, 6, 0) == 0);
    m.type = 6;
    strcpy(m.text, "second");
    CHECK(msgsnd(q, &m, 7, 0) == 0);
    CHECK(msgrcv(q, &got, sizeof got.text, 1, MSG_COPY | IPC_NOWAIT) == 7 && got.type == 6 && strcmp(got.text, "second") == 0);
    CHECK_ERR(msgrcv(q, &got, sizeof got.text, 5, MSG_COPY | IPC_NOWAIT), ENOMSG);
    CHECK_ERR(msgrcv(q, &got, sizeof got.text, 0, MSG_COPY), EINVAL); /* needs IPC_NOWAIT */
    CHECK_ERR(msgrcv(q, &got, sizeof got.text, 0, MSG_COPY | IPC_NOWAIT | MSG_EXCEPT), EINVAL);
    struct msqid_ds ds;
    CHECK(msgctl(q, IPC_STAT, &ds) == 0 && ds.msg_qnum == 2); /* nothing taken */
    msgctl(q, IPC_RMID, NULL);
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    CHECK(shm >= 0);
    struct shmid_ds sds;
    CHECK(shmctl(shm, SHM_LOCK, NULL) == 0 && shmctl(shm, IPC_STAT, &sds) == 0 && (sds.shm_perm.mode & SHM_LOCKED));
    CHECK(shmctl(shm, SHM_UNLOCK, NULL) == 0 && shmctl(shm, IPC_STAT, &sds) == 0 && !(sds.shm_perm.mode & SHM_LOCKED));
    shmctl(shm, IPC_RMID, NULL);
    /* kernel.msg_next_id chooses the next id once. */
    FILE *f = fopen("/proc/sys/kernel/msg_next_id", "w");
    CHECK(f && fprintf(f, "4242\n") > 0);
    if (f) fclose(f);
    int chosen = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    CHECK(chosen == 4242);
    f = fopen("/proc/sys/kernel/msg_next_id", "r");
    long next = 0;
    CHECK(f && fscanf(f, "%ld", &next) == 1 && next == -1);
    if (f) fclose(f);
    /* An id in use: the next free one after it (LTP msgget05). */
    f = fopen("/proc/sys/kernel/msg_next_id", "w");
    CHECK(f && fprintf(f, "%d\n", chosen) > 0);
    if (f) fclose(f);
    int after = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    CHECK(after >= 0 && after != chosen);
    msgctl(after, IPC_RMID, NULL);
    msgctl(chosen, IPC_RMID, NULL);
    /* /proc/sysvipc/shm lists a segment: key, id, size. */
    int seg = shmget(0x5e55, 8192, IPC_CREAT | 0640);
    CHECK(seg >= 0);
    f = fopen("/proc/sysvipc/shm", "r");
    char line[512];
    int listed = 0;
    while (f && fgets(line, sizeof line, f)) {
        int key, id;
        unsigned perms;
        unsigned long size;
        if (sscanf(line, "%d %d %o %lu", &key, &id, &perms, &size) == 4 && id == seg)
            listed = key == 0x5e55 && (perms & 0777) == 0640 && size == 8192;
    }
    if (f) fclose(f);
    CHECK(listed);
    shmctl(seg, IPC_RMID, NULL);
}

int main(void) {
    CHECK(geteuid() == 0); /* the permission check runs a child as uid 1000 */
    copies_and_locks();
    queues();
    semaphores();
    shared_memory();
    return tt_done("sysvipc");
}
