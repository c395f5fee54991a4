#!/usr/bin/env bash
# Medgate beside its peers, on 127.0.0.1 only, in one invocation:
#   upstream              nginx answering a small 200 (1 worker, no log): every target's upstream
#   nginx proxy           nginx as a plain reverse proxy: the no-auth ceiling
#   haproxy jwt_verify    HAProxy (Debian's) with jwt_verify RS256, alg, exp, iss, aud and role
#                         checks, sub/tenant/role forwarded as headers
#   bare pingora hop      load-tests/bare-hop: a ProxyHttp with only upstream_peer, the same
#                         Pingora version and server settings as the gateway
#   medgate pass-through  the gateway's public route
#   medgate RS256         the gateway's authenticated route (RS256, role policy, 3 identity headers)
#   medgate RS256 limited the same route with a per-subject and a per-tenant rate limit that
#                         are never hit: the per-request cost of limits (not for --also binaries)
#   medgate JWE           a route that requires a nested JWE (RS256 inside RSA-OAEP-256 /
#                         A256GCM, tenant t1), one token reused, the token cache on (not for
#                         --also binaries)
# Medgate runs from the release build with its own generated config (file keys, every
# other setting at its default, logging as shipped: one info line per request to a
# file); nginx and HAProxy also log one line per request to a file; the bare hop logs
# nothing. Every proxy gets the same worker threads (--threads, default 2).
#
# Token modes: "one" (one token reused by every request) and "many" (--tokens distinct
# valid tokens, default 10000, spread over --tenants tenants, default 100, each tenant
# with its own RSA-2048 key; wrk rotates through them with load-tests/tokens.lua).
# Tenant t1's key is gateway/testkit/keys/rsa-a.pem; the others are generated once
# into target/peers-keys/. HAProxy selects the tenant's key file with a map from the
# `tenant_id` claim (jwt_verify("RS256", txn.key); every key file is named once in a
# never-run jwt_verify so HAProxy loads it at start, as its docs require). HAProxy
# 2.6 returns -3 when *both* jwt_verify arguments are variables, so the algorithm is
# the constant RS256, checked beforehand against the header's `alg`.
#
# Before measuring, a sanity pass: on every auth target a valid token gives 200 and a
# tampered, expired, `alg: none` and HS256 (public key as secret) token gives 401;
# otherwise the script exits non-zero.
#
# Measuring: each round goes over every target (the order rotates per round): a
# warm-up wrk run, then a measured one (wrk -t2 -c<connections> --latency). Then, for
# each target ratio, loaded pairs (--pairs per round, --pair-duration each) of its two
# targets back to back in alternating order, reported as the median of the ratios within
# pairs beside the ratio of the medians. Then unloaded pairs (wrk -t1 -c1,
# --unloaded-pairs per round, --unloaded-duration each)
# of the bare hop and Medgate RS256 (one token), back to back in alternating order;
# the added latency is the median over every pair of the difference within it. The table
# shows medians over rounds: req/s, p50/p99, CPU microseconds per request of the
# target's process tree (utime+stime from /proc/<pid>/stat of it and its children,
# before/after). A measurement is NOISY when the rest of the machine (the /proc/stat
# busy time minus target, upstream and wrk) used more than 10% of its capacity.
#
# With --tls, the same run also measures HTTPS (a throwaway CA from scripts/demo-ca.sh;
# TLS 1.3, wrk's HTTP/1.1): nginx terminating TLS in front of the same upstream
# ("nginx TLS proxy") and Medgate's HTTPS listener ("medgate TLS pass-through",
# "medgate TLS RS256"), each with keep-alive and with a new connection, hence a full
# handshake, per request ("... TLS/conn ...": wrk sends `Connection: close`). nginx and
# Medgate serve plain and TLS from the same process, so the TLS rows sit beside the
# plain ones, with ratios to Medgate's plain rows.
#
# Usage: load-tests/peers.sh [--duration S] [--warmup S] [--connections N] [--rounds N]
#          [--threads N] [--tokens N] [--tenants N] [--quick] [--no-build] [--force]
#          [--tls] [--unloaded-pairs N] [--unloaded-duration S] [--also NAME=GATEWAY_BINARY]...
#   --quick       3 s runs, 1 s warm-ups, 2 rounds (a smoke test, 2-4 minutes)
#   --no-build    use target/release as it is
#   --force       run even while cargo/rustc run (every figure then likely NOISY)
#   --tls         also measure HTTPS: keep-alive and a handshake per request
#   --unloaded-pairs N     unloaded hop/Medgate pairs per round (default 5)
#   --unloaded-duration S  seconds of each unloaded run (default 3)
#   --pairs N     loaded pairs per round and target ratio (default 2; 0: none): the two
#                 targets of a ratio (e.g. Medgate pass-through and the bare hop) run
#                 back to back, the first alternating, and the report gives the median of
#                 the ratios within pairs, which the machine's drift between the two runs
#                 of a pair hardly moves (it moves the medians over rounds far more)
#   --pair-duration S      seconds of each paired run (default 3)
#   --also        also measure another gateway binary (pass-through and RS256 routes),
#                 e.g. one built before a change; its ratios to medgate are printed
# Defaults: 15 s runs, 5 s warm-ups, 64 connections, 3 rounds, 2 loaded pairs of 3 s per
# ratio and 5 unloaded pairs of 3 s per round: about 16 minutes.
# Needs root or sudo-less apt for what it lacks (nginx, haproxy, wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=load-tests/lib.sh
. load-tests/lib.sh

