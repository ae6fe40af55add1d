#!/usr/bin/env bash
# Build the lab's gateway image locally (no image registry is reachable): debootstrap Debian 12
# with systemd as PID 1 and every package the roles install pre-baked (the roles' package step
# is then a no-op in the lab; on real gateways it installs them). Services stay disabled: the
# roles enable what they configure. Cached: rebuilt only when this recipe changes.
set -euo pipefail
IMAGE=localhost/gerbang-gw
RECIPE_HASH=$(sha256sum "$0" | cut -c1-12)
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,nftables,iputils-ping,procps,ca-certificates,\
squid-openssl,dnsmasq,iperf3,curl,dnsutils,isc-dhcp-client,tcpdump,less,faketime,openssl,\
prometheus,prometheus-node-exporter

# Several engineers (and CI) may call this at once: one builds, the others wait and reuse it.
exec 9>/run/lock/gerbang-gw-image.lock
flock 9
if podman image exists "$IMAGE:$RECIPE_HASH"; then
  podman tag "$IMAGE:$RECIPE_HASH" "$IMAGE:latest"
  echo "build-image: $IMAGE:$RECIPE_HASH is current"
  exit 0
fi
rootfs=$(mktemp -d /var/tmp/gerbang-gw-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
start=$SECONDS
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" >/dev/null
# Quiet image: the roles enable what they configure; no gettys, no periodic jobs.
chroot "$rootfs" systemctl disable squid dnsmasq prometheus prometheus-node-exporter \
  apt-daily-upgrade.timer apt-daily.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
chroot "$rootfs" systemctl mask systemd-pstore.service getty@tty1.service serial-getty@.service \
  console-getty.service systemd-logind.service >/dev/null 2>&1 || true
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
  --change 'ENV container=podman' - "$IMAGE:$RECIPE_HASH" >/dev/null
podman tag "$IMAGE:$RECIPE_HASH" "$IMAGE:latest"
echo "build-image: built $IMAGE:$RECIPE_HASH in $((SECONDS - start)) s"
