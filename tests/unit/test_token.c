/* Unit tests for crypto/token.h: JWT sign/verify, claims, JWKS, and the negative suite after
 * OWASP ASVS V3.5 / the JWT attacks list (alg none, algorithm confusion, tampering, limits). */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/token.h"

#define NOW 1800000000LL
#define B64(n) sodium_base64_ENCODED_LEN((n), sodium_base64_VARIANT_URLSAFE_NO_PADDING)

/* Keys shared by every test: generated once in the group setup. */
static struct ant_signkey *g_ed;
static struct ant_signkey *g_ed_other;
static struct ant_jwks *g_ed_set; /* g_ed's public key, kid "ed1" */
static EVP_PKEY *g_rsa, *g_ec;    /* RSA 2048 and P-256, as an identity provider's */
static char *g_jwks_json;         /* kids "rsa1", "ec1", "ed1" */
static struct ant_jwks *g_idp;    /* parsed from g_jwks_json */

typedef size_t (*signer_fn)(const uint8_t *in, size_t len, uint8_t *sig);

static char *b64url(const void *p, size_t n)
{
    char *s = malloc(B64(n));
    assert_non_null(s);
    sodium_bin2base64(s, B64(n), p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return s;
}

static size_t sign_ed(const uint8_t *in, size_t len, uint8_t *sig)
{
    assert_int_equal(ant_signkey_sign(g_ed, ant_bytes_of(in, len), sig), 0);
    return ANT_SIG_LEN;
}

static size_t sign_nothing(const uint8_t *in, size_t len, uint8_t *sig)
{
    (void)in;
    (void)len;
    (void)sig;
    return 0;
}

static size_t evp_sign(EVP_PKEY *pk, const uint8_t *in, size_t len, uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    size_t n = cap;
    assert_non_null(m);
    assert_int_equal(EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, pk, NULL), 1);
    assert_int_equal(EVP_DigestSign(m, sig, &n, in, len), 1);
    EVP_MD_CTX_free(m);
    return n;
}

static size_t sign_rs256(const uint8_t *in, size_t len, uint8_t *sig)
{
    return evp_sign(g_rsa, in, len, sig, 1024);
}

/* EVP gives ECDSA signatures in DER; JWS wants r||s, 32 bytes each (RFC 7518 §3.4). */
static size_t sign_es256(const uint8_t *in, size_t len, uint8_t *sig)
{
    uint8_t der[128];
    size_t n = evp_sign(g_ec, in, len, der, sizeof(der));
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    assert_non_null(es);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32), 32);
    ECDSA_SIG_free(es);
    return 64;
}

/* The DER form a careless signer would send. */
static size_t sign_es256_der(const uint8_t *in, size_t len, uint8_t *sig)
{
    return evp_sign(g_ec, in, len, sig, 128);
}

/* header.payload.signature from literal JSON texts, signed by `sign` (may sign anything: the
 * point is to build tokens a well-behaved signer would never make). Caller free()s. */
static char *raw_token(const char *hdr, const char *payload, signer_fn sign)
{
    char *h = b64url(hdr, strlen(hdr)), *p = b64url(payload, strlen(payload));
    size_t inlen = strlen(h) + 1 + strlen(p);
    char *input = malloc(inlen + 1);
    uint8_t sig[1024];
    assert_non_null(input);
    snprintf(input, inlen + 1, "%s.%s", h, p);
    size_t siglen = sign((const uint8_t *)input, inlen, sig);
    char *s = b64url(sig, siglen);
    char *tok = malloc(inlen + 1 + strlen(s) + 1);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", input, s);
    free(h);
    free(p);
    free(input);
    free(s);
    return tok;
}

static struct ant_token_expect expect_ed(void)
{
    return (struct ant_token_expect){
        .algs = ANT_TOKEN_EDDSA,
        .iss = "https://site-a.example",
        .aud = "site-a",
        .typ = "JWT",
        .now = NOW,
        .skew_s = 60,
    };
}

#define GOOD_PAYLOAD                                                                               \
    "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"sub\":\"alice\",\"iat\":1799999990," \
    "\"exp\":1800000600,\"jti\":\"j1\"}"
#define ED_HDR "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"ed1\"}"

/* Verifies a NUL-terminated token from an exact-size heap copy (ASan sees over-reads). */
static int verify_str(const char *tok, const struct ant_jwks *set,
                      const struct ant_token_expect *ex, json_t **claims, struct ant_diag *d)
{
    size_t n = strlen(tok);
    uint8_t *copy = test_memdup(tok, n);
    json_t *c = NULL;
    int rc = ant_token_verify(ant_bytes_of(copy, n), set, ex, &c, d);
    free(copy);
    if (claims != NULL) {
        *claims = c;
    } else {
        json_decref(c);
    }
    if (rc == 0) {
        assert_non_null(c);
    }
    return rc;
}

static int verify_ed(const char *tok, const struct ant_token_expect *ex)
{
    struct ant_diag d = {{0}};
    int rc = verify_str(tok, g_ed_set, ex, NULL, &d);
    /* the diag names the check, never the token */
    if (strlen(tok) > 8) {
        assert_null(strstr(d.msg, tok));
    }
    return rc;
}

static char *sign_claims(const char *payload, const char *typ)
{
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    json_error_t jerr;
    json_t *c = json_loads(payload, 0, &jerr);
    assert_non_null(c);
    assert_int_equal(ant_token_sign_eddsa(g_ed, "ed1", c, typ, &out), 0);
    json_decref(c);
    size_t n = 0;
    return (char *)ant_buf_take(&out, &n);
}

static EVP_PKEY *keygen(const char *type, unsigned rsa_bits)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        (rsa_bits != 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)rsa_bits) <= 0) ||
        (rsa_bits == 0 && EVP_PKEY_CTX_set_group_name(ctx, "P-256") <= 0) ||
        EVP_PKEY_keygen(ctx, &pk) <= 0) {
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static char *bn_param_b64(const EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;
    uint8_t buf[1024];
    if (EVP_PKEY_get_bn_param(pk, name, &bn) != 1 || BN_num_bytes(bn) > (int)sizeof(buf)) {
        return NULL;
    }
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* The JWK members of a public key, as an identity provider publishes them. */
static char *jwk_json(const EVP_PKEY *pk, const char *kid)
{
    char *out = malloc(2048);
    assert_non_null(out);
    if (EVP_PKEY_is_a(pk, "RSA")) {
        char *n = bn_param_b64(pk, OSSL_PKEY_PARAM_RSA_N),
             *e = bn_param_b64(pk, OSSL_PKEY_PARAM_RSA_E);
        assert_non_null(n);
        assert_non_null(e);
        snprintf(out, 2048,
                 "{\"kty\":\"RSA\",\"use\":\"sig\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}", kid,
                 n, e);
        free(n);
        free(e);
    } else {
        uint8_t pt[65];
        size_t len = 0;
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len), 1);
        assert_int_equal(len, 65);
        char *x = b64url(pt + 1, 32), *y = b64url(pt + 33, 32);
        snprintf(out, 2048,
                 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", kid,
                 x, y);
        free(x);
        free(y);
    }
    return out;
}

