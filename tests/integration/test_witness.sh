#!/usr/bin/env bash
# Witnessing of audit checkpoints between two real daemons (docs/security.md, "Witnesses"):
# site-b witnesses site-a's checkpoints at every session (a remote stage job through site-b's
# API, `admin peer pull`); then site-a's operator goes back on its trail as a dishonest one
# could, with the site's own key and binary only:
#  1. rollback to a recorded checkpoint: site-a stopped, a copy of its audit.db put back that
#     was taken right at a checkpoint site-b witnessed (before more events and a checkpoint
#     site-b witnessed too), restarted: site-b's next stage job records the rollback (no new
#     checkpoint line: the witness file is unchanged; `peer witnessed` lists the rollback),
#     audits a fed.witness_conflict saying where site-a went back to and from where (once,
#     though both sessions of the job saw it), its daemon logs it, and the job completes;
#     `audit verify --witness` fails on site-a's trail with "tail removed after it was
#     witnessed" (dir and export) where it passed on the honest trail;
#  2. rollback to a checkpoint site-b never saw (an earlier copy): the same, with that
#     checkpoint added to the record;
#  3. rewrite: site-a appends other events to the earlier copy until a checkpoint lands on the
#     very seq site-b witnessed, with another hash: site-b's next `admin peer pull` records the
#     conflict (two rows at that seq) and succeeds; verify --witness fails with "rewritten".
# Alone, site-a's trail verifies at every step: only the peer's record shows what was done.
# $1 = the antenna binary. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(readlink -f "$1")
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "no curl"; exit 77; }
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
"$BIN" admin peer --help 2>&1 | grep -q 'peer witnessed' ||
    { echo "antenna built without witnessing"; exit 77; }
