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
# The fast tools run in RUNS rounds (default 3), one run of each per round,
# interleaved so a drifting machine treats them alike; each tool's best
# round counts, and each ratio is also given as the median of the rounds'
# own ratios (fail2ban-regex runs once: it needs a minute per million
# lines). CPU is user + system time. PERF=1 also records a perf profile of
# one banstream replay and prints the top symbols.
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

# One timed run of a command (output discarded): "wall cpu" in seconds,
# cpu being user + system time of the command and its children.
timed() {
    local TIMEFORMAT='%R %U %S' out
    out=$( { time "$@" > /dev/null 2>&1 ; } 2>&1 ) || { echo "FAILED: $*" >&2; return 1; }
    awk '{printf "%.3f %.3f\n", $1, $2 + $3}' <<< "$out"
}

# The fast tools, each a function over the same corpus.
# The built-in configuration (conf/banstream.toml) holds the four jails.
cp conf/banstream.toml "$dir/banstream.toml"
# Like for like with fail2ban-rs: the sshd jail alone.
printf '[jail.pam-generic]\nenabled = false\n[jail.named-refused]\nenabled = false\n[jail.ufw-port-scan]\nenabled = false\n' > "$dir/sshd-only.toml"
run_bs4() { "$BIN" replay -c "$dir/banstream.toml" "$dir/corpus.log"; }
run_bs1() { "$BIN" replay -c "$dir/sshd-only.toml" "$dir/corpus.log"; }
run_sshg() { "$SSHG" < "$dir/corpus.log"; }
run_f2brs() { "$F2BRS" -c "$dir/f2brs.toml" dry-run "$dir/corpus.log"; }
declare -A label=(
    [bs4]="banstream replay (4 jails)"
    [bs1]="banstream replay (sshd only)"
    [sshg]="sshguard sshg-parser (all)"
    [f2brs]="fail2ban-rs dry-run (sshd)"
)
tools=(bs4 bs1)
if [ -x "$SSHG" ]; then tools+=(sshg); else echo "sshg-parser: not installed ($SSHG), skipped"; fi
if [ -x "$F2BRS" ]; then
    "$F2BRS" gen-config sshd > "$dir/f2brs-jail.toml"
    {
        echo '[global]'
        echo "state_dir = \"$dir/f2brs-state\""
        echo "socket_path = \"$dir/f2brs.sock\""
        echo
        sed "s#/var/log/auth.log#$dir/corpus.log#" "$dir/f2brs-jail.toml"
    } > "$dir/f2brs.toml"
    tools+=(f2brs)
else
    echo "fail2ban-rs: not installed ($F2BRS), skipped"
fi

# RUNS rounds, each running every tool once, back to back: a shared VM's
# speed drifts over seconds, so tools timed in separate blocks can differ
# by a third on the clock alone. Each tool's best round is reported, and
# each ratio also as the median of the rounds' own ratios.
declare -A wall cpu best bestcpu
for _ in $(seq "$RUNS"); do
    for t in "${tools[@]}"; do
        read -r w c < <(timed "run_$t") || exit 1
        wall[$t]+="$w "
        cpu[$t]+="$c "
        best[$t]=$(awk -v a="$w" -v b="${best[$t]:-999999}" 'BEGIN{print (a<b)?a:b}')
        bestcpu[$t]=$(awk -v a="$c" -v b="${bestcpu[$t]:-999999}" 'BEGIN{print (a<b)?a:b}')
    done
done

declare -A rate
report() { # name wall [cpu]
    local r
    r=$(awk -v n="$LINES" -v s="$2" 'BEGIN{printf "%.0f", n/s}')
    rate[$1]=$r
    printf '%-34s %8.3f s %12s lines/s' "$1" "$2" "$r"
    [ -n "${3:-}" ] && printf '   cpu %6.3f s' "$3"
    echo
}
for t in "${tools[@]}"; do
    report "${label[$t]}" "${best[$t]}" "${bestcpu[$t]}"
    case $t in bs4) "$BIN" replay -c "$dir/banstream.toml" "$dir/corpus.log" | tail -7 | sed 's/^/    /' ;; esac
done

# The median over the rounds of wall(peer) / wall(ours).
paired() { # ours peer
    paste <(tr ' ' '\n' <<< "${wall[$1]}") <(tr ' ' '\n' <<< "${wall[$2]}") \
        | awk 'NF == 2 && $1 > 0 {print $2 / $1}' | sort -g \
        | awk '{v[NR] = $1} END {if (NR) printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

if command -v fail2ban-regex > /dev/null && [ "${F2B:-1}" = 1 ]; then
    read -r w c < <(timed fail2ban-regex "$dir/corpus.log" /etc/fail2ban/filter.d/sshd.conf) || exit 1
    report "fail2ban-regex (sshd filter)" "$w" "$c"
else
    echo "fail2ban-regex: not installed or F2B=0, skipped"
fi

echo
echo "ratio of lines/s (best rounds; in brackets, the median of the $RUNS rounds' own ratios)"
for o in bs4 bs1; do
    ours=${label[$o]}
    b=${rate[$ours]}
    for k in "${!rate[@]}"; do
        case "$k" in banstream*) continue ;; esac
        med=
        for t in "${tools[@]}"; do
            [ "${label[$t]}" = "$k" ] && med=" ($(paired "$o" "$t")x)"
        done
        awk -v a="$b" -v p="${rate[$k]}" -v k="$k" -v o="$ours" -v m="$med" \
            'BEGIN{printf "%-28s / %-30s %6.2fx%s\n", o, k, a/p, m}'
    done
done

if [ "${PERF:-0}" = 1 ] && command -v perf > /dev/null; then
    perf record -q -o "$dir/perf.data" -F 999 -g "$BIN" replay -c "$dir/banstream.toml" --threads 1 "$dir/corpus.log" > /dev/null 2>&1
    echo; echo "perf: top symbols of one single-threaded replay"
    perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -25
fi
