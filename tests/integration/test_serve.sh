#!/usr/bin/env bash
# Integration test of `antenna init` and `antenna serve`: the real daemon on 127.0.0.1 (port 0),
# spoken to over HTTPS with its own certificate as the only trust anchor.
set -u
BIN=$1
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d /tmp/antenna-it-XXXXXX)
PID=
fails=0
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# --- init ---
"$BIN" init >/dev/null 2>&1; check "init without arguments exits 2" test $? -eq 2
"$BIN" init --dir "$T/site" --site-id Bad_Id --region EU >/dev/null 2>&1
check "init refuses a bad site id with 2" test $? -eq 2
"$BIN" init --dir "$T/site" --site-id site-a --region EU-IT --hostname gw.example.org >"$T/init.out" 2>&1
check "init creates a site" test $? -eq 0
KEY=$(grep -E '^ak_' "$T/init.out")
check "init prints an API key once" test -n "$KEY"
check "secret key is 0600" test "$(stat -c %a "$T/site/keys/site.sec")" = 600
check "keys folder is 0700" test "$(stat -c %a "$T/site/keys")" = 700
check "no API key in the database" bash -c "! grep -q '${KEY##*_}' '$T/site/antenna.db'"
check "no temporary folder left" bash -c "! ls -a '$T' | grep -q init-"
check "antenna.db migrated, WAL" bash -c "[ \"\$(sqlite3 '$T/site/antenna.db' 'PRAGMA user_version')\" -ge 1 ] && [ \"\$(sqlite3 '$T/site/antenna.db' 'PRAGMA journal_mode')\" = wal ]"
check "audit.db migrated" bash -c "[ \"\$(sqlite3 '$T/site/audit.db' 'PRAGMA user_version')\" -ge 1 ]"
check "init is audited" bash -c "[ \"\$(sqlite3 '$T/site/audit.db' 'SELECT count(*) FROM events')\" -ge 1 ]"
check "certificate names localhost, 127.0.0.1 and the hostname" bash -c "openssl x509 -in '$T/site/tls/cert.pem' -noout -ext subjectAltName | tr -d ' ' | grep -q 'DNS:localhost.*IPAddress:127.0.0.1' && openssl x509 -in '$T/site/tls/cert.pem' -noout -ext subjectAltName | grep -q gw.example.org"
check "certificate is ECDSA P-256" bash -c "openssl x509 -in '$T/site/tls/cert.pem' -noout -text | grep -q 'prime256v1\\|P-256'"
check "config writes every option" bash -c "grep -q '^\\[staging\\]' '$T/site/antenna.conf' && grep -q 'checkpoint_every' '$T/site/antenna.conf'"
"$BIN" init --dir "$T/site" --site-id site-a --region EU >"$T/reinit.out" 2>&1
check "init refuses an existing site" test $? -ne 0
check "re-init message says so" grep -q "refusing" "$T/reinit.out"

# --- config errors ---
cp "$T/site/antenna.conf" "$T/bad.conf"; printf '[server]\nbogus = 1\n' >>"$T/bad.conf"
"$BIN" serve --dir "$T/site" --config "$T/bad.conf" 2>"$T/bad.err"
check "unknown key exits 2" test $? -eq 2
check "message names file, line and key" grep -q "bad.conf:.*bogus" "$T/bad.err"
"$BIN" serve --dir "$T/site" --config "$T/missing.conf" 2>/dev/null
check "missing config exits 2" test $? -eq 2

# --- serve ---
"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.log" &
PID=$!
URL=$(wait_serving "$T/serve.out"); PORT=${URL##*:}
check "serve prints its port" test -n "$PORT"
U="https://127.0.0.1:$PORT"
C=(curl -sS --cacert "$T/site/tls/cert.pem" -m 10)
check "health" bash -c "$(printf '%q ' "${C[@]}") $U/v1/health | grep -q '\"status\":\"ok\"'"
check "site shows id and keys" bash -c "$(printf '%q ' "${C[@]}") $U/v1/site | grep -q '\"id\":\"site-a\".*x25519'"
check "unknown route 404 JSON" bash -c "$(printf '%q ' "${C[@]}") -w '%{http_code}' $U/v1/nope | tr -d '\\n' | grep -q '\"error\":\"not_found\".*request_id.*404'"
check "wrong method 405" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -X DELETE "$U/v1/health")" = 405
# just over the header memory (16 KiB by default): the server answers and closes; a client
# still writing may see the close before the answer, so try a few times
BIG=$(head -c 17000 /dev/zero | tr '\0' a)
code=
for _ in 1 2 3 4 5; do
  code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Big: $BIG" "$U/v1/health" 2>/dev/null)
  [ "$code" = 431 ] || [ "$code" = 413 ] && break
