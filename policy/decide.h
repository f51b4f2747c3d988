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

/* The decision as an object {"decision": "allow"|"deny", "reason", "message", "grant_id"?}. */
json_t *ant_decision_json(const struct ant_decision *d);

#endif
