#!/bin/sh
# Brings host programs, with the shared libraries they link (as `ldd`
# lists them, the program interpreter included), into an overlay directory
# for `make exec OVERLAY=DIR` or `make run OVERLAY=DIR`.
#
# Usage: tools/bring.sh [--bin PREFIX] DIR PROGRAM...
#   PROGRAM is a path or a command name found in PATH. Each program keeps
#   its absolute path under DIR (so /usr/bin/ls becomes DIR/usr/bin/ls),
#   or goes to DIR/PREFIX/NAME with --bin PREFIX (so that it does not
#   replace busybox's applet of the same name);
#   each library is copied to its real path, and the path ldd names
#   becomes a symbolic link to it when it differs (Debian's
#   /lib64/ld-linux-x86-64.so.2 points into /usr/lib/x86_64-linux-gnu), so
#   the loader finds it either way.
#   Statically linked programs are copied alone.
set -eu
bin=
if [ "${1:-}" = --bin ]; then
    bin=${2:?--bin needs a prefix}
    shift 2
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 [--bin PREFIX] DIR PROGRAM..." >&2
    exit 2
fi
dir=$1
shift
mkdir -p "$dir"

# copy FILE: the real file FILE resolves to goes to the same path under
# DIR; FILE itself, if it is a link, becomes a link to it there.
copy() {
    real=$(readlink -f "$1")
    mkdir -p "$dir$(dirname "$1")" "$dir$(dirname "$real")"
    cp -L "$1" "$dir$real"
    [ "$real" = "$1" ] || ln -sfn "$real" "$dir$1"
}

for program in "$@"; do
    case $program in
        */*) path=$program ;;
        *)
            path=
            for d in $(echo "$PATH" | tr : ' '); do
                if [ -f "$d/$program" ] && [ -x "$d/$program" ]; then path=$d/$program; break; fi
            done
            [ -n "$path" ] || { echo "$0: $program: not found in PATH" >&2; exit 1; }
            ;;
    esac
    [ -f "$path" ] || { echo "$0: $path: no such file" >&2; exit 1; }
    path=$(cd "$(dirname "$path")" && pwd)/$(basename "$path")
    if [ -n "$bin" ]; then
        mkdir -p "$dir/$bin"
        cp -L "$path" "$dir/$bin/$(basename "$path")"
    else
        copy "$path"
    fi
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
    # "/lib64/ld-linux-x86-64.so.2 (0x...)"; "not a dynamic executable"
    # for static programs (ldd then fails: ignored).
    libs=$(ldd "$path" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p') || true
    for lib in $libs; do
        copy "$lib"
    done
    echo "$path: $(echo "$libs" | grep -c / || true) libraries"
done
