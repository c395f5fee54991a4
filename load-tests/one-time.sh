#!/usr/bin/env bash
# One run on loopback: the same one-time route (ES256 tokens, each used once) behind
# two gateways, one keeping one-time ids in memory and one recording them in the
# kms-sidecar's shared store (`replay_store`), driven with wrk one after the other.
# Prints requests/s, p50/p99, gateway (and sidecar) CPU per request, the average
# one-time check time from the gateway's metrics, and the ratio shared/memory.
# Usage: load-tests/one-time.sh [seconds=5] [connections=16]
# Env:
#   PROFILE      release (default) or debug: which target/<profile> binaries to run
#   NO_BUILD=1   use the existing binaries, do not run cargo
#   KMS_PORT, CHAN_PORT  fixed ports of the sidecar's public and internal listeners
#   UP_PORT      fixed port of the upstream (the other role services take UP_PORT+1..+3)
#   GW_PORT      fixed ports of the gateways: memory GW_PORT, shared GW_PORT+1, and
#                their admin listeners GW_PORT+10, GW_PORT+11
#   (default for each: a free port picked at start)
#   TARGET_URL   drive a one-time route of an already running gateway instead (a full
#                URL, e.g. the demo's http://127.0.0.1:8080/insurance/patients/p-100/summary)
#                with the tokens of the file TOKENS (one per line, each used once);
#                nothing is built or started, one wrk pass is printed
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
CONN=${2:-16}
PROFILE=${PROFILE:-release}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
if [ -n "${TARGET_URL:-}" ]; then
  [ -s "${TOKENS:-}" ] || { echo "TARGET_URL needs TOKENS: a file of one-time tokens, one per line" >&2; exit 1; }
  echo "wrk: ${DUR}s, $CONN connections against $TARGET_URL, $(wc -l <"$TOKENS") tokens each used once"
  TOKENS=$(realpath "$TOKENS") wrk -t1 -c"$CONN" -d"${DUR}s" --latency -s load-tests/one-time.lua "$TARGET_URL" |
    awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {n=$4}
         END {printf "target   %10s req/s  p50 %-9s p99 %-9s non-2xx %s\n", rps, p50, p99, n+0}'
  exit 0
fi
if [ "${NO_BUILD:-}" != 1 ]; then
  if [ "$PROFILE" = release ]; then cargo build --release -q -p gateway -p kms-sidecar -p upstreams -p testkit; else cargo build -q -p gateway -p kms-sidecar -p upstreams -p testkit; fi
fi
BIN=target/$PROFILE
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KMS=${KMS_PORT:-$(port)}; CHAN=${CHAN_PORT:-$(port)}; UP=${UP_PORT:-$(port)}
if [ -n "${UP_PORT:-}" ]; then D1=$((UP + 1)); D2=$((UP + 2)); D3=$((UP + 3)); else D1=$(port); D2=$(port); D3=$(port); fi
export KMS_MASTER_KEY=$(head -c 32 /dev/urandom | base64) KMS_ADMIN_TOKEN=ot-admin-$RANDOM-$RANDOM-token KMS_GATEWAY_TOKEN=ot-gateway-$RANDOM-$RANDOM-tok
wait_for() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$2 did not come up" >&2; exit 1; }

