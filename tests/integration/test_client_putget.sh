#!/usr/bin/env bash
# Integration test of `antenna put` and `antenna get` against a real daemon on 127.0.0.1 (port
# 0): several files and a folder with --recursive (refused without it, symlinks skipped), one
# file under a remote path with --as (the older `put DATASET LOCAL REMOTE` refused, not
# guessed), a whole dataset into -o DIR, a folder of it (DATASET/FOLDER/), DATASET/PATH, paths
# that would escape DIR, FIFOs refused without blocking, and a download cut mid-way (ulimit -f:
# SIGXFSZ) that the next `get` resumes with Range/If-Range, or restarts when the tag no longer
# matches (the partial file synced before the sidecar names the new tag: strace shows the
# order). What `put` cannot upload (a FIFO, a folder without --recursive, a missing file, a
# symlink) is skipped with exit 1, the rest uploaded. Downloads are checked against the site's
# checksums: a stored body damaged on disk, a resumed download over it, a catalog checksum
# changed under the daemon (a file, and stdout) and a fake site's listing all fail with no file
# under the final name. Stale sidecar temporaries are swept (nothing else), a locked partial
# file is not written, and `audit export -o FILE` is fsynced, renamed and its folder fsynced.
# $1 = the antenna binary. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") # absolute: one step runs in a cd
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
scratch_site putget

serve_owner_site site-p
DS=$(new_ds one)

# one file under a remote path: --as REMOTE (a REMOTE ending in / is a folder)
mkdir -p "$T/src/tree/sub/deeper" "$T/src/tree/empty"
head -c 1000 /dev/urandom >"$T/src/a.bin"
head -c 70000 /dev/urandom >"$T/src/b.bin"
"$BIN" put "$DS" "$T/src/a.bin" --as renamed/a.bin >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put LOCAL --as REMOTE"; }
grep -q ' -> renamed/a.bin (1000 bytes)' "$T/put.out" || fail "put line: $(cat "$T/put.out")"
"$BIN" put "$DS" "$T/src/b.bin" --as folder/ >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put --as FOLDER/"; }
grep -q ' -> folder/b.bin (70000 bytes)' "$T/put.out" || fail "--as DIR/: $(cat "$T/put.out")"
# the older `put DATASET LOCAL REMOTE` meant two things (REMOTE a remote path only when no such
# local file existed): refused, with the --as spelling, and nothing uploaded
"$BIN" put "$DS" "$T/src/a.bin" elsewhere/a.bin >"$T/put.out" 2>"$T/put.err"
[ $? -eq 2 ] || fail "the old LOCAL REMOTE form was not refused as a usage error"
grep -q "elsewhere/a.bin: no such local file" "$T/put.err" &&
    grep -q -- "--as elsewhere/a.bin" "$T/put.err" || fail "no --as hint: $(cat "$T/put.err")"
"$BIN" dataset files "$DS" -o json >"$T/files.json" || fail "dataset files"
grep -q elsewhere "$T/files.json" && fail "the refused put uploaded something"
# --as: one file only, not a folder; a FIFO is refused at once (not waited on in open)
"$BIN" put "$DS" "$T/src/a.bin" "$T/src/b.bin" --as x.bin 2>"$T/put.err"
[ $? -eq 2 ] || fail "--as with two files: not a usage error"
"$BIN" put "$DS" "$T/src/a.bin" --as x.bin --recursive 2>"$T/put.err"
[ $? -eq 2 ] || fail "--as with --recursive: not a usage error"
"$BIN" put "$DS" "$T/src/a.bin" --as x.bin --as y.bin 2>"$T/put.err"
[ $? -eq 2 ] || fail "--as twice: not a usage error"
if "$BIN" put "$DS" "$T/src/tree" --as t/ 2>"$T/put.err"; then fail "--as with a folder"; fi
grep -q "is a folder" "$T/put.err" || fail "--as folder: $(cat "$T/put.err")"
mkfifo "$T/fifo"
timeout 10 "$BIN" put "$DS" "$T/fifo" --as f.bin >/dev/null 2>"$T/put.err"
[ $? -eq 1 ] && grep -q "fifo: not a regular file" "$T/put.err" ||
    fail "put of a FIFO: $(cat "$T/put.err")"

# two files: one line each, under their names; two local files are two uploads whatever
# the second is called (here from their folder, as `put DS a.bin b.bin`)
(cd "$T/src" && "$BIN" put "$DS" a.bin b.bin) >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put two files"; }
[ "$(wc -l <"$T/put.out")" -eq 2 ] && grep -q '^a.bin -> a.bin (1000 bytes)' "$T/put.out" &&
    grep -q '^b.bin -> b.bin (70000 bytes)' "$T/put.out" ||
    fail "put two files: $(cat "$T/put.out")"

# a folder: refused without --recursive, then its files under tree/..., a symlink skipped
for f in x.txt sub/y.txt sub/deeper/z.bin; do
    head -c $((RANDOM + 1)) /dev/urandom >"$T/src/tree/$f"