static char *ed_jwk_json(const uint8_t pk[ANT_KEY_LEN], const char *kid)
{
    char *out = malloc(256), *x = b64url(pk, ANT_KEY_LEN);
    assert_non_null(out);
    snprintf(out, 256, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"}", kid, x);
    free(x);
    return out;
}

static int group_setup(void **state)
{
    (void)state;
    struct ant_diag d = {{0}};
    if (ant_signkey_generate(&g_ed) != 0 || ant_signkey_generate(&g_ed_other) != 0 ||
        ant_jwks_new(&g_ed_set) != 0 ||
        ant_jwks_add_ed25519(g_ed_set, "ed1", ant_signkey_public(g_ed)) != 0) {
        return -1;
    }
    g_rsa = keygen("RSA", 2048);
    g_ec = keygen("EC", 0);
    if (g_rsa == NULL || g_ec == NULL) {
        return -1;
    }
    char *r = jwk_json(g_rsa, "rsa1"), *e = jwk_json(g_ec, "ec1");
    char *o = ed_jwk_json(ant_signkey_public(g_ed), "ed1");
    size_t n = strlen(r) + strlen(e) + strlen(o) + 32;
    g_jwks_json = malloc(n);
    snprintf(g_jwks_json, n, "{\"keys\":[%s,%s,%s]}", r, e, o);
    free(r);
    free(e);
    free(o);
    if (ant_jwks_parse(ant_bytes_str(g_jwks_json), &g_idp, &d) != 0) {
        fprintf(stderr, "jwks: %s\n", d.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ant_signkey_free(g_ed);
    ant_signkey_free(g_ed_other);
    ant_jwks_free(g_ed_set);
    ant_jwks_free(g_idp);
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_ec);
    free(g_jwks_json);
    return 0;
}

/* --- EdDSA and the claims check --- */

static void test_eddsa_round_trip(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    ex.sub = "alice";
    ex.require_jti = true;
    ex.max_lifetime_s = 3600;
    json_t *c = NULL;
    struct ant_diag d = {{0}};
    int rc = verify_str(tok, g_ed_set, &ex, &c, &d);
    if (rc != 0) {
        fail_msg("%d %s", rc, d.msg);
    }
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "alice");
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1800000600);
    json_decref(c);
    free(tok);
}

static void test_sign_appends_and_limits(void **state)
{
    (void)state;
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX);
    json_t *c = json_pack("{s:s, s:I}", "iss", "x", "exp", (json_int_t)NOW);
    assert_int_equal(ant_buf_append_str(&out, "Bearer "), 0);
    assert_int_equal(ant_token_sign_eddsa(g_ed, NULL, c, NULL, &out), 0);
    assert_memory_equal(out.p, "Bearer ey", 9);
    assert_int_equal(out.p[out.len], '\0');
    /* a claim too big for ANT_TOKEN_MAX: refused, buffer unchanged */
    size_t before = out.len;
    char *big = malloc(ANT_TOKEN_MAX);
    memset(big, 'a', ANT_TOKEN_MAX - 1);
    big[ANT_TOKEN_MAX - 1] = '\0';
    assert_int_equal(json_object_set_new(c, "big", json_string(big)), 0);
    assert_int_equal(ant_token_sign_eddsa(g_ed, NULL, c, NULL, &out), -E2BIG);
    assert_int_equal(out.len, before);
    assert_int_equal(ant_token_sign_eddsa(g_ed, NULL, json_array_get(c, 0), NULL, &out), -EINVAL);
    free(big);
    json_decref(c);
    ant_buf_fini(&out);
}

static void test_expired_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    ex.now = 1800000600 + 59; /* inside the skew */
    assert_int_equal(verify_ed(tok, &ex), 0);
    ex.now = 1800000600 + 60;
    assert_int_equal(verify_ed(tok, &ex), -EKEYEXPIRED);
    ex.skew_s = 100000; /* capped at ANT_TOKEN_SKEW_MAX */
    ex.now = 1800000600 + ANT_TOKEN_SKEW_MAX;
    assert_int_equal(verify_ed(tok, &ex), -EKEYEXPIRED);
    ex.now = 1800000600 + ANT_TOKEN_SKEW_MAX - 1;
    assert_int_equal(verify_ed(tok, &ex), 0);
    free(tok);
}

static void test_not_yet_valid_is_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *nbf = sign_claims("{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\","
                            "\"nbf\":1800000100,\"exp\":1800000600}",
                            "JWT");
    char *iat = sign_claims("{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\","
                            "\"iat\":1800000100,\"exp\":1800000600}",
                            "JWT");
    assert_int_equal(verify_ed(nbf, &ex), -EKEYEXPIRED);
    assert_int_equal(verify_ed(iat, &ex), -EKEYEXPIRED);
    ex.now = 1800000100 - 60;
    assert_int_equal(verify_ed(nbf, &ex), 0);
    assert_int_equal(verify_ed(iat, &ex), 0);
    free(nbf);
    free(iat);
}

static void test_missing_or_bad_exp_is_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    static const char *const payloads[] = {
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\"}",
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":\"1800000600\"}",
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":-1}",
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":1e300}",
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":null}",
        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":1800000600,\"iat\":[]}",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(payloads); i++) {
        char *tok = raw_token(ED_HDR, payloads[i], sign_ed);
        assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
        free(tok);
    }
    /* a fractional NumericDate is fine */
    char *tok = raw_token(
        ED_HDR, "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":1800000600.5}",
        sign_ed);
    assert_int_equal(verify_ed(tok, &ex), 0);
    free(tok);
}

static void test_wrong_iss_aud_typ_sub_are_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    ex.iss = "https://site-a.example/";
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex = expect_ed();
    ex.aud = "site-b";
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex = expect_ed();
    ex.typ = ANT_TOKEN_TYP_JOB;
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex = expect_ed();
    ex.sub = "alicia";
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex = expect_ed();
    ex.typ = "application/jwt"; /* RFC 7515 §4.1.9 */
    assert_int_equal(verify_ed(tok, &ex), 0);
    free(tok);
    /* no typ at all when one is expected */
    tok = sign_claims(GOOD_PAYLOAD, NULL);
    ex = expect_ed();
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex.typ = NULL;
    assert_int_equal(verify_ed(tok, &ex), 0);
    free(tok);
}

