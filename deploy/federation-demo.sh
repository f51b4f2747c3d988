#!/usr/bin/env bash
# Three antenna sites on loopback, federated (docs/federation.md): site-a (EU-IT), site-b
# (EU-MD) and site-c (US) pin each other as peers; site-a publishes a `sensitive` dataset that
# may go to EU-IT and EU-MD and grants `transfer` to lab@site-b and lab@site-c; a job at site-b
# pulls it (encrypted on the wire, re-encrypted header only) and reads it decrypted in site-b's
# scratch; a second pull comes from site-b's archive cache; the same request from site-c is
# refused by residency whatever the grant says; both sites' audit trails are shown, joined by
# transfer id, and verified.
#
# For tests: ANTENNA_BIN (a built binary: skips installing and building), FED_DEMO_DIR (the
# folder for the three sites; default ./var-federation, recreated), FED_DEMO_KEEP=1 (leave the
# sites running and write $FED_DEMO_DIR/env with their ports and pids), FED_DEMO_QUIET=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ANTENNA_BIN:-}" ]; then
    deploy/deps.sh
    [ -d build ] || meson setup build --buildtype=release >/dev/null
    ninja -C build >/dev/null
fi
BIN=${ANTENNA_BIN:-$PWD/build/gateway/antenna}
W=${FED_DEMO_DIR:-$PWD/var-federation}
step() { [ -n "${FED_DEMO_QUIET:-}" ] || printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { [ -n "${FED_DEMO_QUIET:-}" ] || printf '%s\n' "$*"; }
run() { [ -n "${FED_DEMO_QUIET:-}" ] || printf '$ %s\n' "$*" | sed "s|$BIN|antenna|g; s|$W/||g" >&2; "$@"; }

rm -rf "$W"
mkdir -p "$W"
declare -A REGION=([a]=EU-IT [b]=EU-MD [c]=US) PORT PID
stop_all() { for s in a b c; do [ -n "${PID[$s]:-}" ] && kill -TERM "${PID[$s]}" 2>/dev/null; done; wait 2>/dev/null || true; }
[ -n "${FED_DEMO_KEEP:-}" ] || trap stop_all EXIT

step "three sites: site-a (EU-IT), site-b (EU-MD), site-c (US)"
for s in a b c; do
    "$BIN" init --dir "$W/$s" --site-id "site-$s" --region "${REGION[$s]}" >"$W/init-$s.out" 2>&1 ||
        { cat "$W/init-$s.out"; exit 1; }
    "$BIN" serve --dir "$W/$s" --listen 127.0.0.1:0 >"$W/$s.out" 2>"$W/$s.log" &
    PID[$s]=$!
done
for s in a b c; do
    for _ in $(seq 100); do grep -q serving "$W/$s.out" 2>/dev/null && break; sleep 0.1; done
    PORT[$s]=$(sed -n 's|.*https://127.0.0.1:\([0-9]*\).*|\1|p' "$W/$s.out")
    [ -n "${PORT[$s]}" ] || { echo "site-$s did not start"; cat "$W/$s.log"; exit 1; }
    say "site-$s  https://127.0.0.1:${PORT[$s]}  ${REGION[$s]}"
done

step "peering: each admin pins the others' keys and certificates"
# site-b pins site-a online (fingerprints shown; --yes stands in for the admin's "y");
# the others pin from files exchanged out of band
run "$BIN" admin --dir "$W/b" peer add --id site-a --url "https://127.0.0.1:${PORT[a]}" \
    --region EU-IT --yes
for x in a b c; do
    for y in a b c; do
        [ "$x" = "$y" ] || { [ "$x" = b ] && [ "$y" = a ]; } && continue
        "$BIN" admin --dir "$W/$x" peer add --id "site-$y" --url "https://127.0.0.1:${PORT[$y]}" \
            --region "${REGION[$y]}" --pubkeys "$W/$y/keys/site.pub" --ca "$W/$y/tls/cert.pem" \
            >/dev/null
    done
done
run "$BIN" admin --dir "$W/a" peer list

step "site-a: a data owner publishes a sensitive dataset (residency EU-IT, EU-MD)"
A="$BIN admin --dir $W/a"
$A tenant add genomics >/dev/null
$A principal add olga --tenant genomics --role owner >/dev/null
export ANTENNA_URL="https://127.0.0.1:${PORT[a]}" ANTENNA_CACERT="$W/a/tls/cert.pem"
ANTENNA_API_KEY=$($A key create --principal olga | awk '/^key /{print $2}')
export ANTENNA_API_KEY
mkdir -p "$W/data/reads"
head -c $((20 * 1024 * 1024 + 123)) /dev/urandom >"$W/data/reads/sample1.bin"
for i in 1 2 3 4 5 6; do head -c $((RANDOM * 4 + i)) /dev/urandom >"$W/data/reads/part$i.bin"; done
printf 'sample\tcohort\nS1\tA\n' >"$W/data/samples.tsv"
run "$BIN" dataset create cohort --classification sensitive --region EU-IT --region EU-MD \
    >"$W/ds.json"
DS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$W/ds.json")
(cd "$W/data" && find . -type f | sed 's|^\./||' | sort) >"$W/files.txt"
while read -r f; do "$BIN" put "$DS" "$W/data/$f" "$f" >/dev/null; done <"$W/files.txt"
run "$BIN" dataset publish "$DS" >/dev/null
run "$BIN" grant create "$DS" --tenant lab@site-b --actions transfer >/dev/null
run "$BIN" grant create "$DS" --tenant lab@site-c --actions transfer >/dev/null
say "dataset $DS: $(wc -l <"$W/files.txt") files, transfer granted to lab@site-b and lab@site-c"

step "site-b: a job of lab member alice stages it, decrypted, into site-b's scratch"
SCRATCH="$W/b/scratch/lab/job-demo"
mkdir -p "$W/b/scratch/lab" "$W/c/scratch/lab"
run "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 --out "$SCRATCH" --connections 4 --range-size 4M |
    tee "$W/pull1.out"
while read -r f; do cmp -s "$W/data/$f" "$SCRATCH/$f" || { echo "MISMATCH $f"; exit 1; }; done <"$W/files.txt"
say "the job reads $(find "$SCRATCH" -type f | wc -l) files; all equal to site-a's originals"
run head -2 "$SCRATCH/samples.tsv"

step "site-b: the same dataset again comes from site-b's archive (kept encrypted once)"
run "$BIN" admin --dir "$W/b" peer pull --peer site-a --dataset "$DS" --principal alice \
    --tenant lab --purpose DUO:0000042 --out "$W/b/scratch/lab/job-demo2" | tee "$W/pull2.out"

step "site-c (US): the same request is refused by residency, whatever the grant says"
if run "$BIN" admin --dir "$W/c" peer pull --peer site-a --dataset "$DS" --principal carol \
    --tenant lab --purpose DUO:0000042 --out "$W/c/scratch/lab/job-demo" 2>"$W/pull-c.err"; then
    echo "site-c was not refused"
    exit 1
fi
[ -n "${FED_DEMO_QUIET:-}" ] || cat "$W/pull-c.err"
grep -q residency "$W/pull-c.err"

step "the audit trails of site-a and site-b, joined by transfer id, and verified"
for s in a b; do
    "$BIN" audit export --dir "$W/$s" -o "$W/audit-$s.ndjson" >/dev/null
    run "$BIN" audit verify --dir "$W/$s"
done
python3 - "$W/audit-a.ndjson" "$W/audit-b.ndjson" "$W/audit-c.ndjson" <<'EOF' >"$W/joined.txt"
import json, sys
def load(p):
    try:
        return [json.loads(l) for l in open(p) if '"event"' in l]
    except FileNotFoundError:
        return []
a, b = load(sys.argv[1]), load(sys.argv[2])
pulls = [e for e in b if e.get("action") == "fed.pull"]
for e in pulls:
    t = e.get("transfer")
    print(f"transfer {t}")
    print(f"  site-b  {e['decision']:5} {e['action']:12} {e.get('resource_id','')} {e.get('reason','')}")
    seen = {}
    for x in a:
        if x.get("transfer") == t:
            k = (x["decision"], x["action"], x.get("resource_id", ""), x.get("reason", ""),
                 x.get("actor", ""))
            seen[k] = seen.get(k, 0) + 1
    for (dec, act, res, why, who), n in seen.items():
        print(f"  site-a  {dec:5} {act:12} {res} {why} actor={who}" + (f" (x{n})" if n > 1 else ""))
EOF
[ -n "${FED_DEMO_QUIET:-}" ] || head -40 "$W/joined.txt"

if [ -n "${FED_DEMO_KEEP:-}" ]; then
    {
        echo "DS=$DS"
        for s in a b c; do echo "PORT_$s=${PORT[$s]}"; echo "PID_$s=${PID[$s]}"; done
    } >"$W/env"
fi
step "done"
