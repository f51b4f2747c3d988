/* Key files in the reference crypt4gh tool's formats (c4gh-vectors/FORMAT-NOTES.md §9):
 * armored public keys (base64 of 32 bytes) and "c4gh-v1" private key blobs. */
#include "crypto/keys.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#define C4GH_MAGIC "c4gh-v1"
#define C4GH_MAGIC_LEN 7
#define SALT_LEN 16
#define NONCE_LEN crypto_aead_chacha20poly1305_ietf_NPUBBYTES /* 12 */
#define TAG_LEN crypto_aead_chacha20poly1305_ietf_ABYTES      /* 16 */
#define SEALED_LEN (NONCE_LEN + ANT_KEY_LEN + TAG_LEN)       /* 60 */
/* Comments are labels for humans ("recipient2"); a long one is a sign of a wrong file. */
#define COMMENT_MAX 1024
/* Largest blob we write or read: magic, kdf, options, cipher, sealed key, comment. */
#define BLOB_MAX (C4GH_MAGIC_LEN + 2 + 32 + 2 + 4 + SALT_LEN + 2 + 32 + 2 + SEALED_LEN + 2 + \
                  COMMENT_MAX)
#define LABEL_MAX 64
#define PASSPHRASE_MAX 4096
/* scrypt parameters are fixed by the reference (N=2^14, r=8, p=1: 16 MiB); the rounds field
 * is written 0 and ignored. */
#define SCRYPT_N 16384
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024 * 1024)
/* PBKDF2 rounds come from the file: bound the work an attacker-supplied file can ask for. */
#define PBKDF2_ROUNDS_MAX 10000000u

enum kdf { KDF_NONE, KDF_SCRYPT, KDF_BCRYPT, KDF_PBKDF2 };

static const char *const kdf_names[] = {
    [KDF_NONE] = "none",
    [KDF_SCRYPT] = "scrypt",
    [KDF_BCRYPT] = "bcrypt",
    [KDF_PBKDF2] = "pbkdf2_hmac_sha256",
};

static const char ws[] = " \t\r\n\v\f";

static bool is_ws(uint8_t c)
{
    return c != 0 && strchr(ws, c) != NULL;
}

static struct ant_bytes trim(struct ant_bytes b)
{
    size_t start = 0, end = b.len;
    while (start < end && is_ws(b.p[start])) {
        start++;
    }
    while (end > start && is_ws(b.p[end - 1])) {
        end--;
    }
    return ant_bytes_of(b.p + start, end - start);
}

/* The next line (without its '\n') and the offset where it starts. */
static bool next_line(struct ant_rd *rd, struct ant_bytes *line, size_t *start)
{
    if (ant_rd_left(rd) == 0) {
        return false;
    }
    *start = rd->off;
    const uint8_t *p = rd->p + rd->off;
    const uint8_t *nl = memchr(p, '\n', ant_rd_left(rd));
    size_t n = nl != NULL ? (size_t)(nl - p) : ant_rd_left(rd);
    *line = ant_bytes_of(p, n);
    rd->off += nl != NULL ? n + 1 : n;
    return true;
}

static bool label_ok(const char *label)
{
    if (label == NULL || label[0] == '\0' || strlen(label) > LABEL_MAX) {
        return false;
    }
    for (const char *c = label; *c != '\0'; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == ' ')) {
            return false;
        }
    }
    return true;
}

/* Finds "-----BEGIN <label>-----" ... "-----END <label>-----" anywhere in text, each on its own
 * line (surrounding whitespace ignored), and returns the bytes between as `body`. Other
 * blocks before or after are skipped, as site.sec holds two. */
static int armor_find(struct ant_bytes text, const char *label, struct ant_bytes *body,
                      struct ant_diag *d)
{
    char begin[LABEL_MAX + 32], end[LABEL_MAX + 32];
    struct ant_rd rd = ant_rd_init(text);
    struct ant_bytes line;
    size_t start, body_start = 0;
    bool inside = false;
    if (!label_ok(label)) {
        return -EINVAL;
    }
    snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    snprintf(end, sizeof(end), "-----END %s-----", label);
    while (next_line(&rd, &line, &start)) {
        struct ant_bytes t = trim(line);
        if (!inside) {
            if (ant_bytes_eq_str(t, begin)) {
                inside = true;
                body_start = rd.off;
            }
            continue;
        }
        if (ant_bytes_eq_str(t, end)) {
            *body = ant_bytes_of(text.p + body_start, start - body_start);
            return 0;
        }
        if (t.len >= 5 && memcmp(t.p, "-----", 5) == 0) {
            ant_diag_set(d, "%s block: unexpected armor line before its END line", label);
            return -EBADMSG;
        }
    }
    if (inside) {
        ant_diag_set(d, "%s block has no END line (truncated file?)", label);
        return -EBADMSG;
    }
    ant_diag_set(d, "no %s block in the file", label);
    return -ENOENT;
}

