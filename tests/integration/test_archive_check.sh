#!/usr/bin/env bash
# Integration test of `antenna admin archive check` while the daemon serves: a healthy archive
# passes (exit 0, quick and --deep); then each kind of damage is made on disk or in the
# catalog and reported by name, with exit 1: a file cut short and one of another size
# (size_mismatch), a file gone (missing), a byte flipped in a body (only --deep: corrupt), a
# catalog checksum changed (only --deep: checksum_mismatch), a file encrypted for another key
# (not_for_site_key), a symlink in place of a file (not_regular), a pair "x" and "x/y" stored
# before the rule (path_conflict), an old stray .c4gh (orphan_file), an old upload temporary
# (stale_temporary), an old folder of no dataset (orphan_folder); fresh strays are not
# reported (a running upload's), the header cache is ignored. The check changes nothing, is
# audited with its count, and its usage errors exit 2. A restarted daemon sweeps the old,
# unlocked upload, fetch and header-cache temporaries and keeps everything else (locked or
# fresh ones, FIFOs, other names, .c4gh files). A daemon killed mid-upload leaves no row and no
# final file, and its next start sweeps the temporary.
# $1 = the antenna binary. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
command -v sqlite3 >/dev/null || { echo "no sqlite3"; exit 77; }
scratch_site archcheck

serve_owner_site site-c
DS=$(new_ds one)
DS2=$(new_ds two)
mkdir -p "$T/src/sub"
# a.bin: two segments, the last 34,464 bytes (cut by 100 below, it holds 99,900)
head -c 100000 /dev/urandom >"$T/src/a.bin"
for f in b.bin c.bin d.bin e.bin g.bin sub/f.bin x; do head -c $((RANDOM * 7 + 1000)) /dev/urandom >"$T/src/$f"; done
"$BIN" put "$DS" "$T/src/a.bin" "$T/src/b.bin" "$T/src/c.bin" "$T/src/d.bin" "$T/src/e.bin" "$T/src/g.bin" \
    >/dev/null 2>"$T/put.err" || { cat "$T/put.err"; fail "put"; }
"$BIN" put "$DS" "$T/src/sub/f.bin" --as sub/f.bin >/dev/null 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put --as"; }
"$BIN" put "$DS2" "$T/src/x" >/dev/null 2>"$T/put.err" || { cat "$T/put.err"; fail "put x"; }
"$BIN" dataset publish "$DS" >/dev/null || fail publish
# the download header cache (archive/<ds>/.hdr/) must not count as a stray
"$BIN" c4gh keygen --sk "$T/me.sec" --pk "$T/me.pub" --nocrypt >/dev/null 2>&1 || fail keygen
"$BIN" get "$DS/a.bin" --recipient-pk "$T/me.pub" -o "$T/got" >/dev/null 2>"$T/get.err" ||
    { cat "$T/get.err"; fail "get"; }
[ -d "$T/site/archive/$DS/.hdr" ] || fail "no header cache made"

check() {  # check NAME ARGS...: runs the check with -o json into $T/NAME.json, echoes its exit
    $A -o json archive check "${@:2}" >"$T/$1.json" 2>"$T/$1.err"
    echo $?
}
kinds() {  # kinds NAME: "problem path" lines, sorted
    python3 - "$T/$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for p in sorted((p["problem"], p.get("path") or p.get("detail").split()[0]) for p in r["problems"]):
    print(*p)
PY
}

rc=$(check clean)
[ "$rc" = 0 ] || { cat "$T/clean.json" "$T/clean.err"; fail "clean archive: exit $rc"; }
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if (r['datasets'], r['files'], r['deep'], r['problems']) == (2, 8, False, []) else 1)" \
    "$T/clean.json" || fail "clean report: $(cat "$T/clean.json")"
rc=$(check deep --deep)
[ "$rc" = 0 ] || { cat "$T/deep.json"; fail "clean archive --deep: exit $rc"; }
$A archive check --deep >"$T/table.out" 2>&1 || fail "table output: exit $?"
grep -q "^2 dataset(s), 8 file(s), [0-9]* bytes checked (every segment decrypted, both sums compared): 0 problem(s)$" \
    "$T/table.out" || fail "table summary: $(cat "$T/table.out")"

