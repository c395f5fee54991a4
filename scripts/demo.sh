#!/usr/bin/env bash
# Brings up the whole stack on loopback with the shipped config ($GATEWAY_CONFIG,
# default conf/tls/gateway.yaml, and $KMS_CONFIG, default conf/kms.yaml):
#   kms-sidecar  127.0.0.1:8081 (JWKS, issuing, admin)  127.0.0.1:8082 (gateway channel)
#   upstreams    127.0.0.1:9101-9104 (patient, doctor, lab, insurance), HTTPS accepting
#                only the gateway's client certificate (mutual TLS)
#   gateway      127.0.0.1:8080 (proxy)  127.0.0.1:8443 (HTTPS proxy, HTTP/1.1 and HTTP/2)
#                127.0.0.1:9090 (healthz, readyz, metrics)
# then mints tokens with the sidecar and shows accepted and refused requests, among
# them an HTTP/2 request over HTTPS and a direct call to a role service without the
# gateway's client certificate, refused. The throwaway CA and certificates are made
# in .demo/tls/ on the first run (scripts/demo-ca.sh).
# `--smoke` stops the stack after the show (used by scripts/test.sh); otherwise it
# keeps running until Ctrl-C. `--plain` runs without TLS (default gateway config
# conf/gateway.yaml, plain HTTP role services, no 8443). Demo secrets live in .demo/
# (git-ignored). Binaries come from ${CARGO_TARGET_DIR:-target}/$PROFILE (debug).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=
TLS=1
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=--smoke ;;
    --plain) TLS= ;;
    --tls) TLS=1 ;; # the default; kept for older command lines
    *) echo "usage: scripts/demo.sh [--smoke] [--plain]" >&2; exit 2 ;;
  esac
done
PROFILE=${PROFILE:-debug}
if [ -n "$TLS" ]; then GATEWAY_CONFIG=${GATEWAY_CONFIG:-conf/tls/gateway.yaml}; fi
GATEWAY_CONFIG=${GATEWAY_CONFIG:-conf/gateway.yaml}
KMS_CONFIG=${KMS_CONFIG:-conf/kms.yaml}
if [ -n "$TLS" ] && ! grep -q '^tls:' "$GATEWAY_CONFIG"; then
  echo "$GATEWAY_CONFIG has no tls: section, but the role services will demand mutual TLS:" >&2
  echo "run with --plain, or start from conf/tls/gateway.yaml" >&2; exit 2
fi
scripts/deps.sh
if [ "$PROFILE" = release ]; then cargo build -q --release -p gateway -p kms-sidecar -p upstreams -p testkit; else cargo build -q -p gateway -p kms-sidecar -p upstreams -p testkit; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
mkdir -p .demo/logs
for port in 8080 8081 8082 9090 9101 9102 9103 9104 ${TLS:+8443}; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is already in use: stop what runs there (a previous demo?) and retry" >&2; exit 1
  fi
done
secret() { [ -s ".demo/$1" ] || (head -c 32 /dev/urandom | base64 > ".demo/$1"); chmod 600 ".demo/$1"; cat ".demo/$1"; }
export KMS_MASTER_KEY=$(secret master.key)
export KMS_ADMIN_TOKEN=$(secret admin.token)
export KMS_GATEWAY_TOKEN=$(secret gateway.token)
export GATEWAY_ADMIN_TOKEN=$(secret gateway-admin.token)

pids=()
# SIGINT: Pingora shuts down at once (SIGTERM would wait out its graceful period).
stop() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM
wait_for() { # name curl-args...
  local name=$1; shift
  for _ in $(seq 300); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done
  echo "$name did not come up; see .demo/logs/$name.log" >&2; tail -20 ".demo/logs/$name.log" >&2; exit 1
}

# The key store is created once, explicitly; `serve` refuses to start without one.
KMS_DATA=$(sed -n "s/^data_dir: *[\"']\{0,1\}\([^\"' #]*\).*/\1/p" "$KMS_CONFIG")
[ -e "${KMS_DATA:-.demo/kms}/keys.redb" ] || "$BIN/kms-sidecar" init --config "$KMS_CONFIG" >.demo/logs/kms-init.log 2>&1 \
  || { echo "kms-sidecar init failed; see .demo/logs/kms-init.log" >&2; cat .demo/logs/kms-init.log >&2; exit 1; }
"$BIN/kms-sidecar" serve --config "$KMS_CONFIG" >.demo/logs/kms-sidecar.log 2>&1 & pids+=($!)
wait_for kms-sidecar http://127.0.0.1:8081/healthz
if [ -n "$TLS" ]; then
  scripts/demo-ca.sh .demo/tls
  T=.demo/tls
  "$BIN/upstreams" --tls-cert $T/services.pem --tls-key $T/services.key --client-ca $T/ca.pem \
    >.demo/logs/upstreams.log 2>&1 & pids+=($!)
  # Only the gateway's client certificate gets an answer now.
  MTLS=(--cacert $T/ca.pem --cert $T/gateway-client.pem --key $T/gateway-client.key
        --resolve patient.medgate.test:9101:127.0.0.1)
  wait_for upstreams "${MTLS[@]}" https://patient.medgate.test:9101/healthz
else
  "$BIN/upstreams" >.demo/logs/upstreams.log 2>&1 & pids+=($!)
  wait_for upstreams http://127.0.0.1:9101/healthz
fi
RUST_LOG=${RUST_LOG:-info} "$BIN/gateway" --config "$GATEWAY_CONFIG" >.demo/logs/gateway.log 2>&1 & pids+=($!)
wait_for gateway http://127.0.0.1:9090/readyz
echo "stack up: gateway http://127.0.0.1:8080 ${TLS:+https://localhost:8443 }admin http://127.0.0.1:9090  sidecar http://127.0.0.1:8081"