static void test_aud_array_and_type_confusion(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *arr = raw_token(ED_HDR,
                          "{\"iss\":\"https://site-a.example\",\"aud\":[\"x\",\"site-a\"],"
                          "\"exp\":1800000600}",
                          sign_ed);
    char *num = raw_token(ED_HDR,
                          "{\"iss\":\"https://site-a.example\",\"aud\":[1,{\"a\":\"site-a\"}],"
                          "\"exp\":1800000600}",
                          sign_ed);
    char *issarr = raw_token(ED_HDR,
                             "{\"iss\":[\"https://site-a.example\"],\"aud\":\"site-a\","
                             "\"exp\":1800000600}",
                             sign_ed);
    assert_int_equal(verify_ed(arr, &ex), 0);
    assert_int_equal(verify_ed(num, &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed(issarr, &ex), -EKEYREJECTED);
    free(arr);
    free(num);
    free(issarr);
}

static void test_lifetime_and_jti(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT"); /* iat .. exp = 610 s */
    struct ant_token_expect ex = expect_ed();
    ex.max_lifetime_s = 609;
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex.max_lifetime_s = 610;
    assert_int_equal(verify_ed(tok, &ex), 0);
    free(tok);
    tok = sign_claims("{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":1800000600}",
                      "JWT");
    ex = expect_ed();
    ex.max_lifetime_s = 610; /* iat required then */
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex = expect_ed();
    ex.require_jti = true;
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    free(tok);
}

/* --- the negative suite --- */

static void test_alg_none_is_rejected(void **state)
{
    (void)state;
    static const char *const hdrs[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", "{\"typ\":\"JWT\"}",
        "{\"alg\":null,\"typ\":\"JWT\"}",     "{\"alg\":\"eddsa\",\"typ\":\"JWT\"}",
    };
    struct ant_token_expect ex = expect_ed();
    ex.algs = ANT_TOKEN_EDDSA | ANT_TOKEN_RS256 | ANT_TOKEN_ES256;
    for (size_t i = 0; i < ANT_ARRAY_LEN(hdrs); i++) {
        char *unsigned_tok = raw_token(hdrs[i], GOOD_PAYLOAD, sign_nothing); /* "h.p." */
        char *signed_tok = raw_token(hdrs[i], GOOD_PAYLOAD, sign_ed);
        assert_int_equal(verify_ed(unsigned_tok, &ex), -EKEYREJECTED);
        assert_int_equal(verify_ed(signed_tok, &ex), -EKEYREJECTED);
        free(unsigned_tok);
        free(signed_tok);
    }
}

static const uint8_t *g_hmac_secret;
static size_t g_hmac_secret_len;

static size_t sign_hs256(const uint8_t *in, size_t len, uint8_t *sig)
{
    unsigned int n = 0;
    assert_non_null(HMAC(EVP_sha256(), g_hmac_secret, (int)g_hmac_secret_len, in, len, sig, &n));
    return n;
}

static void test_hs256_with_public_key_is_rejected(void **state)
{
    (void)state;
    /* The classic confusion: HMAC keyed with the verifier's public key. */
    g_hmac_secret = ant_signkey_public(g_ed);
    g_hmac_secret_len = ANT_KEY_LEN;
    struct ant_token_expect ex = expect_ed();
    ex.algs = ANT_TOKEN_EDDSA | ANT_TOKEN_RS256 | ANT_TOKEN_ES256;
    static const char *const hdrs[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"ed1\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\",\"kid\":\"ed1\"}",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(hdrs); i++) {
        char *tok = raw_token(hdrs[i], GOOD_PAYLOAD, sign_hs256);
        assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
        free(tok);
    }
}

static void test_alg_outside_allowlist_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    ex.algs = ANT_TOKEN_RS256 | ANT_TOKEN_ES256;
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    ex.algs = 0;
    assert_int_equal(verify_ed(tok, &ex), -EINVAL);
    ex.algs = 1u << 7;
    assert_int_equal(verify_ed(tok, &ex), -EINVAL);
    ex = expect_ed();
    ex.now = -1; /* a clock the skew arithmetic cannot take */
    assert_int_equal(verify_ed(tok, &ex), -EINVAL);
    ex.now = INT64_MAX;
    assert_int_equal(verify_ed(tok, &ex), -EINVAL);
    free(tok);
}

static void test_bad_signature_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    /* a set holding another key under the same kid */
    struct ant_jwks *other = NULL;
    assert_int_equal(ant_jwks_new(&other), 0);
    assert_int_equal(ant_jwks_add_ed25519(other, "ed1", ant_signkey_public(g_ed_other)), 0);
    assert_int_equal(verify_str(tok, other, &ex, NULL, NULL), -EKEYREJECTED);
    ant_jwks_free(other);
    /* a signature cut short or lengthened */
    size_t n = strlen(tok);
    char *cut = strdup(tok);
    cut[n - 4] = '\0';
    assert_int_equal(verify_ed(cut, &ex), -EKEYREJECTED);
    free(cut);
    char *longer = malloc(n + 5);
    snprintf(longer, n + 5, "%sAAAA", tok);
    assert_int_equal(verify_ed(longer, &ex), -EKEYREJECTED);
    free(longer);
    free(tok);
}

static void test_every_byte_flip_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims("{\"aud\":\"site-a\",\"exp\":1800000600,"
                            "\"iss\":\"https://site-a.example\"}",
                            NULL);
    struct ant_token_expect ex = expect_ed();
    ex.typ = NULL;
    size_t n = strlen(tok);
    assert_int_equal(verify_ed(tok, &ex), 0);
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            char *t = strdup(tok);
            t[i] = (char)(t[i] ^ (1u << bit));
            if (t[i] == '\0') {
                free(t);
                continue;
            }
            int rc = verify_ed(t, &ex);
            if (rc == 0) {
                fail_msg("flip of bit %u at %zu accepted", bit, i);
            }
            free(t);
        }
    }
    free(tok);
}

static void test_every_truncation_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        uint8_t *cut = test_memdup(tok, i);
        json_t *c = NULL;
        assert_int_not_equal(ant_token_verify(ant_bytes_of(cut, i), g_ed_set, &ex, &c, NULL), 0);
        assert_null(c);
        free(cut);
    }
    free(tok);
}

static void test_oversized_token_is_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *big = malloc(ANT_TOKEN_MAX + 2);
    memset(big, 'A', ANT_TOKEN_MAX + 1);
    big[10] = '.';
    big[20] = '.';
    big[ANT_TOKEN_MAX + 1] = '\0';
    assert_int_equal(verify_ed(big, &ex), -E2BIG);
    big[ANT_TOKEN_MAX] = '\0'; /* exactly the limit: looked at, and refused as garbage */
    assert_int_equal(verify_ed(big, &ex), -EKEYREJECTED);
    free(big);
}