done
: >"$T/src/tree/sub/empty.txt"
ln -s "$T/src/a.bin" "$T/src/tree/link.bin"
if "$BIN" put "$DS" "$T/src/tree" >"$T/put.out" 2>"$T/put.err"; then
    fail "folder without --recursive"
fi
grep -q -- '--recursive' "$T/put.err" || fail "no hint at --recursive: $(cat "$T/put.err")"
# the symlink inside is said and skipped, the files uploaded, and the exit code says so
"$BIN" put "$DS" "$T/src/tree/" --recursive >"$T/put.out" 2>"$T/put.err"
[ $? -eq 1 ] || { cat "$T/put.err"; fail "put --recursive with a symlink inside: not exit 1"; }
[ "$(wc -l <"$T/put.out")" -eq 4 ] || fail "put --recursive: $(cat "$T/put.out")"
grep -q ' -> tree/sub/deeper/z.bin ' "$T/put.out" || fail "relative path: $(cat "$T/put.out")"
grep -q 'link.bin: a symbolic link (not followed)' "$T/put.err" || fail "symlink not reported"
grep -q '1 path(s) skipped, not uploaded' "$T/put.err" || fail "no summary: $(cat "$T/put.err")"
# --json prints the server's answers; a duplicate stops with the server's message
"$BIN" put "$DS" "$T/src/tree/x.txt" --as other/x.txt --json >"$T/put.json" 2>"$T/put.err" &&
    python3 -c "import json,sys;json.load(open(sys.argv[1]))" "$T/put.json" || fail "put --json"
if "$BIN" put "$DS" "$T/src/a.bin" >"$T/put.out" 2>"$T/put.err"; then fail "duplicate put"; fi
grep -q 'upload of .*a.bin failed: 409' "$T/put.err" || fail "duplicate: $(cat "$T/put.err")"
# a file where the dataset has a folder (tree/x.txt is a file of it): 409 naming it
if "$BIN" put "$DS" "$T/src/a.bin" --as tree/x.txt/a.bin >"$T/put.out" 2>"$T/put.err"; then
    fail "a file beneath a file was uploaded"
fi
grep -q '409.*tree/x.txt is a file of the dataset' "$T/put.err" ||
    fail "file beneath a file: $(cat "$T/put.err")"

# a local path that cannot be uploaded (a FIFO, a folder without --recursive, a missing or
# unreadable file) is said and skipped, the others still uploaded, and the exit code is 1, as
# cp does with what it omits: never 0 with something left out
DSK=$(new_ds skips)
head -c 500 /dev/urandom >"$T/src/c.bin"
timeout 10 "$BIN" put "$DSK" "$T/fifo" >"$T/put.out" 2>"$T/put.err"
[ $? -eq 1 ] && grep -q "skipping $T/fifo: not a regular file" "$T/put.err" ||
    fail "put of a FIFO (no --as): $(cat "$T/put.err")"
[ ! -s "$T/put.out" ] || fail "put of a FIFO printed an upload: $(cat "$T/put.out")"
timeout 10 "$BIN" put "$DSK" "$T/fifo" "$T/src/tree" "$T/src/nope.bin" "$T/src/c.bin" \
    >"$T/put.out" 2>"$T/put.err"
[ $? -eq 1 ] || fail "put with skipped paths: not exit 1: $(cat "$T/put.err")"
grep -q "^$T/src/c.bin -> c.bin (500 bytes)" "$T/put.out" ||
    fail "the file beside the skipped paths was not uploaded: $(cat "$T/put.out")"
grep -q "skipping $T/src/tree: a folder (give --recursive to upload it)" "$T/put.err" &&
    grep -q "skipping $T/src/nope.bin: No such file or directory" "$T/put.err" &&
    grep -q "3 path(s) skipped, not uploaded" "$T/put.err" || fail "skips: $(cat "$T/put.err")"
"$BIN" dataset files "$DSK" -o json >"$T/files.json" || fail "dataset files"
python3 -c "import json,sys;f=json.load(open(sys.argv[1]))['files'];sys.exit(
    [e['path'] for e in f]!=['c.bin'])" "$T/files.json" || fail "skips: $(cat "$T/files.json")"
if [ "$(id -u)" != 0 ]; then # root reads a file of mode 000 all the same
    head -c 10 /dev/urandom >"$T/src/locked.bin"
    head -c 20 /dev/urandom >"$T/src/d.bin"
    chmod 000 "$T/src/locked.bin"
    "$BIN" put "$DSK" "$T/src/locked.bin" "$T/src/d.bin" >"$T/put.out" 2>"$T/put.err"
    [ $? -eq 1 ] && grep -q "cannot read $T/src/locked.bin: Permission denied" "$T/put.err" &&
        grep -q "d.bin -> d.bin (20 bytes)" "$T/put.out" ||
        fail "an unreadable file: $(cat "$T/put.err" "$T/put.out")"
    chmod 600 "$T/src/locked.bin"
