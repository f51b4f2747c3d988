#!/usr/bin/env bash
# Federation against three real daemons on 127.0.0.1 (docs/federation.md): the demo's core
# (deploy/federation-demo.sh: peering, `antenna stage site-a:DS --decrypt` through site-b's API
# read back from site-b's scratch, the cache on a second stage, residency refusal for site-c,
# audits joined and verified), then the remote stage jobs' faults (an unknown peer, a byte
# corrupted in transit, the serving site and the pulling site each killed mid-pull and
# restarted: the job completes and the files verify), then the faults of the pull itself: expired, forged (a peer whose key
# changed), replayed and wrongly addressed federation tokens and an unknown peer are refused
# with their reason and audited at the serving site; a byte corrupted in transit is detected
# against the signed manifest and fetched again; the serving site killed mid-transfer and
# restarted: the pull resumes by Range and the files verify; on the pulling side, a manifest
# signed by a key other than the pinned one and a non-peer are refused and audited; last, the
# archive cache over [federation] cache_max is evicted at start-up, shows in /metrics, and
# `admin peer pull` trims it too (not while a remote stage job runs).
# $1 = the antenna binary.
# Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(readlink -f "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tests/integration/lib.sh"
command -v curl >/dev/null || { echo "no curl"; exit 77; }
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
"$BIN" admin peer --help 2>&1 | grep -q 'peer pull' || { echo "antenna built without peers"; exit 77; }
T=$(mktemp -d /tmp/antenna-fed-XXXXXX)
W=$T/demo
cleanup() {
    local left
    for p in ${PID_a:-} ${PID_b:-} ${PID_c:-} ${PULL:-}; do kill -TERM "$p" 2>/dev/null; done
    # the demo's daemons are not our children: wait for them by pid, then make sure
    for _ in $(seq 50); do
        left=
        for p in ${PID_a:-} ${PID_b:-} ${PID_c:-}; do kill -0 "$p" 2>/dev/null && left=1; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for p in ${PID_a:-} ${PID_b:-} ${PID_c:-}; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${ANT_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL $*"
    grep -h -v '"http.request"' "$W"/a.log "$W"/a-*.log 2>/dev/null | tail -15
    exit 1
}
ok() { echo "ok $*"; }

ANTENNA_BIN=$BIN FED_DEMO_DIR=$W FED_DEMO_KEEP=1 FED_DEMO_QUIET=1 \
    "$ROOT/deploy/federation-demo.sh" >"$T/demo.out" 2>&1 || { cat "$T/demo.out"; fail "demo"; }
. "$W/env"
ok "demo: peered, staged site-a:DS decrypted at site-b through its API, refused for site-c by residency"
grep -q '8 files, 8 from the cache, 0 bytes received' "$W/cache.out" ||
    fail "second stage not from the cache: $(cat "$W/cache.out")"
ok "second stage of the same dataset transferred nothing (site-b's archive cache)"
grep -q 'residency' "$W/pull-c.err" && grep -q 'HTTP 403' "$W/pull-c.err" ||
    fail "site-c refusal does not say residency: $(cat "$W/pull-c.err")"
"$BIN" audit query --dir "$W/c" --action stage.remote --decision deny -o json >"$T/cdeny.json" ||
    fail "audit query c"
grep -q 'residency' "$T/cdeny.json" || fail "site-c's refused stage not audited with the reason"
ok "site-c told the reason (residency, 403), and its refused stage audited there"
[ "$(grep -c '^transfer ' "$W/joined.txt")" -ge 2 ] &&
    grep -q 'site-a  allow transfer' "$W/joined.txt" || fail "audits not joined by transfer id"
ok "both sites' audit events share the transfer id"

U=https://127.0.0.1:$PORT_a
get() { # $1 token; prints "<status> <error code>"
    curl -s --cacert "$W/a/tls/cert.pem" -H "Authorization: Bearer $1" -o "$T/body" \
        -w '%{http_code}' "$U/v1/federation/datasets" >"$T/code"
    echo "$(cat "$T/code") $(python3 -c 'import json,sys;print(json.load(open(sys.argv[1])).get("error",""))' "$T/body" 2>/dev/null)"
}
tok() { # $1 site dir, rest: extra options
    local d=$1
    shift
    "$BIN" admin --dir "$d" peer token --peer site-a --principal alice --tenant lab \
        --purpose DUO:0000042 "$@"
}
[ "$(get "$(tok "$W/b")")" = "200 " ] || fail "a good token is refused"
ok "a good token is accepted"
T1=$(tok "$W/b")
get "$T1" >/dev/null
[ "$(get "$T1")" = "401 fed_token_replayed" ] || fail "replay: $(get "$T1")"
ok "replayed token refused (fed_token_replayed)"
r=$(get "$(tok "$W/b" --iat $(($(date +%s) - 900)))")
[ "$r" = "401 fed_token_expired" ] || fail "expired: $r"
ok "expired token refused (fed_token_expired)"
r=$(get "$("$BIN" admin --dir "$W/b" peer token --peer site-c --principal alice --tenant lab --purpose DUO:0000042)")
[ "$r" = "401 fed_token_rejected" ] && grep -q 'aud' "$T/body" || fail "wrong aud: $r"
ok "token for another site refused (aud)"
# an impostor with site-b's name but its own keys: what a peer whose key changed looks like
"$BIN" init --dir "$T/x" --site-id site-b --region EU-MD >/dev/null 2>&1 || fail "init impostor"
r=$(get "$(tok "$T/x")")
[ "$r" = "401 fed_token_rejected" ] && grep -q 'signature' "$T/body" || fail "forged: $r $(cat "$T/body")"
ok "forged token / changed key refused (signature)"
"$BIN" init --dir "$T/d" --site-id site-d --region EU-IT >/dev/null 2>&1 || fail "init site-d"
r=$(get "$(tok "$T/d")")
[ "$r" = "401 fed_unknown_peer" ] || fail "unknown peer: $r"
ok "unknown peer refused (fed_unknown_peer)"
# an unsigned token whose issuer is shaped like a JWT (the audit log refuses such a value):
# refused like any unknown issuer and audited with the value redacted, not a 503
b64u() { python3 -c 'import base64,sys;print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1"; }
r=$(get "$(b64u '{"alg":"EdDSA","typ":"JWT"}').$(b64u '{"iss":"eyJab.eyJcdefgh","aud":"site-a"}').c2ln")
[ "$r" = "401 fed_unknown_peer" ] || fail "a JWT-shaped issuer: $r $(cat "$T/body")"
ok "a token whose issuer looks like a credential: 401, not 503"
"$BIN" admin --dir "$W/a" principal add alice@site-b --role admin >/dev/null || fail "local alice@site-b"
r=$(get "$(tok "$W/b")")
[ "$r" = "401 fed_token_rejected" ] && grep -q 'local principal' "$T/body" || fail "name collision: $r"
"$BIN" admin --dir "$W/a" principal disable alice@site-b >/dev/null || fail "disable"
ok "a federated name taken by a local principal is refused"
"$BIN" audit query --dir "$W/a" --action fed.auth --decision deny -o json >"$T/denied.json" ||
    fail "audit query"
python3 - "$T/denied.json" <<'EOF' || fail "refusals not audited with their reasons"
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc if isinstance(doc, list) else doc.get("events", [])
reasons = {e.get("reason") for e in ev}
want = {"fed_token_replayed", "fed_token_expired", "fed_token_rejected", "fed_unknown_peer"}
redacted = [e for e in ev if e.get("resource_id") == "[redacted]"]
sys.exit(0 if want <= reasons and redacted and
         all(json.loads(e.get("detail") or "{}").get("claimed_iss") == "[redacted]"
             for e in redacted) else 1)
EOF
ok "every refusal audited at site-a with its reason"

restart_a() { # $1 log suffix; extra environment before the call
    "$BIN" serve --dir "$W/a" --listen "127.0.0.1:$PORT_a" >"$W/a-$1.out" 2>"$W/a-$1.log" &
    PID_a=$!
    wait_serving "$W/a-$1.out" >/dev/null || fail "site-a did not restart"
}
same() { # $1 output folder
    local g
    while read -r g; do cmp -s "$W/data/$g" "$1/$g" || return 1; done <"$W/files.txt"
}
# (also the temporary copy a killed pulling site leaves behind)
clear_cache() { rm -f "$W"/b/archive/fed/*.c4gh "$W"/b/archive/fed/.fetch-*; }

# a byte flipped in transit (the serving site's test hook): detected, fetched again; in a
# big file fetched by ranges, and in a small one fetched whole (header and body at once)
for f in reads/sample1.bin samples.tsv; do
    kill -TERM "$PID_a"
    wait "$PID_a" 2>/dev/null
    ANTENNA_TEST_FED_CORRUPT=$f restart_a "corrupt-${f##*/}"
    clear_cache
    rm -rf "$T/out-corrupt"
    "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice --tenant lab \
        --purpose DUO:0000042 --out "$T/out-corrupt" >"$T/pull-corrupt.out" 2>&1 ||
        { cat "$T/pull-corrupt.out"; fail "pull with a corrupted byte in $f"; }
    grep -q '1 refetched' "$T/pull-corrupt.out" || fail "corruption of $f not detected: $(cat "$T/pull-corrupt.out")"
    same "$T/out-corrupt" || fail "files differ after refetch of $f"
    ok "corrupted byte in $f detected against the signed manifest, refetched, files verify"
done

# --- remote stage jobs: site-b's API, site-b's staging engine ---
as_b() { ANTENNA_URL="https://127.0.0.1:$PORT_b" ANTENNA_CACERT="$W/b/tls/cert.pem" \
    ANTENNA_API_KEY=$KEY_b "$@"; }
jval() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1])).get(sys.argv[2],""))' "$@"; }
pull_event() { # $1 transfer id: prints the fed.pull event's detail at site-b as JSON
    "$BIN" audit query --dir "$W/b" --action fed.pull -o json >"$T/pulls.json"
    python3 - "$T/pulls.json" "$1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc if isinstance(doc, list) else doc.get("events", [])
for e in ev:
    if e.get("transfer") == sys.argv[2]:
        d = e.get("detail") or {}
        print(json.dumps(json.loads(d) if isinstance(d, str) else d))
EOF
}
stage_async() { # $1 name: submits site-a:$DS decrypted, job answer in $T/$1.json
    as_b "$BIN" stage "site-a:$DS" --decrypt --purpose DUO:0000042 >"$T/$1.json" 2>"$T/$1.err" ||
        fail "stage $1: $(cat "$T/$1.err")"
}
stage_wait() { # $1 name: waits for the job of $T/$1.json, its answer in $T/$1.out
    as_b "$BIN" stage status "$(jval "$T/$1.json" id)" --wait >"$T/$1.out" 2>"$T/$1.werr" ||
        fail "job $1 did not become ready: $(cat "$T/$1.werr")"
}
staged_same() { # $1 name: the job's scratch folder holds the originals
    same "$(sed -n 's/^scratch: //p' "$T/$1.out")"
}
fetching() { # a temporary copy at site-b holds more than 2 MiB
    [ -n "$(find "$W/b/archive/fed" -name '.fetch-*' -size +2048k 2>/dev/null)" ]
}

