/* JSON Web Key Sets (RFC 7517/7518/8037): the public keys tokens are verified with, and the
 * signature check of one JWS signing input. */
#include "crypto/token.h"

#include "crypto/base/json.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KID_MAX 256
#define RSA_BITS_MIN 2048
#define RSA_BITS_MAX 8192
#define RSA_E_MAX 8 /* bytes; 65537 needs 3 */
#define EC_COORD_LEN 32

enum kty { KTY_OKP, KTY_RSA, KTY_EC };

struct jwk {
    enum kty kty;
    char *kid;    /* NULL: the key has none */
    unsigned alg; /* the JWK's own "alg" (one ANT_TOKEN_* bit), 0 if absent */
    uint8_t ed25519[ANT_KEY_LEN];
    EVP_PKEY *pkey; /* RSA and EC */
};

struct ant_jwks {
    struct jwk keys[ANT_JWKS_KEYS_MAX];
    size_t n;
};

int ant_b64url_decode(struct ant_bytes in, uint8_t *out, size_t max, size_t *outlen)
{
    return ant_b64_decode(in, true, NULL, out, max, outlen);
}

int ant_jwks_new(struct ant_jwks **out)
{
    struct ant_jwks *set = calloc(1, sizeof(*set));
    if (set == NULL) {
        return -ENOMEM;
    }
    *out = set;
    return 0;
}

void ant_jwks_free(struct ant_jwks *set)
{
    if (set == NULL) {
        return;
    }
    for (size_t i = 0; i < set->n; i++) {
        free(set->keys[i].kid);
        EVP_PKEY_free(set->keys[i].pkey);
    }
    free(set);
}

size_t ant_jwks_count(const struct ant_jwks *set)
{
    return set != NULL ? set->n : 0;
}

static unsigned alg_of_name(const char *name)
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
    return 0;
}

static enum kty kty_of_alg(unsigned alg)
{
    return alg == ANT_TOKEN_RS256 ? KTY_RSA : alg == ANT_TOKEN_ES256 ? KTY_EC : KTY_OKP;
}

static int set_kid(struct jwk *k, const char *kid)
{
    if (kid == NULL) {
        k->kid = NULL;
        return 0;
    }
    if (strlen(kid) > KID_MAX) {
        return -EINVAL;
    }
    k->kid = strdup(kid);
    return k->kid != NULL ? 0 : -ENOMEM;
}

int ant_jwks_add_ed25519(struct ant_jwks *set, const char *kid, const uint8_t pk[ANT_KEY_LEN])
{
    if (set == NULL || pk == NULL) {
        return -EINVAL;
    }
    if (set->n >= ANT_JWKS_KEYS_MAX) {
        return -E2BIG;
    }
    struct jwk *k = &set->keys[set->n];
    memset(k, 0, sizeof(*k));
    int rc = set_kid(k, kid);
    if (rc < 0) {
        return rc;
    }
    k->kty = KTY_OKP;
    memcpy(k->ed25519, pk, ANT_KEY_LEN);
    set->n++;
    return 0;
}

/* A base64url member of a JWK into out, exactly `want` bytes (0: up to max). */
static int member_b64(json_t *jk, const char *name, uint8_t *out, size_t max, size_t want,
                      size_t *got)
{
    const char *s = json_string_value(json_object_get(jk, name));
    size_t n = 0;
    if (s == NULL ||
        ant_b64url_decode(ant_bytes_of(s, json_string_length(json_object_get(jk, name))), out, max,
                          &n) < 0 ||
        (want != 0 && n != want)) {
        return -EBADMSG;
    }
    *got = n;
    return 0;
}

/* Builds a public EVP_PKEY of `type` from params and has OpenSSL check it (on the curve,
 * RSA modulus and exponent sane). */
static int pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pk = NULL;
    int rc = -EBADMSG;
    if (params == NULL || ctx == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        goto out;
    }
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        goto out;
    }
    *out = pk;
    pk = NULL;
    rc = 0;
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    OSSL_PARAM_free(params);
    return rc;
}

static int rsa_from_jwk(json_t *jk, EVP_PKEY **out)
{
    uint8_t n[RSA_BITS_MAX / 8], e[RSA_E_MAX];
    size_t nlen = 0, elen = 0;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    int rc = member_b64(jk, "n", n, sizeof(n), 0, &nlen);
    if (rc == 0) {
        rc = member_b64(jk, "e", e, sizeof(e), 0, &elen);
    }
    if (rc < 0) {
        goto out;
    }
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn_n == NULL || bn_e == NULL || bld == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* RFC 7518 §3.3: 2048 bits or larger */
    if (BN_num_bits(bn_n) < RSA_BITS_MIN || BN_num_bits(bn_n) > RSA_BITS_MAX) {
        rc = -EBADMSG;
        goto out;
    }
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
        rc = -ENOMEM;
        goto out;
    }
    rc = pkey_from_params("RSA", bld, out);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

