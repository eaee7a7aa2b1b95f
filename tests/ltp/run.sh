#!/bin/bash
# Runs LTP system-call tests (tests/ltp/syscalls.list) on Tessera, or with
# --linux on Debian's Linux kernel, in the same QEMU (q35, -cpu max, TCG,
# one CPU, MEM of RAM). See tests/ltp/README.md.
#
# Usage: tests/ltp/run.sh [--linux] [--from NAME] [--only "NAME..."]
#                         [--list FILE] [--out DIR] [LTP_BUILD]
#
# The tests run in batches of LTP_CHUNK, one boot each: the boot archive
# holds the system plus, under /opt/ltp, the batch's (stripped) programs,
# LTP's helper programs, the batch list and tests/ltp/guest.sh, which runs
# them one at a time and prints "LTP-START name" and
# "LTP-RESULT name RESULT exit=N time=S" for each. If the guest stops
# printing for LTP_STALL seconds (a hung kernel), the test that was
# running is recorded as HANG; if the boot ends during a test (panic, the
# guest script killed), as DIED. The run goes on from the next test in a
# new boot.
#
# Environment (defaults in brackets):
#   LTP_BUILD        LTP's install prefix: testcases/bin [/work/ltp-build]
#   LTP_OUT          results and logs [/work/ltp-results/tessera or linux]
#   LTP_CHUNK        tests per boot [40]
#   LTP_TEST_LIMIT   wall-clock seconds per test (busybox timeout) [120]
#   LTP_STALL        seconds without guest output that count as a hang
#                    [LTP_TEST_LIMIT + 90]
#   LTP_RUN_LIMIT    wall-clock seconds for the whole run [21600]
#   LTP_TIMEOUT_MUL  LTP's timeout multiplier [2] (TCG is slow)
#   LTP_RUNTIME_MUL  LTP's runtime multiplier [0.1] (caps the long
#                    fuzzy-race tests' run time, e.g. fork13's 600 s)
#   LTP_SKIP         file of "name # reason" not to run (reported SKIP)
#   MEM              guest RAM [2G]
#   LINUX_KERNEL     the Linux kernel image for --linux
#                    [/work/linux-ref/vmlinuz, made by fetch-linux.sh]
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

kernel=tessera
from=""
only=""
list="$here/syscalls.list"
out=""
while [ $# -gt 0 ]; do
    case $1 in
    --linux) kernel=linux ;;
    --from) from=$2; shift ;;
    --only) only=$2; shift ;;
    --list) list=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) LTP_BUILD=$1 ;;
    esac
    shift
done

LTP_BUILD=${LTP_BUILD:-/work/ltp-build}
out=${out:-${LTP_OUT:-/work/ltp-results/$kernel}}
chunk=${LTP_CHUNK:-40}
limit=${LTP_TEST_LIMIT:-120}
stall=${LTP_STALL:-$((limit + 90))}
run_limit=${LTP_RUN_LIMIT:-21600}
mem=${MEM:-2G}
linux_kernel=${LINUX_KERNEL:-/work/linux-ref/vmlinuz}
bindir=$LTP_BUILD/testcases/bin

[ -d "$bindir" ] || { echo "run.sh: $bindir not found: build LTP first (tests/ltp/README.md)" >&2; exit 2; }
linux_dir=$(dirname "$linux_kernel")
if [ $kernel = linux ] && ! { [ -f "$linux_kernel" ] && [ -f "$linux_dir/release" ]; }; then
    echo "run.sh: $linux_kernel or $linux_dir/release not found: run tests/ltp/fetch-linux.sh" >&2; exit 2
fi

mkdir -p "$out"
rm -f "$out"/boot-*.log
results=$out/results.txt
: >"$results"
deadline=$(($(date +%s) + run_limit))

# The entries to run, in list order: "name command args".
entries=$out/entries
grep -v '^[[:space:]]*\(#\|$\)' "$list" | sed 's/[[:space:]]\{1,\}/ /g' >"$entries"
if [ -n "$from" ]; then
    awk -v f="$from" '$1 == f { on = 1 } on' "$entries" >"$entries.new" && mv "$entries.new" "$entries"
