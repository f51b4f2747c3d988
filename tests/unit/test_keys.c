/* Unit tests for crypto/keys.h: key objects, the reference tool's key files, site keys. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keys.h"

#define PASS "antenna-test"
#define R2_SECRET "f4e54cff72c7c478b9fd15ea9e47c51ac59b05f2d6a37829f1a0cf2cd6c89a33"
#define R2_PUBLIC "bfa019e6bdfa0e8897988daf6325bcd3ec6110e9b81dd6fb2bdc6df71cba060d"

struct vector_key {
    const char *sec, *pub, *secret_hex, *public_hex;
    bool encrypted;
};

static const struct vector_key vector_keys[] = {
    {"keys/sender.sec", "keys/sender.pub",
     "647083531ef0a7e3d59e9c9e5e886c3f49a26ab023de82a8aaeac7509845f1be",
     "15d78cc9917a6fd1917264aa25aa98fb3074ab7e0b5f662e64055255e4e81661", false},
    {"keys/recipient1.sec", "keys/recipient1.pub",
     "159f288f433e9541760da05c22ada9f6e4e00f6b28317c7ba83371b1fd475d56",
     "fb5a3642ac0a59b00da91ddd89423ff500aa51941497fded306e9ebc96b7bc63", false},
    {"keys/recipient2.sec", "keys/recipient2.pub", R2_SECRET, R2_PUBLIC, true},
    {"keys/recipient2.pbkdf2.sec", "keys/recipient2.pub", R2_SECRET, R2_PUBLIC, true},
};

static const char *const all_key_files[] = {
    "keys/sender.sec",     "keys/sender.pub",        "keys/recipient1.sec",
    "keys/recipient1.pub", "keys/recipient2.sec",    "keys/recipient2.pbkdf2.sec",
    "keys/recipient2.pub", "keys/recipient2.bcrypt.sec",
};

static void hex32(const char *hex, uint8_t out[ANT_KEY_LEN])
{
    assert_int_equal(ant_hex_decode(ant_bytes_str(hex), out, ANT_KEY_LEN), 0);
}

static void test_vector_keys_give_manifest_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < ANT_ARRAY_LEN(vector_keys); i++) {
        const struct vector_key *v = &vector_keys[i];
        struct ant_key *k = NULL;
        struct ant_diag d = {{0}};
        uint8_t want_sk[ANT_KEY_LEN], want_pk[ANT_KEY_LEN], pub[ANT_KEY_LEN];
        hex32(v->secret_hex, want_sk);
        hex32(v->public_hex, want_pk);
        int rc = ant_key_load(AT_FDCWD, test_vector_path(v->sec), v->encrypted ? PASS : NULL, &k,
                              &d);
        if (rc != 0) {
            fail_msg("%s: %d %s", v->sec, rc, d.msg);
        }
        assert_memory_equal(ant_key_secret(k), want_sk, ANT_KEY_LEN);
        assert_memory_equal(ant_key_public(k), want_pk, ANT_KEY_LEN);
        ant_key_free(k);
        assert_int_equal(ant_pubkey_load(AT_FDCWD, test_vector_path(v->pub), pub, &d), 0);
        assert_memory_equal(pub, want_pk, ANT_KEY_LEN);
    }
}

static void test_unencrypted_key_ignores_passphrase(void **state)
{
    (void)state;
    struct ant_key *k = NULL;
    assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path("keys/sender.sec"), PASS, &k, NULL),
                     0);
    ant_key_free(k);
}

static void test_wrong_passphrase_is_rejected(void **state)
{
    (void)state;
    const char *files[] = {"keys/recipient2.sec", "keys/recipient2.pbkdf2.sec"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(files); i++) {
        struct ant_key *k = NULL;
        struct ant_diag d = {{0}};
        assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path(files[i]), "antenna-tesT", &k,
                                      &d),
                         -EKEYREJECTED);
        assert_null(k);
        assert_non_null(strstr(d.msg, "passphrase"));
        assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path(files[i]), "", &k, NULL),
                         -EKEYREJECTED);
    }
}

static void test_missing_passphrase_is_enokey(void **state)
{
    (void)state;
    const char *files[] = {"keys/recipient2.sec", "keys/recipient2.pbkdf2.sec"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(files); i++) {
        struct ant_key *k = NULL;
        assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path(files[i]), NULL, &k, NULL),
                         -ENOKEY);
        assert_null(k);
    }
}

static void test_bcrypt_is_refused_with_advice(void **state)
{
    (void)state;
    struct ant_key *k = NULL;
    struct ant_diag d = {{0}};
    assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path("keys/recipient2.bcrypt.sec"), PASS,
                                  &k, &d),
                     -ENOTSUP);
    assert_null(k);
    assert_non_null(strstr(d.msg, "bcrypt"));
    assert_non_null(strstr(d.msg, "keygen"));
    assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path("keys/recipient2.bcrypt.sec"), NULL,
                                  &k, NULL),
                     -ENOTSUP);
}

static void round_trip(const char *pass, const char *comment)
{
    uint8_t secret[ANT_KEY_LEN], back[ANT_KEY_LEN];
    struct ant_buf out = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    randombytes_buf(secret, sizeof(secret));
    assert_int_equal(ant_keyfile_secret_encode(secret, ANT_KEYFILE_C4GH_SECRET, pass, comment,
                                               &out),
                     0);
    /* one base64 line between the armor lines, as the reference writes */
    int lines = 0;
    for (size_t i = 0; i < out.len; i++) {
        lines += out.p[i] == '\n';
    }
    assert_int_equal(lines, 3);
    uint8_t *copy = test_memdup(out.p, out.len);
    assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(copy, out.len),
                                               ANT_KEYFILE_C4GH_SECRET, pass, back, NULL),
                     0);
    assert_memory_equal(secret, back, ANT_KEY_LEN);
    if (pass != NULL && pass[0] != '\0') {
        assert_non_null(memmem(out.p, out.len, "BEGIN CRYPT4GH PRIVATE KEY", 26));
        assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(copy, out.len),
                                                   ANT_KEYFILE_C4GH_SECRET, NULL, back, NULL),
                         -ENOKEY);
    }
    /* another label is not found in this file */
    assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(copy, out.len),
                                               ANT_KEYFILE_ED25519_SECRET, pass, back, NULL),
                     -ENOENT);
    free(copy);
    ant_buf_wipe_fini(&out);
}