/* Base64 (standard alphabet, padded; line breaks and blanks ignored) into out[0..max). */
static int b64_decode(struct ant_bytes body, uint8_t *out, size_t max, size_t *outlen)
{
    return ant_b64_decode(body, false, ws, out, max, outlen);
}

/* A uint16 big-endian length, then that many bytes (FORMAT-NOTES §9 "string"). */
static int rd_string(struct ant_rd *rd, struct ant_bytes *s)
{
    uint16_t n;
    if (ant_rd_u16be(rd, &n) < 0 || ant_rd_view(rd, n, s) < 0) {
        return -EBADMSG;
    }
    return 0;
}

static int derive(enum kdf kdf, const char *passphrase, const uint8_t salt[SALT_LEN],
                  uint32_t rounds, uint8_t key[ANT_KEY_LEN])
{
    size_t plen = strlen(passphrase);
    if (plen > PASSPHRASE_MAX) {
        return -EINVAL;
    }
    switch (kdf) {
    case KDF_SCRYPT:
        if (EVP_PBE_scrypt(passphrase, plen, salt, SALT_LEN, SCRYPT_N, SCRYPT_R, SCRYPT_P,
                           SCRYPT_MAXMEM, key, ANT_KEY_LEN) != 1) {
            return -ENOMEM;
        }
        return 0;
    case KDF_PBKDF2:
        if (PKCS5_PBKDF2_HMAC(passphrase, (int)plen, salt, SALT_LEN, (int)rounds, EVP_sha256(),
                              ANT_KEY_LEN, key) != 1) {
            return -ENOMEM;
        }
        return 0;
    default:
        return -ENOTSUP;
    }
}

