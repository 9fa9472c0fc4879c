#!/usr/bin/env bash
# Where replay's instructions go, per class of line: the corpus is split by
# program and message start (sshd "Failed password", kernel "[UFW BLOCK]",
# crond noise, ...), and each class is replayed alone under callgrind,
# once with half of its lines and once with all of them. The difference
# divided by the extra lines is the marginal cost of one line of that class,
# free of start-up and of the automata states built on first need.
# fail2ban-rs's dry-run (sshd jail) is measured the same way on the same
# files. Instruction counts are exact and immune to the VM's drift; they do
# not show cache misses (see BENCHMARKS.md for why those matter here).
#
#   cargo build --release
#   bash benches/line-classes.sh [LINES]        # corpus size, default 1000000
#
# Needs valgrind; fail2ban-rs is optional (F2BRS=path, as in peers.sh).
# Classes with fewer than 1,000 lines are left out.
set -euo pipefail
LINES=${1:-1000000}
PER=${PER:-20000}
BIN=${BIN:-target/release/banstream}
LOADGEN=${LOADGEN:-$(dirname "$BIN")/banstream-loadgen}
F2BRS=${F2BRS:-$(command -v fail2ban-rs || echo /work/peers/bin/fail2ban-rs)}
command -v valgrind > /dev/null || { echo "valgrind is not installed" >&2; exit 1; }
dir=$(mktemp -d "/tmp/banstream-classes-$$.XXXX")
trap 'rm -rf "$dir"' EXIT

"$LOADGEN" corpus --lines "$LINES" --format messages > "$dir/corpus.log"
cp conf/banstream.toml "$dir/banstream.toml"
mkdir "$dir/c"
# Class: program and the first two words of the message; nginx, kernel and
# named lines by what matters to the filters. At most PER lines each.
awk -v d="$dir/c" -v per="$PER" '{
    p = $5; sub(/\[.*/, "", p); sub(/:$/, "", p)
    k = p "_" $6 "_" $7
    if (p == "kernel") k = p "_" $7
    if (p == "nginx") k = "nginx"
    if (p == "named") k = (/denied/ ? "named_denied" : "named_query")
    gsub(/[^A-Za-z0-9_-]/, "", k)
    n[k]++
    if (n[k] <= per) print > (d "/" k ".log")
} END { for (k in n) print n[k], k > (d "/../counts") }' "$dir/corpus.log"

have_f2brs=0
if [ -x "$F2BRS" ]; then
    "$F2BRS" gen-config sshd > "$dir/f2brs-jail.toml"
    have_f2brs=1
fi

# Instructions of one run: callgrind's total.
instr() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 > /dev/null \
        | awk '/Collected :/ {print $NF}'
}
ours() { instr "$BIN" replay --threads 1 -c "$dir/banstream.toml" "$1"; }
theirs() {
    local cfg="$1.f2brs.toml"
    {
        echo '[global]'
        echo "state_dir = \"$1.state\""
        echo "socket_path = \"$1.sock\""
        echo
        sed "s#/var/log/auth.log#$1#" "$dir/f2brs-jail.toml"
    } > "$cfg"
    instr "$F2BRS" -c "$cfg" dry-run "$1"
}

printf '%-44s %9s %14s %14s\n' "class" "in corpus" "banstream i/l" "fail2ban-rs i/l"
total_ours=0
total_theirs=0
for f in "$dir"/c/*.log; do
    k=$(basename "$f" .log)
    count=$(awk -v k="$k" '$2 == k {print $1}' "$dir/counts")
    n=$(wc -l < "$f")
    [ "$n" -ge 1000 ] || continue
    h=$((n / 2))
    head -n "$h" "$f" > "$f.half"
    a=$(ours "$f.half")
    b=$(ours "$f")
    per_ours=$(( (b - a) / (n - h) ))
    total_ours=$((total_ours + per_ours * count))
    per_theirs=-
    if [ "$have_f2brs" = 1 ]; then
        a=$(theirs "$f.half")
        b=$(theirs "$f")
        per_theirs=$(( (b - a) / (n - h) ))
        total_theirs=$((total_theirs + per_theirs * count))
    fi
    printf '%-44s %9d %14d %14s\n' "$k" "$count" "$per_ours" "$per_theirs"
done
echo
echo "marginal instructions over the corpus (sum of class cost x lines):"
echo "  banstream (4 jails): $((total_ours / 1000000)) M"
[ "$have_f2brs" = 1 ] && echo "  fail2ban-rs (sshd):  $((total_theirs / 1000000)) M"
echo "start-up (empty file):"
: > "$dir/empty.log"
echo "  banstream: $(( $(ours "$dir/empty.log") / 1000000 )) M"
[ "$have_f2brs" = 1 ] && echo "  fail2ban-rs: $(( $(theirs "$dir/empty.log") / 1000000 )) M"
exit 0
