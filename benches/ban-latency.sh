#!/usr/bin/env bash
# Ban latency under background load, with a real firewall backend, as root.
# The daemon runs in a network namespace of its own (the host firewall is
# never touched); the load generator sends RATE (50,000) msgs/s of noise
# (no attacks) over UDP, and N (300) single bans are triggered one at a time,
# GAP seconds apart, each by one datagram from a distinct address.
#
#   cargo build --release && benches/ban-latency.sh nftables
#   benches/ban-latency.sh iptables-ipset
#
# Two measurements of each ban:
#   inside   banstream_ban_latency_seconds (datagram received -> the backend
#            reported the ban applied): p50/p99 interpolated in the histogram
#            buckets, max as the upper bound of the highest bucket used;
#   outside  from just before the triggering datagram is sent to the first
#            TCP connect from the banned address to port 22 that the kernel
#            refuses (a local route makes 10.200.0.0/16 the namespace's own,
#            so the probe can send from each attacker address; a listener
#            accepts connects until the ban is in). Probes are PROBE_GAP
#            (0.2 ms) apart plus their own ~0.1 ms, so the probe loop does
#            not take a whole core from the daemon on a 2-core machine.
#
# BIN (default target/release/banstream), LOADGEN, N, RATE, GAP, PROBE_GAP override.
set -euo pipefail
KIND=${1:-nftables}
BIN=${BIN:-target/release/banstream}
LOADGEN=${LOADGEN:-target/release/banstream-loadgen}
N=${N:-300}
RATE=${RATE:-50000}
GAP=${GAP:-0.02}
PROBE_GAP=${PROBE_GAP:-0.0002}
NS=bs-lat-$$
D=$(mktemp -d "/tmp/banstream-lat-$$.XXXX")
PID=
LG=
cleanup() {
    [ -n "$LG" ] && kill "$LG" 2>/dev/null || true
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" route add local 10.200.0.0/16 dev lo

cat > "$D/banstream.toml" <<CONF
[paths]
runtime_dir = "$D/run"
state_dir = "$D/state"
[listen]
udp = ["127.0.0.1:5514"]
tcp = []
unix = []
[http]
listen = "127.0.0.1:9640"
[log]
level = "warn"
[defaults]
banaction = "$KIND"
[jail.bench]
filter = "sshd"
maxretry = 1
bantime = "1h"
port = "22"
ignoreself = false
CONF
"$LOADGEN" corpus --lines 200000 --format wire --attack-percent 0 > "$D/noise.wire"

ip netns exec "$NS" "$BIN" run -c "$D/banstream.toml" 2>"$D/log" &
PID=$!
metrics() { ip netns exec "$NS" curl -s 127.0.0.1:9640/metrics; }
until metrics >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || { cat "$D/log"; exit 1; }
    sleep 0.05
done

# Enough background for the whole run (each ban takes GAP plus its latency).
SECS=$(awk "BEGIN {print int($N * ($GAP + 0.01) + 5)}")
ip netns exec "$NS" "$LOADGEN" send --udp 127.0.0.1:5514 --rate "$RATE" --seconds "$SECS" "$D/noise.wire" >"$D/loadgen.out" &
LG=$!
sleep 1

ip netns exec "$NS" python3 - "$N" "$GAP" "$PROBE_GAP" <<'PY'
import errno, select, socket, struct, sys, threading, time

n, gap, probe_gap = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("0.0.0.0", 22))
lst.listen(4096)


def accept():
    while True:
        c, _ = lst.accept()
        c.close()


threading.Thread(target=accept, daemon=True).start()
linger = struct.pack("ii", 1, 0)


def passes(ip):
    """Whether a connect from ip to ip:22 gets through the firewall."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.bind((ip, 0))
    s.setblocking(False)
    r = s.connect_ex((ip, 22))
    if r == errno.EINPROGRESS:
        _, w, _ = select.select([], [s], [], 0.05)
        r = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else errno.ETIMEDOUT
    s.close()
    return r == 0


tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
lat, probes, missed = [], 0, 0
for i in range(n):
    ip = f"10.200.{i // 250}.{i % 250 + 1}"
    if not passes(ip):
        sys.exit(f"{ip} is refused before its ban: the probe does not work")
    msg = f"<38>Nov 24 14:00:01 sshd[7]: Failed password for root from {ip} port 4711 ssh2"
    t0 = time.perf_counter_ns()
    tx.sendto(msg.encode(), ("127.0.0.1", 5514))
    while passes(ip):
        probes += 1
        if probe_gap > 0:
            time.sleep(probe_gap)
        if time.perf_counter_ns() - t0 > 5e9:
            missed += 1
            break
    lat.append((time.perf_counter_ns() - t0) / 1e6)
    time.sleep(gap)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"outside: {n} bans, p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, max {lat[-1]:.3f} ms"
      f" (mean {sum(lat) / len(lat):.3f} ms, {probes / n:.0f} probes per ban, {missed} never refused in 5 s)")
PY

wait "$LG" || true
LG=
metrics > "$D/metrics"
python3 - "$D/metrics" "$KIND" "$RATE" "$(cat "$D/loadgen.out")" <<'PY'
import sys
buckets, count, total, msgs, dropped = [], 0, 0.0, 0, 0
for line in open(sys.argv[1]):
    if line.startswith("banstream_ban_latency_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), int(float(line.split()[-1]))))
    elif line.startswith("banstream_ban_latency_seconds_count"):
        count = int(float(line.split()[-1]))
    elif line.startswith("banstream_ban_latency_seconds_sum"):
        total = float(line.split()[-1])
    elif line.startswith("banstream_messages_total"):
        msgs += int(float(line.split()[-1]))
    elif line.startswith("banstream_messages_dropped_total"):
        dropped += int(float(line.split()[-1]))


def quantile(p):
    # As Prometheus's histogram_quantile: linear within the bucket.
    rank, lo, below = p * count, 0.0, 0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (rank - below) / max(c - below, 1)
        lo, below = le, c
    return lo


top = next((le for le, c in buckets if c == count), float("inf"))
print(f"inside ({sys.argv[2]}): {count} bans, p50 {quantile(0.5) * 1e3:.3f} ms, p99 {quantile(0.99) * 1e3:.3f} ms,"
      f" max <= {top * 1e3:g} ms (mean {total / max(count, 1) * 1e3:.3f} ms)")
print("histogram: " + ", ".join(f"<= {le * 1e3:g} ms: {c}" for le, c in buckets if le != float("inf")))
print(f"background: {sys.argv[4]}; received {msgs} (incl. the bans), dropped {dropped}")
PY
