#!/usr/bin/env bash
# Federation pull benchmark (issue 7; not a timed test): site-b pulls from site-a on loopback a
# dataset of one big file and one of many 1 MiB files (`antenna admin peer pull`, into site-b's
# archive, encrypted as it travels), against curl downloading the same bytes (the stored
# Crypt4GH files) from nginx over HTTPS in the same run: one curl for the big file, a
# sequential loop of curl for the many files. Both write to disk. The big file is also staged
# the way users do it, `antenna stage site-a:BIG --decrypt` through site-b's API: the job's pull
# phase (into the archive cache, from the job's start to its last file checked and renamed) and
# the whole job (pull, then decrypted into scratch by the engine, durable) are timed. Ratios
# are against the faster of two curl runs of the big file in the same run.
#   tests/bench/fed_bench.sh BUILD/gateway/antenna
# FED_BENCH_MB (default 2048) and FED_BENCH_FILES (default 2000) size the two datasets;
# FED_BENCH_CONNS (default 8) the puller's connections.
set -euo pipefail
BIN=$(readlink -f "$1")
MB=${FED_BENCH_MB:-2048}
NF=${FED_BENCH_FILES:-2000}
CONNS=${FED_BENCH_CONNS:-8}
command -v nginx >/dev/null || { echo "nginx is needed for the comparison"; exit 77; }
T=$(mktemp -d /tmp/antenna-fedbench-XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -f "$T/nginx.pid" ] && kill -QUIT "$(cat "$T/nginx.pid")" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
now() { date +%s.%N; }
rate() { python3 -c "import sys; b,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{b/t/1e6:8.1f} MB/s  {t:7.2f} s')" "$1" "$2"; }

for s in a:EU-IT b:EU-MD; do
    n=${s%%:*}
    "$BIN" init --dir "$T/$n" --site-id "site-$n" --region "${s#*:}" >/dev/null 2>&1
    ANTENNA_FED_CONNECTIONS=$CONNS \
        "$BIN" serve --dir "$T/$n" --listen 127.0.0.1:0 >"$T/$n.out" 2>"$T/$n.log" &
    PIDS+=($!)
done
for n in a b; do
    for _ in $(seq 100); do grep -q serving "$T/$n.out" 2>/dev/null && break; sleep 0.1; done
done
PA=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\).*|\1|p' "$T/a.out")
PB=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\).*|\1|p' "$T/b.out")
"$BIN" admin --dir "$T/a" peer add --id site-b --url "https://127.0.0.1:$PB" --region EU-MD \
    --pubkeys "$T/b/keys/site.pub" --ca "$T/b/tls/cert.pem" >/dev/null
"$BIN" admin --dir "$T/b" peer add --id site-a --url "https://127.0.0.1:$PA" --region EU-IT \
    --pubkeys "$T/a/keys/site.pub" --ca "$T/a/tls/cert.pem" >/dev/null
