#!/usr/bin/env bash
# antenna c4gh end to end: the reference vectors, round trips through the CLI, re-encryption,
# the wrong-key message, a tampered file leaving no output file, inspect, usage errors, and
# (when python3's crypt4gh module is installed) files read by the reference tool.
# $1 = antenna binary; env ANT_VECTORS = the vectors folder. Exit 0 pass, 1 fail, 77 skip.
set -u
A=${1:?usage: test_c4gh_cli.sh ANTENNA}
V=${ANT_VECTORS:-$(dirname "$0")/../vectors/c4gh}
[ -x "$A" ] || { echo "no antenna binary at $A"; exit 77; }
[ -f "$V/one-byte.c4gh" ] || { echo "no vectors at $V"; exit 77; }
# both may be relative (meson passes gateway/antenna); the script changes folder below
A=$(cd "$(dirname "$A")" && pwd)/$(basename "$A")
HERE=$(cd "$(dirname "$0")" && pwd)
V=$(cd "$V" && pwd)
"$A" c4gh --help >/dev/null 2>&1 || { echo "antenna c4gh not built"; exit 77; }

T=$(mktemp -d /tmp/antenna-c4gh-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
unset C4GH_PASSPHRASE
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

R1=$V/keys/recipient1.sec
R2=$V/keys/recipient2.sec
S=$V/keys/sender.sec

# 0. the repository's copy of the vectors is the workspace's set, byte for byte, where that
# set is beside the checkout (tests/vectors/README.md)
if [ -d "$HERE/../../../shared/c4gh-vectors" ]; then
    check "tests/vectors/c4gh is ../shared/c4gh-vectors" \
        diff -r -q "$HERE/../../../shared/c4gh-vectors" "$HERE/../vectors/c4gh"
fi

# 1. every positive vector, with each key that should open it
dec() { # key file expected [sender_pk]
    local args=(c4gh decrypt --sk "$1")
    [ $# -ge 4 ] && args+=(--sender_pk "$4")
    C4GH_PASSPHRASE=antenna-test "$A" "${args[@]}" <"$V/$2" 2>"$T/err" | cmp -s - "$V/$3"
}
for f in empty one-byte exact-65536 plus1-65537 rand-1MiB-plus17; do
    check "decrypt $f" dec "$R1" $f.c4gh $f.bin "$V/keys/sender.pub"
done
check "two-recipients r1" dec "$R1" two-recipients.c4gh plus1-65537.bin
for k in recipient2.sec recipient2.pbkdf2.sec; do
    check "two-recipients $k" dec "$V/keys/$k" two-recipients.c4gh plus1-65537.bin
done
check "reencrypted r1->r2 sender r1" dec "$R2" reencrypted-r1-to-r2.c4gh plus1-65537.bin \
    "$V/keys/recipient1.pub"
if C4GH_PASSPHRASE=antenna-test "$A" c4gh decrypt --sk "$R2" --sender_pk "$V/keys/sender.pub" \
    <"$V/reencrypted-r1-to-r2.c4gh" >/dev/null 2>"$T/err"; then
    bad "sender check should refuse"
else
    grep -q "not encrypted for the key in .* by the sender" "$T/err" && ok "sender check refuses" ||
        bad "sender check message: $(cat "$T/err")"
fi
check "keep-foreign sender" dec "$S" reencrypted-keep-foreign.c4gh plus1-65537.bin
check "keep-foreign r2" dec "$R2" reencrypted-keep-foreign.c4gh plus1-65537.bin
check "trim sender" dec "$S" reencrypted-trim.c4gh plus1-65537.bin
for e in editlist-range editlist-open-end editlist-multi; do
    check "$e" dec "$R1" $e.c4gh $e.expected.bin
done
cat "$V/reencrypted-header-only-r2.hdr" <(tail -c +125 "$V/plus1-65537.c4gh") >"$T/hdr-only.c4gh"
C4GH_PASSPHRASE=antenna-test "$A" c4gh decrypt --sk "$R2" -i "$T/hdr-only.c4gh" -o "$T/hdr-only.out" &&
    cmp -s "$T/hdr-only.out" "$V/plus1-65537.bin" && ok "header-only vector (-i/-o)" ||
    bad "header-only vector (-i/-o)"

"$A" c4gh decrypt --sk "$R1" -i "$V/one-byte.c4gh" -o /dev/null && [ -c /dev/null ] &&
    ok "-o /dev/null writes the device in place" || bad "-o /dev/null"

# 2. wrong key: plain words, exit 1, no output file
if "$A" c4gh decrypt --sk "$R1" -i "$V/reencrypted-trim.c4gh" -o "$T/wrong.out" 2>"$T/err"; then
    bad "wrong key accepted"
else
    grep -q "this file was not encrypted for the key in $R1" "$T/err" && ok "wrong key message" ||
        bad "wrong key message: $(cat "$T/err")"
    [ ! -e "$T/wrong.out" ] && ok "wrong key: no output file" || bad "wrong key left a file"
fi

# 3. tampered files: exit 1, the segment named, no output file, no temp file left behind
for b in bad-segment-mac bad-empty-last-segment; do
    if "$A" c4gh decrypt --sk "$R1" -i "$V/$b.c4gh" -o "$T/$b.out" 2>"$T/err"; then
        bad "$b accepted"
    else
        grep -q "segment [0-9]" "$T/err" && ok "$b names the segment" || bad "$b: $(cat "$T/err")"
        [ -z "$(ls -A "$T" | grep "$b")" ] && ok "$b: no output file" || bad "$b left $(ls -A "$T")"
    fi
done
for b in bad-header-mac bad-truncated-header bad-magic bad-version; do
    "$A" c4gh decrypt --sk "$R1" -i "$V/$b.c4gh" -o "$T/$b.out" 2>"$T/err" && bad "$b accepted" ||
        ok "$b refused: $(head -c 100 "$T/err")"
    [ ! -e "$T/$b.out" ] || bad "$b left an output file"
done
# to stdout: non-zero exit and the index of the bad segment
"$A" c4gh decrypt --sk "$R1" <"$V/bad-empty-last-segment.c4gh" >/dev/null 2>"$T/err" &&
    bad "stdout decrypt of a bad file succeeded" ||
    { grep -q "segment 1" "$T/err" && ok "stdout decrypt stops at segment 1" || bad "$(cat "$T/err")"; }

# 4. keygen, encrypt, decrypt, reencrypt round trips
cd "$T" || exit 1
"$A" c4gh keygen --sk a.sec --pk a.pub --nocrypt -C alice && ok "keygen nocrypt" || bad "keygen nocrypt"
C4GH_PASSPHRASE=pw "$A" c4gh keygen --sk b.sec --pk b.pub && ok "keygen scrypt" || bad "keygen scrypt"
"$A" c4gh keygen --sk a.sec --pk c.pub --nocrypt 2>/dev/null && bad "keygen overwrote a.sec" ||
    ok "keygen refuses to overwrite"
grep -q "PRIVATE KEY" a.pub b.pub && bad "a public key file holds a private key" || ok "pub files public"
for n in 0 1 65535 65536 65537 196608 1048579; do
    head -c $n /dev/urandom >p$n
    "$A" c4gh encrypt --sk a.sec --recipient_pk b.pub --recipient_pk a.pub <p$n >p$n.c4gh &&
        C4GH_PASSPHRASE=pw "$A" c4gh decrypt --sk b.sec --sender_pk a.pub <p$n.c4gh | cmp -s - p$n &&
        "$A" c4gh decrypt --sk a.sec -i p$n.c4gh -o p$n.out && cmp -s p$n.out p$n &&
        ok "round trip $n bytes" || bad "round trip $n bytes"
done
"$A" c4gh encrypt --recipient_pk a.pub --range 70000-100000 <p196608 >r.c4gh &&
    "$A" c4gh decrypt --sk a.sec <r.c4gh | cmp -s - <(tail -c +70001 p196608 | head -c 30000) &&
    ok "encrypt --range S-E (ephemeral sender)" || bad "encrypt --range S-E"
"$A" c4gh encrypt --recipient_pk a.pub --range 100000- <p196608 >r2.c4gh &&
    "$A" c4gh decrypt --sk a.sec <r2.c4gh | cmp -s - <(tail -c +100001 p196608) &&
    ok "encrypt --range S-" || bad "encrypt --range S-"
body_of() { tail -c +$(($2 + 1)) "$1"; }
"$A" c4gh reencrypt --sk a.sec --recipient_pk "$V/keys/recipient1.pub" --trim <p65537.c4gh >re.c4gh &&
    "$A" c4gh decrypt --sk "$R1" --sender_pk a.pub <re.c4gh | cmp -s - p65537 &&
    cmp -s <(body_of p65537.c4gh 232) <(body_of re.c4gh 124) &&
    ok "reencrypt --trim: body unchanged, new reader" || bad "reencrypt --trim"
"$A" c4gh decrypt --sk a.sec <re.c4gh >/dev/null 2>&1 && bad "trimmed file still opens for a" ||
    ok "trimmed file no longer opens for a"
"$A" c4gh reencrypt --sk a.sec --recipient_pk "$V/keys/recipient1.pub" <p65537.c4gh >rk.c4gh &&
    C4GH_PASSPHRASE=pw "$A" c4gh decrypt --sk b.sec <rk.c4gh | cmp -s - p65537 &&
    ok "reencrypt keeps foreign packets" || bad "reencrypt keeps foreign packets"
"$A" c4gh reencrypt --sk "$R1" --recipient_pk "$V/keys/recipient2.pub" --header-only \
    <"$V/plus1-65537.hdr" >h.hdr && [ "$(stat -c %s h.hdr)" = 124 ] &&
    cat h.hdr <(body_of "$V/plus1-65537.c4gh" 124) |
    C4GH_PASSPHRASE=antenna-test "$A" c4gh decrypt --sk "$R2" | cmp -s - "$V/plus1-65537.bin" &&
    ok "reencrypt --header-only" || bad "reencrypt --header-only"

# 5. inspect: packets listed, the body never needed
head -c 296 "$V/editlist-multi.c4gh" >hdr-only
"$A" c4gh inspect --sk "$R1" -i hdr-only >insp 2>&1 &&
    grep -q "^packet 1: .*readable with this key, type 1 (edit list), edit list of 12 lengths: 85886 10" insp &&
    grep -q "^header: 296 bytes, 2 packets" insp && ok "inspect edit list" || bad "inspect: $(cat insp)"
"$A" c4gh inspect --sk "$S" <"$V/two-recipients.c4gh" >insp 2>&1 &&
    [ "$(grep -c 'not readable with this key' insp)" = 2 ] &&
    grep -q "not encrypted for the key in" insp && ok "inspect foreign packets" || bad "inspect: $(cat insp)"
grep -qi "PRIVATE" insp && bad "inspect printed a private key" || true

# 6. usage errors exit 2
for args in "" "frob" "decrypt" "encrypt" "decrypt --sk" "encrypt --sk a.sec" "inspect" \
    "keygen --sk x" "decrypt --sk a.sec extra" "encrypt --recipient_pk a.pub --range 5-3"; do
    # shellcheck disable=SC2086
    "$A" c4gh $args </dev/null >/dev/null 2>&1
    rc=$?
    [ $rc = 2 ] && ok "usage '$args' -> 2" || bad "usage '$args' -> $rc"
done

# 7. the reference tool, when it is installed (no network here to pip install it)
if python3 -c 'import crypt4gh' 2>/dev/null; then
    python3 -m crypt4gh decrypt --sk a.sec <p1048579.c4gh | cmp -s - p1048579 &&
        ok "reference tool reads our file" || bad "reference tool reads our file"
else
    echo "skip reference-tool direction: python3 crypt4gh not installed"
fi

# 8. an independent reader (python3-cryptography + hashlib, no antenna or reference code) opens
#    files antenna wrote: several recipients, edit lists, 64 KiB-aligned sizes
if python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null; then
    cat >indep.py <<'PY'
import base64, hashlib, struct, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization
def sk_of(path):  # unencrypted c4gh-v1 only
    lines = [l for l in open(path).read().split("\n") if l and not l.startswith("-----")]
    blob = base64.b64decode("".join(lines))
    # "c4gh-v1", kdf "none", cipher "none", then the 32-byte key (FORMAT-NOTES §9)
    assert blob[:7] == b"c4gh-v1" and blob[7:19] == b"\x00\x04none" * 2
    off = 19 + 2
    return blob[off:off + 32]
sk = sk_of(sys.argv[1]); data = open(sys.argv[2], "rb").read()
priv = X25519PrivateKey.from_private_bytes(sk)
pk = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
assert data[:8] == b"crypt4gh" and struct.unpack("<I", data[8:12])[0] == 1
n = struct.unpack("<I", data[12:16])[0]; off = 16; keys = []; edits = None
for _ in range(n):
    plen = struct.unpack("<I", data[off:off + 4])[0]; pkt = data[off:off + plen]; off += plen
    wpk = pkt[8:40]
    dh = priv.exchange(X25519PublicKey.from_public_bytes(wpk))
    k = hashlib.blake2b(dh + pk + wpk, digest_size=64).digest()[:32]
    try:
        pt = ChaCha20Poly1305(k).decrypt(pkt[40:52], pkt[52:], None)
    except Exception:
        continue
    t = struct.unpack("<I", pt[:4])[0]
    if t == 0:
        keys.append(pt[8:40])
    else:
        c = struct.unpack("<I", pt[4:8])[0]
        edits = list(struct.unpack("<%dQ" % c, pt[8:8 + 8 * c]))
assert keys, "no key"
out = b""; body = data[off:]
for i in range(0, len(body), 65564):
    seg = body[i:i + 65564]
    out += ChaCha20Poly1305(keys[0]).decrypt(seg[:12], seg[12:], None)
if edits is not None:
    res = b""; pos = 0
    for j, e in enumerate(edits):
        if j % 2: res += out[pos:pos + e]
        pos += e
    if len(edits) % 2: res += out[pos:]
    out = res
sys.stdout.buffer.write(out)
PY
    ind=0
    for n in 0 1 65536 65537 1048579; do
        python3 indep.py a.sec p$n.c4gh | cmp -s - p$n || { bad "independent reader, $n bytes"; ind=1; }
    done
    python3 indep.py a.sec r.c4gh | cmp -s - <(tail -c +70001 p196608 | head -c 30000) ||
        { bad "independent reader, edit list"; ind=1; }
    [ $ind = 0 ] && ok "independent reader opens antenna's files (recipients, sizes, edit list)"
else
    echo "skip independent-reader direction: python3 cryptography not installed"
fi

echo "$fails failure(s)"
[ $fails = 0 ]
