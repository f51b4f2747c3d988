#!/usr/bin/env bash
# The systemd unit must score below 2.0 in `systemd-analyze security --offline`; skipped (77)
# where systemd-analyze is missing or too old for --offline.
set -u
unit=$1
command -v systemd-analyze >/dev/null 2>&1 || { echo "no systemd-analyze"; exit 77; }
out=$(systemd-analyze security --offline=true "$unit" 2>&1) || { echo "$out" | tail -5; exit 77; }
score=$(echo "$out" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' | tail -1)
[ -n "$score" ] || { echo "no score in output"; exit 1; }
echo "exposure score $score"
awk -v s="$score" 'BEGIN { exit !(s < 2.0) }'
