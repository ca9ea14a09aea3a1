#!/bin/sh
# Stand-in for `sanoid --cron` (ZFS cannot run inside a container): record a snapshot marker
# where a real run would have taken a snapshot, and take a moment like the real one does.
set -eu
state=/var/lib/sanoid-standin
stamp=$(date -u +%Y-%m-%d_%H:%M:%S)
mkdir -p "$state"
touch "$state/tank-data@autosnap_${stamp}_hourly"
echo "sanoid stand-in: took snapshot tank/data@autosnap_${stamp}_hourly"
sleep 1
