/* X25519 key pairs (Crypt4GH), Ed25519 signing keys, and their files in the reference
 * crypt4gh tool's formats (../shared/c4gh-vectors/FORMAT-NOTES.md §9).
 *
 * Secrets live in sodium_malloc() memory (guard pages, locked, excluded from core dumps) and
 * are wiped when freed. All functions are thread-safe; a key may be shared read-only between
 * threads once loaded. */
#ifndef ANT_KEYS_H
#define ANT_KEYS_H

#include "crypto/base/base.h"

#define ANT_KEY_LEN 32
#define ANT_SIG_LEN 64
/* A key file larger than this is refused before it is parsed. */
#define ANT_KEYFILE_MAX 16384

/* Armor labels. A file may hold several blocks; a decoder finds the block it is asked for. */
#define ANT_KEYFILE_C4GH_SECRET "CRYPT4GH PRIVATE KEY"
#define ANT_KEYFILE_C4GH_PUBLIC "CRYPT4GH PUBLIC KEY"
#define ANT_KEYFILE_ED25519_SECRET "ANTENNA ED25519 PRIVATE KEY"
#define ANT_KEYFILE_ED25519_PUBLIC "ANTENNA ED25519 PUBLIC KEY"

/* An X25519 key pair; the secret (stored unclamped, as the reference tool does) is in
 * sodium_malloc memory. */
struct ant_key;

ANT_MUST_CHECK int ant_key_generate(struct ant_key **out);
/* -EBADMSG if the secret gives a low-order (all-zero) public key. */
ANT_MUST_CHECK int ant_key_from_secret(const uint8_t sk[ANT_KEY_LEN], struct ant_key **out);
void ant_key_free(struct ant_key *k); /* accepts NULL; wipes */
const uint8_t *ant_key_public(const struct ant_key *k);
/* For crypto/ only: the raw secret scalar, valid while k lives. */
const uint8_t *ant_key_secret(const struct ant_key *k);

/* An Ed25519 signing key: seed and expanded secret in sodium_malloc memory. */
struct ant_signkey;

ANT_MUST_CHECK int ant_signkey_generate(struct ant_signkey **out);
ANT_MUST_CHECK int ant_signkey_from_seed(const uint8_t seed[ANT_KEY_LEN], struct ant_signkey **out);
void ant_signkey_free(struct ant_signkey *k);
const uint8_t *ant_signkey_public(const struct ant_signkey *k);
/* For crypto/ only: the 32-byte seed, to write the key file. */
const uint8_t *ant_signkey_seed(const struct ant_signkey *k);
/* Detached Ed25519 signature of msg. */
ANT_MUST_CHECK int ant_signkey_sign(const struct ant_signkey *k, struct ant_bytes msg,
                                    uint8_t sig[ANT_SIG_LEN]);
/* 0 if sig is a valid signature of msg by pk, else -EBADMSG. */
ANT_MUST_CHECK int ant_sig_verify(const uint8_t pk[ANT_KEY_LEN], struct ant_bytes msg,
                                  const uint8_t sig[ANT_SIG_LEN]);

/* --- key files ---
 * Secret files: "c4gh-v1" blobs (kdf none, or scrypt / pbkdf2_hmac_sha256 with
 * chacha20_poly1305) under `label`; a 32-byte secret of any kind (X25519 scalar or Ed25519 seed).
 * Errors of the decoders: -EBADMSG malformed (diag says what), -EKEYREJECTED wrong passphrase,
 * -ENOKEY the file is encrypted and passphrase is NULL, -ENOTSUP a KDF antenna does not
 * implement (bcrypt: diag names it and how to convert the key), -ENOENT no block with label. */
ANT_MUST_CHECK int ant_keyfile_secret_encode(const uint8_t secret[ANT_KEY_LEN], const char *label,
                                             const char *passphrase, const char *comment,
                                             struct ant_buf *out);
ANT_MUST_CHECK int ant_keyfile_secret_decode(struct ant_bytes text, const char *label,
                                             const char *passphrase, uint8_t secret[ANT_KEY_LEN],
                                             struct ant_diag *d);
ANT_MUST_CHECK int ant_keyfile_public_encode(const uint8_t pub[ANT_KEY_LEN], const char *label,
                                             struct ant_buf *out);
ANT_MUST_CHECK int ant_keyfile_public_decode(struct ant_bytes text, const char *label,
                                             uint8_t pub[ANT_KEY_LEN], struct ant_diag *d);

/* Convenience: read a file (relative to dirfd, or absolute; AT_FDCWD for the cwd) and decode
 * the Crypt4GH block. Same errors as the decoders, plus -errno from open/read and -E2BIG past
 * ANT_KEYFILE_MAX. */
ANT_MUST_CHECK int ant_key_load(int dirfd, const char *path, const char *passphrase,
                                struct ant_key **out, struct ant_diag *d);
ANT_MUST_CHECK int ant_pubkey_load(int dirfd, const char *path, uint8_t pub[ANT_KEY_LEN],
                                   struct ant_diag *d);

/* --- the site's keys: keys/site.sec holds both secrets (a CRYPT4GH PRIVATE KEY block and an
 * ANTENNA ED25519 PRIVATE KEY block), keys/site.pub both public keys. --- */
struct ant_site_keys {
    struct ant_key *kx;       /* Crypt4GH / X25519 */
    struct ant_signkey *sign; /* Ed25519: audit checkpoints, job and federation tokens */
};

ANT_MUST_CHECK int ant_site_keys_generate(struct ant_site_keys *out);
/* Writes site.sec (0600, created exclusively, fsynced) and site.pub (0644) into keysdir_fd.
 * passphrase may be NULL (unencrypted). -EEXIST if either file exists. */
ANT_MUST_CHECK int ant_site_keys_save(const struct ant_site_keys *k, int keysdir_fd,
                                      const char *passphrase);
ANT_MUST_CHECK int ant_site_keys_load(int keysdir_fd, const char *passphrase,
                                      struct ant_site_keys *out, struct ant_diag *d);
void ant_site_keys_fini(struct ant_site_keys *k); /* frees both; accepts zeroed storage */

/* Standard base64 (with padding) of the 32-byte public keys, as /v1/site shows them:
 * out needs 45 bytes. */
void ant_key_b64(const uint8_t pub[ANT_KEY_LEN], char out[48]);
/* Decodes standard base64 of exactly 32 bytes; -EINVAL otherwise. */
ANT_MUST_CHECK int ant_key_b64_decode(struct ant_bytes b64, uint8_t pub[ANT_KEY_LEN]);

#endif