# --- damage, one kind per file ---
sid() {  # sid DS PATH: the storage id of a file
    sqlite3 "$T/site/antenna.db" "SELECT storage_id FROM files WHERE dataset_id='$1' AND path='$2'"
}
ARC=$T/site/archive/$DS
cp "$ARC/$(sid "$DS" a.bin).c4gh" "$T/a.copy"
truncate -s -100 "$ARC/$(sid "$DS" a.bin).c4gh"                    # a.bin: cut short
rm "$ARC/$(sid "$DS" b.bin).c4gh"                                   # b.bin: gone
F=$ARC/$(sid "$DS" c.bin).c4gh                                      # c.bin: a body byte flipped
python3 - "$F" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); off = os.fstat(fd).st_size - 500
b = os.pread(fd, 1, off); os.pwrite(fd, bytes([b[0] ^ 0x40]), off); os.close(fd)
PY
sqlite3 "$T/site/antenna.db" "UPDATE files SET sha256_plain = zeroblob(32) WHERE dataset_id='$DS' AND path='d.bin'" ||
    fail "catalog edit"                                             # d.bin: catalog sum changed
"$BIN" c4gh keygen --sk "$T/other.sec" --pk "$T/other.pub" --nocrypt >/dev/null 2>&1 || fail keygen
"$BIN" c4gh encrypt --recipient_pk "$T/other.pub" <"$T/src/e.bin" >"$ARC/$(sid "$DS" e.bin).c4gh" ||
    fail "encrypt for another key"                                  # e.bin: not for the site key
F=$ARC/$(sid "$DS" sub/f.bin).c4gh                                  # sub/f.bin: a symlink
mv "$F" "$T/f.moved" && ln -s "$T/f.moved" "$F"
# x and x/y in one dataset, as a database from before the rule could hold (the row's file is a
# copy of x's, so only the pair is wrong)
XS=$(sid "$DS2" x)
cp "$T/site/archive/$DS2/$XS.c4gh" "$T/site/archive/$DS2/f_pairpairpair0001.c4gh"
sqlite3 "$T/site/antenna.db" "INSERT INTO files(id, dataset_id, path, size, sha256_plain, sha256_c4gh, storage_id, created)
    SELECT 'f_pairpairpair0001', dataset_id, 'x/y', size, sha256_plain, sha256_c4gh, 'f_pairpairpair0001', created
    FROM files WHERE storage_id = '$XS'" || fail "pair row"
# strays: old ones reported, fresh ones (a running upload's) not
cp "$T/a.copy" "$ARC/f_strayoldoldold01.c4gh"
cp "$T/a.copy" "$ARC/f_strayfreshfresh1.c4gh"
head -c 10 /dev/zero >"$ARC/.up-0123456789abcdef.tmp"
head -c 10 /dev/zero >"$ARC/.up-fedcba9876543210.tmp"
mkdir "$T/site/archive/ds_nosuchdataset01" "$T/site/archive/fed"
touch -d '2 hours ago' "$T/site/archive/fed" "$ARC/f_strayoldoldold01.c4gh" "$ARC/.up-0123456789abcdef.tmp" \
    "$T/site/archive/ds_nosuchdataset01"
find "$T/site/archive" -type f -printf '%P %s %T@\n' | sort >"$T/archive.before"

