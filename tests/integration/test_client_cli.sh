#!/usr/bin/env bash
# The client commands against a real daemon on 127.0.0.1 (port 0): `antenna login` checks the
# credentials and saves them (0700 folder, 0600 files) so that later commands need no
# environment, `logout` removes them, a saved key others may read is refused; the saved CA and
# key serve the saved URL only (a second daemon, presenting the first one's certificate, is not
# trusted through the saved CA nor sent the saved key); key files and saved files that are
# FIFOs are refused at once; `explain` prints a decision and its reason; an HTTP error prints
# the server's message and request id and exits non-zero; list commands print tables by
# default and JSON with -o json. $1 = antenna binary.
set -u
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
T=$(mktemp -d /tmp/antenna-client-XXXXXX)
PID=
PIDB=
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "$PIDB" ] && kill -9 "$PIDB" 2>/dev/null && wait "$PIDB" 2>/dev/null
    [ -n "${ANT_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
fails=0
check() { local n=$1; shift; if "$@"; then echo "ok   $n"; else echo "FAIL $n"; fails=$((fails + 1)); fi; }
mode() { stat -c %a "$1"; }

"$BIN" init --dir "$T/site" --site-id site-c --region EU >"$T/init.out" 2>&1 ||
    { cat "$T/init.out"; echo "FAIL init"; exit 1; }
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.log" &
PID=$!
URL=$(wait_serving "$T/serve.out") || { echo "FAIL serve did not start"; cat "$T/serve.log"; exit 1; }
CA=$T/site/tls/cert.pem
A="$BIN admin --dir $T/site"
$A tenant add lab >/dev/null && $A tenant add acme >/dev/null &&
    $A principal add alice --tenant lab --role owner >/dev/null &&
    $A principal add bob --tenant lab --role reader >/dev/null || { echo "FAIL admin setup"; exit 1; }
ALICE=$($A key create --principal alice | awk '/^key /{print $2}')
BOB=$($A key create --principal bob | awk '/^key /{print $2}')

# a clean environment: nothing but the saved login may tell the client where and who
unset ANTENNA_URL ANTENNA_CACERT ANTENNA_API_KEY ANTENNA_API_KEY_FILE ANTENNA_TOKEN
export HOME=$T/home XDG_CONFIG_HOME=
mkdir -p "$HOME"
CFG=$HOME/.config/antenna
cp "$CA" "$T/ca-copy.pem"

# --- login / logout ---
echo "ak_wrong_key" | "$BIN" login --url "$URL" --cacert "$CA" >/dev/null 2>"$T/err"
check "login with a bad key fails" test $? -ne 0
check "a failed login saves nothing" test ! -e "$CFG/api_key"
check "the failed login says why" grep -q "401" "$T/err"
printf '%s\n' "$ALICE" | "$BIN" login --url "$URL" --cacert "$T/ca-copy.pem" 2>"$T/err"
check "login with the key on stdin" test $? -eq 0
check "login folder is 0700" test "$(mode "$CFG")" = 700
check "saved files are 0600" test "$(mode "$CFG/url")$(mode "$CFG/ca.pem")$(mode "$CFG/api_key")" = 600600600
check "the CA certificate is copied" cmp -s "$CA" "$CFG/ca.pem"
check "no temporary file is left" test "$(ls -A "$CFG" | wc -l)" = 3
rm "$T/ca-copy.pem"
"$BIN" dataset create cohort --classification sensitive -o json >"$T/ds.json" 2>"$T/err"
check "a command after login works with no environment" test $? -eq 0
DS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds.json" 2>/dev/null)
chmod 640 "$CFG/api_key"
"$BIN" dataset list >/dev/null 2>"$T/err"
check "a group-readable saved key is refused" test $? -ne 0
check "the refusal names the key file" grep -q "api_key" "$T/err"
chmod 600 "$CFG/api_key"
echo "$BOB" >"$T/bob.key"
"$BIN" login --url "$URL" --cacert "$CA" --key-file "$T/bob.key" 2>/dev/null
check "login with --key-file replaces the saved key" test "$(cat "$CFG/api_key")" = "$BOB"
ANTENNA_TOKEN=$ALICE "$BIN" dataset show "$DS" >"$T/show.txt" 2>&1
check "ANTENNA_TOKEN overrides the saved key" test $? -eq 0
check "dataset show: member and value lines for people" grep -Eq "^id +$DS\$" "$T/show.txt"
check "dataset show: times as UTC" \
    test "$(grep -Ec '^created +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$T/show.txt")" = 1
ANTENNA_TOKEN=$ALICE "$BIN" dataset show "$DS" -o json >"$T/show.json" 2>&1
check "dataset show -o json: the server's JSON" \
    python3 -c "import json,sys;assert json.load(open(sys.argv[1]))['id']=='$DS'" "$T/show.json"
