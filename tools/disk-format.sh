#!/bin/sh
# disk-format.sh IMAGE: prints qcow2 when IMAGE starts with the qcow2
# magic, raw otherwise (for QEMU's -drive format=, which must be given).
if [ "$(head -c 4 "$1" 2>/dev/null)" = "$(printf 'QFI\373')" ]; then
    echo qcow2
else
    echo raw
fi