fi
if [ -n "$only" ]; then
    awk -v o=" $only " 'index(o, " " $1 " ")' "$entries" >"$entries.new" && mv "$entries.new" "$entries"
fi
if [ -n "${LTP_SKIP:-}" ]; then
    while read -r name _; do
        case $name in ''|\#*) continue ;; esac
        if grep -q "^$name " "$entries"; then
            echo "$name SKIP exit=- time=0" >>"$results"
            grep -v "^$name " "$entries" >"$entries.new"; mv "$entries.new" "$entries"
        fi
    done <"$LTP_SKIP"
fi
total=$(wc -l <"$entries")
[ "$total" -gt 0 ] || { echo "run.sh: no tests to run" >&2; exit 2; }
echo "ltp: $total tests on $kernel, $chunk per boot, ${limit}s per test; output in $out"

# Tessera's system image parts, or the Linux boot archive's tools.
if [ $kernel = tessera ]; then
    make -s -C "$repo" build target/release/tessera-mkinitrd build/rootfs/.made >/dev/null || exit 2
else
    make -s -C "$repo" target/release/tessera-mkinitrd build/rootfs/.made >/dev/null || exit 2
fi
mkinitrd=$repo/target/release/tessera-mkinitrd

# Stripped copies of LTP's programs (the debug info would triple the archive).
stripped=$LTP_BUILD/stripped
mkdir -p "$stripped"
strip_copy() { # name
    if ! [ "$stripped/$1" -nt "$bindir/$1" ]; then
        strip -o "$stripped/$1" "$bindir/$1" 2>/dev/null || cp "$bindir/$1" "$stripped/$1"
    fi
}
# Helper programs the tests execute (children, helpers): in every boot.
helpers=$(cd "$bindir" && ls | grep -E '_child$|_helper$|^execveat_errno$|^landlock_exec$|^prctl06_execve$')