ANTENNA_TOKEN=$ALICE "$BIN" dataset show "$DS" -o yaml >/dev/null 2>&1
check "dataset show -o yaml: a usage error (2)" test $? -eq 2
printf '%s\n' "$ALICE" | "$BIN" login --url "$URL" --cacert "$CA" 2>/dev/null
"$BIN" logout 2>"$T/err"
check "logout" test $? -eq 0
check "logout removes the saved files" test ! -e "$CFG/api_key" -a ! -e "$CFG/url" -a ! -e "$CFG/ca.pem"
"$BIN" dataset list >/dev/null 2>&1
check "after logout a command has no site" test $? -ne 0
"$BIN" logout 2>/dev/null
check "logout twice is fine" test $? -eq 0
printf '%s\n' "$ALICE" | "$BIN" login --url "$URL" --cacert "$CA" 2>/dev/null ||
    { echo "FAIL login again"; exit 1; }
# a new login checks only what it will save: not through the CA of the login it replaces
printf '%s\n' "$ALICE" | "$BIN" login --url "$URL" >/dev/null 2>"$T/err"
check "login without --cacert does not use the saved CA" test $? -ne 0
check "it fails on the certificate" grep -qi "certificate" "$T/err"
check "and changes nothing" cmp -s "$CA" "$CFG/ca.pem"

# --- the saved CA and key are for the saved URL only ---
# site B presents site A's certificate: were A's saved CA used for B, B would be trusted
"$BIN" init --dir "$T/siteb" --site-id site-b --region EU >"$T/initb.out" 2>&1 ||
    { cat "$T/initb.out"; echo "FAIL init B"; exit 1; }
cp "$T/site/tls/cert.pem" "$T/site/tls/key.pem" "$T/siteb/tls/"
sed -i 's/^level = info$/level = debug/' "$T/siteb/antenna.conf"
"$BIN" serve --dir "$T/siteb" --listen 127.0.0.1:0 >"$T/serveb.out" 2>"$T/serveb.log" &
PIDB=$!
URLB=$(wait_serving "$T/serveb.out")
"$BIN" admin --dir "$T/siteb" tenant add lab >/dev/null &&
    "$BIN" admin --dir "$T/siteb" principal add carol --tenant lab --role owner >/dev/null ||
    { echo "FAIL site B setup"; exit 1; }
CAROL=$("$BIN" admin --dir "$T/siteb" key create --principal carol | awk '/^key /{print $2}')
"$BIN" dataset list --url "$URLB" >/dev/null 2>"$T/err"
check "--url of another site: the saved CA is not trusted for it" test $? -ne 0
check "the failure is the certificate check" grep -qi "certificate" "$T/err"
ANTENNA_URL=$URLB "$BIN" dataset list >/dev/null 2>"$T/err"
check "\$ANTENNA_URL of another site: the same" grep -qi "certificate" "$T/err"
ANTENNA_CACERT=$T/siteb/tls/cert.pem ANTENNA_API_KEY=$CAROL "$BIN" dataset list --url "$URLB" \
    >/dev/null 2>"$T/err"
check "--url of another site with its CA and key from the environment works" test $? -eq 0
ANTENNA_CACERT=$T/siteb/tls/cert.pem "$BIN" dataset list --url "$URLB" >/dev/null 2>"$T/err"
check "with no key given, another site gets a 401" grep -q "^antenna: 401 " "$T/err"
sent_none() {   # site B's debug log: the request came with no credential at all
    for _ in $(seq 50); do grep -q '"no Authorization header"' "$T/serveb.log" && return 0; sleep 0.1; done
    return 1
}
check "the saved key was not sent to another site" sent_none
"$BIN" dataset list --url "$URL/" >/dev/null 2>"$T/err"
check "--url naming the saved site (trailing /) uses the saved CA and key" test $? -eq 0
kill "$PIDB" 2>/dev/null; wait "$PIDB" 2>/dev/null; PIDB=

# --- files that must be regular are opened without waiting on a FIFO ---
mkfifo "$T/fifo"
timeout 10 "$BIN" pubkey set bob "$T/fifo" >/dev/null 2>"$T/err"
check "pubkey set FIFO: refused at once" test $? -eq 1
check "pubkey set FIFO: says why" grep -q "not a regular file" "$T/err"
timeout 10 "$BIN" get ds_x/f --recipient-pk "$T/fifo" -o "$T/g" >/dev/null 2>"$T/err"
check "get --recipient-pk FIFO: refused at once" test $? -eq 1
check "get --recipient-pk FIFO: says why" grep -q "not a regular file" "$T/err"
mv "$CFG/url" "$CFG/url.saved" && mkfifo "$CFG/url"
timeout 10 "$BIN" dataset list >/dev/null 2>"$T/err"
check "a saved url that is a FIFO: refused at once" test $? -eq 1
check "naming the file" grep -q "url: not a regular file" "$T/err"
rm "$CFG/url" && mv "$CFG/url.saved" "$CFG/url"

