#!/usr/bin/env bash
# Integration test of stage jobs against a real daemon on 127.0.0.1 (port 0): upload a dataset,
# stage it decrypted with --wait and compare with the originals, pull it with the job token
# (ranges, bad tokens), owner-only status, cancel, the scratch quota's 507, the time-to-live
# purge and its audit event, and kill -9 of the daemon at random moments of a job (the
# restarted daemon completes it and the output verifies), then at a known point: the job held by
# the test hook ANTENNA_TEST_STAGE_PAUSE right after a big file's resume mark was recorded, killed
# -9 there (the restarted daemon continues that file from exactly that mark, not from its start)
# or stopped with SIGTERM (it continues from the prefix recorded at the stop). $1 = the
# antenna binary. Exit 0 pass, 1 fail, 77 skip. ANTENNA_IO_ENGINE=threads (deploy/test.sh's
# second pass) is passed on to the daemon.
set -u
BIN=$1
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "no curl"; exit 77; }
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
"$BIN" help 2>&1 | grep -q '^  stage' || { echo "antenna built without stage"; exit 77; }
scratch_site stage

"$BIN" init --dir "$T/site" --site-id site-s --region EU >"$T/init.out" 2>&1 ||
    { cat "$T/init.out"; fail init; }
# a quota that holds the bulk dataset, or the small one, but not both; files of 4 MiB and more
# record their durable prefix every 1 MiB (resume inside a file, at 1 GiB by default)
sed -i -e 's/^default_scratch_quota = .*/default_scratch_quota = 64M/' \
    -e 's/^resume_min = .*/resume_min = 4M/' -e 's/^resume_every = .*/resume_every = 1M/' \
    "$T/site/antenna.conf"
grep -q '^resume_min = 4M' "$T/site/antenna.conf" || fail "no [staging] resume_min to set"

start() {
    : >"$T/serve.out"
    "$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>>"$T/serve$1.log" &
    PID=$!
    LOG=$T/serve$1.log
    URL=$(wait_serving "$T/serve.out") || fail "serve did not start"
    export ANTENNA_URL=$URL
}
start 0
export ANTENNA_CACERT=$T/site/tls/cert.pem
A="$BIN admin --dir $T/site"
$A tenant add lab >/dev/null && $A tenant add other >/dev/null &&
    $A principal add alice --tenant lab --role owner >/dev/null &&
    $A principal add bob --tenant other --role owner >/dev/null || fail "admin setup"
ALICE=$($A key create --principal alice | awk '/^key /{print $2}')
BOB=$($A key create --principal bob | awk '/^key /{print $2}')
export ANTENNA_API_KEY=$ALICE

# the dataset: one 5 MiB file and a folder of small ones
mkdir -p "$T/data/reads" "$T/data/meta"
head -c $((5 * 1024 * 1024 + 17)) /dev/urandom >"$T/data/reads/big.bin"
for i in $(seq 1 12); do head -c $((RANDOM * 3 + i)) /dev/urandom >"$T/data/meta/m$i.txt"; done
: >"$T/data/meta/empty.txt"
"$BIN" dataset create cohort --classification sensitive -o json >"$T/ds.json" || fail "dataset create"
DS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds.json")
(cd "$T/data" && find . -type f | sed 's|^\./||' | sort) >"$T/files.txt"
while read -r f; do
    "$BIN" put "$DS" "$T/data/$f" --as "$f" >/dev/null 2>"$T/put.err" || { cat "$T/put.err"; fail "put $f"; }
done <"$T/files.txt"

# a bulk dataset, long enough to stage that a kill -9 lands in the middle
mkdir -p "$T/bulk"
for i in 1 2 3 4 5; do head -c $((12 * 1024 * 1024 + i)) /dev/urandom >"$T/bulk/part$i.bin"; done
"$BIN" dataset create bulk --classification internal -o json >"$T/ds2.json" || fail "dataset create"
DS2=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds2.json")
for i in 1 2 3 4 5; do
    "$BIN" put "$DS2" "$T/bulk/part$i.bin" --as "part$i.bin" >/dev/null 2>"$T/put.err" ||
        { cat "$T/put.err"; fail "put part$i"; }
done

