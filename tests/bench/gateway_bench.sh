#!/usr/bin/env bash
# Gateway benchmark (issue 5): on one machine, in one run, against nginx over HTTPS with the same
# certificate:
#   1. download of a 2 GiB file: antenna (Crypt4GH, header re-encrypted for the caller, body
#      streamed from the archive) vs nginx serving the same stored .c4gh file;
#   2. authenticated small requests (GET /v1/datasets/{id}, API key checked and the decision
#      audited on every request) with wrk at 64 connections vs nginx `return 200`;
#   3. upload throughput (plaintext encrypted on arrival) and the server's memory growth.
# Usage: tests/bench/gateway_bench.sh [BUILD_DIR] (default build). SIZE_MIB=2048 by default.
# SMALL_ONLY=1 skips 1 and 3 (a published dataset of one small file is then shown). The small
# requests run ROUNDS (default 3) rounds of antenna then nginx; the median ratio is printed. For an A/B
# of the small requests in one run: COMPARE=/other/antenna runs ROUNDS (default 3) rounds, each
# the build's server, the other binary's server (on the same site, one after the other) and
# nginx; THREADS_B sets the HTTP workers of B (default THREADS; both default 0: automatic).
# PERF=FILE records the first antenna run's server with `perf record --call-graph dwarf` into
# FILE (the profile costs CPU: that run's rate is not a figure to compare).
# Needs nginx-light and wrk (deploy/deps.sh with ANTENNA_WITH_BENCH=1). Everything on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
BIN=$BUILD/gateway/antenna
SIZE_MIB=${SIZE_MIB:-2048}
DUR=${DUR:-10}
for t in nginx wrk curl python3; do
  command -v $t >/dev/null || { echo "needs $t (ANTENNA_WITH_BENCH=1 deploy/deps.sh)"; exit 77; }
done
T=$(mktemp -d /tmp/antenna-gwbench-XXXXXX)
SPID= NPID=
cleanup() {  # (under set -e: a failed kill must not end the trap before nginx is stopped)
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null || true; fi
  if [ -n "$NPID" ]; then kill "$NPID" 2>/dev/null || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# with COMPARE, the other binary makes the site: its antenna.conf is then one both can read
# when that binary is the older one (a newer binary reads an older file; not the other way)
"${COMPARE:-$BIN}" init --dir "$T/site" --site-id bench --region EU >/dev/null 2>&1
# the rate limit would measure itself, not the gateway
sed -i -e 's/^rate_limit = .*/rate_limit = 0/' -e "s/^threads = .*/threads = ${THREADS:-0}/" "$T/site/antenna.conf"
"$BIN" admin --dir "$T/site" tenant add bench >/dev/null
"$BIN" admin --dir "$T/site" principal add owner --tenant bench --role owner >/dev/null
"$BIN" admin --dir "$T/site" -o json key create --principal owner |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >"$T/owner.key"
KEY=$(cat "$T/owner.key")
# an admin's key, for /metrics: audit group commits and fdatasyncs per run
"$BIN" admin --dir "$T/site" principal add ops --tenant bench --role admin >/dev/null
ADMKEY=$("$BIN" admin --dir "$T/site" -o json key create --principal ops |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
"$BIN" c4gh keygen --sk "$T/me.sec" --pk "$T/me.pub" --nocrypt >/dev/null 2>&1

"$BIN" serve --dir "$T/site" --listen "127.0.0.1:$(freeport)" >"$T/serve.out" 2>"$T/serve.log" &
SPID=$!
for _ in $(seq 100); do grep -q serving "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
AURL=$(sed -n 's|.*\(https://[0-9.:]*\).*|\1|p' "$T/serve.out")
export ANTENNA_URL=$AURL ANTENNA_CACERT=$T/site/tls/cert.pem ANTENNA_API_KEY_FILE=$T/owner.key
rss() { awk '/VmRSS/{print $2}' "/proc/$SPID/status"; }
hwm() { awk '/VmHWM/{print $2}' "/proc/$SPID/status"; }

DS=$("$BIN" dataset create big --classification internal -o json |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "== machine"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores); kernel $(uname -r)"
echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

if [ -n "${SMALL_ONLY:-}" ]; then
  echo '{"hello": "world"}' >"$T/small.json"
  "$BIN" put "$DS" "$T/small.json" --as small.json >/dev/null
  "$BIN" dataset publish "$DS" >/dev/null
  STORED=$(find "$T/site/archive" -name '*.c4gh' | head -1)
else
echo "== upload: $SIZE_MIB MiB of plaintext, encrypted on arrival"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/big.bin"
sync
RSS0=$(rss)
t0=$(date +%s.%N)
"$BIN" put "$DS" "$T/big.bin" --as big.bin >/dev/null
t1=$(date +%s.%N)
RSS1=$(hwm)
python3 - "$t0" "$t1" "$SIZE_MIB" "$RSS0" "$RSS1" <<'PY'
import sys
t0, t1, mib, r0, r1 = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"upload: {mib/(t1-t0):.0f} MiB/s ({t1-t0:.2f} s); server RSS before {r0/1024:.1f} MiB, peak {r1/1024:.1f} MiB (growth {(r1-r0)/1024:.1f} MiB)")
PY
rm -f "$T/big.bin"
"$BIN" dataset publish "$DS" >/dev/null
STORED=$(find "$T/site/archive" -name '*.c4gh' -size +1M | head -1)
fi

# nginx on the same certificate, serving the archive folder and a `return 200`
NPORT=$(freeport)
mkdir -p "$T/nginx"
cat >"$T/nginx/nginx.conf" <<NGX
worker_processes auto;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 1024; }
$( [ "$(id -u)" = 0 ] && echo "user root;" )
http {
  access_log $T/nginx/access.log;
  sendfile on;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server {
    listen 127.0.0.1:$NPORT ssl;
    ssl_certificate $T/site/tls/cert.pem;
    ssl_certificate_key $T/site/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /ok { return 200 "ok\n"; }
    location /archive/ { alias $(dirname "$STORED")/; }
  }
}
NGX
nginx -c "$T/nginx/nginx.conf" -g 'daemon off;' &
NPID=$!
sleep 0.5
NURL=https://127.0.0.1:$NPORT

