#!/usr/bin/env bash
# Whole-pipeline throughput against the peers, on the same corpus in the
# same run: banstream replay (sshd, pam-generic, named-refused and
# ufw-port-scan, the default jails; then the sshd jail alone), sshguard's
# sshg-parser, fail2ban-rs' dry-run (sshd) and fail2ban-regex (sshd
# filter). Prints lines/s per tool and banstream's ratio to each.
#
#   cargo build --release
#   bash benches/peers.sh [LINES]              # default 1000000
#
# Peers: apt-get install fail2ban sshguard; cargo install fail2ban-rs --root
# /work/peers (or set F2BRS=path). A missing peer is reported and skipped.
# RUNS=3 takes the best of three for the fast tools (fail2ban-regex runs
# once: it needs a minute per million lines). PERF=1 also records a perf
# profile of one banstream replay and prints the top symbols.
set -euo pipefail
LINES=${1:-1000000}
RUNS=${RUNS:-3}
BIN=${BIN:-target/release/banstream}
LOADGEN=${LOADGEN:-$(dirname "$BIN")/banstream-loadgen}
SSHG=${SSHG:-/usr/libexec/sshguard/sshg-parser}
F2BRS=${F2BRS:-$(command -v fail2ban-rs || echo /work/peers/bin/fail2ban-rs)}
dir=$(mktemp -d "/tmp/banstream-peers-$$.XXXX")
trap 'rm -rf "$dir"' EXIT

"$LOADGEN" corpus --lines "$LINES" --format messages > "$dir/corpus.log"
echo "corpus: $LINES lines, $(du -h "$dir/corpus.log" | cut -f1), seed 42; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Best wall time of RUNS runs of a command (stdout discarded).
best() {
    local runs=$1; shift
    local b=
    for _ in $(seq "$runs"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" > /dev/null 2>&1 || { echo "FAILED" ; return 1; }
        t1=$(date +%s.%N)
        b=$(echo "$t0 $t1 ${b:-999999}" | awk '{d=$2-$1; print (d<$3)?d:$3}')
    done
    echo "$b"
}

declare -A rate
report() { # name seconds
    local r
    r=$(awk -v n="$LINES" -v s="$2" 'BEGIN{printf "%.0f", n/s}')
    rate[$1]=$r
    printf '%-34s %8.3f s %12s lines/s\n' "$1" "$2" "$r"
}

# The built-in configuration (conf/banstream.toml) holds the four jails.
cp conf/banstream.toml "$dir/banstream.toml"
t=$(best "$RUNS" "$BIN" replay -c "$dir/banstream.toml" "$dir/corpus.log")
report "banstream replay (4 jails)" "$t"
"$BIN" replay -c "$dir/banstream.toml" "$dir/corpus.log" | tail -7 | sed 's/^/    /'

# Like for like with fail2ban-rs: the sshd jail alone.
printf '[jail.pam-generic]\nenabled = false\n[jail.named-refused]\nenabled = false\n[jail.ufw-port-scan]\nenabled = false\n' > "$dir/sshd-only.toml"
t=$(best "$RUNS" "$BIN" replay -c "$dir/sshd-only.toml" "$dir/corpus.log")
report "banstream replay (sshd only)" "$t"

if [ -x "$SSHG" ]; then
    t=$(best "$RUNS" sh -c "\"$SSHG\" < \"$dir/corpus.log\"")
    report "sshguard sshg-parser (all)" "$t"
else
    echo "sshg-parser: not installed ($SSHG), skipped"
fi

if [ -x "$F2BRS" ]; then
    "$F2BRS" gen-config sshd > "$dir/f2brs-jail.toml"
    {
        echo '[global]'
        echo "state_dir = \"$dir/f2brs-state\""
        echo "socket_path = \"$dir/f2brs.sock\""
        echo
        sed "s#/var/log/auth.log#$dir/corpus.log#" "$dir/f2brs-jail.toml"
    } > "$dir/f2brs.toml"
    t=$(best "$RUNS" "$F2BRS" -c "$dir/f2brs.toml" dry-run "$dir/corpus.log")
    report "fail2ban-rs dry-run (sshd)" "$t"
else
    echo "fail2ban-rs: not installed ($F2BRS), skipped"
fi

if command -v fail2ban-regex > /dev/null && [ "${F2B:-1}" = 1 ]; then
    t=$(best 1 fail2ban-regex "$dir/corpus.log" /etc/fail2ban/filter.d/sshd.conf)
    report "fail2ban-regex (sshd filter)" "$t"
else
    echo "fail2ban-regex: not installed or F2B=0, skipped"
fi

echo
for ours in "banstream replay (4 jails)" "banstream replay (sshd only)"; do
    b=${rate[$ours]}
    for k in "${!rate[@]}"; do
        case "$k" in banstream*) continue ;; esac
        awk -v a="$b" -v p="${rate[$k]}" -v k="$k" -v o="$ours" \
            'BEGIN{printf "%-28s / %-30s %6.2fx\n", o, k, a/p}'
    done
done

if [ "${PERF:-0}" = 1 ] && command -v perf > /dev/null; then
    perf record -q -o "$dir/perf.data" -F 999 -g "$BIN" replay -c "$dir/banstream.toml" --threads 1 "$dir/corpus.log" > /dev/null 2>&1
    echo; echo "perf: top symbols of one single-threaded replay"
    perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -25
fi