static void test_secret_round_trips(void **state)
{
    (void)state;
    round_trip(NULL, NULL);
    round_trip(NULL, "a comment");
    round_trip("", "empty passphrase means unencrypted");
    round_trip(PASS, NULL);
    round_trip("correct horse battery staple", "with comment");
}

static void test_unencrypted_encoding_matches_reference(void **state)
{
    (void)state;
    /* sender.sec is kdf none, no comment: our encoder must give the same bytes */
    size_t len = 0;
    uint8_t *file = test_read_file(test_vector_path("keys/sender.sec"), &len);
    uint8_t secret[ANT_KEY_LEN];
    struct ant_buf out = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    hex32(vector_keys[0].secret_hex, secret);
    assert_int_equal(ant_keyfile_secret_encode(secret, ANT_KEYFILE_C4GH_SECRET, NULL, NULL, &out),
                     0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.p, file, len);
    ant_buf_fini(&out);
    free(file);
    file = test_read_file(test_vector_path("keys/recipient1.pub"), &len);
    uint8_t pub[ANT_KEY_LEN];
    hex32(vector_keys[1].public_hex, pub);
    assert_int_equal(ant_keyfile_public_encode(pub, ANT_KEYFILE_C4GH_PUBLIC, &out), 0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.p, file, len);
    ant_buf_fini(&out);
    free(file);
}

