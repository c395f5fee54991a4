#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind), of the bare Pingora hop and
# Medgate's pass-through and RS256 (one token) routes, on 127.0.0.1 only. Unlike the
# timings of peers.sh, an instruction count does not drift with the machine's other
# load, so a change of a few percent on the request path shows in one run: the
# figure to compare builds by on a shared VM. It counts user-space instructions only
# (no system calls, no cache misses): read it beside peers.sh, not instead of it.
#
# Each target runs under callgrind behind the same nginx upstream as peers.sh; after a
# warm-up (the token verified and cached, pools filled), the counters are zeroed,
# wrk -t1 -c4 runs for --seconds, the counters are dumped and divided by the requests
# wrk completed (all of them 200, or the script fails).
#
# Usage: load-tests/instructions.sh [--seconds S] [--top N] [--also NAME=GATEWAY_BINARY]...
#   --seconds S   measured seconds per target (default 6; under valgrind about 500 req/s)
#   --top N       also print the N functions whose own instructions per request grew
#                 most from the bare hop to Medgate's pass-through (default 0: none)
#   --also        also count another gateway binary (e.g. one built before a change)
#   --keep DIR    keep the callgrind dumps in DIR (for callgrind_annotate --inclusive=yes)
# Uses target/release as it is (build first: cargo build --release -p gateway -p bare-hop
# -p testkit). Installs valgrind, nginx and wrk with apt when missing. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=load-tests/lib.sh
. load-tests/lib.sh

SECS=6 TOP=0 KEEP=
ALSO=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECS=$2; shift ;;
    --top) TOP=$2; shift ;;
    --also) ALSO+=("$2"); shift ;;
    --keep) KEEP=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
BIN=$ROOT/target/release
for b in gateway bare-hop mint-test-token; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p gateway -p bare-hop -p testkit" >&2; exit 1; }
done
for spec in "${ALSO[@]}"; do
  [ -x "${spec#*=}" ] || { echo "--also $spec: not an executable" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/instructions.XXXXXX)
