#!/bin/sh
# Firewall benchmarks (BENCHMARKS.md), as root. Runs the daemon in a network
# namespace of its own (the host's firewall is never touched).
#
#   tests/firewall-bench.sh latency nftables   300 single bans, one logger call each
#   tests/firewall-bench.sh bulk iptables-ipset  20,000 bans sent at once (N up to 131,070)
#
# BIN (default target/release/banstream), N (count) override.
set -eu
MODE=${1:-latency}
KIND=${2:-nftables}
BIN=${BIN:-target/release/banstream}
NS=bs-bench-$$
D=$(mktemp -d)
PID=
ip netns add $NS
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; ip netns del $NS; rm -rf $D' EXIT
ip -n $NS link set lo up
cat > $D/banstream.toml <<CONF
[paths]
runtime_dir = "$D/run"
state_dir = "$D/state"
[listen]
unix = ["log.sock"]
udp = []
tcp = []
[http]
listen = "127.0.0.1:9640"
[log]
level = "warn"
[jail.sshd]
enabled = false
[jail.pam-generic]
enabled = false
[jail.named-refused]
enabled = false
[jail.ufw-port-scan]
enabled = false
[jail.bench]
filter = "sshd"
maxretry = 1
bantime = "1h"
port = "22"
banaction = "$KIND"
CONF
ip netns exec $NS "$BIN" run -c $D/banstream.toml 2>$D/log &
PID=$!
while [ ! -S $D/run/log.sock ]; do sleep 0.1; done
sleep 0.5
metrics() { ip netns exec $NS curl -s 127.0.0.1:9640/metrics; }
applied() { metrics | awk '/^banstream_ban_latency_seconds_count/ {print $2}'; }
line() { echo "Failed password for root from 198.19.$(($1 / 250)).$(($1 % 250 + 1)) port 4711 ssh2"; }

if [ "$MODE" = latency ]; then
    N=${N:-300}
    i=0
    while [ $i -lt $N ]; do
        logger -u $D/run/log.sock -t sshd "$(line $i)"
        i=$((i + 1))
    done
    while [ "$(applied)" != "$N" ]; do sleep 0.05; done
    echo "$KIND: $N single bans, ban latency histogram (message received -> ban in the kernel):"
    metrics | grep '^banstream_ban_latency_seconds'
else
    N=${N:-20000}
    T0=$(date +%s.%N)
    python3 - "$D/run/log.sock" "$N" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    # 198.18.0.0/15: room for 131,070 distinct addresses.
    a = 0xC6120001 + i
    ip = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
    line = f"<38>Nov 24 14:00:01 sshd[7]: Failed password for root from {ip} port 4711 ssh2"
    s.sendto(line.encode(), sys.argv[1])
PY
    T1=$(date +%s.%N)
    while [ "$(applied)" != "$N" ]; do sleep 0.05; done
    T2=$(date +%s.%N)
    kill -TERM $PID
    wait $PID || true
    PID=
    T3=$(date +%s.%N)
    echo "$KIND: $N bans sent in $(echo "$T1 - $T0" | bc) s, all in the kernel $(echo "$T2 - $T0" | bc) s after the first; shutdown with teardown $(echo "$T3 - $T2" | bc) s"
fi