ovl=$out/overlay
boot=0
retried=""
remaining=$entries
while [ -s "$remaining" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "ltp: the whole-run limit (${run_limit}s) is reached; not run:" $(awk '{print $1}' "$remaining")
        awk '{print $1 " NOTRUN exit=- time=0"}' "$remaining" >>"$results"
        break
    fi
    boot=$((boot + 1))
    log=$out/boot-$(printf %03d $boot).log
    head -n "$chunk" "$remaining" >"$out/batch"
    rm -rf "$ovl" && mkdir -p "$ovl/opt/ltp/testcases/bin"
    for prog in $(awk '{print $2}' "$out/batch") $helpers; do
        strip_copy "$prog" && ln -f "$stripped/$prog" "$ovl/opt/ltp/testcases/bin/$prog" 2>/dev/null \
            || cp "$stripped/$prog" "$ovl/opt/ltp/testcases/bin/$prog"
    done
    cp "$out/batch" "$ovl/opt/ltp/list"
    cp "$here/guest.sh" "$ovl/opt/ltp/guest.sh"
    cat >"$ovl/opt/ltp/env" <<EOF
LTP_TEST_LIMIT=$limit
LTP_TIMEOUT_MUL=${LTP_TIMEOUT_MUL:-2}
LTP_RUNTIME_MUL=${LTP_RUNTIME_MUL:-0.1}
EOF
    # Tessera has no kernel configuration to read: LTP then skips the
    # configuration check and runs the test (else every test that checks
    # one is TBROK "Cannot parse kernel .config").
    [ $kernel = tessera ] && echo "KCONFIG_SKIP_CHECK=1" >>"$ovl/opt/ltp/env"
    first=$(head -n1 "$out/batch" | cut -d' ' -f1)
    echo "ltp: boot $boot: $(wc -l <"$out/batch") tests from $first ($(($(wc -l <"$remaining"))) left)"
    boot_limit=$(($(wc -l <"$out/batch") * (limit + 30) + 300))

    if [ $kernel = tessera ]; then
        # make exec: tools/exec.sh ends QEMU (isa-debug-exit, or its timeout).
        EXEC_TIMEOUT=$boot_limit setsid make -s -C "$repo" exec SCRIPT="$ovl/opt/ltp/guest.sh" \
            OVERLAY="$ovl" MEM="$mem" >"$log" 2>&1 </dev/null &
    else
        cat >"$out/init" <<'EOF'
#!/bin/sh
# The kernel starts /init without a console: open it from devtmpfs.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
sh /opt/ltp/guest.sh
echo "ltp: guest script ended with status $?"
poweroff -f
EOF
        chmod +x "$out/init"
        # Debian's kernel configuration where Debian keeps it, for the
        # tests that check it (LTP's tst_kconfig).
        "$mkinitrd" "$out/initrd-linux.cpio" ="$repo/build/rootfs" ="$ovl" init="$out/init" \
            "boot/config-$(cat "$linux_dir/release")=$linux_dir/config" || exit 2
        setsid timeout --kill-after=5 "$boot_limit" qemu-system-x86_64 \
            -machine q35 -cpu max -m "$mem" -no-reboot \
            -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            -display none -serial stdio -monitor none \
            -kernel "$linux_kernel" -initrd "$out/initrd-linux.cpio" \
            -append "console=ttyS0 quiet panic=-1" >"$log" 2>&1 </dev/null &
    fi
    pid=$!
    # Watchdog: a guest silent for $stall seconds is hung; end this boot.
    last_size=-1; last_change=$(date +%s); why=""
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        now=$(date +%s)
        size=$(stat -c %s "$log" 2>/dev/null || echo 0)
        if [ "$size" != "$last_size" ]; then last_size=$size; last_change=$now; fi
        if [ $((now - last_change)) -ge "$stall" ]; then why="no output for ${stall}s"
        elif [ "$now" -ge "$deadline" ]; then why="whole-run limit reached"
        fi
        if [ -n "$why" ]; then
            kill -TERM -- "-$pid" 2>/dev/null; sleep 3; kill -KILL -- "-$pid" 2>/dev/null
            break
        fi
    done
    wait "$pid" 2>/dev/null
    status=$?

    tr -d '\r' <"$log" | grep -a '^LTP-RESULT ' | cut -d' ' -f2- >>"$results"
    last_started=$(tr -d '\r' <"$log" | grep -a '^LTP-START ' | tail -n1 | cut -d' ' -f2)
    if tr -d '\r' <"$log" | grep -aq '^LTP-DONE'; then
        tail -n +$(($(wc -l <"$out/batch") + 1)) "$remaining" >"$remaining.new"
    elif [ -z "$last_started" ]; then
        echo "ltp: boot $boot ran no test (status $status${why:+, $why}); last lines of $log:" >&2
        tail -n 20 "$log" >&2
        awk '{print $1 " NOTRUN exit=- time=0"}' "$remaining" >>"$results"
        break
    else
        again=""
        if tr -d '\r' <"$log" | grep -aq '^qemu-system-x86_64: terminating on signal' \
            && [ -z "$why" ] && [ "$last_started" != "$retried" ]; then
            # QEMU was killed from outside (not by this script): run the
            # test again, once.
            retried=$last_started
            echo "ltp: boot $boot: QEMU was killed from outside during $last_started; running it again"
            again=$last_started
        elif grep -q "^$last_started " "$results"; then
            # The test ended, the next did not start: blame no test.
            echo "ltp: boot $boot ended after $last_started (status $status${why:+, $why})"
        else
            # HANG: the guest went silent (watchdog); DIED: the boot ended
            # during the test (kernel panic, or the guest script was killed).
            res=DIED; [ -n "$why" ] && res=HANG
            echo "$last_started $res exit=- time=-" >>"$results"
            echo "ltp: boot $boot: $last_started $res (status $status${why:+, $why}); going on from the next test"
        fi
        # Go on after the test, or from it when it is to run again.
        awk -v t="$last_started" -v again="$again" '$1 == t { seen = 1; if (!again) next } seen' \
            "$remaining" >"$remaining.new"
    fi
    mv "$remaining.new" "$out/remaining"
    remaining=$out/remaining
done

echo "ltp: $kernel: $(wc -l <"$results") results in $results"
awk '{ n[$2]++ } END { printf "ltp summary:"; for (r in n) printf " %s=%d", r, n[r]; printf "\n" }' "$results" | tee "$out/summary.txt"
