#!/bin/sh
# Crypt4GH benchmark: (1) c4gh_bench, segment API against raw OpenSSL EVP ChaCha20-Poly1305 on
# 1 thread and all cores; (2) `antenna c4gh decrypt` of a 1 GiB file to /dev/null (warm page
# cache: the file was just written), and `antenna c4gh encrypt` of the same plaintext.
#
#   tests/bench/c4gh_bench.sh [BUILD_DIR] [WORK_DIR]
#   C4GH_BENCH_MB=1024 C4GH_BENCH_SECONDS=2.5 (defaults)
#
# Prints markdown on stdout (for docs/benchmarks.md); progress on stderr.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
W=${2:-/var/tmp/antenna-c4gh-bench}
MB=${C4GH_BENCH_MB:-1024}
SECS=${C4GH_BENCH_SECONDS:-2.5}
A=$BUILD/gateway/antenna
B=$BUILD/tests/bench/c4gh_bench
KEYS=$ROOT/tests/vectors/c4gh/keys

[ -x "$A" ] && [ -x "$B" ] || { echo "no $A or $B: build first" >&2; exit 1; }
case "$W" in /tmp/*|/var/tmp/*) ;; *) echo "work dir must be under /tmp or /var/tmp" >&2; exit 1;; esac
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

now() { date +%s.%N; }
rate() { awk -v mb="$MB" -v t0="$1" -v t1="$2" 'BEGIN { s = t1 - t0; printf "%.2f s, %.2f GB/s", s, mb * 1048576 / s / 1e9 }'; }

echo "### Segment API against raw EVP (c4gh_bench, ${SECS} s per case)"
echo
"$B" "$SECS"
echo

echo "making $MB MiB of plaintext" >&2
head -c $((MB * 1048576)) /dev/urandom >"$W/plain"
t0=$(now)
"$A" c4gh encrypt --sk "$KEYS/sender.sec" --recipient_pk "$KEYS/recipient1.pub" \
    -i "$W/plain" -o "$W/file.c4gh"
t1=$(now)
enc=$(rate "$t0" "$t1")
rm -f "$W/plain"
t0=$(now)
"$A" c4gh decrypt --sk "$KEYS/recipient1.sec" <"$W/file.c4gh" >/dev/null
t1=$(now)
dec=$(rate "$t0" "$t1")
t0=$(now)
cat "$W/file.c4gh" >/dev/null
t1=$(now)
cat_rate=$(rate "$t0" "$t1")

echo "### antenna c4gh on a $MB MiB file (page cache warm, one process)"
echo
echo "| command | time, throughput |"
echo "|---|---|"
echo "| \`antenna c4gh encrypt -i plain -o file.c4gh\` (to a temp file, fsync, rename) | $enc |"
echo "| \`antenna c4gh decrypt < file.c4gh > /dev/null\` | $dec |"
echo "| \`cat file.c4gh > /dev/null\` (reading alone) | $cat_rate |"