scratch_site witness
PID_a=
PID_b=
cleanup() {
    for p in $PID_a $PID_b; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ -n "${ANT_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
ok() { echo "ok $*"; }

serve() { # $1 site (a or b), $2 log suffix: starts it on its port (0 the first time)
    local port_var=PORT_$1 url
    "$BIN" serve --dir "$T/$1" --listen "127.0.0.1:${!port_var:-0}" >"$T/$1-$2.out" \
        2>"$T/serve-$1-$2.log" &
    printf -v "PID_$1" %s $!
    url=$(wait_serving "$T/$1-$2.out") || fail "site-$1 did not start ($2)"
    printf -v "PORT_$1" %s "${url##*:}"
}
stop() { # $1 site: SIGTERM (the audit log signs its tail at close), waits for the exit
    local pid_var=PID_$1
    kill -TERM "${!pid_var}" && wait "${!pid_var}" 2>/dev/null
    printf -v "PID_$1" %s ""
}
sql() { # $1 database, $2 query: prints the first column of the first row
    python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$@"
}
last_event() { sql "$T/a/audit.db" 'SELECT COALESCE(MAX(seq), 0) FROM events'; }
last_ckpt() { sql "$T/a/audit.db" 'SELECT COALESCE(MAX(seq), 0) FROM checkpoints'; }

"$BIN" init --dir "$T/a" --site-id site-a --region EU-IT >"$T/init.out" 2>&1 &&
    "$BIN" init --dir "$T/b" --site-id site-b --region EU-MD >>"$T/init.out" 2>&1 ||
    { cat "$T/init.out"; fail init; }
# site-a signs only at a stop, an export or an admin command (each CLI signs its tail at close):
# a timed checkpoint (1 min by default) in the middle of a step would move the seqs below
sed -i 's/^checkpoint_seconds = .*/checkpoint_seconds = 1d/' "$T/a/antenna.conf"
grep -q '^checkpoint_seconds = 1d$' "$T/a/antenna.conf" ||
    fail "site-a has no [audit] checkpoint_seconds"
serve a 0
serve b 0
pin() { # $1 site, $2 its peer, $3 the peer's port, $4 the peer's region
    "$BIN" admin --dir "$T/$1" peer add --id "site-$2" --url "https://127.0.0.1:$3" --region "$4" \
        --pubkeys "$T/$2/keys/site.pub" --ca "$T/$2/tls/cert.pem" >/dev/null ||
        fail "site-$1 pins site-$2"
}
pin a b "$PORT_b" EU-MD
pin b a "$PORT_a" EU-IT

# site-a: a dataset of two files that lab@site-b may transfer
A="$BIN admin --dir $T/a"
$A tenant add genomics >/dev/null &&
    $A principal add olga --tenant genomics --role owner >/dev/null || fail "site-a admin"
KEY_a=$(new_key "$BIN" "$T/a" olga) || fail "olga's key"
as_a() { ANTENNA_URL="https://127.0.0.1:$PORT_a" ANTENNA_CACERT="$T/a/tls/cert.pem" \
    ANTENNA_API_KEY=$KEY_a "$@"; }
mkdir -p "$T/data"
head -c 300000 /dev/urandom >"$T/data/one.bin"
printf 'sample\tcohort\nS1\tA\n' >"$T/data/two.tsv"
as_a "$BIN" dataset create cohort --classification sensitive --region EU-IT --region EU-MD -o json \
    >"$T/ds.json" || fail "dataset create"
DS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/ds.json")
for f in one.bin two.tsv; do
    as_a "$BIN" put "$DS" "$T/data/$f" --as "$f" >/dev/null || fail "put $f"
done
as_a "$BIN" dataset publish "$DS" >/dev/null || fail "publish"
as_a "$BIN" grant create "$DS" --tenant lab@site-b --actions transfer >/dev/null || fail "grant"

# site-b: alice of lab stages through site-b's API
"$BIN" admin --dir "$T/b" tenant add lab >/dev/null &&
    "$BIN" admin --dir "$T/b" principal add alice --tenant lab --role reader >/dev/null ||
    fail "site-b admin"
KEY_b=$(new_key "$BIN" "$T/b" alice) || fail "alice's key"
as_b() { ANTENNA_URL="https://127.0.0.1:$PORT_b" ANTENNA_CACERT="$T/b/tls/cert.pem" \
    ANTENNA_API_KEY=$KEY_b "$@"; }
stage_b() { # $1 name: a remote stage job of site-a's dataset, waited for; its files verify
    as_b "$BIN" stage "site-a:$DS" --decrypt --purpose DUO:0000042 --wait >"$T/$1.out" \
        2>"$T/$1.err" || fail "stage $1: $(cat "$T/$1.err")"
    local dir
    dir=$(sed -n 's/^scratch: //p' "$T/$1.out")
    for f in one.bin two.tsv; do
        cmp -s "$T/data/$f" "$dir/$f" || fail "stage $1: $f differs"
    done
}
witnessed() { # $1 output file: site-b's record of site-a (the checkpoint lines)
    "$BIN" admin --dir "$T/b" peer witnessed site-a -o json >"$1" || fail "peer witnessed"
}
conflicts() { # prints the seqs of site-a's checkpoints site-b audited as fed.witness_conflict
    "$BIN" audit query --dir "$T/b" --action fed.witness_conflict -o json >"$T/wconf.json" ||
        fail "audit query fed.witness_conflict"
    python3 - "$T/wconf.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc if isinstance(doc, list) else doc.get("events", [])
print(" ".join(str(json.loads(e["detail"])["seq"]) for e in ev
               if e.get("resource_id") == "site-a" and e.get("reason") == "witness_conflict"))
EOF
}
verify_fails() { # $1 what, $2 expected message, rest: audit verify's arguments
    local what=$1 want=$2
    shift 2
    if "$BIN" audit verify "$@" >"$T/verify.out" 2>&1; then
        fail "$what: verify --witness passed: $(cat "$T/verify.out")"
    fi
    grep -q "$want" "$T/verify.out" || fail "$what: verify --witness: $(cat "$T/verify.out")"
}

backup() { # $1 name: site-a stopped, a copy of its audit.db (whole, ending at a checkpoint)
    stop a
    mkdir -p "$T/a-$1"
    cp "$T/a/audit.db" "$T/a-$1/" || fail "copy site-a's audit.db"
    [ ! -e "$T/a/audit.db-wal" ] || cp "$T/a/audit.db-wal" "$T/a-$1/"
    [ "$(last_ckpt)" = "$(last_event)" ] ||
        fail "site-a's stop left its tail unsigned ($(last_event) > $(last_ckpt))"
}
restore() { # $1 name: site-a stopped, the copy put back
    stop a
    rm -f "$T/a/audit.db" "$T/a/audit.db-wal" "$T/a/audit.db-shm"
    cp "$T/a-$1"/audit.db* "$T/a/" || fail "restore site-a's audit.db ($1)"
}
detail_of() { # $1 seq: the detail of site-b's fed.witness_conflict event about it (conflicts)
    python3 - "$T/wconf.json" "$1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc if isinstance(doc, list) else doc.get("events", [])
print(next(e["detail"] for e in ev if json.loads(e["detail"])["seq"] == int(sys.argv[2])))
EOF
}

# --- the honest trail: an earlier copy of site-a's audit.db is kept (site-a stopped, so the
# copy is whole and ends at a checkpoint, S0, which site-b never sees); more events, another
# copy at checkpoint SR, which site-b's first stage job witnesses; then more events and
# checkpoints, and site-b's next stage job witnesses the latest, S1 ---
"$BIN" audit export --dir "$T/a" -o "$T/a-0.ndjson" >/dev/null 2>&1 || fail "export site-a"
backup early
S0=$(last_ckpt)
serve a 1
for _ in $(seq 10); do $A tenant list >/dev/null || fail "site-a tenant list"; done
backup witnessed
SR=$(last_ckpt)
serve a 2
stage_b first
witnessed "$T/w0.ndjson"
python3 -c 'import json, sys
assert max(json.loads(l)["seq"] for l in open(sys.argv[1])) == int(sys.argv[2])' \
    "$T/w0.ndjson" "$SR" || fail "site-b did not witness site-a at $SR: $(cat "$T/w0.ndjson")"
for _ in $(seq 40); do $A tenant list >/dev/null || fail "site-a tenant list"; done
stage_b honest
witnessed "$T/w1.ndjson"
S1=$(python3 -c 'import json, sys
print(max(json.loads(l)["seq"] for l in open(sys.argv[1])))' "$T/w1.ndjson")
[ "$S1" -ge $((SR + 40)) ] && [ "$SR" -ge $((S0 + 10)) ] ||
    fail "site-b witnessed up to seq $S1 only (copies at $S0, $SR)"
[ -z "$(conflicts)" ] || fail "conflicts on the honest trail: $(cat "$T/wconf.json")"
grep -q '"fed.witness_conflict"' "$T"/serve-b-*.log &&
    fail "site-b logged a conflict on the honest trail"
"$BIN" audit verify --dir "$T/a" --witness "$T/w1.ndjson" >"$T/v-honest.out" 2>&1 &&
    grep -Eq "^witnesses: .* up to seq $S1,? (is|are) in the chain unchanged" "$T/v-honest.out" ||
    fail "honest trail (dir): $(cat "$T/v-honest.out")"
"$BIN" audit export --dir "$T/a" -o "$T/a-1.ndjson" >/dev/null 2>&1 || fail "export site-a"
"$BIN" audit verify --export "$T/a-1.ndjson" --site-key "$T/a/keys/site.pub" \
    --witness "$T/w1.ndjson" >"$T/v-honest-exp.out" 2>&1 ||
    fail "honest trail (export): $(cat "$T/v-honest-exp.out")"
ok "honest trail: site-b witnessed site-a at $SR and up to seq $S1 (copies end at $S0, $SR);" \
    "verify --witness passes (dir, export)"

# --- 1. rollback to a recorded checkpoint: the copy taken at SR put back ---
restore witnessed
[ "$(last_ckpt)" = "$SR" ] || fail "the restored copy ends at $(last_ckpt), not $SR"
"$BIN" audit verify --dir "$T/a" >"$T/v-alone.out" 2>&1 ||
    fail "the restored trail should verify alone: $(cat "$T/v-alone.out")"
serve a 3
stage_b rollback-recorded
[ "$(conflicts)" = "$SR" ] ||
    fail "rollback to $SR: site-b audited conflicts at seqs '$(conflicts)', not $SR (once)"
python3 - "$(detail_of "$SR")" "$SR" "$S1" <<'EOF' || fail "rollback to $SR: $(detail_of "$SR")"
import json, sys
d = json.loads(sys.argv[1])
assert d["peer"] == "site-a" and d["kind"] == "rollback" and d["recorded"] is True, d
assert d["seq"] == int(sys.argv[2]) and d["highest"] == int(sys.argv[3]), d
assert "went back to a recorded checkpoint" in d["why"], d
EOF
grep '"fed.witness_conflict"' "$T"/serve-b-*.log | grep '"peer":"site-a","seq":"'"$SR"'"' |
    grep -q 'went back to a recorded checkpoint' ||
    fail "rollback to $SR: site-b's daemon logged no fed.witness_conflict"
witnessed "$T/w1r.ndjson"
cmp -s "$T/w1.ndjson" "$T/w1r.ndjson" ||
    fail "rollback to $SR: the witness file changed: $(diff "$T/w1.ndjson" "$T/w1r.ndjson")"
"$BIN" admin --dir "$T/b" peer witnessed site-a >"$T/w1r.txt" || fail "peer witnessed (table)"
grep -A2 '^rollbacks:' "$T/w1r.txt" | grep -Eq "^$SR +[0-9a-f]{64} +$S1 " ||
    fail "rollback to $SR: peer witnessed lists no rollback: $(cat "$T/w1r.txt")"
verify_fails "rollback to $SR (dir)" "tail removed after it was witnessed" \
    --dir "$T/a" --witness "$T/w1r.ndjson"
"$BIN" audit export --dir "$T/a" -o "$T/a-r.ndjson" >/dev/null 2>&1 || fail "export site-a"
verify_fails "rollback to $SR (export)" "tail removed after it was witnessed" \
    --export "$T/a-r.ndjson" --site-key "$T/a/keys/site.pub" --witness "$T/w1r.ndjson"
ok "rollback to the recorded seq $SR: site-b's stage job audits (once) and logs" \
    "fed.witness_conflict (highest $S1) and completes; witness file unchanged; verify --witness:" \
    "tail removed (dir, export)"

# --- 2. rollback to a checkpoint site-b never saw: the earlier copy, at S0, put back ---
restore early
[ "$(last_ckpt)" = "$S0" ] || fail "the restored copy ends at $(last_ckpt), not $S0"
"$BIN" audit verify --dir "$T/a" >"$T/v-alone.out" 2>&1 ||
    fail "the restored trail should verify alone: $(cat "$T/v-alone.out")"
serve a 4
stage_b rollback
[ "$(conflicts)" = "$SR $S0" ] ||
    fail "rollback: site-b audited conflicts at seqs '$(conflicts)', not $SR $S0"
python3 - "$(detail_of "$S0")" "$S1" <<'EOF' || fail "rollback to $S0: $(detail_of "$S0")"
import json, sys
d = json.loads(sys.argv[1])
assert d["kind"] == "rollback" and d["recorded"] is False and d["highest"] == int(sys.argv[2]), d
EOF
grep '"fed.witness_conflict"' "$T"/serve-b-*.log | grep -q '"peer":"site-a","seq":"'"$S0"'"' ||
    fail "rollback: site-b's daemon logged no fed.witness_conflict"
witnessed "$T/w2.ndjson"
python3 - "$T/w2.ndjson" "$S0" "$S1" <<'EOF' ||
import json, sys
seqs = [json.loads(l)["seq"] for l in open(sys.argv[1])]
assert int(sys.argv[2]) in seqs and int(sys.argv[3]) in seqs, seqs  # both kept
EOF
    fail "rollback: site-b's record: $(cat "$T/w2.ndjson")"
verify_fails "rollback (dir)" "tail removed after it was witnessed" \
    --dir "$T/a" --witness "$T/w2.ndjson"
"$BIN" audit export --dir "$T/a" -o "$T/a-2.ndjson" >/dev/null 2>&1 || fail "export site-a"
verify_fails "rollback (export)" "tail removed after it was witnessed" \
    --export "$T/a-2.ndjson" --site-key "$T/a/keys/site.pub" --witness "$T/w2.ndjson"
"$BIN" audit verify --dir "$T/a" >"$T/v-alone.out" 2>&1 ||
    fail "the rolled-back trail should verify alone: $(cat "$T/v-alone.out")"
ok "rollback to seq $S0: site-b's stage job audits and logs fed.witness_conflict and" \
    "completes; verify --witness: tail removed (dir, export)"

# --- 3. rewrite: other events on the restored copy until a checkpoint lands on seq S1 ---
stop a
[ "$(last_event)" -lt "$S1" ] ||
    fail "site-a passed seq $S1 already ($(last_event)): no room to rewrite"
while [ "$(last_event)" -lt "$S1" ]; do
    $A tenant list >/dev/null || fail "site-a tenant list"
done
[ "$(last_event)" = "$S1" ] && [ "$(last_ckpt)" = "$S1" ] ||
    fail "rewrite: site-a's trail ends at event $(last_event), checkpoint $(last_ckpt), not $S1"
serve a 5
"$BIN" admin --dir "$T/b" peer pull --peer site-a --dataset "$DS" --principal alice --tenant lab \
    --purpose DUO:0000042 --out "$T/out-rewrite" >"$T/pull.out" 2>"$T/pull.err" ||
    fail "rewrite: site-b's pull failed: $(cat "$T/pull.out" "$T/pull.err")"
for f in one.bin two.tsv; do
    cmp -s "$T/data/$f" "$T/out-rewrite/$f" || fail "rewrite: $f differs"
done
grep '"fed.witness_conflict"' "$T/pull.err" | grep -q '"peer":"site-a","seq":"'"$S1"'"' ||
    fail "rewrite: the pull logged no conflict: $(cat "$T/pull.err")"
[ "$(conflicts)" = "$SR $S0 $S1" ] ||
    fail "rewrite: site-b audited conflicts at seqs '$(conflicts)', not $SR $S0 $S1"
witnessed "$T/w3.ndjson"
python3 - "$T/w3.ndjson" "$S1" <<'EOF' || fail "rewrite: site-b's record: $(cat "$T/w3.ndjson")"
import json, sys
at = [json.loads(l)["hash"] for l in open(sys.argv[1]) if json.loads(l)["seq"] == int(sys.argv[2])]
assert len(at) == 2 and at[0] != at[1], at  # both hashes kept
EOF
# the first witnessed checkpoint the new history contradicts is SR (it left the old one after
# S0); with only the lines of S1, that one
verify_fails "rewrite (dir)" "event $SR was rewritten after a peer witnessed" \
    --dir "$T/a" --witness "$T/w3.ndjson"
grep "\"seq\":$S1," "$T/w3.ndjson" >"$T/w3-s1.ndjson"
verify_fails "rewrite (dir, seq $S1)" "event $S1 was rewritten after a peer witnessed" \
    --dir "$T/a" --witness "$T/w3-s1.ndjson"
"$BIN" audit export --dir "$T/a" -o "$T/a-3.ndjson" >/dev/null 2>&1 || fail "export site-a"
verify_fails "rewrite (export)" "event $SR was rewritten after a peer witnessed" \
    --export "$T/a-3.ndjson" --site-key "$T/a/keys/site.pub" --witness "$T/w3.ndjson"
"$BIN" audit verify --dir "$T/a" >"$T/v-alone.out" 2>&1 ||
    fail "the rewritten trail should verify alone: $(cat "$T/v-alone.out")"
ok "rewrite of seq $S1: site-b's pull keeps both hashes, audits and logs the conflict," \
    "completes; verify --witness: rewritten (dir, export)"

"$BIN" audit verify --dir "$T/b" >/dev/null || fail "site-b audit verify"
stop a
stop b
echo "PASS"
