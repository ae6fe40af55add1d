#!/usr/bin/env bash
# Prepare this machine to run the lab: Debian packages, then the three per-boot host fixes that
# rootful podman with systemd containers needs here (docs/lab.md). Idempotent; ~2 s when done.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(podman crun debootstrap nftables iproute2 iperf3 iputils-ping dnsutils isc-dhcp-client curl faketime
          dnsmasq-base openssl python3 chromium fonts-dejavu-core time)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 1. crun refuses cgroup "hybrid" mode while the cgroup2 mount still owns controllers: give each
#    such controller its own v1 hierarchy.
for controller in $(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null); do
  mkdir -p "/sys/fs/cgroup/$controller"
  mountpoint -q "/sys/fs/cgroup/$controller" || mount -t cgroup -o "$controller" cgroup "/sys/fs/cgroup/$controller"
done

# 2. No CAP_SYS_RESOURCE here: container rlimits may not exceed the current hard limits, and
#    podman clamps its own nproc to kernel.pid_max.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
mkdir -p /etc/containers
conf=$(cat <<CONF
# Written by gerbang-kota scripts/lab/setup-host.sh
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
[ "$(cat /etc/containers/containers.conf 2>/dev/null)" = "$conf" ] || printf '%s\n' "$conf" > /etc/containers/containers.conf

# 3. Every container's systemd takes inotify instances (default 128 per uid: ~25 containers).
sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576
echo "setup-host: ready"
