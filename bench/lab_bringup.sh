#!/usr/bin/env bash
# Bring-up time and memory of a lab of N sites (default 34, the whole city), then tear-down
# time and a check that nothing is left (lab.py verify-clean). Runs in its own lab (GERBANG_LAB=bench-up), so other
# labs on the machine are untouched. The machine is shared: figures are noisy, run it twice.
#   bench/lab_bringup.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-34}
export GERBANG_LAB=${GERBANG_LAB:-bench-up}

sites=$(.venv/bin/python bench/sites.py "$N")
available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
lab_containers() { podman ps -q --filter "label=gerbang-lab=$GERBANG_LAB"; }

before=$(available_kib)
start=$(date +%s.%N)
bash scripts/lab/lab-up.sh --sites "$sites" >/dev/null
up_s=$(awk "BEGIN {print $(date +%s.%N) - $start}")
sleep 5   # let the gateways' systemd settle before reading memory
after=$(available_kib)
cgroup_bytes=0
for id in $(podman inspect -f '{{.Id}}' $(lab_containers)); do
  usage=$(cat "/sys/fs/cgroup/memory/libpod_parent/libpod-$id/memory.usage_in_bytes" 2>/dev/null || echo 0)
  cgroup_bytes=$((cgroup_bytes + usage))
done
count=$(lab_containers | wc -l)
clients=$(ip netns list | grep -c "^$GERBANG_LAB-c" || true)

start=$(date +%s.%N)
bash scripts/lab/lab-down.sh >/dev/null
down_s=$(awk "BEGIN {print $(date +%s.%N) - $start}")

printf 'lab of %s site(s): %s gateway containers, %s client namespaces\n' "$N" "$count" "$clients"
printf '  bring-up (namespaces, internet, containers, systemd running): %.1f s\n' "$up_s"
printf '  host memory used by the lab (MemAvailable drop): %d MiB\n' $(((before - after) / 1024))
printf '  gateway containers (cgroup memory, incl. page cache): %d MiB total, %d MiB each\n' \
  $((cgroup_bytes / 1048576)) $((cgroup_bytes / 1048576 / (count > 0 ? count : 1)))
printf '  tear-down: %.1f s\n' "$down_s"
# Containers, namespaces, the state folder and processes of this lab: each one left is named.
.venv/bin/python scripts/lab/lab.py verify-clean
