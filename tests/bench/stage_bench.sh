#!/bin/sh
# Staging engine benchmark: for each backend (io_uring, threads), (a) one big Crypt4GH file
# decrypted, (b) the same file re-encrypted (new header, body copied), (c) many 16 KiB files in
# 100 folders decrypted; then cp, cp -r, rsync -a, tar | tar and fio's copy limit on the same
# bytes. Page caches are dropped before every run when permitted; every time includes
# durability (the engine syncs before it publishes; the tools are followed by sync). Rows
# marked -B run the engine with buffered_only (no O_DIRECT), for a before / after in one run.
#
#   tests/bench/stage_bench.sh [BUILD_DIR] [WORK_DIR]
#   STAGE_BENCH_SIZE_MB=4096 STAGE_BENCH_FILES=20000 STAGE_BENCH_ROUNDS=2 (defaults)
#   STAGE_BENCH_PARTS="a b c raw B tools bigtools fio" (default: all) runs only some rows: a, b,
#     c the engine's (a) / (b) / (c), raw its (a') / (c'), B the -B rows, tools cp -r / rsync /
#     tar of the small files, bigtools cp / rsync of the big file, fio the copy limit; apairs N / cpairs N: (a) / (c) with the two backends alternated
#     N times (each pair printed with its ratio), for the threads vs io_uring question;
#     bpairs N: (b) with and without O_DIRECT (-B) alternated N times on the first backend.
#   STAGE_BENCH_BACKENDS="uring threads" (default)
#
# The machine is shared: each row is the best of ROUNDS runs (caches dropped before each).
# The engine runs with stage_bench -D: page, dentry and inode caches are dropped after the
# (untimed) listing of the sources, so the engine meets the sources' metadata as cold as the
# tools do (until 2026-11-27 the listing had left it cached: a head start the tools lacked).
#
# Prints a markdown table on stdout (for docs/benchmarks.md); progress on stderr. Needs root
# for drop_caches (otherwise says so), python3 to write the small files, fio and rsync.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
W=${2:-/var/tmp/antenna-stage-bench}
SIZE_MB=${STAGE_BENCH_SIZE_MB:-4096}
NFILES=${STAGE_BENCH_FILES:-20000}
ROUNDS=${STAGE_BENCH_ROUNDS:-2}
BIN=$BUILD/staging/stage_bench
KEYS=$ROOT/tests/vectors/c4gh/keys
SITE_SEC=$KEYS/recipient1.sec
SITE_PUB=$KEYS/recipient1.pub
PEER_PUB=$KEYS/recipient2.pub

