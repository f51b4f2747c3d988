#!/usr/bin/env bash
# The main job (deploy/demo.sh) end to end on a fresh site in a temporary folder: publish,
# grant, stage, pull, purge, audit trail verified. $1 = the antenna binary.
set -u
BIN=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/antenna-demo-XXXXXX)
trap 'rm -rf "$T"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ANTENNA_BIN=$BIN ANTENNA_DEMO_DIR=$T/var ANTENNA_DEMO_PORT=$PORT DEMO_EXIT=1 \
  timeout 240 bash "$ROOT/deploy/demo.sh" >"$T/out" 2>&1
rc=$?
fails=0
check() { local n=$1; shift; if "$@"; then echo "ok   $n"; else echo "FAIL $n"; fails=$((fails+1)); fi; }
check "demo exits 0" test $rc -eq 0
check "pulled files identical" grep -q "byte-identical" "$T/out"
check "short-lived stage purged" grep -q "is expired" "$T/out"
check "audit chain intact" grep -q "intact" "$T/out"
check "purge audited" grep -q "stage.purge" "$T/out"
check "bob refused before the grant" grep -q "refused, as it should be" "$T/out"
check "archive checked" grep -q "^1 dataset(s), 2 file(s), [0-9]* bytes checked (every segment decrypted, both sums compared): 0 problem(s)$" "$T/out"
[ $fails -eq 0 ] || tail -40 "$T/out"
[ $fails -eq 0 ]