if as_b "$BIN" stage "site-x:$DS" --decrypt --purpose DUO:0000042 2>"$T/unknown.err" >/dev/null; then
    fail "a stage from a site that is not a peer was admitted"
fi
grep -q 'not a peer' "$T/unknown.err" && grep -q 'HTTP 404' "$T/unknown.err" ||
    fail "unknown peer: $(cat "$T/unknown.err")"
if as_b "$BIN" stage "site-a:$DS" --decrypt 2>"$T/nopurpose.err" >/dev/null; then
    fail "a remote stage without purpose was admitted"
fi
grep -q 'purpose' "$T/nopurpose.err" || fail "no purpose: $(cat "$T/nopurpose.err")"
ok "remote stage: an unknown peer (404, 'not a peer') and a missing purpose refused clearly"

# site-a corrupts one byte of samples.tsv in transit (once): the job's pull detects, refetches
kill -TERM "$PID_a"
wait "$PID_a" 2>/dev/null
ANTENNA_TEST_FED_CORRUPT=samples.tsv restart_a stage-corrupt
clear_cache
stage_async corrupt
stage_wait corrupt
staged_same corrupt || fail "staged files differ after a corrupted byte"
pull_event "$(jval "$T/corrupt.json" transfer_id)" | grep -q '"refetched": 1' ||
    fail "corruption not refetched by the job's pull: $(pull_event "$(jval "$T/corrupt.json" transfer_id)")"