DUR=15 WARM=5 CONN=64 ROUNDS=3 THREADS=2 NTOKENS=10000 NTENANTS=100 BUILD=1 FORCE=0 TLS=0 UPAIRS=5 UDUR=3 LPAIRS=2 LDUR=3
ALSO=()
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DUR=$2; shift ;;
    --warmup) WARM=$2; shift ;;
    --connections) CONN=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --tokens) NTOKENS=$2; shift ;;
    --tenants) NTENANTS=$2; shift ;;
    --quick) DUR=3 WARM=1 ROUNDS=2 ;;
    --no-build) BUILD=0 ;;
    --force) FORCE=1 ;;
    --tls) TLS=1 ;;
    --unloaded-pairs) UPAIRS=$2; shift ;;
    --unloaded-duration) UDUR=$2; shift ;;
    --pairs) LPAIRS=$2; shift ;;
    --pair-duration) LDUR=$2; shift ;;
    --also) ALSO+=("$2"); shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$ROUNDS" -ge 1 ] && [ "$UPAIRS" -ge 1 ] && [ "$LPAIRS" -ge 0 ] && [ "$NTENANTS" -ge 1 ] && [ "$NTOKENS" -ge "$NTENANTS" ] || { echo "bad options" >&2; exit 2; }

builds_running() { pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; }
if builds_running; then
  if [ "$FORCE" = 1 ]; then
    echo "warning: cargo/rustc are running; figures will be noisy" >&2
  else
    echo "refusing to start: a build (cargo/rustc) is running; wait for it, or --force" >&2
    exit 1
  fi
fi

# What is missing comes from Debian's packages.
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p gateway -p bare-hop -p testkit
  if builds_running && [ "$FORCE" = 0 ]; then
    echo "refusing to measure: another build (cargo/rustc) is running; wait for it, or --force" >&2
    exit 1
  fi
fi
BIN=$ROOT/target/release
for b in gateway bare-hop mint-test-token; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: build with cargo build --release" >&2; exit 1; }
done
for spec in "${ALSO[@]}"; do
  [ -x "${spec#*=}" ] || { echo "--also $spec: not an executable" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/peers.XXXXXX)
