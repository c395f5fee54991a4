#!/bin/sh
# The kms-sidecar's container entrypoint: creates the store on first start, then
# serves. With a sidecar that has `kms-sidecar init` the store is created by it
# (once: only while data_dir is empty); with an older one that has no
# `init`, the config is served with `create_if_missing: true` added.
# Env: KMS_CONFIG (default /app/conf/docker/kms.yaml), KMS_DATA_DIR (the config's
# data_dir, default /var/lib/medgate/kms).
set -eu
CONFIG=${KMS_CONFIG:-/app/conf/docker/kms.yaml}
DATA=${KMS_DATA_DIR:-/var/lib/medgate/kms}
fresh() { [ -z "$(ls -A "$DATA" 2>/dev/null)" ]; }
if kms-sidecar init --help >/dev/null 2>&1; then
  if fresh; then
    kms-sidecar init --config "$CONFIG"
  fi
  exec kms-sidecar serve --config "$CONFIG"
fi
if fresh && ! grep -q '^create_if_missing:' "$CONFIG"; then
  mkdir -p /tmp/kms && { cat "$CONFIG"; echo; echo 'create_if_missing: true'; } >/tmp/kms/kms.yaml
  CONFIG=/tmp/kms/kms.yaml
fi
exec kms-sidecar serve --config "$CONFIG"
