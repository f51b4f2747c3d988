/* The decision function (DESIGN.md §5): may this principal do this action on this dataset, now,
 * for this purpose, to this destination?
 *
 * Default deny. The rules run in a fixed order; the first that decides wins:
 *   1 principal      a principal with at least one role (else deny `no_role`)
 *   2 dataset        the dataset exists (else deny `dataset_not_found`)
 *   3 draft          a draft is invisible outside its tenant (deny `dataset_not_found`)
 *   4 state          withdrawn: no data action; write/publish only on drafts, withdraw only on
 *                    published, no grant on withdrawn (deny `dataset_withdrawn`,
 *                    `dataset_not_draft`, `dataset_not_published`)
 *   5 residency      a transfer to a region the dataset may not go to (deny `residency`),
 *                    whatever the roles or grants say
 *   6 plaintext      a decrypted copy of `sensitive` data leaves the site only into this site's
 *                    scratch (deny `sensitive_plaintext`): table classification_rules
 *   7 role           a role of the principal allows the action on its own tenant's datasets
 *                    (table role_actions; own_tenant or site scope): allow `role_<role>`
 *   8 public         an `open` published dataset may be described by anyone authenticated
 *                    (classification_rules.public_describe): allow `public_describe`
 *   9 grant          a grant to the principal, its tenant or its site covers the action, is
 *                    live (not revoked, not before not_before, not after expiry), its purpose
 *                    matches the stated one; a grant of any action also allows describe:
 *                    allow `grant`; else deny with the closest miss: `grant_revoked`,
 *                    `grant_expired`, `grant_not_yet_valid`, `grant_purpose_mismatch`,
 *                    `grant_action_not_covered`
 *  10 duo            the stated purpose satisfies every machine-checkable data-use condition of
 *                    the dataset (table duo_purpose): else deny `purpose_required` /
 *                    `duo_incompatible`. Checked for grant-based access only: a tenant's own
 *                    members are bound by their own conditions, not checked here.
 *  11 default        deny `no_grant`
 *
 * Threads: as the `struct ant_store` it is given (one thread per connection). */
#ifndef ANT_DECIDE_H
#define ANT_DECIDE_H

#include <jansson.h>

#include "policy/store.h"

/* What the caller says about the request, beyond who and what. */
struct ant_decide_ctx {
    const char *purpose;     /* a DUO permission code ("DUO:0000006") or NULL */
    const char *dest_region; /* transfer: the region of the receiving site (peers table) */
    const char *dest_site;   /* transfer: the receiving site id, for the message */
    bool plaintext;          /* the data would leave decrypted: a plain download, a decrypted
                              * transfer. Staging decrypted into this site's scratch is not this. */
    int64_t now;             /* unix seconds; 0: the current time */
};

struct ant_decision {
    bool allow;
    /* May the caller learn the dataset exists? When false the gateway answers 404, the same as
     * for a dataset that does not exist; when true, a denial is a 403. */
    bool visible;
    const char *reason;           /* stable machine-readable code (static string) */
    char message[256];            /* one sentence for people; names no secret */
    char grant_id[ANT_ID_MAX + 1]; /* the grant that allowed, or "" */
    char tenant[ANT_NAME_MAX + 1]; /* the dataset's owner tenant, for the audit event, or "" */
    /* Unix second from which the same question may get another answer with the catalog
     * unchanged: the earliest future not-before or expiry among the grants the decision looked
     * at (INT64_MAX: none). The decision holds for every `now` before it. */
    int64_t valid_until;
};

/* Decides. Returns 0 with the decision in *out (allow or deny), or a negative errno when it
 * could not decide (-EIO, -EBUSY, -ENOMEM: treat as deny, and do not audit it as a decision).
 * `action` is one ANT_ACT_* bit (-EINVAL otherwise). */
ANT_MUST_CHECK int ant_decide(struct ant_store *st, const struct ant_principal *p, unsigned action,
                              const char *dataset_id, const struct ant_decide_ctx *ctx,
                              struct ant_decision *out);

/* The same decision, and in *rules (caller json_decref()s) an array with one object per rule
 * considered, in order: {"rule": "...", "result": "pass"|"skip"|"allow"|"deny", "detail": "..."};
 * the last one is the rule that decided. Performs nothing. */