rc=$(check quick)
[ "$rc" = 1 ] || { cat "$T/quick.json" "$T/quick.err"; fail "damaged archive: exit $rc, not 1"; }
kinds quick >"$T/quick.kinds"
cat >"$T/quick.want" <<EOF
missing b.bin
not_for_site_key e.bin
not_regular sub/f.bin
orphan_file $DS/f_strayoldoldold01.c4gh
orphan_folder ds_nosuchdataset01
path_conflict x/y
size_mismatch a.bin
stale_temporary $DS/.up-0123456789abcdef.tmp
EOF
diff "$T/quick.want" "$T/quick.kinds" >"$T/quick.diff" || fail "quick check: $(cat "$T/quick.diff")"
rc=$(check deep2 --deep)
[ "$rc" = 1 ] || fail "damaged archive --deep: exit $rc"
kinds deep2 >"$T/deep.kinds"
{ cat "$T/quick.want"; echo "checksum_mismatch d.bin"; echo "corrupt c.bin"; } | sort >"$T/deep.want"
diff "$T/deep.want" "$T/deep.kinds" >"$T/deep.diff" || fail "deep check: $(cat "$T/deep.diff")"
python3 - "$T/deep2.json" <<'PY' || fail "problem details: $(cat "$T/deep2.json")"
import json, sys
p = {x["path"]: x for x in json.load(open(sys.argv[1]))["problems"] if x.get("path")}
assert "plaintext" in p["d.bin"]["detail"] and "0" * 64 in p["d.bin"]["detail"], p["d.bin"]
assert "segment" in p["c.bin"]["detail"], p["c.bin"]
assert "x" in p["x/y"]["detail"] and p["x/y"]["dataset"], p["x/y"]
assert p["a.bin"]["file_id"].startswith("f_"), p["a.bin"]
PY
# one dataset only; an unknown one is an error
rc=$(check one --dataset "$DS2")
[ "$rc" = 1 ] && [ "$(kinds one)" = "path_conflict x/y" ] || fail "--dataset: $rc $(kinds one)"
$A archive check --dataset ds_nosuchdataset01 >/dev/null 2>"$T/nods.err"
[ $? = 1 ] && grep -q "no such object" "$T/nods.err" || fail "unknown dataset: $(cat "$T/nods.err")"
# the table names each problem and ends with the count
$A archive check >"$T/table2.out"
[ $? = 1 ] || fail "table exit"
grep -q "^size_mismatch  *$DS  *a.bin  *the file holds 99900 bytes of plaintext, the catalog says 100000$" \
    "$T/table2.out" &&
    grep -q ": 8 problem(s)$" "$T/table2.out" || fail "table: $(cat "$T/table2.out")"

# nothing was changed by the checks; each is audited with its count of problems
find "$T/site/archive" -type f -printf '%P %s %T@\n' | sort | diff - "$T/archive.before" >/dev/null ||
    fail "the check changed the archive"
"$BIN" audit query --dir "$T/site" -o json --limit 1000 >"$T/events.json" 2>/dev/null || fail "audit query"
python3 - "$T/events.json" <<'PY' || fail "audit events of the checks"
import json, sys
d = json.load(open(sys.argv[1]))
ev = [e for e in (d["events"] if isinstance(d, dict) else d) if e.get("action") == "admin.archive.check"]
counts = sorted(json.loads(e["detail"])["problems"] if isinstance(e["detail"], str) else e["detail"]["problems"] for e in ev)
assert len(ev) == 7, len(ev)
assert counts == [0, 0, 0, 1, 8, 8, 10], counts
PY
# the daemon still serves the healthy files
"$BIN" get "$DS/g.bin" --plain -o "$T/got2" >/dev/null 2>"$T/get2.err" && cmp -s "$T/got2" "$T/src/g.bin" ||
    fail "the daemon after the checks: $(cat "$T/get2.err")"

# --- the daemon's sweep at start: what a crash left goes, what is in use or not ours stays ---
kill "$PID"; wait "$PID" 2>/dev/null; PID=
H=$ARC/.hdr
OLD="$ARC/.up-1111111111111111.tmp $ARC/.fetch-2222222222222222.tmp $H/.tmp-3333333333333333"
KEEP="$ARC/.up-5555555555555555.tmp $ARC/.up-zz.tmp $ARC/.fetch-77777777777777777.tmp $H/.tmp-8888888888888888"
for f in $OLD $KEEP; do head -c 100 /dev/zero >"$f"; done
mkfifo "$ARC/.up-6666666666666666.tmp"
touch -d '2 hours ago' $OLD $KEEP "$ARC/.up-6666666666666666.tmp"
touch -d '5 minutes ago' "$H/.tmp-8888888888888888"   # a header temporary: ten minutes
# a writer that still holds its temporary locked (a slow upload): never removed
python3 -c 'import fcntl,sys,time; f=open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(60)' \
    "$ARC/.up-5555555555555555.tmp" >"$T/locker.out" &