static int decode_any(const uint8_t *text, size_t len, const char *path)
{
    uint8_t v[ANT_KEY_LEN];
    struct ant_bytes b = ant_bytes_of(text, len);
    if (strstr(path, ".pub") != NULL) {
        return ant_keyfile_public_decode(b, ANT_KEYFILE_C4GH_PUBLIC, v, NULL);
    }
    return ant_keyfile_secret_decode(b, ANT_KEYFILE_C4GH_SECRET, PASS, v, NULL);
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    for (size_t f = 0; f < ANT_ARRAY_LEN(all_key_files); f++) {
        size_t len = 0;
        uint8_t *file = test_read_file(test_vector_path(all_key_files[f]), &len);
        assert_true(len > 1 && file[len - 1] == '\n');
        /* Dropping only the final newline leaves a complete file. */
        for (size_t n = 0; n + 1 < len; n++) {
            uint8_t *cut = test_memdup(file, n);
            int rc = decode_any(cut, n, all_key_files[f]);
            if (rc == 0) {
                fail_msg("%s cut to %zu bytes was accepted", all_key_files[f], n);
            }
            free(cut);
        }
        free(file);
    }
}

/* Wraps a decoded blob back into an armored private key. */
static uint8_t *armor_blob(const uint8_t *blob, size_t n, size_t *len)
{
    char b64[1024];
    char *text = malloc(2048);
    assert_non_null(text);
    sodium_bin2base64(b64, sizeof(b64), blob, n, sodium_base64_VARIANT_ORIGINAL);
    int m = snprintf(text, 2048,
                     "-----BEGIN CRYPT4GH PRIVATE KEY-----\n%s\n-----END CRYPT4GH PRIVATE KEY-----\n",
                     b64);
    uint8_t *exact = test_memdup(text, (size_t)m);
    free(text);
    *len = (size_t)m;
    return exact;
}

static size_t unarmor(const char *path, uint8_t *blob, size_t max)
{
    size_t len = 0, n = 0;
    uint8_t *file = test_read_file(test_vector_path(path), &len);
    char *line = strchr((char *)file, '\n');
    assert_non_null(line);
    line++;
    char *end = strchr(line, '\n');
    assert_int_equal(sodium_base642bin(blob, max, line, (size_t)(end - line), NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    free(file);
    return n;
}

static void test_every_byte_flip_of_encrypted_blob_is_refused(void **state)
{
    (void)state;
    uint8_t blob[512], out[ANT_KEY_LEN];
    /* pbkdf2 (100000 rounds) keeps this quick; layout: magic 7, kdf 2+18, opts 2+20,
     * cipher 2+17, sealed 2+60, then the comment */
    size_t n = unarmor("keys/recipient2.pbkdf2.sec", blob, sizeof(blob));
    const size_t sealed_at = 7 + 20 + 22 + 19 + 2, comment_at = sealed_at + 60;
    assert_true(n > comment_at);
    for (size_t i = 0; i < comment_at; i++) {
        size_t tlen;
        blob[i] ^= 0x01;
        uint8_t *text = armor_blob(blob, n, &tlen);
        blob[i] ^= 0x01;
        int rc = ant_keyfile_secret_decode(ant_bytes_of(text, tlen), ANT_KEYFILE_C4GH_SECRET, PASS,
                                           out, NULL);
        free(text);
        if (rc == 0) {
            fail_msg("flip at %zu accepted", i);
        }
        if ((i >= 33 && i < 49) || i >= sealed_at) { /* salt and sealed key: the tag fails */
            assert_int_equal(rc, -EKEYREJECTED);
        } else {
            assert_true(rc == -EBADMSG || rc == -ENOTSUP || rc == -EKEYREJECTED);
        }
    }
    /* the comment is not authenticated and ignored, as in the reference */
    size_t tlen;
    blob[comment_at + 3] ^= 0x01;
    uint8_t *text = armor_blob(blob, n, &tlen);
    assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(text, tlen), ANT_KEYFILE_C4GH_SECRET,
                                               PASS, out, NULL),
                     0);
    free(text);
}

static void test_scrypt_blob_flip_is_rejected(void **state)
{
    (void)state;
    uint8_t blob[512], out[ANT_KEY_LEN];
    size_t n = unarmor("keys/recipient2.sec", blob, sizeof(blob));
    const size_t sealed_at = 7 + 8 + 22 + 19 + 2;
    const size_t at[] = {sealed_at, sealed_at + 20, sealed_at + 59};
    for (size_t i = 0; i < ANT_ARRAY_LEN(at); i++) {
        size_t tlen;
        blob[at[i]] ^= 0x80;
        uint8_t *text = armor_blob(blob, n, &tlen);
        blob[at[i]] ^= 0x80;
        assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(text, tlen),
                                                   ANT_KEYFILE_C4GH_SECRET, PASS, out, NULL),
                         -EKEYREJECTED);
        free(text);
    }
}

