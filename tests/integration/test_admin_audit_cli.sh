#!/usr/bin/env bash
# The offline admin and audit commands on a site: tenants, principals, keys (shown once,
# revoked), listings as tables and JSON, bad arguments (exit 2); every admin action in the audit
# log; `audit verify` of the live chain, an export verified offline with only site.pub, and a
# tampered export refused naming the first bad sequence number (exit 1). $1 = antenna binary.
set -u
BIN=$(realpath "$1")
T=$(mktemp -d /tmp/antenna-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { local n=$1; shift; if "$@"; then echo "ok   $n"; else echo "FAIL $n"; fails=$((fails + 1)); fi; }
A() { "$BIN" admin --dir "$T/site" "$@"; }

"$BIN" init --dir "$T/site" --site-id site-x --region EU >/dev/null 2>&1 || { echo "FAIL init"; exit 1; }
A tenant add lab >/dev/null
check "tenant add" test $? -eq 0
A tenant add lab >/dev/null 2>&1
check "a second tenant of the same name is refused" test $? -ne 0
A principal add ann --tenant lab --role owner --role auditor >/dev/null
check "principal add with two roles" test $? -eq 0
A principal add bad --tenant nowhere --role reader >/dev/null 2>"$T/err"
check "principal of an unknown tenant refused with a message" bash -c "[ -s '$T/err' ]"
A -o json key create --principal ann >"$T/key.json"
check "key create shows the key once" python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["key"]; sys.exit(0 if k.startswith("ak_") else 1)' "$T/key.json"
KID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_id"])' "$T/key.json")
KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$T/key.json")
check "key list never shows the secret" bash -c "! '$BIN' admin --dir '$T/site' -o json key list | grep -q '${KEY##*_}'"
check "key list as a table names the key" bash -c "'$BIN' admin --dir '$T/site' key list | grep -q '$KID'"
A key revoke "$KID" >/dev/null
check "key revoke" test $? -eq 0
check "a revoked key shows as revoked" bash -c "'$BIN' admin --dir '$T/site' -o json key list | grep -q revoked"
A tenant frobnicate >/dev/null 2>&1
check "an unknown admin command exits 2" test $? -eq 2
"$BIN" audit verify >/dev/null 2>&1 </dev/null; rc=$?
check "audit verify without a site exits non-zero" test $rc -ne 0
"$BIN" audit bogus >/dev/null 2>&1
check "an unknown audit command exits 2" test $? -eq 2

# every admin action is in the chain, with the key id and never the key
"$BIN" audit query --dir "$T/site" -o json --limit 1000 >"$T/events.json"
check "admin actions are audited" python3 - "$T/events.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ev = d["events"] if isinstance(d, dict) else d
acts = {e.get("action") for e in ev}
sys.exit(0 if {"admin.tenant.add", "admin.principal.add", "admin.key.create", "admin.key.revoke"} <= acts or
         len([a for a in acts if a and a.startswith("admin.")]) >= 4 else 1)
PY
check "the log holds no API key" bash -c "! grep -q '${KEY##*_}' '$T/site/audit.db'"

"$BIN" audit verify --dir "$T/site" >"$T/v.out" 2>&1
check "the live chain verifies" test $? -eq 0
check "verify checks the query index" grep -q "query index complete up to seq [1-9]" "$T/v.out"
# a copy whose index lost a row (triggers dropped, as someone who can write the file could):
# the chain verifies, the hole fails the verification and is named
cp -a "$T/site" "$T/holed"
HOLE=$(sqlite3 "$T/holed/audit.db" "SELECT max(seq) FROM events_by")
sqlite3 "$T/holed/audit.db" "DROP TRIGGER events_by_no_delete; DELETE FROM events_by WHERE seq = ${HOLE:-0}"
"$BIN" audit verify --dir "$T/holed" >"$T/vh.out" 2>&1
check "a hole in the query index fails verify" test $? -ne 0
check "verify names the event missing from the index" grep -q "QUERY INDEX INCOMPLETE: event $HOLE " "$T/vh.out"
check "the chain itself still verifies" grep -q "audit.db: intact" "$T/vh.out"
"$BIN" audit export --dir "$T/site" -o "$T/export.ndjson" >/dev/null 2>&1
check "export" test -s "$T/export.ndjson"
"$BIN" audit verify --export "$T/export.ndjson" --site-key "$T/site/keys/site.pub" >"$T/ve.out" 2>&1
check "the export verifies offline with site.pub" test $? -eq 0
# change one field of the third event
python3 - "$T/export.ndjson" "$T/tampered.ndjson" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
out, n = [], 0
for l in lines:
    o = json.loads(l)
    if o.get("type") == "event":
        n += 1
        if n == 3:
            o["actor"] = "mallory"
            l = json.dumps(o, separators=(",", ":"))
    out.append(l)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
"$BIN" audit verify --export "$T/tampered.ndjson" --site-key "$T/site/keys/site.pub" >"$T/vt.out" 2>&1
rc=$?
check "a tampered export fails (exit 1)" test $rc -eq 1
check "and names sequence 3" grep -q "BROKEN at seq 3" "$T/vt.out"
"$BIN" audit verify --export "$T/export.ndjson" >/dev/null 2>&1
check "verify --export without --site-key exits 2" test $? -eq 2
echo "admin/audit CLI: $fails failed"
[ $fails -eq 0 ]