ok "remote stage: a byte corrupted in transit detected, refetched, staged files verify"

# the serving site killed (-9) mid-pull and restarted: the job's pull resumes, the job completes
kill -TERM "$PID_a"
wait "$PID_a" 2>/dev/null
restart_a stage
# pulls slowed down so that a kill lands mid-pull: through antenna.conf's [federation] keys
# (the environment variables override them; both paths are read by the same code)
sed -i 's/^connections = 0$/connections = 2/; s/^max_rate = 0$/max_rate = 2M/' "$W/b/antenna.conf"
grep -q '^max_rate = 2M$' "$W/b/antenna.conf" || fail "site-b's antenna.conf has no [federation] max_rate"
restart_b() { # $1 log suffix
    "$BIN" serve --dir "$W/b" --listen "127.0.0.1:$PORT_b" >"$W/b-$1.out" 2>"$W/b-$1.log" &
    PID_b=$!
    wait_serving "$W/b-$1.out" >/dev/null || fail "site-b did not restart"
}
kill -TERM "$PID_b"
for _ in $(seq 100); do kill -0 "$PID_b" 2>/dev/null || break; sleep 0.1; done
restart_b slow
clear_cache
stage_async killa
for _ in $(seq 200); do fetching && break; sleep 0.05; done
fetching || fail "the job's pull was not seen in progress"
{ kill -9 "$PID_a" && wait "$PID_a"; } 2>/dev/null
sleep 0.5
restart_a stage-killed
stage_wait killa
staged_same killa || fail "staged files differ after the serving site's restart"
r=$(pull_event "$(jval "$T/killa.json" transfer_id)")
echo "$r" | grep -Eq '"retries": [1-9]' || fail "no retry seen in the job's pull: $r"
ok "remote stage: serving site killed mid-pull and restarted, job ready, files verify ($r)"