if [ -z "${SMALL_ONLY:-}" ]; then
echo "== download: the stored $SIZE_MIB MiB file"
PUB=$(python3 - "$T/me.pub" <<'PY'
import sys, urllib.parse
lines = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith("-----")]
print(urllib.parse.quote(lines[0], safe=""))
PY
)
dl() { curl -sS --cacert "$T/site/tls/cert.pem" -o /dev/null -w '%{speed_download} %{size_download}\n' "$@"; }
for i in 1 2 3; do
  a=$(dl -H "Authorization: Bearer $KEY" "$AURL/v1/datasets/$DS/files/big.bin?recipient=$PUB")
  n=$(dl "$NURL/archive/$(basename "$STORED")")
  echo "run $i: antenna $a  nginx $n"
done | python3 -c '
import sys
best_a = best_n = 0
for line in sys.stdin:
    print(line.rstrip())
    f = line.split()
    best_a = max(best_a, float(f[3])); best_n = max(best_n, float(f[6]))
print(f"download best of 3: antenna {best_a/1e6:.0f} MB/s, nginx {best_n/1e6:.0f} MB/s, ratio {best_a/best_n:.2f} (target >= 0.8)")'

fi

echo "== small authenticated requests: wrk, 64 connections, ${DUR}s each"
# the server's CPU time (user + system, clock ticks) over its wrk run: CPU per request
cpu() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
# starts `antenna serve` of binary $1 with $2 HTTP workers on the site (the running one stopped)
serve_with() {
  kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true
  sed -i "s/^threads = .*/threads = $2/" "$T/site/antenna.conf"
  : >"$T/serve.out"
  "$1" serve --dir "$T/site" --listen "127.0.0.1:$(freeport)" >"$T/serve.out" 2>"$T/serve.log" &
  SPID=$!
  for _ in $(seq 100); do grep -q serving "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
  AURL=$(sed -n 's|.*\(https://[0-9.:]*\).*|\1|p' "$T/serve.out")
  [ -n "$AURL" ] || { echo "$1 serve did not start:" >&2; tail -3 "$T/serve.log" >&2; exit 1; }
}
# "busy idle" jiffies of the machine so far (/proc/stat; iowait counts as idle): how much of
# the two cores a run left unused
cpu_idle() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }
# "commits syncs commit_ms sync_ms" of the running server's audit log so far (the durations:
# recent means)
audit_counts() {
  curl -s --cacert "$T/site/tls/cert.pem" -H "Authorization: Bearer $ADMKEY" "$AURL/metrics" |
    awk '/^antenna_audit_commits_total /{c=$2} /^antenna_audit_syncs_total /{s=$2}
         /^antenna_audit_commit_seconds /{cs=$2} /^antenna_audit_sync_seconds /{ss=$2}
         END{printf "%d %d %.3f %.3f\n", c, s, cs * 1000, ss * 1000}'
}
# one wrk run of the running antenna server, labelled $1: "label req/s p99_ms non2xx us/req
# %core requests-per-group-commit requests-per-fdatasync commit_ms fdatasync_ms wrk_us idle%"
small_antenna() {
  local c0 c1 a0 a1 i0 i1
  a0=$(audit_counts)
  c0=$(cpu)
  i0=$(cpu_idle)
  local PP=
  if [ -n "${PERF:-}" ]; then
    perf record -F 499 --call-graph dwarf,16384 -o "$PERF" -p "$SPID" -- sleep "$DUR" 2>/dev/null &
    PP=$!
    PERF=
  fi
  /usr/bin/time -f "%U %S" -o "$T/wrk-a.time" \
    wrk -t2 -c64 -d"${DUR}s" --latency -H "Authorization: Bearer $KEY" "$AURL/v1/datasets/$DS" >"$T/wrk-a.txt"
  c1=$(cpu)
  i1=$(cpu_idle)
  a1=$(audit_counts)
  [ -n "$PP" ] && wait "$PP"
  python3 - "$1" "$T/wrk-a.txt" "$((c1 - c0))" "$(getconf CLK_TCK)" "$DUR" $a0 $a1 "$T/wrk-a.time" \
    $i0 $i1 <<'PY'
import re, sys
s = open(sys.argv[2]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", s).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", s)
p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", s)
ticks, hz, dur = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
commits = max(int(sys.argv[10]) - int(sys.argv[6]), 1)
syncs = max(int(sys.argv[11]) - int(sys.argv[7]), 1)
print(f"{sys.argv[1]} {rate:.0f} {p99:.2f} {int(non2xx.group(1)) if non2xx else 0} "
      f"{ticks / hz * 1e6 / (rate * dur):.0f} {ticks / hz / dur * 100:.0f} "
      f"{rate * dur / commits:.1f} {rate * dur / syncs:.1f} {sys.argv[12]} {sys.argv[13]} "
      f"{sum(map(float, open(sys.argv[14]).read().split()[-2:])) * 1e6 / (rate * dur):.0f} "
      f"{100 * (int(sys.argv[18]) - int(sys.argv[16])) / max(1, int(sys.argv[17]) + int(sys.argv[18]) - int(sys.argv[15]) - int(sys.argv[16])):.0f}")
PY
}
small_nginx() {
  local i0 i1
  i0=$(cpu_idle)
  /usr/bin/time -f "%U %S" -o "$T/wrk-n.time" wrk -t2 -c64 -d"${DUR}s" --latency "$NURL/ok" >"$T/wrk-n.txt"
  i1=$(cpu_idle)
  python3 - "$T/wrk-n.txt" "$T/wrk-n.time" "$DUR" $i0 $i1 <<'PY'
import re, sys
s = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", s).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", s)
p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
wrk_us = sum(map(float, open(sys.argv[2]).read().split()[-2:])) * 1e6 / (rate * float(sys.argv[3]))
b0, d0, b1, d1 = map(int, sys.argv[4:8])
print(f"nginx {rate:.0f} {p99:.2f} 0 - - - - - - {wrk_us:.0f} {100 * (d1 - d0) / max(1, b1 + d1 - b0 - d0):.0f}")
PY
}
{
  if [ -n "${COMPARE:-}" ]; then
    for i in $(seq "${ROUNDS:-3}"); do
      serve_with "$BIN" "${THREADS:-0}"; small_antenna "A"
      serve_with "$COMPARE" "${THREADS_B:-${THREADS:-0}}"; small_antenna "B"
      small_nginx
    done
  else
    for i in $(seq "${ROUNDS:-3}"); do
      small_antenna "antenna"
      small_nginx
    done
  fi
} >"$T/small.txt" # not a pipe: serve_with must run in this shell (the EXIT trap stops SPID)
cat "$T/small.txt"
python3 - "$T/small.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ng = None
for r in rows:
    if r[0] == "nginx":
        ng = float(r[1])
