#!/usr/bin/env bash
# The main job on one machine: installs what is missing, builds, creates a demo site under ./var
# (or reuses it), starts the gateway on https://127.0.0.1:8443, and then, as its users would:
# the tenant `hospital` publishes a small generated sensitive dataset (residency EU) and grants
# the tenant `lab` read and stage for a stated purpose for one day; a lab user is refused before
# the grant, then downloads a file re-encrypted for its own key and decrypts it locally, stages
# the dataset decrypted into scratch, and a "batch job" pulls it with its job token; a
# short-lived stage is purged; an auditor lists the dataset's trail and verifies the chain over
# the API. The gateway then keeps serving in the foreground until Ctrl-C (DEMO_EXIT=1 stops it
# after the walk-through instead).
#
# For tests: ANTENNA_BIN (a built binary: skips installing and building), ANTENNA_DEMO_DIR (the
# site folder instead of ./var), ANTENNA_DEMO_PORT (instead of 8443).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ANTENNA_BIN:-}" ]; then
  deploy/deps.sh
  [ -d build ] || meson setup build --buildtype=release >/dev/null
  ninja -C build >/dev/null
fi
BIN=${ANTENNA_BIN:-$PWD/build/gateway/antenna}
VAR=${ANTENNA_DEMO_DIR:-$PWD/var}
PORT=${ANTENNA_DEMO_PORT:-8443}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$BIN|antenna|"; "$@"; }

if [ ! -f "$VAR/antenna.conf" ]; then
  step "create the site"
  umask 077
  "$BIN" init --dir "$VAR" --site-id demo --region EU-IT --listen "127.0.0.1:$PORT" >"$VAR.init.out"
  grep -E '^ak_' "$VAR.init.out" >"$VAR/admin.key"
  grep -v -E '^ak_' "$VAR.init.out" || true
  rm -f "$VAR.init.out"
  umask 022
  echo "(the first admin's API key was printed once; the demo keeps it in var/admin.key)"
fi

step "start the gateway"
"$BIN" serve --dir "$VAR" >"$VAR/serve.out" 2>"$VAR/serve.log" &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q serving "$VAR/serve.out" 2>/dev/null && break; sleep 0.1; done
if ! grep -q serving "$VAR/serve.out"; then
  echo "the gateway did not start:" >&2
  tail -5 "$VAR/serve.log" >&2
  exit 1
fi
cat "$VAR/serve.out"
export ANTENNA_URL=https://127.0.0.1:$PORT ANTENNA_CACERT=$VAR/tls/cert.pem
run curl -sS --cacert "$VAR/tls/cert.pem" "$ANTENNA_URL/v1/health"

# The tenants are made once per site; principals and datasets get fresh names on every run, so
# the demo can be run again on the same site.
RUN=$(date +%H%M%S)
W=$VAR/demo/$RUN
mkdir -p "$W"
step "the admin creates the tenants hospital and lab (if absent), a data owner, a lab member" \
  "and an auditor (offline admin commands)"
printf '$ antenna admin --dir %s -o json tenant list\n' "$VAR"
"$BIN" admin --dir "$VAR" -o json tenant list >"$W/tenants.json"
has_tenant() {
  python3 -c 'import json,sys; sys.exit(all(t["tenant"] != sys.argv[2]
                                         for t in json.load(open(sys.argv[1]))))' \
    "$W/tenants.json" "$1"
}
for t in hospital lab; do
  if has_tenant "$t"; then
    echo "(tenant $t exists already)"
  else
    run "$BIN" admin --dir "$VAR" tenant add "$t"
  fi
done
run "$BIN" admin --dir "$VAR" principal add "alice-$RUN" --tenant hospital --role owner
run "$BIN" admin --dir "$VAR" principal add "bob-$RUN" --tenant lab --role reader
run "$BIN" admin --dir "$VAR" principal add "audrey-$RUN" --tenant hospital --role auditor
( umask 077
  for p in alice bob audrey; do
    "$BIN" admin --dir "$VAR" -o json key create --principal "$p-$RUN" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' >"$W/$p.key"
  done )
echo "(API keys for alice, bob and audrey are in $W/*.key)"

