/* Exec reads a program's headers where they are, not the bytes before
 * them: a sparse file of hundreds of MiB whose program header table lies
 * at its very end runs (as on Linux), several at once, and a table over
 * 64 KiB is refused with ENOEXEC (Linux's limit). */
#define _GNU_SOURCE
#include "tessera_test.h"
#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* A program that exits with 42, `mib` MiB long, its one program header
 * (or `count` copies of it) at the end of the file. */
static int make(const char *path, unsigned long mib, int count) {
    unsigned long size = mib << 20;
    unsigned char head[4096] = {0};
    Elf64_Ehdr *eh = (Elf64_Ehdr *)head;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = 0x400100;
    eh->e_phoff = size - count * sizeof(Elf64_Phdr);
    eh->e_ehsize = sizeof *eh;
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = count;
    const unsigned char code[] = {0xb8, 0x3c, 0, 0, 0, 0xbf, 0x2a, 0, 0, 0, 0x0f, 0x05}; /* exit(42) */
    memcpy(head + 0x100, code, sizeof code);
    Elf64_Phdr ph = {.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = 0, .p_vaddr = 0x400000,
                     .p_paddr = 0x400000, .p_filesz = 4096, .p_memsz = 4096, .p_align = 4096};
    Elf64_Phdr none = {.p_type = PT_NULL};
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (fd < 0 || write(fd, head, sizeof head) != sizeof head || ftruncate(fd, size) != 0)
        return -1;
    for (int i = 0; i < count; i++)
        if (pwrite(fd, i == 0 ? &ph : &none, sizeof ph, eh->e_phoff + i * sizeof ph) != sizeof ph)
            return -1;
    close(fd);
    return 0;
}

/* Runs `path`: its exit status, or 100 + errno when exec failed. */
static int run(const char *path) {
    pid_t child = fork();
    if (child == 0) {
        char *av[] = {(char *)path, NULL};
        execve(path, av, NULL);
        _exit(100 + errno);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

int main(void) {
    CHECK(make("/tmp/exechead-250", 250, 1) == 0);
    CHECK(run("/tmp/exechead-250") == 42);
    unlink("/tmp/exechead-250");
    /* Three at once. */
    char path[3][32];
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof path[i], "/tmp/exechead-%d", i);
        CHECK(make(path[i], 120, 1) == 0);
    }
    for (int i = 0; i < 3; i++)
        if ((kids[i] = fork()) == 0)
            _exit(run(path[i]));
    for (int i = 0; i < 3; i++) {
        int status = 0;
        CHECK(waitpid(kids[i], &status, 0) == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 42);
        unlink(path[i]);
    }
    /* A table over 64 KiB (1171 headers): ENOEXEC; 1170 fit. */
    CHECK(make("/tmp/exechead-many", 1, 1171) == 0);
    CHECK(run("/tmp/exechead-many") == 100 + ENOEXEC);
    CHECK(make("/tmp/exechead-many", 1, 1170) == 0);
    CHECK(run("/tmp/exechead-many") == 42);
    unlink("/tmp/exechead-many");
    return tt_done("exechead");
}