LOCKER=$!
for _ in $(seq 50); do grep -q locked "$T/locker.out" && break; sleep 0.1; done
touch -d '2 hours ago' "$ARC/.up-5555555555555555.tmp"
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve2.out" 2>>"$T/serve2.log" &
PID=$!
ANTENNA_URL=$(wait_serving "$T/serve2.out") || fail "serve again"
for _ in $(seq 50); do grep -q '"archive.swept"' "$T/serve2.log" && break; sleep 0.1; done
grep -q '"removed 4 temporary file(s)' "$T/serve2.log" ||
    { kill "$LOCKER"; fail "sweep log: $(grep swept "$T/serve2.log")"; }
kill "$LOCKER" 2>/dev/null
for f in $OLD "$ARC/.up-0123456789abcdef.tmp"; do [ -e "$f" ] && fail "not swept: $f"; done
for f in $KEEP "$ARC/.up-6666666666666666.tmp" "$ARC/.up-fedcba9876543210.tmp" \
    "$ARC/f_strayoldoldold01.c4gh" "$ARC/f_strayfreshfresh1.c4gh"; do
    [ -e "$f" ] || fail "swept what it must keep: $f"
done

# --- a daemon killed mid-upload: no row, no file under a final name, the temporary swept ---
DS3=$(new_ds three)
head -c 3000000 /dev/urandom >"$T/big.bin"
curl -sS --cacert "$ANTENNA_CACERT" -H "Authorization: Bearer $ANTENNA_API_KEY" --limit-rate 300k \
    -T "$T/big.bin" "$ANTENNA_URL/v1/datasets/$DS3/files/big.bin" >/dev/null 2>&1 &
CURL=$!
for _ in $(seq 100); do ls "$T/site/archive/$DS3"/.up-*.tmp >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
kill -9 "$PID"; wait "$PID" 2>/dev/null; PID=
wait "$CURL" 2>/dev/null
ls "$T/site/archive/$DS3"/.up-*.tmp >/dev/null 2>&1 || fail "no upload temporary after the crash"
[ "$(sqlite3 "$T/site/antenna.db" "SELECT count(*) FROM files WHERE dataset_id='$DS3'")" = 0 ] ||
    fail "a row for the interrupted upload"
ls "$T/site/archive/$DS3"/*.c4gh >/dev/null 2>&1 && fail "a .c4gh for the interrupted upload"
touch -d '2 minutes ago' "$T/site/archive/$DS3"/.up-*.tmp
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve3.out" 2>>"$T/serve3.log" &
PID=$!
ANTENNA_URL=$(wait_serving "$T/serve3.out") || fail "serve after the crash"
for _ in $(seq 50); do grep -q '"archive.swept"' "$T/serve3.log" && break; sleep 0.1; done
ls "$T/site/archive/$DS3"/.up-*.tmp >/dev/null 2>&1 && fail "the crash's temporary not swept"
rc=$(check crash --dataset "$DS3")
[ "$rc" = 0 ] || fail "archive check after the crash: $(cat "$T/crash.json")"
"$BIN" put "$DS3" "$T/big.bin" >/dev/null 2>"$T/put3.err" || fail "upload again: $(cat "$T/put3.err")"

# usage errors exit 2
$A archive check extra >/dev/null 2>&1; [ $? = 2 ] || fail "extra word: not a usage error"
$A archive verify >/dev/null 2>&1; [ $? = 2 ] || fail "unknown verb: not a usage error"
$A tenant list --deep >/dev/null 2>&1; [ $? = 2 ] || fail "--deep elsewhere: not a usage error"
echo "ok archive check"
