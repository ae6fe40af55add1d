#!/bin/sh
# Wire the molecule gateway (a container with no network of its own) to two namespaces this
# scenario owns: sq-up (the "internet": the site's upstream router, which also plays every web
# server and the DNS) and sq-lan (the office LAN; one address per client device on one veth).
#   wire.sh up <container-pid> <wan-cidr> <wan-gateway> <lan-cidr> <client-prefixlen> <client-ip>...
#   wire.sh down
set -eu

case "$1" in
	down)
		for ns in sq-up sq-lan; do ip netns del "$ns" 2>/dev/null || true; done
		exit 0
		;;
	up) ;;
	*) echo "usage: $0 up PID WAN_CIDR WAN_GW LAN_CIDR CLIENT_PREFIXLEN CLIENT_IP... | down" >&2; exit 2 ;;
esac

pid=$2 wan=$3 wan_gw=$4 lan=$5 prefixlen=$6
shift 6
for ns in sq-up sq-lan; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done
gw_exec() { nsenter -t "$pid" -n "$@"; }

# WAN: container eth0 <-> sq-up/up0 (carries the upstream router's address).
ip link add sq-wan type veth peer name up0 netns sq-up
ip link set sq-wan netns "$pid"
gw_exec ip link set sq-wan name eth0
gw_exec ip addr add "$wan" dev eth0
gw_exec ip link set eth0 up
ip -n sq-up addr add "$wan_gw/${wan#*/}" dev up0
ip -n sq-up link set up0 up
ip -n sq-up link set lo up
# Lets the "internet" knock on the LAN address (the no-open-proxy test).
ip -n sq-up route add "$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$lan")" via "${wan%/*}"
gw_exec ip route replace default via "$wan_gw"

# LAN: container eth1 <-> sq-lan/lan0 (every client address).
ip link add sq-lan type veth peer name lan0 netns sq-lan
ip link set sq-lan netns "$pid"
gw_exec ip link set sq-lan name eth1
gw_exec ip addr add "$lan" dev eth1
gw_exec ip link set eth1 up
for client in "$@"; do ip -n sq-lan addr add "$client/$prefixlen" dev lan0; done
ip -n sq-lan link set lan0 up
ip -n sq-lan link set lo up
ip -n sq-lan route add default via "${lan%/*}"
