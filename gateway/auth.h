/* Who is asking: the credential of an API request mapped to a principal (DESIGN.md §4).
 * `Authorization: Bearer <credential>` where the credential is an API key ("ak_...") or a JWT
 * from a configured OIDC issuer. Every failure is the same -EKEYREJECTED with the same message
 * (ANT_AUTH_REJECTED_MSG): the response never tells an unknown key from a revoked one. */
#ifndef ANT_GW_AUTH_H
#define ANT_GW_AUTH_H

#include "gateway/http.h"

/* Fills r->who and r->principal and sets r->authed. Returns 0 or -EKEYREJECTED (or -EBUSY /
 * -EIO when the catalog cannot be read: the caller answers 503/500, never "allowed"). The
 * reason for a rejection goes to the debug log only. */
ANT_MUST_CHECK int ant_gw_authenticate(struct ant_req *r);

#endif
