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
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
echo "$want" > "$stamp"
echo "bootstrap: .venv ready ($(.venv/bin/ansible --version | head -1))"