int ant_keyfile_secret_decode(struct ant_bytes text, const char *label, const char *passphrase,
                              uint8_t secret[ANT_KEY_LEN], struct ant_diag *d)
{
    uint8_t blob[BLOB_MAX];
    uint8_t key[ANT_KEY_LEN];
    uint8_t plain[ANT_KEY_LEN];
    size_t blen = 0;
    struct ant_bytes body, kdfname, opts = ANT_BYTES_NULL, cipher, sealed;
    uint8_t salt[SALT_LEN];
    uint32_t rounds = 0;
    enum kdf kdf = KDF_NONE;
    bool found = false, chacha;
    unsigned long long plen = 0;
    uint8_t magic[C4GH_MAGIC_LEN];
    struct ant_rd rd;
    int rc = armor_find(text, label, &body, d);
    if (rc < 0) {
        goto out;
    }
    rc = b64_decode(body, blob, sizeof(blob), &blen);
    if (rc < 0) {
        ant_diag_set(d, "%s block: invalid base64 or too long", label);
        goto out;
    }
    rd = ant_rd_init(ant_bytes_of(blob, blen));
    if (ant_rd_copy(&rd, magic, sizeof(magic)) < 0 ||
        memcmp(magic, C4GH_MAGIC, C4GH_MAGIC_LEN) != 0) {
        ant_diag_set(d, "%s block: not a c4gh-v1 private key", label);
        rc = -EBADMSG;
        goto out;
    }
    rc = rd_string(&rd, &kdfname);
    if (rc < 0) {
        ant_diag_set(d, "%s block: truncated KDF name", label);
        goto out;
    }
    for (size_t i = 0; i < ANT_ARRAY_LEN(kdf_names); i++) {
        if (ant_bytes_eq_str(kdfname, kdf_names[i])) {
            kdf = (enum kdf)i;
            found = true;
        }
    }
    if (!found) {
        ant_diag_set(d, "%s block: unknown KDF", label);
        rc = -ENOTSUP;
        goto out;
    }
    if (kdf != KDF_NONE) {
        /* kdfoptions: rounds (u32 BE) || salt, present only with a KDF */
        struct ant_rd ord;
        if (rd_string(&rd, &opts) < 0 || opts.len != 4 + SALT_LEN) {
            ant_diag_set(d, "%s block: bad KDF options", label);
            rc = -EBADMSG;
            goto out;
        }
        ord = ant_rd_init(opts);
        if (ant_rd_u32be(&ord, &rounds) < 0 || ant_rd_copy(&ord, salt, SALT_LEN) < 0) {
            rc = -EBADMSG;
            goto out;
        }
    }
    if (rd_string(&rd, &cipher) < 0) {
        ant_diag_set(d, "%s block: truncated cipher name", label);
        rc = -EBADMSG;
        goto out;
    }
    if (ant_bytes_eq_str(cipher, "chacha20_poly1305")) {
        chacha = true;
    } else if (ant_bytes_eq_str(cipher, "none")) {
        chacha = false;
    } else {
        ant_diag_set(d, "%s block: unknown cipher", label);
        rc = -ENOTSUP;
        goto out;
    }
    /* The reference never checks these agree; a KDF without a cipher would hand out the
     * blob as the key and a cipher without a KDF has no key to open it with. */
    if (chacha != (kdf != KDF_NONE)) {
        ant_diag_set(d, "%s block: KDF %s with cipher %s is inconsistent", label,
                     kdf_names[kdf], chacha ? "chacha20_poly1305" : "none");
        rc = -EBADMSG;
        goto out;
    }
    if (rd_string(&rd, &sealed) < 0 || sealed.len != (chacha ? SEALED_LEN : ANT_KEY_LEN)) {
        ant_diag_set(d, "%s block: private key blob has the wrong size", label);
        rc = -EBADMSG;
        goto out;
    }
    /* What follows (an optional comment) is ignored, as the reference does. */
    if (!chacha) {
        memcpy(secret, sealed.p, ANT_KEY_LEN);
        rc = 0;
        goto out;
    }
    if (kdf == KDF_BCRYPT) {
        ant_diag_set(d,
                     "%s block: the key is protected with bcrypt_pbkdf, which antenna does not "
                     "implement; re-encrypt it with scrypt (`crypt4gh-keygen` where Python has "
                     "hashlib.scrypt) or make a new key with `antenna c4gh keygen`",
                     label);
        rc = -ENOTSUP;
        goto out;
    }
    if (kdf == KDF_PBKDF2 && (rounds == 0 || rounds > PBKDF2_ROUNDS_MAX)) {
        ant_diag_set(d, "%s block: PBKDF2 rounds %u outside 1..%u", label, rounds,
                     PBKDF2_ROUNDS_MAX);
        rc = -EBADMSG;
        goto out;
    }
    if (passphrase == NULL) {
        ant_diag_set(d, "%s block is encrypted: a passphrase is needed", label);
        rc = -ENOKEY;
        goto out;
    }
    if (sodium_init() < 0) {
        rc = -ENOMEM;
        goto out;
    }
    rc = derive(kdf, passphrase, salt, rounds, key);
    if (rc < 0) {
        ant_diag_set(d, "%s block: key derivation failed", label);
        goto out;
    }
    if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, sealed.p + NONCE_LEN,
                                                  sealed.len - NONCE_LEN, NULL, 0, sealed.p,
                                                  key) != 0 ||
        plen != ANT_KEY_LEN) {
        ant_diag_set(d, "%s block: wrong passphrase (or a damaged key file)", label);
        rc = -EKEYREJECTED;
        goto out;
    }
    memcpy(secret, plain, ANT_KEY_LEN);
    rc = 0;
out:
    sodium_memzero(blob, sizeof(blob));
    sodium_memzero(key, sizeof(key));
    sodium_memzero(plain, sizeof(plain));
    return rc;
}

static int put(uint8_t *blob, size_t *off, const void *p, size_t n)
{
    if (n > BLOB_MAX - *off) {
        return -E2BIG;
    }
    memcpy(blob + *off, p, n);
    *off += n;
    return 0;
}

static int put_string(uint8_t *blob, size_t *off, const void *p, size_t n)
{
    uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    if (n > UINT16_MAX) {
        return -E2BIG;
    }
    int rc = put(blob, off, len, 2);
    return rc < 0 ? rc : put(blob, off, p, n);
}