static void test_duplicate_json_keys_are_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *h =
        raw_token("{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, sign_ed);
    char *p = raw_token(ED_HDR,
                        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\",\"exp\":1800000600,"
                        "\"exp\":1900000000}",
                        sign_ed);
    char *trailing = raw_token(ED_HDR, GOOD_PAYLOAD "{}", sign_ed);
    char *notobj = raw_token(ED_HDR, "[1]", sign_ed);
    assert_int_equal(verify_ed(h, &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed(p, &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed(trailing, &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed(notobj, &ex), -EKEYREJECTED);
    free(h);
    free(p);
    free(trailing);
    free(notobj);
}

static char *nested_payload(int depth)
{
    /* the top-level object is depth 1; "x" adds depth - 1 more levels */
    struct ant_buf b = ANT_BUF_INIT(4096);
    assert_int_equal(ant_buf_append_str(&b,
                                        "{\"iss\":\"https://site-a.example\",\"aud\":\"site-a\","
                                        "\"exp\":1800000600,\"x\":"),
                     0);
    for (int i = 1; i < depth; i++) {
        assert_int_equal(ant_buf_append_str(&b, "["), 0);
    }
    assert_int_equal(ant_buf_append_str(&b, "0"), 0);
    for (int i = 1; i < depth; i++) {
        assert_int_equal(ant_buf_append_str(&b, "]"), 0);
    }
    assert_int_equal(ant_buf_append_str(&b, "}"), 0);
    assert_int_equal(ant_buf_terminate(&b), 0);
    size_t n;
    return (char *)ant_buf_take(&b, &n);
}

static void test_deep_nesting_is_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *ok = nested_payload(ANT_TOKEN_JSON_DEPTH_MAX);
    char *deep = nested_payload(ANT_TOKEN_JSON_DEPTH_MAX + 1);
    char *tok_ok = raw_token(ED_HDR, ok, sign_ed);
    char *tok_deep = raw_token(ED_HDR, deep, sign_ed);
    assert_int_equal(verify_ed(tok_ok, &ex), 0);
    assert_int_equal(verify_ed(tok_deep, &ex), -EKEYREJECTED);
    free(ok);
    free(deep);
    free(tok_ok);
    free(tok_deep);
}

static void test_non_base64url_characters_are_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    static const char bad[] = {'+', '/', '=', ' ', '\n', '\t', '%', '\x80', '\xff', '!'};
    size_t n = strlen(tok);
    const char *dot = strchr(tok, '.');
    size_t positions[] = {0, (size_t)(dot - tok) + 1, n - 1};
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        for (size_t j = 0; j < ANT_ARRAY_LEN(positions); j++) {
            char *t = strdup(tok);
            t[positions[j]] = bad[i];
            assert_int_equal(verify_ed(t, &ex), -EKEYREJECTED);
            free(t);
        }
    }
    /* padding appended to a segment */
    char *padded = malloc(n + 3);
    snprintf(padded, n + 3, "%s==", tok);
    assert_int_equal(verify_ed(padded, &ex), -EKEYREJECTED);
    free(padded);
    /* a NUL inside the view */
    uint8_t *withnul = test_memdup(tok, n);
    withnul[5] = '\0';
    assert_int_equal(
        ant_token_verify(ant_bytes_of(withnul, n), g_ed_set, &ex, &(json_t *){NULL}, NULL),
        -EKEYREJECTED);
    free(withnul);
    free(tok);
}

static void test_wrong_segment_count_is_rejected(void **state)
{
    (void)state;
    char *tok = sign_claims(GOOD_PAYLOAD, "JWT");
    struct ant_token_expect ex = expect_ed();
    size_t n = strlen(tok);
    char *buf = malloc(2 * n + 8);
    snprintf(buf, 2 * n + 8, "%s.AAAA", tok); /* four segments */
    assert_int_equal(verify_ed(buf, &ex), -EKEYREJECTED);
    snprintf(buf, 2 * n + 8, "%s.AAAA.AAAA", tok); /* five: JWE-shaped */
    assert_int_equal(verify_ed(buf, &ex), -EKEYREJECTED);
    snprintf(buf, 2 * n + 8, "%s.", tok);
    assert_int_equal(verify_ed(buf, &ex), -EKEYREJECTED);
    snprintf(buf, 2 * n + 8, ".%s", tok);
    assert_int_equal(verify_ed(buf, &ex), -EKEYREJECTED);
    *strrchr(tok, '.') = '\0'; /* two segments */
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed("", &ex), -EKEYREJECTED);
    assert_int_equal(verify_ed("..", &ex), -EKEYREJECTED);
    free(buf);
    free(tok);
}

static void test_crit_header_is_rejected(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    char *tok =
        raw_token("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}", GOOD_PAYLOAD, sign_ed);
    assert_int_equal(verify_ed(tok, &ex), -EKEYREJECTED);
    free(tok);
}

static void test_key_selection(void **state)
{
    (void)state;
    struct ant_token_expect ex = expect_ed();
    struct ant_jwks *two = NULL;
    assert_int_equal(ant_jwks_new(&two), 0);
    assert_int_equal(ant_jwks_add_ed25519(two, "other", ant_signkey_public(g_ed_other)), 0);
    assert_int_equal(ant_jwks_add_ed25519(two, "ed1", ant_signkey_public(g_ed)), 0);
    char *kid = raw_token(ED_HDR, GOOD_PAYLOAD, sign_ed);
    char *nokid = raw_token("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", GOOD_PAYLOAD, sign_ed);
    char *badkid =
        raw_token("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":7}", GOOD_PAYLOAD, sign_ed);
    assert_int_equal(verify_str(kid, two, &ex, NULL, NULL), 0);
    /* two Ed25519 keys and no kid: ambiguous, refused rather than tried in turn */
    assert_int_equal(verify_str(nokid, two, &ex, NULL, NULL), -EKEYREJECTED);
    assert_int_equal(verify_str(nokid, g_ed_set, &ex, NULL, NULL), 0);
    assert_int_equal(verify_str(badkid, g_ed_set, &ex, NULL, NULL), -EKEYREJECTED);
    free(kid);
    free(nokid);
    free(badkid);
    ant_jwks_free(two);
}

/* --- RS256, ES256 and JWKS --- */

#define IDP_PAYLOAD                                                                                \
    "{\"iss\":\"https://idp.example/realms/ls\",\"aud\":[\"antenna\",\"account\"],"                \
    "\"sub\":\"u-1\",\"preferred_username\":\"alice\",\"iat\":1799999990,\"exp\":1800000600}"
#define IDP_ISS "https://idp.example/realms/ls"

static int verify_oidc(const char *tok, json_t **claims)
{
    size_t n = strlen(tok);
    uint8_t *copy = test_memdup(tok, n);
    json_t *c = NULL;
    struct ant_diag d = {{0}};
    int rc = ant_token_oidc_verify(ant_bytes_of(copy, n), g_idp, IDP_ISS, "antenna", NOW, &c, &d);
    free(copy);
    if (claims != NULL) {
        *claims = c;
    } else {
        json_decref(c);
    }
    return rc;
}

