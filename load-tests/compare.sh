#!/usr/bin/env bash
# One run, one gateway, one upstream: a pass-through route (no auth), an
# authenticated RS256 route and a JWE-only route (nested JWT: RS256 inside
# RSA-OAEP-256/A256GCM, then inside ECDH-ES+A256KW/A256GCM) are driven with wrk on
# loopback, one after the other, and requests/s, p50/p99 latency, gateway CPU per
# request and the ratios authenticated/pass-through and JWE/JWS are printed.
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
"$BIN/mint-test-token" --write-enc-keys "$WORK"
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
    encryption: { keys: { file: $WORK/enc-all.jwks } }
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
  - { name: sealed, prefix: /echo/sealed, upstream: echo, require_encrypted: true, allow: [ { role: doctor } ] }
YAML
RUST_LOG=warn "$BIN/gateway" --config "$WORK/gw.yaml" >"$WORK/gw.log" 2>&1 &
GPID=$!
pids+=($GPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && curl -sf "http://127.0.0.1:$UP/healthz" >/dev/null && break; sleep 0.1; done
export TOKEN=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600)
JWE_RSA=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600 --encrypt-to "$WORK/enc-rsa.jwks" --jwe-alg RSA-OAEP-256 --jwe-enc A256GCM)
JWE_EC=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600 --encrypt-to "$WORK/enc-ec.jwks" --jwe-alg ECDH-ES+A256KW --jwe-enc A256GCM)
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/echo/secure" >/dev/null || { echo "authenticated request failed"; cat "$WORK/gw.log"; exit 1; }
for t in "$JWE_RSA" "$JWE_EC"; do
  curl -sf -H "Authorization: Bearer $t" "http://127.0.0.1:$GW/echo/sealed" >/dev/null || { echo "JWE request failed"; cat "$WORK/gw.log"; exit 1; }
done
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
TOKEN="$JWE_RSA" run jwe_rsa_oaep "http://127.0.0.1:$GW/echo/sealed" -s load-tests/auth.lua
TOKEN="$JWE_EC" run jwe_ecdh_a256kw "http://127.0.0.1:$GW/echo/sealed" -s load-tests/auth.lua
python3 - "$RPS_passthrough" "$RPS_rs256_auth" "$RPS_jwe_rsa_oaep" "$RPS_jwe_ecdh_a256kw" <<'PY'
import sys
open_, jws, rsa, ec = map(float, sys.argv[1:])
print(f"ratio authenticated/pass-through: {jws/open_:.3f}")
print(f"ratio JWE(RSA-OAEP-256)/JWS: {rsa/jws:.3f}   JWE(ECDH-ES+A256KW)/JWS: {ec/jws:.3f}")
PY