static int armor_append(struct ant_buf *out, const char *label, const uint8_t *bin, size_t n)
{
    char b64[sodium_base64_ENCODED_LEN(BLOB_MAX, sodium_base64_VARIANT_ORIGINAL)];
    size_t start = out->len;
    int rc;
    if (n > BLOB_MAX) {
        return -E2BIG;
    }
    sodium_bin2base64(b64, sizeof(b64), bin, n, sodium_base64_VARIANT_ORIGINAL);
    /* One base64 line, as the reference writes it. */
    if ((rc = ant_buf_append_str(out, "-----BEGIN ")) < 0 ||
        (rc = ant_buf_append_str(out, label)) < 0 ||
        (rc = ant_buf_append_str(out, "-----\n")) < 0 || (rc = ant_buf_append_str(out, b64)) < 0 ||
        (rc = ant_buf_append_str(out, "\n-----END ")) < 0 ||
        (rc = ant_buf_append_str(out, label)) < 0 ||
        (rc = ant_buf_append_str(out, "-----\n")) < 0) {
        /* leave `out` as it was, without a half-written (possibly secret) block */
        sodium_memzero(out->p + start, out->len - start);
        out->len = start;
    }
    sodium_memzero(b64, sizeof(b64));
    return rc;
}

int ant_keyfile_secret_encode(const uint8_t secret[ANT_KEY_LEN], const char *label,
                              const char *passphrase, const char *comment, struct ant_buf *out)
{
    uint8_t blob[BLOB_MAX];
    uint8_t key[ANT_KEY_LEN];
    uint8_t sealed[SEALED_LEN];
    uint8_t opts[4 + SALT_LEN] = {0}; /* rounds 0: ignored for scrypt */
    size_t off = 0;
    bool encrypt = passphrase != NULL && passphrase[0] != '\0';
    size_t clen = comment != NULL ? strlen(comment) : 0;
    int rc;
    if (secret == NULL || out == NULL || !label_ok(label) || clen > COMMENT_MAX ||
        (encrypt && strlen(passphrase) > PASSPHRASE_MAX)) {
        rc = -EINVAL;
        goto out;
    }
    if (sodium_init() < 0) {
        rc = -ENOMEM;
        goto out;
    }
    rc = put(blob, &off, C4GH_MAGIC, C4GH_MAGIC_LEN);
    if (rc < 0) {
        goto out;
    }
    if (encrypt) {
        /* scrypt: what crypt4gh-keygen writes wherever it can */
        unsigned long long slen = 0;
        randombytes_buf(opts + 4, SALT_LEN);
        randombytes_buf(sealed, NONCE_LEN);
        rc = derive(KDF_SCRYPT, passphrase, opts + 4, 0, key);
        if (rc < 0) {
            goto out;
        }
        if (crypto_aead_chacha20poly1305_ietf_encrypt(sealed + NONCE_LEN, &slen, secret,
                                                      ANT_KEY_LEN, NULL, 0, NULL, sealed,
                                                      key) != 0) {
            rc = -EINVAL;
            goto out;
        }
        if ((rc = put_string(blob, &off, "scrypt", 6)) < 0 ||
            (rc = put_string(blob, &off, opts, sizeof(opts))) < 0 ||
            (rc = put_string(blob, &off, "chacha20_poly1305", 17)) < 0 ||
            (rc = put_string(blob, &off, sealed, SEALED_LEN)) < 0) {
            goto out;
        }
    } else {
        if ((rc = put_string(blob, &off, "none", 4)) < 0 ||
            (rc = put_string(blob, &off, "none", 4)) < 0 ||
            (rc = put_string(blob, &off, secret, ANT_KEY_LEN)) < 0) {
            goto out;
        }
    }
    if (clen > 0) {
        rc = put_string(blob, &off, comment, clen);
        if (rc < 0) {
            goto out;
        }
    }
    rc = armor_append(out, label, blob, off);
out:
    sodium_memzero(blob, sizeof(blob));
    sodium_memzero(key, sizeof(key));
    sodium_memzero(sealed, sizeof(sealed));
    return rc;
}

int ant_keyfile_public_encode(const uint8_t pub[ANT_KEY_LEN], const char *label,
                              struct ant_buf *out)
{
    if (pub == NULL || out == NULL || !label_ok(label)) {
        return -EINVAL;
    }
    return armor_append(out, label, pub, ANT_KEY_LEN);
}

int ant_keyfile_public_decode(struct ant_bytes text, const char *label, uint8_t pub[ANT_KEY_LEN],
                              struct ant_diag *d)
{
    struct ant_bytes body;
    uint8_t tmp[ANT_KEY_LEN];
    size_t n = 0;
    int rc = armor_find(text, label, &body, d);
    if (rc < 0) {
        return rc;
    }
    /* The reference does not check the length; a key of any other size is not X25519. */
    if (b64_decode(body, tmp, sizeof(tmp), &n) < 0 || n != ANT_KEY_LEN) {
        ant_diag_set(d, "%s block: not the base64 of a 32-byte key", label);
        return -EBADMSG;
    }
    memcpy(pub, tmp, ANT_KEY_LEN);
    return 0;
}