same_tree() { # $1: a folder that must hold exactly the dataset's files, byte for byte
    while read -r f; do cmp -s "$T/data/$f" "$1/$f" || return 1; done <"$T/files.txt"
    [ "$(cd "$1" && find . -type f | wc -l)" -eq "$(wc -l <"$T/files.txt")" ]
}
same_bulk() {
    for i in 1 2 3 4 5; do cmp -s "$T/bulk/part$i.bin" "$1/part$i.bin" || return 1; done
}
code() { curl -s -o "$T/body" -w '%{http_code}' --cacert "$ANTENNA_CACERT" "$@"; }

# --- stage --wait, output in scratch, pull with the token ---
"$BIN" stage "$DS" --mode decrypt --ttl 1h --wait >"$T/st1.out" 2>"$T/st1.err" ||
    { cat "$T/st1.err"; fail "stage --wait"; }
J1=$(awk '/^job:/{print $2}' "$T/st1.out")
TOK1=$(awk '/^token:/{print $2}' "$T/st1.out")
DIR1=$(awk '/^scratch:/{print $2}' "$T/st1.out")
[ -n "$J1" ] && [ -n "$TOK1" ] || fail "stage printed no job or token"
[ "$DIR1" = "$(cd "$T/site/scratch" && pwd -P)/lab/$J1" ] || fail "scratch path $DIR1"
same_tree "$DIR1" || fail "staged files differ from the originals"
ls -a "$T/site/scratch/lab" | grep -q partial && fail "a partial folder is left"
"$BIN" pull "$J1" --token "$TOK1" -o "$T/pulled" 2>"$T/pull.err" || { cat "$T/pull.err"; fail pull; }
same_tree "$T/pulled" || fail "pulled files differ"
# pulled again: what is there and verifies is kept
"$BIN" pull "$J1" --token "$TOK1" -o "$T/pulled" 2>"$T/pull.err" || { cat "$T/pull.err"; fail "pull again"; }
grep -q "already here" "$T/pull.err" || fail "pull again fetched everything"
# a staged file changed in scratch after its checksum was recorded: the pull says so, exits 1,
# and the file never takes its name (the others arrive)
BAD=$(while read -r f; do [ "$f" != reads/big.bin ] && [ -s "$DIR1/$f" ] && echo "$f"; done \
      <"$T/files.txt" | head -1)
cp -p "$DIR1/$BAD" "$T/bad.keep"
python3 - "$DIR1/$BAD" <<'PY'
import os, sys
p = sys.argv[1]
os.chmod(p, 0o600)
b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1
open(p, "wb").write(bytes(b))
PY
if "$BIN" pull "$J1" --token "$TOK1" -o "$T/pulled-bad" 2>"$T/pull.err"; then fail "pull of a changed file: exit 0"; fi
grep -q "$BAD: SHA-256 does not match the catalog" "$T/pull.err" || fail "pull mismatch: $(cat "$T/pull.err")"
[ ! -e "$T/pulled-bad/$BAD" ] || fail "the changed file took its name"
[ "$(cd "$T/pulled-bad" && find . -type f | wc -l)" -eq "$(($(wc -l <"$T/files.txt") - 1))" ] ||
    fail "pull mismatch: the other files: $(cd "$T/pulled-bad" && find . | head)"
cp -p "$T/bad.keep" "$DIR1/$BAD"
# a symlink planted in DIR where a folder of the job goes: nothing lands where it points, the
# files under it fail, the others arrive
mkdir -p "$T/pulled-link" "$T/elsewhere" && ln -s "$T/elsewhere" "$T/pulled-link/meta"
if "$BIN" pull "$J1" --token "$TOK1" -o "$T/pulled-link" 2>"$T/pull.err"; then
    fail "pull through a planted symlink: exit 0"
fi
[ -z "$(ls -A "$T/elsewhere")" ] || fail "pull wrote through a symlink: $(ls "$T/elsewhere")"
grep -q "meta/m1.txt" "$T/pull.err" || fail "pull through a symlink: $(cat "$T/pull.err")"
[ -f "$T/pulled-link/reads/big.bin" ] || fail "pull through a symlink: the other files missing"

