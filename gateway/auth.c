/* Request authentication and its cache; see auth.h. */
#include "gateway/auth.h"

#include "crypto/base/log.h"
#include "gateway/server.h"
#include "gateway/site.h"
#include "policy/auth.h"
#include "policy/store.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longer credentials are refused without looking at them (tokens are at most 8 KiB). */
#define AUTH_CRED_MAX 8192

/* Direct-mapped: a collision only evicts. The cache needs to hold the credentials used within
 * one second, not every credential there is. */
#define CACHE_SLOTS 512
#define CACHE_LOCKS 16
#define DIGEST_LEN 32

struct cache_slot {
    uint8_t digest[DIGEST_LEN]; /* keyed BLAKE2b of the credential */
    uint64_t gen;               /* the cache generation read before the catalog was */
    int64_t expires_ns;         /* monotonic; 0: empty */
    struct ant_principal who;
};

struct ant_authcache {
    uint8_t key[crypto_generichash_KEYBYTES]; /* per process: digests are useless elsewhere */
    _Atomic uint64_t gen;
    pthread_mutex_t mu[CACHE_LOCKS];
    struct cache_slot slot[CACHE_SLOTS];
};

int ant_authcache_new(struct ant_authcache **out)
{
    struct ant_authcache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    randombytes_buf(c->key, sizeof(c->key));
    atomic_init(&c->gen, 1);
    for (size_t i = 0; i < CACHE_LOCKS; i++) {
        pthread_mutex_init(&c->mu[i], NULL);
    }
    *out = c;
    return 0;
}

void ant_authcache_free(struct ant_authcache *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < CACHE_LOCKS; i++) {
        pthread_mutex_destroy(&c->mu[i]);
    }
    sodium_memzero(c, sizeof(*c));
    free(c);
}

void ant_authcache_invalidate(struct ant_authcache *c)
{
    if (c != NULL) {
        atomic_fetch_add(&c->gen, 1);
    }
}

static size_t slot_of(const uint8_t digest[DIGEST_LEN])
{
    return ((size_t)digest[0] | (size_t)digest[1] << 8) % CACHE_SLOTS;
}

/* True with *who when a live entry of the current generation holds this digest. */
static bool cache_get(struct ant_authcache *c, const uint8_t digest[DIGEST_LEN], int64_t now_ns,
                      struct ant_principal *who)
{
    size_t i = slot_of(digest);
    uint64_t gen = atomic_load(&c->gen);
    bool hit = false;
    pthread_mutex_lock(&c->mu[i % CACHE_LOCKS]);
    struct cache_slot *s = &c->slot[i];
    if (s->expires_ns > now_ns && s->gen == gen &&
        sodium_memcmp(s->digest, digest, DIGEST_LEN) == 0) {
        *who = s->who;
        hit = true;
    }
    pthread_mutex_unlock(&c->mu[i % CACHE_LOCKS]);
    return hit;
}

/* `t0_ns` and `gen` were read before the catalog: the entry dies one second after the read
 * began, and at once if the cache was invalidated since. */
static void cache_put(struct ant_authcache *c, const uint8_t digest[DIGEST_LEN], uint64_t gen,
                      int64_t t0_ns, const struct ant_principal *who)
{
    size_t i = slot_of(digest);
    pthread_mutex_lock(&c->mu[i % CACHE_LOCKS]);
    struct cache_slot *s = &c->slot[i];
    memcpy(s->digest, digest, DIGEST_LEN);
    s->gen = gen;
    s->expires_ns = t0_ns + ANT_AUTH_CACHE_NS;
    s->who = *who;
    pthread_mutex_unlock(&c->mu[i % CACHE_LOCKS]);
}

static int reject(struct ant_req *r, const char *why)
{
    ant_log_kv(ANT_LOG_DEBUG, "auth.rejected",
               ((const char *[]){"request_id", r->request_id, NULL}), "%s", why);
    return -EKEYREJECTED;
}

int ant_gw_authenticate(struct ant_req *r)
{
    const char *h = ant_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL) {
        return reject(r, "no Authorization header");
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        return reject(r, "Authorization is not a Bearer credential");
    }
    const char *cred = h + 7;
    while (*cred == ' ') {
        cred++;
    }
    size_t len = strnlen(cred, AUTH_CRED_MAX + 1);
    if (len == 0 || len > AUTH_CRED_MAX) {
        return reject(r, "empty or oversized credential");
    }
    struct ant_authcache *c = ant_server_authcache(r->srv);
    uint8_t digest[DIGEST_LEN];
    uint64_t gen = 0;
    int64_t t0 = ant_mono_ns();
    int rc = 0;
    if (c != NULL) {
        crypto_generichash(digest, sizeof(digest), (const uint8_t *)cred, len, c->key,
                           sizeof(c->key));
        gen = atomic_load(&c->gen);
    }
    if (c == NULL || !cache_get(c, digest, t0, &r->who)) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_auth_bearer(st, r->site->oidc, ant_bytes_of(cred, len), ant_now_ms() / 1000,
                             &r->who);
        ant_store_pool_release(r->site->pool, st);
        if (rc == 0 && c != NULL) {
            cache_put(c, digest, gen, t0, &r->who);
        }
    }
    if (rc == -EKEYREJECTED || rc == -E2BIG) {
        return reject(r, "credential not accepted");
    }
    if (rc < 0) {
        return rc;
    }
    r->authed = true;
    if (r->who.tenant[0] != '\0') {
        snprintf(r->principal, sizeof(r->principal), "%s@%s", r->who.id, r->who.tenant);
    } else {
        snprintf(r->principal, sizeof(r->principal), "%s", r->who.id);
    }
    return 0;
}
