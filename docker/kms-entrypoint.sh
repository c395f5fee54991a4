#!/bin/sh
# The kms-sidecar's container entrypoint: creates the key store with
# `kms-sidecar init` on first start (only while data_dir is empty; `serve` refuses a
# missing store), then serves.
# Env: KMS_CONFIG (default /app/conf/docker/kms.yaml), KMS_DATA_DIR (the config's
# data_dir, default /var/lib/medgate/kms).
set -eu
CONFIG=${KMS_CONFIG:-/app/conf/docker/kms.yaml}
DATA=${KMS_DATA_DIR:-/var/lib/medgate/kms}
if [ -z "$(ls -A "$DATA" 2>/dev/null)" ]; then
  kms-sidecar init --config "$CONFIG"
fi
exec kms-sidecar serve --config "$CONFIG"
