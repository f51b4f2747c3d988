/* Compact JWS / JWT (RFC 7515, RFC 7519): parsing, verification, claims, EdDSA signing. */
#include "crypto/token.h"

#include "crypto/base/json.h"

#include <math.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Year 9999: a NumericDate past it is nonsense and would overflow the skew arithmetic. */
#define NUMERIC_DATE_MAX 253402300799LL
#define KID_MAX 256
#define JTI_MAX 256
#define AUD_MAX 32

static bool is_b64url_char(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* base64url segment -> JSON object: no duplicate member names (a second "alg" or "aud" is a
 * classic parser-differential trick), no trailing data, bounded nesting. */
static int segment_json(struct ant_bytes seg, const char *what, json_t **out, struct ant_diag *d)
{
    uint8_t *buf = malloc(seg.len + 1);
    size_t n = 0;
    json_t *j = NULL;
    struct ant_diag scratch;
    int rc = -EKEYREJECTED;
    if (buf == NULL) {
        return -ENOMEM;
    }
    if (ant_b64url_decode(seg, buf, seg.len + 1, &n) < 0) {
        ant_diag_set(d, "token %s is not base64url", what);
        goto out;
    }
    /* ant_json_parse bounds the nesting before jansson (which recurses) sees it; its diag
     * may quote the text, which must not reach ours. jansson refuses "\u0000" in strings. */
    if (ant_json_parse(ant_bytes_of(buf, n), ANT_TOKEN_MAX, ANT_TOKEN_JSON_DEPTH_MAX, &j,
                       &scratch) < 0) {
        ant_diag_set(d,
                     "token %s is not valid JSON (duplicate members, nesting over %d, "
                     "trailing data)",
                     what, ANT_TOKEN_JSON_DEPTH_MAX);
        goto out;
    }
    if (!json_is_object(j)) {
        ant_diag_set(d, "token %s is not a JSON object", what);
        goto out;
    }
    *out = j;
    j = NULL;
    rc = 0;
out:
    json_decref(j);
    free(buf);
    return rc;
}

static unsigned alg_bit(const char *name)
{
    if (strcmp(name, "EdDSA") == 0) {
        return ANT_TOKEN_EDDSA;
    }
    if (strcmp(name, "RS256") == 0) {
        return ANT_TOKEN_RS256;
    }
    if (strcmp(name, "ES256") == 0) {
        return ANT_TOKEN_ES256;
    }
    return 0; /* "none", HS*, anything else */
}

/* RFC 7515 §4.1.9: typ is compared case-insensitively and may omit "application/". */
static bool typ_matches(const char *got, const char *want)
{
    if (strncasecmp(got, "application/", 12) == 0) {
        got += 12;
    }
    if (strncasecmp(want, "application/", 12) == 0) {
        want += 12;
    }
    return strcasecmp(got, want) == 0;
}

static int check_header(json_t *hdr, const struct ant_token_expect *ex, unsigned *alg,
                        const char **kid, struct ant_diag *d)
{
    const char *name = json_string_value(json_object_get(hdr, "alg"));
    json_t *jkid = json_object_get(hdr, "kid");
    json_t *jtyp = json_object_get(hdr, "typ");
    if (name == NULL) {
        ant_diag_set(d, "token header has no alg");
        return -EKEYREJECTED;
    }
    *alg = alg_bit(name);
    if (*alg == 0 || (ex->algs & *alg) == 0) {
        ant_diag_set(d, "token alg is not allowed here");
        return -EKEYREJECTED;
    }
    /* RFC 7515 §4.1.11: extensions we do not implement must make the token invalid */
    if (json_object_get(hdr, "crit") != NULL) {
        ant_diag_set(d, "token header has crit extensions");
        return -EKEYREJECTED;
    }
    if (jkid != NULL && (!json_is_string(jkid) || json_string_length(jkid) > KID_MAX)) {
        ant_diag_set(d, "token kid is not a short string");
        return -EKEYREJECTED;
    }
    if (jtyp != NULL && !json_is_string(jtyp)) {
        ant_diag_set(d, "token typ is not a string");
        return -EKEYREJECTED;
    }
    if (ex->typ != NULL && (jtyp == NULL || !typ_matches(json_string_value(jtyp), ex->typ))) {
        ant_diag_set(d, "token typ is not the expected one");
        return -EKEYREJECTED;
    }
    *kid = json_string_value(jkid);
    return 0;
}

/* A NumericDate (RFC 7519 §2): a JSON number of seconds; fractions are truncated. */
static int numeric_date(json_t *claims, const char *name, bool *present, int64_t *v,
                        struct ant_diag *d)
{
    json_t *j = json_object_get(claims, name);
    *present = j != NULL;
    if (j == NULL) {
        return 0;
    }
    if (json_is_integer(j)) {
        json_int_t i = json_integer_value(j);
        if (i >= 0 && i <= NUMERIC_DATE_MAX) {
            *v = (int64_t)i;
            return 0;
        }
    } else if (json_is_real(j)) {
        double r = json_real_value(j);
        if (isfinite(r) && r >= 0 && r <= (double)NUMERIC_DATE_MAX) {
            *v = (int64_t)r;
            return 0;
        }
    }
    ant_diag_set(d, "token claim %s is not a valid date", name);
    return -EKEYREJECTED;
}

static bool string_claim_is(json_t *claims, const char *name, const char *want)
{
    const char *v = json_string_value(json_object_get(claims, name));
    return v != NULL && strlen(v) == json_string_length(json_object_get(claims, name)) &&
           strcmp(v, want) == 0;
}

static bool aud_contains(json_t *aud, const char *want)
{
    if (json_is_string(aud)) {
        return json_string_length(aud) == strlen(want) && strcmp(json_string_value(aud), want) == 0;
    }
    if (!json_is_array(aud) || json_array_size(aud) > AUD_MAX) {
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach (aud, i, v) {
        if (json_is_string(v) && json_string_length(v) == strlen(want) &&
            strcmp(json_string_value(v), want) == 0) {
            return true;
        }
    }
    return false;
}

static int check_claims(json_t *c, const struct ant_token_expect *ex, struct ant_diag *d)
{
    int64_t now = ex->now != 0 ? ex->now : ant_now_unix();
    int64_t skew = ex->skew_s > ANT_TOKEN_SKEW_MAX ? ANT_TOKEN_SKEW_MAX : ex->skew_s;
    int64_t exp = 0, nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat;
    int rc;
    if ((rc = numeric_date(c, "exp", &has_exp, &exp, d)) < 0 ||
        (rc = numeric_date(c, "nbf", &has_nbf, &nbf, d)) < 0 ||
        (rc = numeric_date(c, "iat", &has_iat, &iat, d)) < 0) {
        return rc;
    }
    static const char *const strings[] = {"iss", "sub", "jti"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(strings); i++) {
        json_t *v = json_object_get(c, strings[i]);
        if (v != NULL && !json_is_string(v)) {
            ant_diag_set(d, "token claim %s is not a string", strings[i]);
            return -EKEYREJECTED;
        }
    }
    if (ex->iss != NULL && !string_claim_is(c, "iss", ex->iss)) {
        ant_diag_set(d, "token iss is not the expected issuer");
        return -EKEYREJECTED;
    }
    if (ex->aud != NULL && !aud_contains(json_object_get(c, "aud"), ex->aud)) {
        ant_diag_set(d, "token aud does not name this audience");
        return -EKEYREJECTED;
    }
    if (ex->sub != NULL && !string_claim_is(c, "sub", ex->sub)) {
        ant_diag_set(d, "token sub is not the expected subject");
        return -EKEYREJECTED;
    }
    if (ex->require_jti) {
        json_t *jti = json_object_get(c, "jti");
        if (jti == NULL || json_string_length(jti) == 0 || json_string_length(jti) > JTI_MAX) {
            ant_diag_set(d, "token has no jti");
            return -EKEYREJECTED;
        }
    }
    if (!has_exp) {
        ant_diag_set(d, "token has no exp");
        return -EKEYREJECTED;
    }
    if (ex->max_lifetime_s != 0) {
        if (!has_iat) {
            ant_diag_set(d, "token has no iat");
            return -EKEYREJECTED;
        }
        if (exp < iat || exp - iat > (int64_t)ex->max_lifetime_s) {
            ant_diag_set(d, "token lifetime exceeds %u s", ex->max_lifetime_s);
            return -EKEYREJECTED;
        }
    }
    /* RFC 7519 §4.1.4: the current time must be before exp */
    if (now >= exp + skew) {
        ant_diag_set(d, "token expired");
        return -EKEYEXPIRED;
    }
    if (has_nbf && now + skew < nbf) {
        ant_diag_set(d, "token not valid yet (nbf)");
        return -EKEYEXPIRED;
    }
    if (has_iat && now + skew < iat) {
        ant_diag_set(d, "token issued in the future (iat)");
        return -EKEYEXPIRED;
    }
    return 0;
}

struct segments {
    struct ant_bytes h64, p64, s64;
    struct ant_bytes input; /* header.payload: what the signature covers */
};

/* Shape first: exactly header.payload.signature, base64url only, none empty (an empty
 * signature is the "none" algorithm's). JWE (five parts) and JWS JSON are not accepted. */
static int split_token(struct ant_bytes token, struct segments *sg, struct ant_diag *d)
{
    size_t dots[2] = {0, 0}, ndots = 0;
    if (token.len > ANT_TOKEN_MAX) {
        ant_diag_set(d, "token longer than %d bytes", ANT_TOKEN_MAX);
        return -E2BIG;
    }
    for (size_t i = 0; i < token.len; i++) {
        if (token.p[i] == '.') {
            if (ndots == 2) {
                ndots = 3;
                break;
            }
            dots[ndots++] = i;
        } else if (!is_b64url_char(token.p[i])) {
            ndots = 3;
            break;
        }
    }
    if (ndots != 2 || dots[0] == 0 || dots[1] == dots[0] + 1 || dots[1] + 1 == token.len) {
        ant_diag_set(d, "token is not three base64url segments");
        return -EKEYREJECTED;
    }
    sg->h64 = ant_bytes_of(token.p, dots[0]);
    sg->p64 = ant_bytes_of(token.p + dots[0] + 1, dots[1] - dots[0] - 1);
    sg->s64 = ant_bytes_of(token.p + dots[1] + 1, token.len - dots[1] - 1);
    sg->input = ant_bytes_of(token.p, dots[1]);
    return 0;
}

static int verify_impl(struct ant_bytes token, const struct ant_jwks *keys,
                       const struct ant_token_expect *expect, bool refuse_antenna_typ,
                       json_t **claims, struct ant_diag *d)
{
    json_t *hdr = NULL, *payload = NULL;
    uint8_t sig[1024]; /* RSA 8192 bits at most */
    size_t siglen = 0;
    struct segments sg;
    const char *kid = NULL;
    unsigned alg = 0;
    int rc;
    /* now is bounded so that now + skew cannot overflow */
    if (keys == NULL || expect == NULL || claims == NULL || expect->algs == 0 ||
        (expect->algs & ~(unsigned)(ANT_TOKEN_EDDSA | ANT_TOKEN_RS256 | ANT_TOKEN_ES256)) != 0 ||
        expect->now < 0 || expect->now > NUMERIC_DATE_MAX) {
        return -EINVAL;
    }
    rc = split_token(token, &sg, d);
    if (rc < 0) {
        goto out;
    }
    rc = segment_json(sg.h64, "header", &hdr, d);
    if (rc < 0) {
        goto out;
    }
    rc = check_header(hdr, expect, &alg, &kid, d);
    if (rc < 0) {
        goto out;
    }
    /* A token antenna signed for itself or a peer is never an identity provider's token,
     * even if some key would verify it (cross-JWT confusion). */
    if (refuse_antenna_typ) {
        const char *typ = json_string_value(json_object_get(hdr, "typ"));
        if (typ != NULL &&
            (typ_matches(typ, ANT_TOKEN_TYP_JOB) || typ_matches(typ, ANT_TOKEN_TYP_FED))) {
            ant_diag_set(d, "an antenna token is not an OIDC token");
            rc = -EKEYREJECTED;
            goto out;
        }
    }
    if (ant_b64url_decode(sg.s64, sig, sizeof(sig), &siglen) < 0) {
        ant_diag_set(d, "token signature is not base64url");
        rc = -EKEYREJECTED;
        goto out;
    }
    rc = ant_jwks_verify(keys, alg, kid, sg.input, ant_bytes_of(sig, siglen), d);
    if (rc < 0) {
        goto out;
    }
    /* Only a verified payload is parsed. */
    rc = segment_json(sg.p64, "payload", &payload, d);
    if (rc < 0) {
        goto out;
    }
    rc = check_claims(payload, expect, d);
    if (rc < 0) {
        goto out;
    }
    *claims = payload;
    payload = NULL;
out:
    json_decref(hdr);
    json_decref(payload);
    return rc;
}

int ant_token_verify(struct ant_bytes token, const struct ant_jwks *keys,
                     const struct ant_token_expect *expect, json_t **claims, struct ant_diag *d)
{
    return verify_impl(token, keys, expect, false, claims, d);
}

static int append_b64url(struct ant_buf *out, const void *p, size_t n)
{
    size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int rc = ant_buf_reserve(out, need);
    if (rc < 0) {
        return rc;
    }
    sodium_bin2base64((char *)out->p + out->len, need, p, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out->len += need - 1; /* without the NUL */
    return 0;
}

int ant_token_sign_eddsa(const struct ant_signkey *k, const char *kid, json_t *claims,
                         const char *typ, struct ant_buf *out)
{
    json_t *hdr = NULL;
    char *hs = NULL, *ps = NULL;
    uint8_t sig[ANT_SIG_LEN];
    size_t start = out != NULL ? out->len : 0;
    int rc;
    if (k == NULL || out == NULL || !json_is_object(claims) ||
        (kid != NULL && strlen(kid) > KID_MAX)) {
        return -EINVAL;
    }
    hdr = json_object();
    if (hdr == NULL || json_object_set_new(hdr, "alg", json_string("EdDSA")) != 0 ||
        (typ != NULL && json_object_set_new(hdr, "typ", json_string(typ)) != 0) ||
        (kid != NULL && json_object_set_new(hdr, "kid", json_string(kid)) != 0)) {
        rc = -ENOMEM;
        goto out;
    }
    hs = json_dumps(hdr, JSON_COMPACT);
    ps = json_dumps(claims, JSON_COMPACT);
    if (hs == NULL || ps == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    size_t hl = strlen(hs), pl = strlen(ps);
    size_t total = (hl + 2) / 3 * 4 + (pl + 2) / 3 * 4 + 2 + 86; /* upper bound */
    if (total > ANT_TOKEN_MAX + 8) {
        rc = -E2BIG;
        goto out;
    }
    if ((rc = append_b64url(out, hs, hl)) < 0 || (rc = ant_buf_append(out, ".", 1)) < 0 ||
        (rc = append_b64url(out, ps, pl)) < 0) {
        goto out;
    }
    rc = ant_signkey_sign(k, ant_bytes_of(out->p + start, out->len - start), sig);
    if (rc < 0) {
        goto out;
    }
    if ((rc = ant_buf_append(out, ".", 1)) < 0 || (rc = append_b64url(out, sig, sizeof(sig))) < 0) {
        goto out;
    }
    if (out->len - start > ANT_TOKEN_MAX) {
        rc = -E2BIG; /* we would not accept it ourselves */
        goto out;
    }
    rc = ant_buf_terminate(out);
out:
    if (rc < 0 && out != NULL) {
        out->len = start;
    }
    json_decref(hdr);
    free(hs);
    free(ps);
    return rc;
}

void ant_token_kid(const uint8_t pk[ANT_KEY_LEN], char out[ANT_TOKEN_KID_LEN])
{
    /* RFC 7638 §3.2: the required members in lexical order, no whitespace. */
    char x[sodium_base64_ENCODED_LEN(ANT_KEY_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    char jwk[128];
    uint8_t digest[32];
    unsigned int dlen = 0;
    sodium_bin2base64(x, sizeof(x), pk, ANT_KEY_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int n = snprintf(jwk, sizeof(jwk), "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    if (n < 0 || (size_t)n >= sizeof(jwk) ||
        EVP_Digest(jwk, (size_t)n, digest, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != sizeof(digest)) {
        out[0] = '\0'; /* cannot happen with a 32-byte key; an empty kid selects no key */
        return;
    }
    sodium_bin2base64(out, ANT_TOKEN_KID_LEN, digest, sizeof(digest),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* A non-empty NUL-free string of at most ANT_TOKEN_ID_MAX bytes. */
static bool id_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && strnlen(s, ANT_TOKEN_ID_MAX + 1) <= ANT_TOKEN_ID_MAX;
}

/* Copies a verified string claim that must be present, non-empty and short. */
static int claim_id(json_t *claims, const char *name, char dst[ANT_TOKEN_ID_MAX + 1],
                    struct ant_diag *d)
{
    json_t *v = json_object_get(claims, name);
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n == 0 || n > ANT_TOKEN_ID_MAX) {
        ant_diag_set(d, "token claim %s is missing, empty or longer than %d bytes", name,
                     ANT_TOKEN_ID_MAX);
        return -EKEYREJECTED;
    }
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

/* A date claim check_claims has already validated. */
static int64_t claim_date(json_t *claims, const char *name)
{
    json_t *v = json_object_get(claims, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v)
           : json_is_real(v)  ? (int64_t)json_real_value(v)
                              : 0;
}

/* Signs claims with k, under the thumbprint of k's public key as kid. Takes claims. */
static int sign_own(const struct ant_signkey *k, json_t *claims, const char *typ,
                    struct ant_buf *out)
{
    char kid[ANT_TOKEN_KID_LEN];
    int rc;
    if (claims == NULL) {
        return -EINVAL; /* json_pack: a string that is not UTF-8 */
    }
    ant_token_kid(ant_signkey_public(k), kid);
    rc = ant_token_sign_eddsa(k, kid, claims, typ, out);
    json_decref(claims);
    return rc;
}

/* A one-key set for the fixed-purpose verifiers. */
static int single_key_set(const uint8_t pk[ANT_KEY_LEN], struct ant_jwks **out)
{
    struct ant_jwks *set = NULL;
    int rc = ant_jwks_new(&set);
    if (rc == 0) {
        rc = ant_jwks_add_ed25519(set, NULL, pk);
    }
    if (rc < 0) {
        ant_jwks_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

int ant_token_job_sign(const struct ant_signkey *k, const struct ant_job_token *t,
                       struct ant_buf *out)
{
    if (k == NULL || t == NULL || out == NULL || !id_ok(t->site) || !id_ok(t->principal) ||
        !id_ok(t->job_id) || (t->scope[0] != '\0' && !id_ok(t->scope))) {
        return -EINVAL;
    }
    int64_t iat = t->iat != 0 ? t->iat : ant_now_unix();
    if (iat < 0 || t->exp <= iat || t->exp - iat > ANT_TOKEN_JOB_LIFETIME_MAX) {
        return -EINVAL;
    }
    const char *scope = t->scope[0] != '\0' ? t->scope : ANT_TOKEN_SCOPE_READ;
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss", t->site, "aud", t->site,
                          "sub", t->principal, "job", t->job_id, "scope", scope, "iat",
                          (json_int_t)iat, "exp", (json_int_t)t->exp);
    return sign_own(k, c, ANT_TOKEN_TYP_JOB, out);
}

int ant_token_job_verify(struct ant_bytes token, const uint8_t site_pk[ANT_KEY_LEN],
                         const char *site_id, int64_t now, struct ant_job_token *out,
                         struct ant_diag *d)
{
    struct ant_jwks *set = NULL;
    json_t *c = NULL;
    struct ant_job_token t;
    int rc;
    if (site_pk == NULL || !id_ok(site_id) || out == NULL) {
        return -EINVAL;
    }
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_EDDSA,
        .iss = site_id,
        .aud = site_id,
        .typ = ANT_TOKEN_TYP_JOB,
        .now = now,
        .skew_s = ANT_TOKEN_SKEW_DEFAULT,
        .max_lifetime_s = ANT_TOKEN_JOB_LIFETIME_MAX,
    };
    memset(&t, 0, sizeof(t));
    rc = single_key_set(site_pk, &set);
    if (rc < 0) {
        goto out;
    }
    rc = ant_token_verify(token, set, &ex, &c, d);
    if (rc < 0) {
        goto out;
    }
    if ((rc = claim_id(c, "iss", t.site, d)) < 0 || (rc = claim_id(c, "sub", t.principal, d)) < 0 ||
        (rc = claim_id(c, "job", t.job_id, d)) < 0 || (rc = claim_id(c, "scope", t.scope, d)) < 0) {
        goto out;
    }
    if (strcmp(t.scope, ANT_TOKEN_SCOPE_READ) != 0) {
        ant_diag_set(d, "job token scope is not \"%s\"", ANT_TOKEN_SCOPE_READ);
        rc = -EKEYREJECTED;
        goto out;
    }
    t.iat = claim_date(c, "iat");
    t.exp = claim_date(c, "exp");
    *out = t;
out:
    json_decref(c);
    ant_jwks_free(set);
    return rc;
}

/* A federation token speaks for the asking site's own tenants only: "lab@site-b" from
 * site-b. Otherwise site-b could name a tenant of the serving site, or of a third site. */
static bool tenant_is_of(const char *tenant, const char *site)
{
    size_t tl = strlen(tenant), sl = strlen(site);
    return tl > sl + 1 && tenant[tl - sl - 1] == '@' && strcmp(tenant + tl - sl, site) == 0;
}

int ant_token_fed_sign(const struct ant_signkey *k, const struct ant_fed_token *t,
                       struct ant_buf *out)
{
    char jti[ANT_TOKEN_ID_MAX + 1];
    uint8_t rnd[16];
    if (k == NULL || t == NULL || out == NULL || !id_ok(t->iss) || !id_ok(t->aud) ||
        !id_ok(t->principal) || !id_ok(t->tenant) || !id_ok(t->purpose) ||
        (t->jti[0] != '\0' && !id_ok(t->jti)) || !tenant_is_of(t->tenant, t->iss)) {
        return -EINVAL;
    }
    int64_t iat = t->iat != 0 ? t->iat : ant_now_unix();
    int64_t exp = t->exp != 0 ? t->exp : iat + ANT_TOKEN_FED_LIFETIME_MAX;
    if (iat < 0 || exp <= iat || exp - iat > ANT_TOKEN_FED_LIFETIME_MAX) {
        return -EINVAL;
    }
    if (t->jti[0] != '\0') {
        memcpy(jti, t->jti, strlen(t->jti) + 1);
    } else {
        if (sodium_init() < 0) {
            return -ENOMEM;
        }
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2base64(jti, sizeof(jti), rnd, sizeof(rnd),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    }
    json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss", t->iss, "aud", t->aud,
                          "sub", t->principal, "tenant", t->tenant, "purpose", t->purpose, "jti",
                          jti, "iat", (json_int_t)iat, "exp", (json_int_t)exp);
    return sign_own(k, c, ANT_TOKEN_TYP_FED, out);
}

int ant_token_fed_verify(struct ant_bytes token, const uint8_t peer_pk[ANT_KEY_LEN],
                         const char *peer_id, const char *self_id, int64_t now,
                         struct ant_fed_token *out, struct ant_diag *d)
{
    struct ant_jwks *set = NULL;
    json_t *c = NULL;
    struct ant_fed_token t;
    int rc;
    if (peer_pk == NULL || !id_ok(peer_id) || !id_ok(self_id) || out == NULL) {
        return -EINVAL;
    }
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_EDDSA,
        .iss = peer_id,
        .aud = self_id,
        .typ = ANT_TOKEN_TYP_FED,
        .now = now,
        .skew_s = ANT_TOKEN_SKEW_DEFAULT,
        .max_lifetime_s = ANT_TOKEN_FED_LIFETIME_MAX,
        .require_jti = true,
    };
    memset(&t, 0, sizeof(t));
    rc = single_key_set(peer_pk, &set);
    if (rc < 0) {
        goto out;
    }
    rc = ant_token_verify(token, set, &ex, &c, d);
    if (rc < 0) {
        goto out;
    }
    if ((rc = claim_id(c, "iss", t.iss, d)) < 0 || (rc = claim_id(c, "sub", t.principal, d)) < 0 ||
        (rc = claim_id(c, "tenant", t.tenant, d)) < 0 ||
        (rc = claim_id(c, "purpose", t.purpose, d)) < 0 ||
        (rc = claim_id(c, "jti", t.jti, d)) < 0) {
        goto out;
    }
    if (!tenant_is_of(t.tenant, t.iss)) {
        ant_diag_set(d, "federation token tenant is not one of the asking site's");
        rc = -EKEYREJECTED;
        goto out;
    }
    /* aud may be an array naming self_id among others; report the one that matched */
    memcpy(t.aud, self_id, strlen(self_id) + 1);
    t.iat = claim_date(c, "iat");
    t.exp = claim_date(c, "exp");
    *out = t;
out:
    json_decref(c);
    ant_jwks_free(set);
    return rc;
}

int ant_token_peek_iss(struct ant_bytes token, char out[ANT_TOKEN_ID_MAX + 1], struct ant_diag *d)
{
    struct segments sg;
    json_t *c = NULL;
    int rc = split_token(token, &sg, d);
    if (rc < 0) {
        return rc;
    }
    rc = segment_json(sg.p64, "payload", &c, d);
    if (rc == 0) {
        rc = claim_id(c, "iss", out, d);
    }
    json_decref(c);
    return rc;
}

int ant_token_oidc_verify(struct ant_bytes token, const struct ant_jwks *jwks, const char *issuer,
                          const char *audience, int64_t now, json_t **claims, struct ant_diag *d)
{
    if (jwks == NULL || issuer == NULL || issuer[0] == '\0' || audience == NULL ||
        audience[0] == '\0' || claims == NULL) {
        return -EINVAL;
    }
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_RS256 | ANT_TOKEN_ES256,
        .iss = issuer,
        .aud = audience,
        .now = now,
        .skew_s = ANT_TOKEN_SKEW_DEFAULT,
    };
    return verify_impl(token, jwks, &ex, true, claims, d);
}
