/* JSON Web Tokens (RFC 7519) in the compact JWS serialization (RFC 7515): EdDSA (Ed25519)
 * signing and verification, RS256 and ES256 verification, keys from a JWKS (RFC 7517).
 *
 * Who uses which: job and federation tokens are EdDSA, signed by a site's Ed25519 key
 * (ant_token_sign_eddsa); OIDC access tokens from an identity provider are RS256 or ES256,
 * checked against the issuer's JWKS.
 *
 * Verification order: size limit, shape (three base64url segments), header (JSON, duplicates
 * and deep nesting refused, alg in the caller's allowlist, typ, no "crit"), key selection by
 * kid with the key type bound to the alg (no algorithm confusion), signature, and only then the
 * payload and its claims. "none" and HS* are never accepted: they cannot be named in the
 * allowlist. Headers that point at keys (jku, x5u, jwk, x5c) are ignored: keys come only
 * from the caller.
 *
 * Threads: a struct ant_jwks is read-only once built; any number of threads may verify with
 * it at once. Building (ant_jwks_add_*) needs exclusive access. */
#ifndef ANT_TOKEN_H
#define ANT_TOKEN_H

#include <jansson.h>

#include "crypto/base/base.h"
#include "crypto/keys.h"

/* A token longer than this is refused (-E2BIG) before anything else is looked at. */
#define ANT_TOKEN_MAX 8192
/* Header and payload JSON may nest at most this deep (the top-level object is depth 1). */
#define ANT_TOKEN_JSON_DEPTH_MAX 8
/* The clock skew a caller may allow is capped here, seconds. */
#define ANT_TOKEN_SKEW_MAX 300
/* A JWKS document larger than this, or with more keys, is refused. */
#define ANT_JWKS_MAX 65536
#define ANT_JWKS_KEYS_MAX 32

/* The algorithms a caller may allow; a bit set. */
enum {
    ANT_TOKEN_EDDSA = 1u << 0, /* "EdDSA", Ed25519 (RFC 8037) */
    ANT_TOKEN_RS256 = 1u << 1, /* RSASSA-PKCS1-v1_5 SHA-256, modulus 2048..8192 bits */
    ANT_TOKEN_ES256 = 1u << 2, /* ECDSA P-256 SHA-256, signature r||s (RFC 7518 §3.4) */
};

/* --- key sets --- */
struct ant_jwks;

ANT_MUST_CHECK int ant_jwks_new(struct ant_jwks **out);
void ant_jwks_free(struct ant_jwks *set); /* accepts NULL */
/* Adds an Ed25519 public key under `kid` (copied; NULL: a key without kid). -E2BIG past
 * ANT_JWKS_KEYS_MAX, -EINVAL for a kid over 256 bytes. */
ANT_MUST_CHECK int ant_jwks_add_ed25519(struct ant_jwks *set, const char *kid,
                                        const uint8_t pk[ANT_KEY_LEN]);
/* Parses a JWKS document ({"keys":[...]}): kty RSA (n, e), EC crv P-256 (x, y), OKP crv
 * Ed25519 (x). Keys with "use" other than "sig", an unknown kty / crv, or an "alg" that is
 * not RS256 / ES256 / EdDSA are skipped; a known key that is malformed (bad base64url, wrong
 * length, point not on the curve, RSA under 2048 bits or a bad exponent, an "alg" of another
 * key type) makes the whole document -EBADMSG, as does JSON that is not an object with a
 * "keys" array (duplicate members, nesting over ANT_TOKEN_JSON_DEPTH_MAX, trailing data).
 * -E2BIG past ANT_JWKS_MAX bytes, ANT_JWKS_KEYS_MAX usable keys or 4 * that many entries.
 * A set with no usable key is -ENOENT; -ENOMEM. diag says which key and why. On success the
 * caller owns *out (ant_jwks_free). */
ANT_MUST_CHECK int ant_jwks_parse(struct ant_bytes doc, struct ant_jwks **out, struct ant_diag *d);
size_t ant_jwks_count(const struct ant_jwks *set);
/* Verifies `sig` over `input` for `alg` (one ANT_TOKEN_* bit) with the key chosen by kid: the
 * key whose kid matches; without a match (or without a kid in the token), the only key of the
 * alg's type. The chosen key's type must fit alg and its "alg" member, if any, must name it.
 * 0, or -EKEYREJECTED (no such key, type mismatch, bad signature). Used by ant_token_verify. */
ANT_MUST_CHECK int ant_jwks_verify(const struct ant_jwks *set, unsigned alg, const char *kid,
                                   struct ant_bytes input, struct ant_bytes sig,
                                   struct ant_diag *d);

/* Base64url without padding (RFC 7515 §2), strict: no '=', no whitespace, zero unused bits.
 * 0, or -EBADMSG (also when the result would exceed max). */
ANT_MUST_CHECK int ant_b64url_decode(struct ant_bytes in, uint8_t *out, size_t max, size_t *outlen);

