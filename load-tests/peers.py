#!/usr/bin/env python3
"""Helper of load-tests/peers.sh (standard library only).

  peers.py measure --out FILE --name N --mode M --round R [--pair K] --pids P[,P] --others P[,P] -- wrk ARGS...
      Runs wrk once and appends one JSON line to FILE: req/s, p50/p99 (us), requests,
      non-2xx, socket errors, CPU microseconds per request of the target's process
      tree (utime+stime of the processes under --pids, from /proc/<pid>/stat, before
      and after), and how much CPU the rest of the machine used meanwhile: the busy
      time of /proc/stat (user+nice+system+steal; irq/softirq are the loopback traffic
      itself) minus target, --others (the upstream) and wrk (its rusage). A run where
      that rest exceeds --noise (default 0.10) of the machine's capacity is noisy.
  peers.py report FILE
      Prints the markdown table of medians over rounds, and the ratios.
  peers.py pairs
      Prints the ratios measured in loaded pairs: id|name A|mode A|name B|mode B.
  peers.py tamper TOKEN | none TOKEN | hs256 TOKEN SECRET_FILE
      Prints a token with its payload changed, re-signed with alg none, or re-signed
      with HS256 using the contents of SECRET_FILE (e.g. the RSA public key) as secret.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import statistics
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def proc_ticks():
    """{pid: (ppid, utime+stime)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # rest[0] is field 3 (state): ppid is field 4, utime/stime fields 14/15.
        out[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return out


def tree_ticks(table, roots):
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = v[:8]
    return user + nice + system + steal


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]


def parse_wrk(out):
    def grab(pattern, default=None, conv=float):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else default

    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = sum(int(x) for x in m.groups())
    return {
        "rps": grab(r"^Requests/sec:\s+([0-9.]+)", 0.0),
        "requests": grab(r"^\s*(\d+) requests in", 0, int),
        "p50_us": grab(r"^\s+50%\s+(\S+)", None, to_us),
        "p90_us": grab(r"^\s+90%\s+(\S+)", None, to_us),
        "p99_us": grab(r"^\s+99%\s+(\S+)", None, to_us),
        "non2xx": grab(r"Non-2xx or 3xx responses: (\d+)", 0, int),
        "errors": errors,
    }


def measure(argv):
    opts, wrk = {}, []
    it = iter(argv)
    for a in it:
        if a == "--":
            wrk = list(it)
            break
        opts[a.lstrip("-")] = next(it)
    pids = [int(p) for p in opts["pids"].split(",") if p]
    others = [int(p) for p in opts.get("others", "").split(",") if p]
    noise = float(opts.get("noise", "0.10"))
    ncpu = os.cpu_count() or 1

    t0 = proc_ticks()
    busy0, start = machine_busy(), time.monotonic()
    child = subprocess.Popen(wrk, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - start
    busy1 = machine_busy()
    t1 = proc_ticks()
    if status != 0:
        sys.exit(f"wrk failed ({status}):\n{out}")

    r = parse_wrk(out)
    target = tree_ticks(t1, pids) - tree_ticks(t0, pids)
    upstream = tree_ticks(t1, others) - tree_ticks(t0, others)
    wrk_ticks = (usage.ru_utime + usage.ru_stime) * TCK
    rest = (busy1 - busy0) - target - upstream - wrk_ticks
    capacity = ncpu * elapsed * TCK
    r.update(
        name=opts["name"],
        mode=opts.get("mode", ""),
        round=int(opts.get("round", "0")),
        pair=int(opts.get("pair", "0")),
        kind=opts.get("kind", "loaded"),
        cpu_us=round(target / TCK / max(r["requests"], 1) * 1e6, 1),
        target_cores=round(target / TCK / elapsed, 2),
        wrk_cores=round(wrk_ticks / TCK / elapsed, 2),
        rest=round(max(rest, 0) / capacity, 3),
    )
    r["noisy"] = r["rest"] > noise
    with open(opts["out"], "a") as f:
        f.write(json.dumps(r) + "\n")
    flag = " NOISY" if r["noisy"] else ""
    bad = f" non-2xx {r['non2xx']} errors {r['errors']}" if r["non2xx"] or r["errors"] else ""
    print(
        f"  r{r['round']} {r['name']:<28} {r['mode']:<7} {r['rps']:>9.0f} req/s  p50 {fmt_us(r['p50_us']):>7}"
        f"  p99 {fmt_us(r['p99_us']):>7}  CPU {r['cpu_us']:>6.1f} us/req ({r['target_cores']} cores,"
        f" wrk {r['wrk_cores']})  rest of machine {r['rest'] * 100:.0f}%{flag}{bad}",
        flush=True,
    )


def fmt_us(us):
    if us is None:
        return "?"
    return f"{us / 1000:.2f} ms" if abs(us) >= 1000 else f"{us:.0f} us"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


# The ratios the issue sets targets for, measured again in pairs of back-to-back runs:
# id -> (label, numerator target, denominator target).
PAIRED = {
    "rs-ha-one": ("Medgate RS256 / HAProxy jwt_verify, one token", ("medgate RS256", "one"), ("haproxy jwt_verify", "one")),
    "rs-ha-many": (
        "Medgate RS256 / HAProxy jwt_verify, 10k tokens",
        ("medgate RS256", "many"),
        ("haproxy jwt_verify", "many"),
    ),
    "pt-hop": ("Medgate pass-through / bare Pingora hop", ("medgate pass-through", ""), ("bare pingora hop", "")),
    "rs-pt": ("Medgate RS256 (one token) / Medgate pass-through", ("medgate RS256", "one"), ("medgate pass-through", "")),
    "jwe-rs": ("Medgate nested JWE / Medgate RS256 (one token)", ("medgate JWE", "jwe"), ("medgate RS256", "one")),
}


def pairs_list():
    for pid, (_, (an, am), (bn, bm)) in PAIRED.items():
        print(f"{pid}|{an}|{am}|{bn}|{bm}")


def paired_report(rows):
    groups = {}
    for r in rows:
        if r["kind"].startswith("paired:"):
            groups.setdefault((r["kind"][7:], r["round"], r["pair"]), {})[(r["name"], r["mode"])] = r
    for pid, (label, a, b) in PAIRED.items():
        ps = [g for (i, _, _), g in groups.items() if i == pid and a in g and b in g]
        if not ps:
            continue
        rps = [g[a]["rps"] / g[b]["rps"] for g in ps]
        cpu = [g[a]["cpu_us"] / g[b]["cpu_us"] for g in ps]
        print(
            f"- paired, {label}: throughput {statistics.median(rps):.2f} (pairs {min(rps):.2f} to {max(rps):.2f}),"
            f" CPU per request {statistics.median(cpu):.2f} ({len(ps)} pairs)"
        )


def report(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    loaded = [r for r in rows if r["kind"] == "loaded"]
    order, groups = [], {}
    for r in loaded:
        k = (r["name"], r["mode"])
        if k not in groups:
            order.append(k)
            groups[k] = []
        groups[k].append(r)
    print("| target | tokens | req/s | p50 | p99 | CPU µs/req | rounds (noisy) |")
    print("|---|---|---:|---:|---:|---:|---|")
    m = {}
    for k in order:
        g = groups[k]
        rps, p50, p99, cpu = med(g, "rps"), med(g, "p50_us"), med(g, "p99_us"), med(g, "cpu_us")
        m[k] = {"rps": rps, "cpu": cpu}
        noisy = sum(r["noisy"] for r in g)
        bad = sum(r["non2xx"] + r["errors"] for r in g)
        extra = f", {bad} non-2xx/errors" if bad else ""
        print(f"| {k[0]} | {k[1] or '-'} | {rps:,.0f} | {fmt_us(p50)} | {fmt_us(p99)} | {cpu:.1f} | {len(g)} ({noisy}){extra} |")
    print()

    def ratio(label, a, b):
        if a in m and b in m:
            print(
                f"- {label}: throughput {m[a]['rps'] / m[b]['rps']:.2f}, "
                f"CPU per request {m[a]['cpu'] / m[b]['cpu']:.2f}"
            )

    ratio("Medgate RS256 / HAProxy jwt_verify, one token", ("medgate RS256", "one"), ("haproxy jwt_verify", "one"))
    ratio("Medgate RS256 / HAProxy jwt_verify, 10k tokens", ("medgate RS256", "many"), ("haproxy jwt_verify", "many"))
    ratio("Medgate pass-through / bare Pingora hop", ("medgate pass-through", ""), ("bare pingora hop", ""))
    ratio("Medgate RS256 (one token) / Medgate pass-through", ("medgate RS256", "one"), ("medgate pass-through", ""))
    ratio("Medgate nested JWE (one token) / Medgate RS256 (one token)", ("medgate JWE", "jwe"), ("medgate RS256", "one"))
    for mode in ("one", "many"):
        a, b = ("medgate RS256 limited", mode), ("medgate RS256", mode)
        if a in m and b in m:
            print(
                f"- rate limits never hit (subject + tenant), {mode} token(s): throughput "
                f"{m[a]['rps'] / m[b]['rps']:.3f}, CPU per request {m[a]['cpu'] - m[b]['cpu']:+.1f} µs"
            )
    for name, mode in order:
        if name.endswith(" RS256") and name != "medgate RS256":
            variant = name[: -len(" RS256")]
            ratio(f"{variant} RS256 / medgate RS256, {mode} token(s)", (name, mode), ("medgate RS256", mode))
        if name.endswith(" pass-through") and name != "medgate pass-through":
            ratio(f"{name} / medgate pass-through", (name, mode), ("medgate pass-through", ""))

    paired_report(rows)
    unloaded = {}
    for r in rows:
        if r["kind"] == "unloaded":
            unloaded.setdefault((r["round"], r.get("pair", 0)), {})[r["name"]] = r
    pairs = [u for u in unloaded.values() if "medgate RS256" in u and "bare pingora hop" in u]

    def added(key):
        # Per pair (the two runs back to back, in alternating order), then the median
        # over every pair of every round: the p99 of one short run swings by far more
        # than the difference measured, so one pair per round would be mostly noise.
        ds = [
            u["medgate RS256"][key] - u["bare pingora hop"][key]
            for u in pairs
            if u["medgate RS256"].get(key) is not None and u["bare pingora hop"].get(key) is not None
        ]
        return statistics.median(ds) if ds else None

    if pairs:
        p99s = lambda n: statistics.median(u[n]["p99_us"] for u in unloaded.values() if n in u)  # noqa: E731
        spread = [u["bare pingora hop"]["p99_us"] for u in pairs]
        print(
            f"- unloaded (wrk -t1 -c1), p99 Medgate RS256 minus bare Pingora hop: {fmt_us(added('p99_us'))}"
            f" (Medgate {fmt_us(p99s('medgate RS256'))}, hop {fmt_us(p99s('bare pingora hop'))}; the hop's own p99"
            f" ranged {fmt_us(min(spread))} to {fmt_us(max(spread))} over {len(pairs)} pairs); added at p50"
            f" {fmt_us(added('p50_us'))}, at p90 {fmt_us(added('p90_us'))}"
        )
    noisy = sum(r["noisy"] for r in rows)
    if noisy:
        print(f"- NOISY: {noisy} of {len(rows)} measurements ran while other processes used more than the threshold")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "measure":
        measure(args)
    elif cmd == "report":
        report(args[0])
    elif cmd == "pairs":
        pairs_list()
    elif cmd in ("tamper", "none", "hs256"):
        h, p, s = args[0].split(".")
        claims = json.loads(b64d(p))
        if cmd == "tamper":
            claims["sub"] = claims.get("sub", "") + "x"
            print(f"{h}.{b64e(json.dumps(claims).encode())}.{s}")
            return
        header = json.loads(b64d(h))
        header["alg"] = "none" if cmd == "none" else "HS256"
        signing = f"{b64e(json.dumps(header).encode())}.{p}"
        if cmd == "none":
            print(f"{signing}.")
        else:
            secret = open(args[1], "rb").read()
            print(f"{signing}.{b64e(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