static void test_inconsistent_kdf_and_cipher_are_refused(void **state)
{
    (void)state;
    uint8_t out[ANT_KEY_LEN];
    size_t tlen;
    /* kdf none + cipher chacha20_poly1305 with a 60-byte blob */
    uint8_t a[7 + 6 + 19 + 62];
    size_t o = 0;
    memcpy(a, "c4gh-v1\x00\x04none\x00\x11" "chacha20_poly1305\x00\x3c", 7 + 6 + 19 + 2);
    o = 7 + 6 + 19 + 2;
    memset(a + o, 0x5a, 60);
    uint8_t *text = armor_blob(a, sizeof(a), &tlen);
    assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(text, tlen), ANT_KEYFILE_C4GH_SECRET,
                                               PASS, out, NULL),
                     -EBADMSG);
    free(text);
    /* kdf scrypt + cipher none with a 32-byte blob */
    uint8_t b[7 + 8 + 22 + 6 + 34];
    memcpy(b, "c4gh-v1\x00\x06scrypt\x00\x14", 7 + 8 + 2);
    memset(b + 17, 0, 20);
    memcpy(b + 37, "\x00\x04none\x00\x20", 8);
    memset(b + 45, 0x11, 32);
    text = armor_blob(b, sizeof(b), &tlen);
    assert_int_equal(ant_keyfile_secret_decode(ant_bytes_of(text, tlen), ANT_KEYFILE_C4GH_SECRET,
                                               PASS, out, NULL),
                     -EBADMSG);
    free(text);
}

static void test_public_decode_rules(void **state)
{
    (void)state;
    uint8_t pub[ANT_KEY_LEN], want[ANT_KEY_LEN];
    hex32(R2_PUBLIC, want);
    /* wrapped base64, blank lines, surrounding whitespace, other blocks around it */
    static const char wrapped[] = "some preamble\n\n-----BEGIN OTHER-----\nAAAA\n-----END OTHER-----\n"
                                  "  -----BEGIN CRYPT4GH PUBLIC KEY-----  \r\n"
                                  "v6AZ5r36DoiXmI2vYyW80+\n\n  xhEOm4Hdb7K9xt9xy6Bg0=\r\n"
                                  "\t-----END CRYPT4GH PUBLIC KEY-----\n\ntrailer";
    uint8_t *c = test_memdup(wrapped, strlen(wrapped));
    assert_int_equal(
        ant_keyfile_public_decode(ant_bytes_of(c, strlen(wrapped)), ANT_KEYFILE_C4GH_PUBLIC, pub,
                                  NULL),
        0);
    assert_memory_equal(pub, want, ANT_KEY_LEN);
    free(c);
    static const char *const bad[] = {
        /* 31 bytes */
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\nv6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg==\n"
        "-----END CRYPT4GH PUBLIC KEY-----\n",
        /* 33 bytes */
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\nv6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0AAA==\n"
        "-----END CRYPT4GH PUBLIC KEY-----\n",
        /* bad character */
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\nv6AZ5r36DoiXmI2vYyW80*xhEOm4Hdb7K9xt9xy6Bg0=\n"
        "-----END CRYPT4GH PUBLIC KEY-----\n",
        /* empty body */
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\n-----END CRYPT4GH PUBLIC KEY-----\n",
        /* nested armor */
        "-----BEGIN CRYPT4GH PUBLIC KEY-----\n-----BEGIN CRYPT4GH PUBLIC KEY-----\n"
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0=\n-----END CRYPT4GH PUBLIC KEY-----\n",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        c = test_memdup(bad[i], strlen(bad[i]));
        assert_int_equal(ant_keyfile_public_decode(ant_bytes_of(c, strlen(bad[i])),
                                                   ANT_KEYFILE_C4GH_PUBLIC, pub, NULL),
                         -EBADMSG);
        free(c);
    }
    c = test_memdup("nothing here", 12);
    assert_int_equal(ant_keyfile_public_decode(ant_bytes_of(c, 12), ANT_KEYFILE_C4GH_PUBLIC, pub,
                                               NULL),
                     -ENOENT);
    free(c);
    /* a NUL inside the base64 is not whitespace */
    static const char nul[] = "-----BEGIN CRYPT4GH PUBLIC KEY-----\nv6AZ5r36DoiXmI2vYyW80+\0"
                              "xhEOm4Hdb7K9xt9xy6Bg0=\n-----END CRYPT4GH PUBLIC KEY-----\n";
    c = test_memdup(nul, sizeof(nul) - 1);
    assert_int_equal(ant_keyfile_public_decode(ant_bytes_of(c, sizeof(nul) - 1),
                                               ANT_KEYFILE_C4GH_PUBLIC, pub, NULL),
                     -EBADMSG);
    free(c);
}

