#!/usr/bin/env bash
# Installs what is missing, builds twice (a normal build and one with AddressSanitizer and
# UndefinedBehaviorSanitizer that does not recover), runs every suite in both (the staging
# suites a third time on the thread backend), builds the libFuzzer targets with clang and runs
# each a few seconds, and ends with
# one summary line: "tests: N passed, N failed, N skipped". Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

deploy/deps.sh || { echo "test.sh: installing dependencies failed" >&2; echo "tests: 0 passed, 1 failed"; exit 1; }

JOBS=$(nproc 2>/dev/null || echo 2)
PASS=0; FAIL=0; SKIP=0

count_log() {   # adds the results of one meson test log to the totals
  local log=$1
  [ -f "$log" ] || { FAIL=$((FAIL + 1)); return; }
  read -r p f s < <(python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
)
  PASS=$((PASS + p)); FAIL=$((FAIL + f)); SKIP=$((SKIP + s))
}

run_suite() {   # run_suite NAME BUILDDIR [meson setup options...]
  local name=$1 dir=$2; shift 2
  echo "=== $name: configure and build ($dir)"
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 || meson setup --wipe "$dir" "$@" >"$dir.setup.log" 2>&1
  else
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
  fi
  if [ $? -ne 0 ] || ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    echo "=== $name: BUILD FAILED"; tail -40 "$dir.setup.log" "$dir.build.log" 2>/dev/null
    FAIL=$((FAIL + 1)); return
  fi
  echo "=== $name: test"
  meson test -C "$dir" --num-processes "$JOBS" --print-errorlogs
  count_log "$dir/meson-logs/testlog.json"
  # (the list is read whole first: grep -q stopping at the first match could end meson with
  # SIGPIPE, which pipefail turned into "no staging suites", skipping the pass at random)
  local list
  if ! list=$(meson test -C "$dir" --list 2>&1); then
    echo "=== $name: cannot list the tests: $list"; FAIL=$((FAIL + 1)); return
  fi
  if grep -Eq 'test_(engine|stage|jobs)' <<<"$list"; then
    echo "=== $name: staging suites again with the thread backend"
    ANTENNA_IO_ENGINE=threads meson test -C "$dir" --num-processes "$JOBS" --print-errorlogs \
      --suite staging --logbase threads
    count_log "$dir/meson-logs/threads.json"
  fi
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_suite normal build-test
run_suite sanitize build-test-san -Db_sanitize=address,undefined -Db_lundef=false \
  -Dc_args=-fno-sanitize-recover=all

# The libFuzzer targets (clang, -Dfuzz=true): each must build, and runs a few seconds from its
# seed corpus (in a scratch copy: new inputs are not added to the repository's corpus), with
# tests/fuzz/dict/NAME.dict as libFuzzer's dictionary where there is one.
fuzz_suite() {
  local dir=build-test-fuzz
  command -v clang >/dev/null || { echo "=== fuzz: no clang, skipped"; SKIP=$((SKIP + 1)); return; }
  echo "=== fuzz: configure and build ($dir, clang, libFuzzer)"
  rm -rf "$dir"
  if ! CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
       >"$dir.setup.log" 2>&1 ||
     ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    echo "=== fuzz: BUILD FAILED"; tail -40 "$dir.setup.log" "$dir.build.log" 2>/dev/null
    FAIL=$((FAIL + 1)); return
  fi
  local secs=${ANTENNA_FUZZ_SECONDS:-3} t name work
  for t in "$dir"/tests/fuzz/fuzz_*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=${t##*/fuzz_}
    work=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null
    local dict=()
    [ -f "tests/fuzz/dict/$name.dict" ] && dict=(-dict="tests/fuzz/dict/$name.dict")
    if "$t" -max_total_time="$secs" -rss_limit_mb=2048 "${dict[@]}" "$work" \
         >"$dir/fuzz_$name.log" 2>&1; then
      echo "ok   fuzz_$name ($secs s)"; PASS=$((PASS + 1))
    else
      echo "FAIL fuzz_$name"; tail -30 "$dir/fuzz_$name.log"; FAIL=$((FAIL + 1))
    fi
    rm -rf "$work"
  done
}
fuzz_suite

echo "tests: $PASS passed, $FAIL failed, $SKIP skipped"
[ "$FAIL" -eq 0 ]