static void test_rs256_and_es256_round_trip(void **state)
{
    (void)state;
    char *rs =
        raw_token("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"rsa1\"}", IDP_PAYLOAD, sign_rs256);
    char *es = raw_token("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"ec1\"}", IDP_PAYLOAD,
                         sign_es256);
    char *es_nokid = raw_token("{\"alg\":\"ES256\"}", IDP_PAYLOAD, sign_es256);
    json_t *c = NULL;
    assert_int_equal(verify_oidc(rs, &c), 0);
    assert_string_equal(json_string_value(json_object_get(c, "preferred_username")), "alice");
    json_decref(c);
    assert_int_equal(verify_oidc(es, NULL), 0);
    /* without a kid: the only key of the alg's type */
    assert_int_equal(verify_oidc(es_nokid, NULL), 0);
    /* the general verifier agrees */
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_RS256, .iss = IDP_ISS, .aud = "account", .typ = "JWT", .now = NOW};
    assert_int_equal(verify_str(rs, g_idp, &ex, NULL, NULL), 0);
    ex.algs = ANT_TOKEN_ES256; /* RS256 not in the allowlist */
    assert_int_equal(verify_str(rs, g_idp, &ex, NULL, NULL), -EKEYREJECTED);
    /* wrong issuer / audience / expired */
    struct ant_diag d = {{0}};
    json_t *out = NULL;
    assert_int_equal(ant_token_oidc_verify(ant_bytes_str(rs), g_idp, "https://idp.example",
                                           "antenna", NOW, &out, &d),
                     -EKEYREJECTED);
    assert_int_equal(
        ant_token_oidc_verify(ant_bytes_str(rs), g_idp, IDP_ISS, "other", NOW, &out, &d),
        -EKEYREJECTED);
    assert_int_equal(
        ant_token_oidc_verify(ant_bytes_str(rs), g_idp, IDP_ISS, "antenna", NOW + 3600, &out, &d),
        -EKEYEXPIRED);
    assert_int_equal(ant_token_oidc_verify(ant_bytes_str(rs), g_idp, IDP_ISS, NULL, NOW, &out, &d),
                     -EINVAL);
    assert_null(out);
    free(rs);
    free(es);
    free(es_nokid);
}

static void test_rs256_es256_signature_tampering(void **state)
{
    (void)state;
    char *rs = raw_token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", IDP_PAYLOAD, sign_rs256);
    char *es = raw_token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", IDP_PAYLOAD, sign_es256);
    char *der = raw_token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", IDP_PAYLOAD, sign_es256_der);
    assert_int_equal(verify_oidc(der, NULL), -EKEYREJECTED);
    char *toks[] = {rs, es};
    for (size_t t = 0; t < 2; t++) {
        size_t n = strlen(toks[t]);
        size_t sigstart = (size_t)(strrchr(toks[t], '.') - toks[t]) + 1;
        /* flip one character in each of a handful of places of the payload and signature */
        for (size_t i = sigstart - 40; i < n; i += 7) {
            if (toks[t][i] == '.') {
                continue;
            }
            char *m = strdup(toks[t]);
            m[i] = m[i] == 'A' ? 'B' : 'A';
            assert_int_not_equal(verify_oidc(m, NULL), 0);
            free(m);
        }
    }
    /* an ES256 signature of zeros (r = s = 0) */
    const char *dot = strrchr(es, '.');
    uint8_t zeros[64] = {0};
    char *z = b64url(zeros, sizeof(zeros));
    size_t n = (size_t)(dot - es) + 1 + strlen(z) + 1;
    char *zt = malloc(n);
    snprintf(zt, n, "%.*s.%s", (int)(dot - es), es, z);
    assert_int_equal(verify_oidc(zt, NULL), -EKEYREJECTED);
    free(z);
    free(zt);
    free(rs);
    free(es);
    free(der);
}

static void test_alg_must_fit_key_type(void **state)
{
    (void)state;
    /* an RS256 token naming the EC key, an ES256 token naming the RSA key, an EdDSA token
     * naming either: refused before any signature arithmetic */
    char *rs_ec = raw_token("{\"alg\":\"RS256\",\"kid\":\"ec1\"}", IDP_PAYLOAD, sign_rs256);
    char *es_rsa = raw_token("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", IDP_PAYLOAD, sign_es256);
    char *ed_rsa = raw_token("{\"alg\":\"EdDSA\",\"kid\":\"rsa1\"}", IDP_PAYLOAD, sign_ed);
    struct ant_token_expect ex = {
        .algs = ANT_TOKEN_EDDSA | ANT_TOKEN_RS256 | ANT_TOKEN_ES256, .iss = IDP_ISS, .now = NOW};
    struct ant_diag d = {{0}};
    assert_int_equal(verify_str(rs_ec, g_idp, &ex, NULL, &d), -EKEYREJECTED);
    assert_non_null(strstr(d.msg, "alg does not fit"));
    assert_int_equal(verify_str(es_rsa, g_idp, &ex, NULL, &d), -EKEYREJECTED);
    assert_int_equal(verify_str(ed_rsa, g_idp, &ex, NULL, &d), -EKEYREJECTED);
    /* an EdDSA token with a key the IdP set does hold: OIDC allows RS256/ES256 only */
    char *ed = raw_token("{\"alg\":\"EdDSA\",\"kid\":\"ed1\"}", IDP_PAYLOAD, sign_ed);
    assert_int_equal(verify_str(ed, g_idp, &ex, NULL, &d), 0);
    assert_int_equal(verify_oidc(ed, NULL), -EKEYREJECTED);
    /* HS256 keyed with the RSA public key as a PEM text and as the raw modulus */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, g_rsa), 1);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(bio, &pem);
    g_hmac_secret = (const uint8_t *)pem;
    g_hmac_secret_len = (size_t)pemlen;
    char *hs = raw_token("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", IDP_PAYLOAD, sign_hs256);
    assert_int_equal(verify_str(hs, g_idp, &ex, NULL, &d), -EKEYREJECTED);
    assert_int_equal(verify_oidc(hs, NULL), -EKEYREJECTED);
    BIO_free(bio);
    free(hs);
    free(rs_ec);
    free(es_rsa);
    free(ed_rsa);
    free(ed);
}

static void test_oidc_refuses_antenna_tokens(void **state)
{
    (void)state;
    char *job = raw_token("{\"alg\":\"RS256\",\"typ\":\"antenna-job+jwt\",\"kid\":\"rsa1\"}",
                          IDP_PAYLOAD, sign_rs256);
    char *fed = raw_token("{\"alg\":\"ES256\",\"typ\":\"application/Antenna-Fed+JWT\"}",
                          IDP_PAYLOAD, sign_es256);
    assert_int_equal(verify_oidc(job, NULL), -EKEYREJECTED);
    assert_int_equal(verify_oidc(fed, NULL), -EKEYREJECTED);
    free(job);
    free(fed);
}