chmod 755 "$WORK"
pids=() KEEP=0
cleanup() {
  # Pingora stops at once on SIGINT (SIGTERM drains for seconds); nginx and HAProxy
  # stop on SIGTERM (a background job of a script ignores SIGINT unless it handles it).
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 10); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then echo "configs and logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url [expected status]
  for _ in $(seq 200); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$1")" = "${2:-200}" ] && return 0
    sleep 0.05
  done
  echo "$1 did not come up" >&2
  tail -n 20 "$WORK"/*.log >&2 || true
  KEEP=1
  exit 1
}

# Keys: tenant t1 = the testkit key rsa-a, the others generated once and kept.
KEYS=$ROOT/target/peers-keys
mkdir -p "$KEYS"
cp gateway/testkit/keys/rsa-a.pem "$KEYS/t1.pem"
openssl pkey -in "$KEYS/t1.pem" -pubout -out "$KEYS/t1.pub.pem" 2>/dev/null
gen=0
for i in $(seq 2 "$NTENANTS"); do
  if [ ! -s "$KEYS/t$i.pub.pem" ]; then
    [ $gen = 0 ] && echo "generating RSA keys for tenants t2..t$NTENANTS into $KEYS (once)"
    gen=1
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/t$i.pem" 2>/dev/null
    openssl pkey -in "$KEYS/t$i.pem" -pubout -out "$KEYS/t$i.pub.pem" 2>/dev/null
  fi
done

# Tokens (2 h), every tenant's shuffled together.
mint() { "$BIN/mint-test-token" --key "$KEYS/$1.pem" --kid "$1-k1" --tenant "$1" --ttl="${2:-7200}" --count "${3:-1}"; }
ONE=$(mint t1)
per=$((NTOKENS / NTENANTS)); extra=$((NTOKENS % NTENANTS))
for i in $(seq 1 "$NTENANTS"); do
  mint "t$i" 7200 $((per + (i <= extra ? 1 : 0)))
done | shuf >"$WORK/many.txt"
[ "$(wc -l <"$WORK/many.txt")" = "$NTOKENS" ] || { echo "minting tokens failed" >&2; exit 1; }
EXPIRED=$(mint t1 -3600)
# A nested JWE for tenant t1 (its decryption keys are written into $WORK).
"$BIN/mint-test-token" --write-enc-keys "$WORK" >/dev/null
JWE=$("$BIN/mint-test-token" --key "$KEYS/t1.pem" --kid t1-k1 --tenant t1 --ttl=7200 --encrypt-to "$WORK/enc-rsa.jwks" \
  --jwe-alg RSA-OAEP-256 --jwe-enc A256GCM)
TAMPERED=$(python3 load-tests/peers.py tamper "$ONE")
NONE=$(python3 load-tests/peers.py none "$ONE")
HS256=$(python3 load-tests/peers.py hs256 "$ONE" "$KEYS/t1.pub.pem")
SOME_MANY=$(shuf -n 3 "$WORK/many.txt")

UP=$(free_port) NGX=$(free_port) HAP=$(free_port) HOP=$(free_port) GW=$(free_port) ADMIN=$(free_port)
NGXS=$(free_port) GWS=$(free_port)
# --tls: a throwaway CA and the server certificate (localhost, 127.0.0.1) for nginx and Medgate.
NGX_TLS=""
if [ "$TLS" = 1 ]; then
  scripts/demo-ca.sh "$WORK/tls" >/dev/null
  chmod 755 "$WORK/tls"
  NGX_TLS="
  server {
    listen 127.0.0.1:$NGXS ssl;
    ssl_certificate $WORK/tls/gateway.pem;
    ssl_certificate_key $WORK/tls/gateway.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
fi

# Upstream: nginx answering a small 200.
start_upstream "$WORK" "$UP"
UP_PID=$!; pids+=("$UP_PID")

# nginx as a plain reverse proxy (the ceiling without authentication).
cat >"$WORK/nginx.conf" <<EOF
daemon off;
user root;
worker_processes $THREADS;
pid $WORK/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/nginx-access.log;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }$NGX_TLS
}
EOF
nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGX_PID=$!; pids+=("$NGX_PID")

# HAProxy with jwt_verify: per tenant a key file and an issuer, selected by tenant_id.
: >"$WORK/haproxy-keys.map"; : >"$WORK/haproxy-iss.map"; preload=""
for i in $(seq 1 "$NTENANTS"); do
  echo "t$i $KEYS/t$i.pub.pem" >>"$WORK/haproxy-keys.map"
  echo "t$i https://issuer.test/t$i" >>"$WORK/haproxy-iss.map"
  preload+="  http-request set-var(txn.preload) str(x),jwt_verify(\"RS256\",\"$KEYS/t$i.pub.pem\") if FALSE"$'\n'
done
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 4096
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:$HAP
  # Every key file named once, so HAProxy loads it at start (never run).
$preload
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request set-var(txn.tenant) var(txn.bearer),jwt_payload_query('\$.tenant_id')
  http-request set-var(txn.key) var(txn.tenant),map($WORK/haproxy-keys.map)
  http-request deny deny_status 401 unless { var(txn.key) -m found }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("RS256",txn.key) -m int 1 }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.exp),sub(txn.now) -m int gt 0 }
  http-request set-var(txn.want_iss) var(txn.tenant),map($WORK/haproxy-iss.map)
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request deny deny_status 401 unless { var(txn.iss),strcmp(txn.want_iss) -m int 0 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str api }
  http-request deny deny_status 403 unless { var(txn.bearer),jwt_payload_query('\$.role') -m str doctor }
  http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('\$.sub')]
  http-request set-header X-Tenant-Id %[var(txn.tenant)]
  http-request set-header X-User-Role %[var(txn.bearer),jwt_payload_query('\$.role')]
  http-request del-header Authorization
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:$UP
EOF
haproxy -c -q -f "$WORK/haproxy.cfg" || { echo "haproxy config invalid" >&2; exit 1; }
haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy-access.log" 2>"$WORK/haproxy.log" &
HAP_PID=$!; pids+=("$HAP_PID")

"$BIN/bare-hop" --listen "127.0.0.1:$HOP" --upstream "127.0.0.1:$UP" --threads "$THREADS" >"$WORK/hop.log" 2>&1 &
HOP_PID=$!; pids+=("$HOP_PID")

# Medgate: its own config, defaults everywhere else. One per gateway binary.
gateway_config() { # listen admin [limited: also the rate-limited route] [HTTPS port]
  {
    echo "listen: 127.0.0.1:$1"
    echo "admin_listen: 127.0.0.1:$2"
    echo "threads: $THREADS"
    echo "tenants:"
    for i in $(seq 1 "$NTENANTS"); do
      echo "  t$i:"
      echo "    issuer: https://issuer.test/t$i"
      echo "    audiences: [api]"
      echo "    algorithms: [RS256]"
      echo "    keys: { file: $KEYS/t$i.pub.pem, kid: t$i-k1 }"
      [ "$i" = 1 ] && [ "${3:-}" = limited ] && echo "    encryption: { keys: { file: $WORK/enc-all.jwks } }"
    done
    identity_headers_yaml
    cat <<EOF
upstreams:
  up: { peers: ["127.0.0.1:$UP"] }
routes:
  - { name: open, prefix: /open, upstream: up, public: true }
  - { name: secure, prefix: /secure, upstream: up, allow: [ { role: doctor } ] }
EOF
    # The same route with limits never hit (older --also binaries do not know the field).
    [ "${3:-}" = limited ] && cat <<EOF
  - name: limited
    prefix: /limited
    upstream: up
    allow: [ { role: doctor } ]
    rate_limits:
      - { key: subject, requests: 1000000000, per: 1s }
      - { key: tenant, requests: 1000000000, per: 1s }
  - { name: sealed, prefix: /sealed, upstream: up, require_encrypted: true, allow: [ { role: doctor } ] }
EOF
    true
    if [ -n "${4:-}" ]; then
      echo "tls:"
      echo "  listen: [\"127.0.0.1:$4\"]"
      echo "  certificates: [ { cert: $WORK/tls/gateway.pem, key: $WORK/tls/gateway.key } ]"
    fi
  }
}
# name binary -> NAMES, PORTS, GPIDS
GW_NAMES=(medgate) GW_BINS=("$BIN/gateway") GW_PORTS=() GW_PIDS=()
for spec in "${ALSO[@]}"; do GW_NAMES+=("${spec%%=*}"); GW_BINS+=("${spec#*=}"); done
for n in "${!GW_NAMES[@]}"; do
  port=$GW admin=$ADMIN
  [ "$n" -gt 0 ] && { port=$(free_port); admin=$(free_port); }
  limited=""; [ "$n" = 0 ] && limited=limited
  tls_port=""
  [ "$TLS" = 1 ] && [ "$n" = 0 ] && tls_port=$GWS
  gateway_config "$port" "$admin" "$limited" "$tls_port" >"$WORK/gw$n.yaml"
  "${GW_BINS[$n]}" --config "$WORK/gw$n.yaml" >"$WORK/gw$n.out" 2>"$WORK/gw$n.log" &
  GW_PIDS+=($!); GW_PORTS+=("$port"); pids+=($!)
  wait_http "http://127.0.0.1:$admin/readyz"
done

wait_http "http://127.0.0.1:$UP/"
wait_http "http://127.0.0.1:$NGX/"
wait_http "http://127.0.0.1:$HOP/"
wait_http "http://127.0.0.1:$HAP/" 401

# Targets: name|mode|url|root pids[|close]: mode is the token (one/many/none); close:
# a new connection per request.
TARGETS=(
  "nginx proxy||http://127.0.0.1:$NGX/|$NGX_PID"
  "bare pingora hop||http://127.0.0.1:$HOP/|$HOP_PID"
  "haproxy jwt_verify|one|http://127.0.0.1:$HAP/|$HAP_PID"
  "haproxy jwt_verify|many|http://127.0.0.1:$HAP/|$HAP_PID"
)
for n in "${!GW_NAMES[@]}"; do
  TARGETS+=(
    "${GW_NAMES[$n]} pass-through||http://127.0.0.1:${GW_PORTS[$n]}/open|${GW_PIDS[$n]}"
    "${GW_NAMES[$n]} RS256|one|http://127.0.0.1:${GW_PORTS[$n]}/secure|${GW_PIDS[$n]}"
    "${GW_NAMES[$n]} RS256|many|http://127.0.0.1:${GW_PORTS[$n]}/secure|${GW_PIDS[$n]}"
  )
done
TARGETS+=(
  "medgate RS256 limited|one|http://127.0.0.1:${GW_PORTS[0]}/limited|${GW_PIDS[0]}"
  "medgate RS256 limited|many|http://127.0.0.1:${GW_PORTS[0]}/limited|${GW_PIDS[0]}"
  "medgate JWE|jwe|http://127.0.0.1:${GW_PORTS[0]}/sealed|${GW_PIDS[0]}"
)
if [ "$TLS" = 1 ]; then
  wait_http "https://127.0.0.1:$NGXS/"
  wait_http "https://127.0.0.1:$GWS/open"
  TARGETS+=(
    "nginx TLS proxy||https://127.0.0.1:$NGXS/|$NGX_PID"
    "nginx TLS/conn proxy||https://127.0.0.1:$NGXS/|$NGX_PID|close"
    "medgate TLS pass-through||https://127.0.0.1:$GWS/open|${GW_PIDS[0]}"
    "medgate TLS RS256|one|https://127.0.0.1:$GWS/secure|${GW_PIDS[0]}"
    "medgate TLS RS256|many|https://127.0.0.1:$GWS/secure|${GW_PIDS[0]}"
    "medgate TLS/conn pass-through||https://127.0.0.1:$GWS/open|${GW_PIDS[0]}|close"
    "medgate TLS/conn RS256|one|https://127.0.0.1:$GWS/secure|${GW_PIDS[0]}|close"
  )
fi

# Sanity pass.
fail=0
expect() { # what url status [token]
  local got
  if [ -n "${4:-}" ]; then
    got=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $4" "$2")
  else
    got=$(curl -sk -o /dev/null -w '%{http_code}' "$2")
  fi
  if [ "$got" != "$3" ]; then
    echo "sanity: $1 gave $got, expected $3" >&2
    fail=1
  fi
}
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name mode url _ <<<"$t"
  case $mode in
    "") expect "$name" "$url" 200 ;;
    jwe)
      expect "$name nested JWE" "$url" 200 "$JWE"
      expect "$name plain JWS (encryption required)" "$url" 401 "$ONE"
      expect "$name no token" "$url" 401
      ;;
    one)
      expect "$name valid token" "$url" 200 "$ONE"
      while read -r tok; do expect "$name valid token (other tenant)" "$url" 200 "$tok"; done <<<"$SOME_MANY"
      expect "$name no token" "$url" 401
      expect "$name tampered token" "$url" 401 "$TAMPERED"
      expect "$name expired token" "$url" 401 "$EXPIRED"
      expect "$name alg none token" "$url" 401 "$NONE"
      expect "$name HS256 token" "$url" 401 "$HS256"
      ;;
  esac
done
[ "$fail" = 0 ] || { echo "sanity pass failed" >&2; KEEP=1; exit 1; }
echo "sanity: every auth target: valid 200; no token, tampered, expired, alg none, HS256: 401"

RESULTS=$WORK/results.jsonl
target() { # name mode: the TARGETS entry
  local t
  for t in "${TARGETS[@]}"; do
    IFS='|' read -r n m _ <<<"$t"
    [ "$n" = "$1" ] && [ "$m" = "$2" ] && { echo "$t"; return; }
  done
}
measure() { # round kind name mode url pids wrk-args...
  local round=$1 kind=$2 name=$3 mode=$4 url=$5 tpids=$6; shift 6
  local lua=()
  local token=$ONE
  case $mode in
    one) lua=(-s load-tests/auth.lua) ;;
    jwe) lua=(-s load-tests/auth.lua) token=$JWE ;;
    many) lua=(-s load-tests/tokens.lua) ;;
  esac
  TOKEN=$token TOKENS=$WORK/many.txt python3 load-tests/peers.py measure --out "$RESULTS" --name "$name" \
    --mode "$mode" --round "$round" --pair "${PAIR:-0}" --kind "$kind" --pids "$tpids" --others "$UP_PID" \
    -- wrk "$@" --latency "${lua[@]}" "$url"
}
warm() { # mode url [wrk-args...]
  local lua=() mode=$1 url=$2 token=$ONE
  shift 2
  case $mode in
    one) lua=(-s load-tests/auth.lua) ;;
    jwe) lua=(-s load-tests/auth.lua) token=$JWE ;;
    many) lua=(-s load-tests/tokens.lua) ;;
  esac
  TOKEN=$token TOKENS=$WORK/many.txt wrk -t2 -c"$CONN" -d"${WARM}s" "$@" "${lua[@]}" "$url" >/dev/null
}

echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)); wrk -t2 -c$CONN" \
  "${DUR}s (warm-up ${WARM}s), $ROUNDS rounds, $THREADS threads per proxy, $NTOKENS tokens over $NTENANTS tenants"
count=${#TARGETS[@]}
mapfile -t RATIOS < <(python3 load-tests/peers.py pairs)
for round in $(seq 1 "$ROUNDS"); do
  builds_running && echo "warning: a build (cargo/rustc) is running during round $round" >&2
  for k in $(seq 0 $((count - 1))); do
    t=${TARGETS[$(((k + round - 1) % count))]}
    IFS='|' read -r name mode url tpids close <<<"$t"
    hdr=()
    [ "$close" = close ] && hdr=(-H "Connection: close")
    warm "$mode" "$url" "${hdr[@]}"
    measure "$round" loaded "$name" "$mode" "$url" "$tpids" -t2 -c"$CONN" -d"${DUR}s" "${hdr[@]}"
  done
  # Loaded pairs: the two targets of each ratio back to back, the first alternating.
  for ratio in "${RATIOS[@]}"; do
    IFS='|' read -r id a_name a_mode b_name b_mode <<<"$ratio"
    a=$(target "$a_name" "$a_mode") b=$(target "$b_name" "$b_mode")
    [ -n "$a" ] && [ -n "$b" ] || continue
    for pair in $(seq 1 "$LPAIRS"); do
      if [ $((pair % 2)) = 1 ]; then first=$a second=$b; else first=$b second=$a; fi
      for t in "$first" "$second"; do
        IFS='|' read -r name mode url tpids _ <<<"$t"
        PAIR=$pair measure "$round" "paired:$id" "$name" "$mode" "$url" "$tpids" -t2 -c"$CONN" -d"${LDUR}s"
      done
    done
  done
  # Unloaded: one connection, the latency a single client sees; pairs back to back,
  # the first of a pair alternating.
  for pair in $(seq 1 "$UPAIRS"); do
    hop=(unloaded "bare pingora hop" "" "http://127.0.0.1:$HOP/" "$HOP_PID")
    gw=(unloaded "medgate RS256" one "http://127.0.0.1:$GW/secure" "${GW_PIDS[0]}")
    if [ $((pair % 2)) = 1 ]; then first=("${hop[@]}") second=("${gw[@]}"); else first=("${gw[@]}") second=("${hop[@]}"); fi
    PAIR=$pair measure "$round" "${first[@]}" -t1 -c1 -d"${UDUR}s"
    PAIR=$pair measure "$round" "${second[@]}" -t1 -c1 -d"${UDUR}s"
  done
done

echo
python3 load-tests/peers.py report "$RESULTS"
