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