static int parse_jwks(const char *doc, struct ant_jwks **out)
{
    size_t n = strlen(doc);
    uint8_t *copy = test_memdup(doc, n);
    struct ant_diag d = {{0}};
    struct ant_jwks *set = NULL;
    int rc = ant_jwks_parse(ant_bytes_of(copy, n), &set, &d);
    free(copy);
    if (rc == 0) {
        assert_non_null(set);
        assert_true(ant_jwks_count(set) > 0);
    } else {
        assert_null(set);
        assert_true(d.msg[0] != '\0');
    }
    if (out != NULL && rc == 0) {
        *out = set;
    } else {
        ant_jwks_free(set);
    }
    return rc;
}

static void test_jwks_parse_accepts_and_skips(void **state)
{
    (void)state;
    struct ant_jwks *set = NULL;
    assert_int_equal(ant_jwks_count(g_idp), 3);
    /* encryption keys, unknown kty / crv and foreign algs are skipped */
    assert_int_equal(
        parse_jwks("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},"
                   "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"},"
                   "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"},"
                   "{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AA\",\"e\":\"AQAB\"},"
                   "{\"kty\":\"RSA\",\"alg\":\"PS256\",\"n\":\"AA\",\"e\":\"AQAB\"},"
                   "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k\","
                   "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}],\"extra\":1}",
                   &set),
        0);
    assert_int_equal(ant_jwks_count(set), 1);
    ant_jwks_free(set);
    assert_int_equal(parse_jwks("{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}", NULL), -ENOENT);
    assert_int_equal(parse_jwks("{\"keys\":[]}", NULL), -ENOENT);
}

/* g_jwks_json with its first occurrence of `from` replaced by `to` */
static char *jwks_with(const char *from, const char *to)
{
    const char *at = strstr(g_jwks_json, from);
    assert_non_null(at);
    size_t n = strlen(g_jwks_json) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - g_jwks_json), g_jwks_json, to, at + strlen(from));
    return s;
}

static void test_jwks_parse_rejects_bad_keys(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"keys\":{}}",
        "{\"keys\":[1]}",
        "{\"keys\":[]}x",
        "{\"keys\":[],\"keys\":[]}",
        "{\"keys\":[{\"kty\":7}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"}]}",
        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"RS256\","
        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        int rc = parse_jwks(bad[i], NULL);
        if (rc != -EBADMSG) {
            fail_msg("case %zu: %d", i, rc);
        }
    }
    /* the EC point moved off the curve; its x given 33 bytes; the RSA e too long */
    const char *y = strstr(g_jwks_json, "\"y\":\"") + 5;
    char from[8], to[8];
    snprintf(from, sizeof(from), "\"y\":\"%.2s", y);
    snprintf(to, sizeof(to), "\"y\":\"%s", y[0] == 'A' ? "BB" : "AA");
    char *off = jwks_with(from, to);
    assert_int_equal(parse_jwks(off, NULL), -EBADMSG);
    free(off);
    char *x33 = jwks_with("\"x\":\"", "\"x\":\"AAAA");
    assert_int_equal(parse_jwks(x33, NULL), -EBADMSG);
    free(x33);
    char *elong = jwks_with("\"e\":\"AQAB\"", "\"e\":\"AQABAQABAQAB\"");
    assert_int_equal(parse_jwks(elong, NULL), -EBADMSG);
    free(elong);
    /* RSA under 2048 bits */
    EVP_PKEY *small = keygen("RSA", 1024);
    assert_non_null(small);
    char *jwk = jwk_json(small, "small");
    char doc[2200];
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", jwk);
    assert_int_equal(parse_jwks(doc, NULL), -EBADMSG);
    free(jwk);
    EVP_PKEY_free(small);
}

static void test_jwks_limits(void **state)
{
    (void)state;
    struct ant_buf b = ANT_BUF_INIT(ANT_JWKS_MAX * 2);
    char *one = ed_jwk_json(ant_signkey_public(g_ed), "k");
    assert_int_equal(ant_buf_append_str(&b, "{\"keys\":["), 0);
    for (int i = 0; i < ANT_JWKS_KEYS_MAX; i++) {
        assert_int_equal(ant_buf_printf(&b, "%s%s", i ? "," : "", one), 0);
    }
    assert_int_equal(ant_buf_append_str(&b, "]}"), 0);
    assert_int_equal(ant_buf_terminate(&b), 0);
    assert_int_equal(parse_jwks((const char *)b.p, NULL), 0);
    b.len -= 2;
    assert_int_equal(ant_buf_printf(&b, ",%s]}", one), 0);
    assert_int_equal(ant_buf_terminate(&b), 0);
    assert_int_equal(parse_jwks((const char *)b.p, NULL), -E2BIG);
    /* size: padding whitespace past ANT_JWKS_MAX */
    b.len = 0;
    assert_int_equal(ant_buf_printf(&b, "{\"keys\":[%s]", one), 0);
    while (b.len <= ANT_JWKS_MAX) {
        assert_int_equal(ant_buf_append_str(&b, "        "), 0);
    }
    assert_int_equal(ant_buf_append_str(&b, "}"), 0);
    assert_int_equal(ant_buf_terminate(&b), 0);
    assert_int_equal(parse_jwks((const char *)b.p, NULL), -E2BIG);
    free(one);
    ant_buf_fini(&b);
    /* the builder's own limits */
    struct ant_jwks *set = NULL;
    char kid[300];
    memset(kid, 'k', sizeof(kid) - 1);
    kid[sizeof(kid) - 1] = '\0';
    assert_int_equal(ant_jwks_new(&set), 0);
    assert_int_equal(ant_jwks_add_ed25519(set, kid, ant_signkey_public(g_ed)), -EINVAL);
    for (int i = 0; i < ANT_JWKS_KEYS_MAX; i++) {
        assert_int_equal(ant_jwks_add_ed25519(set, NULL, ant_signkey_public(g_ed)), 0);
    }
    assert_int_equal(ant_jwks_add_ed25519(set, NULL, ant_signkey_public(g_ed)), -E2BIG);
    ant_jwks_free(set);
}