# --- explain ---
"$BIN" explain "$DS" --action read >"$T/ex.out" 2>"$T/err"
check "explain prints the decision" grep -q "^allow: alice may read $DS" "$T/ex.out"
check "explain prints the reason" grep -q "^reason: *role_owner" "$T/ex.out"
"$BIN" explain "$DS" --action publish --principal bob >"$T/ex.out" 2>"$T/err"
check "explain about another principal: a denial" grep -q "^deny: bob may not publish" "$T/ex.out"
"$BIN" explain "$DS" --action read --principal bob -o json >"$T/ex.json"
check "explain -o json parses" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["decision"]=="allow" and d["principal"]=="bob" and d["rules"] else 1)' "$T/ex.json"
"$BIN" explain "$DS" >/dev/null 2>&1
check "explain without --action is a usage error" test $? -eq 2

# --- HTTP errors: the server's message and the request id on stderr, a non-zero exit ---
rid_logged() {   # the request log line may land just after the answer
    [ -n "$1" ] || return 1
    for _ in $(seq 50); do grep -q "\"request_id\":\"$1\"" "$T/serve.log" && return 0; sleep 0.1; done
    return 1
}
for cmd in "dataset show ds_nope" "dataset files ds_nope" "grant list ds_nope" \
           "explain ds_nope --action read"; do
    "$BIN" $cmd >"$T/out" 2>"$T/err"
    rc=$?
    RID=$(sed -n 's/.*(request id \([0-9a-f]*\)).*/\1/p' "$T/err")
    check "$cmd: exit 1" test $rc -eq 1
    check "$cmd: the server's message" grep -q "404 not_found: no such dataset" "$T/err"
    check "$cmd: the request id, as the server logged it" rid_logged "$RID"
    check "$cmd: nothing on stdout" test ! -s "$T/out"
done
echo data >"$T/f.txt"
"$BIN" put ds_nope "$T/f.txt" >/dev/null 2>"$T/err"
check "put: an error with its request id" grep -q "no such dataset (request id [0-9a-f]\{8,\})" "$T/err"
"$BIN" get ds_nope f.txt -o "$T/g.out" >/dev/null 2>"$T/err"
check "get: an error with its request id" grep -q "(request id [0-9a-f]\{8,\})" "$T/err"
ANTENNA_API_KEY=ak_bad "$BIN" dataset list >/dev/null 2>"$T/err"
check "a 401 with its request id" grep -q "401 .*(request id [0-9a-f]\{8,\})" "$T/err"

# --- lists: a table by default, the API's JSON with -o json ---
printf 'abc' >"$T/r1.txt"
"$BIN" put "$DS" "$T/r1.txt" --as reads/r1.txt >/dev/null 2>&1 || check "put" false
"$BIN" grant create "$DS" --principal bob --actions read,stage --purpose DUO:0000042 \
    --expires 30d >/dev/null 2>&1 || check "grant create" false
"$BIN" dataset list >"$T/dl.out"
check "dataset list: a table header" grep -q "^ID  *NAME  *CLASSIFICATION  *STATE" "$T/dl.out"
check "dataset list: a row" grep -q "^$DS  *cohort  *sensitive  *draft" "$T/dl.out"
"$BIN" dataset list -o json >"$T/dl.json"
check "dataset list -o json parses" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if sys.argv[2] in [x["id"] for x in d["datasets"]] else 1)' "$T/dl.json" "$DS"
SHA=$(sha256sum "$T/r1.txt" | cut -c1-12)
"$BIN" dataset files "$DS" >"$T/df.out"
check "dataset files: a table" grep -q "^PATH  *SIZE  *SHA256" "$T/df.out"
check "dataset files: path, size, short hash" grep -q "^reads/r1.txt  *3  *$SHA\$" "$T/df.out"
"$BIN" dataset files "$DS" -o json >"$T/df.json"
check "dataset files -o json parses" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["files"][0]["path"]=="reads/r1.txt" else 1)' "$T/df.json"
"$BIN" grant list "$DS" >"$T/gl.out"
check "grant list: a table" grep -q "^ID  *GRANTEE  *ACTIONS  *PURPOSE  *EXPIRES" "$T/gl.out"
check "grant list: a row" grep -q "principal:bob  *read,stage  *DUO:0000042  *20[0-9-]*T" "$T/gl.out"
"$BIN" grant list "$DS" -o json >"$T/gl.json"
check "grant list -o json parses" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["grants"][0]["grantee_id"]=="bob" else 1)' "$T/gl.json"
"$BIN" dataset list -o yaml >/dev/null 2>&1
check "an unknown -o is a usage error" test $? -eq 2
# the short forms: dataset ls, grant add, grant ls
"$BIN" dataset ls >"$T/dls.out"
check "dataset ls is dataset list" cmp "$T/dl.out" "$T/dls.out"
"$BIN" grant add "$DS" --tenant acme --actions read --purpose DUO:0000042 --expires 1d \
    >/dev/null 2>&1
check "grant add creates a grant" test $? -eq 0
"$BIN" grant ls "$DS" >"$T/gls.out"
check "grant ls lists both grants" grep -q "tenant:acme  *read  *DUO:0000042" "$T/gls.out"

[ "$fails" -eq 0 ] || { echo "--- server log ---"; grep -v '"http.request"' "$T/serve.log" | tail -20; }
exit $((fails > 0))
