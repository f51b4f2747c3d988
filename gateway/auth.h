/* Who is asking: the credential of an API request mapped to a principal (DESIGN.md §4).
 * `Authorization: Bearer <credential>` where the credential is an API key ("ak_...") or a JWT
 * from a configured OIDC issuer. Every failure is the same -EKEYREJECTED with the same message
 * (ANT_AUTH_REJECTED_MSG): the response never tells an unknown key from a revoked one.
 *
 * Successful authentications are cached for at most ANT_HOTCACHE_NS (one second, issue 4: a
 * revocation or a disabled principal must take effect within a second, and no cache may outlive
 * it by more): the catalog read and the key hash then cost one keyed BLAKE2b per request. The
 * one-second bound holds for changes made by any process (the admin CLI writes the same file);
 * a write through this server (any request other than GET/HEAD) also empties the cache at once,
 * so a key revoked over the API fails at the very next request. Failures are never cached. */
#ifndef ANT_GW_AUTH_H
#define ANT_GW_AUTH_H

#include "gateway/http.h"

struct ant_hotcache;

/* The authentication cache: a struct ant_hotcache (policy/decide.h: one second from before the
 * catalog read, emptied by ant_hotcache_invalidate) from credential to principal; freed with
 * ant_hotcache_free. */
ANT_MUST_CHECK int ant_authcache_new(struct ant_hotcache **out);

/* Fills r->who and r->principal and sets r->authed. Returns 0 or -EKEYREJECTED (or -EBUSY /
 * -EIO when the catalog cannot be read: the caller answers 503/500, never "allowed"). The
 * reason for a rejection goes to the debug log only. */
ANT_MUST_CHECK int ant_gw_authenticate(struct ant_req *r);

#endif
