#!/bin/sh
# Runs inside the VM (Tessera: `make exec`'s script; Linux: /init's). Runs
# each entry of /opt/ltp/list ("name command args") one after the other
# and prints, for each, "LTP-START name" and then
# "LTP-RESULT name PASS|FAIL|BROK|TCONF|TIMEOUT exit=N time=S".
# Settings come from /opt/ltp/env (written by run.sh).
export PATH=/opt/ltp/testcases/bin:/bin:/sbin:/usr/bin:/usr/sbin
. /opt/ltp/env

# The kernel file systems (busybox init's rcS does not run here).
mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
[ -e /proc/self ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys 2>/dev/null
# Tessera's /dev is a directory of the root file system with its device
# files; Linux's /init mounts devtmpfs. Mount one only where there is none.
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev 2>/dev/null
mounted /tmp || mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm /dev/pts
mounted /dev/shm || mount -t tmpfs shm /dev/shm
mounted /dev/pts || mount -t devpts devpts /dev/pts 2>/dev/null
# Loopback only: socket tests talk to 127.0.0.1; there is no other network.
ip link set lo up 2>/dev/null
# The users and groups LTP tests look up (nobody, bin, daemon).
grep -q '^nobody:' /etc/passwd 2>/dev/null || cat >>/etc/passwd <<'EOF'
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
grep -q '^nobody:' /etc/group 2>/dev/null || cat >>/etc/group <<'EOF'
daemon:x:1:
bin:x:2:
users:x:100:
nogroup:x:65534:
nobody:x:65534:
EOF

export LTPROOT=/opt/ltp TMPDIR=/tmp
export LTP_TIMEOUT_MUL LTP_RUNTIME_MUL
export LTP_COLORIZE_OUTPUT=0
[ -n "${KCONFIG_SKIP_CHECK:-}" ] && export KCONFIG_SKIP_CHECK
echo "LTP-BEGIN kernel=$(uname -r) tests=$(wc -l </opt/ltp/list) limit=${LTP_TEST_LIMIT}s"

while read -r name cmd; do
    [ -n "$name" ] || continue
    echo "LTP-START $name"
    cd /tmp || exit 1
    start=$(date +%s)
    # Its own session, as LTP's runners do: a test that signals its process
    # group (kill(0, ...)) must not kill this script.
    # shellcheck disable=SC2086 # the runtest command line is split on blanks
    timeout -s TERM "$LTP_TEST_LIMIT" setsid $cmd </dev/null 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    # LTP's exit status is a mask of TFAIL 1, TBROK 2, TWARN 4, TCONF 32.
    if [ "$took" -ge "$LTP_TEST_LIMIT" ] && [ "$rc" -ne 0 ]; then res=TIMEOUT
    elif [ "$rc" -eq 0 ]; then res=PASS
    elif [ "$rc" -eq 32 ]; then res=TCONF
    elif [ "$rc" -ge 64 ]; then res=BROK   # killed by a signal, or not run
    elif [ $((rc & 1)) -ne 0 ]; then res=FAIL
    elif [ $((rc & 2)) -ne 0 ]; then res=BROK
    else res=FAIL                          # TWARN
    fi
    echo "LTP-RESULT $name $res exit=$rc time=$took"
    # A test that left the working directory unusable must not stop the rest.
    cd / || true
done </opt/ltp/list
echo "LTP-DONE"
