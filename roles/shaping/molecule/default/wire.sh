#!/bin/sh
# Wire the molecule gateway (a container with no network of its own) to two namespaces this
# scenario owns: shp-up (the "internet": the site's upstream router) and shp-lan (the office
# LAN; one address per client device, so several devices share one veth).
#   wire.sh up <container-pid> <wan-cidr> <wan-gateway> <lan-cidr> <client-prefixlen> <client-ip>...
#   wire.sh down
set -eu

case "$1" in
	down)
		for ns in shp-up shp-lan; do ip netns del "$ns" 2>/dev/null || true; done
		exit 0
		;;
	up) ;;
	*) echo "usage: $0 up PID WAN_CIDR WAN_GW LAN_CIDR CLIENT_PREFIXLEN CLIENT_IP... | down" >&2; exit 2 ;;
esac

pid=$2 wan=$3 wan_gw=$4 lan=$5 prefixlen=$6
shift 6
for ns in shp-up shp-lan; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done
gw_exec() { nsenter -t "$pid" -n "$@"; }

# WAN: container eth0 <-> shp-up/up0 (carries the upstream router's address).
ip link add shp-wan type veth peer name up0 netns shp-up
ip link set shp-wan netns "$pid"
gw_exec ip link set shp-wan name eth0
gw_exec ip addr add "$wan" dev eth0
gw_exec ip link set eth0 up
ip -n shp-up addr add "$wan_gw/${wan#*/}" dev up0
ip -n shp-up link set up0 up
ip -n shp-up link set lo up
ip -n shp-up route add "$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$lan")" via "${wan%/*}"
gw_exec ip route replace default via "$wan_gw"

# LAN: container eth1 <-> shp-lan/lan0 (every client address).
ip link add shp-lan type veth peer name lan0 netns shp-lan
ip link set shp-lan netns "$pid"
gw_exec ip link set shp-lan name eth1
gw_exec ip addr add "$lan" dev eth1
gw_exec ip link set eth1 up
for client in "$@"; do ip -n shp-lan addr add "$client/$prefixlen" dev lan0; done
ip -n shp-lan link set lan0 up
ip -n shp-lan link set lo up
ip -n shp-lan route add default via "${lan%/*}"

gw_exec sysctl -qw net.ipv4.ip_forward=1
