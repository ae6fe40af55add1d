#!/usr/bin/env bash
# Bring up the lab: lab-up.sh [--sites a,b,c] (default: all 34 gateways). See scripts/lab/lab.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python scripts/lab/lab.py up "$@"