# the pulling site killed (-9) mid-pull and restarted: the job is requeued and completes
clear_cache
stage_async killb
for _ in $(seq 200); do fetching && break; sleep 0.05; done
fetching || fail "the job's pull was not seen in progress (site-b)"
{ kill -9 "$PID_b" && wait "$PID_b"; } 2>/dev/null
restart_b killed
stage_wait killb
staged_same killb || fail "staged files differ after the pulling site's restart"
grep -q 'jobs.resume' "$W/b-killed.log" || fail "site-b did not requeue the interrupted job"
ok "remote stage: pulling site killed mid-pull and restarted, job requeued, ready, files verify"

# two jobs of the same dataset at once, cache empty: one pulls, the other waits for it and
# takes everything from the cache
clear_cache
stage_async twin1
stage_async twin2
stage_wait twin1
stage_wait twin2
staged_same twin1 && staged_same twin2 || fail "staged files differ (concurrent jobs)"
p1=$(pull_event "$(jval "$T/twin1.json" transfer_id)")
p2=$(pull_event "$(jval "$T/twin2.json" transfer_id)")
python3 -c 'import json,sys; a,b=(json.loads(x) for x in sys.argv[1:3]); sys.exit(0 if sorted([a["cached"],b["cached"]])==[0,8] and min(a["bytes"],b["bytes"])==0 else 1)' "$p1" "$p2" ||
    fail "concurrent jobs of one dataset transferred it twice: $p1 / $p2"
ok "remote stage: two jobs of one dataset at once transfer it once"

# kept encrypted, for the user's own key, and only some paths
"$BIN" c4gh keygen --sk "$T/u.sec" --pk "$T/u.pub" --nocrypt >/dev/null 2>&1 || fail "keygen"
as_b "$BIN" stage "site-a:$DS" --encrypted --recipient-pk "$T/u.pub" --path 'reads/part*' \
    --purpose DUO:0000042 >"$T/enc.json" 2>"$T/enc.err" || fail "encrypted stage: $(cat "$T/enc.err")"
[ "$(jval "$T/enc.json" files_total)" = 6 ] || fail "paths not applied: $(cat "$T/enc.json")"
stage_wait enc
E=$(sed -n 's/^scratch: //p' "$T/enc.out")
[ "$(find "$E" -type f | wc -l)" = 6 ] || fail "encrypted stage wrote $(find "$E" -type f | wc -l) files"
for i in 1 2 3 4 5 6; do
    "$BIN" c4gh decrypt --sk "$T/u.sec" -i "$E/reads/part$i.bin" -o "$T/part$i.dec" 2>/dev/null &&
        cmp -s "$T/part$i.dec" "$W/data/reads/part$i.bin" || fail "reads/part$i.bin does not decrypt to the original"
done
ok "remote stage --encrypted --path: 6 files re-encrypted for the user's key, each decrypts to the original"

# the serving site killed mid-transfer and restarted: the pull resumes
clear_cache
"$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice --tenant lab \
    --purpose DUO:0000042 --out "$T/out-kill" --connections 2 --range-size 1M --max-rate 2M \
    >"$T/pull-kill.out" 2>"$T/pull-kill.err" &
PULL=$!
# kill it once the big file is partly written (its temporary copy holds more than 2 MiB)
for _ in $(seq 200); do
    [ -n "$(find "$W/b/archive/fed" -name '.fetch-*' -size +2048k 2>/dev/null)" ] && break
    sleep 0.05
done
{ kill -9 "$PID_a" && wait "$PID_a"; } 2>/dev/null
sleep 0.5
restart_a killed
wait "$PULL" || { cat "$T/pull-kill.out" "$T/pull-kill.err"; fail "pull did not survive the restart"; }
PULL=
grep -Eq ' [1-9][0-9]* retries' "$T/pull-kill.out" || fail "no retry seen: $(cat "$T/pull-kill.out")"
same "$T/out-kill" || fail "files differ after the restart"
ok "serving site killed and restarted mid-transfer: resumed ($(grep -o '[0-9]* retries' "$T/pull-kill.out")), files verify"

# a peer's manifest listing both reads and reads/part1.bin (a serving catalog from before sites
# refused such a pair: the row is put in by hand) is refused whole at site-b, naming both,
# before any file is fetched or written
python3 - "$W/a" "$DS" <<'EOF' || fail "legacy row"
import shutil, sqlite3, sys
site, ds = sys.argv[1:3]
db = sqlite3.connect(site + "/antenna.db")
row = db.execute("SELECT size, sha256_plain, sha256_c4gh, storage_id FROM files"
                 " WHERE dataset_id = ? AND path = 'reads/part1.bin'", (ds,)).fetchone()