static int ec_from_jwk(json_t *jk, EVP_PKEY **out)
{
    uint8_t pub[1 + 2 * EC_COORD_LEN];
    size_t n = 0;
    OSSL_PARAM_BLD *bld = NULL;
    pub[0] = 0x04; /* SEC 1 uncompressed point: 04 || x || y */
    int rc = member_b64(jk, "x", pub + 1, EC_COORD_LEN, EC_COORD_LEN, &n);
    if (rc == 0) {
        rc = member_b64(jk, "y", pub + 1 + EC_COORD_LEN, EC_COORD_LEN, EC_COORD_LEN, &n);
    }
    if (rc < 0) {
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub))) {
        rc = -ENOMEM;
        goto out;
    }
    rc = pkey_from_params("EC", bld, out);
out:
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

/* One member of "keys". 1 if added, 0 if skipped (not a signing key we know), <0 if a
 * key of a known type is malformed. */
static int add_jwk(struct ant_jwks *set, json_t *jk, size_t idx, struct ant_diag *d)
{
    const char *kty = json_string_value(json_object_get(jk, "kty"));
    const char *use = json_string_value(json_object_get(jk, "use"));
    json_t *jkid = json_object_get(jk, "kid");
    json_t *jalg = json_object_get(jk, "alg");
    const char *crv = json_string_value(json_object_get(jk, "crv"));
    struct jwk k = {0};
    size_t n = 0;
    int rc;
    if (!json_is_object(jk) || kty == NULL || (jkid != NULL && !json_is_string(jkid)) ||
        (jalg != NULL && !json_is_string(jalg)) ||
        (json_object_get(jk, "use") != NULL && use == NULL)) {
        ant_diag_set(d, "JWKS key %zu: kty, kid, alg and use must be strings", idx);
        return -EBADMSG;
    }
    if (use != NULL && strcmp(use, "sig") != 0) {
        return 0; /* an encryption key */
    }
    if (jalg != NULL) {
        k.alg = alg_of_name(json_string_value(jalg));
        if (k.alg == 0) {
            return 0; /* meant for an algorithm we do not accept */
        }
    }
    if (strcmp(kty, "RSA") == 0) {
        k.kty = KTY_RSA;
    } else if (strcmp(kty, "EC") == 0 && crv != NULL && strcmp(crv, "P-256") == 0) {
        k.kty = KTY_EC;
    } else if (strcmp(kty, "OKP") == 0 && crv != NULL && strcmp(crv, "Ed25519") == 0) {
        k.kty = KTY_OKP;
    } else {
        return 0;
    }
    if (k.alg != 0 && kty_of_alg(k.alg) != k.kty) {
        ant_diag_set(d, "JWKS key %zu: alg does not fit kty", idx);
        return -EBADMSG;
    }
    if (set->n >= ANT_JWKS_KEYS_MAX) {
        ant_diag_set(d, "JWKS holds more than %d keys", ANT_JWKS_KEYS_MAX);
        return -E2BIG;
    }
    switch (k.kty) {
    case KTY_RSA:
        rc = rsa_from_jwk(jk, &k.pkey);
        break;
    case KTY_EC:
        rc = ec_from_jwk(jk, &k.pkey);
        break;
    default:
        rc = member_b64(jk, "x", k.ed25519, ANT_KEY_LEN, ANT_KEY_LEN, &n);
        break;
    }
    if (rc < 0) {
        ant_diag_set(d, "JWKS key %zu (%s): invalid key material", idx, kty);
        return rc;
    }
    rc = set_kid(&k, json_string_value(jkid));
    if (rc < 0) {
        EVP_PKEY_free(k.pkey);
        ant_diag_set(d, "JWKS key %zu: kid too long", idx);
        return rc == -EINVAL ? -EBADMSG : rc;
    }
    set->keys[set->n++] = k;
    return 1;
}

int ant_jwks_parse(struct ant_bytes doc, struct ant_jwks **out, struct ant_diag *d)
{
    struct ant_jwks *set = NULL;
    json_t *root = NULL;
    struct ant_diag scratch = {{0}};
    int rc;
    if (doc.len > ANT_JWKS_MAX) {
        ant_diag_set(d, "JWKS larger than %d bytes", ANT_JWKS_MAX);
        return -E2BIG;
    }
    /* a JWK nests at most {"keys":[{"x5c":[...]}]}; duplicates and trailing data refused */
    if (ant_json_parse(doc, ANT_JWKS_MAX, ANT_TOKEN_JSON_DEPTH_MAX, &root, &scratch) < 0) {
        ant_diag_set(d, "JWKS is not valid JSON: %s", scratch.msg);
        rc = -EBADMSG;
        goto out;
    }
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_object(root) || !json_is_array(keys)) {
        ant_diag_set(d, "JWKS is not a JSON object with a \"keys\" array");
        rc = -EBADMSG;
        goto out;
    }
    if (json_array_size(keys) > 4 * ANT_JWKS_KEYS_MAX) {
        ant_diag_set(d, "JWKS lists too many keys");
        rc = -E2BIG;
        goto out;
    }
    rc = ant_jwks_new(&set);
    if (rc < 0) {
        goto out;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
        rc = add_jwk(set, json_array_get(keys, i), i, d);
        if (rc < 0) {
            goto out;
        }
    }
    if (set->n == 0) {
        ant_diag_set(d, "JWKS holds no RS256, ES256 or EdDSA signing key");
        rc = -ENOENT;
        goto out;
    }
    *out = set;
    set = NULL;
    rc = 0;
