#!/usr/bin/env bash
# The remote audit commands: `antenna audit query|export|verify` against the real daemon on
# 127.0.0.1 (port 0) over HTTPS, for a tenant's auditor and a site admin: tables and JSON, the
# next cursor, an export written whole, verify intact (exit 0) and against a wrong site key
# (exit 1), a principal without the auditor role refused with the server's message, and an
# export or site key that is a FIFO refused at once. An auditor's export and verify are
# tenant-scoped: other events redacted, its own re-hashed. $1 = antenna binary.
set -u
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/antenna-auditr-XXXXXX)
PID=
fails=0
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
check() { local n=$1; shift; if "$@"; then echo "ok   $n"; else echo "FAIL $n"; fails=$((fails + 1)); fi; }
A() { "$BIN" admin --dir "$T/site" "$@"; }
keyof() { A -o json key create --principal "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }

"$BIN" init --dir "$T/site" --site-id site-r --region EU >"$T/init.out" 2>&1 || { echo "FAIL init"; exit 1; }
grep -E '^ak_' "$T/init.out" | head -1 >"$T/admin.key"
# checkpoints every 5 events, so the trail below is signed while the test runs
sed -i 's/^checkpoint_every = .*/checkpoint_every = 5/' "$T/site/antenna.conf"
A tenant add lab >/dev/null && A tenant add other >/dev/null
A principal add aud --tenant lab --role auditor >/dev/null
A principal add rd --tenant lab --role reader >/dev/null
keyof aud >"$T/aud.key"
keyof rd >"$T/rd.key"
check "keys created" test -s "$T/aud.key" -a -s "$T/rd.key" -a -s "$T/admin.key"
chmod 600 "$T"/*.key

"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.log" &
PID=$!
URL=$(wait_serving "$T/serve.out")
check "serve prints its URL" test -n "$URL"
export ANTENNA_URL=$URL ANTENNA_CACERT="$T/site/tls/cert.pem"
unset ANTENNA_API_KEY ANTENNA_API_KEY_FILE
AUD=(--key-file "$T/aud.key")

# a reader is refused, with the server's message, and the refusal is in the trail
"$BIN" audit query --key-file "$T/rd.key" >"$T/rd.out" 2>"$T/rd.err"
check "a non-auditor's query exits non-zero" test $? -ne 0
check "with the server's message" grep -qE "403 [a-z_]+: this needs the auditor role.*\(request id [0-9a-f]+\)" "$T/rd.err"
"$BIN" audit verify --key-file "$T/rd.key" >/dev/null 2>"$T/rdv.err"
check "a non-auditor's verify exits non-zero" test $? -ne 0
check "verify says why" grep -qE "403 [a-z_]+: this needs the auditor role.*\(request id [0-9a-f]+\)" "$T/rdv.err"

# the auditor's query: a table for people, JSON for scripts, the next cursor
for _ in 1 2 3 4 5 6; do "$BIN" audit query "${AUD[@]}" >/dev/null 2>&1; done
"$BIN" audit query "${AUD[@]}" >"$T/q.out" 2>"$T/q.err"
check "auditor query exits 0" test $? -eq 0
check "as the local query's table" grep -q "^SEQ .*PRINCIPAL .*TENANT .*ACTION .*DEC .*REASON" "$T/q.out"
check "the table shows the reader's refusal" grep -qE " rd +lab +audit.query .* deny " "$T/q.out"
"$BIN" audit query "${AUD[@]}" --principal rd --decision deny -o json >"$T/q.json"
check "-o json: only the reader's refusals" python3 - "$T/q.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ev = d["events"]
sys.exit(0 if "next_cursor" in d and len(ev) >= 2 and
         all(e["actor"] == "rd" and e["decision"] == "deny" for e in ev) else 1)
PY
"$BIN" audit query "${AUD[@]}" --limit 1 >"$T/q1.out"
CUR=$(sed -n 's/^more: --cursor \([0-9]*\)$/\1/p' "$T/q1.out")
check "a page of one prints the next cursor" test -n "$CUR"
"$BIN" audit query "${AUD[@]}" --limit 1 --cursor "$CUR" -o json >"$T/q2.json"
check "the cursor gives the next page" python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["events"]; sys.exit(0 if len(e)==1 and e[0]["seq"]>int(sys.argv[2]) else 1)' "$T/q2.json" "$CUR"
"$BIN" audit query "${AUD[@]}" --since 2026-13-01 >/dev/null 2>&1
check "a bad time is a usage error (2)" test $? -eq 2
"$BIN" audit query "${AUD[@]}" --until 2023-02-31 >/dev/null 2>&1
check "a day the month lacks is a usage error (2), not March 3rd" test $? -eq 2
"$BIN" audit query "${AUD[@]}" --tenant other >/dev/null 2>"$T/qo.err"
check "another tenant's log is refused with the server's message" bash -c "grep -qE '403 [a-z_]+: ' '$T/qo.err'"

# export: an auditor gets its tenant's events in full and every other one as its seq and hashes
# only; it verifies offline, and a changed event fails. Another tenant's view is refused.
"$BIN" audit export "${AUD[@]}" -o "$T/aud.ndjson" 2>"$T/ae.err"
check "an auditor's export (tenant-scoped)" test $? -eq 0 -a -s "$T/aud.ndjson"
check "lab's events in full, the others redacted to seq, commit and hash" python3 - "$T/aud.ndjson" <<'PY'
import json, sys
ls = [json.loads(x) for x in open(sys.argv[1])]
full = [o for o in ls if o["type"] == "event"]
red = [o for o in ls if o["type"] == "redacted"]
sys.exit(0 if full and red and all(o["tenant"] == "lab" for o in full) and
         all(sorted(o) == ["commit", "hash", "seq", "type"] for o in red) and
         [o["seq"] for o in ls if o["type"] != "checkpoint"] == list(range(1, len(full + red) + 1))
         else 1)
PY
"$BIN" audit verify --export "$T/aud.ndjson" --site-key "$T/site/keys/site.pub" >"$T/ave.out"
check "it verifies offline (0)" test $? -eq 0
check "saying what is proven and what not" bash -c "grep -q '^$T/aud.ndjson: intact: .* redacted' \
  '$T/ave.out' && grep -q ': proven: ' '$T/ave.out' && grep -q ': not proven: ' '$T/ave.out'"
sed '0,/"actor":"aud"/s//"actor":"rd"/' "$T/aud.ndjson" >"$T/aud-bad.ndjson"
"$BIN" audit verify --export "$T/aud-bad.ndjson" --site-key "$T/site/keys/site.pub" >"$T/avb.out"
check "a changed event of the auditor's export fails (1)" test $? -eq 1
check "naming it" grep -q "BROKEN at seq [0-9]*.*does not match its hash" "$T/avb.out"
"$BIN" audit export "${AUD[@]}" --tenant other -o "$T/oth.ndjson" 2>"$T/ao.err"
check "another tenant's view is refused (non-zero)" test $? -ne 0
check "with the server's message" grep -qE "export failed: 403 [a-z_]+: the audit export needs" "$T/ao.err"
check "and no file is left" bash -c "! ls '$T' | grep -q oth.ndjson"
"$BIN" audit export --key-file "$T/admin.key" --tenant lab -o "$T/adm-lab.ndjson" 2>/dev/null
check "an admin may ask for a tenant's view" grep -q '"type":"redacted"' "$T/adm-lab.ndjson"
"$BIN" audit verify --export "$T/adm-lab.ndjson" --site-key "$T/site/keys/site.pub" >/dev/null
check "which verifies too" test $? -eq 0
"$BIN" audit export --key-file "$T/admin.key" -o "$T/export.ndjson" 2>/dev/null
check "the admin's export -o FILE" test $? -eq 0 -a -s "$T/export.ndjson"
"$BIN" audit verify --export "$T/export.ndjson" --site-key "$T/site/keys/site.pub" >/dev/null
check "the downloaded export verifies offline" test $? -eq 0
# a FIFO as the export or the site key: refused at once (open() would wait for a writer)
mkfifo "$T/fifo"
timeout 10 "$BIN" audit verify --export "$T/fifo" --site-key "$T/site/keys/site.pub" \
    >/dev/null 2>"$T/ff.err"
check "verify --export FIFO: exit 1, not blocked" test $? -eq 1
check "verify --export FIFO: says why" grep -q "fifo: not a regular file" "$T/ff.err"
timeout 10 "$BIN" audit verify --export "$T/export.ndjson" --site-key "$T/fifo" \
    >/dev/null 2>"$T/ff.err"
check "verify --site-key FIFO: exit 1, not blocked" test $? -eq 1
check "verify --site-key FIFO: says why" grep -q "not a regular file" "$T/ff.err"
timeout 10 "$BIN" audit verify --export "$T" --site-key "$T/site/keys/site.pub" \
    >/dev/null 2>"$T/ff.err"
check "verify --export FOLDER: refused" grep -q "not a regular file" "$T/ff.err"
"$BIN" audit export --key-file "$T/admin.key" >"$T/stdout.ndjson" 2>/dev/null
check "export to stdout" grep -q '"type":"checkpoint"' "$T/stdout.ndjson"

# verify: intact (exit 0), then against another site's key (exit 1, naming the seq)
"$BIN" init --dir "$T/other" --site-id site-o --region EU >/dev/null 2>&1
"$BIN" audit verify --key-file "$T/admin.key" >"$T/v.out" 2>&1
check "admin verify with the site's own key: intact (0)" test $? -eq 0
check "it says where the key came from" grep -q "fetched from the site itself" "$T/v.out"
check "it shows the server's view" grep -q "^server: intact" "$T/v.out"
check "the export verified here" grep -q "^export: intact" "$T/v.out"
"$BIN" audit verify --key-file "$T/admin.key" --site-key "$T/other/keys/site.pub" >"$T/vw.out" 2>&1
check "admin verify with a wrong --site-key: exit 1" test $? -eq 1
check "naming the first bad seq" grep -q "BROKEN at seq [0-9]" "$T/vw.out"
"$BIN" audit verify "${AUD[@]}" --site-key "$T/site/keys/site.pub" >"$T/va.out" 2>&1
check "auditor verify: intact (0)" test $? -eq 0
check "re-hashes lab's events in the tenant export" \
  grep -qE "^export: intact: [0-9]+ events \([1-9][0-9]* in full, [1-9][0-9]* redacted" "$T/va.out"
check "and says what that proves" \
  bash -c "grep -q '^export: proven: ' '$T/va.out' && grep -q '^export: not proven: ' '$T/va.out'"
"$BIN" audit verify "${AUD[@]}" --site-key "$T/other/keys/site.pub" >"$T/vaw.out" 2>&1
check "auditor verify with a wrong --site-key: exit 1" test $? -eq 1
check "naming the seq" grep -q "BROKEN at seq [0-9]" "$T/vaw.out"
"$BIN" audit verify "${AUD[@]}" --strict >/dev/null 2>&1
check "--strict is for the local mode (2)" test $? -eq 2
"$BIN" audit verify --dir "$T/site" --url "$ANTENNA_URL" >/dev/null 2>&1
check "--url with --dir is a usage error (2)" test $? -eq 2
"$BIN" audit query --dir "$T/site" -o json >/dev/null 2>&1
check "--dir still reads the folder with ANTENNA_URL set" test $? -eq 0
echo "remote audit CLI: $fails failed"
[ $fails -eq 0 ]