else
    echo "note: running as root: the unreadable-file skip is not checked"
fi

# the whole dataset into -o DIR, byte for byte
"$BIN" get "$DS" --plain -o "$T/out" 2>"$T/get.err" || { cat "$T/get.err"; fail "get all"; }
for pair in "a.bin a.bin" "b.bin b.bin" "renamed/a.bin a.bin" "tree/x.txt tree/x.txt" \
    "tree/sub/y.txt tree/sub/y.txt" "tree/sub/deeper/z.bin tree/sub/deeper/z.bin" \
    "tree/sub/empty.txt tree/sub/empty.txt" "other/x.txt tree/x.txt" "folder/b.bin b.bin"; do
    set -- $pair
    cmp -s "$T/out/$1" "$T/src/$2" || fail "get all: $1 differs"
done
[ "$(find "$T/out" -type f | wc -l)" -eq 9 ] || fail "get all: $(find "$T/out" -type f)"
# again over the same folder: files replaced, nothing half-written left
"$BIN" get "$DS" --plain -o "$T/out" 2>"$T/get.err" || { cat "$T/get.err"; fail "get all twice"; }
[ "$(find "$T/out" -type f | wc -l)" -eq 9 ] || fail "leftovers: $(find "$T/out" -type f)"

# a folder of the dataset: DATASET/FOLDER/, DATASET FOLDER/ or a FOLDER that names no file,
# its files into -o DIR as their paths below the folder (as aws s3 cp --recursive)
check_sub() { # $1: the folder that must hold exactly tree/sub's files
    [ "$(find "$1" -type f | wc -l)" -eq 3 ] || fail "folder get: $(find "$1" -type f)"
    cmp -s "$1/y.txt" "$T/src/tree/sub/y.txt" && cmp -s "$1/empty.txt" "$T/src/tree/sub/empty.txt" &&
        cmp -s "$1/deeper/z.bin" "$T/src/tree/sub/deeper/z.bin" || fail "folder get: $1 differs"
}
"$BIN" get "$DS/tree/sub/" --plain -o "$T/sub1" 2>"$T/get.err" ||
    { cat "$T/get.err"; fail "get DS/FOLDER/"; }
check_sub "$T/sub1"
grep -q "3 file(s) of $DS under tree/sub/ in $T/sub1" "$T/get.err" || fail "$(cat "$T/get.err")"
"$BIN" get "$DS" tree/sub/ --plain -o "$T/sub2" 2>"$T/get.err" || fail "get DS FOLDER/"
check_sub "$T/sub2"
"$BIN" get "$DS/tree/sub" --plain -o "$T/sub3" 2>"$T/get.err" ||
    { cat "$T/get.err"; fail "get DS/FOLDER (no slash)"; }
check_sub "$T/sub3"
mkdir "$T/sub4"
(cd "$T/sub4" && "$BIN" get "$DS/tree/sub/" --plain 2>"$T/get.err") || fail "get DS/FOLDER/ here"
check_sub "$T/sub4"
"$BIN" get "$DS/tree/sub/" --plain -o "$T/sub1" 2>"$T/get.err" || fail "folder get again"
check_sub "$T/sub1"
# a folder holding nothing: a clear error, non-zero, no folder made
if "$BIN" get "$DS/tree/nope/" --plain -o "$T/none" 2>"$T/get.err"; then fail "empty prefix"; fi
grep -q "no file of $DS is under 'tree/nope/'" "$T/get.err" || fail "prefix: $(cat "$T/get.err")"
[ ! -e "$T/none" ] || fail "a folder made for a prefix that matched nothing"
if "$BIN" get "$DS/tree/su/" --plain -o "$T/none" 2>"$T/get.err"; then
    fail "a prefix of a folder's name is no folder"
fi
if "$BIN" get "$DS/tree/sub/" --plain -o - >/dev/null 2>"$T/get.err"; then fail "folder to -"; fi
if "$BIN" get "$DS/tree/sub" --plain -o - >/dev/null 2>"$T/get.err"; then fail "folder to -"; fi
grep -q "tree/sub is a folder of $DS" "$T/get.err" || fail "folder to -: $(cat "$T/get.err")"

# DATASET/PATH, into a folder (-o DIR), a file name, or stdout; the older DATASET PATH
mkdir "$T/one"
"$BIN" get "$DS/tree/sub/y.txt" --plain -o "$T/one" 2>"$T/get.err" || fail "get DS/PATH"
cmp -s "$T/one/y.txt" "$T/src/tree/sub/y.txt" || fail "get DS/PATH -o DIR differs"
"$BIN" get "$DS/b.bin" --plain -o "$T/one/bee" 2>"$T/get.err" &&
    cmp -s "$T/one/bee" "$T/src/b.bin" || fail "get DS/PATH -o FILE"