static void test_jwks_load_from_file(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[4096];
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(g_jwks_json, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    struct ant_jwks *set = NULL;
    struct ant_diag d = {{0}};
    assert_int_equal(ant_jwks_load(AT_FDCWD, path, &set, &d), 0);
    assert_int_equal(ant_jwks_count(set), 3);
    ant_jwks_free(set);
    set = NULL;
    snprintf(path, sizeof(path), "%s/missing.json", dir);
    assert_int_equal(ant_jwks_load(AT_FDCWD, path, &set, &d), -ENOENT);
    assert_null(set);
    test_rmtree(dir);
    free(dir);
}

static void test_b64url_is_strict(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t n = 0;
    assert_int_equal(ant_b64url_decode(ant_bytes_str("AQAB"), out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ant_b64url_decode(ant_bytes_str("AQ"), out, sizeof(out), &n), 0);
    assert_int_equal(n, 1);
    /* non-zero unused bits, padding, the standard alphabet, a lone char, too long, empty */
    static const char *const bad[] = {"AR", "AQ==",  "A+B/",  "A", "AAAAAAAAAAAAAAAA",
                                      "",   "AQ AB", "AQ\nAB"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(ant_b64url_decode(ant_bytes_str(bad[i]), out, sizeof(out), &n), -EBADMSG);
    }
}

/* --- antenna's own tokens --- */

static void test_kid_is_rfc8037_thumbprint(void **state)
{
    (void)state;
    /* RFC 8037 Appendix A.2/A.3 */
    uint8_t pk[ANT_KEY_LEN];
    size_t n = 0;
    const char *x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    assert_int_equal(ant_b64url_decode(ant_bytes_str(x), pk, sizeof(pk), &n), 0);
    assert_int_equal(n, ANT_KEY_LEN);
    char kid[ANT_TOKEN_KID_LEN];
    ant_token_kid(pk, kid);
    assert_string_equal(kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

static void test_job_token_round_trip(void **state)
{
    (void)state;
    struct ant_job_token t = {
        .site = "site-a", .principal = "alice", .job_id = "j-42", .iat = NOW, .exp = NOW + 3600};
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    assert_int_equal(ant_token_job_sign(g_ed, &t, &out), 0);
    struct ant_job_token got;
    struct ant_diag d = {{0}};
    struct ant_bytes tok = ant_buf_view(&out);
    int rc = ant_token_job_verify(tok, ant_signkey_public(g_ed), "site-a", NOW + 10, &got, &d);
    if (rc != 0) {
        fail_msg("%d %s", rc, d.msg);
    }
    assert_string_equal(got.site, "site-a");
    assert_string_equal(got.principal, "alice");
    assert_string_equal(got.job_id, "j-42");
    assert_string_equal(got.scope, "read");
    assert_int_equal(got.iat, NOW);
    assert_int_equal(got.exp, NOW + 3600);
    assert_int_equal(
        ant_token_job_verify(tok, ant_signkey_public(g_ed), "site-b", NOW + 10, &got, &d),
        -EKEYREJECTED);
    assert_int_equal(
        ant_token_job_verify(tok, ant_signkey_public(g_ed_other), "site-a", NOW + 10, &got, &d),
        -EKEYREJECTED);
    assert_int_equal(
        ant_token_job_verify(tok, ant_signkey_public(g_ed), "site-a", NOW + 3660, &got, &d),
        -EKEYEXPIRED);
    /* a federation token is not a job token */
    struct ant_fed_token f = {.iss = "site-a",
                              .aud = "site-a",
                              .principal = "alice",
                              .tenant = "lab@site-a",
                              .purpose = "research",
                              .iat = NOW};
    struct ant_buf fo = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &fo), 0);
    assert_int_equal(ant_token_job_verify(ant_buf_view(&fo), ant_signkey_public(g_ed), "site-a",
                                          NOW + 10, &got, &d),
                     -EKEYREJECTED);
    /* signing refuses what verifying would */
    t.exp = NOW + ANT_TOKEN_JOB_LIFETIME_MAX + 1;
    assert_int_equal(ant_token_job_sign(g_ed, &t, &out), -EINVAL);
    t.exp = NOW;
    assert_int_equal(ant_token_job_sign(g_ed, &t, &out), -EINVAL);
    t.exp = NOW + 60;
    t.job_id[0] = '\0';
    assert_int_equal(ant_token_job_sign(g_ed, &t, &out), -EINVAL);
    ant_buf_fini(&out);
    ant_buf_fini(&fo);
}

static void test_job_token_scope_must_be_read(void **state)
{
    (void)state;
    struct ant_job_token t = {.site = "site-a",
                              .principal = "alice",
                              .job_id = "j-42",
                              .scope = "write",
                              .iat = NOW,
                              .exp = NOW + 3600};
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    struct ant_job_token got;
    assert_int_equal(ant_token_job_sign(g_ed, &t, &out), 0);
    assert_int_equal(ant_token_job_verify(ant_buf_view(&out), ant_signkey_public(g_ed), "site-a",
                                          NOW, &got, NULL),
                     -EKEYREJECTED);
    ant_buf_fini(&out);
    /* hand-made: lifetime over the cap, signed by the right key */
    char *tok = raw_token("{\"alg\":\"EdDSA\",\"typ\":\"antenna-job+jwt\"}",
                          "{\"iss\":\"site-a\",\"aud\":\"site-a\",\"sub\":\"alice\",\"job\":\"j\","
                          "\"scope\":\"read\",\"iat\":1800000000,\"exp\":1900000000}",
                          sign_ed);
    assert_int_equal(ant_token_job_verify(ant_bytes_str(tok), ant_signkey_public(g_ed), "site-a",
                                          NOW, &got, NULL),
                     -EKEYREJECTED);
    free(tok);
}

static void test_fed_token_round_trip(void **state)
{
    (void)state;
    struct ant_fed_token f = {.iss = "site-b",
                              .aud = "site-a",
                              .principal = "alice",
                              .tenant = "lab@site-b",
                              .purpose = "cancer-research",
                              .iat = NOW};
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &out), 0);
    struct ant_bytes tok = ant_buf_view(&out);
    char iss[ANT_TOKEN_ID_MAX + 1];
    assert_int_equal(ant_token_peek_iss(tok, iss, NULL), 0);
    assert_string_equal(iss, "site-b");
    struct ant_fed_token got;
    struct ant_diag d = {{0}};
    int rc =
        ant_token_fed_verify(tok, ant_signkey_public(g_ed), "site-b", "site-a", NOW + 1, &got, &d);
    if (rc != 0) {
        fail_msg("%d %s", rc, d.msg);
    }
    assert_string_equal(got.iss, "site-b");
    assert_string_equal(got.aud, "site-a");
    assert_string_equal(got.principal, "alice");
    assert_string_equal(got.tenant, "lab@site-b");
    assert_string_equal(got.purpose, "cancer-research");
    assert_int_equal(strlen(got.jti), 22); /* 128 random bits */
    assert_int_equal(got.exp, NOW + ANT_TOKEN_FED_LIFETIME_MAX);
    /* another signer's jti differs */
    struct ant_buf out2 = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    struct ant_fed_token got2;
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &out2), 0);
    assert_int_equal(ant_token_fed_verify(ant_buf_view(&out2), ant_signkey_public(g_ed), "site-b",
                                          "site-a", NOW + 1, &got2, &d),
                     0);
    assert_string_not_equal(got.jti, got2.jti);
    /* wrong audience (a token for site-c replayed at site-a), wrong peer, expired */
    assert_int_equal(
        ant_token_fed_verify(tok, ant_signkey_public(g_ed), "site-b", "site-c", NOW + 1, &got, &d),
        -EKEYREJECTED);
    assert_int_equal(
        ant_token_fed_verify(tok, ant_signkey_public(g_ed), "site-x", "site-a", NOW + 1, &got, &d),
        -EKEYREJECTED);
    assert_int_equal(ant_token_fed_verify(tok, ant_signkey_public(g_ed), "site-b", "site-a",
                                          NOW + 300 + 60, &got, &d),
                     -EKEYEXPIRED);
    /* a job token is not a federation token */
    struct ant_job_token t = {
        .site = "site-a", .principal = "alice", .job_id = "j", .iat = NOW, .exp = NOW + 60};
    struct ant_buf jo = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    assert_int_equal(ant_token_job_sign(g_ed, &t, &jo), 0);
    assert_int_equal(ant_token_fed_verify(ant_buf_view(&jo), ant_signkey_public(g_ed), "site-a",
                                          "site-a", NOW + 1, &got, &d),
                     -EKEYREJECTED);
    ant_buf_fini(&jo);
    ant_buf_fini(&out);
    ant_buf_fini(&out2);
}

