#!/usr/bin/env bash
# End-to-end restore: the real daemon starting on a database holding N bans
# in force (default 100000), timed from exec until the control socket
# answers (listeners open only after the restore), then until a clean stop.
#
#   cargo build --release && bash benches/restore_e2e.sh [N]
#   KIND=nftables bash benches/restore_e2e.sh 100000        (as root)
#   KIND=iptables-ipset bash benches/restore_e2e.sh 100000
#
# With KIND, the second start runs that firewall backend for real, in a
# network namespace of its own, and the script also times from exec until
# the kernel set holds all N addresses.
#
# Needs the sqlite3 shell to fill the database. Figures go in BENCHMARKS.md.
set -euo pipefail
N=${1:-100000}
BIN=${BIN:-target/release/banstream}
KIND=${KIND:-}
NS=bs-restore-$$
dir=$(mktemp -d "/tmp/banstream-restore-$$.XXXX")
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; [ -z "$KIND" ] || ip netns del "$NS" 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=
cat > "$dir/banstream.toml" <<TOML
[paths]
runtime_dir = "$dir/run"
state_dir = "$dir/state"
[listen]
udp = ["127.0.0.1:0"]
tcp = []
unix = []
[http]
listen = ""
[log]
level = "info"
[jail.pam-generic]
enabled = false
[jail.named-refused]
enabled = false
[jail.ufw-port-scan]
enabled = false
[jail.recidive]
enabled = true
bantime = "8d"
findtime = "1d"
TOML
db="$dir/state/banstream.sqlite3"

# Create the schema with the daemon itself, then fill it.
"$BIN" run --dry-run -c "$dir/banstream.toml" 2>"$dir/first.log" & pid=$!
until "$BIN" status --socket "$dir/run/banstream.sock" >/dev/null 2>&1; do sleep 0.05; done
kill -TERM "$pid"; wait "$pid"
now=$(($(date +%s) * 1000))
week=$((7 * 86400 * 1000))
sqlite3 "$db" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $N - 1),
a(i, ip) AS (SELECT i, '11.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255) FROM n)
INSERT INTO bans SELECT 'sshd', ip, $now, $week, $now + $week, 3, 1, 'stream' FROM a;
INSERT INTO history SELECT ip, jail, 1, start FROM bans;
INSERT INTO events (time, jail, ip, kind, bantime) SELECT start, jail, ip, 'ban', bantime FROM bans;
COMMIT;
SQL
echo "database: $(du -h "$db" | cut -f1) with $(sqlite3 "$db" 'SELECT COUNT(*) FROM bans') bans"

# Whether the kernel set of jail sshd (IPv4) holds every ban. ipset counts
# its entries; listing 100,000 nft elements would cost seconds per poll, so
# for nftables 64 addresses spread over the range are looked up instead (a
# batch of 10,000 is one transaction: all its elements or none).
sample=$(awk -v n="$N" 'BEGIN { for (k = 0; k < 64; k++) { i = int(k * (n - 1) / 63); printf "%s11.%d.%d.%d", (k ? ", " : ""), int(i / 65536) % 256, int(i / 256) % 256, i % 256 } }')
in_kernel() {
    case $KIND in
        nftables) ip netns exec "$NS" nft get element inet banstream f2b-sshd-v4 "{ $sample }" >/dev/null 2>&1 && echo "$N" ;;
        iptables-ipset) ip netns exec "$NS" ipset list -t f2b-sshd 2>/dev/null | awk '/^Number of entries/ {print $4}' ;;
    esac
}

if [ -n "$KIND" ]; then
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    printf '[defaults]\nbanaction = "%s"\n' "$KIND" >> "$dir/banstream.toml"
    t0=$(date +%s.%N)
    ip netns exec "$NS" "$BIN" run -c "$dir/banstream.toml" 2>"$dir/second.log" & pid=$!
else
    t0=$(date +%s.%N)
    "$BIN" run --dry-run -c "$dir/banstream.toml" 2>"$dir/second.log" & pid=$!
fi
until "$BIN" status --socket "$dir/run/banstream.sock" >/dev/null 2>&1; do sleep 0.01; done
t1=$(date +%s.%N)
if [ -n "$KIND" ]; then
    until [ "$(in_kernel)" = "$N" ]; do
        kill -0 "$pid" 2>/dev/null || { tail "$dir/second.log"; exit 1; }
        sleep 0.05
    done
    tk=$(date +%s.%N)
    echo "$KIND: exec to all $N in the kernel set: $(awk "BEGIN{print $tk - $t0}") s"
fi
banned=$("$BIN" banned --json --socket "$dir/run/banstream.sock" | grep -o '"ip"' | wc -l)
kill -TERM "$pid"; wait "$pid"
t2=$(date +%s.%N)
grep -o 'restored=[0-9]*.*ms=[0-9]*' "$dir/second.log" | head -1
echo "start to control socket answering: $(awk "BEGIN{print $t1 - $t0}") s; banned lists $banned"
echo "clean stop: $(awk "BEGIN{print $t2 - $t1}") s"
