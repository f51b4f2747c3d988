#!/usr/bin/env bash
# Integration test of `antenna put` and `antenna get` against a real daemon on 127.0.0.1 (port
# 0): several files and a folder with --recursive (refused without it, symlinks skipped), a
# whole dataset into -o DIR, DATASET/PATH, paths that would escape DIR, and a download cut
# mid-way (ulimit -f: SIGXFSZ) that the next `get` resumes with Range/If-Range, or restarts when
# the tag no longer matches. $1 = the antenna binary. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") # absolute: one step runs in a cd
command -v python3 >/dev/null || { echo "no python3"; exit 77; }
T=$(mktemp -d /tmp/antenna-putget-XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "${ANT_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL $*"
    echo "--- last server log lines ---"
    grep -v '"http.request"' "$T"/serve.log 2>/dev/null | tail -25
    exit 1
}

"$BIN" init --dir "$T/site" --site-id site-p --region EU >"$T/init.out" 2>&1 ||
    { cat "$T/init.out"; fail init; }
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>>"$T/serve.log" &
PID=$!
for _ in $(seq 100); do grep -q serving "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\).*|\1|p' "$T/serve.out")
[ -n "$PORT" ] || fail "serve did not start"
export ANTENNA_URL=https://127.0.0.1:$PORT
export ANTENNA_CACERT=$T/site/tls/cert.pem
A="$BIN admin --dir $T/site"
$A tenant add lab >/dev/null && $A principal add alice --tenant lab --role owner >/dev/null ||
    fail "admin setup"
ANTENNA_API_KEY=$($A key create --principal alice | awk '/^key /{print $2}')
export ANTENNA_API_KEY
new_ds() {
    "$BIN" dataset create "$1" --classification internal >"$T/$1.json" || fail "dataset create"
    python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/$1.json"
}
DS=$(new_ds one)

# the single-file form with a remote name still works
mkdir -p "$T/src/tree/sub/deeper" "$T/src/tree/empty"
head -c 1000 /dev/urandom >"$T/src/a.bin"
head -c 70000 /dev/urandom >"$T/src/b.bin"
"$BIN" put "$DS" "$T/src/a.bin" renamed/a.bin >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put LOCAL REMOTE"; }
grep -q ' -> renamed/a.bin (1000 bytes)' "$T/put.out" || fail "put line: $(cat "$T/put.out")"

# two files: one line each, under their names
"$BIN" put "$DS" "$T/src/a.bin" "$T/src/b.bin" >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put two files"; }
[ "$(wc -l <"$T/put.out")" -eq 2 ] && grep -q ' -> b.bin (70000 bytes)' "$T/put.out" ||
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
"$BIN" put "$DS" "$T/src/tree/" --recursive >"$T/put.out" 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put --recursive"; }
[ "$(wc -l <"$T/put.out")" -eq 4 ] || fail "put --recursive: $(cat "$T/put.out")"
grep -q ' -> tree/sub/deeper/z.bin ' "$T/put.out" || fail "relative path: $(cat "$T/put.out")"
grep -q 'link.bin: a symbolic link (not followed)' "$T/put.err" || fail "symlink not reported"
# --json prints the server's answers; a duplicate stops with the server's message
"$BIN" put "$DS" "$T/src/tree/x.txt" other/x.txt --json >"$T/put.json" 2>"$T/put.err" &&
    python3 -c "import json,sys;json.load(open(sys.argv[1]))" "$T/put.json" || fail "put --json"
if "$BIN" put "$DS" "$T/src/a.bin" >"$T/put.out" 2>"$T/put.err"; then fail "duplicate put"; fi
grep -q 'upload of .*a.bin failed: 409' "$T/put.err" || fail "duplicate: $(cat "$T/put.err")"

# the whole dataset into -o DIR, byte for byte
"$BIN" get "$DS" --plain -o "$T/out" 2>"$T/get.err" || { cat "$T/get.err"; fail "get all"; }
for pair in "a.bin a.bin" "b.bin b.bin" "renamed/a.bin a.bin" "tree/x.txt tree/x.txt" \
    "tree/sub/y.txt tree/sub/y.txt" "tree/sub/deeper/z.bin tree/sub/deeper/z.bin" \
    "tree/sub/empty.txt tree/sub/empty.txt" "other/x.txt tree/x.txt"; do
    set -- $pair
    cmp -s "$T/out/$1" "$T/src/$2" || fail "get all: $1 differs"
