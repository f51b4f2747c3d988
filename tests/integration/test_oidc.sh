#!/usr/bin/env bash
# OIDC bearer tokens against a real daemon: an issuer registered with `antenna admin oidc add`
# (its JWKS in a file), tokens made here with python3-cryptography (RS256 and ES256), mapped to
# an existing principal; and every token failure refused with the same 401 + WWW-Authenticate:
# expired, not yet valid, wrong issuer, wrong audience, tampered payload, bad signature, alg
# none, HS256 keyed with the public key, a key not in the JWKS, an unknown principal, oversized.
# $1 = the antenna binary. Exit 0 pass, 1 fail, 77 skip.
set -u
BIN=$(realpath "$1")
. "$(dirname "$0")/lib.sh"
python3 -c 'import cryptography' 2>/dev/null || { echo "skip: python3-cryptography missing"; exit 77; }
T=$(mktemp -d /tmp/antenna-oidc-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

"$BIN" init --dir "$T/site" --site-id site-o --region EU >/dev/null 2>&1 || { echo "FAIL init"; exit 1; }
"$BIN" admin --dir "$T/site" tenant add lab >/dev/null
"$BIN" admin --dir "$T/site" principal add carol --tenant lab --role reader >/dev/null

# the identity provider's keys: an RSA and a P-256 key in a JWKS; a stranger's key outside it
python3 - "$T" <<'PY'
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric import rsa, ec
from cryptography.hazmat.primitives import serialization
t = sys.argv[1]
def b64(n, l=None):
    b = n.to_bytes(l or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
r = rsa.generate_private_key(public_exponent=65537, key_size=2048)
e = ec.generate_private_key(ec.SECP256R1())
s = rsa.generate_private_key(public_exponent=65537, key_size=2048)
for name, k in (("rsa", r), ("ec", e), ("stranger", s)):
    open(f"{t}/{name}.pem", "wb").write(k.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
rn = r.public_key().public_numbers(); en = e.public_key().public_numbers()
jwks = {"keys": [
    {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": b64(rn.n), "e": b64(rn.e)},
    {"kty": "EC", "kid": "e1", "use": "sig", "crv": "P-256", "x": b64(en.x, 32), "y": b64(en.y, 32)},
]}
open(f"{t}/site/idp-jwks.json", "w").write(json.dumps(jwks))
PY
"$BIN" admin --dir "$T/site" oidc add --issuer https://idp.example.org --jwks idp-jwks.json \
    --audience antenna-site-o --principal-claim preferred_username --tenant-claim group >/dev/null ||
    { echo "FAIL oidc add"; exit 1; }

"$BIN" serve --dir "$T/site" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.log" &
PID=$!
URL=$(wait_serving "$T/serve.out"); PORT=${URL##*:}
[ -n "$PORT" ] || { echo "FAIL serve"; tail "$T/serve.log"; exit 1; }

python3 - "$T" "$PORT" <<'PY'
import base64, hashlib, hmac, http.client, json, ssl, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, ec, utils
t, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=f"{t}/site/tls/cert.pem")
key = lambda n: serialization.load_pem_private_key(open(f"{t}/{n}.pem", "rb").read(), None)
RSA, EC, STRANGER = key("rsa"), key("ec"), key("stranger")
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
def claims(**kw):
    c = {"iss": "https://idp.example.org", "aud": "antenna-site-o", "sub": "u-123",
         "preferred_username": "carol", "group": "lab", "iat": now, "exp": now + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}
def jwt(c, alg="RS256", kid="r1", k=None, hdr=None):
    h = {"alg": alg, "typ": "JWT", "kid": kid}
    h.update(hdr or {})
    si = (b64(json.dumps(h).encode()) + "." + b64(json.dumps(c).encode())).encode()
    if alg == "RS256":
        sig = (k or RSA).sign(si, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = utils.decode_dss_signature((k or EC).sign(si, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        sig = hmac.new(k, si, hashlib.sha256).digest()
    else:
        sig = b""
    return si.decode() + "." + b64(sig)
def get(token):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request("GET", "/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); body = r.read(); c.close()
    return r.status, r.getheader("WWW-Authenticate"), body
fails = 0
def check(name, ok):
    global fails
    print(("ok   " if ok else "FAIL ") + name)
    fails += 0 if ok else 1
st, _, body = get(jwt(claims()))
check("RS256 token maps to carol@lab: 200", st == 200)
st, _, _ = get(jwt(claims(), alg="ES256", kid="e1"))
check("ES256 token: 200", st == 200)
good = jwt(claims())
h, p, s = good.split(".")
pub_pem = RSA.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
bad = {
    "expired": jwt(claims(exp=now - 600, iat=now - 900)),
    "not yet valid": jwt(claims(nbf=now + 600)),
    "wrong issuer": jwt(claims(iss="https://evil.example.org")),
    "wrong audience": jwt(claims(aud="another-site")),
    "no exp": jwt(claims(exp=None)),
    "tampered payload": h + "." + b64(json.dumps(claims(preferred_username="admin")).encode()) + "." + s,
    "bad signature": h + "." + p + "." + s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"),
    "alg none": jwt(claims(), alg="none"),
    "HS256 keyed with the public key": jwt(claims(), alg="HS256", k=pub_pem),
    "key not in the JWKS": jwt(claims(), k=STRANGER),
    "ES256 header on the RSA key (confusion)": jwt(claims(), alg="ES256", kid="r1"),
    "unknown principal": jwt(claims(preferred_username="mallory")),
    "tenant claim mismatch": jwt(claims(group="other")),
    "oversized": jwt(claims(pad="x" * 9000)),
    "garbage": "not.a.jwt",
}
for name, tok in bad.items():
    st, www, body = get(tok)
    same = b"invalid credentials" in body
    check(f"{name}: 401 + WWW-Authenticate, same message", st == 401 and www and www.startswith("Bearer") and same)
sys.exit(1 if fails else 0)
PY
rc=$?

# key rotation: the identity provider replaces its JWKS (r1 out, r2 in); the daemon reads the
# changed file within about a second, without a restart. A broken replacement keeps the keys.
# Then the issuer is removed with `antenna admin oidc rm` while the daemon runs: its tokens are
# refused within a second or two; added again, they work again.
python3 - "$T" "$PORT" "$BIN" <<'PY' || rc=1
import base64, http.client, json, os, ssl, subprocess, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
t, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=f"{t}/site/tls/cert.pem")
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
R1 = serialization.load_pem_private_key(open(f"{t}/rsa.pem", "rb").read(), None)
R2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
now = int(time.time())
def jwt(k, kid):
    h = {"alg": "RS256", "typ": "JWT", "kid": kid}
    c = {"iss": "https://idp.example.org", "aud": "antenna-site-o", "preferred_username": "carol",
         "group": "lab", "iat": now, "exp": now + 300}
    si = (b64(json.dumps(h).encode()) + "." + b64(json.dumps(c).encode())).encode()
    return si.decode() + "." + b64(k.sign(si, padding.PKCS1v15(), hashes.SHA256()))
def get(token):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request("GET", "/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); r.read(); c.close()
    return r.status
def publish(text):
    tmp = f"{t}/site/idp-jwks.json.tmp"
    open(tmp, "w").write(text)
    os.replace(tmp, f"{t}/site/idp-jwks.json")
def until(token, status):
    for _ in range(60):
        if get(token) == status:
            return True
        time.sleep(0.1)
    return False
fails = 0
def check(name, ok):
    global fails
    print(("ok   " if ok else "FAIL ") + name)
    fails += 0 if ok else 1
old, new = jwt(R1, "r1"), jwt(R2, "r2")
check("before the rotation: r1 200, r2 401", get(old) == 200 and get(new) == 401)
n = R2.public_key().public_numbers()
to_b = lambda v: b64(v.to_bytes((v.bit_length() + 7) // 8, "big"))
publish(json.dumps({"keys": [{"kty": "RSA", "kid": "r2", "alg": "RS256", "n": to_b(n.n),
                              "e": to_b(n.e)}]}))
check("after the rotation: r2 accepted within 6 s", until(new, 200))
# (a token that authenticated before stays in the gateway's one-second cache)
check("after the rotation: r1 refused within 6 s", until(old, 401))
publish("{ this is not a JWKS")
time.sleep(1.3)
check("a broken JWKS keeps the keys: r2 still 200", get(new) == 200 and get(new) == 200)
time.sleep(1.1)
check("... and still after the next check", get(new) == 200 and get(old) == 401)
admin = lambda *a: subprocess.run([sys.argv[3], "admin", "--dir", f"{t}/site", *a],
                                  capture_output=True, text=True)
ISS = "https://idp.example.org"
r = admin("-o", "json", "oidc", "rm", "--issuer", ISS)
check("oidc rm: exit 0, JSON names the issuer",
      r.returncode == 0 and json.loads(r.stdout) == {"issuer": ISS, "state": "removed"})
check("after oidc rm: r2 refused within 6 s, without a restart", until(new, 401))
time.sleep(1.2)
check("... and still refused after the next issuer lookup", get(new) == 401)
r = admin("oidc", "rm", "--issuer", ISS)
check("oidc rm of an issuer not there: exit 1, says so",
      r.returncode == 1 and "no such" in r.stderr)
r = admin("oidc", "rm")
check("oidc rm without --issuer: usage, exit 2", r.returncode == 2)
r = admin("-o", "json", "oidc", "list")
check("oidc list is empty", r.returncode == 0 and json.loads(r.stdout) == [])
# (the file still holds the broken JWKS the issuer's old entry ignored: a new entry reads it)
publish(json.dumps({"keys": [{"kty": "RSA", "kid": "r2", "alg": "RS256", "n": to_b(n.n),
                              "e": to_b(n.e)}]}))
r = admin("oidc", "add", "--issuer", ISS, "--jwks", "idp-jwks.json", "--audience",
          "antenna-site-o", "--principal-claim", "preferred_username", "--tenant-claim", "group")
check("oidc add again: r2 accepted within 6 s", r.returncode == 0 and until(new, 200))
sys.exit(1 if fails else 0)
PY
grep -q '"event":"oidc.jwks_refused"' "$T/serve.log" || { echo "FAIL the refused JWKS is logged"; rc=1; }
grep -q '"event":"oidc.issuer_dropped"' "$T/serve.log" || { echo "FAIL the dropped issuer is logged"; rc=1; }
"$BIN" audit query --dir "$T/site" -o json --limit 1000 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
ev = d["events"] if isinstance(d, dict) else d
rm = [e for e in ev if e.get("action") == "admin.oidc.rm"]
sys.exit(0 if any(e.get("resource_id") == "https://idp.example.org" for e in rm) else 1)' ||
    { echo "FAIL oidc rm is in the audit trail"; rc=1; }
# the request log is buffered (flushed within [log] flush_ms, 250 ms by default): wait for it
found=0
for _ in $(seq 50); do
  grep -q '"principal":"carol@lab"' "$T/serve.log" && { found=1; break; }
  sleep 0.1
done
[ "$found" = 1 ] || { echo "FAIL request log names carol@lab"; rc=1; }
exit $rc
