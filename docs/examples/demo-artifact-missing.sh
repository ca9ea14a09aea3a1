#!/bin/sh
# Demo scene for stage 4 (issue 16): a backup that exits 0 without making a backup is caught.
#
# Run after `python -m tests.testbed up forge --state DIR` (what `make demo` does), with
# HOME=DIR/home and DEPLOY_GUARD_SSH_CONFIG=DIR/home/.ssh/config exported. It installs
# restic-backups-notes.service on forge: a "backup" whose script says it backed up and exits
# 0, but never calls restic. systemd calls that a success; deploy-guard reads the repository,
# finds no snapshot of /srv/notes, and fails the unit: "missing".
set -eu
host=${1:-forge}
deploy_guard=${DEPLOY_GUARD:-deploy-guard}
ssh -F "$DEPLOY_GUARD_SSH_CONFIG" "$host" 'cat > /etc/systemd/system/restic-backups-notes.service' <<'UNIT'
[Unit]
Description=restic backup notes (demo: exits 0 without calling restic)

[Service]
Type=oneshot
Environment=RESTIC_REPOSITORY=/var/lib/restic-repo
Environment=RESTIC_PASSWORD_FILE=/etc/restic/password
# A wrapper that prints the command it should have run, and exits 0.
ExecStart=/bin/echo restic backup /srv/notes
UNIT
ssh -F "$DEPLOY_GUARD_SSH_CONFIG" "$host" systemctl daemon-reload
config=$(mktemp --suffix=.toml)
trap 'rm -f "$config"' EXIT
cat > "$config" <<'TOML'
[[stages]]
name = "applications"
timeout = "2m"
units = ["restic-backups-home.service", "restic-backups-notes.service"]

TOML
echo "\$ deploy-guard plan $host --config ..."
"$deploy_guard" plan "$host" --config "$config"
echo
echo "\$ deploy-guard run $host --config ...   # home is verified, notes is caught: missing"
status=0
"$deploy_guard" run "$host" --config "$config" || status=$?
echo "exit status $status (1: a backup did not happen)"
