#!/usr/bin/env bash
# Resident memory of the release daemon (dry-run, loopback, temporary
# config and state), read from /proc/PID/status (VmRSS now, VmHWM peak):
#
#   idle     after start, nothing received (the default jails enabled)
#   tracked  after TRACKED (1,000,000) distinct addresses with one failure
#            each (maxretry 5: tracked, not banned)
#   bans     after BANS (100,000) bans in force (maxretry 1, `log` action)
#   flood    FLOOD_ROUNDS x FLOOD (500,000) unique addresses into a jail
#            capped at CAP (100,000) tracked addresses: RSS after each round
#
#   cargo build --release && benches/memory.sh [idle|tracked|bans|flood|all]
#
# BIN (default target/release/banstream), LOADGEN (default
# target/release/banstream-loadgen) and RATE (UDP messages/s, default
# 100000) override. Each phase runs its own daemon and checks with
# banstream_messages_total that nothing was lost on the way.
set -euo pipefail
PHASE=${1:-all}
BIN=${BIN:-target/release/banstream}
LOADGEN=${LOADGEN:-target/release/banstream-loadgen}
RATE=${RATE:-100000}
TRACKED=${TRACKED:-1000000}
BANS=${BANS:-100000}
CAP=${CAP:-100000}
FLOOD=${FLOOD:-500000}
FLOOD_ROUNDS=${FLOOD_ROUNDS:-4}
dir=$(mktemp -d "/tmp/banstream-mem-$$.XXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

# Writes N wire-format sshd failures from N distinct IPv4 addresses
# starting at 11.0.0.0 + OFFSET (pids vary, as real sshd sessions do).
corpus() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys
n, off, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(off, off + n):
        a = (11 << 24) + i
        ip = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        f.write(f"<38>Nov 24 14:00:01 sshd[{1000 + i % 60000}]: Failed password for root from {ip} port 4711 ssh2\n")
PY
}

# start NAME JAIL_TOML: a daemon on free ports with the given jail config.
start() {
    local name=$1 jail=$2
    UDP=$(free_port udp)
    HTTP=$(free_port tcp)
    mkdir -p "$dir/$name"
    cat > "$dir/$name/banstream.toml" <<TOML
[paths]
runtime_dir = "$dir/$name/run"
state_dir = "$dir/$name/state"
[listen]
udp = ["127.0.0.1:$UDP"]
tcp = []
unix = []
[http]
listen = "127.0.0.1:$HTTP"
[log]
level = "warn"
$jail
TOML
    "$BIN" run --dry-run -c "$dir/$name/banstream.toml" 2>"$dir/$name/log" &
    pid=$!
    until "$BIN" status --socket "$dir/$name/run/banstream.sock" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/$name/log"; exit 1; }
        sleep 0.05
    done
}

stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

metric() {
    curl -s "127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

mem() {
    awk '/^VmRSS|^VmHWM/ {printf "%s %.1f MB  ", $1, $2 / 1024}' "/proc/$pid/status"
}

# Waits until metric $1 reaches $2 or stops moving for 2 s.
settle() {
    local last= same=0 v
    while :; do
        v=$(metric "$1")
        v=${v:-0}
        [ "$v" = "$2" ] && return 0
        if [ "$v" = "$last" ]; then same=$((same + 1)); else same=0; fi
        [ $same -ge 20 ] && { echo "  ($1 stopped at $v, expected $2)"; return 0; }
        last=$v
        sleep 0.1
    done
}

send() {
    "$LOADGEN" send --udp "127.0.0.1:$UDP" --rate "$RATE" --count "$2" "$1" >/dev/null
}

report_loss() {
    local got dropped
    got=$(metric 'banstream_messages_total{transport="udp"}')
    dropped=$(curl -s "127.0.0.1:$HTTP/metrics" | awk '/^banstream_messages_dropped_total/ {s += $2} END {print s + 0}')
    echo "  received $got of $1 sent, dropped (all reasons) $dropped"
}

idle() {
    start idle ""
    sleep 2
    echo "idle (default jails, dry-run): $(mem)"
    stop
}

tracked() {
    corpus "$TRACKED" 0 "$dir/tracked.wire"
    start tracked "[jail.sshd]
maxretry = 5
findtime = \"1h\"
max_tracked = $((TRACKED + TRACKED / 10))"
    echo "tracked: before: $(mem)"
    send "$dir/tracked.wire" "$TRACKED"
    settle 'banstream_failures_total{jail="sshd"}' "$TRACKED"
    report_loss "$TRACKED"
    echo "  tracked $("$BIN" status sshd --json --socket "$dir/tracked/run/banstream.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["currently_failed"])')"
    echo "tracked: $TRACKED addresses: $(mem)"
    stop
}

bans() {
    corpus "$BANS" 0 "$dir/bans.wire"
    start bans "[jail.sshd]
maxretry = 1
bantime = \"1d\""
    echo "bans: before: $(mem)"
    send "$dir/bans.wire" "$BANS"
    settle 'banstream_bans_active{jail="sshd"}' "$BANS"
    report_loss "$BANS"
    echo "bans: $(metric 'banstream_bans_active{jail="sshd"}') active: $(mem)"
    stop
}

flood() {
    start flood "[jail.sshd]
maxretry = 5
findtime = \"1h\"
max_tracked = $CAP"
    echo "flood: cap $CAP, before: $(mem)"
    local r=0
    while [ $r -lt "$FLOOD_ROUNDS" ]; do
        corpus "$FLOOD" $((r * FLOOD)) "$dir/flood.wire"
        send "$dir/flood.wire" "$FLOOD"
        r=$((r + 1))
        settle 'banstream_failures_total{jail="sshd"}' $((r * FLOOD))
        local tracked
        tracked=$("$BIN" status sshd --json --socket "$dir/flood/run/banstream.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["currently_failed"])')
        echo "flood: after $((r * FLOOD)) unique: tracked $tracked, evictions $(metric 'banstream_window_evictions_total{jail="sshd"}'): $(mem)"
    done
    report_loss $((FLOOD_ROUNDS * FLOOD))
    stop
}

case $PHASE in
    idle) idle ;;
    tracked) tracked ;;
    bans) bans ;;
    flood) flood ;;
    all) idle; tracked; bans; flood ;;
    *) echo "usage: $0 [idle|tracked|bans|flood|all]" >&2; exit 2 ;;
esac
