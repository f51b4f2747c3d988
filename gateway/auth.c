/* Request authentication; see auth.h. */
#include "gateway/auth.h"

#include "crypto/base/log.h"
#include "gateway/site.h"
#include "policy/auth.h"
#include "policy/store.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Longer credentials are refused without looking at them (tokens are at most 8 KiB). */
#define AUTH_CRED_MAX 8192

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
    int rc;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    rc = ant_auth_bearer(st, r->site->oidc, ant_bytes_of(cred, len), ant_now_ms() / 1000,
                         &r->who);
    ant_store_pool_release(r->site->pool, st);
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
