/* Self-signed certificates with OpenSSL 3's EVP and X509 APIs. */
#include "gateway/tlscert.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

bool ant_hostname_is_valid(const char *h)
{
    uint8_t bin[16];
    size_t n = strlen(h);
    if (inet_pton(AF_INET, h, bin) == 1 || inet_pton(AF_INET6, h, bin) == 1) {
        return true;
    }
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return -EINVAL;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -EIO;
}

static int bio_to_buf(BIO *bio, struct ant_buf *out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    return n < 0 ? -EIO : ant_buf_append(out, data, (size_t)n);
}

int ant_tlscert_make(const char *cn, const char *const *hostnames, size_t n, unsigned days,
                     struct ant_buf *cert_pem, struct ant_buf *key_pem)
{
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    BIO *cb = NULL, *kb = NULL;
    struct ant_buf san = ANT_BUF_INIT(16384);
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    int rc = ant_buf_append_str(&san, "DNS:localhost,IP:127.0.0.1,IP:::1");
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t bin[16];
        if (!ant_hostname_is_valid(hostnames[i])) {
            rc = -EINVAL;
            break;
        }
        bool ip = inet_pton(AF_INET, hostnames[i], bin) == 1 ||
                  inet_pton(AF_INET6, hostnames[i], bin) == 1;
        rc = ant_buf_printf(&san, ",%s:%s", ip ? "IP" : "DNS", hostnames[i]);
    }
    rc = rc < 0 ? rc : ant_buf_terminate(&san);
    if (rc < 0) {
        goto out;
    }
    rc = -EIO;
    pkey = EVP_EC_gen("P-256");
    cert = X509_new();
    if (pkey == NULL || cert == NULL || RAND_bytes(serial, sizeof(serial)) != 1) {
        goto out;
    }
    serial[0] &= 0x7f; /* RFC 5280 §4.1.2.2: a positive serial of at most 20 octets */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_NAME *name = X509_get_subject_name(cert);
    if (bn == NULL || X509_set_version(cert, 2) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(cert), -300) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) == NULL ||
        X509_set_pubkey(cert, pkey) != 1 ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"antenna",
                                   -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(cert, name) != 1) {
        goto out;
    }
    /* The certificate is its own trust anchor (clients pin it with --cacert), so it is marked
     * as a CA that may only sign itself: pathlen 0. */
    if (add_ext(cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(cert, NID_key_usage, "critical,digitalSignature,keyCertSign") < 0 ||
        add_ext(cert, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
        add_ext(cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(cert, NID_subject_alt_name, (const char *)san.p) < 0) {
        goto out;
    }
    if (X509_sign(cert, pkey, EVP_sha256()) == 0) {
        goto out;
    }
    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_mem());
    if (cb == NULL || kb == NULL || PEM_write_bio_X509(cb, cert) != 1 ||
        PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        goto out;
    }
    rc = bio_to_buf(cb, cert_pem);
    rc = rc < 0 ? rc : bio_to_buf(kb, key_pem);
out:
    BIO_free(cb);
    BIO_free(kb);
    BN_free(bn);
    X509_free(cert);
    EVP_PKEY_free(pkey);
    ant_buf_fini(&san);
    return rc;
}

int ant_tlscert_fingerprint(struct ant_bytes pem, char out[65])
{
    BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.len);
    X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    uint8_t md[32];
    unsigned mdlen = 0;
    int rc = -EBADMSG;
    if (pem.len > INT32_MAX) {
        goto out;
    }
    if (cert != NULL && X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32) {
        ant_hex_encode(md, 32, out);
        rc = 0;
    }
out:
    X509_free(cert);
    BIO_free(bio);
    return rc;
}
