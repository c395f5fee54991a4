#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and end-to-end tests of all crates, a
# smoke run of the demo stack (scripts/demo.sh) and a bounded k6 load run with key
# rotation, config reload and revocation (load-tests/ops-scenario.sh), all on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== module cycles"
scripts/check-cycles.py --self-test
scripts/check-cycles.py gateway/src gateway/core/src kms-sidecar/src channel/src
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/gateway-test.log
if python3 -c "import yaml" 2>/dev/null; then echo "== compose.yaml and conf/docker"; scripts/check-compose.sh; fi
echo "== demo stack smoke run (HTTPS with HTTP/2, mutual TLS to the role services)"
scripts/demo.sh --smoke
echo "== demo stack smoke run without TLS, with its own configs (--plain, GATEWAY_CONFIG, KMS_CONFIG)"
mkdir -p .demo && rm -rf .demo/own-kms .demo/own-access.log
sed 's|^  target: stdout .*|  target: file\n  path: .demo/own-access.log|' conf/gateway.yaml >.demo/own-gateway.yaml
sed 's|^data_dir: .demo/kms |data_dir: .demo/own-kms |' conf/kms.yaml >.demo/own-kms.yaml
GATEWAY_CONFIG=.demo/own-gateway.yaml KMS_CONFIG=.demo/own-kms.yaml scripts/demo.sh --smoke --plain
[ -s .demo/own-kms/keys.redb ] || { echo "demo.sh ignored KMS_CONFIG (no .demo/own-kms/keys.redb)" >&2; exit 1; }
grep -q '"status":200' .demo/own-access.log || { echo "demo.sh ignored GATEWAY_CONFIG (no access lines in .demo/own-access.log)" >&2; exit 1; }
echo "== bounded load run (k6): rotation, reload and revocation under load"
load-tests/ops-scenario.sh 12
