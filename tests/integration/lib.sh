# Helpers shared by the integration scripts; each sources it: . "$(dirname "$0")/lib.sh"

# wait_serving OUT: waits (10 s at most) until an `antenna serve` whose standard output goes
# to OUT says it is serving, and prints its URL (https://127.0.0.1:PORT); 1 if it never did.
# Use: URL=$(wait_serving "$T/serve.out") || fail; PORT=${URL##*:}
wait_serving() {
    local _i u
    for _i in $(seq 100); do grep -q serving "$1" 2>/dev/null && break; sleep 0.1; done
    u=$(sed -n 's|.*\(https://[0-9.:]*\).*|\1|p' "$1" | head -n 1)
    [ -n "$u" ] && echo "$u"
}

# new_key BIN SITE PRINCIPAL: prints a new API key of PRINCIPAL (the admin CLI's JSON answer).
new_key() {
    "$1" admin --dir "$2" -o json key create --principal "$3" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# scratch_site NAME: makes T (a new folder under /tmp, removed at exit unless ANT_KEEP_TMP is
# set), kills the daemon whose pid is in PID at exit, and defines fail MESSAGE, which prints
# the last lines of the daemon logs "$T"/serve*.log (request lines left out) and exits 1.
scratch_site() {
    T=$(mktemp -d "/tmp/antenna-$1-XXXXXX")
    PID=
    trap 'cleanup_site' EXIT
}
cleanup_site() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "${ANT_KEEP_TMP:-}" ] || rm -rf "$T"
}
fail() {
    echo "FAIL $*"
    echo "--- last server log lines ---"
    grep -h -v '"http.request"' "$T"/serve*.log 2>/dev/null | tail -25
    exit 1
}

# serve_owner_site SITE_ID: inits "$T/site", serves it on 127.0.0.1:0 (its pid in PID), adds
# the tenant lab with the owner alice, and sets A (the admin command) and exports ANTENNA_URL,
# ANTENNA_CACERT and ANTENNA_API_KEY (alice's key). Fails the test on any error.
serve_owner_site() {
    "$BIN" init --dir "$T/site" --site-id "$1" --region EU >"$T/init.out" 2>&1 ||
        { cat "$T/init.out"; fail init; }
    "$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>>"$T/serve.log" &
    PID=$!
    ANTENNA_URL=$(wait_serving "$T/serve.out") || fail "serve did not start"
    export ANTENNA_URL ANTENNA_CACERT=$T/site/tls/cert.pem
    A="$BIN admin --dir $T/site"
    $A tenant add lab >/dev/null && $A principal add alice --tenant lab --role owner >/dev/null ||
        fail "admin setup"
    ANTENNA_API_KEY=$($A key create --principal alice | awk '/^key /{print $2}')
    export ANTENNA_API_KEY
}

# new_ds NAME: creates the draft dataset NAME (classification internal) as the caller and
# prints its id; its JSON is left in "$T/NAME.json".
new_ds() {
    "$BIN" dataset create "$1" --classification internal -o json >"$T/$1.json" || fail "dataset create"
    python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$T/$1.json"
}
