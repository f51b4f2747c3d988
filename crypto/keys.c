/* X25519 and Ed25519 key objects, the site's key files, and base64 of public keys.
 * Key files themselves are parsed and written in keyfile.c. */
#include "crypto/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/base/log.h"

#define SITE_SEC "site.sec"
#define SITE_PUB "site.pub"
/* Two armored blocks of at most a few hundred bytes each. */
#define SITE_FILE_MAX 4096

struct ant_key {
    uint8_t sk[ANT_KEY_LEN]; /* raw scalar as stored, unclamped (clamped inside X25519) */
    uint8_t pk[ANT_KEY_LEN];
};

struct ant_signkey {
    uint8_t seed[ANT_KEY_LEN];
    uint8_t sk[crypto_sign_SECRETKEYBYTES]; /* libsodium's expanded form: seed || pk */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
};

/* libsodium must be initialised before sodium_malloc and randombytes; sodium_init is
 * idempotent and thread-safe, so each entry point that needs it calls it. */
static int sodium_ready(void)
{
    return sodium_init() < 0 ? -ENOMEM : 0;
}

int ant_key_from_secret(const uint8_t sk[ANT_KEY_LEN], struct ant_key **out)
{
    static const uint8_t zero[ANT_KEY_LEN];
    struct ant_key *k = NULL;
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    k = sodium_malloc(sizeof(*k));
    if (k == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(k->sk, sk, ANT_KEY_LEN);
    /* A scalar that clamps to a multiple of the group order gives the identity: such a key
     * would make every shared secret all-zero. */
    if (crypto_scalarmult_base(k->pk, k->sk) != 0 ||
        sodium_memcmp(k->pk, zero, ANT_KEY_LEN) == 0) {
        rc = -EBADMSG;
        goto out;
    }
    *out = k;
    k = NULL;
out:
    ant_key_free(k);
    return rc;
}

int ant_key_generate(struct ant_key **out)
{
    uint8_t sk[ANT_KEY_LEN];
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    /* Unclamped random bytes, like crypt4gh-keygen: X25519 clamps when it uses the scalar. */
    randombytes_buf(sk, sizeof(sk));
    rc = ant_key_from_secret(sk, out);
out:
    sodium_memzero(sk, sizeof(sk));
    return rc;
}

void ant_key_free(struct ant_key *k)
{
    sodium_free(k); /* wipes; accepts NULL */
}

const uint8_t *ant_key_public(const struct ant_key *k)
{
    return k->pk;
}

const uint8_t *ant_key_secret(const struct ant_key *k)
{
    return k->sk;
}

int ant_signkey_from_seed(const uint8_t seed[ANT_KEY_LEN], struct ant_signkey **out)
{
    struct ant_signkey *k = NULL;
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    k = sodium_malloc(sizeof(*k));
    if (k == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(k->seed, seed, ANT_KEY_LEN);
    if (crypto_sign_seed_keypair(k->pk, k->sk, k->seed) != 0) {
        rc = -EINVAL;
        goto out;
    }
    *out = k;
    k = NULL;
out:
    ant_signkey_free(k);
    return rc;
}

int ant_signkey_generate(struct ant_signkey **out)
{
    uint8_t seed[ANT_KEY_LEN];
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    randombytes_buf(seed, sizeof(seed));
    rc = ant_signkey_from_seed(seed, out);
out:
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

void ant_signkey_free(struct ant_signkey *k)
{
    sodium_free(k);
}

const uint8_t *ant_signkey_public(const struct ant_signkey *k)
{
    return k->pk;
}

const uint8_t *ant_signkey_seed(const struct ant_signkey *k)
{
    return k->seed;
}

int ant_signkey_sign(const struct ant_signkey *k, struct ant_bytes msg, uint8_t sig[ANT_SIG_LEN])
{
    if (k == NULL || (msg.p == NULL && msg.len > 0)) {
        return -EINVAL;
    }
    if (crypto_sign_detached(sig, NULL, msg.p, msg.len, k->sk) != 0) {
        return -EINVAL;
    }
    return 0;
}

int ant_sig_verify(const uint8_t pk[ANT_KEY_LEN], struct ant_bytes msg,
                   const uint8_t sig[ANT_SIG_LEN])
{
    if (pk == NULL || sig == NULL || (msg.p == NULL && msg.len > 0) || sodium_ready() < 0) {
        return -EBADMSG;
    }
    /* libsodium rejects non-canonical S and small-order public keys (1.0.18 defaults). */
    return crypto_sign_verify_detached(sig, msg.p, msg.len, pk) == 0 ? 0 : -EBADMSG;
}

/* Reads a key file into locked memory. Symlinks are followed on purpose: secret stores
 * (Kubernetes, systemd credentials) often present keys through them. */
static int read_keyfile(int dirfd, const char *path, size_t max, struct ant_buf *raw)
{
    int fd = -1;
    int rc;
    struct stat st;
    if (path == NULL) {
        return -EINVAL;
    }
    fd = ant_open_regular(dirfd, path, O_RDONLY, 0); /* a FIFO: -EINVAL, not a blocked open */
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = -E2BIG;
        goto out;
    }
    /* All the room at once: growing by realloc would leave unwiped copies behind. */
    raw->max = max;
    rc = ant_buf_reserve(raw, max);
    if (rc < 0) {
        goto out;
    }
    (void)sodium_mlock(raw->p, raw->cap); /* best effort: RLIMIT_MEMLOCK may be small */
    rc = ant_read_all(fd, raw);
out:
    ant_close(fd);
    return rc;
}

static void unlock_wipe(struct ant_buf *raw)
{
    if (raw->p != NULL) {
        (void)sodium_munlock(raw->p, raw->cap); /* munlock also zeroes */
    }
    ant_buf_wipe_fini(raw);
}

int ant_key_load(int dirfd, const char *path, const char *passphrase, struct ant_key **out,
                 struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    uint8_t sk[ANT_KEY_LEN];
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    rc = read_keyfile(dirfd, path, ANT_KEYFILE_MAX, &raw);
    if (rc < 0) {
        ant_diag_set(d, "cannot read key file %s: %s", path ? path : "(null)",
                     rc == -EINVAL ? "not a regular file" : strerror(-rc));
        goto out;
    }
    rc = ant_keyfile_secret_decode(ant_buf_view(&raw), ANT_KEYFILE_C4GH_SECRET, passphrase, sk,
                                   d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_key_from_secret(sk, out);
    if (rc < 0) {
        ant_diag_set(d, "%s: the secret key gives a low-order public key", path);
    }
out:
    sodium_memzero(sk, sizeof(sk));
    unlock_wipe(&raw);
    return rc;
}

int ant_pubkey_load(int dirfd, const char *path, uint8_t pub[ANT_KEY_LEN], struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_KEYFILE_MAX);
    int rc = read_keyfile(dirfd, path, ANT_KEYFILE_MAX, &raw);
    if (rc < 0) {
        ant_diag_set(d, "cannot read key file %s: %s", path ? path : "(null)",
                     rc == -EINVAL ? "not a regular file" : strerror(-rc));
        goto out;
    }
    rc = ant_keyfile_public_decode(ant_buf_view(&raw), ANT_KEYFILE_C4GH_PUBLIC, pub, d);
out:
    ant_buf_fini(&raw);
    return rc;
}

/* --- site keys --- */

int ant_site_keys_generate(struct ant_site_keys *out)
{
    struct ant_site_keys k = {NULL, NULL};
    int rc = ant_key_generate(&k.kx);
    if (rc == 0) {
        rc = ant_signkey_generate(&k.sign);
    }
    if (rc < 0) {
        ant_site_keys_fini(&k);
        return rc;
    }
    *out = k;
    return 0;
}

static bool name_exists(int dirfd, const char *name)
{
    struct stat st;
    /* Any entry counts, a dangling symlink included: never write through or beside one. */
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

int ant_site_keys_save(const struct ant_site_keys *k, int keysdir_fd, const char *passphrase)
{
    struct ant_buf sec = ANT_BUF_INIT(SITE_FILE_MAX);
    struct ant_buf pub = ANT_BUF_INIT(SITE_FILE_MAX);
    bool wrote_sec = false;
    int rc = 0;
    if (k == NULL || k->kx == NULL || k->sign == NULL) {
        return -EINVAL;
    }
    if (name_exists(keysdir_fd, SITE_SEC) || name_exists(keysdir_fd, SITE_PUB)) {
        rc = -EEXIST;
        goto out;
    }
    rc = ant_buf_reserve(&sec, SITE_FILE_MAX);
    if (rc < 0) {
        goto out;
    }
    (void)sodium_mlock(sec.p, sec.cap);
    rc = ant_keyfile_secret_encode(ant_key_secret(k->kx), ANT_KEYFILE_C4GH_SECRET, passphrase,
                                   "antenna site x25519", &sec);
    if (rc < 0) {
        goto out;
    }
    rc = ant_keyfile_secret_encode(ant_signkey_seed(k->sign), ANT_KEYFILE_ED25519_SECRET,
                                   passphrase, "antenna site ed25519", &sec);
    if (rc < 0) {
        goto out;
    }
    rc = ant_keyfile_public_encode(ant_key_public(k->kx), ANT_KEYFILE_C4GH_PUBLIC, &pub);
    if (rc < 0) {
        goto out;
    }
    rc = ant_keyfile_public_encode(ant_signkey_public(k->sign), ANT_KEYFILE_ED25519_PUBLIC, &pub);
    if (rc < 0) {
        goto out;
    }
    rc = ant_write_new_file(keysdir_fd, SITE_SEC, 0600, sec.p, sec.len);
    if (rc < 0) {
        goto out;
    }
    wrote_sec = true;
    rc = ant_write_new_file(keysdir_fd, SITE_PUB, 0644, pub.p, pub.len);
    if (rc < 0) {
        goto out;
    }
    rc = ant_fsync_dir(keysdir_fd);
    if (rc < 0) {
        goto out;
    }
    ant_log(ANT_LOG_INFO, "keys.site_saved", "site keys written (%s)",
            passphrase != NULL && passphrase[0] != '\0' ? "passphrase-protected" : "unencrypted");
out:
    if (rc < 0 && wrote_sec) {
        /* half a key pair on disk would make the next start-up fail in a confusing way */
        (void)unlinkat(keysdir_fd, SITE_SEC, 0);
    }
    unlock_wipe(&sec);
    ant_buf_fini(&pub);
    return rc;
}

int ant_site_keys_load(int keysdir_fd, const char *passphrase, struct ant_site_keys *out,
                       struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(SITE_FILE_MAX);
    struct ant_site_keys k = {NULL, NULL};
    uint8_t secret[ANT_KEY_LEN];
    int rc = sodium_ready();
    if (rc < 0) {
        goto out;
    }
    rc = read_keyfile(keysdir_fd, SITE_SEC, SITE_FILE_MAX, &raw);
    if (rc < 0) {
        ant_diag_set(d, "cannot read keys/" SITE_SEC ": %s",
                     rc == -EINVAL ? "not a regular file" : strerror(-rc));
        goto out;
    }
    rc = ant_keyfile_secret_decode(ant_buf_view(&raw), ANT_KEYFILE_C4GH_SECRET, passphrase,
                                   secret, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_key_from_secret(secret, &k.kx);
    if (rc < 0) {
        ant_diag_set(d, "keys/" SITE_SEC ": the X25519 secret gives a low-order public key");
        goto out;
    }
    rc = ant_keyfile_secret_decode(ant_buf_view(&raw), ANT_KEYFILE_ED25519_SECRET, passphrase,
                                   secret, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_signkey_from_seed(secret, &k.sign);
    if (rc < 0) {
        goto out;
    }
    *out = k;
    k = (struct ant_site_keys){NULL, NULL};
out:
    sodium_memzero(secret, sizeof(secret));
    ant_site_keys_fini(&k);
    unlock_wipe(&raw);
    return rc;
}

void ant_site_keys_fini(struct ant_site_keys *k)
{
    if (k == NULL) {
        return;
    }
    ant_key_free(k->kx);
    ant_signkey_free(k->sign);
    k->kx = NULL;
    k->sign = NULL;
}

/* --- base64 of public keys --- */

void ant_key_b64(const uint8_t pub[ANT_KEY_LEN], char out[48])
{
    sodium_bin2base64(out, 48, pub, ANT_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int ant_key_b64_decode(struct ant_bytes b64, uint8_t pub[ANT_KEY_LEN])
{
    uint8_t tmp[ANT_KEY_LEN];
    size_t n = 0;
    /* 32 bytes are exactly 44 characters with one '='; anything else cannot be a key. */
    if (b64.p == NULL || b64.len != 44) {
        return -EINVAL;
    }
    if (ant_b64_decode(b64, false, NULL, tmp, sizeof(tmp), &n) < 0 || n != ANT_KEY_LEN) {
        return -EINVAL;
    }
    memcpy(pub, tmp, ANT_KEY_LEN);
    return 0;
}
