#!/usr/bin/env python3
"""Every stock fail2ban filter against fail2ban's own samples.

For each /etc/fail2ban/filter.d/NAME.conf with a sample file in fail2ban's
test suite (Debian package `fail2ban`):

- agreement: `banstream test-filter NAME.conf[options] - --json` on each
  block of the sample file (one block per `# filterOptions:`), compared with
  the `# failJSON:` annotation of every annotated line: a line agrees when
  "match" agrees and, for a match, "host" too;
- speed: the sample lines repeated to --lines lines, timed through
  `banstream test-filter` and through `fail2ban-regex` (wall clock, process
  start included), reported as the ratio fail2ban-regex / banstream.

Prints a Markdown table (BENCHMARKS.md) and exits non-zero below --min
percent agreement overall.

    cargo build --release
    scripts/fail2ban-filters.py --banstream target/release/banstream
"""

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time

LOGS = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs"
FILTERS = "/etc/fail2ban/filter.d"


def blocks(name):
    """[(options, prefix, [(annotation or None, line)])] of a sample file."""
    out, current, common = [], None, {}
    files, i = [os.path.join(LOGS, name)], 0
    while i < len(files):
        with open(files[i], encoding="utf-8", errors="replace") as f:
            text = f.read()
        i += 1
        fail = None
        for ln in text.split("\n"):
            m = re.match(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$", ln)
            if m:
                data = json.loads(m.group(2))
                kind = m.group(1)
                if kind == "fileOptions":
                    common = data
                elif kind == "filterOptions":
                    current = []
                    for o in data if isinstance(data, list) else [data]:
                        opts = dict(common)
                        opts.update(o)
                        if "test.condition" in opts:
                            continue
                        b = ({k: v for k, v in opts.items() if not k.startswith("test.")},
                             opts.get("test.prefix-line", ""), [])
                        out.append(b)
                        current.append(b)
                elif kind == "addFILE":
                    files.append(os.path.join(LOGS, data))
                else:
                    fail = data
                continue
            if ln.startswith("#") or not ln.strip():
                continue
            if current is None:
                current = [({}, "", [])]
                out.extend(current)
            for b in current:
                b[2].append((fail, ln))
            fail = None
    return out


def spec(name, opts):
    s = os.path.join(FILTERS, name + ".conf")
    if opts:
        s += "[" + ", ".join('%s="%s"' % (k, v) for k, v in opts.items()) + "]"
    return s


def same_host(expected, found):
    """Hosts agree when they are the same text or the same address:
    banstream prints IPv6 in canonical form (2001:db8::1), fail2ban's
    samples keep the case the log wrote (2001:DB8::1)."""
    if expected == found:
        return True
    try:
        return ipaddress.ip_address(expected) == ipaddress.ip_address(found or "")
    except ValueError:
        return False


def agreement(binary, name):
    ok = n = 0
    for opts, prefix, lines in blocks(name):
        data = "".join(prefix + l + "\n" for _, l in lines).encode()
        p = subprocess.run([binary, "test-filter", spec(name, opts), "-", "--json"],
                           input=data, capture_output=True, check=False)
        res = {}
        for x in p.stdout.decode().splitlines():
            if x.strip():
                o = json.loads(x)
                res[o["line"]] = o
        for idx, (exp, _) in enumerate(lines):
            if exp is None or exp.get("constraint"):
                continue
            n += 1
            r = res.get(idx + 1, {"match": False, "host": None})
            em = bool(exp.get("match", False))
            if r["match"] == em and (not em or "host" not in exp or same_host(exp["host"], r["host"])):
                ok += 1
    return ok, n


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--banstream", default="target/release/banstream")
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--min", type=float, default=95.0)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    if not os.path.isdir(LOGS):
        print("fail2ban's samples are not installed (apt-get install fail2ban)")
        return 0
    names = sorted(f[:-5] for f in os.listdir(FILTERS) if f.endswith(".conf") and f != "common.conf")
    tot_ok = tot_n = 0
    tb = tf = 0.0
    print("| filter | agreement | banstream (s) | fail2ban-regex (s) | speed ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="banstream-f2b-bench-") as tmp:
        for name in names:
            if not os.path.isfile(os.path.join(LOGS, name)):
                continue
            ok, n = agreement(args.banstream, name)
            tot_ok += ok
            tot_n += n
            row = "| %s | %d/%d (%.1f%%) |" % (name, ok, n, 100.0 * ok / max(n, 1))
            if args.no_speed:
                print(row + " | | |")
                continue
            lines = [pl + l for _, pl, ls in blocks(name)[:1] for _, l in ls]
            if not lines:
                print(row + " | | |")
                continue
            data = "\n".join((lines * (args.lines // len(lines) + 1))[: args.lines]) + "\n"
            path = os.path.join(tmp, name + ".log")
            with open(path, "w", encoding="utf-8") as f:
                f.write(data)
            conf = os.path.join(FILTERS, name + ".conf")
            b = timed([args.banstream, "test-filter", conf, path])
            f2b = timed(["fail2ban-regex", path, conf])
            tb += b
            tf += f2b
            print(row + " %.3f | %.3f | %.0f× |" % (b, f2b, f2b / b))
    pct = 100.0 * tot_ok / max(tot_n, 1)
    speed = "" if args.no_speed else " %.2f | %.2f | %.0f× |" % (tb, tf, tf / max(tb, 1e-9))
    print("| **all** | **%d/%d (%.2f%%)** |%s" % (tot_ok, tot_n, pct, speed))
    return 0 if pct >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
