#!/usr/bin/env bash
# Integration test of the /v1 API: a real daemon on 127.0.0.1 (port 0) spoken to over HTTPS with
# its own certificate as the only trust anchor. The checks themselves are in api_checks.py
# (standard library only): happy paths, the cross-tenant matrix, path attacks, bad JSON, bad
# credentials, uploads cut off mid-body. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
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
URL=$(wait_serving "$T/serve.out") || { echo "FAIL serve did not start"; cat "$T/serve.log"; exit 1; }
PORT=${URL##*:}

python3 "$HERE/api_checks.py" --port "$PORT" --cacert "$T/site/tls/cert.pem" --key "$KEY" \
    --site "$T/site" --src "$SRC" --bin "$BIN" --pid "$PID" --max-upload-mib "$MAXUP" \
    --big-mib "$BIG"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "--- last server log lines ---"
    grep -v '"http.request"' "$T/serve.log" | tail -20
fi

# The request log is buffered ([log] flush_ms, 250 ms by default): a request's line reaches the
# log within that bound (1 s of slack for a loaded machine), and the lines of the requests just
# before a clean shutdown are all written by it.
reqid() {
    curl -s --cacert "$T/site/tls/cert.pem" -o /dev/null -D - "https://127.0.0.1:$PORT/v1/health" |
        tr -d '\r' | sed -n 's/^[Xx]-[Rr]equest-[Ii]d: *//p'
}
logfails=0
id=$(reqid)
t0=$(date +%s%N)
waited=
while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ]; do
    if grep -q "\"request_id\":\"$id\"" "$T/serve.log"; then
        waited=$(( ($(date +%s%N) - t0) / 1000000 ))
        break
    fi
    sleep 0.01
done
if [ -z "$id" ] || [ -z "$waited" ] || [ "$waited" -gt 1250 ]; then
    echo "FAIL request log line of '$id' not written within 250 ms (+1 s slack): ${waited:-never}"
    logfails=1
else
    echo "ok   request log line written ${waited} ms after the answer (flush_ms 250)"
fi
ids=()
for _ in $(seq 20); do ids+=("$(reqid)"); done
kill -TERM "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=
missing=0
for id in "${ids[@]}"; do
    [ -n "$id" ] && grep -q "\"request_id\":\"$id\"" "$T/serve.log" || missing=$((missing + 1))
done
if [ $missing -ne 0 ]; then
    echo "FAIL $missing of the 20 requests before SIGTERM have no request log line"
    logfails=1
else
    echo "ok   the 20 requests just before SIGTERM all have their request log line"
fi
[ $logfails -eq 0 ] || [ $rc -ne 0 ] || rc=1
# a sanitizer build reports at exit (leaks) or aborts: either is a failure
if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$T/serve.log"; then
    echo "FAIL the server's sanitizers reported:"
    grep -E -A12 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$T/serve.log" | head -60
    rc=1
fi
exit $rc