"$BIN" get "$DS" tree/x.txt --plain -o - >"$T/one/stdout" 2>"$T/get.err" &&
    cmp -s "$T/one/stdout" "$T/src/tree/x.txt" || fail "get DS PATH -o -"
(cd "$T/one" && "$BIN" get "$DS/tree/sub/deeper/z.bin" --plain 2>"$T/get.err") &&
    cmp -s "$T/one/z.bin" "$T/src/tree/sub/deeper/z.bin" || fail "get DS/PATH here"
if "$BIN" get "$DS" --plain -o - >/dev/null 2>"$T/get.err"; then fail "a dataset to stdout"; fi
# a file the site does not have: the message, and no empty partial file left behind
if "$BIN" get "$DS/nope.bin" --plain -o "$T/one" 2>"$T/get.err"; then fail "a missing file"; fi
grep -q 'download of nope.bin failed: 404' "$T/get.err" || fail "404: $(cat "$T/get.err")"
[ -z "$(ls -A "$T/one" | grep antenna-partial)" ] || fail "an empty partial file left"
if "$BIN" get "$DS/tree/nope" --plain -o "$T/one" 2>"$T/get.err"; then fail "a missing path"; fi
grep -q 'download of tree/nope failed: 404' "$T/get.err" || fail "404: $(cat "$T/get.err")"
# a local folder that is not there: said once, and not taken for a missing remote file
if "$BIN" get "$DS/b.bin" --plain -o "$T/no/such/b.bin" 2>"$T/get.err"; then fail "-o no/dir"; fi
[ "$(wc -l <"$T/get.err")" -eq 1 ] && grep -q "cannot open the folder of $T/no/such/b.bin" \
    "$T/get.err" || fail "-o into a missing folder: $(cat "$T/get.err")"
# a FIFO where the partial file goes is refused at once, not opened for writing and waited on
mkfifo "$T/one/.b.bin.antenna-partial"
timeout 10 "$BIN" get "$DS/b.bin" --plain -o "$T/one" 2>"$T/get.err"
[ $? -eq 1 ] && grep -q "antenna-partial: not a regular file" "$T/get.err" ||
    fail "a FIFO as the partial file: $(cat "$T/get.err")"
rm "$T/one/.b.bin.antenna-partial"

# a site naming a path that would leave DIR is refused, whatever the server checked: a fake
# site (python, TLS with the site's certificate) lists "ok.txt" and "../escape.txt", and in a
# folder "sub/ok.txt" and "sub/../../escape.txt". It sends no checksum header (as an older
# site): the listing's sha256 is what a file is checked against, "chk/bad.txt"'s is wrong
python3 - "$T" >"$T/fake.port" 2>"$T/fake.log" <<'PY' &
import hashlib, http.server, json, ssl, sys, threading
t = sys.argv[1]
X = hashlib.sha256(b"x").hexdigest()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/files"):
            paths = pair_paths if "/ds_pair/" in self.path else sys_paths
            body = json.dumps({"files": [{"path": p, "sha256": "0" * 64 if "bad" in p else X}
                                         for p in paths]}).encode()
        else:
            body = b"x"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
sys_paths = ["ok.txt", "../escape.txt", "sub/ok.txt", "sub/../../escape.txt", "chk/good.txt",
             "chk/bad.txt"]
