#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and end-to-end tests of all crates, a
# smoke run of the demo stack (scripts/demo.sh) and a bounded k6 load run with key
# rotation, config reload and revocation (load-tests/ops-scenario.sh), all on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/gateway-test.log
if python3 -c "import yaml" 2>/dev/null; then echo "== compose.yaml and conf/docker"; scripts/check-compose.sh; fi
echo "== demo stack smoke run"
scripts/demo.sh --smoke
echo "== bounded load run (k6): rotation, reload and revocation under load"
load-tests/ops-scenario.sh 12
