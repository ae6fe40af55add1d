#!/usr/bin/env bash
# The short printed check of what the city enforces now (scripts/lab/city-check.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python scripts/lab/city-check.py "$@"