pair_paths = ["y.txt", "x/a/b", "x/a"]  # a file that is also a folder: one tree cannot hold both
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(t + "/site/tls/cert.pem", t + "/site/tls/key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
threading.Timer(20, s.shutdown).start()
s.serve_forever()
PY
FAKE=$!
for _ in $(seq 50); do [ -s "$T/fake.port" ] && break; sleep 0.1; done
if [ -s "$T/fake.port" ]; then
    mkdir "$T/jail"
    if ANTENNA_URL=https://127.0.0.1:$(cat "$T/fake.port") "$BIN" get "$DS" --plain \
        -o "$T/jail/in" 2>"$T/get.err"; then fail "an escaping path was accepted"; fi
    grep -q "refusing the path '../escape.txt'" "$T/get.err" || fail "escape: $(cat "$T/get.err")"
    [ ! -e "$T/jail/escape.txt" ] && [ -f "$T/jail/in/ok.txt" ] || fail "escape: a file left DIR"
    if ANTENNA_URL=https://127.0.0.1:$(cat "$T/fake.port") "$BIN" get "$DS/sub/" --plain \
        -o "$T/jail/in/p" 2>"$T/get.err"; then fail "an escaping path under a folder"; fi
    grep -q "refusing the path 'sub/../../escape.txt'" "$T/get.err" ||
        fail "escape under a folder: $(cat "$T/get.err")"
    [ ! -e "$T/jail/escape.txt" ] && [ ! -e "$T/jail/in/escape.txt" ] &&
        [ -f "$T/jail/in/p/ok.txt" ] || fail "escape under a folder: a file left DIR"
    grep -q "p/ok.txt: 1 bytes, checksum verified" "$T/get.err" ||
        fail "the listing's checksum was not used: $(cat "$T/get.err")"
    # a file whose bytes do not match the listing's checksum does not take its name
    if ANTENNA_URL=https://127.0.0.1:$(cat "$T/fake.port") "$BIN" get "$DS/chk/" --plain \
        -o "$T/jail/chk" 2>"$T/get.err"; then fail "a mismatch against the listing: exit 0"; fi
    grep -q "chk/good.txt: 1 bytes, checksum verified" "$T/get.err" &&
        grep -q "download of chk/bad.txt failed: checksum mismatch: the SHA-256 of its plaintext" \
            "$T/get.err" || fail "mismatch against the listing: $(cat "$T/get.err")"
    [ "$(ls -A "$T/jail/chk")" = good.txt ] || fail "after a mismatch: $(ls -A "$T/jail/chk")"
    # one file: no listing is read, and nothing to check it against is said
    ANTENNA_URL=https://127.0.0.1:$(cat "$T/fake.port") "$BIN" get "$DS/ok.txt" --plain \
        -o "$T/jail/one.txt" 2>"$T/get.err" || fail "get from a site without checksums"
    grep -q "one.txt: 1 bytes, not verified (the site sent no checksum)" "$T/get.err" ||
        fail "no checksum: $(cat "$T/get.err")"
    # a site listing both x/a and x/a/b (stored before sites refused that): refused before
    # anything is written, not half-way
    if ANTENNA_URL=https://127.0.0.1:$(cat "$T/fake.port") "$BIN" get ds_pair --plain \
        -o "$T/jail/pair" 2>"$T/get.err"; then fail "a file that is also a folder was accepted"; fi
    grep -q "ds_pair holds both x/a and x/a/b, which one folder cannot" "$T/get.err" ||
        fail "file and folder: $(cat "$T/get.err")"
    [ ! -e "$T/jail/pair" ] || fail "file and folder: the refused get made its folder"
else
    echo "note: no fake site (key file name?), escape check skipped: $(cat "$T/fake.log")"
fi
kill "$FAKE" 2>/dev/null; wait "$FAKE" 2>/dev/null

# resume: 64 MiB, the client killed by SIGXFSZ once 16 MiB are written
DS2=$(new_ds big)
head -c $((64 * 1024 * 1024 + 123)) /dev/urandom >"$T/src/big.bin"
"$BIN" put "$DS2" "$T/src/big.bin" --as part/big.bin >/dev/null 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put big"; }
mkdir "$T/res"
(ulimit -f $((16 * 1024)); exec "$BIN" get "$DS2/part/big.bin" --plain -o "$T/res") \
    2>"$T/get1.err" && fail "the cut download succeeded"
[ -f "$T/res/.big.bin.antenna-partial" ] || fail "no partial file: $(ls -la "$T/res")"
[ ! -e "$T/res/big.bin" ] || fail "a final file after a cut download"
[ "$(stat -c %s "$T/res/.big.bin.antenna-partial")" -eq $((16 * 1024 * 1024)) ] ||
    fail "partial size $(stat -c %s "$T/res/.big.bin.antenna-partial")"
[ "$(stat -c %a "$T/res/.big.bin.antenna-partial.etag")" = 600 ] || fail "sidecar mode"
[ "$(ls -A "$T/res" | wc -l)" -eq 2 ] || fail "a temporary sidecar left: $(ls -A "$T/res")"
"$BIN" get "$DS2/part/big.bin" --plain -o "$T/res" 2>"$T/get2.err" ||
    { cat "$T/get2.err"; fail "resume"; }
grep -q "resumed: 16777216 kept, $((48 * 1024 * 1024 + 123)) received" "$T/get2.err" ||
    fail "not resumed: $(cat "$T/get2.err")"
cmp -s "$T/res/big.bin" "$T/src/big.bin" || fail "the resumed file differs"
[ ! -e "$T/res/.big.bin.antenna-partial" ] && [ ! -e "$T/res/.big.bin.antenna-partial.etag" ] ||
    fail "partial files left after success"
[ "$(stat -c %a "$T/res/big.bin")" != 600 ] || fail "the final file kept mode 0600"

# a folder's files resume the same way, each in its place below -o DIR
(ulimit -f $((16 * 1024)); exec "$BIN" get "$DS2/part/" --plain -o "$T/res/pre") \
    2>/dev/null && fail "the cut folder download succeeded"
[ -f "$T/res/pre/.big.bin.antenna-partial" ] || fail "no partial file: $(ls -la "$T/res/pre")"
"$BIN" get "$DS2/part/" --plain -o "$T/res/pre" 2>"$T/get4.err" ||
    { cat "$T/get4.err"; fail "folder resume"; }
grep -q "\[1/1\] $T/res/pre/big.bin: .*(resumed: 16777216 kept, " "$T/get4.err" ||
    fail "folder not resumed: $(cat "$T/get4.err")"
cmp -s "$T/res/pre/big.bin" "$T/src/big.bin" || fail "the resumed folder file differs"

# a tag that no longer matches: the site sends it all (200) and the client starts over; the
# partial file is emptied and fdatasynced before the sidecar names the new tag, the sidecar is
# written to a temporary name, fsynced and renamed, its folder fsynced, and only then does the
# first byte of the new answer go to the partial file (the order a power loss cannot undo)
mkdir "$T/res/again"
(ulimit -f $((8 * 1024)); exec "$BIN" get "$DS2/part/big.bin" --plain -o "$T/res/again") \
    2>/dev/null && fail "the second cut download succeeded"
printf '"0000"' >"$T/res/again/.big.bin.antenna-partial.etag"
STRACE=
if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
    STRACE="strace -qq -o $T/st.log -e trace=openat,ftruncate,fdatasync,fsync,renameat,renameat2,rename,write"
else
    echo "note: no usable strace: the sync order of a restart is not checked"
fi
# (LeakSanitizer cannot run under ptrace: a sanitizer build skips its leak check here)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    $STRACE "$BIN" get "$DS2/part/big.bin" --plain -o "$T/res/again" 2>"$T/get3.err" ||
    { cat "$T/get3.err"; fail "restart"; }
grep -q "big.bin: $((64 * 1024 * 1024 + 123)) bytes, checksum verified$" "$T/get3.err" ||
    fail "not restarted: $(cat "$T/get3.err")"
cmp -s "$T/res/again/big.bin" "$T/src/big.bin" || fail "the restarted file differs"
[ "$(ls -A "$T/res/again")" = big.bin ] || fail "leftovers: $(ls -A "$T/res/again")"
if [ -n "$STRACE" ]; then
    python3 - "$T/st.log" <<'PY' || fail "sync order: $(grep -v '^write(' "$T/st.log" | tail -20)"
import re, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if re.search(r"\) += ", l)]
def at(pat, start=0):
    for i in range(start, len(lines)):
        m = re.search(pat, lines[i])
        if m:
            return i, m
    sys.exit("not found after line %d: %s" % (start, pat))