done
check "oversized headers 431 or 413" bash -c "[ '$code' = 431 ] || [ '$code' = 413 ]"
MID=$(head -c 12000 /dev/zero | tr '\0' a)
check "headers of 12 KB are taken" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Big: $MID" "$U/v1/health")" = 200
check "TLS 1.1 refused" bash -c "! $(printf '%q ' "${C[@]}") --tls-max 1.1 $U/v1/health >/dev/null 2>&1"
check "no verification skip needed: wrong CA fails" bash -c "! curl -sS -m 5 $U/v1/health >/dev/null 2>&1"
python3 - "$PORT" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
plain = socket.create_connection(("127.0.0.1", port)); plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
half = socket.create_connection(("127.0.0.1", port)); half.sendall(bytes.fromhex("160301020001"))
silent = socket.create_connection(("127.0.0.1", port))
time.sleep(3)
PY
HANG=$!
sleep 0.5
check "serves others while plain/half/silent clients hang on" bash -c "$(printf '%q ' "${C[@]}") $U/v1/health | grep -q ok"
wait $HANG
check "an API route without a key is 401 with WWW-Authenticate" bash -c "$(printf '%q ' "${C[@]}") -D - -o /dev/null $U/metrics | grep -qi '^www-authenticate: Bearer'"
check "the admin key reaches /metrics" bash -c "$(printf '%q ' "${C[@]}") -H 'Authorization: Bearer $KEY' $U/metrics | grep -q antenna_http_requests_total"
check "a bad key is 401" test "$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ak_0000000000000000_00" "$U/metrics")" = 401
# A small answer goes out as one TLS record (gateway/server.c queue_answer), flushed when the
# answer is complete: a record left corked would wait for the kernel's 200 ms cork timeout.
# On one keep-alive connection, public and held (audited) answers alike come at once; three
# requests pipelined without reading get their three answers (the two-record path).
keepalive_check() {  # PORT [KEY]: without a key, public answers only
  python3 - "$1" "$T/site/tls/cert.pem" "${2:-}" <<'PY'
import http.client, ssl, socket, statistics, sys, time
port, ca, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
times = []
for i in range(40):
    held = key and i % 2
    hdrs = {"Authorization": "Bearer " + key} if held else {}
    t0 = time.monotonic()
    c.request("GET", "/metrics" if held else "/v1/health", headers=hdrs)
    r = c.getresponse()
    body = r.read()
    times.append(time.monotonic() - t0)
    if r.status != 200 or not body:
        sys.exit(f"answer {i}: {r.status} {body[:80]!r}")
# a corked record would cost 200 ms each; a loaded machine rarely more than a few ms
if statistics.median(times) > 0.1:
    sys.exit(f"median {statistics.median(times) * 1000:.0f} ms")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
s.settimeout(10)
s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
got = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
if got.count(b"HTTP/1.1 200 ") != 3 or got.count(b'"status":"ok"') != 3:
    sys.exit(f"pipelined: {got[:300]!r}")
PY
}
check "small answers on a keep-alive connection are not held back" keepalive_check "$PORT" "$KEY"
# A request refused before its body is read, with a small body sent right behind its headers
# (no Expect: 100-continue, as curl does up to 1 MiB): the body is read and dropped, then the
# answer comes; closing with the body unread reset the connection, and the client, reading a
# moment later, saw "connection reset" instead of its 401.
check "a refused small upload still reads its 401" python3 - "$PORT" "$T/site/tls/cert.pem" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
s.settimeout(10)
body = b"x" * 200000
s.sendall(b"PUT /v1/datasets/ds_0123456789abcdef/files/a.txt HTTP/1.1\r\nHost: x\r\n"
          b"Authorization: Bearer ak_0000000000000000_00\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body)
time.sleep(0.5)
got = b""
try:
    while b"\r\n\r\n" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
except OSError as e:
    sys.exit(f"reading the answer: {e}")
sys.exit(0 if got.startswith(b"HTTP/1.1 401 ") else f"answer: {got[:200]!r}")
PY
# a slow request in flight when SIGTERM arrives still gets its answer
python3 - "$PORT" "$T/site/tls/cert.pem" "$T/slow.ready" >"$T/slow.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="127.0.0.1")
# headers complete, body still on its way: the request is in flight
s.sendall(b"POST /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
time.sleep(0.3)  # let the server read the headers
open(sys.argv[3], "w").close()
time.sleep(1.5)  # the server receives SIGTERM now
s.sendall(b"56789")
print(s.recv(4096).decode(errors="replace").split("\r\n")[0])
PY
SLOW=$!
for _ in $(seq 100); do [ -e "$T/slow.ready" ] && break; sleep 0.1; done
kill -TERM "$PID"; wait "$PID"; rc=$?; PID=
wait $SLOW
check "a request in flight at SIGTERM is answered" grep -q "HTTP/1.1 405" "$T/slow.out"
check "SIGTERM exits 0" test $rc -eq 0
check "request log is JSON lines" bash -c "grep '\"event\":\"http.request\"' '$T/serve.log' | python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]'"
# --- per-principal rate limit: 2 requests at once, 1 per second after that; this daemon and
# the limits below run on epoll ([server] event_loop), the one above on poll ---
sed -e 's/^rate_limit = .*/rate_limit = 1/' -e 's/^rate_burst = .*/rate_burst = 2/' \
  -e 's/^event_loop = .*/event_loop = epoll/' \
  -e 's/^connection_timeout = .*/connection_timeout = 4s/' \
  -e 's/^per_ip_connection_limit = .*/per_ip_connection_limit = 4/' \
  "$T/site/antenna.conf" >"$T/rl.conf"
"$BIN" serve --dir "$T/site" --config "$T/rl.conf" --listen 127.0.0.1:0 >"$T/rl.out" 2>/dev/null &
PID=$!
URL=$(wait_serving "$T/rl.out"); PORT=${URL##*:}
check "rl.conf sets event_loop = epoll" grep -q '^event_loop = epoll' "$T/rl.conf"
check "epoll: small answers on a keep-alive connection are not held back" keepalive_check "$PORT"
codes=""
for _ in 1 2 3 4; do
  codes="$codes $("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "https://127.0.0.1:$PORT/metrics")"
done
check "past the burst: 429 ($codes)" bash -c "[[ '$codes' == ' 200 200 429'* ]]"
check "429 carries Retry-After" bash -c "$(printf '%q ' "${C[@]}") -D - -o /dev/null -H 'Authorization: Bearer $KEY' https://127.0.0.1:$PORT/metrics | grep -qi '^retry-after: [1-9]'"
check "health is not rate limited" test "$("${C[@]}" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/v1/health")" = 200
# slow clients are dropped after connection_timeout; one address holds at most 4 connections
python3 - "$PORT" >"$T/limits.out" 2>&1 <<'PY'
import socket, sys, time
port = int(sys.argv[1])
idle = socket.create_connection(("127.0.0.1", port))
idle.settimeout(9)
t0 = time.time()
try:
    idle.recv(16)  # a TLS alert, then the close; or the close alone
    gone = True
except ConnectionResetError:
    gone = True
except socket.timeout:
    gone = False
print("idle-closed" if gone and time.time() - t0 < 7.5 else "idle-kept")
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
# all at once, well inside connection_timeout: the refused ones are closed as soon as the
# server gets to them, the kept ones stay silent (waiting for a TLS ClientHello)
import select
closedset, t1 = set(), time.time()
while len(closedset) < 2 and time.time() - t1 < 2.5:
    readable, _, _ = select.select([s for s in socks if s not in closedset], [], [], 0.2)
    closedset.update(readable)
closed, kept = len(closedset), len(socks) - len(closedset)
print(f"kept={kept} refused={closed}")
PY
check "an idle connection is closed after connection_timeout" grep -q idle-closed "$T/limits.out"
# (connections of earlier checks may still be closing on the server: at most 4 kept, the
# ones past the limit refused)
check "at most 4 connections per address, the rest refused ($(tail -1 "$T/limits.out"))" \
  python3 -c 'import re,sys; k,r=map(int,re.search(r"kept=(\d+) refused=(\d+)",open(sys.argv[1]).read()).groups()); sys.exit(0 if 1<=k<=4 and r>=2 else 1)' "$T/limits.out"
kill -TERM "$PID"; wait "$PID"; PID=

echo "integration serve: $fails failed"
[ "$fails" -eq 0 ]
