#!/usr/bin/env bash
# End-to-end restore: the real daemon starting on a database holding N bans
# in force (default 100000), timed from exec until the control socket
# answers (listeners open only after the restore), then until a clean stop.
#
#   cargo build --release && bash benches/restore_e2e.sh [N]
#
# Needs the sqlite3 shell to fill the database. Figures go in BENCHMARKS.md.
set -euo pipefail
N=${1:-100000}
BIN=${BIN:-target/release/banstream}
dir=$(mktemp -d "/tmp/banstream-restore-$$.XXXX")
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
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

t0=$(date +%s.%N)
"$BIN" run --dry-run -c "$dir/banstream.toml" 2>"$dir/second.log" & pid=$!
until "$BIN" status --socket "$dir/run/banstream.sock" >/dev/null 2>&1; do sleep 0.01; done
t1=$(date +%s.%N)
banned=$("$BIN" banned --json --socket "$dir/run/banstream.sock" | grep -o '"ip"' | wc -l)
kill -TERM "$pid"; wait "$pid"
t2=$(date +%s.%N)
grep -o 'restored=[0-9]*.*ms=[0-9]*' "$dir/second.log" | head -1
echo "start to control socket answering: $(awk "BEGIN{print $t1 - $t0}") s; banned lists $banned"
echo "clean stop: $(awk "BEGIN{print $t2 - $t1}") s"