ANT_MUST_CHECK int ant_explain(struct ant_store *st, const struct ant_principal *p, unsigned action,
                               const char *dataset_id, const struct ant_decide_ctx *ctx,
                               struct ant_decision *out, json_t **rules);

/* Tenant- and site-level actions, by the role_actions table alone: ANT_ACT_AUDIT (read the
 * audit log of `tenant`, or of the whole site when tenant is NULL) and ANT_ACT_ADMIN (tenant
 * NULL). Allow `role_auditor` / `role_admin`, else deny `no_role`. -EINVAL other actions. */
ANT_MUST_CHECK int ant_decide_tenant(struct ant_store *st, const struct ant_principal *p,
                                     unsigned action, const char *tenant, struct ant_decision *out);

/* --- caching on the hot path ---
 *
 * A struct ant_hotcache keeps small answers derived from the catalog (decisions, serialised
 * datasets) for at most ANT_HOTCACHE_NS, under the rule of issue 4 for every cache of
 * authorization state: no entry outlives a change of the catalog (a revoked grant, a withdrawn
 * dataset, a change made by the admin CLI in another process) by more than one second. Nothing
 * in SQLite tells a process cheaply that another process wrote: `PRAGMA data_version` and the
 * WAL-index change counter are only read inside a read transaction, whose WAL-index locks are
 * what the cache saves. So the bound is time: an entry dies one second after the catalog read
 * that produced it began, and at once when ant_hotcache_invalidate() runs (the gateway calls it
 * for every request that may write). An entry also dies at its `valid_until` unix second (for a
 * decision, a grant's expiry or not-before boundary). Keys are hashed with a per-process keyed
 * BLAKE2b; a slot collision only evicts. Thread-safe. */
#define ANT_HOTCACHE_NS (1000LL * 1000 * 1000)

struct ant_hotcache;

/* `slots` entries (rounded up to a power of two, at least 16) of values of at most value_max
 * bytes (a larger value is simply not kept). -ENOMEM, -EINVAL. */
ANT_MUST_CHECK int ant_hotcache_new(size_t slots, size_t value_max, struct ant_hotcache **out);
void ant_hotcache_free(struct ant_hotcache *c); /* accepts NULL */
/* Empties the cache: entries put with a generation read before this call are dead too. */
void ant_hotcache_invalidate(struct ant_hotcache *c);
/* The generation to pass to ant_hotcache_put: read it BEFORE the catalog read. */
uint64_t ant_hotcache_gen(struct ant_hotcache *c);
/* Copies the live value for key into out (cap bytes) and its length into *len: true. False when
 * there is none, it is dead (generation, t0_ns + ANT_HOTCACHE_NS <= now_ns, valid_until <=
 * now_unix) or longer than cap. now_ns is ant_mono_ns(), now_unix ant_now_unix(). */
bool ant_hotcache_get(struct ant_hotcache *c, const void *key, size_t keylen, int64_t now_ns,
                      int64_t now_unix, void *out, size_t cap, size_t *len);
/* Keeps value for key: `gen` and `t0_ns` (monotonic) read before the catalog read that produced
 * it; valid_until in unix seconds (INT64_MAX: no boundary). */
void ant_hotcache_put(struct ant_hotcache *c, const void *key, size_t keylen, uint64_t gen,
                      int64_t t0_ns, int64_t valid_until, const void *value, size_t len);

/* ant_decide through a cache (c may be NULL: no cache). The question is the key: principal
 * (kind, id, tenant, site, roles), action, dataset and ctx (purpose, region, site, plaintext);
 * ctx->now must be 0: the time is now_unix (ant_now_unix()) and now_ns (ant_mono_ns()). On a
 * miss, decides with `get_store(arg)` (called at most once; NULL from it is -EBUSY) and keeps
 * the answer until the earliest of one second, an invalidation and its valid_until. *hit says
 * whether the answer came from the cache (may be NULL). Errors are never cached. */
ANT_MUST_CHECK int ant_decide_cached(struct ant_hotcache *c,
                                     struct ant_store *(*get_store)(void *arg), void *arg,
                                     const struct ant_principal *p, unsigned action,
                                     const char *dataset_id, const struct ant_decide_ctx *ctx,
                                     int64_t now_unix, int64_t now_ns, struct ant_decision *out,
                                     bool *hit);

/* The decision as an object {"decision": "allow"|"deny", "reason", "message", "grant_id"?}. */
json_t *ant_decision_json(const struct ant_decision *d);

#endif