step "alice (hospital) publishes a small generated sensitive dataset, residency EU" \
  "(encrypted with the site's key on upload)"
head -c 3000000 /dev/urandom >"$W/reads.bam"
printf 'sample\tphenotype\nS1\tcase\nS2\tcontrol\n' >"$W/samples.tsv"
export ANTENNA_API_KEY_FILE=$W/alice.key
printf '$ antenna dataset create cohort-%s --classification sensitive --region EU -o json %s\n' \
  "$RUN" '--duo DUO:0000042 --description "demo cohort"'
DS=$("$BIN" dataset create "cohort-$RUN" --classification sensitive --region EU -o json \
       --duo DUO:0000042 --description "demo cohort" |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "dataset $DS"
run "$BIN" put "$DS" "$W/reads.bam" --as reads/reads.bam >/dev/null
run "$BIN" put "$DS" "$W/samples.tsv" >/dev/null
run "$BIN" dataset files "$DS"
run "$BIN" dataset publish "$DS"

step "bob (lab) cannot see it yet; alice grants the lab read and stage for disease-specific" \
  "research (DUO:0000042) for one day"
ANTENNA_API_KEY_FILE=$W/bob.key run "$BIN" dataset show "$DS" || echo "(refused, as it should be)"
run "$BIN" grant create "$DS" --tenant lab --actions read,stage --purpose DUO:0000042 \
  --expires 1d

step "bob registers his Crypt4GH key and downloads a file encrypted for it (re-encrypted header, same body)"
export ANTENNA_API_KEY_FILE=$W/bob.key
"$BIN" c4gh keygen --sk "$W/bob.sec" --pk "$W/bob.pub" --nocrypt >/dev/null
run "$BIN" pubkey set "bob-$RUN" "$W/bob.pub" >/dev/null
run "$BIN" get "$DS" samples.tsv --purpose DUO:0000042 -o "$W/samples.tsv.c4gh"
run "$BIN" c4gh decrypt --sk "$W/bob.sec" -i "$W/samples.tsv.c4gh" -o "$W/samples.dl.tsv"
run cmp "$W/samples.tsv" "$W/samples.dl.tsv"

step "bob stages it decrypted into this site's scratch, and a batch job pulls it with the job token"
export ANTENNA_API_KEY_FILE=$W/bob.key
"$BIN" stage "$DS" --mode decrypt --purpose DUO:0000042 --wait --json >"$W/job.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("job", j["id"], "->", j.get("scratch_path"))' "$W/job.json"
JOB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$W/job.json")
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$W/job.json" >"$W/job.token"
( unset ANTENNA_API_KEY_FILE
  run "$BIN" pull "$JOB" --token-file "$W/job.token" -o "$W/pulled" )
run cmp "$W/reads.bam" "$W/pulled/reads/reads.bam"
run cmp "$W/samples.tsv" "$W/pulled/samples.tsv"
echo "the pulled files are byte-identical to what alice uploaded"

step "a stage with a 2 s time to live is purged (and the purge audited)"
"$BIN" stage "$DS" --mode decrypt --purpose DUO:0000042 --ttl 2s --wait --json >"$W/short.json"
SHORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$W/short.json")
for _ in $(seq 30); do
  state=$("$BIN" stage status "$SHORT" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = expired ] && break
  sleep 0.5
done
echo "job $SHORT is $state"

step "audrey, the hospital's auditor, lists the dataset's trail and verifies the chain over the API"
export ANTENNA_API_KEY_FILE=$W/audrey.key
run "$BIN" audit query --dataset "$DS"
run "$BIN" audit verify
echo "(the auditor re-hashed the hospital's events and checked the others' hashes; the site admin"
echo " re-hashes every event:)"
unset ANTENNA_API_KEY_FILE
run "$BIN" audit verify --dir "$VAR"

step "the site admin checks the dataset's archive files against the catalog (every segment decrypted)"
run "$BIN" admin --dir "$VAR" archive check --dataset "$DS" --deep

step "done"
echo "The gateway keeps serving on $ANTENNA_URL (Ctrl-C stops it)."
echo "Reach it with: curl --cacert $VAR/tls/cert.pem $ANTENNA_URL/v1/health"
if [ "${DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
wait $SERVE