[ -x "$BIN" ] || { echo "no $BIN: build first" >&2; exit 1; }
case "$W" in /tmp/*|/var/tmp/*) ;; *) echo "work dir must be under /tmp or /var/tmp" >&2; exit 1;; esac

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
minf() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
mbps() { python3 -c "import sys; s=float(sys.argv[2]); print('%.0f' % (float(sys.argv[1]) / 1e6 / s) if s > 0 else '-')" "$1" "$2"; }

DROP=yes
dropc() {
    sync
    if ! { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
        DROP=no
    fi
}

PARTS=${STAGE_BENCH_PARTS:-a b c raw B tools bigtools fio}
BACKENDS=${STAGE_BENCH_BACKENDS:-uring threads}
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
# the number after "apairs" / "cpairs" in PARTS
npairs() { printf '%s\n' $PARTS | awk -v k="$1" 'p { print; exit } $0 == k { p = 1 }'; }
NEED_BIG=no
for p in a b raw bigtools fio apairs bpairs; do has $p && NEED_BIG=yes; done

UPTIME0=$(uptime)
rm -rf "$W"
mkdir -p "$W/plain/big" "$W/plain/small" "$W/arch" "$W/out"

# --- inputs ---
log "writing ${SIZE_MB} MiB of random plaintext (when needed: $NEED_BIG) and $NFILES files of 16 KiB in 100 folders"
if [ $NEED_BIG = yes ]; then
    head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$W/plain/big/big.bin"
else
    head -c 65536 /dev/urandom > "$W/plain/big/big.bin"
fi
python3 - "$W/plain/small" "$NFILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
blob = os.urandom(16384 + 4096)
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(blob[i % 4096:i % 4096 + 16384])
EOF
BIG_BYTES=$(stat -c %s "$W/plain/big/big.bin")
SMALL_BYTES=$((NFILES * 16384))

# Encrypt both sets for the site key with the engine itself (also a measurement).
C4GH=yes
XD=decrypt
XR=reencrypt
KEYARGS="-k $SITE_SEC"
dropc
if out=$("$BIN" -x encrypt -p "$SITE_PUB" "$W/plain/big" "$W/arch" big 2>/dev/null); then
    ENC_BIG=$out
    "$BIN" -x encrypt -p "$SITE_PUB" "$W/plain/small" "$W/arch" small > /dev/null
else
    log "Crypt4GH transforms unavailable in this build: raw copies instead"
    C4GH=no
    XD=raw
    XR=raw
    KEYARGS=""
    ENC_BIG=
    cp -r "$W/plain/big" "$W/arch/big"
    cp -r "$W/plain/small" "$W/arch/small"
fi
sync
ARCH_BIG_BYTES=$(stat -c %s "$W/arch/big/big.bin")

ROWS=""
row() { ROWS="$ROWS| $1 | $2 | $3 | $4 | $5 |
"; }

# engine NAME BACKEND XFORM SRC BYTES [extra args]
engine() {
    name=$1 be=$2 x=$3 src=$4 bytes=$5
    shift 5
    all=""
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        rm -rf "$W/out/job"
        dropc
        log "engine: $name ($be, $x) round $((i + 1))"
        # shellcheck disable=SC2086
        json=$("$BIN" -D -e "$be" -x "$x" $KEYARGS "$@" "$src" "$W/out" job)
        all="$all $(printf '%s' "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])")"
        backend=$(printf '%s' "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['backend'])")
        i=$((i + 1))
    done
    # shellcheck disable=SC2086
    s=$(minf $all)
    row "$name" "antenna $backend, $x" "$bytes" "$s" "$(mbps "$bytes" "$s")"
}

# tool NAME WHAT BYTES command...
tool() {
    name=$1 what=$2 bytes=$3
    shift 3
    all=""
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        rm -rf "$W/out/t"
        mkdir -p "$W/out/t"
        dropc
        log "tool: $name ($what) round $((i + 1))"
        t0=$(now)
        "$@"
        sync
        t1=$(now)
        all="$all $(secs "$t0" "$t1")"
        i=$((i + 1))
    done
    # shellcheck disable=SC2086
    s=$(minf $all)
    row "$name" "$what" "$bytes" "$s" "$(mbps "$bytes" "$s")"
}

# one engine run, caches dropped: prints its seconds
once() {
    be=$1 x=$2 src=$3
    shift 3
    rm -rf "$W/out/job"
    dropc
    # shellcheck disable=SC2086
    "$BIN" -D -e "$be" -x "$x" $KEYARGS "$@" "$src" "$W/out" job |
        python3 -c "import json,sys; print(json.load(sys.stdin)['seconds'])"
}

# pairs NAME SRC N: the two backends alternated N times (which goes first alternates too)
PAIRS=""
pairs() {
    name=$1 src=$2 n=$3
    i=0
    while [ $i -lt "$n" ]; do
        if [ $((i % 2)) -eq 0 ]; then
            u=$(once uring "$XD" "$src"); t=$(once threads "$XD" "$src")
        else
            t=$(once threads "$XD" "$src"); u=$(once uring "$XD" "$src")
        fi
        r=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$u" "$t")
        log "pair $((i + 1)) $name: io_uring $u s, threads $t s, threads / io_uring speed $r"
        PAIRS="$PAIRS| $name | $((i + 1)) | $u | $t | $r |
"
        i=$((i + 1))
    done
}

for be in $BACKENDS; do
    has a && engine "(a) ${SIZE_MB} MiB file" "$be" "$XD" "$W/arch/big" "$ARCH_BIG_BYTES"
    # the same without O_DIRECT (before / after in one run)
    has a && has B && engine "(a) ${SIZE_MB} MiB file, page cache only (-B)" "$be" "$XD" \
        "$W/arch/big" "$ARCH_BIG_BYTES" -B
    has b && engine "(b) ${SIZE_MB} MiB file" "$be" "$XR" "$W/arch/big" "$ARCH_BIG_BYTES" \
        -p "$PEER_PUB"
    has b && has B && engine "(b) ${SIZE_MB} MiB file, page cache only (-B)" "$be" "$XR" \
        "$W/arch/big" "$ARCH_BIG_BYTES" -p "$PEER_PUB" -B
    has c && engine "(c) $NFILES x 16 KiB" "$be" "$XD" "$W/arch/small" "$SMALL_BYTES"
    has c && has B && engine "(c) $NFILES x 16 KiB, page cache only (-B)" "$be" "$XD" \
        "$W/arch/small" "$SMALL_BYTES" -B
    has raw && engine "(a') ${SIZE_MB} MiB file" "$be" raw "$W/arch/big" "$ARCH_BIG_BYTES"
    has raw && engine "(c') $NFILES x 16 KiB" "$be" raw "$W/arch/small" "$SMALL_BYTES"
done
# bpairs N: (b) with O_DIRECT output and with -B alternated N times on the first backend
if has bpairs; then
    be=${BACKENDS%% *}
    i=0
    while [ $i -lt "$(npairs bpairs)" ]; do
        if [ $((i % 2)) -eq 0 ]; then
            dd=$(once "$be" "$XR" "$W/arch/big" -p "$PEER_PUB")
            bb=$(once "$be" "$XR" "$W/arch/big" -p "$PEER_PUB" -B)
        else
            bb=$(once "$be" "$XR" "$W/arch/big" -p "$PEER_PUB" -B)
            dd=$(once "$be" "$XR" "$W/arch/big" -p "$PEER_PUB")
        fi
        r=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$bb" "$dd")
        log "pair $((i + 1)) (b) $be: direct $dd s, -B $bb s, speed-up $r"
        BPAIRS="${BPAIRS:-}| (b) $be | $((i + 1)) | $dd | $bb | $r |
"
        i=$((i + 1))
    done
fi
has apairs && pairs "(a) ${SIZE_MB} MiB file" "$W/arch/big" "$(npairs apairs)"
has cpairs && pairs "(c) $NFILES x 16 KiB" "$W/arch/small" "$(npairs cpairs)"

if has bigtools; then
    tool "${SIZE_MB} MiB file" "cp" "$ARCH_BIG_BYTES" cp "$W/arch/big/big.bin" "$W/out/t/"
    tool "${SIZE_MB} MiB file" "rsync -a" "$ARCH_BIG_BYTES" rsync -a "$W/arch/big/" "$W/out/t/"
fi
if has tools; then
    tool "$NFILES x 16 KiB" "cp -r" "$SMALL_BYTES" cp -r "$W/arch/small" "$W/out/t/"
    tool "$NFILES x 16 KiB" "rsync -a" "$SMALL_BYTES" rsync -a "$W/arch/small/" "$W/out/t/"
    tool "$NFILES x 16 KiB" "tar \\| tar" "$SMALL_BYTES" \
        sh -c "tar -C '$W/arch' -cf - small | tar -C '$W/out/t' -xf -"
fi
has fio && tool "${SIZE_MB} MiB file" "fio copy limit (io_uring, 1 MiB, QD 64, read job + write job)" \
    "$ARCH_BIG_BYTES" fio --output=/dev/null --ioengine=io_uring --bs=1M --iodepth=64 \
    --name=rd --rw=read --filename="$W/arch/big/big.bin" --size="${SIZE_MB}M" \
    --name=wr --rw=write --filename="$W/out/t/fio.out" --size="${SIZE_MB}M" --end_fsync=1

echo "| input | what | bytes | seconds | MB/s |"
echo "|---|---|---:|---:|---:|"
printf '%s' "$ROWS"
echo
if [ -n "$PAIRS" ]; then
    echo "| alternated | pair | io_uring s | threads s | threads / io_uring |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s' "$PAIRS"
    echo
fi
if [ -n "${BPAIRS:-}" ]; then
    echo "| alternated | pair | O_DIRECT s | -B s | speed-up |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s' "$BPAIRS"
    echo
fi
echo "- Crypt4GH transforms: $C4GH$([ "$C4GH" = no ] && echo ' (rows marked decrypt/reencrypt ran as raw copies)')"
echo "- page caches dropped before each run: $DROP; best of $ROUNDS runs per row"
[ -n "$ENC_BIG" ] && [ $NEED_BIG = yes ] && echo "- encrypting the input with the engine: $ENC_BIG"
echo "- uptime before: $UPTIME0"
echo "- uptime after: $(uptime)"
echo "- machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), $(findmnt -no FSTYPE,SOURCE -T "$W" | tr -s ' ')"
rm -rf "$W"
