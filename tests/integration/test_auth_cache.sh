#!/usr/bin/env bash
# A key revoked by the admin CLI (another process) while the daemon's auth cache holds it
# fails within 1 s; a principal's key revoked over the API fails at once.
set -uo pipefail
BIN=$1
T=$(mktemp -d /tmp/antenna-rv-XXXX); SPID=
trap '[ -n "$SPID" ] && kill $SPID; wait; rm -rf $T' EXIT
"$BIN" init --dir "$T/site" --site-id rv --region EU >/dev/null 2>&1
sed -i 's/^rate_limit = .*/rate_limit = 0/' "$T/site/antenna.conf"
"$BIN" admin --dir "$T/site" tenant add t >/dev/null
"$BIN" admin --dir "$T/site" principal add u --tenant t --role owner >/dev/null
J=$("$BIN" admin --dir "$T/site" -o json key create --principal u)
KEY=$(echo "$J" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
KID=$(echo "$J" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/out" 2>"$T/log" & SPID=$!
for _ in $(seq 100); do grep -q serving "$T/out" 2>/dev/null && break; sleep 0.1; done
U=$(sed -n 's|.*\(https://[0-9.:]*\).*|\1|p' "$T/out")
python3 - "$U" "$KEY" "$T/site/tls/cert.pem" "$BIN" "$T/site" "$KID" <<'PY'
import http.client, ssl, subprocess, sys, time
u, key, ca, binp, site, kid = sys.argv[1:]
host, port = u[len("https://"):].split(":")
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
c = http.client.HTTPSConnection(host, int(port), context=ctx)
def get():
    c.request("GET", "/v1/datasets", headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); r.read(); return r.status
assert get() == 200
# keep the cache warm while the CLI revokes in another process
subprocess.run([binp, "admin", "--dir", site, "key", "revoke", kid], check=True, capture_output=True)
t = time.monotonic()
last_ok = t
while time.monotonic() - t < 3:
    s = get()
    if s == 200: last_ok = time.monotonic()
    elif s == 401: break
print(f"status {s}; last 200 {1000*(last_ok-t):.0f} ms after the revoke returned")
sys.exit(0 if s == 401 and last_ok - t <= 1.0 else 1)
PY