mint() { "$BIN/kms-sidecar" mint "$@"; }
show() { # expected-status description curl-args...
  local want=$1 what=$2; shift 2
  local out status
  out=$(curl -s -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  printf '\n[%s] %s -> HTTP %s\n%s\n' "$([ "$status" = "$want" ] && echo ok || echo UNEXPECTED)" "$what" "$status" "${out%$'\n'*}"
  [ "$status" = "$want" ]
}
PATIENT=$(mint --tenant hospital-a --sub p-100 --role patient)
DOCTOR_B=$(mint --tenant hospital-b --sub d-7 --role doctor)
ok=true
show 200 "patient p-100 reads own records" -H "Authorization: Bearer $PATIENT" http://127.0.0.1:8080/patients/p-100/records || ok=false
show 200 "identity headers the upstream received (spoofed X-User-Id removed)" -H "Authorization: Bearer $PATIENT" -H "X-User-Id: admin" http://127.0.0.1:8080/echo/whoami || ok=false
show 403 "patient p-100 reads p-101's records" -H "Authorization: Bearer $PATIENT" http://127.0.0.1:8080/patients/p-101/records || ok=false
show 200 "hospital-b doctor reads a hospital-b patient" -H "Authorization: Bearer $DOCTOR_B" http://127.0.0.1:8080/doctors/patients/p-200/records || ok=false
show 401 "no token" http://127.0.0.1:8080/patients/p-100/records || ok=false
show 204 "CORS preflight from the allowed web app origin (answered by the gateway, no token)" -i -X OPTIONS \
  -H "Origin: http://localhost:3000" -H "Access-Control-Request-Method: GET" http://127.0.0.1:8080/patients/p-100/records || ok=false
# A well-formed RS256 token under the sidecar's current kid, signed by another key
# (a test key of gateway/testkit/keys): 401 signature_invalid.
KID=$(python3 -c 'import base64,json,sys; h=sys.argv[1]; print(json.loads(base64.urlsafe_b64decode(h+"="*(-len(h)%4)))["kid"])' "${PATIENT%%.*}")
FORGED=$("$BIN/mint-test-token" --key rsa-b.pem --kid "$KID" --alg RS256 --tenant hospital-a \
  --issuer https://kms.local/hospital-a --aud medapi --sub p-100 --role patient --ttl 300)
show 401 "forged token (kid $KID, signed by another key)" -H "Authorization: Bearer $FORGED" http://127.0.0.1:8080/patients/p-100/records || ok=false
JTI=$(printf '%s' "$PATIENT" | cut -d. -f2 | tr '_-' '/+' | base64 -d 2>/dev/null | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["jti"], c["exp"])')
curl -s -o /dev/null -X POST -H "Authorization: Bearer $KMS_ADMIN_TOKEN" \
  -d "{\"tenant\":\"hospital-a\",\"jti\":\"${JTI% *}\",\"exp\":${JTI#* }}" http://127.0.0.1:8081/admin/revoke
sleep 0.3
show 401 "the same patient token after POST /admin/revoke" -H "Authorization: Bearer $PATIENT" http://127.0.0.1:8080/patients/p-100/records || ok=false
INSURER=$(mint --tenant hospital-a --sub ins-1 --role insurer --ttl 5m --encrypt)
show 200 "insurer with a one-time encrypted token (nested JWE)" -H "Authorization: Bearer $INSURER" http://127.0.0.1:8080/insurance/patients/p-100/summary || ok=false
show 401 "the same one-time token again" -H "Authorization: Bearer $INSURER" http://127.0.0.1:8080/insurance/patients/p-100/summary || ok=false
show 401 "a plain signed token on the JWE-only insurance route" -H "Authorization: Bearer $(mint --tenant hospital-a --sub ins-1 --role insurer --ttl 5m)" http://127.0.0.1:8080/insurance/patients/p-100/summary || ok=false
show 200 "audit trail query (admin credential)" -H "Authorization: Bearer $GATEWAY_ADMIN_TOKEN" "http://127.0.0.1:9090/audit?subject=p-100&limit=3" || ok=false
if [ -n "$TLS" ]; then
  H2=(--http2 --cacert $T/ca.pem -H "Authorization: Bearer $DOCTOR_B" https://localhost:8443/doctors/patients/p-200/records)
  show 200 "HTTPS with HTTP/2 (curl --http2 --cacert .demo/tls/ca.pem), reaching the role service over mTLS" "${H2[@]}" || ok=false
  PROTO=$(curl -s -o /dev/null -w '%{http_version}' "${H2[@]}" || true)
  printf '   protocol: HTTP/%s\n' "$PROTO"
  [ "$PROTO" = 2 ] || { echo "   UNEXPECTED: not HTTP/2" >&2; ok=false; }
  # A caller that bypasses the gateway, without its client certificate: refused at the
  # TLS handshake (curl reports no HTTP status: 000, and its error).
  show 000 "direct call to the patient service without the gateway's client certificate" -S \
    --cacert $T/ca.pem --resolve patient.medgate.test:9101:127.0.0.1 -H "X-User-Id: p-100" -H "X-Tenant-Id: hospital-a" \
    -H "X-User-Role: patient" https://patient.medgate.test:9101/patients/p-100/records || ok=false
fi
$ok || { echo "demo: an answer was not as expected" >&2; exit 1; }
if [ "$SMOKE" = "--smoke" ]; then echo; echo "demo smoke run passed"; exit 0; fi
echo; echo "Stack is running; mint more tokens as README.md shows. Ctrl-C stops it."
wait
