#!/usr/bin/env bash
# One run, one gateway, one upstream: a pass-through route (no auth), an
# authenticated RS256 route and a JWE-only route (nested JWT: RS256 inside
# RSA-OAEP-256/A256GCM, then inside ECDH-ES+A256KW/A256GCM) are driven with wrk on
# loopback, one after the other, and requests/s, p50/p99 latency, gateway CPU per
# request and the ratios authenticated/pass-through and JWE/JWS are printed.
# Usage: load-tests/compare.sh [seconds=10] [connections=32]
# Env:
#   GW_THREADS   gateway worker threads (default 1)
#   TOKEN_CACHE  verified-token cache size (default 10000; 0 verifies on every request)
#   PROFILE      release (default) or debug: which target/<profile> binaries to run
#   NO_BUILD=1   use the existing binaries, do not run cargo
#   GW_PORT, ADMIN_PORT, UP_PORT  fixed ports of the gateway, its admin listener and
#                the upstream (the other three role services take UP_PORT+1..+3);
#                default: free ports picked at start
#   TARGET_URL   drive an already running gateway instead (e.g. the demo's
#                http://127.0.0.1:8080): nothing is built or started; TOKEN (a JWS)
#                is required, JWE_TOKEN (a nested JWE) optional; OPEN_PATH,
#                SECURE_PATH, SEALED_PATH name the routes (defaults /echo/open,
#                /echo/secure, /echo/sealed); GATEWAY_PID, if set, adds CPU/request.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-32}
PROFILE=${PROFILE:-release}
OPEN_PATH=${OPEN_PATH:-/echo/open}
SECURE_PATH=${SECURE_PATH:-/echo/secure}
SEALED_PATH=${SEALED_PATH:-/echo/sealed}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -n "${TARGET_URL:-}" ]; then
  [ -n "${TOKEN:-}" ] || { echo "TARGET_URL needs TOKEN (a valid JWS for SECURE_PATH)" >&2; exit 1; }
  BASE=${TARGET_URL%/}
  GPID=${GATEWAY_PID:-}
  JWE_RSA=${JWE_TOKEN:-}; JWE_EC=
  export TOKEN
else
  if [ "${NO_BUILD:-}" != 1 ]; then
    if [ "$PROFILE" = release ]; then cargo build --release -q -p gateway -p upstreams -p testkit; else cargo build -q -p gateway -p upstreams -p testkit; fi
  fi
  BIN=target/$PROFILE
  UP=${UP_PORT:-$(free_port)}; GW=${GW_PORT:-$(free_port)}; ADMIN=${ADMIN_PORT:-$(free_port)}
  if [ -n "${UP_PORT:-}" ]; then D1=$((UP + 1)); D2=$((UP + 2)); D3=$((UP + 3)); else D1=$(free_port); D2=$(free_port); D3=$(free_port); fi
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
  up=
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && curl -sf "http://127.0.0.1:$UP/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "stack did not come up"; cat "$WORK/gw.log" "$WORK/up.log"; exit 1; }
  BASE=http://127.0.0.1:$GW
  export TOKEN=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600)
  JWE_RSA=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600 --encrypt-to "$WORK/enc-rsa.jwks" --jwe-alg RSA-OAEP-256 --jwe-enc A256GCM)
  JWE_EC=$("$BIN/mint-test-token" --key rsa-a.pem --kid rs-1 --alg RS256 --ttl 3600 --encrypt-to "$WORK/enc-ec.jwks" --jwe-alg ECDH-ES+A256KW --jwe-enc A256GCM)
fi
curl -sf -H "Authorization: Bearer $TOKEN" "$BASE$SECURE_PATH" >/dev/null || { echo "authenticated request failed"; cat "$WORK/gw.log" 2>/dev/null; exit 1; }
for t in $JWE_RSA $JWE_EC; do
  curl -sf -H "Authorization: Bearer $t" "$BASE$SEALED_PATH" >/dev/null || { echo "JWE request failed"; cat "$WORK/gw.log" 2>/dev/null; exit 1; }
done
curl -sf "$BASE$OPEN_PATH" >/dev/null || { echo "pass-through request failed"; exit 1; }

cpu_ticks() { if [ -n "$GPID" ]; then awk '{print $14+$15}' "/proc/$GPID/stat"; else echo 0; fi; }
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
  local cpu_us=n/a
  [ -n "$GPID" ] && cpu_us=$(python3 -c "print(round(($after-$before)/$TCK/max($reqs,1)*1e6,1))")
  printf '%-14s %10s req/s  p50 %-9s p99 %-9s gateway CPU/req %6s us  non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "$non2xx"
  eval "RPS_$name=$rps"
}
RPS_jwe_rsa_oaep=0; RPS_jwe_ecdh_a256kw=0
SETUP=", gateway threads ${GW_THREADS:-1}, token cache ${TOKEN_CACHE:-10000}"; [ -n "${TARGET_URL:-}" ] && SETUP=" (already running)"
echo "wrk: ${DUR}s per route, $CONN connections against $BASE$SETUP, on $(nproc) cores shared with wrk"
run passthrough "$BASE$OPEN_PATH"
run rs256_auth "$BASE$SECURE_PATH" -s load-tests/auth.lua
[ -n "$JWE_RSA" ] && TOKEN="$JWE_RSA" run jwe_rsa_oaep "$BASE$SEALED_PATH" -s load-tests/auth.lua
[ -n "$JWE_EC" ] && TOKEN="$JWE_EC" run jwe_ecdh_a256kw "$BASE$SEALED_PATH" -s load-tests/auth.lua
python3 - "$RPS_passthrough" "$RPS_rs256_auth" "$RPS_jwe_rsa_oaep" "$RPS_jwe_ecdh_a256kw" "${TARGET_URL:+JWE_TOKEN}" <<'PY'
import sys
open_, jws, rsa, ec = map(float, sys.argv[1:5])
label = sys.argv[5] or "RSA-OAEP-256"
print(f"ratio authenticated/pass-through: {jws/open_:.3f}")
if rsa:
    print(f"ratio JWE({label})/JWS: {rsa/jws:.3f}" + (f"   JWE(ECDH-ES+A256KW)/JWS: {ec/jws:.3f}" if ec else ""))
PY
