#!/usr/bin/env bash
# Installs the Debian packages agentrt needs, when they are missing: the sandboxes
# (bubblewrap, gVisor's runsc, libseccomp2 for bubblewrap's seccomp filter, and
# util-linux's setpriv and prlimit), sqlite3 for inspecting the store, python3-venv,
# and PostgreSQL's server programs (initdb, pg_ctl: the fleet tests start a cluster of their own).
# Needs root (or passwordless sudo) only when something must be installed.
set -euo pipefail

packages=(python3-venv sqlite3 bubblewrap runsc libseccomp2 util-linux postgresql)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "agentrt setup: not a Debian-like system; install these yourself: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "agentrt setup: run as root to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "agentrt setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