/* --- verification --- */
struct ant_token_expect {
    unsigned algs;   /* allowlist, ANT_TOKEN_* bits; 0 is -EINVAL */
    const char *iss; /* exact match required; NULL: not checked */
    const char *aud; /* aud (string, or array holding it) must contain it; NULL: not checked */
    const char *typ; /* header typ must equal it (case-insensitive, "application/"
                      * prefix allowed, RFC 7515 §4.1.9); NULL: not checked */
    const char *sub; /* exact match required; NULL: not checked */
    int64_t now;     /* Unix seconds; 0: the current time (< 0, or past the year
                      * 9999: -EINVAL) */
    uint32_t skew_s; /* allowed clock skew for exp, nbf, iat; capped at ANT_TOKEN_SKEW_MAX */
    uint32_t max_lifetime_s; /* if non-zero: iat required and exp - iat <= this */
    bool require_jti;        /* a non-empty string jti must be present */
};

/* Verifies a compact JWS/JWT. exp is always required. On success *claims is the payload
 * object (caller json_decref()s). Errors:
 *   -E2BIG         the token is longer than ANT_TOKEN_MAX;
 *   -EKEYREJECTED  bad format or encoding, duplicate keys, nesting too deep, alg not allowed,
 *                  no key, key/alg mismatch, bad signature, wrong iss / aud / typ / sub,
 *                  missing exp / jti / iat, lifetime too long;
 *   -EKEYEXPIRED   expired, or not yet valid (nbf or iat in the future beyond the skew);
 *   -EINVAL        bad arguments (no alg allowed); -ENOMEM.
 * diag names the failed check; it never contains the token or claim values. */
ANT_MUST_CHECK int ant_token_verify(struct ant_bytes token, const struct ant_jwks *keys,
                                    const struct ant_token_expect *expect, json_t **claims,
                                    struct ant_diag *d);

/* --- signing --- */
/* Appends a compact EdDSA JWS of `claims` (a JSON object; borrowed) to `out`, with a header
 * {"alg":"EdDSA","typ":typ,"kid":kid} (typ and kid may be NULL: left out). The caller sets
 * the claims (iss, aud, exp, ...). out is NUL-terminated (not counted in len). -EINVAL if
 * claims is not an object, -E2BIG if the token would be longer than ANT_TOKEN_MAX or past
 * out's max; on failure out is left as it was. */
ANT_MUST_CHECK int ant_token_sign_eddsa(const struct ant_signkey *k, const char *kid,
                                        json_t *claims, const char *typ, struct ant_buf *out);

/* --- antenna's own tokens and OIDC: the calls the gateway and federation use ---
 * Strings in these structs are NUL-terminated, at most ANT_TOKEN_ID_MAX bytes, never empty
 * after a successful verify. Times are Unix seconds. */
#define ANT_TOKEN_ID_MAX 255
#define ANT_TOKEN_TYP_JOB "antenna-job+jwt"
#define ANT_TOKEN_TYP_FED "antenna-fed+jwt"
/* The only scope a job token carries today: read the job's staged files. */
#define ANT_TOKEN_SCOPE_READ "read"
/* A job token is refused if it lives longer than this (exp - iat), whatever its signer says. */
#define ANT_TOKEN_JOB_LIFETIME_MAX (7 * 86400)
/* Federation tokens live at most 5 minutes (DESIGN.md §4). */
#define ANT_TOKEN_FED_LIFETIME_MAX 300
/* Clock skew the fixed-purpose verifiers allow for exp, nbf and iat. */
#define ANT_TOKEN_SKEW_DEFAULT 60
/* RFC 7638 JWK thumbprint, base64url of SHA-256: 43 characters and a NUL. */
#define ANT_TOKEN_KID_LEN 44

/* The RFC 7638 thumbprint of an Ed25519 public key (as a JWK {"crv","kty":"OKP","x"}): the
 * kid antenna puts in the tokens it signs, so a verifier holding several keys of a peer (key
 * rotation) can pick the right one. */
void ant_token_kid(const uint8_t pk[ANT_KEY_LEN], char out[ANT_TOKEN_KID_LEN]);

/* A job token: lets a batch job read what its stage job staged, signed by this site.
 * Payload {"iss":site,"aud":site,"sub":principal,"job":job_id,"scope":"read","iat","exp"};
 * header {"alg":"EdDSA","typ":"antenna-job+jwt","kid":thumbprint}. */
struct ant_job_token {
    char site[ANT_TOKEN_ID_MAX + 1];      /* iss and aud: the site that signed it */
    char principal[ANT_TOKEN_ID_MAX + 1]; /* sub */
    char job_id[ANT_TOKEN_ID_MAX + 1];    /* "job" */
    char scope[ANT_TOKEN_ID_MAX + 1];     /* "read" */
    int64_t iat, exp;
};

/* Signs a job token for t (site, principal, job_id, exp required; scope "" means "read";
 * iat 0 means now) and appends it to out (NUL-terminated). -EINVAL for a missing or too long
 * field, exp not after iat or a lifetime over ANT_TOKEN_JOB_LIFETIME_MAX; -E2BIG, -ENOMEM as
 * ant_token_sign_eddsa. */