# each antenna row against the nginx row of its round (the next one)
for i, r in enumerate(rows):
    if r[0] == "nginx":
        continue
    n = next(float(x[1]) for x in rows[i:] if x[0] == "nginx")
    print(f"{r[0]:8s} GET /v1/datasets/{{id}}: {float(r[1]):.0f} req/s, p99 {r[2]} ms, non-2xx {r[3]}, "
          f"{r[4]} us CPU per request ({r[5]} % of a core); ratio to nginx {float(r[1])/n:.2f}"
          f" (target >= 0.5, p99 < 10 ms); requests per audit group commit {r[6]}, per fdatasync {r[7]};"
          f" commit {r[8]} ms, fdatasync {r[9]} ms (recent means); wrk {r[10]} us CPU per request;"
          f" cores idle {r[11]} %")
for r in rows:
    if r[0] == "nginx":
        print(f"nginx    return 200: {float(r[1]):.0f} req/s, p99 {r[2]} ms; wrk {r[10]} us CPU per request;"
              f" cores idle {r[11]} %")
# per binary, the median over its rounds (each against the nginx run of its round)
for who in sorted({r[0] for r in rows if r[0] != "nginx"}):
    ratios, p99s = [], []
    for i, r in enumerate(rows):
        if r[0] == who:
            ratios.append(float(r[1]) / next(float(x[1]) for x in rows[i:] if x[0] == "nginx"))
            p99s.append(float(r[2]))
    ratios.sort()
    print(f"{who:8s} median ratio over {len(ratios)} round(s): {ratios[len(ratios) // 2]:.2f}"
          f" (range {ratios[0]:.2f}-{ratios[-1]:.2f}); worst p99 {max(p99s):.2f} ms")
PY
EVENTS=$(sqlite3 "$T/site/audit.db" 'SELECT count(*) FROM events')
echo "audit events written during the run: $EVENTS (each authenticated request is a durable decision)"