static void test_fed_token_limits(void **state)
{
    (void)state;
    struct ant_fed_token f = {.iss = "site-b",
                              .aud = "site-a",
                              .principal = "alice",
                              .tenant = "lab@site-b",
                              .purpose = "p",
                              .iat = NOW,
                              .exp = NOW + 301};
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    struct ant_fed_token got;
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &out), -EINVAL);
    f.exp = 0;
    snprintf(f.tenant, sizeof(f.tenant), "lab@site-a"); /* not the signer's tenant */
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &out), -EINVAL);
    f.tenant[0] = '\0';
    assert_int_equal(ant_token_fed_sign(g_ed, &f, &out), -EINVAL);
    assert_int_equal(out.len, 0);
    /* hand-made tokens a careless peer might send */
    static const char *const payloads[] = {
        /* 301 s */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"t@site-b\",\"purpose\":"
        "\"p\","
        "\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000301}",
        /* no jti */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"t@site-b\",\"purpose\":"
        "\"p\","
        "\"iat\":1800000000,\"exp\":1800000300}",
        /* no iat */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"t@site-b\",\"purpose\":"
        "\"p\","
        "\"jti\":\"j\",\"exp\":1800000300}",
        /* no tenant */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"purpose\":\"p\","
        "\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
        /* a tenant of the serving site, of no site, of nobody, of a look-alike site */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"lab@site-a\","
        "\"purpose\":\"p\",\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"lab\","
        "\"purpose\":\"p\",\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"@site-b\","
        "\"purpose\":\"p\",\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\",\"tenant\":\"x@xsite-b\","
        "\"purpose\":\"p\",\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
        /* empty sub */
        "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"\",\"tenant\":\"t@site-b\",\"purpose\":"
        "\"p\","
        "\"jti\":\"j\",\"iat\":1800000000,\"exp\":1800000300}",
    };
    /* the control: the same hand-made shape, all claims right */
    char *good = raw_token("{\"alg\":\"EdDSA\",\"typ\":\"antenna-fed+jwt\"}",
                           "{\"iss\":\"site-b\",\"aud\":\"site-a\",\"sub\":\"a\","
                           "\"tenant\":\"t@site-b\",\"purpose\":\"p\",\"jti\":\"j\","
                           "\"iat\":1800000000,\"exp\":1800000300}",
                           sign_ed);
    assert_int_equal(ant_token_fed_verify(ant_bytes_str(good), ant_signkey_public(g_ed), "site-b",
                                          "site-a", NOW, &got, NULL),
                     0);
    free(good);
    for (size_t i = 0; i < ANT_ARRAY_LEN(payloads); i++) {
        char *tok =
            raw_token("{\"alg\":\"EdDSA\",\"typ\":\"antenna-fed+jwt\"}", payloads[i], sign_ed);
        assert_int_equal(ant_token_fed_verify(ant_bytes_str(tok), ant_signkey_public(g_ed),
                                              "site-b", "site-a", NOW, &got, NULL),
                         -EKEYREJECTED);
        free(tok);
    }
    ant_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eddsa_round_trip),
        cmocka_unit_test(test_sign_appends_and_limits),
        cmocka_unit_test(test_expired_is_rejected),
        cmocka_unit_test(test_not_yet_valid_is_rejected),
        cmocka_unit_test(test_missing_or_bad_exp_is_rejected),
        cmocka_unit_test(test_wrong_iss_aud_typ_sub_are_rejected),
        cmocka_unit_test(test_aud_array_and_type_confusion),
        cmocka_unit_test(test_lifetime_and_jti),
        cmocka_unit_test(test_alg_none_is_rejected),
        cmocka_unit_test(test_hs256_with_public_key_is_rejected),
        cmocka_unit_test(test_alg_outside_allowlist_is_rejected),
        cmocka_unit_test(test_bad_signature_is_rejected),
        cmocka_unit_test(test_every_byte_flip_is_rejected),
        cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_oversized_token_is_rejected),
        cmocka_unit_test(test_duplicate_json_keys_are_rejected),
        cmocka_unit_test(test_deep_nesting_is_rejected),
        cmocka_unit_test(test_non_base64url_characters_are_rejected),
        cmocka_unit_test(test_wrong_segment_count_is_rejected),
        cmocka_unit_test(test_crit_header_is_rejected),
        cmocka_unit_test(test_key_selection),
        cmocka_unit_test(test_rs256_and_es256_round_trip),
        cmocka_unit_test(test_rs256_es256_signature_tampering),
        cmocka_unit_test(test_alg_must_fit_key_type),
        cmocka_unit_test(test_oidc_refuses_antenna_tokens),
        cmocka_unit_test(test_jwks_parse_accepts_and_skips),
        cmocka_unit_test(test_jwks_parse_rejects_bad_keys),
        cmocka_unit_test(test_jwks_limits),
        cmocka_unit_test(test_jwks_load_from_file),
        cmocka_unit_test(test_b64url_is_strict),
        cmocka_unit_test(test_kid_is_rfc8037_thumbprint),
        cmocka_unit_test(test_job_token_round_trip),
        cmocka_unit_test(test_job_token_scope_must_be_read),
        cmocka_unit_test(test_fed_token_round_trip),
        cmocka_unit_test(test_fed_token_limits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