ANT_MUST_CHECK int ant_token_job_sign(const struct ant_signkey *k, const struct ant_job_token *t,
                                      struct ant_buf *out);
/* Verifies a job token with the site's public key: alg EdDSA only, typ antenna-job+jwt,
 * iss = aud = site_id, scope "read", sub and job present, iat required and exp - iat <=
 * ANT_TOKEN_JOB_LIFETIME_MAX, skew ANT_TOKEN_SKEW_DEFAULT. now 0: the current time. Fills
 * *out only on success. Errors as ant_token_verify (-EKEYREJECTED, -EKEYEXPIRED, -E2BIG). */
ANT_MUST_CHECK int ant_token_job_verify(struct ant_bytes token, const uint8_t site_pk[ANT_KEY_LEN],
                                        const char *site_id, int64_t now, struct ant_job_token *out,
                                        struct ant_diag *d);

/* A federation token: site `iss` asks site `aud` on behalf of one of its principals.
 * Payload {"iss","aud","sub":principal,"tenant","purpose","jti","iat","exp"}, header
 * {"alg":"EdDSA","typ":"antenna-fed+jwt","kid":thumbprint}, signed by the asking site. */
struct ant_fed_token {
    char iss[ANT_TOKEN_ID_MAX + 1];       /* the asking site's id */
    char aud[ANT_TOKEN_ID_MAX + 1];       /* the serving site's id */
    char principal[ANT_TOKEN_ID_MAX + 1]; /* sub, e.g. "alice" */
    char tenant[ANT_TOKEN_ID_MAX + 1];    /* "<name>@<iss>", e.g. "lab@site-b" */
    char purpose[ANT_TOKEN_ID_MAX + 1];   /* the stated purpose, checked against data-use terms */
    char jti[ANT_TOKEN_ID_MAX + 1];       /* single-use id; "" when signing: 128 random bits */
    int64_t iat, exp;
};

/* Signs a federation token (iat 0: now; exp 0: iat + ANT_TOKEN_FED_LIFETIME_MAX) and appends
 * it to out. Every string but jti is required, and tenant must be "<name>@<iss>": a site
 * speaks only for its own tenants. -EINVAL for a missing, too long or foreign field or a
 * lifetime outside (0, ANT_TOKEN_FED_LIFETIME_MAX]; -E2BIG, -ENOMEM. */
ANT_MUST_CHECK int ant_token_fed_sign(const struct ant_signkey *k, const struct ant_fed_token *t,
                                      struct ant_buf *out);
/* Verifies a federation token with the asking peer's public key: alg EdDSA only, typ
 * antenna-fed+jwt, iss = peer_id, aud = self_id, sub, tenant ("<name>@<peer_id>"), purpose
 * and jti present, iat required, exp - iat <= ANT_TOKEN_FED_LIFETIME_MAX, skew
 * ANT_TOKEN_SKEW_DEFAULT. sub names the peer's principal, never a local one. The caller then
 * enforces single use: it records (out->iss, out->jti) until out->exp and refuses a pair it
 * has already seen. Errors as ant_token_verify. */
ANT_MUST_CHECK int ant_token_fed_verify(struct ant_bytes token, const uint8_t peer_pk[ANT_KEY_LEN],
                                        const char *peer_id, const char *self_id, int64_t now,
                                        struct ant_fed_token *out, struct ant_diag *d);

/* The "iss" of a token's payload, NOT verified: only to choose which peer's key (or which
 * OIDC issuer's JWKS) to verify it with; never to decide anything else. -E2BIG over
 * ANT_TOKEN_MAX, -EKEYREJECTED if the token is malformed or has no string iss of at most
 * ANT_TOKEN_ID_MAX bytes. */
ANT_MUST_CHECK int ant_token_peek_iss(struct ant_bytes token, char out[ANT_TOKEN_ID_MAX + 1],
                                      struct ant_diag *d);

/* Loads a JWKS file (relative to dirfd, or absolute) with ant_jwks_parse. -errno from
 * open/read, -E2BIG past ANT_JWKS_MAX, else as ant_jwks_parse. */
ANT_MUST_CHECK int ant_jwks_load(int dirfd, const char *path, struct ant_jwks **out,
                                 struct ant_diag *d);

/* Verifies an OIDC bearer JWT from an identity provider: alg RS256 or ES256 only, key from
 * `jwks` (the issuer's), iss exactly `issuer`, aud containing `audience` (both required,
 * else -EINVAL), exp required, skew ANT_TOKEN_SKEW_DEFAULT; typ is not required (IdPs send
 * "JWT", "at+jwt" or none) but antenna's own typs are refused. now 0: the current time.
 * On success *claims is the payload (caller json_decref()s) from which the caller takes the
 * principal and tenant claims its configuration names. Errors as ant_token_verify. */
ANT_MUST_CHECK int ant_token_oidc_verify(struct ant_bytes token, const struct ant_jwks *jwks,
                                         const char *issuer, const char *audience, int64_t now,
                                         json_t **claims, struct ant_diag *d);

#endif