shutil.copy(f"{site}/archive/{ds}/{row[3]}.c4gh", f"{site}/archive/{ds}/f_legacy.c4gh")
db.execute("INSERT INTO files(id, dataset_id, path, size, sha256_plain, sha256_c4gh, storage_id,"
           " created) VALUES('f_legacy', ?, 'reads', ?, ?, ?, 'f_legacy', 1)", (ds,) + row[:3])
db.commit()
EOF
if "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 --out "$T/out-tree" 2>"$T/tree.err"; then
    fail "a manifest holding a file and its folder was accepted"
fi
grep -q 'the manifest lists both reads and reads/part1.bin' "$T/tree.err" ||
    fail "file and folder: $(cat "$T/tree.err")"
[ -z "$(ls -A "$T/out-tree" 2>/dev/null)" ] || fail "file and folder: $(ls -R "$T/out-tree")"
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]+"/antenna.db"); db.execute("DELETE FROM files WHERE id = ?", ("f_legacy",)); db.commit()' "$W/a" ||
    fail "legacy row removal"
rm -f "$W/a/archive/$DS/f_legacy.c4gh"
ok "a peer's manifest holding both a file and its folder refused whole, naming both"

# the pulling side: a serving peer whose key no longer matches the pin (here: site-a pinned at
# site-b with site-c's keys), and a site that is not a peer, are refused with the reason
"$BIN" admin --dir "$W/b" peer remove site-a >/dev/null || fail "peer remove"
"$BIN" admin --dir "$W/b" peer add --id site-a --url "https://127.0.0.1:$PORT_a" --region EU-IT \
    --pubkeys "$W/c/keys/site.pub" --ca "$W/a/tls/cert.pem" >/dev/null || fail "re-pin"
if "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 --out "$T/out-badkey" 2>"$T/badkey.err"; then
    fail "a manifest signed by another key was accepted"
fi
grep -q 'signature does not verify' "$T/badkey.err" || fail "bad key: $(cat "$T/badkey.err")"
ok "manifest signed by a key other than the pinned one refused (signature)"
if "$BIN" admin --dir "$W/b" peer pull --peer site-x --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 2>"$T/nopeer.err"; then
    fail "pull from a non-peer"
fi
grep -q 'not a peer' "$T/nopeer.err" || fail "non-peer: $(cat "$T/nopeer.err")"
ok "pull from a site that is not a peer refused"
"$BIN" audit query --dir "$W/b" --action fed.pull --decision deny -o json >"$T/bdeny.json" ||
    fail "audit query b"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); ev=d if isinstance(d,list) else d.get("events",[]); r={e.get("reason") for e in ev}; sys.exit(0 if {"bad_manifest_signature","not_found"} <= r else 1)' "$T/bdeny.json" ||
    fail "failed pulls not audited at site-b with their reasons"
ok "failed pulls audited at site-b with their reasons"

# federation requests are rate limited per remote principal, before the token is spent
kill -TERM "$PID_a"
wait "$PID_a" 2>/dev/null
sed -i -e 's/^rate_limit = .*/rate_limit = 1/' -e 's/^rate_burst = .*/rate_burst = 2/' \
    "$W/a/antenna.conf"
restart_a ratelimit
codes=""
# the tokens first: signing one runs the CLI (over a second under ASan), which refilled the
# bucket between the requests
toks=()
for _ in 1 2 3 4; do toks+=("$(tok "$W/b")"); done
for t in "${toks[@]}"; do
    r=$(get "$t")
    codes="$codes ${r%% *}"
    [ "$r" = "429 rate_limited" ] && cp "$T/body" "$T/body429"
done
[[ "$codes" == " 200 200 429"* ]] || fail "federation past the burst: $codes"
grep -q 'rate limit' "$T/body429" || fail "429 body: $(cat "$T/body429")"
ok "federation requests rate limited per remote principal ($codes)"
# a pull through the limit (now 3 a second) waits out its 429s and completes (site-a pinned
# again with its key)
kill -TERM "$PID_a"
wait "$PID_a" 2>/dev/null
sed -i -e 's/^rate_limit = .*/rate_limit = 3/' "$W/a/antenna.conf"
restart_a ratelimit3
"$BIN" admin --dir "$W/b" peer remove site-a >/dev/null || fail "peer remove (rate limit)"
"$BIN" admin --dir "$W/b" peer add --id site-a --url "https://127.0.0.1:$PORT_a" --region EU-IT \
    --pubkeys "$W/a/keys/site.pub" --ca "$W/a/tls/cert.pem" >/dev/null || fail "pin again"
clear_cache
"$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 --out "$T/out-limited" >"$T/pull-limited.out" 2>&1 ||
    { cat "$T/pull-limited.out"; fail "pull under the rate limit"; }
