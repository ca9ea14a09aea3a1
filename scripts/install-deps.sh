#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to run the tests (`.ci/run`) and the demo
# (`make demo`): one list for both. Packages come from the machine's own apt sources.
# Usage: scripts/install-deps.sh            install what is missing (needs root)
#        scripts/install-deps.sh --check    only list what is missing; exit 1 if anything is
set -euo pipefail

check_only=false
if [ "${1:-}" = "--check" ]; then
  check_only=true
fi

missing=()
# Each line: a test that passes when the tool is present, then the Debian package providing it.
need() {
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || missing+=("$package")
}
need systemd-container command -v systemd-nspawn
need debootstrap sh -c 'command -v debootstrap || [ -x /usr/sbin/debootstrap ]'
need openssh-server test -x /usr/sbin/sshd
need openssh-client command -v ssh
need restic command -v restic
need nix-bin command -v nix-instantiate
need jq command -v jq
need shellcheck command -v shellcheck
need make command -v make
need git command -v git
need python3-venv python3 -c 'import ensurepip, venv'

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if $check_only; then
  echo "missing: ${missing[*]}"
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
