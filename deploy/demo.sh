#!/usr/bin/env bash
# Installs what is missing, builds, creates a demo site under ./var (or reuses it) and runs the
# gateway in the foreground on https://127.0.0.1:8443.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/deps.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build
BIN=build/gateway/antenna
if [ ! -f var/antenna.conf ]; then
  "$BIN" init --dir var --site-id demo --region EU --listen 127.0.0.1:8443 | tee var.admin-key.txt
fi
echo "Reach it with: curl --cacert var/tls/cert.pem https://127.0.0.1:8443/v1/health"
exec "$BIN" serve --dir var