same "$T/out-limited" || fail "files differ after a rate-limited pull"
grep -q 'HTTP 429' "$T/pull-limited.out" || fail "the pull met no 429: $(cat "$T/pull-limited.out")"
ok "a pull through the rate limit waits out its 429s ($(grep -o '[0-9]* retries' "$T/pull-limited.out"))"

# the archive cache over [federation] cache_max (here 1 byte): copies not used for an hour
# (made so here in site-b's antenna.db while it is stopped) are evicted at start-up, rows and
# files; the next stage then transfers everything again, and its fresh copies are kept past
# the limit
kill -TERM "$PID_b"
for _ in $(seq 100); do kill -0 "$PID_b" 2>/dev/null || break; sleep 0.1; done
ncopies() { find "$W/b/archive/fed" -name 'fc_*.c4gh' | wc -l; }
nrows() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM fed_cache").fetchone()[0])' "$W/b/antenna.db"; }
[ "$(ncopies)" -ge 8 ] || fail "site-b's cache holds $(ncopies) copies before eviction"
sed -i 's/^cache_max = 0$/cache_max = 1/; s/^max_rate = 2M$/max_rate = 0/' "$W/b/antenna.conf"
grep -q '^cache_max = 1$' "$W/b/antenna.conf" || fail "site-b's antenna.conf has no [federation] cache_max"
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute("UPDATE fed_cache SET last_used = last_used - 7200"); db.commit()' "$W/b/antenna.db" ||
    fail "cannot age site-b's cache rows"
restart_b evict
for _ in $(seq 30); do grep -q '"fed.cache_evicted"' "$W/b-evict.log" && break; sleep 0.1; done
grep -q '"fed.cache_evicted"' "$W/b-evict.log" || fail "no eviction logged at start-up: $(grep fed. "$W/b-evict.log")"
[ "$(ncopies)" = 0 ] && [ "$(nrows)" = 0 ] || fail "after eviction: $(ncopies) copies, $(nrows) rows left"
stage_async evicted
stage_wait evicted
staged_same evicted || fail "staged files differ after eviction"
r=$(pull_event "$(jval "$T/evicted.json" transfer_id)")
echo "$r" | grep -q '"cached": 0' || fail "evicted copies served from the cache: $r"
for _ in $(seq 30); do grep -q '"fed.cache_over_limit"' "$W/b-evict.log" && break; sleep 0.1; done
grep -q '"fed.cache_over_limit"' "$W/b-evict.log" && [ "$(ncopies)" -ge 8 ] ||
    fail "the fresh copies were not kept within the grace period ($(ncopies) copies)"
ok "cache_max: copies unused for an hour evicted at start-up ($(grep -o 'evicted [0-9]* cached copies ([0-9]* bytes)' "$W/b-evict.log")), the next stage transfers again, fresh copies kept"

# /metrics at site-b: the cache's size (its rows) and limit, and what the daemon evicted since
# it started (the start-up pass above)
"$BIN" admin --dir "$W/b" principal add ops --role admin >/dev/null || fail "admin at site-b"
KEY_ops=$("$BIN" admin --dir "$W/b" key create --principal ops | awk '/^key /{print $2}')
curl -s --cacert "$W/b/tls/cert.pem" -H "Authorization: Bearer $KEY_ops" \
    "https://127.0.0.1:$PORT_b/metrics" >"$T/metrics-b" || fail "site-b's /metrics"
python3 - "$T/metrics-b" "$W/b/antenna.db" <<'EOF' || fail "cache metrics: $(grep fed_cache "$T/metrics-b")"
import sqlite3, sys
text = open(sys.argv[1]).read()
m = {l.split()[0]: int(l.split()[1]) for l in text.splitlines() if l.startswith("antenna_fed_")}
for n, t in (("antenna_fed_cache_bytes", "gauge"), ("antenna_fed_cache_max_bytes", "gauge"),
             ("antenna_fed_cache_evicted_copies_total", "counter"),
             ("antenna_fed_cache_evicted_bytes_total", "counter")):
    assert f"# TYPE {n} {t}\n" in text and f"# HELP {n} " in text, n
rows = sqlite3.connect(sys.argv[2]).execute("SELECT COALESCE(SUM(size), 0) FROM fed_cache").fetchone()[0]
assert m["antenna_fed_cache_bytes"] == rows > 0, (m, rows)
assert m["antenna_fed_cache_max_bytes"] == 1, m
assert m["antenna_fed_cache_evicted_copies_total"] >= 8, m
assert m["antenna_fed_cache_evicted_bytes_total"] >= m["antenna_fed_cache_evicted_copies_total"], m
EOF
ok "/metrics: archive cache bytes and cache_max, copies and bytes evicted since start ($(grep -E '^antenna_fed_cache_evicted' "$T/metrics-b" | tr '\n' ' '))"

