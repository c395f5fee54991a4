#!/usr/bin/env bash
# Medgate's cost by the number of configured tenants, on 127.0.0.1 only, in one run:
# one gateway per tenant count (default 100 and 10000), each with its own generated
# config (file keys, every other setting at its default, logging as shipped), all
# running at once behind the same nginx upstream. For each it reports
#   - start-up time: from the process start to `/readyz` answering 200 (every
#     tenant's keys loaded),
#   - RSS (VmRSS) once ready and after the load,
#   - the RS256 route under load (wrk -t2 -c64) with --tokens distinct valid tokens
#     spread evenly over the configured tenants (the verified-token cache holds them
#     all, as a busy gateway's would): medians over interleaved rounds of req/s,
#     p50/p99 and CPU µs per request of the gateway process,
# and the ratios of the largest tenant count to the smallest.
#
# Keys: the 100 RSA-2048 keys of load-tests/peers.sh (target/peers-keys/, generated
# once when missing); tenant tN uses key t((N-1) % 100 + 1) under its own kid tN-k1,
# so every tenant has its own key set in the gateway (10,000 key sets at 10,000
# tenants) without generating 10,000 RSA keys.
#
# Usage: load-tests/tenants.sh [--counts "100 10000"] [--tokens N] [--duration S]
#          [--warmup S] [--rounds N] [--threads N] [--no-build] [--force]
# Defaults: counts "100 10000", 2000 tokens, 10 s runs, 3 s warm-ups, 3 rounds, 2
# threads: about 3 minutes plus the release build and, the first time, minting.
# Needs nginx and wrk (installed with apt when missing, as peers.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=load-tests/lib.sh
. load-tests/lib.sh

COUNTS="100 10000" NTOKENS=2000 DUR=10 WARM=3 ROUNDS=3 THREADS=2 BUILD=1 FORCE=0
while [ $# -gt 0 ]; do
  case $1 in
    --counts) COUNTS=$2; shift ;;
    --tokens) NTOKENS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --warmup) WARM=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$FORCE" = 0 ] && pgrep -x 'cargo|rustc' >/dev/null; then
  echo "cargo/rustc are running: figures would be noisy (--force runs anyway)" >&2
  exit 1
fi
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p gateway --bin gateway --bin mint-test-token
fi
BIN=${CARGO_TARGET_DIR:-target}/release

