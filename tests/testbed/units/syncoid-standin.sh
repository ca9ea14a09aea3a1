#!/bin/sh
# Stand-in for `syncoid tank/DATASET nas:backup/DATASET`: "send" the sanoid snapshot markers
# by copying them, slowly enough that a caller must wait for a Type=simple unit to finish.
set -eu
dataset=$1
target=/var/lib/syncoid-standin/$dataset
mkdir -p "$target"
if ls /var/lib/sanoid-standin/* >/dev/null 2>&1; then
    cp -p /var/lib/sanoid-standin/* "$target"/
fi
echo "syncoid stand-in: replicated tank/$dataset to nas:backup/$dataset"
sleep 1.5