cat >"$WORK/kms.yaml" <<YAML
listen: 127.0.0.1:$KMS
internal_listen: 127.0.0.1:$CHAN
data_dir: $WORK/kms
master_key: { env: KMS_MASTER_KEY }
admin_token: { env: KMS_ADMIN_TOKEN }
gateway_token: { env: KMS_GATEWAY_TOKEN }
tenants:
  - { id: t1, alg: ES256, issuer: https://issuer.test/t1, audience: api, rotation: { interval: 1d } }
YAML
"$BIN/kms-sidecar" init --config "$WORK/kms.yaml" >/dev/null
RUST_LOG=warn "$BIN/kms-sidecar" serve --config "$WORK/kms.yaml" >"$WORK/kms.log" 2>&1 & KPID=$!; pids+=($KPID)
"$BIN/upstreams" --patient 127.0.0.1:$UP --doctor 127.0.0.1:$D1 --lab 127.0.0.1:$D2 --insurance 127.0.0.1:$D3 >"$WORK/up.log" 2>&1 & pids+=($!)
wait_for "http://127.0.0.1:$KMS/healthz" kms-sidecar
wait_for "http://127.0.0.1:$UP/healthz" upstreams

start_gateway() { # name extra-yaml index -> sets GW_<name>, ADMIN_<name>, PID_<name>
  local name=$1 extra=$2 gw admin
  if [ -n "${GW_PORT:-}" ]; then gw=$((GW_PORT + $3)); admin=$((GW_PORT + 10 + $3)); else gw=$(port); admin=$(port); fi
  cat >"$WORK/$name.yaml" <<YAML
listen: 127.0.0.1:$gw
admin_listen: 127.0.0.1:$admin
threads: 1
tenants:
  t1:
    issuer: https://issuer.test/t1
    audiences: [api]
    algorithms: [ES256]
    keys: { file: $PWD/gateway/testkit/keys/ec-a.pub.pem, kid: es-1 }
upstreams:
  echo: { peers: ["127.0.0.1:$UP"] }
routes:
  - { name: once, prefix: /echo/once, upstream: echo, one_time: true }
$extra
YAML
  RUST_LOG=warn "$BIN/gateway" --config "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  eval "GW_$name=$gw ADMIN_$name=$admin PID_$name=$!"
  wait_for "http://127.0.0.1:$admin/readyz" "gateway ($name)"
}
start_gateway memory "" 0
start_gateway shared "replay_store: { url: \"http://127.0.0.1:$CHAN/internal/v1/one-time\", token_env: KMS_GATEWAY_TOKEN }" 1

# More tokens than a run can use (ES256 signs in microseconds).
N=$((DUR * 12000))
for name in memory shared; do
  "$BIN/mint-test-token" --key ec-a.pem --kid es-1 --alg ES256 --ttl 3600 --count $N >"$WORK/$name.tokens"
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }
echo "wrk: ${DUR}s per gateway, $CONN connections, 1 gateway thread, ES256 one-time tokens each used once, on $(nproc) cores shared with wrk and the sidecar"
run() { # name
  local name=$1 gw admin pid
  eval "gw=\$GW_$name admin=\$ADMIN_$name pid=\$PID_$name"
  local g0 k0 g1 k1
  g0=$(cpu_ticks "$pid"); k0=$(cpu_ticks "$KPID")
  TOKENS="$WORK/$name.tokens" wrk -t1 -c"$CONN" -d"${DUR}s" --latency -s load-tests/one-time.lua "http://127.0.0.1:$gw/echo/once" >"$WORK/$name.txt"
  g1=$(cpu_ticks "$pid"); k1=$(cpu_ticks "$KPID")
  local rps p50 p99 reqs non2xx sum count
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/$name.txt"); non2xx=${non2xx:-0}
  sum=$(metric "$admin" 'gateway_one_time_check_seconds_sum{result="first"}')
  count=$(metric "$admin" 'gateway_one_time_check_seconds_count{result="first"}')
  python3 - "$name" "$rps" "$p50" "$p99" "$reqs" "$non2xx" "$g0" "$g1" "$k0" "$k1" "$TCK" "${sum:-0}" "${count:-0}" <<'PY'
import sys
name, rps, p50, p99, reqs, non2xx = sys.argv[1:7]
g0, g1, k0, k1, tck = map(float, sys.argv[7:12])
s, c = float(sys.argv[12]), float(sys.argv[13])
n = max(float(reqs), 1)
print(f"{name:8} {rps:>10} req/s  p50 {p50:9} p99 {p99:9} gateway CPU/req {(g1-g0)/tck/n*1e6:7.1f} us"
      f"  sidecar CPU/req {(k1-k0)/tck/n*1e6:7.1f} us  one-time check avg {s/max(c,1)*1e6:8.1f} us  non-2xx {non2xx}")
PY
  eval "RPS_$name=$rps"
}
run memory
run shared
python3 -c "print(f'ratio shared/memory (req/s): {float(\"$RPS_shared\")/float(\"$RPS_memory\"):.3f}')"
