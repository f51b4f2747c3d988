/* Request authentication and its cache; see auth.h. */
#include "gateway/auth.h"

#include "crypto/base/log.h"
#include "gateway/server.h"
#include "gateway/site.h"
#include "policy/auth.h"
#include "policy/decide.h"
#include "policy/store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longer credentials are refused without looking at them (tokens are at most 8 KiB). */
#define AUTH_CRED_MAX 8192

/* Slots of the authentication cache (a struct ant_hotcache, policy/decide.h): it needs to hold
 * the credentials used within one second, not every credential there is; a collision only
 * evicts. */
#define AUTH_CACHE_SLOTS 512

int ant_authcache_new(struct ant_hotcache **out)
{
    return ant_hotcache_new(AUTH_CACHE_SLOTS, sizeof(struct ant_principal), out);
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
    /* keyed by the credential itself: the cache keeps only its keyed BLAKE2b */
    struct ant_hotcache *c = ant_server_authcache(r->srv);
    uint64_t gen = ant_hotcache_gen(c); /* before the catalog read */
    int64_t t0 = ant_mono_ns();
    size_t got = 0;
    int rc = 0;
    if (!ant_hotcache_get(c, cred, len, t0, 0, &r->who, sizeof(r->who), &got) ||
        got != sizeof(r->who)) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_auth_bearer(st, r->site->oidc, ant_bytes_of(cred, len), ant_now_ms() / 1000,
                             &r->who);
        ant_store_pool_release(r->site->pool, st);
        if (rc == 0) {
            ant_hotcache_put(c, cred, len, gen, t0, INT64_MAX, &r->who, sizeof(r->who));
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
