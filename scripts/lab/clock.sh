#!/usr/bin/env bash
# Lab clock control for schedule tests: libfaketime inside a lab gateway (a container shares the
# host kernel's clock, so only user-space time can be moved, per process).
#
#   clock.sh run SITE 'TIME' CMD...      run one command on SITE's gateway under the fake clock
#   clock.sh service SITE UNIT 'TIME'    restart UNIT (e.g. squid) under a clock starting at TIME
#                                        (the site's local time when the unit sets TZ, as squid does)
#   clock.sh service SITE UNIT --real    back to the real clock (drop-in removed, UNIT restarted)
#   clock.sh verify SITE                 prove libfaketime moves Squid's `acl time` on that gateway
#
# TIME is local time as faketime takes it: '2026-11-23 06:59:30' (then the clock runs on from
# there). What it cannot move: the kernel's clock, so nftables `meta hour/day` rules and
# anything timed by the kernel keep real time (docs/lab.md, "Time control").
set -euo pipefail
LAB=${GERBANG_LAB:-lab}
LIBFAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1

usage() { sed -n '2,14p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1 site=$2
shift 2
container="$LAB-$site"
podman container exists "$container" || { echo "clock: no container $container (lab $LAB up?)" >&2; exit 1; }
on_gateway() { podman exec "$container" "$@"; }

case "$action" in
run)
  [ $# -ge 2 ] || usage
  when=$1; shift
  on_gateway faketime -f "@$when" "$@"
  ;;
service)
  [ $# -eq 2 ] || usage
  unit=$1 when=$2
  dropin="/run/systemd/system/$unit.service.d"
  if [ "$when" = --real ]; then
    on_gateway sh -c "rm -rf $dropin; [ \"\$(cat /etc/ld.so.preload 2>/dev/null)\" = $LIBFAKETIME ] && rm -f /etc/ld.so.preload || true"
  else
    # Squid's kids run as `proxy` after an exec from root (secure execution): the loader ignores
    # LD_PRELOAD there, but honours /etc/ld.so.preload. Loaded everywhere, libfaketime moves
    # only processes whose environment has FAKETIME: the unit's, from a runtime drop-in (/run,
    # never seen by the roles' idempotence, gone at the next boot). FAKETIME_DONT_RESET: the
    # kids continue the parent's fake clock instead of restarting it.
    on_gateway sh -c "echo $LIBFAKETIME > /etc/ld.so.preload && mkdir -p $dropin && printf '%s\n' '[Service]' \
      'Environment=\"FAKETIME=@$when\"' 'Environment=FAKETIME_DONT_RESET=1' > $dropin/faketime.conf"
  fi
  on_gateway systemctl daemon-reload
  on_gateway systemctl restart "$unit"
  echo "clock: $unit on $site runs on $([ "$when" = --real ] && echo 'the real clock' || echo "a clock started at $when")"
  ;;
verify)
  # A throw-away Squid on the gateway's loopback (own config, ports 3990/3991, own pid and
  # logs under /tmp) denying by a working-hours `acl time`; a local web server answers what
  # is allowed. Asked the same request at 06:59:30 and at 07:00:30 on a Monday.
  podman exec -i "$container" sh -c 'cat > /tmp/clock-verify.conf' <<'CONF'
http_port 127.0.0.1:3990
visible_hostname clock-verify
pid_filename /tmp/clock-verify.pid
access_log stdio:/tmp/clock-verify-access.log
cache_log /tmp/clock-verify-cache.log
cache deny all
shutdown_lifetime 0 seconds
acl working_hours time MTWHF 07:00-16:00
http_access deny working_hours
http_access allow localhost
http_access deny all
CONF
  on_gateway sh -c 'cd /tmp && exec python3 -m http.server --bind 127.0.0.1 3991 >/dev/null 2>&1' &
  web=$!
  trap 'kill $web 2>/dev/null; on_gateway sh -c "pkill -f \"[h]ttp.server --bind 127.0.0.1 3991\"; [ -f /tmp/clock-verify.pid ] && kill \$(cat /tmp/clock-verify.pid)" 2>/dev/null || true' EXIT
  for i in $(seq 100); do on_gateway curl -s -o /dev/null http://127.0.0.1:3991/ && break; sleep 0.1; done
  status_at() {
    on_gateway sh -c "faketime -f '@$1' squid -N -f /tmp/clock-verify.conf & sq=\$!
      for i in \$(seq 100); do ss -Hltn 'sport = :3990' | grep -q . && break; sleep 0.1; done
      curl -s -o /dev/null -w '%{http_code}' -x 127.0.0.1:3990 http://127.0.0.1:3991/
      kill \$(cat /tmp/clock-verify.pid); wait \$sq 2>/dev/null
      for i in \$(seq 100); do ss -Hltn 'sport = :3990' | grep -q . || break; sleep 0.1; done"
  }
  before=$(status_at '2026-11-23 06:59:30')   # 2026-11-23 is a Monday
  after=$(status_at '2026-11-23 07:00:30')
  real=$(on_gateway date '+%a %H:%M')
  echo "squid acl time MTWHF 07:00-16:00 (deny): Mon 06:59:30 -> HTTP $before, Mon 07:00:30 -> HTTP $after (real clock: $real)"
  [ "$before" = 200 ] && [ "$after" = 403 ] || { echo "clock: libfaketime did NOT steer squid's time ACL" >&2; exit 1; }
  echo "clock: libfaketime steers squid's time ACL on $site"
  ;;
*) usage ;;
esac