PART = r'"[^"]*/\.big\.bin\.antenna-partial"|"\.big\.bin\.antenna-partial"'
i, m = at(r'openat\((\d+), (?:%s), [^)]*O_CREAT[^)]*\) += (\d+)$' % PART)
dirfd, fd = m.group(1), m.group(2)
i, _ = at(r'^ftruncate\(%s, 0\) += 0' % fd, i)
i, _ = at(r'^fdatasync\(%s\) += 0' % fd, i)
i, m = at(r'^openat\(%s, "\.big\.bin\.antenna-partial\.etag\.[0-9a-f]+", [^)]*O_CREAT[^)]*\)'
          r' += (\d+)$' % dirfd, i)
i, _ = at(r'^fsync\(%s\) += 0' % m.group(1), i)
i, _ = at(r'^renameat2?\(%s, "\.big\.bin\.antenna-partial\.etag\.[0-9a-f]+", %s, '
          r'"\.big\.bin\.antenna-partial\.etag"' % (dirfd, dirfd), i)
i, _ = at(r'^fsync\(%s\) += 0' % dirfd, i)
w, _ = at(r'^write\(%s, ' % fd)
sys.exit(0 if w > i else "a byte was written to the partial file before the sidecar was safe")
PY
fi
# checksums: each download is checked against the site's (X-Antenna-Sha256-C4gh: the body after
# the Crypt4GH header; X-Antenna-Sha256: the plaintext) before it takes its name
DS3=$(new_ds sums)
"$BIN" c4gh keygen --sk "$T/me.sec" --pk "$T/me.pub" --nocrypt >/dev/null 2>&1 || fail keygen
head -c $((5 * 65536 + 77)) /dev/urandom >"$T/src/s.bin"
"$BIN" put "$DS3" "$T/src/s.bin" >/dev/null 2>"$T/put.err" || { cat "$T/put.err"; fail "put s"; }
mkdir "$T/sum"
"$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/s.c4gh" 2>"$T/get.err" ||
    { cat "$T/get.err"; fail "get encrypted"; }
grep -q "s.c4gh: [0-9]* bytes, checksum verified$" "$T/get.err" || fail "$(cat "$T/get.err")"
"$BIN" c4gh decrypt --sk "$T/me.sec" -i "$T/sum/s.c4gh" -o "$T/sum/s.dec" 2>/dev/null &&
    cmp -s "$T/sum/s.dec" "$T/src/s.bin" || fail "the encrypted download does not decrypt"
"$BIN" get "$DS3/s.bin" --plain -o "$T/sum/s.plain" 2>"$T/get.err" &&
    grep -q "s.plain: $((5 * 65536 + 77)) bytes, checksum verified$" "$T/get.err" ||
    fail "get plain: $(cat "$T/get.err")"
