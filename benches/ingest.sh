#!/bin/sh
# UDP and TCP ingest benchmark (issue 9): a dry-run daemon on loopback, the
# loadgen as a separate sender process, counted by banstream_messages_total.
#
#   benches/ingest.sh              # udp ladder, then tcp
#   benches/ingest.sh udp          # only the udp ladder
#   benches/ingest.sh tcp          # only tcp (10 connections, as fast as it goes)
#
# Environment:
#   BIN=target/release/banstream   LOADGEN=target/release/banstream-loadgen
#   RATES="100000 150000 ..."      UDP ladder, msgs/s (stops after two lossy rates)
#   SECS=10                        seconds per UDP rate
#   LINES=1000000                  corpus size (wire format, seeded)
#   TCP_CONNS=10 TCP_COUNT=3000000 TCP connections and messages in total
#   BATCH=64                       sendmmsg batch of the UDP sender
#   THREADS=1                      UDP sender threads (loadgen --threads)
#   RECV_BUFFER=33554432           listen.recv_buffer (SO_RCVBUF(FORCE))
#   QUEUE=65536                    listen.queue (frames between sockets and matcher)
#   WARMUP=300000                  messages sent (at 100k/s) before the ladder, so
#                                  that the burst of first bans (every attacker is
#                                  new) does not land on the first rate; 0: none
#   KEEP=1                         keep the temp dir (daemon log) for a look
#
# Run as root from the repository root (SO_RCVBUFFORCE needs CAP_NET_ADMIN;
# unprivileged, the buffer is capped at net.core.rmem_max).
set -eu

BIN=${BIN:-target/release/banstream}
LOADGEN=${LOADGEN:-target/release/banstream-loadgen}
RATES=${RATES:-"100000 150000 200000 250000 300000 350000 400000 500000"}
SECS=${SECS:-10}
LINES=${LINES:-1000000}
TCP_CONNS=${TCP_CONNS:-10}
TCP_COUNT=${TCP_COUNT:-3000000}
BATCH=${BATCH:-64}
THREADS=${THREADS:-1}
RECV_BUFFER=${RECV_BUFFER:-33554432}
QUEUE=${QUEUE:-65536}
WARMUP=${WARMUP:-300000}
MODE=${1:-all}