F=$URL/v1/stage/$J1/files/reads/big.bin
[ "$(code -H "Authorization: Bearer $TOK1" -r 10-19 "$F")" = 206 ] || fail "range not 206"
cmp -s "$T/body" <(tail -c +11 "$T/data/reads/big.bin" | head -c 10) || fail "range bytes"
[ "$(code -H "Authorization: Bearer $TOK1" -r 999999999- "$F")" = 416 ] || fail "416"
[ "$(code "$F")" = 401 ] || fail "no token is not 401"
curl -s -D - -o /dev/null --cacert "$ANTENNA_CACERT" "$F" | grep -qi '^www-authenticate: Bearer' ||
    fail "401 without WWW-Authenticate"
[ "$(code -H "Authorization: Bearer $ALICE" "$F")" = 401 ] || fail "an API key read a job file"
[ "$(code -H "Authorization: Bearer ${TOK1%?}x" "$F")" = 401 ] || fail "a forged token worked"
[ "$(code -H "Authorization: Bearer $TOK1" "$URL/v1/stage/$J1/files/../../etc/passwd")" != 200 ] ||
    fail "path escape"
# scratch is shared with the job's users: a FIFO planted in the job's folder is not waited on
# (that held a server thread for good), a hard link to a file elsewhere is not served
mkfifo "$DIR1/planted.fifo" && ln "$T/data/meta/m1.txt" "$DIR1/planted.link" || fail "plant"
c=$(code --max-time 10 -H "Authorization: Bearer $TOK1" "$URL/v1/stage/$J1/files/planted.fifo")
[ "$c" = 404 ] || fail "a FIFO planted in scratch: $c (000: the gateway waited on it)"
c=$(code --max-time 10 -H "Authorization: Bearer $TOK1" "$URL/v1/stage/$J1/files/planted.link")
[ "$c" = 404 ] || fail "a hard link planted in scratch was served: $c"
rm -f "$DIR1/planted.fifo" "$DIR1/planted.link"
[ "$(code --max-time 10 -H "Authorization: Bearer $TOK1" -r 0-0 "$F")" = 206 ] ||
    fail "a job file after the planted ones"
"$BIN" stage list | grep -q "\"$J1\"" || fail "the owner's list lacks the job"
ANTENNA_API_KEY=$BOB "$BIN" stage list | grep -q "$J1" && fail "bob's list shows alice's job"
# the job's owner sees it; another tenant's owner gets the answer of a missing job
[ "$(code -H "Authorization: Bearer $BOB" "$URL/v1/stage/$J1")" = 404 ] || fail "bob saw the job"
[ "$(code -H "Authorization: Bearer $BOB" -X DELETE "$URL/v1/stage/$J1")" = 404 ] ||
    fail "bob cancelled the job"
