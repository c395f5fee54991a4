#!/usr/bin/env bash
# One run, one gateway, one upstream: a pass-through route (no auth) and an
# authenticated RS256 route are driven with wrk on loopback, one after the other,
# and requests/s, p50/p99 latency, gateway CPU per request and the ratio
# authenticated/pass-through are printed.
# Usage: load-tests/compare.sh [seconds=10] [connections=32]
# Env: GW_THREADS (gateway worker threads, default 1), TOKEN_CACHE (verified-token
# cache size, default 10000; 0 verifies the signature on every request).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-32}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p gateway -p upstreams -p testkit
BIN=target/release
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); ADMIN=$(free_port)
D1=$(free_port); D2=$(free_port); D3=$(free_port)
KEYS=$PWD/gateway/testkit/keys

"$BIN/upstreams" --patient 127.0.0.1:$UP --doctor 127.0.0.1:$D1 --lab 127.0.0.1:$D2 --insurance 127.0.0.1:$D3 >"$WORK/up.log" 2>&1 &
pids+=($!)
cat >"$WORK/gw.yaml" <<YAML
listen: 127.0.0.1:$GW
admin_listen: 127.0.0.1:$ADMIN
threads: ${GW_THREADS:-1}
auth:
  token_cache_size: ${TOKEN_CACHE:-10000}
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [RS256]
    keys: { file: $KEYS/rsa-a.pub.pem, kid: rs-1 }
headers:
  - { claim: sub, header: X-User-Id }
  - { claim: tenant_id, header: X-Tenant-Id }
  - { claim: role, header: X-User-Role }
  - { claim: jti, header: X-Token-Id }
upstreams:
  echo: { peers: ["127.0.0.1:$UP"] }
routes:
  - { name: open, prefix: /echo/open, upstream: echo, public: true }
  - { name: secure, prefix: /echo/secure, upstream: echo, allow: [ { role: doctor } ] }
YAML
RUST_LOG=warn "$BIN/gateway" --config "$WORK/gw.yaml" >"$WORK/gw.log" 2>&1 &
GPID=$!
pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && curl -sf "http://127.0.0.1:$UP/healthz" >/dev/null && break; sleep 0.1; done
export TOKEN=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600)
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/echo/secure" >/dev/null || { echo "authenticated request failed"; cat "$WORK/gw.log"; exit 1; }
curl -sf "http://127.0.0.1:$GW/echo/open" >/dev/null

cpu_ticks() { awk '{print $14+$15}' "/proc/$GPID/stat"; }
TCK=$(getconf CLK_TCK)
run() { # name url [script]
  local name=$1 url=$2; shift 2
  local before after
  before=$(cpu_ticks)
  wrk -t1 -c"$CONN" -d"${DUR}s" --latency "$@" "$url" >"$WORK/$name.txt"
  after=$(cpu_ticks)
  local rps p50 p99 reqs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.txt")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/$name.txt"); non2xx=${non2xx:-0}
  local cpu_us
  cpu_us=$(python3 -c "print(round(($after-$before)/$TCK/max($reqs,1)*1e6,1))")
  printf '%-14s %10s req/s  p50 %-9s p99 %-9s gateway CPU/req %6s us  non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "$non2xx"
  eval "RPS_$name=$rps"
}
echo "wrk: ${DUR}s per route, $CONN connections, gateway threads ${GW_THREADS:-1}, token cache ${TOKEN_CACHE:-10000}, on $(nproc) cores shared with wrk"
run passthrough "http://127.0.0.1:$GW/echo/open"
run rs256_auth "http://127.0.0.1:$GW/echo/secure" -s load-tests/auth.lua
python3 -c "print(f'ratio authenticated/pass-through: {float(\"$RPS_rs256_auth\")/float(\"$RPS_passthrough\"):.3f}')"