for b in "$BIN" "$LOADGEN"; do
    [ -x "$b" ] || { echo "ingest.sh: $b not built (cargo build --release)" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/banstream-ingest.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

# Two free loopback ports (the kernel picks them).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
HPORT=$(free_port)
while [ "$HPORT" = "$PORT" ]; do HPORT=$(free_port); done

echo "# corpus: $LINES wire lines"
"$LOADGEN" corpus --lines "$LINES" --format wire >"$TMP/corpus.wire"

# Only what differs from the built-in defaults (the stock jails run, dry-run
# replaces their actions with log).
cat >"$TMP/banstream.toml" <<EOF
[listen]
udp = ["127.0.0.1:$PORT"]
tcp = ["127.0.0.1:$PORT"]
unix = []
unix_stream = []
recv_buffer = $RECV_BUFFER
queue = $QUEUE

[http]
listen = "127.0.0.1:$HPORT"

[control]
socket = "$TMP/banstream.sock"

[database]
path = "$TMP/banstream.sqlite3"

[log]
level = "warn"
EOF

"$BIN" run --dry-run -c "$TMP/banstream.toml" >"$TMP/daemon.log" 2>&1 &
PID=$!
i=0
until curl -sf "http://127.0.0.1:$HPORT/metrics" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
        echo "ingest.sh: daemon did not start:" >&2
        cat "$TMP/daemon.log" >&2
        exit 1
    fi
    sleep 0.1
done

metrics() { curl -sf "http://127.0.0.1:$HPORT/metrics"; }
# metric NAME_WITH_LABELS: its value, 0 when absent.
metric() {
    metrics | awk -v k="$1" '$1 == k { v = $2 } END { printf "%d\n", v + 0 }'
}
received() { metric "banstream_messages_total{transport=\"$1\"}"; }
dropped() { metric "banstream_messages_dropped_total{reason=\"$1\"}"; }
# Waits until the counter stops moving (the matcher has drained the queue).
settle() {
    last=-1
    now=$(received "$1")
    while [ "$now" != "$last" ]; do
        sleep 0.5
        last=$now
        now=$(received "$1")
    done
    echo "$now"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
# The counter moves when a frame is queued, not when it is matched: also
# wait until the daemon is idle (under 10 % of a core over 0.5 s), so that
# each rate starts with an empty queue.
idle() {
    n=0
    while [ $n -lt 60 ]; do
        a=$(cpu_ticks)
        sleep 0.5
        b=$(cpu_ticks)
        [ $((b - a)) -le 5 ] && return 0
        n=$((n + 1))
    done
}

echo "# daemon pid $PID, udp/tcp 127.0.0.1:$PORT, http :$HPORT, recv_buffer $RECV_BUFFER, queue $QUEUE"
echo "# $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$MODE" = all ] || [ "$MODE" = udp ]; then
    echo
    echo "# UDP: $SECS s per rate, sendmmsg batch $BATCH, $THREADS sender thread(s)"
    if [ "$WARMUP" -gt 0 ]; then
        w0=$(received udp)
        "$LOADGEN" send --udp "127.0.0.1:$PORT" --rate 100000 --count "$WARMUP" \
            "$TMP/corpus.wire" >/dev/null
        idle
        echo "# warm-up: $WARMUP sent, $(($(settle udp) - w0)) received," \
            "$(metrics | awk '/^banstream_bans_total/ { n += $2 } END { print n + 0 }') bans"
    fi
    printf '%-9s %-10s %-10s %-10s %-8s %-10s %-10s %-10s %s\n' \
        rate sent received lost loss% kernel_ovf queue_full send_rate daemon_cpu%
    lossy=0
    for rate in $RATES; do
        idle
        r0=$(settle udp)
        k0=$(dropped kernel_overflow)
        q0=$(dropped queue_full)
        c0=$(cpu_ticks)
        out=$("$LOADGEN" send --udp "127.0.0.1:$PORT" --rate "$rate" --seconds "$SECS" \
            --batch "$BATCH" --threads "$THREADS" "$TMP/corpus.wire")
        r1=$(settle udp)
        c1=$(cpu_ticks)
        k1=$(dropped kernel_overflow)
        q1=$(dropped queue_full)
        sent=$(echo "$out" | awk '/^sent/ { print $2 }')
        achieved=$(echo "$out" | awk '/^sent/ { gsub(/\(/, "", $7); print $7 }')
        got=$((r1 - r0))
        lost=$((sent - got))
        # Daemon CPU over the send (clock ticks / 100 per s, 100 = one core).
        cpu=$(((c1 - c0) * 100 / (100 * SECS)))
        pct=$(awk -v l="$lost" -v s="$sent" 'BEGIN { printf "%.3f", s ? 100 * l / s : 0 }')
        printf '%-9s %-10s %-10s %-10s %-8s %-10s %-10s %-10s %s\n' \
            "$rate" "$sent" "$got" "$lost" "$pct" "$((k1 - k0))" "$((q1 - q0))" "$achieved" "$cpu"
        if [ "$lost" -gt 0 ]; then
            lossy=$((lossy + 1))
            [ $lossy -ge 2 ] && break
        fi
    done
fi

if [ "$MODE" = all ] || [ "$MODE" = tcp ]; then
    echo
    echo "# TCP: $TCP_CONNS connections, octet-counted, $TCP_COUNT messages, unpaced"
    idle
    r0=$(settle tcp)
    t0=$(date +%s.%N)
    out=$("$LOADGEN" send --tcp "127.0.0.1:$PORT" --connections "$TCP_CONNS" --rate 0 \
        --count "$TCP_COUNT" "$TMP/corpus.wire")
    r1=$(settle tcp)
    t1=$(date +%s.%N)
    # settle() adds up to 0.5 s after the last message; the sender's own
    # elapsed time is the better figure when everything arrived.
    echo "$out"
    got=$((r1 - r0))
    awk -v g="$got" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "received %d in %.2f s incl. settle (>= %.0f msgs/s)\n", g, b - a - 0.5, g / (b - a - 0.5) }'
fi