[ "$(code -H "Authorization: Bearer $BOB" -H 'Content-Type: application/json' \
    -d "{\"dataset\":\"$DS\"}" "$URL/v1/stage")" = 404 ] || fail "bob staged lab's dataset"

# --- quota: the bulk copy does not fit beside the first job; cancelling that frees it ---
[ "$(code -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
    -d "{\"dataset\":\"$DS2\"}" "$URL/v1/stage")" = 507 ] || fail "quota not 507"
grep -q 'scratch quota of tenant lab exceeded' "$T/body" || fail "507 message: $(cat "$T/body")"
"$BIN" stage "$DS" --path 'meta/*' --wait >"$T/st3.out" 2>&1 || fail "a small job within the quota"
"$BIN" stage cancel "$(awk '/^job:/{print $2}' "$T/st3.out")" >/dev/null || fail "cancel small"
"$BIN" stage cancel "$J1" >/dev/null || fail "cancel"
[ -e "$DIR1" ] && fail "cancel left the output"
[ "$(code -H "Authorization: Bearer $TOK1" "$F")" = 404 ] || fail "a cancelled job's file"
"$BIN" stage cancel "$J1" >/dev/null 2>&1 && fail "cancel twice"

# --- time to live: purged, audited, the token no longer reads ---
"$BIN" stage "$DS" --path 'meta/m1*' --ttl 2s --wait >"$T/st2.out" 2>&1 || fail "stage ttl"
J2=$(awk '/^job:/{print $2}' "$T/st2.out")
TOK2=$(awk '/^token:/{print $2}' "$T/st2.out")
for _ in $(seq 60); do
    "$BIN" stage status "$J2" | grep -q '"state": "expired"' && break
    sleep 0.2
done
"$BIN" stage status "$J2" | grep -q '"state": "expired"' || fail "not purged"
[ -e "$T/site/scratch/lab/$J2" ] && fail "expired output left"
[ "$(code -H "Authorization: Bearer $TOK2" "$URL/v1/stage/$J2/files/meta/m1.txt")" != 200 ] ||
    fail "an expired job's file"
"$BIN" audit query --dir "$T/site" --action stage.purge 2>/dev/null | grep -q "$J2" ||
    fail "the purge is not in the audit log"

# --- a principal disabled since loses its job tokens at once ---
$A principal add carol --tenant lab --role reader >/dev/null || fail "add carol"
CAROL=$($A key create --principal carol | awk '/^key /{print $2}')
ANTENNA_API_KEY=$CAROL "$BIN" stage "$DS" --path 'meta/m2*' --wait >"$T/st5.out" 2>&1 ||
    fail "carol stage"
J5=$(awk '/^job:/{print $2}' "$T/st5.out")
TOK5=$(awk '/^token:/{print $2}' "$T/st5.out")
[ "$(code -H "Authorization: Bearer $TOK5" "$URL/v1/stage/$J5/files")" = 200 ] || fail "carol list"
$A principal disable carol >/dev/null || fail "disable carol"
[ "$(code -H "Authorization: Bearer $TOK5" "$URL/v1/stage/$J5/files")" = 401 ] ||
    fail "a disabled principal's job token still reads"
"$BIN" stage cancel "$J5" >/dev/null 2>&1 && fail "alice cancelled carol's job"

# --- a job token ends with the grant it was staged under (decided again at each request) ---
mkdir -p "$T/shared" && head -c 5000 /dev/urandom >"$T/shared/s.bin"
"$BIN" dataset create shared --classification internal -o json >"$T/ds5.json" || fail "dataset shared"
DS5=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds5.json")
"$BIN" put "$DS5" "$T/shared/s.bin" --as s.bin >/dev/null 2>&1 || fail "put shared"
"$BIN" dataset publish "$DS5" >/dev/null || fail "publish shared"
[ "$(code -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
    -d '{"grantee_kind":"principal","grantee":"bob","actions":["stage"],"purpose":"DUO:0000042"}' \
    "$URL/v1/datasets/$DS5/grants")" = 201 ] || fail "grant bob: $(cat "$T/body")"
G5=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/body")
ANTENNA_API_KEY=$BOB "$BIN" stage "$DS5" --purpose DUO:0000042 --wait >"$T/st7.out" 2>&1 ||
    { cat "$T/st7.out"; fail "bob stages through the grant"; }
J7=$(awk '/^job:/{print $2}' "$T/st7.out")
TOK7=$(awk '/^token:/{print $2}' "$T/st7.out")
[ "$(code -H "Authorization: Bearer $TOK7" "$URL/v1/stage/$J7/files/s.bin")" = 200 ] ||
    fail "bob's job token through the grant"
[ "$(code -H "Authorization: Bearer $ALICE" -X DELETE "$URL/v1/grants/$G5")" = 200 ] ||
    fail "revoke bob's grant"
[ "$(code -H "Authorization: Bearer $TOK7" "$URL/v1/stage/$J7/files/s.bin")" = 403 ] ||
    fail "a job token read after its grant was revoked"
grep -q '"grant_revoked"' "$T/body" || fail "403 reason: $(cat "$T/body")"
[ "$(code -H "Authorization: Bearer $TOK7" "$URL/v1/stage/$J7/files")" = 403 ] ||
    fail "a job token listed after its grant was revoked"
ANTENNA_API_KEY=$BOB "$BIN" stage cancel "$J7" >/dev/null || fail "bob cancels his job"

# --- stage-out: results in scratch become a draft dataset, which stages back the same ---
mkdir -p "$T/site/scratch/lab/results/plots"
head -c 300000 /dev/urandom >"$T/site/scratch/lab/results/plots/p1.png"
echo "summary" >"$T/site/scratch/lab/results/summary.txt"
"$BIN" dataset create derived -o json >"$T/ds3.json" || fail "dataset create derived"
DS3=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds3.json")
"$BIN" stage out results "$DS3" --wait >"$T/so.out" 2>"$T/so.err" || { cat "$T/so.err"; fail "stage out"; }
"$BIN" dataset files "$DS3" -o json | grep -q '"plots/p1.png"' || fail "stage-out did not register"
"$BIN" stage out results "$DS3" >/dev/null 2>&1 && fail "stage-out twice into the same paths"
"$BIN" stage "$DS3" --wait >"$T/st4.out" 2>&1 || fail "stage the stage-out"
J4=$(awk '/^job:/{print $2}' "$T/st4.out")
cmp -s "$T/site/scratch/lab/results/plots/p1.png" "$T/site/scratch/lab/$J4/plots/p1.png" ||
    fail "stage-out round trip differs"
"$BIN" stage cancel "$J4" >/dev/null || fail "cancel J4"

# --- kill -9 during a job at 20 random moments, restart: it completes and its output verifies
# wherever the kill landed (before, during or after the job; the resume itself is checked at
# known points below) ---
submit_job() { # $1 what, $2 dataset: a job of it, its answer in $T/body and its id in JK
    code -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
        -d "{\"dataset\":\"$2\"}" "$URL/v1/stage" >"$T/k.code"
    [ "$(cat "$T/k.code")" = 202 ] || fail "$1: stage $(cat "$T/body")"
    JK=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/body")
}
ready_job() { # $1 what, $2 check: JK becomes ready, "$2 DIR" verifies it, nothing partial left
    "$BIN" stage status "$JK" --wait >"$T/k.out" 2>"$T/k.err" ||
        { cat "$T/k.err"; fail "$1: the job did not resume to ready"; }
    $2 "$T/site/scratch/lab/$JK" || fail "$1: resumed output differs"
    ls -a "$T/site/scratch/lab" | grep -q "\.$JK\." && fail "$1: partial left"
    "$BIN" stage cancel "$JK" >/dev/null || fail "$1: cancel"
}
kill_round() { # $1: the round, $2: how long the job runs before the kill
    submit_job "round $1" "$DS2"
    sleep "$2"
    { kill -9 "$PID" && wait "$PID"; } 2>/dev/null
    PID=
    start "$1"
    ready_job "round $1" same_bulk
}
ROUNDS=${ANTENNA_KILL_ROUNDS:-20}
for round in $(seq 1 "$ROUNDS"); do
    kill_round "$round" "0.$((RANDOM % 2))$((RANDOM % 10))" # a random moment of the job (or after)
done
echo "kill -9 rounds: $ROUNDS, jobs resumed after a kill:" \
    "$(cat "$T"/serve[0-9]*.log | grep -c '"jobs.resume"')"

# --- the engine held at a known point by the test hook ANTENNA_TEST_STAGE_PAUSE
# (gateway/routes_stage.c): right after a big file's first resume mark (its durable prefix)
# was recorded. Writes "JOB FILE-INDEX BYTES" to $T/paused, then the job waits there. The job:
# one file of 96 MiB (marks every 1.5 MiB: at most 64 per file), far more than the engine has
# in flight (32 chunks of 512 KiB), so that a stop there leaves it unfinished; the quota is
# raised for it ---
head -c $((96 * 1024 * 1024 + 17)) /dev/urandom >"$T/held.bin"
"$BIN" dataset create held --classification internal -o json >"$T/ds4.json" || fail "dataset create"
DS4=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds4.json")
"$BIN" put "$DS4" "$T/held.bin" --as held.bin >/dev/null 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put held.bin"; }
sed -i -e 's/^default_scratch_quota = .*/default_scratch_quota = 256M/' "$T/site/antenna.conf"
same_held() { cmp -s "$T/held.bin" "$1/held.bin"; }
paused_job() { # $1 log suffix: restarts the daemon with the hook, submits, waits for the hold
    kill "$PID"
    wait "$PID" 2>/dev/null
    rm -f "$T/paused"
    ANTENNA_TEST_STAGE_PAUSE=$T/paused start "$1"
    submit_job "paused $1" "$DS4"
    for _ in $(seq 300); do [ -s "$T/paused" ] && break; sleep 0.1; done
    [ -s "$T/paused" ] || fail "paused $1: the job was not held at a resume mark"
    read -r PJ PIDX PBYTES <"$T/paused"
    [ "$PJ" = "$JK" ] && [ "$PIDX" = 0 ] && [ "$PBYTES" -gt 0 ] ||
        fail "paused $1: $(cat "$T/paused") for job $JK"
    # the status document shows the mark: the file pending, its first PBYTES bytes durable
    "$BIN" stage status "$JK" >"$T/held.json" || fail "paused $1: status"
    python3 - "$T/held.json" "$PBYTES" <<'EOF' || fail "paused $1: $(cat "$T/held.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
f = doc["files"][0]
assert doc["state"] == "running" and f["state"] == "pending", doc
assert f["path"] == "held.bin" and f["resume_bytes"] == int(sys.argv[2]), doc
EOF
}
# kill -9 there: the restarted daemon requeues the job and continues the file from its mark,
# exactly, not from its start (engine.resume_offset), and jobs.io counts it
paused_job 100
{ kill -9 "$PID" && wait "$PID"; } 2>/dev/null
PID=
start 101
ready_job "kill -9 at a mark" same_held
grep -q '"jobs.resume"' "$LOG" || fail "kill -9 at a mark: the job was not requeued"
grep '"engine.resume_offset"' "$LOG" | grep "$JK" |
    grep -q "\"msg\":\"held.bin: continuing at byte $PBYTES of " ||
    fail "kill -9 at a mark: not continued from byte $PBYTES: $(grep "$JK" "$LOG")"
grep '"jobs.io"' "$LOG" | grep "$JK" | grep -q ', 1 resumed inside (' ||
    fail "kill -9 at a mark: jobs.io does not count the file continued inside"
echo "kill -9 at a mark: continued at byte $PBYTES"

# --- a graceful stop (SIGTERM) there: the file finishes its chunks in flight and records its
# prefix (engine.interrupted), the job goes back to queued, and the next start continues it
# from there: at least the mark the hook saw ---
paused_job 200
STOPPED=$LOG
kill "$PID"
wait "$PID" 2>/dev/null
PID=
grep '"engine.interrupted"' "$STOPPED" | grep -q "$JK" ||
    fail "graceful stop: the job was not interrupted keeping its marks: $(grep "$JK" "$STOPPED")"
start 201
ready_job "graceful stop" same_held
at=$(grep '"engine.resume_offset"' "$LOG" | grep "$JK" |
    sed -n 's/.*"msg":"held.bin: continuing at byte \([0-9]*\) of .*/\1/p')
[ -n "$at" ] && [ "$at" -ge "$PBYTES" ] ||
    fail "graceful stop: not continued from at least byte $PBYTES: $(grep "$JK" "$LOG")"
echo "graceful stop: held at byte $PBYTES, continued at byte $at"

# --- a job token draws on its owner's rate limit (the same bucket as the owner's API key) ---
"$BIN" stage "$DS" --path 'meta/m1.txt' --wait >"$T/st6.out" 2>&1 || fail "stage for the rate limit"
J6=$(awk '/^job:/{print $2}' "$T/st6.out")
TOK6=$(awk '/^token:/{print $2}' "$T/st6.out")
kill "$PID"
wait "$PID" 2>/dev/null
sed -i -e 's/^rate_limit = .*/rate_limit = 1/' -e 's/^rate_burst = .*/rate_burst = 2/' \
    -e 's/^direct_io = .*/direct_io = off/' "$T/site/antenna.conf"
start 99
codes=""
for _ in 1 2 3 4; do
    codes="$codes $(code -H "Authorization: Bearer $TOK6" "$URL/v1/stage/$J6/files")"
done
[[ "$codes" == " 200 200 429"* ]] || fail "job token past the burst: $codes"
curl -s -D - -o /dev/null --cacert "$ANTENNA_CACERT" -H "Authorization: Bearer $TOK6" \
    "$URL/v1/stage/$J6/files" | grep -qi '^retry-after: [1-9]' || fail "429 without Retry-After"
[ "$(code -H "Authorization: Bearer $ALICE" "$URL/v1/stage/$J6")" = 429 ] ||
    fail "the owner's API key has a bucket apart from her job token's"
# the client waits a 429 out (Retry-After) and goes on
"$BIN" pull "$J6" --token "$TOK6" -o "$T/pulled6" 2>"$T/pull6.err" ||
    { cat "$T/pull6.err"; fail "pull under the rate limit"; }
grep -q 'rate limit.*retrying' "$T/pull6.err" || fail "pull did not wait out a 429"
cmp -s "$T/data/meta/m1.txt" "$T/pulled6/meta/m1.txt" || fail "pull under the rate limit differs"
# [staging] direct_io = off: not one file through O_DIRECT (the first job, direct_io auto, may
# have used it, where the filesystem takes it)
"$BIN" stage "$DS" --path 'reads/*' --mode decrypt --wait >"$T/st7.out" 2>&1 ||
    { cat "$T/st7.out"; fail "stage with direct_io off"; }
J7=$(awk '/^job:/{print $2}' "$T/st7.out")
grep "\"jobs.io\"" "$T/serve99.log" | grep "$J7" | grep -q '1 files, 0 written with O_DIRECT, 0 read' ||
    fail "direct_io = off: $(grep "$J7" "$T/serve99.log" | grep jobs.io)"
# an upload answered 429 is sent again from the start of its file
"$BIN" dataset create limited -o json >"$T/ds8.json" 2>"$T/ds8.err" || { cat "$T/ds8.err"; fail "create under the limit"; }
DS8=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds8.json")
for i in 1 2 3; do
    "$BIN" put "$DS8" "$T/data/meta/m$i.txt" --as "m$i.txt" >/dev/null 2>>"$T/put8.err" ||
        { cat "$T/put8.err"; fail "put $i under the rate limit"; }
done
grep -q 'rate limit.*retrying' "$T/put8.err" || fail "put did not wait out a 429"
[ "$("$BIN" dataset files "$DS8" -o json | grep -c '"m[123].txt"')" = 3 ] || fail "puts under the limit"
echo "first job (direct_io auto): $(grep "\"jobs.io\"" "$T/serve0.log" | grep "$J1" | sed 's/.*"msg":"\([^"]*\)".*/\1/')"