# a byte of the stored body damaged on disk (the site streams an encrypted body as it is): the
# download fails, naming the file, and nothing is left under its name or as a partial file
ARCH=$(find "$T/site/archive/$DS3" -maxdepth 1 -name '*.c4gh')
[ -f "$ARCH" ] || fail "no archive file: $(ls -la "$T/site/archive/$DS3")"
flip() { # flip ARCH's byte at offset $1 (negative: from the end)
    python3 -c 'import os,sys
fd = os.open(sys.argv[1], os.O_RDWR); o = int(sys.argv[2])
o = o if o >= 0 else os.fstat(fd).st_size + o
b = os.pread(fd, 1, o); os.pwrite(fd, bytes([b[0] ^ 0x20]), o); os.close(fd)' "$ARCH" "$1"
}
flip -1000
if "$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/bad.c4gh" 2>"$T/get.err"; then
    fail "a damaged body was not caught"
fi
grep -q "download of s.bin failed: checksum mismatch: the SHA-256 of its Crypt4GH body" \
    "$T/get.err" || fail "damaged body: $(cat "$T/get.err")"
[ -z "$(ls -A "$T/sum" | grep bad.c4gh)" ] || fail "after a mismatch: $(ls -A "$T/sum")"
# resumed: the kept part is read back and checked with the rest; a mismatch is not left looking
# complete (the partial file and its tag go: the next run starts over)
flip -1000
(ulimit -f 128; exec "$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/r.c4gh") \
    2>/dev/null && fail "the cut encrypted download succeeded"
[ "$(stat -c %s "$T/sum/.r.c4gh.antenna-partial")" -eq $((128 * 1024)) ] ||
    fail "cut: $(ls -la "$T/sum")"
flip -1000
if "$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/r.c4gh" 2>"$T/get.err"; then
    fail "a damaged resumed download was not caught"
fi
grep -q "checksum mismatch" "$T/get.err" || fail "resumed mismatch: $(cat "$T/get.err")"
[ -z "$(ls -A "$T/sum" | grep r.c4gh)" ] || fail "after a resumed mismatch: $(ls -A "$T/sum")"
flip -1000
(ulimit -f 128; exec "$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/r.c4gh") \
    2>/dev/null && fail "the second cut encrypted download succeeded"
"$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o "$T/sum/r.c4gh" 2>"$T/get.err" &&
    grep -q "(resumed: 131072 kept, [0-9]* received), checksum verified$" "$T/get.err" &&
    cmp -s "$T/sum/r.c4gh" "$T/sum/s.c4gh" || fail "a resumed download: $(cat "$T/get.err")"

# a crash between creating the sidecar's temporary and renaming it leaves the partial file and
# .NAME.antenna-partial.etag.XXXXXXXX: the next get of that file removes exactly those (regular
# files, 8 lower-case hex digits), nothing else, and follows no symlink
mkdir "$T/stale"
: >"$T/stale/.s.bin.antenna-partial"
printf '"0"' >"$T/stale/.s.bin.antenna-partial.etag.0badf00d"
printf '"1"' >"$T/stale/.s.bin.antenna-partial.etag.12ab34cd"
for n in .s.bin.antenna-partial.etag.0badf00d.keep .s.bin.antenna-partial.etag.0BADF00D \
    .s.bin.antenna-partial.etag.0badf00 .t.bin.antenna-partial.etag.0badf00d \
    s.bin.antenna-partial.etag.0badf00d .s.bin.antenna-partial.etag0badf00d target; do
    printf keep >"$T/stale/$n"
done
ln -s "$T/stale/target" "$T/stale/.s.bin.antenna-partial.etag.5eed5eed"
mkdir "$T/stale/.s.bin.antenna-partial.etag.deadbeef"
"$BIN" get "$DS3/s.bin" --plain -o "$T/stale" 2>"$T/get.err" || fail "get over stale temps"
cmp -s "$T/stale/s.bin" "$T/src/s.bin" || fail "the file got over stale temps differs"
[ ! -e "$T/stale/.s.bin.antenna-partial.etag.0badf00d" ] &&
    [ ! -e "$T/stale/.s.bin.antenna-partial.etag.12ab34cd" ] || fail "stale temps kept"
[ -L "$T/stale/.s.bin.antenna-partial.etag.5eed5eed" ] &&
    [ -d "$T/stale/.s.bin.antenna-partial.etag.deadbeef" ] || fail "a symlink or folder removed"
[ "$(ls -A "$T/stale" | wc -l)" -eq 10 ] || fail "stale sweep: $(ls -A "$T/stale")"
for n in .s.bin.antenna-partial.etag.0badf00d.keep .s.bin.antenna-partial.etag.0BADF00D \
    .s.bin.antenna-partial.etag.0badf00 .t.bin.antenna-partial.etag.0badf00d \
    s.bin.antenna-partial.etag.0badf00d .s.bin.antenna-partial.etag0badf00d target; do
    [ "$(cat "$T/stale/$n")" = keep ] || fail "$n was changed or removed"
