#!/usr/bin/env bash
# `make demo`: deploy-guard's main job on a throwaway host, in under a minute once the host's
# root file system is cached (its first build takes a few minutes).
#
# The host is a Debian container with systemd as PID 1, real sshd on 127.0.0.1 and sample
# backup units (real restic). Each scene is a function; add one by writing `scene_NAME` and
# listing it in SCENES.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "make demo needs root (it boots a container with systemd-nspawn)" >&2
  exit 1
fi

DEMO_STATE=${DEMO_STATE:-/tmp/deploy-guard-demo}
VENV=${VENV:-.venv}
SCENES=(scene_init_and_plan scene_guarded_apply scene_artifact_missing scene_gate_closes
        scene_override)

scripts/install-deps.sh
make --no-print-directory venv VENV="$VENV" >/dev/null

python=$PWD/$VENV/bin/python
deploy_guard=$PWD/$VENV/bin/deploy-guard
"$python" -m tests.testbed down --state "$DEMO_STATE" >/dev/null
echo "booting the demo host 'forge' (systemd + sshd in a container)..."
"$python" -m tests.testbed up forge --state "$DEMO_STATE" >"$DEMO_STATE.log" 2>&1 ||
  { cat "$DEMO_STATE.log" >&2; exit 1; }
trap 'cd "$root" && "$python" -m tests.testbed down --state "$DEMO_STATE" >/dev/null' EXIT

# The testbed's HOME holds the ssh key, config and known_hosts for 'forge' (it logs in as
# root there); deploy-guard's state (reports, audit log) goes there too.
export HOME=$DEMO_STATE/home
export DEPLOY_GUARD_SSH_CONFIG=$HOME/.ssh/config
export NO_COLOR=1
config=$DEMO_STATE/deploy-guard.toml
workdir=$DEMO_STATE/work
mkdir -p "$workdir/bin"

# The deploy command of the demo: prints what a real deploy would run.
cat >"$workdir/bin/deploy" <<'EOF'
#!/bin/sh
echo "deploy (stand-in): would run: nixos-rebuild switch --flake .#$1 --target-host root@$1 --sudo"
EOF
chmod +x "$workdir/bin/deploy"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
  printf '\n$ %s\n' "$*"
  "$@"
}
on_host() { ssh -F "$DEPLOY_GUARD_SSH_CONFIG" forge "$@"; }

scene_init_and_plan() {
  say "1. A first configuration from what the host has, and the plan (starts nothing)"
  show "$deploy_guard" init forge --output "$config" --force
  # Faster polling than the default 0.5s keeps the demo short; behaviour is the same.
  sed -i 's/^parallel = 32$/parallel = 32\npoll_interval = "0.2s"/' "$config"
}

scene_guarded_apply() {
  say "2. apply: every backup runs and succeeds, then the deploy goes ahead"
  show "$deploy_guard" apply forge --config "$config" -q -- "$workdir/bin/deploy" '{host}'
}

# A "backup" whose script says it backed up and exits 0, but never calls restic: systemd
# calls that a success; stage 4 reads the repository and finds no snapshot of /srv/notes.
NOTES_UNIT='[Unit]
Description=restic backup notes (demo: exits 0 without calling restic)
[Service]
Type=oneshot
Environment=RESTIC_REPOSITORY=/var/lib/restic-repo
Environment=RESTIC_PASSWORD_FILE=/etc/restic/password
ExecStart=/bin/echo restic backup /srv/notes'

scene_artifact_missing() {
  say "3. A backup exits 0 without making a backup: caught by its missing artifact (stage 4)"
  printf '%s\n' "$NOTES_UNIT" |
    on_host 'cat > /etc/systemd/system/restic-backups-notes.service && systemctl daemon-reload'
  # --max-age: units that succeeded within 10 minutes (in scene 2) are `fresh`, not rerun.
  local status=0
  show "$deploy_guard" run forge --config "$config" -q --max-age 10m || status=$?
  echo "(exit status $status: systemd said success, the repository says no snapshot)"
  on_host 'rm /etc/systemd/system/restic-backups-notes.service && systemctl daemon-reload'
  [ "$status" != 0 ]
}

# A new backup job whose repository is not there: restic fails, for a real reason.
OFFSITE_UNIT='[Unit]
Description=restic backup to the offsite disk (demo)
[Service]
Type=oneshot
Environment=RESTIC_REPOSITORY=/mnt/offsite/restic
Environment=RESTIC_PASSWORD_FILE=/etc/restic/password
ExecStart=/usr/bin/restic backup --no-cache /etc'

scene_gate_closes() {
  say "4. A new backup fails (its disk is not mounted): the gate closes, nothing is deployed"
  printf '%s\n' "$OFFSITE_UNIT" |
    on_host 'cat > /etc/systemd/system/restic-backups-offsite.service && systemctl daemon-reload'
  # --max-age: units that succeeded within 10 minutes (in scene 2) are `fresh`, not rerun.
  local status=0
  show "$deploy_guard" apply forge --config "$config" -q --max-age 10m \
    -- "$workdir/bin/deploy" '{host}' || status=$?
  echo "(exit status $status: nothing was deployed)"
  [ "$status" != 0 ]
}

scene_override() {
  say "5. The deploy is the fix: override the gate, on the record"
  local status=0
  show "$deploy_guard" apply forge --config "$config" -q --max-age 10m \
    --override "demo: offsite disk is being replaced, ticket #42" \
    -- "$workdir/bin/deploy" '{host}' || status=$?
  echo "(exit status $status: deployed on the record; the failure is still reported)"
  printf '\n$ tail -n 1 ~/.local/state/deploy-guard/audit.jsonl\n'
  tail -n 1 "$HOME/.local/state/deploy-guard/audit.jsonl" | "$python" -m json.tool
  show "$deploy_guard" history --limit 3 --config "$config"
}

cd "$workdir"
started=$SECONDS
for scene in "${SCENES[@]}"; do
  scene_started=$SECONDS
  "$scene"
  echo "[${scene#scene_}: $((SECONDS - scene_started))s]"
done
echo
echo "demo: $((SECONDS - started))s from the first command to the last (host boot excluded)"
