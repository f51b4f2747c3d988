#!/usr/bin/env bash
# Three antenna sites on loopback, federated (docs/federation.md): site-a (EU-IT), site-b
# (EU-MD) and site-c (US) pin each other as peers; site-a publishes a `sensitive` dataset that
# may go to EU-IT and EU-MD and grants `transfer` to lab@site-b and lab@site-c; lab member
# alice at site-b stages it with `antenna stage site-a:DATASET --decrypt` through site-b's API
# (site-b's job pulls it encrypted on the wire, header re-encrypted only, keeps it once in its
# archive and decrypts it into site-b's scratch with its staging engine) and the "job" reads the
# files; staging it again transfers nothing; the same request from site-c is refused by
# residency whatever the grant says, with the reason shown; both sites' audit trails are shown,
# joined by transfer id, and verified.
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
run "$BIN" dataset create cohort --classification sensitive --region EU-IT --region EU-MD -o json \
    >"$W/ds.json"
DS=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$W/ds.json")
(cd "$W/data" && find . -type f | sed 's|^\./||' | sort) >"$W/files.txt"
while read -r f; do "$BIN" put "$DS" "$W/data/$f" --as "$f" >/dev/null; done <"$W/files.txt"
run "$BIN" dataset publish "$DS" >/dev/null
run "$BIN" grant create "$DS" --tenant lab@site-b --actions transfer >/dev/null
run "$BIN" grant create "$DS" --tenant lab@site-c --actions transfer >/dev/null
say "dataset $DS: $(wc -l <"$W/files.txt") files, transfer granted to lab@site-b and lab@site-c"

step "site-b: lab member alice stages it, decrypted, into site-b's scratch (through the API)"
# alice is a member of tenant lab at site-b: that is all site-b asks of her; whether the data
# may come to site-b is site-a's decision (transfer to lab@site-b, residency, purpose)
for s in b c; do
    "$BIN" admin --dir "$W/$s" tenant add lab >/dev/null
done
"$BIN" admin --dir "$W/b" principal add alice --tenant lab --role reader >/dev/null
"$BIN" admin --dir "$W/c" principal add carol --tenant lab --role reader >/dev/null
KEY_b=$("$BIN" admin --dir "$W/b" key create --principal alice | awk '/^key /{print $2}')
KEY_c=$("$BIN" admin --dir "$W/c" key create --principal carol | awk '/^key /{print $2}')
as_b() { ANTENNA_URL="https://127.0.0.1:${PORT[b]}" ANTENNA_CACERT="$W/b/tls/cert.pem" \
    ANTENNA_API_KEY=$KEY_b "$@"; }
as_c() { ANTENNA_URL="https://127.0.0.1:${PORT[c]}" ANTENNA_CACERT="$W/c/tls/cert.pem" \
    ANTENNA_API_KEY=$KEY_c "$@"; }
as_b run "$BIN" stage "site-a:$DS" --decrypt --purpose DUO:0000042 --wait | tee "$W/stage1.out"
SCRATCH=$(sed -n 's/^scratch: //p' "$W/stage1.out")
JOB1=$(sed -n 's/^job: //p' "$W/stage1.out")
[ -d "$SCRATCH" ] || { echo "no scratch folder in the job's answer"; exit 1; }
while read -r f; do cmp -s "$W/data/$f" "$SCRATCH/$f" || { echo "MISMATCH $f"; exit 1; }; done <"$W/files.txt"
say "the job reads $(find "$SCRATCH" -type f | wc -l) files in $SCRATCH; all equal to site-a's originals"
run head -2 "$SCRATCH/samples.tsv"

step "site-b: staging the same dataset again transfers nothing (site-b's archive keeps it encrypted once)"
as_b run "$BIN" stage "site-a:$DS" --decrypt --purpose DUO:0000042 --wait | tee "$W/stage2.out"
JOB2=$(sed -n 's/^job: //p' "$W/stage2.out")
"$BIN" audit query --dir "$W/b" --action fed.pull -o json >"$W/pulls-b.json"
python3 - "$W/pulls-b.json" "$(sed -n 's/^transfer: //p' "$W/stage2.out")" <<'EOF' | tee "$W/cache.out"
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc if isinstance(doc, list) else doc.get("events", [])
for e in ev:
    if e.get("transfer") == sys.argv[2]:
        d = e.get("detail") or {}
        d = json.loads(d) if isinstance(d, str) else d
        print(f"transfer {sys.argv[2]}: {d.get('files')} files, {d.get('cached')} from the cache, "
              f"{d.get('bytes')} bytes received")
EOF

step "site-c (US): the same request is refused by residency, whatever the grant says"
if as_c run "$BIN" stage "site-a:$DS" --decrypt --purpose DUO:0000042 --wait \
    >"$W/stage-c.out" 2>"$W/pull-c.err"; then
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
transfers = []
for e in b:
    if e.get("action") in ("stage.remote", "fed.pull") and e.get("transfer") not in transfers:
        transfers.append(e.get("transfer"))
for t in transfers:
    print(f"transfer {t}")
    for e in b:
        if e.get("transfer") == t:
            print(f"  site-b  {e['decision']:5} {e['action']:12} {e.get('resource_id','')} "
                  f"{e.get('reason','')} actor={e.get('actor','')}")
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
        echo "KEY_b=$KEY_b"
        echo "KEY_c=$KEY_c"
        echo "JOB1=$JOB1"
        echo "JOB2=$JOB2"
        for s in a b c; do echo "PORT_$s=${PORT[$s]}"; echo "PID_$s=${PID[$s]}"; done
    } >"$W/env"
fi
step "done"