WORK=$(mktemp -d /tmp/medgate-tenants.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Keys (as peers.sh makes them).
KEYS=$ROOT/target/peers-keys
mkdir -p "$KEYS"
cp gateway/testkit/keys/rsa-a.pem "$KEYS/t1.pem"
openssl pkey -in "$KEYS/t1.pem" -pubout -out "$KEYS/t1.pub.pem" 2>/dev/null
for i in $(seq 2 100); do
  if [ ! -s "$KEYS/t$i.pub.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/t$i.pem" 2>/dev/null
    openssl pkey -in "$KEYS/t$i.pem" -pubout -out "$KEYS/t$i.pub.pem" 2>/dev/null
  fi
done
key_of() { echo "t$(( ($1 - 1) % 100 + 1 ))"; }

# The upstream.
UP=$(free_port)
start_upstream "$WORK" "$UP"
UP_PID=$!; pids+=("$UP_PID")

declare -A GW_PORT GW_PID READY_MS RSS_READY
for n in $COUNTS; do
  port=$(free_port) admin=$(free_port)
  {
    echo "listen: 127.0.0.1:$port"
    echo "admin_listen: 127.0.0.1:$admin"
    echo "threads: $THREADS"
    echo "access_log: { target: file, path: $WORK/access-$n.log }"
    echo "tenants:"
    for i in $(seq 1 "$n"); do
      printf '  t%s:\n    issuer: https://issuer.test/t%s\n    audiences: [api]\n    algorithms: [RS256]\n    keys: { file: %s/%s.pub.pem, kid: t%s-k1 }\n' \
        "$i" "$i" "$KEYS" "$(key_of "$i")" "$i"
    done
    identity_headers_yaml
    cat <<EOF
upstreams:
  up: { peers: ["127.0.0.1:$UP"] }
routes:
  - { name: secure, prefix: /secure, upstream: up, allow: [ { role: doctor } ] }
EOF
  } >"$WORK/gw-$n.yaml"

  # Tokens spread evenly over the tenants (every tenant once the count allows).
  used=$(( n < NTOKENS ? n : NTOKENS ))
  per=$(( NTOKENS / used )) extra=$(( NTOKENS % used ))
  : >"$WORK/tokens-$n.txt"
  for j in $(seq 0 $((used - 1))); do
    i=$(( 1 + j * n / used ))
    "$BIN/mint-test-token" --key "$KEYS/$(key_of "$i").pem" --kid "t$i-k1" --tenant "t$i" --ttl=7200 \
      --count $((per + (j < extra ? 1 : 0))) >>"$WORK/tokens-$n.txt"
  done
  shuf "$WORK/tokens-$n.txt" -o "$WORK/tokens-$n.txt"

  start=$(date +%s%N)
  "$BIN/gateway" --config "$WORK/gw-$n.yaml" >"$WORK/gw-$n.out" 2>"$WORK/gw-$n.log" & pid=$!; pids+=("$pid")
  until curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz"; do
    kill -0 "$pid" 2>/dev/null || { echo "gateway with $n tenants exited:" >&2; tail -20 "$WORK/gw-$n.log" >&2; exit 1; }
    [ $(( ($(date +%s%N) - start) / 1000000000 )) -lt 120 ] || { echo "gateway with $n tenants not ready in 120 s" >&2; exit 1; }
    sleep 0.02
  done
  READY_MS[$n]=$(( ($(date +%s%N) - start) / 1000000 ))
  RSS_READY[$n]=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  GW_PORT[$n]=$port GW_PID[$n]=$pid
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -1 "$WORK/tokens-$n.txt")" \
    "http://127.0.0.1:$port/secure")
  [ "$code" = 200 ] || { echo "sanity: a valid token got $code with $n tenants" >&2; exit 1; }
  echo "$n tenants: ready in ${READY_MS[$n]} ms, RSS ${RSS_READY[$n]} kB, $NTOKENS tokens over $used tenants"
done

RESULTS=$WORK/results.jsonl
echo "machine: $(nproc) cores; wrk -t2 -c64 ${DUR}s (warm-up ${WARM}s), $ROUNDS rounds, $THREADS threads per gateway"
for round in $(seq 1 "$ROUNDS"); do
  order=$COUNTS
  [ $((round % 2)) = 0 ] && order=$(echo "$COUNTS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for n in $order; do
    url="http://127.0.0.1:${GW_PORT[$n]}/secure"
    TOKENS=$WORK/tokens-$n.txt wrk -t2 -c64 -d"$WARM" -s load-tests/tokens.lua "$url" >/dev/null
    TOKENS=$WORK/tokens-$n.txt python3 load-tests/peers.py measure --out "$RESULTS" --name "$n tenants" \
      --mode many --round "$round" --pids "${GW_PID[$n]}" --others "$UP_PID" \
      -- wrk -t2 -c64 -d"$DUR" --latency -s load-tests/tokens.lua "$url"
  done
done

{
  for n in $COUNTS; do
    echo "$n ${READY_MS[$n]} ${RSS_READY[$n]} $(awk '/VmRSS/{print $2}' "/proc/${GW_PID[$n]}/status")"
  done
} >"$WORK/static.txt"
python3 - "$RESULTS" "$WORK/static.txt" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
static = {l.split()[0]: l.split()[1:] for l in open(sys.argv[2])}
med = lambda name, k: statistics.median(r[k] for r in rows if r["name"] == name and r.get(k) is not None)
print()
print("| tenants | ready after | RSS ready | RSS after load | req/s | p50 | p99 | CPU µs/req | rounds (noisy) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
counts = list(static)
for n in counts:
    name = f"{n} tenants"
    ready, rss0, rss1 = static[n]
    mine = [r for r in rows if r["name"] == name]
    noisy = sum(r["noisy"] for r in mine)
    print(f"| {int(n):,} | {int(ready):,} ms | {int(rss0) / 1024:.0f} MiB | {int(rss1) / 1024:.0f} MiB | {med(name, 'rps'):,.0f} "
          f"| {med(name, 'p50_us') / 1000:.2f} ms | {med(name, 'p99_us') / 1000:.2f} ms | {med(name, 'cpu_us'):.1f} | {len(mine)} ({noisy}) |")
lo, hi = f"{counts[0]} tenants", f"{counts[-1]} tenants"
print()
print(f"- {counts[-1]} / {counts[0]} tenants: throughput {med(hi, 'rps') / med(lo, 'rps'):.2f}, "
      f"CPU per request {med(hi, 'cpu_us') / med(lo, 'cpu_us'):.2f}")
EOF
