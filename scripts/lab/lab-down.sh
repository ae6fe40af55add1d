#!/usr/bin/env bash
# Remove everything the lab created (containers, namespaces, processes, state).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python scripts/lab/lab.py down "$@"