chmod 755 "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP" && cp "$WORK"/callgrind.out.* "$WORK/results.txt" "$KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url (valgrind starts slowly)
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "$1 did not come up" >&2
  tail -n 20 "$WORK"/*.log >&2 || true
  exit 1
}

KEY=$ROOT/gateway/testkit/keys/rsa-a.pem
openssl pkey -in "$KEY" -pubout -out "$WORK/t1.pub.pem" 2>/dev/null
TOKEN=$("$BIN/mint-test-token" --key "$KEY" --kid t1-k1 --tenant t1 --ttl=7200)

UP=$(free_port)
start_upstream "$WORK" "$UP"
pids+=($!)
wait_http "http://127.0.0.1:$UP/"

RESULTS=$WORK/results.txt
: >"$RESULTS"
# count name pid url [token]: instructions per request of one target.
count() {
  local name=$1 pid=$2 url=$3 auth=() out n ir file
  [ -n "${4:-}" ] && auth=(-H "Authorization: Bearer $4")
  wrk -t1 -c4 -d3 "${auth[@]}" "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c4 -d"${SECS}s" "${auth[@]}" "$url")
  callgrind_control -d "$name" "$pid" >/dev/null 2>&1
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$name: wrk saw non-2xx answers" >&2
    exit 1
  fi
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # The dump is written asynchronously: wait for its totals line.
  for _ in $(seq 100); do
    file=$(ls -t "$WORK"/callgrind.out."$pid".* 2>/dev/null | head -1 || true)
    [ -n "$file" ] && grep -q '^totals:' "$file" && break
    sleep 0.1
  done
  ir=$(awk '/^totals:/ {print $2; exit}' "$file")
  echo "$name|$n|$((ir / n))|$file" >>"$RESULTS"
  printf '  %-28s %6d requests  %8d instructions per request\n' "$name" "$n" $((ir / n))
}
under_callgrind() { # log binary args...
  local log=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" "$@" >"$WORK/$log.log" 2>&1 &
}

HOP=$(free_port)
under_callgrind hop "$BIN/bare-hop" --listen "127.0.0.1:$HOP" --upstream "127.0.0.1:$UP" --threads 2
HOP_PID=$!
pids+=("$HOP_PID")
wait_http "http://127.0.0.1:$HOP/"
count "bare pingora hop" "$HOP_PID" "http://127.0.0.1:$HOP/"
kill -INT "$HOP_PID"

GW_NAMES=(medgate) GW_BINS=("$BIN/gateway")
for spec in "${ALSO[@]}"; do GW_NAMES+=("${spec%%=*}"); GW_BINS+=("${spec#*=}"); done
for n in "${!GW_NAMES[@]}"; do
  port=$(free_port) admin=$(free_port)
  {
    cat <<EOF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
threads: 2
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [RS256]
    keys: { file: $WORK/t1.pub.pem, kid: t1-k1 }
EOF
    identity_headers_yaml
    cat <<EOF
upstreams:
  up: { peers: ["127.0.0.1:$UP"] }
routes:
  - { name: open, prefix: /open, upstream: up, public: true }
  - { name: secure, prefix: /secure, upstream: up, allow: [ { role: doctor } ] }
EOF
  } >"$WORK/gw$n.yaml"
  under_callgrind "gw$n" "${GW_BINS[$n]}" --config "$WORK/gw$n.yaml"
  pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$admin/readyz"
  count "${GW_NAMES[$n]} pass-through" "$pid" "http://127.0.0.1:$port/open"
  count "${GW_NAMES[$n]} RS256" "$pid" "http://127.0.0.1:$port/secure" "$TOKEN"
  kill -INT "$pid"
done

echo
python3 - "$RESULTS" "$TOP" <<'EOF'
import collections, re, subprocess, sys

rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1])]
per = {name: int(ir) for name, _, ir, _ in rows}
files = {name: (f, int(n)) for name, n, _, f in rows}
hop = per["bare pingora hop"]
print("| target | instructions per request | ÷ bare hop |")
print("|---|---:|---:|")
for name, _, ir, _ in rows:
    print(f"| {name} | {int(ir):,} | {int(ir) / hop:.2f} |")
print()
print(f"- Medgate pass-through adds {per['medgate pass-through'] - hop:,} instructions per request to the bare hop;"
      f" RS256 (cached token) adds {per['medgate RS256'] - per['medgate pass-through']:,} to the pass-through")
for name in per:
    if name.endswith(" pass-through") and name != "medgate pass-through":
        other = name[: -len(" pass-through")]
        print(f"- {other} / medgate: pass-through {per[name] / per['medgate pass-through']:.3f},"
              f" RS256 {per[other + ' RS256'] / per['medgate RS256']:.3f}")

top = int(sys.argv[2])
if top:
    def own(name):
        f, n = files[name]
        out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", f],
                             capture_output=True, text=True).stdout
        d = collections.Counter()
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(?:[^:\s]*:)?(.*?)(?:\s+\[.*\])?$", line)
            if m and not m.group(2).startswith("PROGRAM TOTALS"):
                d[re.sub(r"::h[0-9a-f]{16}", "", m.group(2))] += int(m.group(1).replace(",", "")) / n
        return d
    a, b = own("bare pingora hop"), own("medgate pass-through")
    # Thread entry points carry the whole count (callgrind_annotate lists them too).
    keys = [k for k in set(a) | set(b) if b[k] < 0.5 * per["medgate pass-through"]]
    print(f"\nOwn instructions per request that grew most, bare hop -> Medgate pass-through (top {top}):")
    for k in sorted(keys, key=lambda k: a[k] - b[k])[:top]:
        print(f"  {b[k] - a[k]:+8.0f}  {k[:120]}")
EOF