# `antenna admin peer pull` trims the cache after its pull as the daemon does: a copy unused
# for two hours (a row and file made here) goes; not while a remote stage job of site-b is
# recorded running (a row made here), since that job may read any copy
stale_copy() {
    : >"$W/b/archive/fed/fc_00000000000000ff.c4gh"
    python3 -c 'import sqlite3,sys,time; db=sqlite3.connect(sys.argv[1]); t=int(time.time())-7200; db.execute("INSERT OR REPLACE INTO fed_cache(peer_id, dataset_id, path, sha256_c4gh, size, storage, created, last_used) VALUES(?,?,?,zeroblob(32),1000,?,?,?)", ("site-a", "ds_gone", "x.bin", "fc_00000000000000ff", t, t)); db.commit()' "$W/b/antenna.db" ||
        fail "cannot add a stale copy at site-b"
}
stale_there() { [ -e "$W/b/archive/fed/fc_00000000000000ff.c4gh" ]; }
pull_b() { # $1 output file, rest: options
    local o=$1
    shift
    "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
        --tenant lab --purpose DUO:0000042 "$@" >"$o" 2>"$o.err" || fail "pull: $(cat "$o.err")"
}
stale_copy
pull_b "$T/trim.json" -o json
python3 - "$T/trim.json" <<'EOF' || fail "pull's trim: $(cat "$T/trim.json")"
import json, sys
c = json.load(open(sys.argv[1]))["cache"]
assert c["max"] == 1 and c["trimmed"] is True and c["remote_jobs_running"] == 0, c
assert c["evicted_files"] == 1 and c["evicted_bytes"] == 1000 and c["error"] is None, c
assert c["bytes"] > 1, c  # this pull's own copies are in use: kept over the limit
EOF
! stale_there || fail "the stale copy's file is still there after the pull's trim"
[ "$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM fed_cache WHERE dataset_id = ?", ("ds_gone",)).fetchone()[0])' "$W/b/antenna.db")" = 0 ] ||
    fail "the stale copy's row is still there after the pull's trim"
stale_copy
python3 -c 'import sqlite3,sys,time; db=sqlite3.connect(sys.argv[1]); t=int(time.time()); db.execute("INSERT INTO stage_jobs(id, tenant_id, principal_id, peer_id, remote_dataset, transfer_id, mode, state, ttl_s, created, expires) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 60, ?, ?)", ("job_00000000000000ff", "lab", "alice", "site-a", "ds_gone", "tr_ff", "decrypt", "running", t, t + 60)); db.commit()' "$W/b/antenna.db" ||
    fail "cannot record a running remote job at site-b"
pull_b "$T/notrim.out"
grep -q '^archive cache: not trimmed while 1 remote stage job runs' "$T/notrim.out" ||
    fail "pull trimmed under a running remote job: $(cat "$T/notrim.out")"
stale_there || fail "the stale copy went while a remote job was recorded running"
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute("DELETE FROM stage_jobs WHERE id = ?", ("job_00000000000000ff",)); db.commit()' "$W/b/antenna.db" ||
    fail "cannot remove the job row"
pull_b "$T/trim.out"
grep -q '^archive cache: evicted 1 copy (1000 bytes), [0-9]* bytes cached, cache_max 1$' "$T/trim.out" ||
    fail "pull's trim (human): $(cat "$T/trim.out")"
! stale_there || fail "the stale copy stayed after the remote job ended"
ok "admin peer pull trims to cache_max and says so (-o json and human), not while a remote stage job runs"

# --- witnessing (docs/security.md, "Witnesses"): site-b records site-a's latest signed audit
# checkpoint whenever it talks to site-a (the demo's remote stage jobs and the pulls above);
# the record, handed to site-a's auditors, makes a removed tail or a rewrite fail verify
wit_rows() {
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM peer_witness WHERE peer = ?", ("site-a",)).fetchone()[0])' "$W/b/antenna.db"
}
[ "$(wit_rows)" -ge 1 ] || fail "site-b recorded no checkpoint of site-a"
# an export signs site-a's tail: the next pull sees a new checkpoint
"$BIN" audit export --dir "$W/a" -o "$T/a-before.ndjson" >/dev/null 2>&1 || fail "site-a export"
before=$(wit_rows)
pull_b "$T/wit-pull.out"
[ "$(wit_rows)" -gt "$before" ] || fail "the pull recorded no new checkpoint of site-a"
"$BIN" admin --dir "$W/b" peer witnessed site-a -o json >"$T/witness.ndjson" ||
    fail "peer witnessed"
"$BIN" admin --dir "$W/b" peer witnessed site-a >"$T/witness.txt" || fail "peer witnessed (table)"
grep -q '^SEQ ' "$T/witness.txt" || fail "peer witnessed table: $(cat "$T/witness.txt")"
python3 - "$T/witness.ndjson" "$T/a-before.ndjson" <<'EOF' || fail "witness lines"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no line"
export = set(l for l in open(sys.argv[2]).read().splitlines() if '"type":"checkpoint"' in l)
for l in lines:
    o = json.loads(l)
    assert list(o) == ["type", "seq", "hash", "time_ms", "prev_seq", "sig"], o
    assert o["type"] == "checkpoint" and len(o["hash"]) == 64 and len(o["sig"]) == 128, o