out:
    ant_jwks_free(set);
    json_decref(root);
    return rc;
}

static const struct jwk *select_key(const struct ant_jwks *set, unsigned alg, const char *kid)
{
    const struct jwk *only = NULL;
    size_t fitting = 0;
    if (kid != NULL) {
        for (size_t i = 0; i < set->n; i++) {
            if (set->keys[i].kid != NULL && strcmp(set->keys[i].kid, kid) == 0) {
                return &set->keys[i]; /* its type is checked against alg by the caller */
            }
        }
    }
    for (size_t i = 0; i < set->n; i++) {
        if (set->keys[i].kty == kty_of_alg(alg)) {
            only = &set->keys[i];
            fitting++;
        }
    }
    return fitting == 1 ? only : NULL;
}

static int verify_evp(EVP_PKEY *pkey, struct ant_bytes input, const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int rc = -EKEYREJECTED;
    if (mctx == NULL) {
        return -ENOMEM;
    }
    if (EVP_DigestVerifyInit_ex(mctx, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
        EVP_DigestVerify(mctx, sig, siglen, input.p, input.len) == 1) {
        rc = 0;
    }
    EVP_MD_CTX_free(mctx);
    return rc;
}

/* JWS ES256 signatures are r||s, 32 bytes each (RFC 7518 §3.4); EVP wants DER. */
static int verify_es256(EVP_PKEY *pkey, struct ant_bytes input, struct ant_bytes sig)
{
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    uint8_t *der = NULL;
    int derlen, rc = -EKEYREJECTED;
    if (sig.len != 2 * EC_COORD_LEN) {
        goto out;
    }
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig.p, EC_COORD_LEN, NULL);
    s = BN_bin2bn(sig.p + EC_COORD_LEN, EC_COORD_LEN, NULL);
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        rc = -ENOMEM;
        goto out;
    }
    r = s = NULL; /* owned by es now */
    derlen = i2d_ECDSA_SIG(es, &der);
    if (derlen <= 0) {
        rc = -ENOMEM;
        goto out;
    }
    rc = verify_evp(pkey, input, der, (size_t)derlen);
out:
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(s);
    return rc;
}

int ant_jwks_verify(const struct ant_jwks *set, unsigned alg, const char *kid,
                    struct ant_bytes input, struct ant_bytes sig, struct ant_diag *d)
{
    const struct jwk *k;
    if (set == NULL ||
        (alg != ANT_TOKEN_EDDSA && alg != ANT_TOKEN_RS256 && alg != ANT_TOKEN_ES256)) {
        return -EKEYREJECTED;
    }
    k = select_key(set, alg, kid);
    if (k == NULL) {
        ant_diag_set(d, "no key for the token's kid and alg");
        return -EKEYREJECTED;
    }
    /* Algorithm confusion: a key is used only with the algorithm its type is for. */
    if (k->kty != kty_of_alg(alg) || (k->alg != 0 && k->alg != alg)) {
        ant_diag_set(d, "the token's alg does not fit the key's type");
        return -EKEYREJECTED;
    }
    int rc;
    switch (alg) {
    case ANT_TOKEN_EDDSA:
        rc = sig.len == ANT_SIG_LEN && ant_sig_verify(k->ed25519, input, sig.p) == 0
                 ? 0
                 : -EKEYREJECTED;
        break;
    case ANT_TOKEN_RS256:
        /* PKCS#1 v1.5 signatures are exactly the modulus size */
        rc = sig.len == (size_t)EVP_PKEY_get_size(k->pkey)
                 ? verify_evp(k->pkey, input, sig.p, sig.len)
                 : -EKEYREJECTED;
        break;
    default:
        rc = verify_es256(k->pkey, input, sig);
        break;
    }
    if (rc == -EKEYREJECTED) {
        ant_diag_set(d, "bad signature");
    }
    return rc;
}

int ant_jwks_load(int dirfd, const char *path, struct ant_jwks **out, struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_JWKS_MAX);
    int fd = -1, rc;
    if (path == NULL || out == NULL) {
        return -EINVAL;
    }
    fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    rc = fd < 0 ? -errno : ant_read_all(fd, &raw);
    if (rc < 0) {
        if (rc == -E2BIG) {
            ant_diag_set(d, "JWKS file larger than %d bytes", ANT_JWKS_MAX);
        } else {
            ant_diag_set(d, "cannot read the JWKS file: %s", strerror(-rc));
        }
        goto out;
    }
    rc = ant_jwks_parse(ant_buf_view(&raw), out, d);
out:
    ant_buf_fini(&raw);
    ant_close(fd);
    return rc;
}