# --- an expired job's output is refused from its expiry on, not from its purge ---
kill "$PID"
wait "$PID" 2>/dev/null
sed -i -e 's/^rate_limit = .*/rate_limit = 0/' -e 's/^purge_interval = .*/purge_interval = 1h/' \
    "$T/site/antenna.conf"
grep -q '^purge_interval = 1h' "$T/site/antenna.conf" || fail "no [staging] purge_interval to set"
start 100
"$BIN" stage "$DS" --path 'meta/m1*' --ttl 3s --wait >"$T/st9.out" 2>&1 || fail "stage ttl 3s"
J9=$(awk '/^job:/{print $2}' "$T/st9.out")
TOK9=$(awk '/^token:/{print $2}' "$T/st9.out")
[ "$(code -H "Authorization: Bearer $TOK9" "$URL/v1/stage/$J9/files/meta/m1.txt")" = 200 ] ||
    fail "a ready job's file before its expiry"
sleep 3.5
"$BIN" stage status "$J9" | grep -q '"state": "ready"' || fail "purged although the purge waits 1h"
[ "$(code -H "Authorization: Bearer $TOK9" "$URL/v1/stage/$J9/files/meta/m1.txt")" = 410 ] ||
    fail "an expired, not yet purged job's file: $(cat "$T/body")"
grep -q 'expired' "$T/body" || fail "410 body: $(cat "$T/body")"
[ "$(code -H "Authorization: Bearer $TOK9" "$URL/v1/stage/$J9/files")" = 410 ] ||
    fail "an expired, not yet purged job's listing"
"$BIN" audit query --dir "$T/site" --action stage.read --decision deny -o json 2>/dev/null |
    grep -q '"job_expired"' || fail "the refused read is not audited as job_expired"

kill "$PID"
wait "$PID" 2>/dev/null
PID=
echo "stage: all checks passed"
exit 0
