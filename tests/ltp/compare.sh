#!/bin/sh
# Compares a new run's results with the recorded ones and lists regressions
# (PASS before, not PASS now) and new passes (not PASS before, PASS now).
# Usage: tests/ltp/compare.sh [NEW [RECORDED]]
#   NEW       results of run.sh ("name RESULT ..." lines)
#             [/work/ltp-results/tessera/results.txt]
#   RECORDED  [tests/ltp/results-tessera.txt]
# Exit status 1 when there is a regression.
here=$(cd "$(dirname "$0")" && pwd)
new=${1:-/work/ltp-results/tessera/results.txt}
old=${2:-$here/results-tessera.txt}
for f in "$new" "$old"; do
    [ -f "$f" ] || { echo "compare: $f: no such file" >&2; exit 2; }
done
awk '
    FNR == 1 { file++ }
    /^#/ || NF < 2 { next }
    file == 1 { before[$1] = $2; next }
    { now[$1] = $2 }
    END {
        for (t in now) {
            if (!(t in before)) { added++; continue }
            if (before[t] == "PASS" && now[t] != "PASS") reg[++r] = t " PASS -> " now[t]
            else if (before[t] != "PASS" && now[t] == "PASS") fix[++f] = t " " before[t] " -> PASS"
            else if (before[t] != now[t]) other[++o] = t " " before[t] " -> " now[t]
        }
        for (t in before) if (!(t in now)) missing++
        printf "regressions (PASS -> not PASS): %d\n", r
        for (i = 1; i <= r; i++) print "  " reg[i] | "sort"
        close("sort")
        printf "new passes: %d\n", f
        for (i = 1; i <= f; i++) print "  " fix[i] | "sort"
        close("sort")
        printf "other changes: %d\n", o
        for (i = 1; i <= o; i++) print "  " other[i] | "sort"
        close("sort")
        printf "tests only in the new run: %d, only in the recorded run: %d\n", added, missing
        exit r > 0
    }' "$old" "$new"