static void test_key_load_errors(void **state)
{
    (void)state;
    struct ant_key *k = NULL;
    uint8_t pub[ANT_KEY_LEN];
    assert_int_equal(ant_key_load(AT_FDCWD, "/nonexistent/antenna.sec", NULL, &k, NULL), -ENOENT);
    /* a public key file has no private block */
    assert_int_equal(ant_key_load(AT_FDCWD, test_vector_path("keys/sender.pub"), NULL, &k, NULL),
                     -ENOENT);
    assert_int_equal(ant_pubkey_load(AT_FDCWD, test_vector_path("keys/sender.sec"), pub, NULL),
                     -ENOENT);
    char *dir = test_tmpdir();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    char *big = calloc(1, ANT_KEYFILE_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', ANT_KEYFILE_MAX + 1);
    assert_int_equal(ant_write_new_file(dfd, "big.sec", 0600, big, ANT_KEYFILE_MAX + 1), 0);
    assert_int_equal(ant_key_load(dfd, "big.sec", NULL, &k, NULL), -E2BIG);
    free(big);
    /* a FIFO nobody writes to: refused at once, not waited on in open() */
    struct ant_diag d = {{0}};
    assert_int_equal(mkfifoat(dfd, "fifo.pub", 0600), 0);
    assert_int_equal(ant_pubkey_load(dfd, "fifo.pub", pub, &d), -EINVAL);
    assert_non_null(strstr(d.msg, "not a regular file"));
    assert_int_equal(ant_key_load(dfd, "fifo.pub", NULL, &k, NULL), -EINVAL);
    close(dfd);
    test_rmtree(dir);
    free(dir);
}

static void site_keys_cycle(const char *pass)
{
    char *dir = test_tmpdir();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    struct ant_site_keys k = {0}, back = {0};
    struct ant_diag d = {{0}};
    assert_int_equal(ant_site_keys_generate(&k), 0);
    assert_int_equal(ant_site_keys_save(&k, dfd, pass), 0);
    struct stat st;
    assert_int_equal(fstatat(dfd, "site.sec", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fstatat(dfd, "site.pub", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(ant_site_keys_load(dfd, pass, &back, &d), 0);
    assert_memory_equal(ant_key_secret(back.kx), ant_key_secret(k.kx), ANT_KEY_LEN);
    assert_memory_equal(ant_key_public(back.kx), ant_key_public(k.kx), ANT_KEY_LEN);
    assert_memory_equal(ant_signkey_seed(back.sign), ant_signkey_seed(k.sign), ANT_KEY_LEN);
    assert_memory_equal(ant_signkey_public(back.sign), ant_signkey_public(k.sign), ANT_KEY_LEN);
    /* site.pub holds both public keys */
    uint8_t pub[ANT_KEY_LEN];
    assert_int_equal(ant_pubkey_load(dfd, "site.pub", pub, NULL), 0);
    assert_memory_equal(pub, ant_key_public(k.kx), ANT_KEY_LEN);
    size_t len = 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/site.pub", dir);
    uint8_t *text = test_read_file(path, &len);
    assert_int_equal(ant_keyfile_public_decode(ant_bytes_of(text, len), ANT_KEYFILE_ED25519_PUBLIC,
                                               pub, NULL),
                     0);
    assert_memory_equal(pub, ant_signkey_public(k.sign), ANT_KEY_LEN);
    free(text);
    /* the Crypt4GH block alone is a key file the reference tool reads */
    struct ant_key *kx = NULL;
    assert_int_equal(ant_key_load(dfd, "site.sec", pass, &kx, NULL), 0);
    assert_memory_equal(ant_key_secret(kx), ant_key_secret(k.kx), ANT_KEY_LEN);
    ant_key_free(kx);
    if (pass != NULL) {
        struct ant_site_keys none = {0};
        assert_int_equal(ant_site_keys_load(dfd, NULL, &none, &d), -ENOKEY);
        assert_int_equal(ant_site_keys_load(dfd, "wrong", &none, &d), -EKEYREJECTED);
        assert_null(none.kx);
    }
    /* never overwrite */
    assert_int_equal(ant_site_keys_save(&k, dfd, pass), -EEXIST);
    assert_int_equal(unlinkat(dfd, "site.sec", 0), 0);
    assert_int_equal(ant_site_keys_save(&k, dfd, pass), -EEXIST); /* site.pub still there */
    assert_int_equal(fstatat(dfd, "site.sec", &st, 0), -1);
    ant_site_keys_fini(&k);
    ant_site_keys_fini(&back);
    ant_site_keys_fini(&back); /* idempotent */
    close(dfd);
    test_rmtree(dir);
    free(dir);
}

static void test_site_keys_save_load_refuse_overwrite(void **state)
{
    (void)state;
    site_keys_cycle(NULL);
    site_keys_cycle(PASS);
}

static void test_site_keys_load_missing(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct ant_site_keys k = {0};
    assert_int_equal(ant_site_keys_load(dfd, NULL, &k, NULL), -ENOENT);
    close(dfd);
    test_rmtree(dir);
    free(dir);
}

static void test_sign_verify(void **state)
{
    (void)state;
    struct ant_signkey *k = NULL;
    uint8_t sig[ANT_SIG_LEN];
    static const char msg[] = "checkpoint 42";
    struct ant_bytes m = ant_bytes_of(msg, strlen(msg));
    assert_int_equal(ant_signkey_generate(&k), 0);
    assert_int_equal(ant_signkey_sign(k, m, sig), 0);
    assert_int_equal(ant_sig_verify(ant_signkey_public(k), m, sig), 0);
    for (size_t i = 0; i < ANT_SIG_LEN; i++) {
        sig[i] ^= 0x01;
        assert_int_equal(ant_sig_verify(ant_signkey_public(k), m, sig), -EBADMSG);
        sig[i] ^= 0x01;
    }
    assert_int_equal(ant_sig_verify(ant_signkey_public(k), ant_bytes_of(msg, strlen(msg) - 1),
                                    sig),
                     -EBADMSG);
    /* the same seed gives the same key */
    struct ant_signkey *k2 = NULL;
    assert_int_equal(ant_signkey_from_seed(ant_signkey_seed(k), &k2), 0);
    assert_memory_equal(ant_signkey_public(k2), ant_signkey_public(k), ANT_KEY_LEN);
    ant_signkey_free(k2);
    ant_signkey_free(k);
    ant_signkey_free(NULL);
}

static void test_ed25519_rfc8032_vector(void **state)
{
    (void)state;
    /* RFC 8032 §7.1 TEST 1 */
    uint8_t seed[32], pk[32], sig[64];
    assert_int_equal(ant_hex_decode(ant_bytes_str("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919"
                                                  "703bac031cae7f60"),
                                    seed, 32),
                     0);
    assert_int_equal(ant_hex_decode(ant_bytes_str("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325"
                                                  "af021a68f707511a"),
                                    pk, 32),
                     0);
    assert_int_equal(
        ant_hex_decode(ant_bytes_str("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                                     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
                       sig, 64),
        0);
    struct ant_signkey *k = NULL;
    uint8_t got[64];
    assert_int_equal(ant_signkey_from_seed(seed, &k), 0);
    assert_memory_equal(ant_signkey_public(k), pk, 32);
    assert_int_equal(ant_signkey_sign(k, ant_bytes_of("", 0), got), 0);
    assert_memory_equal(got, sig, 64);
    assert_int_equal(ant_sig_verify(pk, ant_bytes_of("", 0), sig), 0);
    ant_signkey_free(k);
}

static void test_key_generate_and_b64(void **state)
{
    (void)state;
    struct ant_key *k = NULL;
    assert_int_equal(ant_key_generate(&k), 0);
    uint8_t pk[32];
    assert_int_equal(crypto_scalarmult_base(pk, ant_key_secret(k)), 0);
    assert_memory_equal(pk, ant_key_public(k), 32);
    char b64[48];
    uint8_t back[32];
    ant_key_b64(ant_key_public(k), b64);
    assert_int_equal(strlen(b64), 44);
    assert_int_equal(ant_key_b64_decode(ant_bytes_str(b64), back), 0);
    assert_memory_equal(back, ant_key_public(k), 32);
    ant_key_free(k);
    ant_key_free(NULL);
    assert_int_equal(ant_key_b64_decode(ant_bytes_str("v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0="),
                                        back),
                     0);
    uint8_t want[32];
    hex32(R2_PUBLIC, want);
    assert_memory_equal(back, want, 32);
    static const char *const bad[] = {
        "",
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0",      /* no padding */
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg==",     /* 31 bytes */
        "v6AZ5r36DoiXmI2vYyW80-xhEOm4Hdb7K9xt9xy6Bg0=",     /* url alphabet */
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg1=",     /* non-zero padding bits */
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0= ",    /* trailing space */
        "v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0AAAA=", /* too long */
        /* a byte >= 0x80 where a digit goes (fuzz_api_values): libsodium 1.0.18 read it as '/' */
        ("v6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6B\xb1" "0="),
        ("\xff" "6AZ5r36DoiXmI2vYyW80+xhEOm4Hdb7K9xt9xy6Bg0="),
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        assert_int_equal(ant_key_b64_decode(ant_bytes_str(bad[i]), back), -EINVAL);
    }
}

static void test_encode_argument_checks(void **state)
{
    (void)state;
    uint8_t s[32] = {1};
    struct ant_buf out = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    char longc[2000];
    memset(longc, 'c', sizeof(longc) - 1);
    longc[sizeof(longc) - 1] = '\0';
    assert_int_equal(ant_keyfile_secret_encode(s, ANT_KEYFILE_C4GH_SECRET, NULL, longc, &out),
                     -EINVAL);
    assert_int_equal(ant_keyfile_secret_encode(s, "bad-label\n", NULL, NULL, &out), -EINVAL);
    assert_int_equal(ant_keyfile_public_encode(s, "", &out), -EINVAL);
    assert_int_equal(out.len, 0);
    /* a full buffer leaves nothing half-written */
    struct ant_buf small = ANT_BUF_INIT(40);
    assert_int_equal(ant_keyfile_secret_encode(s, ANT_KEYFILE_C4GH_SECRET, NULL, NULL, &small),
                     -E2BIG);
    assert_int_equal(small.len, 0);
    ant_buf_fini(&small);
    ant_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_keys_give_manifest_values),
        cmocka_unit_test(test_unencrypted_key_ignores_passphrase),
        cmocka_unit_test(test_wrong_passphrase_is_rejected),
        cmocka_unit_test(test_missing_passphrase_is_enokey),
        cmocka_unit_test(test_bcrypt_is_refused_with_advice),
        cmocka_unit_test(test_secret_round_trips),
        cmocka_unit_test(test_unencrypted_encoding_matches_reference),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_every_byte_flip_of_encrypted_blob_is_refused),
        cmocka_unit_test(test_scrypt_blob_flip_is_rejected),
        cmocka_unit_test(test_inconsistent_kdf_and_cipher_are_refused),
        cmocka_unit_test(test_public_decode_rules),
        cmocka_unit_test(test_key_load_errors),
        cmocka_unit_test(test_site_keys_save_load_refuse_overwrite),
        cmocka_unit_test(test_site_keys_load_missing),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_ed25519_rfc8032_vector),
        cmocka_unit_test(test_key_generate_and_b64),
        cmocka_unit_test(test_encode_argument_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
