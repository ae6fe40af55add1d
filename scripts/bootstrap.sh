#!/usr/bin/env bash
# Create .venv with the pinned controller tool-chain (requirements.txt). Idempotent: reinstalls
# only when requirements.txt changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# `python3 -m venv --help` works without python3-venv: Debian ships the venv module in the
# standard library but ensurepip (which puts pip into a new venv) in python3.X-venv.
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  echo "bootstrap: ensurepip is missing; installing python3-venv"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "bootstrap: python3 still has no ensurepip after installing python3-venv" >&2
    exit 1
  fi
fi
created=false
if [ ! -e .venv ]; then
  created=true
fi
# A venv created by this run but left unfinished is removed, so the next run starts clean
# instead of finding a .venv without pip (a .venv that was already there is left alone).
cleanup() {
  if [ "$created" = true ] && [ ! -f "$stamp" ]; then
    echo "bootstrap: failed; removing the unfinished .venv" >&2
    rm -rf .venv
  fi
}
trap cleanup EXIT
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
echo "$want" > "$stamp"
echo "bootstrap: .venv ready ($(.venv/bin/ansible --version | head -1))"
