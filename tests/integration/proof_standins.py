"""Stand-ins for `zfs`, `syncoid` and `pgbackrest` inside a testbed host (ZFS and PostgreSQL
cannot run in a container), printing what the real tools print, in their formats:

- `zfs list -Hp -t snapshot -o name,creation [-d 1] [--] [DATASET]`: one `NAME<TAB>EPOCH`
  line per snapshot, no header (OpenZFS 2.x with -H and -p); snapshots live in a state file,
  `zfs snapshot NAME` adds one with the current time.
- `syncoid [options] SOURCE TARGET`: takes a `SOURCE@syncoid_HOST_YYYY-MM-DD:HH:MM:SS-GMT+00:00`
  sync snapshot (syncoid 2.2's naming; real runs print e.g.
  `send/test@syncoid_orion_2025-04-05:09:35:45-GMT-05:00`) unless `--no-sync-snap`.
- `pgbackrest --stanza=S --type=T backup` records a backup; `pgbackrest info --output=json
  --stanza=S` prints the stanza in pgBackRest 2.45's JSON layout (archive, backup[] with
  archive/backrest/database/error/info/label/lsn/prior/reference/timestamp/type, cipher, db,
  name, repo, status), the layout the public pgbackrest_exporter tests record from 2.45.
"""

from __future__ import annotations

from typing import Final

from tests.testbed.host import TestHost

ZFS: Final = r"""#!/bin/sh
# deploy-guard testbed stand-in for OpenZFS's zfs (snapshots only).
state=/var/lib/zfs-standin/snapshots
mkdir -p /var/lib/zfs-standin && touch "$state"
case "$1" in
snapshot)
    printf '%s\t%s\n' "$2" "$(date +%s)" >> "$state" ;;
list)
    shift; dataset=
    while [ $# -gt 0 ]; do
        case "$1" in
        -d|-o|-t|-s) shift 2 ;;
        -*) shift ;;
        *) dataset=$1; shift ;;
        esac
    done
    if [ -n "$dataset" ]; then grep "^$dataset@" "$state" || true; else cat "$state"; fi ;;
*)
    echo "zfs stand-in: unsupported: $*" >&2; exit 2 ;;
esac
"""

SYNCOID: Final = r"""#!/bin/sh
# deploy-guard testbed stand-in for syncoid: the sync snapshot, then "send" it.
sync_snap=yes; args=; skip=no
for arg; do
    if [ "$skip" = yes ]; then skip=no; continue; fi
    case "$arg" in
    --no-sync-snap) sync_snap=no ;;
    --sendoptions|--recvoptions) skip=yes ;;
    -*) ;;
    *) args="$args $arg" ;;
    esac
done
set -- $args
if [ "$sync_snap" = yes ]; then
    zfs snapshot "$1@syncoid_$(uname -n)_$(date +%Y-%m-%d:%H:%M:%S-GMT%:z)"
fi
echo "syncoid stand-in: replicated $1 to $2"
"""

PGBACKREST: Final = r"""#!/bin/sh
# deploy-guard testbed stand-in for pgBackRest: backups in a state file, info as 2.45 JSON.
state=/var/lib/pgbackrest-standin/backups
mkdir -p /var/lib/pgbackrest-standin && touch "$state"
stanza=; type=full; verb=
for arg; do
    case "$arg" in
    --stanza=*) stanza=${arg#--stanza=} ;;
    --type=*) type=${arg#--type=} ;;
    backup|info) verb=$arg ;;
    esac
done
case "$verb" in
backup)
    start=$(date +%s); sleep 1; stop=$(date +%s)
    case "$type" in full) suffix=F ;; diff) suffix=D ;; *) suffix=I ;; esac
    echo "$stanza $start $stop $type $(date -u -d "@$start" +%Y%m%d-%H%M%S)$suffix" >> "$state"
    echo "pgbackrest stand-in: $type backup of stanza $stanza finished" ;;
info)
    wal=000000010000000000000002
    printf '[{"archive":[],"backup":['
    separator=
    while read -r name start stop kind label; do
        [ "$name" = "$stanza" ] || continue
        printf '%s{"archive":{"start":"%s","stop":"%s"},' "$separator" "$wal" "$wal"
        printf '"backrest":{"format":5,"version":"2.45"},'
        printf '"database":{"id":1,"repo-key":1},"error":false,'
        printf '"info":{"delta":24316343,"repository":{"delta":2969512,"size":2969512},'
        printf '"size":24316343},"label":"%s",' "$label"
        printf '"lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,'
        printf '"timestamp":{"start":%s,"stop":%s},"type":"%s"}' "$start" "$stop" "$kind"
        separator=,
    done < "$state"
    printf '],"cipher":"none",'
    printf '"db":[{"id":1,"repo-key":1,"system-id":7000000000000000001,"version":"15"}],'
    printf '"name":"%s",' "$stanza"
    printf '"repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],'
    printf '"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]\n' ;;
*)
    echo "pgbackrest stand-in: unsupported: $*" >&2; exit 2 ;;
esac
"""


def install_standins(host: TestHost) -> None:
    """Put the stand-ins on the host's PATH (/usr/local/sbin)."""
    for name, text in (("zfs", ZFS), ("syncoid", SYNCOID), ("pgbackrest", PGBACKREST)):
        host.write_file(f"/usr/local/sbin/{name}", text, mode=0o755)


def add_snapshot(host: TestHost, name: str, seconds_ago: int) -> None:
    """A snapshot taken ``seconds_ago`` (before the guard ran)."""
    host.ssh(f"mkdir -p /var/lib/zfs-standin && printf '%s\\t%s\\n' '{name}' "
             f"$(( $(date +%s) - {seconds_ago} )) >> /var/lib/zfs-standin/snapshots")  # fmt: skip


# What the NixOS module's deploy-guard-proof@UNIT.service does with jq, in sh and awk (a
# Debian minbase host has no jq): run the check, log one JSON record.
PROOF_RECORD: Final = r"""#!/bin/sh
unit=$1 kind=$2; shift 2
out=$(mktemp) err=$(mktemp); status=0
"$@" >"$out" 2>"$err" || status=$?
encode() {
    awk 'BEGIN { ORS = "" }
         { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); print $0 "\\n" }' "$1"
}
printf '{"deploy_guard_proof":1,"unit":"%s","kind":"%s",' "$unit" "$kind"
printf '"invocation":"%s","exit_status":%s,' "$INVOCATION_ID" "$status"
printf '"stdout":"%s","stderr":"%s"}\n' "$(encode "$out")" "$(encode "$err")"
rm -f "$out" "$err"
"""


def install_proof_unit(host: TestHost, unit: str, kind: str, check: str, service: str) -> str:
    """A deploy-guard-proof@UNIT.service like the module's; its name."""
    host.write_file("/usr/local/lib/deploy-guard-proof-record", PROOF_RECORD, mode=0o755)
    name = f"deploy-guard-proof@{unit.removesuffix('.service')}.service"
    check = check.replace("%", "%%")  # systemd specifiers
    host.install_unit(name, (
        f"[Service]\nType=oneshot\n{service}\n"
        f"ExecStart=/usr/local/lib/deploy-guard-proof-record {unit} {kind} /bin/sh -c '{check}'\n"
    ))  # fmt: skip
    return name