done
# a partial file another download holds (flock) is not written to, nor swept
: >"$T/stale/.s.bin.antenna-partial"
printf '"0"' >"$T/stale/.s.bin.antenna-partial.etag.0badf00d"
flock "$T/stale/.s.bin.antenna-partial" "$BIN" get "$DS3/s.bin" --plain -o "$T/stale" \
    2>"$T/get.err" && fail "a download beside a locked partial file succeeded"
grep -q "another download of this file is writing it" "$T/get.err" ||
    fail "locked: $(cat "$T/get.err")"
[ -e "$T/stale/.s.bin.antenna-partial" ] &&
    [ -e "$T/stale/.s.bin.antenna-partial.etag.0badf00d" ] || fail "a locked download's files went"
rm -f "$T/stale/.s.bin.antenna-partial" "$T/stale/.s.bin.antenna-partial.etag.0badf00d"

# the plaintext checksum, and stdout: the catalog's sha256 changed under the daemon, so the
# bytes served no longer match it; a file does not take its name, stdout gets the bytes (a
# pipe cannot take them back) and the command says so and exits 1
python3 -c 'import sqlite3,sys
db = sqlite3.connect(sys.argv[1])
with db:
    n = db.execute("UPDATE files SET sha256_plain = zeroblob(32) WHERE dataset_id = ?",
                   (sys.argv[2],)).rowcount
sys.exit(n != 1)' "$T/site/antenna.db" "$DS3" || fail "catalog edit"
if "$BIN" get "$DS3/s.bin" --plain -o "$T/sum/p.bin" 2>"$T/get.err"; then
    fail "a plaintext mismatch was not caught"
fi
grep -q "download of s.bin failed: checksum mismatch: the SHA-256 of its plaintext is " \
    "$T/get.err" || fail "plain mismatch: $(cat "$T/get.err")"
[ -z "$(ls -A "$T/sum" | grep p.bin)" ] || fail "after a plain mismatch: $(ls -A "$T/sum")"
"$BIN" get "$DS3/s.bin" --plain -o - >"$T/sum/stdout" 2>"$T/get.err" &&
    fail "a mismatch on stdout: exit 0"
grep -q "what was written out is not the site's file" "$T/get.err" ||
    fail "stdout mismatch: $(cat "$T/get.err")"
"$BIN" get "$DS3/s.bin" --recipient-pk "$T/me.pub" -o - >"$T/sum/stdout.c4gh" 2>"$T/get.err" ||
    fail "encrypted to stdout (its body's checksum is intact): $(cat "$T/get.err")"

# the audit export -o FILE lands complete: a temporary name, fsynced, renamed, and the folder
# fsynced after the rename (strace shows the order); it verifies offline
grep -E '^ak_' "$T/init.out" | head -1 >"$T/admin.key"
chmod 600 "$T/admin.key"
mkdir "$T/exp"
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
    ${STRACE:+strace -qq -o $T/st2.log -e trace=openat,fsync,renameat,renameat2,rename} \
    "$BIN" audit export --key-file "$T/admin.key" -o "$T/exp/audit.ndjson" 2>"$T/exp.err" ||
    fail "audit export: $(cat "$T/exp.err")"
[ "$(ls -A "$T/exp")" = audit.ndjson ] || fail "export leftovers: $(ls -A "$T/exp")"
"$BIN" audit verify --export "$T/exp/audit.ndjson" --site-key "$T/site/keys/site.pub" \
    >/dev/null 2>&1 || fail "the export does not verify"
if [ -n "$STRACE" ]; then
    python3 - "$T/st2.log" "$T/exp" <<'PY' || fail "export sync order: $(tail -20 "$T/st2.log")"
import re, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if re.search(r"\) += ", l)]
d = re.escape(sys.argv[2])
def at(pat, start=0):
    for i in range(start, len(lines)):
        m = re.search(pat, lines[i])
        if m:
            return i, m
    sys.exit("not found after line %d: %s" % (start, pat))
TMP = r'"%s/\.audit\.ndjson\.part-[0-9a-f]+"' % d
i, m = at(r'^openat\(AT_FDCWD, %s, [^)]*O_CREAT[^)]*\) += (\d+)$' % TMP)
i, _ = at(r'^fsync\(%s\) += 0' % m.group(1), i)
i, _ = at(r'^renameat2?\(AT_FDCWD, %s, AT_FDCWD, "%s/audit\.ndjson"' % (TMP, d), i)
i, m = at(r'^openat\(AT_FDCWD, "%s", O_RDONLY[^)]*O_DIRECTORY[^)]*\) += (\d+)$' % d, i)
i, _ = at(r'^fsync\(%s\) += 0' % m.group(1), i)
PY
fi
echo "ok"