A="$BIN admin --dir $T/a"
$A tenant add g >/dev/null
$A principal add o --tenant g --role owner >/dev/null
export ANTENNA_URL=https://127.0.0.1:$PA ANTENNA_CACERT=$T/a/tls/cert.pem
ANTENNA_API_KEY=$($A key create --principal o | awk '/^key /{print $2}')
export ANTENNA_API_KEY
mkds() { "$BIN" dataset create "$1" --classification internal --region EU-MD -o json |
    python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'; }

echo "preparing: one file of $MB MiB and $NF files of 1 MiB (upload, encrypted on arrival)"
BIG=$(mkds big)
head -c $((MB * 1024 * 1024)) /dev/urandom >"$T/big.bin"
"$BIN" put "$BIG" "$T/big.bin" --as big.bin >/dev/null
rm -f "$T/big.bin"
MANY=$(mkds many)
mkdir -p "$T/many"
for i in $(seq 1 "$NF"); do head -c 1048576 /dev/urandom >"$T/many/f$i.bin"; done
(cd "$T/many" && ls) | xargs -P 4 -I{} "$BIN" put "$MANY" "$T/many/{}" --as "{}" >/dev/null
rm -rf "$T/many"
for d in "$BIG" "$MANY"; do
    "$BIN" dataset publish "$d" >/dev/null
    "$BIN" grant create "$d" --site site-b --actions transfer >/dev/null
done

# nginx serves the same stored bytes over HTTPS with the same kind of certificate
mkdir -p "$T/www/big" "$T/www/many" "$T/ngx"
cp "$T/a/archive/$BIG"/*.c4gh "$T/www/big/"
cp "$T/a/archive/$MANY"/*.c4gh "$T/www/many/"
chmod -R a+rX "$T/www"
cp "$T/a/tls/cert.pem" "$T/a/tls/key.pem" "$T/ngx/"
chmod a+r "$T/ngx/"*
PN=$((20000 + RANDOM % 20000))
cat >"$T/nginx.conf" <<EOF
worker_processes 2;
pid $T/nginx.pid;
error_log $T/ngx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx;
  uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  server {
    listen 127.0.0.1:$PN ssl;
    ssl_certificate $T/ngx/cert.pem;
    ssl_certificate_key $T/ngx/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $T/www;
  }
}
EOF
nginx -c "$T/nginx.conf" -p "$T"
sleep 0.5
BIGBYTES=$(stat -c %s "$T"/www/big/*.c4gh)
MANYBYTES=$(cat "$T"/www/many/*.c4gh | wc -c)
sync

echo "single file ($BIGBYTES bytes)"
mkdir -p "$T/curl"
# curl twice, the faster one kept: its time depends on the page cache it writes into (fresh
# pages and the kernel's writeback of its dirty pages cost more on this VM than reused ones);
# the pull writes its copy O_DIRECT and fsyncs it. Then curl into /dev/null: the network and
# TLS alone, a stricter reference than the issue's (no disk at all).
CURL_S=
for i in 1 2 null; do
    out="$T/curl/big"
    [ "$i" = null ] && out=/dev/null
    sync
    t0=$(now)
    curl -s --cacert "$T/ngx/cert.pem" -o "$out" "https://localhost:$PN/big/$(ls "$T/www/big")"
    t1=$(now)
    s=$(echo "$t1 - $t0" | bc)
    echo "  curl from nginx ($i)  $(rate "$BIGBYTES" "$s")"
    rm -f "$T/curl/big"
    if [ "$i" = null ]; then
        NULL_S=$s
    elif [ -z "$CURL_S" ] || [ "$(echo "$s < $CURL_S" | bc)" = 1 ]; then
        CURL_S=$s
    fi
done
ratio() {
    python3 -c "import sys; a,b,t=map(float,sys.argv[1:]); print(f'{a/t:.2f}x the faster curl, {b/t:.2f}x curl to /dev/null')" \
        "$CURL_S" "$NULL_S" "$1"
}
sync
pull() {
    "$BIN" admin --dir "$T/b" peer pull --peer site-a --dataset "$1" --principal bench --tenant g \
        --purpose DUO:0000042 --connections "$CONNS" >"$T/pull.out"
}
t0=$(now)
pull "$BIG"
t1=$(now)
s=$(echo "$t1 - $t0" | bc)
echo "  antenna pull ($CONNS conns) $(rate "$BIGBYTES" "$s")   $(ratio "$s")   $(cat "$T/pull.out")"
rm -f "$T"/b/archive/fed/*.c4gh

# the same file staged by a user of site-b through its API: a remote stage job
B="$BIN admin --dir $T/b"
$B tenant add lab >/dev/null
$B principal add u --tenant lab --role reader >/dev/null
KB=$($B key create --principal u | awk '/^key /{print $2}')
sync
t0=$(now)
ANTENNA_URL=https://127.0.0.1:$PB ANTENNA_CACERT=$T/b/tls/cert.pem ANTENNA_API_KEY=$KB \
    "$BIN" stage "site-a:$BIG" --decrypt --purpose DUO:0000042 --wait >"$T/stage.out" 2>/dev/null
t1=$(now)
JOB=$(sed -n 's/^job: //p' "$T/stage.out")
# the pull phase, from site-b's log: the job moved to running .. the job's pull ended
PULL_S=$(python3 - "$T/b.log" "$JOB" <<'PY'
import json, sys
from datetime import datetime
t = {}
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("job_id") != sys.argv[2]:
        continue
    ts = datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
    if e.get("event") == "jobs.state" and "queued -> running" in e.get("msg", ""):
        t["start"] = ts
    if e.get("event") == "jobs.pulled":
        t["pulled"] = ts
print(f"{t['pulled'] - t['start']:.3f}")
PY
)
echo "  stage job, pull phase $(rate "$BIGBYTES" "$PULL_S")   $(ratio "$PULL_S")"
echo "  stage job, whole job  $(rate "$BIGBYTES" "$(echo "$t1 - $t0" | bc)")   $(ratio "$(echo "$t1 - $t0" | bc)")   (pull, then decrypt into scratch, durable; $(sed -n 's/^state: //p' "$T/stage.out"))"
rm -rf "$T"/b/archive/fed/*.c4gh "$T/b/scratch/lab"

echo "$NF files ($MANYBYTES bytes)"
t0=$(now)
for f in "$T"/www/many/*.c4gh; do
    curl -s --cacert "$T/ngx/cert.pem" -o "$T/curl/$(basename "$f")" "https://localhost:$PN/many/$(basename "$f")"
done
t1=$(now)
echo "  curl loop from nginx $(rate "$MANYBYTES" "$(echo "$t1 - $t0" | bc)")"
rm -rf "$T/curl"
t0=$(now)
pull "$MANY"
t1=$(now)
echo "  antenna pull ($CONNS conns) $(rate "$MANYBYTES" "$(echo "$t1 - $t0" | bc)")   $(cat "$T/pull.out")"
