/* Authentication of a bearer credential to a principal (DESIGN.md §4): API keys
 * ("ak_<id>_<secret>", checked against antenna.db) and OIDC access tokens from the issuers
 * configured in the oidc_issuers table (JWT verified by crypto/token.h against the issuer's
 * JWKS file, then its claims mapped by ant_store_oidc_principal()).
 *
 * Every failure a caller could learn from is the same -EKEYREJECTED with
 * ANT_AUTH_REJECTED_MSG: unknown, malformed, revoked or expired key; bad, expired or foreign
 * token; unknown principal. Nothing is cached here: a revoked key or a disabled principal
 * fails at the next call. (The gateway keeps successful authentications for at most one second,
 * gateway/auth.h.)
 *
 * Threads: any number of threads may use one struct ant_oidc at once, each with its own struct
 * ant_store. An issuer added to oidc_issuers after the load is taken up by the first token that
 * names it (looked up at most once a second for the whole set; logged as oidc.issuer_added, or
 * oidc.issuer_refused when its JWKS is unusable: then left out and looked up again later). An
 * issuer removed from oidc_issuers, or whose audience or JWKS file changed, refuses the first
 * token that reaches the catalog after the change (logged as oidc.issuer_dropped) and is not used
 * again; a row added again is loaded afresh like a new one. Each
 * issuer's JWKS file is read again when it changes (checked at most once a second, by a request
 * that uses that issuer; a changed file that does not parse keeps the previous keys and is
 * logged as oidc.jwks_refused). */
#ifndef ANT_AUTH_H
#define ANT_AUTH_H

#include "policy/store.h"

#define ANT_OIDC_MAX_ISSUERS 16
/* Clock skew allowed on exp/nbf/iat of OIDC tokens, seconds. */
#define ANT_OIDC_SKEW_S 60

struct ant_oidc;

/* Loads the issuers of oidc_issuers and their JWKS files (a relative jwks_path is read under
 * dirfd, the site folder). An issuer whose JWKS cannot be read or parsed fails the load
 * (-ENOENT, -EBADMSG, -E2BIG; diag names the issuer): a half-configured issuer is a
 * configuration error, not something to discover at the first login. No issuer: a valid, empty
 * set. */
ANT_MUST_CHECK int ant_oidc_load(struct ant_store *st, int dirfd, struct ant_oidc **out,
                                 struct ant_diag *d);
void ant_oidc_free(struct ant_oidc *o); /* accepts NULL */
size_t ant_oidc_count(const struct ant_oidc *o);

/* Verifies an OIDC token (RS256, ES256 or EdDSA; exp required; aud must name the issuer's
 * configured audience) with the keys of the issuer its `iss` names, and maps it to a principal;
 * p->key_id is "oidc:<issuer>". 0 or -EKEYREJECTED (also for an expired token), -E2BIG for a
 * token over ANT_TOKEN_MAX, -ENOMEM, -EIO. */
ANT_MUST_CHECK int ant_oidc_authenticate(const struct ant_oidc *o, struct ant_store *st,
                                         struct ant_bytes token, int64_t now,
                                         struct ant_principal *out);

/* The one entry point for an `Authorization: Bearer <cred>` value: "ak_..." is an API key,
 * anything else an OIDC token (o may be NULL: then only API keys). Same errors as above. */
ANT_MUST_CHECK int ant_auth_bearer(struct ant_store *st, const struct ant_oidc *o,
                                   struct ant_bytes cred, int64_t now, struct ant_principal *out);

#endif