# byte for byte the export's lines
assert any(l in export for l in lines), "no witnessed line is an export line"
EOF
"$BIN" audit verify --dir "$W/a" --witness "$T/witness.ndjson" >"$T/wv.out" ||
    fail "site-a verify --witness: $(cat "$T/wv.out")"
grep -q '^witnesses: .* in the chain unchanged' "$T/wv.out" ||
    fail "verify --witness: $(cat "$T/wv.out")"
ok "site-b witnessed site-a's checkpoints at its pulls; its record verifies against site-a's log"
# site-a removes its tail with the checkpoints covering it (in a copy): alone the copy still
# verifies, not against site-b's record
mkdir -p "$T/a-cut/keys"
cp "$W/a/keys/site.pub" "$T/a-cut/keys/"
python3 - "$W/a/audit.db" "$T/a-cut/audit.db" "$T/witness.ndjson" <<'EOF' || fail "cut a"
import json, sqlite3, sys
last = max((json.loads(l) for l in open(sys.argv[3]).read().splitlines()), key=lambda o: o["seq"])
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
cut = last["prev_seq"]  # keep up to the checkpoint before the last one witnessed
for (t,) in dst.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
    dst.execute(f'DROP TRIGGER "{t}"')
dst.execute("DELETE FROM checkpoints WHERE seq > ?", (cut,))
dst.execute("DELETE FROM events WHERE seq > ?", (cut,))
dst.execute("DELETE FROM events_by WHERE seq > ?", (cut,))
upto = dst.execute("SELECT COALESCE(MAX(upto), 0) FROM events_indexed").fetchone()[0]
dst.execute("DELETE FROM events_indexed")
dst.execute("INSERT INTO events_indexed VALUES(?)", (min(upto, cut),))
dst.commit()
EOF
"$BIN" audit verify --dir "$T/a-cut" >"$T/cut-alone.out" ||
    fail "the cut copy should verify on its own: $(cat "$T/cut-alone.out")"
! "$BIN" audit verify --dir "$T/a-cut" --witness "$T/witness.ndjson" >"$T/cut-wit.out" ||
    fail "the cut copy verified against the witness: $(cat "$T/cut-wit.out")"
grep -q 'tail removed after it was witnessed' "$T/cut-wit.out" ||
    fail "verify --witness on the cut copy: $(cat "$T/cut-wit.out")"
# the same with an export of the copy (made without the key: it ends at the last checkpoint)
"$BIN" audit export --dir "$T/a-cut" -o "$T/a-cut.ndjson" \
    >/dev/null 2>&1 || fail "export the cut copy"
! "$BIN" audit verify --export "$T/a-cut.ndjson" --site-key "$W/a/keys/site.pub" \
    --witness "$T/witness.ndjson" >"$T/cut-exp.out" ||
    fail "the cut export verified against the witness"
grep -q 'tail removed after it was witnessed' "$T/cut-exp.out" ||
    fail "verify --export --witness: $(cat "$T/cut-exp.out")"
ok "site-a's log with its tail removed verifies alone, not against site-b's record (dir, export)"
# a record above what site-a now shows (as if site-a had gone back): the next pull (after
# site-a signed a new checkpoint) still succeeds, and site-b logs and audits the conflict,
# keeping both rows
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute("INSERT INTO peer_witness VALUES(?, ?, zeroblob(32), 1, 0, zeroblob(64), 1)", ("site-a", 10**12)); db.commit()' "$W/b/antenna.db" ||
    fail "cannot add a witness row at site-b"
"$BIN" audit export --dir "$W/a" -o "$T/a-sign.ndjson" >/dev/null 2>&1 || fail "site-a export"
rows=$(wit_rows)
pull_b "$T/wit-conflict.out"
[ "$(wit_rows)" -gt "$rows" ] || fail "the conflicting checkpoint was not kept beside the record"
"$BIN" audit query --dir "$W/b" --action fed.witness_conflict -o json >"$T/wconf.json" ||
    fail "audit query fed.witness_conflict"
grep -q '"resource_id": *"site-a"' "$T/wconf.json" ||
    fail "witness conflict not audited at site-b: $(cat "$T/wconf.json")"
ok "a checkpoint below site-b's record of site-a: audited as fed.witness_conflict, pull ok"

"$BIN" audit verify --dir "$W/a" >/dev/null || fail "site-a audit verify"
"$BIN" audit verify --dir "$W/b" >/dev/null || fail "site-b audit verify"
ok "both audit chains verify"
echo "PASS"
