#!/usr/bin/env bash
# A held answer whose audit event cannot be written is a 503 and releases nothing: another
# process holds audit.db's write lock, so the writer's group commit fails with -EBUSY.
set -uo pipefail
BIN=$1
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/antenna-fc-XXXX); SPID=
trap '[ -n "$SPID" ] && kill $SPID; wait; rm -rf $T' EXIT
"$BIN" init --dir "$T/site" --site-id fc --region EU >/dev/null 2>&1
"$BIN" admin --dir "$T/site" tenant add t >/dev/null
"$BIN" admin --dir "$T/site" principal add u --tenant t --role owner >/dev/null
KEY=$(new_key "$BIN" "$T/site" u)
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/out" 2>"$T/log" & SPID=$!
U=$(wait_serving "$T/out")
python3 - "$U" "$KEY" "$T/site/tls/cert.pem" "$T/site/audit.db" <<'PY'
import http.client, json, sqlite3, ssl, sys, time
u, key, ca, audit = sys.argv[1:]
host, port = u[len("https://"):].split(":")
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
def req(m, p, body=None):
    c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    c.request(m, p, body=json.dumps(body) if body is not None else None,
              headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); b = r.read(); return r.status, b
s, b = req("POST", "/v1/datasets", {"name": "d1"})
ds = json.loads(b)["id"]
assert req("GET", "/v1/datasets/" + ds)[0] == 200
db = sqlite3.connect(audit, isolation_level=None, timeout=1)
db.execute("BEGIN IMMEDIATE")
t = time.monotonic()
s, b = req("GET", "/v1/datasets/" + ds)
print("while audit.db is locked:", s, b[:120], f"after {time.monotonic()-t:.1f} s")
ok = s == 503 and ds.encode() not in b and b"audit_unavailable" in b
s2, b2 = req("GET", "/v1/datasets/nope")
print("unknown dataset while locked:", s2, b2[:80])
ok = ok and s2 == 503
db.execute("ROLLBACK"); db.close()
s3, _ = req("GET", "/v1/datasets/" + ds)
print("after the lock is gone:", s3)
sys.exit(0 if ok and s3 == 200 else 1)
PY
[ $? -eq 0 ] || exit 1

# A failed fdatasync of the audit log: every audited request is refused until the daemon is
# restarted (the handle is poisoned), and /v1/health says so with a 503, for load balancers.
kill $SPID; wait $SPID 2>/dev/null; SPID=
ANTENNA_TEST_AUDIT_SYNC_FAIL=$T/disk-fails "$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 \
    >"$T/out2" 2>"$T/log2" & SPID=$!
U=$(wait_serving "$T/out2")
C=(curl -s --cacert "$T/site/tls/cert.pem" -o "$T/body" -w '%{http_code}')
fail() { echo "FAIL $*"; tail -5 "$T/log2"; exit 1; }
[ "$("${C[@]}" "$U/v1/health")" = 200 ] || fail "health before"
[ "$("${C[@]}" -H "Authorization: Bearer $KEY" "$U/v1/datasets")" = 200 ] || fail "list before"
touch "$T/disk-fails"
code=$("${C[@]}" -H "Authorization: Bearer $KEY" "$U/v1/datasets")
[ "$code" = 503 ] || fail "a request whose event cannot be synced got $code"
rm -f "$T/disk-fails"
[ "$("${C[@]}" -H "Authorization: Bearer $KEY" "$U/v1/datasets")" = 503 ] ||
    fail "a request after the failed fdatasync was served (the handle must stay poisoned)"
[ "$("${C[@]}" "$U/v1/health")" = 503 ] && grep -q '"audit_failed"' "$T/body" ||
    fail "health after a failed fdatasync: $(cat "$T/body")"
grep -q '"audit.sync_failed"' "$T/log2" || fail "no audit.sync_failed in the log"
kill $SPID; wait $SPID 2>/dev/null; SPID=
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/out3" 2>"$T/log3" & SPID=$!
U=$(wait_serving "$T/out3")
[ "$("${C[@]}" "$U/v1/health")" = 200 ] || fail "health after the restart"
[ "$("${C[@]}" -H "Authorization: Bearer $KEY" "$U/v1/datasets")" = 200 ] || fail "list after the restart"
"$BIN" audit verify --dir "$T/site" >/dev/null || fail "audit verify after the failure"
echo "audit fdatasync failure: 503 until restart, health 503, chain intact"
