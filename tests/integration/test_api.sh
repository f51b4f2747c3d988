#!/usr/bin/env bash
# Integration test of the /v1 API: a real daemon on 127.0.0.1 (port 0) spoken to over HTTPS with
# its own certificate as the only trust anchor. The checks themselves are in api_checks.py
# (standard library only): happy paths, the cross-tenant matrix, path attacks, bad JSON, bad
# credentials, uploads cut off mid-body. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
T=$(mktemp -d /tmp/antenna-api-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

if ! "$BIN" init --dir "$T/site" --site-id site-a --region EU >"$T/init.out" 2>&1; then
    grep -q "not available in this build" "$T/init.out" && { echo "init/serve not built"; exit 77; }
    echo "FAIL init"; cat "$T/init.out"; exit 1
fi
KEY=$(grep -E '^ak_' "$T/init.out")
# an upload limit that the big upload fits under and 413 is cheap to reach past
BIG=${ANT_API_BIG_MIB:-2048}
MAXUP=${ANT_API_MAX_UPLOAD_MIB:-$((BIG + 16))}
sed -i "s/^max_upload = .*/max_upload = ${MAXUP}M/" "$T/site/antenna.conf"
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.log" &
PID=$!
for _ in $(seq 100); do grep -q serving "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\).*|\1|p' "$T/serve.out")
[ -n "$PORT" ] || { echo "FAIL serve did not start"; cat "$T/serve.log"; exit 1; }

python3 "$HERE/api_checks.py" --port "$PORT" --cacert "$T/site/tls/cert.pem" --key "$KEY" \
    --site "$T/site" --src "$SRC" --bin "$BIN" --pid "$PID" --max-upload-mib "$MAXUP" \
    --big-mib "$BIG"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "--- last server log lines ---"
    grep -v '"http.request"' "$T/serve.log" | tail -20
fi
kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=
# a sanitizer build reports at exit (leaks) or aborts: either is a failure
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$T/serve.log"; then
    echo "FAIL the server's sanitizers reported:"
    grep -E -A12 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$T/serve.log" | head -60
    rc=1
fi
exit $rc
