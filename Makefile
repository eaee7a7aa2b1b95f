# Tessera — the two commands a user needs are `make run` and `make test`.
# Both install what they need first (`make deps`).

SHELL := /bin/bash
CARGO ?= cargo
TARGET := x86_64-unknown-none
PROFILE := release
KERNEL := target/$(TARGET)/$(PROFILE)/tessera
CELLPACK := target/release/tessera-cellpack
BUILD := build
ISO := $(BUILD)/tessera.iso
# The boot archive (cpio newc): the kernel ELF (for symbols) and programs.
INITRD := $(BUILD)/initrd.cpio
MKINITRD := target/release/tessera-mkinitrd
# User programs: static Linux binaries built from userspace/ (C, gcc -static).
USER_SOURCES := $(wildcard userspace/tests/*.c)
# Each test program is built twice: against glibc (gcc -static) and musl
# (musl-gcc -static), whose startup and system-call choices differ.
USER_BINS := $(patsubst userspace/tests/%.c,$(BUILD)/userspace/bin/%,$(USER_SOURCES)) \
	$(patsubst userspace/tests/%.c,$(BUILD)/userspace/bin/musl/%,$(USER_SOURCES)) \
	$(BUILD)/userspace/bin/pie/hello
MEM ?= 256M
# Extra words for the kernel command line of `make run` / `make run-fast`.
CMDLINE ?=
QEMU := qemu-system-x86_64
# TCG, not KVM: /dev/kvm on these machines is a slow software stand-in.
# `-cpu max` gives every feature TCG emulates (NX, SMEP/SMAP, ...).
# SMP=N: the guest's processors; Tessera runs programs on all of them
# (the kernel's `nosmp` keeps it to the first).
SMP ?= 2
QEMU_MACHINE := -machine q35 -cpu max -m $(MEM) -smp $(SMP) -no-reboot \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04
# Opt in to KVM with `make run KVM=1` where it really exists.
ifeq ($(KVM),1)
QEMU_MACHINE += -enable-kvm
endif
QEMU_CONSOLE := -display none -serial mon:stdio
# A scratch disk, /dev/vda in the guest (virtio-blk, PCI), made empty for
# each boot.
SCRATCH := $(BUILD)/scratch.img
SCRATCH_SIZE ?= 64M
NEW_SCRATCH = @rm -f $(SCRATCH) && truncate -s $(SCRATCH_SIZE) $(SCRATCH)
# The persistent disk, /dev/vdb in the guest, mounted at /mnt/disk at
# boot: `make run` keeps build/disk.img (ext2, made on first use with
# DISK_SIZE), or uses DISK=path (raw or qcow2, any size). `make exec`
# attaches one only when DISK= is given.
DEFAULT_DISK := $(BUILD)/disk.img
DISK_SIZE ?= 256M
RUN_DISK := $(if $(DISK),$(DISK),$(DEFAULT_DISK))
QEMU_DISK = -drive file=$(SCRATCH),format=raw,if=none,id=scratch -device virtio-blk-pci,drive=scratch \
	-drive file=$(RUN_DISK),format=$$(sh tools/disk-format.sh $(RUN_DISK)),if=none,id=disk -device virtio-blk-pci,drive=disk
# The network: a virtio-net card (eth0) on QEMU's user networking,
# isolated (restrict=on: the guest reaches nothing outside this machine;
# QEMU's DHCP gives it 10.0.2.15). HOSTFWD=HOSTPORT:GUESTPORT forwards the
# host's 127.0.0.1:HOSTPORT to the guest; GUESTFWD=PORT makes the host's
# 127.0.0.1:PORT reachable from the guest at 10.0.2.100:PORT (each
# connection runs socat to it, so the host's server may start later).
comma := ,
NETDEV = user,id=net0,restrict=on$(if $(HOSTFWD),$(comma)hostfwd=tcp:127.0.0.1:$(word 1,$(subst :, ,$(HOSTFWD)))-:$(word 2,$(subst :, ,$(HOSTFWD))))$(if $(GUESTFWD),$(comma)guestfwd=tcp:10.0.2.100:$(GUESTFWD)-cmd:socat - TCP:127.0.0.1:$(GUESTFWD))
QEMU_NET = -netdev '$(NETDEV)' -device virtio-net-pci,netdev=net0
# QEMU's exit status after `poweroff` (isa-debug-exit with the success code).
QEMU_POWEROFF := 33

APT_PACKAGES := qemu-system-x86 grub-pc-bin grub-common xorriso mtools busybox-static musl-tools e2fsprogs genext2fs qemu-utils socat
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps build cells audit audit-gate audit-crosscheck exec userspace userspace-host-check initrd iso run run-fast test test-host test-kernel lint bench ltp ltp-linux clean

all: iso

# --- dependencies -----------------------------------------------------------
deps: $(DEPS_STAMP)

$(DEPS_STAMP): Makefile rust-toolchain.toml
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@mkdir -p $(BUILD) && touch $@

# --- build ------------------------------------------------------------------
# Cells are signed with this build directory's key (made once, never
# committed: build/ is ignored); the kernel is built with its public half
# and loads only cells it signed, packed for that very kernel build.
CELL_KEY := $(BUILD)/cell-signing.key

build: deps $(CELLPACK) $(CELL_KEY)
	@TESSERA_CELL_PUBKEY=$$($(CELLPACK) pubkey $(CELL_KEY)) && test -n "$$TESSERA_CELL_PUBKEY" && export TESSERA_CELL_PUBKEY && \
	$(CARGO) build -q -p tessera-kernel --target $(TARGET) --profile $(PROFILE)

$(CELL_KEY): | $(CELLPACK)
	@mkdir -p $(BUILD)
	$(CELLPACK) keygen $@

# Cells: each crate components/cells/NAME (package tessera-cell-NAME) is
# compiled to one ELF relocatable object with the kernel's toolchain, target,
# flags and profile, then checked and packed against the kernel just built
# (every undefined symbol must be a kernel symbol on the cell import
# allowlist, or the build fails naming it) and signed with $(CELL_KEY). The files go to /lib/cells in the boot archive. A variant NAME-FEATURE
# is the same crate built with cargo feature FEATURE (version gets +FEATURE).
# A cell may bundle crates the kernel does not link (`bundle` in its
# [package.metadata.tessera-cell]): their rlibs are linked into its object.
CELLS := $(notdir $(wildcard components/cells/*))
CELL_VARIANTS := virtio_blk-faulty virtio_net-faulty netstack-faulty probe-initfault ext2-faulty tmpfs-faulty procfs-faulty procfs-hostile
CELL_FILES := $(patsubst %,$(BUILD)/cells/%.cell,$(CELLS) $(CELL_VARIANTS))

$(CELLPACK): deps $(wildcard tools/cellpack/src/*.rs framekernel/logic/src/*.rs)
	@$(CARGO) build -q --release -p tessera-cellpack

cells: $(CELL_FILES)

$(BUILD)/cells/%.cell: build $(CELLPACK)
	@mkdir -p $(BUILD)/cells $(BUILD)/cell-objects
	@name=$*; crate=$${name%%-*}; feature=$${name#$$crate}; feature=$${feature#-}; \
	$(CARGO) rustc -q -p tessera-cell-$$crate $${feature:+--features $$feature} --target $(TARGET) --profile $(PROFILE) \
		--message-format=json-render-diagnostics -- \
		--emit=obj=$(abspath $(BUILD)/cell-objects/$*.o) -C codegen-units=1 >$(BUILD)/cell-objects/$*.json && \
	$(CELLPACK) bundle components/cells/$$crate $(BUILD)/cell-objects/$*.json $(BUILD)/cell-objects/$*.o $(BUILD)/cell-objects/$*.linked.o >/dev/null && \
	$(CELLPACK) pack components/cells/$$crate $(BUILD)/cell-objects/$*.linked.o $(KERNEL) $@ $$feature --key $(CELL_KEY) >/dev/null

# One static-pie build (ET_DYN without an interpreter), loaded at the PIE base.
$(BUILD)/userspace/bin/pie/%: userspace/tests/%.c userspace/tests/tessera_test.h | deps
	@mkdir -p $(dir $@)
	gcc -static-pie -O2 -Wall -Werror -pthread -o $@ $<

$(BUILD)/userspace/bin/musl/%: userspace/tests/%.c userspace/tests/tessera_test.h | deps
	@mkdir -p $(dir $@)
	musl-gcc -static -O2 -Wall -Werror -pthread -o $@ $<

$(BUILD)/userspace/bin/%: userspace/tests/%.c userspace/tests/tessera_test.h | deps
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Werror -pthread -o $@ $<

BENCH_BIN := $(BUILD)/userspace/bench/bench
SMPBENCH_BIN := $(BUILD)/userspace/bench/smpbench

# Tools installed in the root file system.
CELLCTL := $(BUILD)/userspace/sbin/cellctl
$(CELLCTL): userspace/cellctl/cellctl.c | deps
	@mkdir -p $(dir $@)
	musl-gcc -static -Os -Wall -Werror -o $@ $<

$(BENCH_BIN): userspace/bench/bench.c userspace/bench/cells.sh userspace/bench/fs.sh userspace/bench/bench-run.sh | deps
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Werror -o $@ $<
	cp userspace/bench/cells.sh userspace/bench/fs.sh userspace/bench/bench-run.sh $(dir $@)

$(SMPBENCH_BIN): userspace/bench/smpbench.c | deps
	@mkdir -p $(dir $@)
	gcc -static -O2 -Wall -Werror -pthread -o $@ $<

# Hostile and unsupported program files for userspace/tests/exec.c.
TESTDATA := $(BUILD)/userspace/testdata
$(TESTDATA)/.made: userspace/testdata/make-bad-programs.py $(BUILD)/userspace/bin/musl/hello userspace/tests/hello.c
	@mkdir -p $(TESTDATA)
	gcc -O2 -o $(TESTDATA)/dynamic userspace/tests/hello.c
	python3 userspace/testdata/make-bad-programs.py $(BUILD)/userspace/bin/musl/hello $(TESTDATA) $(TESTDATA)/dynamic
	@touch $@

userspace: $(USER_BINS) $(BENCH_BIN) $(SMPBENCH_BIN) $(CELLCTL) $(TESTDATA)/.made

# The same test programs must pass on the Linux host: they check Linux
# behaviour, not ours. Prints one summary line in the closing format.
userspace-host-check: $(USER_BINS) $(TESTDATA)/.made
	@passed=0; failed=0; for bin in $(USER_BINS); do \
		log=$(BUILD)/host-$$(echo $$bin | tr / -).log; \
		if (cd $(BUILD)/userspace && timeout 120 ./$${bin#$(BUILD)/userspace/}) >$$log 2>&1; then passed=$$((passed+1)); \
		else failed=$$((failed+1)); echo "host: $$bin FAILED:"; cat $$log; fi; done; \
		echo "userspace on the Linux host: $$passed passed, $$failed failed"; [ $$failed -eq 0 ]

$(MKINITRD): deps $(wildcard tools/mkinitrd/src/*.rs components/cpio/src/*.rs)
	@$(CARGO) build -q --release -p tessera-mkinitrd

initrd: $(INITRD)

# The root file system tree: busybox-static with its applet links and /etc.
ROOTFS := $(BUILD)/rootfs
$(ROOTFS)/.made: userspace/rootfs/make-rootfs.sh $(shell find userspace/rootfs/etc -type f) | deps
	sh userspace/rootfs/make-rootfs.sh $(ROOTFS)
	@touch $@

# The system every boot archive holds: the root file system, the kernel ELF
# (for symbols), the cells, cellctl and the disk-loop demo script.
SYSTEM_FILES := =$(ROOTFS) boot/tessera.elf=$(KERNEL) lib/cells=$(BUILD)/cells sbin/cellctl=$(CELLCTL) \
	usr/bin/disk-loop=userspace/scripts/disk-loop.sh
SYSTEM_DEPS := build $(MKINITRD) $(CELL_FILES) $(CELLCTL) userspace/scripts/disk-loop.sh $(ROOTFS)/.made

# Unmodified, dynamically linked Debian programs from the host with their
# loader and libraries (tools/bring.sh), for the tests: under
# /opt/tessera/debian, the libraries at their Debian paths.
DEBIAN_PROGRAMS := ls id cat env sort dash true
DEBIAN := $(BUILD)/debian
$(BUILD)/debian.made: tools/bring.sh
	@rm -rf $(DEBIAN)
	@sh tools/bring.sh --bin opt/tessera/debian $(DEBIAN) $(DEBIAN_PROGRAMS) >/dev/null
	@touch $@

# The test boot archive (`make run-fast`, the QEMU tests): the system and,
# under /opt/tessera, the test programs, benchmarks, test data and Debian
# programs.
$(INITRD): $(SYSTEM_DEPS) $(USER_BINS) $(BENCH_BIN) $(SMPBENCH_BIN) $(TESTDATA)/.made $(BUILD)/debian.made
	$(MKINITRD) $@ $(SYSTEM_FILES) opt/tessera/bin=$(BUILD)/userspace/bin \
		opt/tessera/bench=$(BUILD)/userspace/bench opt/tessera/testdata=$(TESTDATA) =$(DEBIAN)

# The ISO's archive (`make run`): the system and the benchmarks, without
# the 12 MB of test programs, so GRUB reads far less from the CD.
IMAGE := $(BUILD)/image.cpio
$(IMAGE): $(SYSTEM_DEPS) $(BENCH_BIN) $(SMPBENCH_BIN)
	$(MKINITRD) $@ $(SYSTEM_FILES) opt/tessera/bench=$(BUILD)/userspace/bench

iso: $(ISO)

$(ISO): $(IMAGE) tools/grub.cfg.in
	@rm -rf $(BUILD)/iso && mkdir -p $(BUILD)/iso/boot/grub
	cp $(KERNEL) $(BUILD)/iso/boot/tessera.elf
	cp $(IMAGE) $(BUILD)/iso/boot/initrd.cpio
	sed 's|@CMDLINE@|$(CMDLINE)|' tools/grub.cfg.in > $(BUILD)/iso/boot/grub/grub.cfg
	grub-mkrescue -d /usr/lib/grub/i386-pc -o $@ $(BUILD)/iso 2>$(BUILD)/grub-mkrescue.log \
		|| { cat $(BUILD)/grub-mkrescue.log; exit 1; }

# --- run --------------------------------------------------------------------
$(DEFAULT_DISK): | deps
	@mkdir -p $(BUILD)
	truncate -s $(DISK_SIZE) $@.new && mkfs.ext2 -q -F -L tessera $@.new && mv $@.new $@

# A DISK= that does not exist is an error, not a new image.
DISK_DEPS := $(if $(DISK),,$(DEFAULT_DISK))

# The real-world path: GRUB from an ISO. Leave QEMU with Ctrl-A X.
run: $(ISO) $(DISK_DEPS)
	@test -f $(RUN_DISK) || { echo "make run: DISK=$(RUN_DISK): no such file" >&2; exit 2; }
	$(NEW_SCRATCH)
	$(QEMU) $(QEMU_MACHINE) $(QEMU_CONSOLE) $(QEMU_DISK) $(QEMU_NET) -cdrom $(ISO) || [ $$? -eq $(QEMU_POWEROFF) ]

# The fast path: QEMU loads the ELF directly (PVH entry); the same file is
# passed again as the `symbols` module.
run-fast: $(INITRD) $(DISK_DEPS)
	@test -f $(RUN_DISK) || { echo "make run-fast: DISK=$(RUN_DISK): no such file" >&2; exit 2; }
	$(NEW_SCRATCH)
	$(QEMU) $(QEMU_MACHINE) $(QEMU_CONSOLE) $(QEMU_DISK) $(QEMU_NET) -kernel $(KERNEL) -initrd $(INITRD) -append "$(CMDLINE)" \
		|| [ $$? -eq $(QEMU_POWEROFF) ]

# Run a script non-interactively: the image with OVERLAY's files added, the
# script run by busybox sh as the only job, its output on stdout, and its
# exit status as make's. MEM must hold the boot archive twice (module and
# root file system).
EXEC_INITRD := $(BUILD)/exec.cpio
exec: $(SYSTEM_DEPS)
	@test -n "$(SCRIPT)" || { echo "usage: make exec SCRIPT=path/to/script.sh [OVERLAY=dir] [MEM=size]" >&2; exit 2; }
	@test -f "$(SCRIPT)" || { echo "make exec: $(SCRIPT): no such file" >&2; exit 2; }
	@$(MKINITRD) $(EXEC_INITRD) $(SYSTEM_FILES) $(if $(OVERLAY),=$(OVERLAY)) \
		etc/tessera-exec.sh=$(SCRIPT)
	@SCRATCH_SIZE=$(SCRATCH_SIZE) DISK=$(DISK) NETDEV='$(NETDEV)' SMP=$(SMP) sh tools/exec.sh $(KERNEL) $(EXEC_INITRD) $(MEM) || { status=$$?; \
		echo "make exec: the script exited with status $$status" >&2; exit $$status; }

# --- audit ------------------------------------------------------------------
# What must be trusted: unsafe code, SAFETY coverage, third-party crates
# (tools/audit; policy in tools/audit/trusted.toml). Fails naming file and
# line on a violation; also lists build scripts, proc-macros, macros that
# write unsafe code and, when build/cells exists (`make cells`), each
# cell's imports from the kernel. `make audit MARKDOWN=report.md SVG=tcb.svg` also
# writes a review report and a chart;
# `make audit RECORD=1` records the totals later audits compare with.
AUDIT := target/release/tessera-audit
$(AUDIT): deps $(wildcard tools/audit/src/*.rs)
	@$(CARGO) build -q --release -p tessera-audit

audit: $(AUDIT)
	@$(AUDIT) $(if $(MARKDOWN),--markdown $(MARKDOWN)) $(if $(SVG),--svg $(SVG)) $(if $(RECORD),--record) .

# Compares the counts with cargo-geiger's on real crates (installs it once).
audit-crosscheck: $(AUDIT)
	sh tools/audit/geiger-crosscheck.sh

# The gate in `make test`: quiet unless something fails.
audit-gate: $(AUDIT)
	@$(AUDIT) . > $(BUILD)/audit.log 2>&1 || { cat $(BUILD)/audit.log; echo "make audit: violations (above)"; exit 1; }
	@grep -E "^  (our code|with dependencies):|^audit: no violations" $(BUILD)/audit.log

# --- tests ------------------------------------------------------------------
# Runs every level and closes with one summary line over all cargo test runs.
test: deps lint audit-gate
	@set -o pipefail; { $(MAKE) --no-print-directory test-host && $(MAKE) --no-print-directory userspace-host-check \
		&& $(MAKE) --no-print-directory test-kernel; } 2>&1 \
		| tee $(BUILD)/test.log
	@awk '/^test result:/ { passed += $$4; failed += $$6 } /^userspace on the Linux host:/ { passed += $$6; failed += $$8 } \
		END { printf "make test: %d passed, %d failed\n", passed, failed }' \
		$(BUILD)/test.log

lint: deps
	$(CARGO) clippy -p framekernel -p tessera-linux -p tessera-kernel -p tessera-live-update -p tessera-cell-api -p tessera-virtio $(patsubst %,-p tessera-cell-%,$(CELLS)) --target $(TARGET) --profile $(PROFILE) -- -D warnings
	$(CARGO) clippy -p tessera-cell-procfs --features hostile --target $(TARGET) --profile $(PROFILE) -- -D warnings
	$(CARGO) clippy -p framekernel-logic -p tessera-cpio -p tessera-elf -p tessera-vfs -p tessera-cell-tty -p tessera-cell-ext2 -p tessera-cell-tmpfs -p tessera-cell-procfs -p tessera-mkinitrd -p tessera-cellpack -p tessera-audit -p tessera-tests --all-targets -- -D warnings
	# Alone: with the packages above, feature unification builds the base
	# (a dependency of this cell) with std, and its panic handler clashes.
	$(CARGO) clippy -p tessera-cell-netstack --all-targets -- -D warnings

test-host: deps $(CELL_FILES)
	TESSERA_CELLS_DIR=$(abspath $(BUILD)/cells) TESSERA_KERNEL=$(abspath $(KERNEL)) TESSERA_CELL_KEY=$(abspath $(CELL_KEY)) \
	$(CARGO) test -p framekernel-logic -p framekernel-boundary -p tessera-cellpack -p tessera-audit -p tessera-cpio -p tessera-elf -p tessera-vfs -p tessera-cell-tty -p tessera-cell-ext2 -p tessera-cell-tmpfs -p tessera-cell-procfs
	$(CARGO) test -p tessera-cell-netstack

# Debian's Linux kernel, fetched once (apt-get download, unpacked outside
# the repository): the reference of `make bench` and of the LTP runs.
LINUX_REF ?= /work/linux-ref
$(LINUX_REF)/vmlinuz:
	sh tests/ltp/fetch-linux.sh $(LINUX_REF)

TEST_ENV := TESSERA_KERNEL=$(abspath $(KERNEL)) TESSERA_CELL_KEY=$(abspath $(CELL_KEY)) TESSERA_ISO=$(abspath $(ISO)) TESSERA_INITRD=$(abspath $(INITRD)) \
	TESSERA_USER_BINS=$(abspath $(BUILD)/userspace/bin) LINUX_REF=$(LINUX_REF)

test-kernel: $(ISO) $(INITRD) $(LINUX_REF)/vmlinuz
	$(TEST_ENV) \
		$(CARGO) test -p tessera-tests -- --test-threads=2

# --- LTP conformance (not part of `make test`: 20-40 minutes each) --------
# LTP's system-call tests (tests/ltp/syscalls.list) on Tessera and, for
# reference, on Debian's Linux kernel in the same QEMU. LTP is built
# outside the repository (tests/ltp/README.md); LTP_BUILD is its install
# prefix, LTP_ARGS more options of tests/ltp/run.sh (--from NAME, --only "A B").
LTP_BUILD ?= /work/ltp-build
ltp: deps
	tests/ltp/run.sh $(LTP_ARGS) $(LTP_BUILD)

ltp-linux: deps
	tests/ltp/run.sh --linux $(LTP_ARGS) $(LTP_BUILD)

# --- measurements -----------------------------------------------------------
# `make bench BENCH=fs`: only the file-system figures (Tessera and, when
# tests/ltp/fetch-linux.sh has fetched it, Debian's Linux); `BENCH=smp`:
# only the multiprocessor and cell-call figures; `BENCH=net`: the network;
# `BENCH=cells`: cell load, swap downtime per slot and fault recovery;
# `BENCH=linux`: only the system-call figures beside Debian's Linux in the
# same QEMU (fetched by tests/ltp/fetch-linux.sh when missing; BENCH_RUNS
# boots each, default 5; BENCH_QUICK=1: one each, checked to parse).
bench: $(ISO) $(INITRD) $(MKINITRD) $(LINUX_REF)/vmlinuz
	$(TEST_ENV) \
		$(CARGO) run -q -p tessera-tests --bin boot-bench --release -- $(BENCH)
	@[ -n "$(BENCH)" ] || { echo "The same user benchmark natively on this host, for reference:"; $(BENCH_BIN) | sed 's/^/  host /'; }

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
