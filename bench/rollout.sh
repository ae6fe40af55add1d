#!/usr/bin/env bash
# Rollout cost against a lab of N sites (default 34, the whole city): a fresh site.yml, then a
# no-change site.yml (must report changed=0), each with wall time, controller CPU (user+sys of
# ansible-playbook and everything it ran, nsenter'd module runs included) and the machine's load.
# Own lab (GERBANG_LAB=bench-roll), torn down at the end. The machine is shared: note the load.
#   bench/rollout.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-34}
export GERBANG_LAB=${GERBANG_LAB:-bench-roll} PATH="$PWD/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1

sites=$(.venv/bin/python bench/sites.py "$N")
cleanup() { bash scripts/lab/lab-down.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
bash scripts/lab/lab-up.sh --sites "$sites" >/dev/null

log=$(mktemp)
run() {  # run <label>: one timed site.yml over the lab's sites
  /usr/bin/time -o "$log.time" -f '%e %U %S' ansible-playbook site.yml --limit "$sites" >"$log" 2>&1 || true
  read -r wall user sys <"$log.time"
  local changed
  changed=$(awk '/ changed=/ {split($4, a, "="); s += a[2]} END {print s + 0}' "$log")
  if grep -qE 'failed=[1-9]|unreachable=[1-9]' "$log"; then
    tail -n 40 "$log" >&2
    echo "rollout failed (above)" >&2
    exit 1
  fi
  printf '%-10s %3d sites  wall %7.1f s  controller CPU %7.1f s  changed tasks %3d  load %s\n' \
    "$1" "$N" "$wall" "$(awk "BEGIN {print $user + $sys}")" "$changed" "$(cut -d' ' -f1 /proc/loadavg)"
}
echo "cores: $(nproc); $(ansible --version | sed -n 1p)"
run fresh
run no-change
rm -f "$log" "$log.time"
