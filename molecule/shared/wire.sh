#!/bin/sh
# Wire a role scenario's gateway (a container with no network of its own) to two namespaces the
# scenario owns, named after its PREFIX: PREFIX-up (the "internet": the site's upstream router)
# and PREFIX-lan (the office LAN; one address per client device, all on one veth).
#   wire.sh up [--forward] PREFIX <container-pid> <wan-cidr> <wan-gateway> <lan-cidr> <client-prefixlen> <client-ip>...
#   wire.sh down PREFIX
# --forward turns on routing in the gateway (on a full gateway the nftables role's unit does).
set -eu

usage() { echo "usage: $0 up [--forward] PREFIX PID WAN_CIDR WAN_GW LAN_CIDR CLIENT_PREFIXLEN CLIENT_IP... | down PREFIX" >&2; exit 2; }
[ $# -ge 2 ] || usage
case "$1" in
	down)
		for ns in "$2-up" "$2-lan"; do ip netns del "$ns" 2>/dev/null || true; done
		exit 0
		;;
	up) shift ;;
	*) usage ;;
esac
forward=false
if [ "$1" = --forward ]; then forward=true; shift; fi
[ $# -ge 7 ] || usage

prefix=$1 pid=$2 wan=$3 wan_gw=$4 lan=$5 prefixlen=$6
shift 6
up="$prefix-up" office="$prefix-lan"
for ns in "$up" "$office"; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done
gw_exec() { nsenter -t "$pid" -n "$@"; }

# WAN: container eth0 <-> PREFIX-up/up0 (carries the upstream router's address).
ip link add "$prefix-wan" type veth peer name up0 netns "$up"
ip link set "$prefix-wan" netns "$pid"
gw_exec ip link set "$prefix-wan" name eth0
gw_exec ip addr add "$wan" dev eth0
gw_exec ip link set eth0 up
ip -n "$up" addr add "$wan_gw/${wan#*/}" dev up0
ip -n "$up" link set up0 up
ip -n "$up" link set lo up
# The "internet" can reach the LAN through the gateway (replies, and the no-open-proxy test).
ip -n "$up" route add "$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$lan")" via "${wan%/*}"
gw_exec ip route replace default via "$wan_gw"

# LAN: container eth1 <-> PREFIX-lan/lan0 (every client address).
ip link add "$prefix-lan" type veth peer name lan0 netns "$office"
ip link set "$prefix-lan" netns "$pid"
gw_exec ip link set "$prefix-lan" name eth1
gw_exec ip addr add "$lan" dev eth1
gw_exec ip link set eth1 up
for client in "$@"; do ip -n "$office" addr add "$client/$prefixlen" dev lan0; done
ip -n "$office" link set lan0 up
ip -n "$office" link set lo up
ip -n "$office" route add default via "${lan%/*}"

if $forward; then gw_exec sysctl -qw net.ipv4.ip_forward=1; fi