done
[ "$(find "$T/out" -type f | wc -l)" -eq 8 ] || fail "get all: $(find "$T/out" -type f)"
# again over the same folder: files replaced, nothing half-written left
"$BIN" get "$DS" --plain -o "$T/out" 2>"$T/get.err" || { cat "$T/get.err"; fail "get all twice"; }
[ "$(find "$T/out" -type f | wc -l)" -eq 8 ] || fail "leftovers: $(find "$T/out" -type f)"

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

# a site naming a path that would leave DIR is refused, whatever the server checked: a fake
# site (python, TLS with the site's certificate) lists "ok.txt" and "../escape.txt"
python3 - "$T" >"$T/fake.port" 2>"$T/fake.log" <<'PY' &
import http.server, json, ssl, sys, threading
t = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/files"):
            body = json.dumps({"files": [{"path": p} for p in sys_paths]}).encode()
        else:
            body = b"x"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
sys_paths = ["ok.txt", "../escape.txt"]
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
else
    echo "note: no fake site (key file name?), escape check skipped: $(cat "$T/fake.log")"
fi
kill "$FAKE" 2>/dev/null; wait "$FAKE" 2>/dev/null

# resume: 64 MiB, the client killed by SIGXFSZ once 16 MiB are written
DS2=$(new_ds big)
head -c $((64 * 1024 * 1024 + 123)) /dev/urandom >"$T/src/big.bin"
"$BIN" put "$DS2" "$T/src/big.bin" >/dev/null 2>"$T/put.err" ||
    { cat "$T/put.err"; fail "put big"; }
mkdir "$T/res"
(ulimit -f $((16 * 1024)); exec "$BIN" get "$DS2/big.bin" --plain -o "$T/res") \
    2>"$T/get1.err" && fail "the cut download succeeded"
[ -f "$T/res/.big.bin.antenna-partial" ] || fail "no partial file: $(ls -la "$T/res")"
[ ! -e "$T/res/big.bin" ] || fail "a final file after a cut download"
[ "$(stat -c %s "$T/res/.big.bin.antenna-partial")" -eq $((16 * 1024 * 1024)) ] ||
    fail "partial size $(stat -c %s "$T/res/.big.bin.antenna-partial")"
[ "$(stat -c %a "$T/res/.big.bin.antenna-partial.etag")" = 600 ] || fail "sidecar mode"
"$BIN" get "$DS2/big.bin" --plain -o "$T/res" 2>"$T/get2.err" ||
    { cat "$T/get2.err"; fail "resume"; }
grep -q "resumed: 16777216 kept, $((48 * 1024 * 1024 + 123)) received" "$T/get2.err" ||
    fail "not resumed: $(cat "$T/get2.err")"
cmp -s "$T/res/big.bin" "$T/src/big.bin" || fail "the resumed file differs"
[ ! -e "$T/res/.big.bin.antenna-partial" ] && [ ! -e "$T/res/.big.bin.antenna-partial.etag" ] ||
    fail "partial files left after success"
[ "$(stat -c %a "$T/res/big.bin")" != 600 ] || fail "the final file kept mode 0600"

# a tag that no longer matches: the site sends it all (200) and the client starts over
mkdir "$T/res/again"
(ulimit -f $((8 * 1024)); exec "$BIN" get "$DS2/big.bin" --plain -o "$T/res/again") \
    2>/dev/null && fail "the second cut download succeeded"
printf '"0000"' >"$T/res/again/.big.bin.antenna-partial.etag"
"$BIN" get "$DS2/big.bin" --plain -o "$T/res/again" 2>"$T/get3.err" ||
    { cat "$T/get3.err"; fail "restart"; }
grep -q "big.bin: $((64 * 1024 * 1024 + 123)) bytes$" "$T/get3.err" ||
    fail "not restarted: $(cat "$T/get3.err")"
cmp -s "$T/res/again/big.bin" "$T/src/big.bin" || fail "the restarted file differs"
echo "ok"
