#!/bin/sh
# Test hook of the image end-to-end test (tests/tests/image_qemu.rs). The test
# puts it on the config drive as selftest.sh, with selftest.env beside it
# (PROBE_HOST, PROBE_PORT, SELFTEST_INTERVAL); /init starts it after the order
# state is enforced, where a real unit brings up its LAN. Not part of the image.
#
# It builds a clinic LAN inside the VM: lan0 (the device's LAN port,
# 192.168.50.1/24) is a veth whose peer sits in a network namespace as a
# terminal (192.168.50.2, default route via lan0), NATed out of the WAN. Then,
# every SELFTEST_INTERVAL seconds, it prints lines starting "CPE-SELFTEST":
#   tick N uptime=SECONDS
#   table present|absent          the agent's suspension table (inet cpe_agent)
#   ruleset-begin / ruleset-end   `nft list ruleset` between them, when it changed
#                                 (apart from counters)
#   probe open|blocked            a TCP connect from the terminal to PROBE_HOST:PROBE_PORT
#   rss pid=PID kb=VMRSS age=S    the running agent's VmRSS and its age in seconds
# A line typed on the serial console: "cpe-selftest reboot" or "cpe-selftest
# poweroff" asks /init for a clean reboot (SIGTERM) or power-off (SIGUSR2);
# "cpe-selftest kill-agent" kills the agent (SIGKILL) for /init to restart it.

# shellcheck source=/dev/null # written by the test
. /etc/cpe-agent/selftest.env
INTERVAL=${SELFTEST_INTERVAL:-5}
mark() { echo "CPE-SELFTEST $*"; }

# Console commands.
while read -r word command; do
    [ "$word" = cpe-selftest ] || continue
    case "$command" in
        reboot) mark "command reboot" && kill -TERM 1 ;;
        poweroff) mark "command poweroff" && kill -USR2 1 ;;
        kill-agent) mark "command kill-agent" && kill -KILL "$(cat /run/cpe-init/agent.pid)" ;;
        *) mark "command unknown: $command" ;;
    esac
done </dev/console &

# The LAN and its terminal. busybox `ip` ignores "peer name": find the peer.
ip link add lan0 type veth
PEER=$(ip link show | sed -n 's/^[0-9]*: \([^@:]*\)@lan0:.*/\1/p')
unshare -n sleep 2147483647 &
TERMINAL=$!
while [ "$(readlink "/proc/$TERMINAL/ns/net")" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.1; done
ip link set "$PEER" netns "$TERMINAL"
nsenter -t "$TERMINAL" -n sh -c "ip link set lo up && ip link set $PEER name term0 &&
    ip addr add 192.168.50.2/24 dev term0 && ip link set term0 up && ip route add default via 192.168.50.1"
ip addr add 192.168.50.1/24 dev lan0
ip link set lan0 up
echo 1 >/proc/sys/net/ipv4/ip_forward
nft -f - <<'NFT'
table ip selftest_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
NFT
mark "lan ready rc=$? peer=$PEER terminal=$TERMINAL"

n=0
last=
while :; do
    n=$((n + 1))
    mark "tick $n uptime=$(cut -d' ' -f1 /proc/uptime)"
    if nft list table inet cpe_agent >/dev/null 2>&1; then mark "table present"; else mark "table absent"; fi
    ruleset=$(nft list ruleset 2>&1)
    # Changed apart from counters?
    sum=$(echo "$ruleset" | sed 's/packets [0-9]* bytes [0-9]*//' | md5sum)
    if [ "$sum" != "$last" ]; then
        mark "ruleset-begin"
        echo "$ruleset"
        mark "ruleset-end"
        last=$sum
    fi
    if nsenter -t "$TERMINAL" -n nc -w 3 "$PROBE_HOST" "$PROBE_PORT" </dev/null >/dev/null 2>&1; then
        mark "probe open"
    else
        mark "probe blocked"
    fi
    pid=$(cat /run/cpe-init/agent.pid 2>/dev/null)
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
        kb=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
        # Field 22 of /proc/PID/stat: start time in clock ticks (USER_HZ = 100).
        started=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)
        age=$(($(cut -d. -f1 /proc/uptime) - started / 100))
        mark "rss pid=$pid kb=$kb age=$age"
    fi
    sleep "$INTERVAL"
done
