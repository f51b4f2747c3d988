/* The decision function: rules in a fixed order over the catalog and the policy tables. */
#include "policy/decide.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_internal.h"

#define DATA_ACTIONS (ANT_ACT_READ | ANT_ACT_STAGE | ANT_ACT_TRANSFER)

struct run {
    struct ant_store *st;
    const struct ant_principal *p;
    unsigned action;
    const struct ant_decide_ctx *ctx;
    int64_t now;
    struct ant_decision *d;
    json_t *rules; /* NULL unless explaining */
    struct ant_dataset ds;
    bool member;          /* a local principal of the owner tenant */
    bool public_describe; /* classification_rules */
    bool plaintext_leaves;
    bool vis_known; /* d->visible is final */
};

static const char *grant_site(const struct ant_principal *p);
static const char *grant_tenant(const struct ant_principal *p);

static void note(struct run *r, const char *rule, const char *result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A grant row the decision looked at: its future not-before and expiry are times at which the
 * same question may get another answer (valid_until). Column nbf, then exp (NULL: none). */
static void grant_boundaries(struct run *r, sqlite3_stmt *s, int nbf_col, int exp_col)
{
    int64_t nbf = sqlite3_column_int64(s, nbf_col);
    if (nbf > r->now && nbf < r->d->valid_until) {
        r->d->valid_until = nbf;
    }
    if (sqlite3_column_type(s, exp_col) != SQLITE_NULL) {
        int64_t exp = sqlite3_column_int64(s, exp_col);
        if (exp > r->now && exp < r->d->valid_until) {
            r->d->valid_until = exp;
        }
    }
}

static void note(struct run *r, const char *rule, const char *result, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    if (r->rules == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_array_append_new(r->rules, json_pack("{s:s, s:s, s:s}", "rule", rule, "result", result,
                                              "detail", detail));
}

static void decide_as(struct run *r, bool allow, const char *rule, const char *reason,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Records the deciding rule: its reason code and the sentence for people. */
static void decide_as(struct run *r, bool allow, const char *rule, const char *reason,
                      const char *fmt, ...)
{
    va_list ap;
    r->d->allow = allow;
    r->d->reason = reason;
    va_start(ap, fmt);
    vsnprintf(r->d->message, sizeof(r->d->message), fmt, ap);
    va_end(ap);
    note(r, rule, allow ? "allow" : "deny", "%s: %s", reason, r->d->message);
}

/* Rule 2: the dataset row and its classification's rules in one query (the hot path). */
static int load_dataset(struct run *r)
{
    sqlite3_stmt *s = ant_store_stmt(
        r->st, "SELECT d.tenant_id, d.state, d.classification, c.public_describe,"
               " c.plaintext_leaves FROM datasets d"
               " JOIN classification_rules c ON c.classification = d.classification"
               " WHERE d.id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, r->ds.id);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -ENOENT : ant_sqlite_err(src);
    if (rc == 0) {
        const char *state = (const char *)sqlite3_column_text(s, 1);
        const char *cls = (const char *)sqlite3_column_text(s, 2);
        rc = ant_col_copy(s, 0, r->ds.tenant, sizeof(r->ds.tenant));
        rc = rc < 0 ? rc : ant_ds_state_parse(state, &r->ds.state);
        rc = rc < 0 ? rc : ant_ds_class_parse(cls, &r->ds.classification);
        r->public_describe = sqlite3_column_int(s, 3) != 0;
        r->plaintext_leaves = sqlite3_column_int(s, 4) != 0;
    }
    sqlite3_reset(s);
    return rc;
}

/* Rule 5: whether `region` is one the dataset may go to. */
static int region_allowed(struct run *r, const char *region)
{
    if (region == NULL) {
        return 0;
    }
    sqlite3_stmt *s = ant_store_stmt(r->st, "SELECT 1 FROM dataset_regions"
                                            " WHERE dataset_id = ? AND region = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, r->ds.id);
    ant_bind_text(s, 2, region);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 1 : src == SQLITE_DONE ? 0 : ant_sqlite_err(src);
    sqlite3_reset(s);
    return rc;
}

/* Rule 7: the role_actions table. Returns 1 and the role name when a role allows. */
static int role_allows(struct run *r, char role[16])
{
    if (r->p->site[0] != '\0' || r->p->roles == 0) {
        return 0; /* a federated principal has no roles here */
    }
    /* Roles walked in bit order on their unique index, each probed on role_actions' key: a
     * join ordered by ro.bit instead sorted into a temporary b-tree on every request (11 % of
     * the CPU of a small authenticated request). */
    sqlite3_stmt *s = ant_store_stmt(
        r->st, "SELECT ro.name FROM roles ro WHERE (ro.bit & ?2) != 0"
               " AND EXISTS(SELECT 1 FROM role_actions ra JOIN actions a ON a.name = ra.action"
               "   WHERE ra.role = ro.name AND a.bit = ?1 AND (ra.scope = 'site' OR ?3))"
               " ORDER BY ro.bit LIMIT 1");
    if (s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int(s, 1, (int)r->action);
    sqlite3_bind_int(s, 2, (int)r->p->roles);
    sqlite3_bind_int(s, 3, r->member);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 1 : src == SQLITE_DONE ? 0 : ant_sqlite_err(src);
    if (rc == 1 && ant_col_copy(s, 0, role, 16) < 0) {
        rc = -EBADMSG;
    }
    sqlite3_reset(s);
    return rc;
}

/* Rule 10: the first machine-checkable DUO condition of the dataset that the purpose does not
 * satisfy (duo_purpose), or "" when all are. */
static int duo_unmet(struct run *r, const char *purpose, char code[ANT_DUO_CODE_MAX + 1])
{
    sqlite3_stmt *s = ant_store_stmt(
        r->st, "SELECT u.code FROM dataset_duo u WHERE u.dataset_id = ?1"
               " AND EXISTS(SELECT 1 FROM duo_purpose c WHERE c.condition = u.code)"
               " AND NOT EXISTS(SELECT 1 FROM duo_purpose c WHERE c.condition = u.code"
               "   AND c.purpose = ?2) ORDER BY u.code LIMIT 1");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, r->ds.id);
    ant_bind_text(s, 2, purpose);
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW || src == SQLITE_DONE ? 0 : ant_sqlite_err(src);
    code[0] = '\0';
    if (src == SQLITE_ROW && ant_col_copy(s, 0, code, ANT_DUO_CODE_MAX + 1) < 0) {
        rc = -EBADMSG;
    }
    sqlite3_reset(s);
    return rc;
}

/* A grant that did not allow, ranked by how far it got: the reason of the best one is the most
 * useful thing to tell the caller. */
enum miss {
    MISS_NONE = 0,
    MISS_ACTION,
    MISS_REVOKED,
    MISS_EXPIRED,
    MISS_NOT_YET,
    MISS_PURPOSE,
    MISS_DUO_NO_PURPOSE,
    MISS_DUO,
};

static const char *const g_miss_reason[] = {
    "no_grant",         "grant_action_not_covered", "grant_revoked",    "grant_expired",
    "grant_not_yet_valid", "grant_purpose_mismatch", "purpose_required", "duo_incompatible",
};

/* Rules 9 and 10. Returns 1 when a grant allowed (out->grant_id set), 0 when none did (*best
 * says why), negative errno on error. Also sets *live when some grant is live (visibility). */
static int grant_allows(struct run *r, enum miss *best, bool *live, char unmet[ANT_DUO_CODE_MAX + 1])
{
    const char *purpose = r->ctx != NULL ? r->ctx->purpose : NULL;
    int rc = 0;
    int allowed = 0;
    *best = MISS_NONE;
    *live = false;
    sqlite3_stmt *s = ant_store_stmt(
        /* Three seeks on the full key of grants_lookup (principal, then tenant, then site
         * grants): a dataset with many grants costs no more than one with a few. */
        r->st, "SELECT id, actions, purpose, not_before, expires, revoked_at FROM grants"
               " WHERE dataset_id = ?1 AND grantee_kind = 'principal' AND grantee_id = ?2"
               " UNION ALL SELECT id, actions, purpose, not_before, expires, revoked_at FROM grants"
               " WHERE dataset_id = ?1 AND grantee_kind = 'tenant' AND grantee_id = ?3"
               " UNION ALL SELECT id, actions, purpose, not_before, expires, revoked_at FROM grants"
               " WHERE dataset_id = ?1 AND grantee_kind = 'site' AND grantee_id = ?4");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, r->ds.id);
    ant_bind_text(s, 2, r->p->kind == ANT_PRINCIPAL_SITE ? NULL : r->p->id);
    ant_bind_text(s, 3, grant_tenant(r->p));
    ant_bind_text(s, 4, grant_site(r->p));
    int src = SQLITE_DONE;
    while (allowed == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        unsigned acts = (unsigned)sqlite3_column_int(s, 1);
        const char *gp = (const char *)sqlite3_column_text(s, 2);
        bool revoked = sqlite3_column_type(s, 5) != SQLITE_NULL;
        bool expired = sqlite3_column_type(s, 4) != SQLITE_NULL && sqlite3_column_int64(s, 4) <= r->now;
        bool not_yet = sqlite3_column_int64(s, 3) > r->now;
        enum miss m = MISS_NONE;
        const char *gid = (const char *)sqlite3_column_text(s, 0);
        bool glive = !revoked && !expired && !not_yet;
        *live = *live || glive;
        if (!revoked) {
            grant_boundaries(r, s, 3, 4); /* a revocation is for good: no boundary */
        }
        if (r->action != ANT_ACT_DESCRIBE && (acts & r->action) == 0) {
            m = MISS_ACTION;
        } else if (revoked) {
            m = MISS_REVOKED;
        } else if (expired) {
            m = MISS_EXPIRED;
        } else if (not_yet) {
            m = MISS_NOT_YET;
        } else if (r->action != ANT_ACT_DESCRIBE && gp != NULL &&
                   (purpose == NULL || strcmp(purpose, gp) != 0)) {
            m = MISS_PURPOSE;
        }
        if (m == MISS_NONE && r->action != ANT_ACT_DESCRIBE) {
            char code[ANT_DUO_CODE_MAX + 1];
            rc = duo_unmet(r, purpose, code);
            if (rc < 0) {
                break;
            }
            if (code[0] != '\0') {
                m = purpose == NULL ? MISS_DUO_NO_PURPOSE : MISS_DUO;
                if (m > *best) {
                    memcpy(unmet, code, sizeof(code));
                }
            }
        }
        note(r, "grant", m == MISS_NONE ? "allow" : "skip", "grant %s: %s", gid ? gid : "?",
             m == MISS_NONE ? "live and covers the request" : g_miss_reason[m]);
        if (m == MISS_NONE) {
            snprintf(r->d->grant_id, sizeof(r->d->grant_id), "%s", gid ? gid : "");
            allowed = 1;
        } else if (m > *best) {
            *best = m;
        }
    }
    if (rc == 0 && allowed == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    return rc < 0 ? rc : allowed;
}

static const char *grant_site(const struct ant_principal *p)
{
    return p->kind == ANT_PRINCIPAL_SITE ? p->id : p->site[0] != '\0' ? p->site : NULL;
}

/* A local principal's tenant is one of this site's. A federated principal's is its home site's,
 * qualified "lab@site-b": a grant to that name reaches it, and only when the qualifier is the
 * very site that vouched for the principal (a peer speaks only for its own tenants). */
static const char *grant_tenant(const struct ant_principal *p)
{
    if (p->tenant[0] == '\0') {
        return NULL;
    }
    if (p->site[0] == '\0') {
        return p->tenant;
    }
    size_t tl = strlen(p->tenant), sl = strlen(p->site);
    bool qualified = tl > sl + 1 && p->tenant[tl - sl - 1] == '@' &&
                     strcmp(p->tenant + tl - sl, p->site) == 0;
    return qualified ? p->tenant : NULL;
}

/* Whether any live grant names the caller: such a caller may know the dataset exists. The
 * unrevoked grants are walked here rather than filtered by time in SQL, so that their
 * not-before and expiry bound how long the answer holds (valid_until). */
static int has_live_grant(struct run *r)
{
    sqlite3_stmt *s = ant_store_stmt(
        r->st, "SELECT not_before, expires FROM grants WHERE dataset_id = ?1"
               " AND grantee_kind = 'principal' AND grantee_id = ?2 AND revoked_at IS NULL"
               " UNION ALL SELECT not_before, expires FROM grants WHERE dataset_id = ?1"
               " AND grantee_kind = 'tenant' AND grantee_id = ?3 AND revoked_at IS NULL"
               " UNION ALL SELECT not_before, expires FROM grants WHERE dataset_id = ?1"
               " AND grantee_kind = 'site' AND grantee_id = ?4 AND revoked_at IS NULL");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, r->ds.id);
    ant_bind_text(s, 2, r->p->kind == ANT_PRINCIPAL_SITE ? NULL : r->p->id);
    ant_bind_text(s, 3, grant_tenant(r->p));
    ant_bind_text(s, 4, grant_site(r->p));
    int src = SQLITE_DONE, live = 0;
    while (live == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        bool expired = sqlite3_column_type(s, 1) != SQLITE_NULL &&
                       sqlite3_column_int64(s, 1) <= r->now;
        live = !expired && sqlite3_column_int64(s, 0) <= r->now;
        grant_boundaries(r, s, 0, 1);
    }
    int rc = live == 1 ? 1 : src == SQLITE_DONE ? 0 : ant_sqlite_err(src);
    sqlite3_reset(s);
    return rc;
}

static int run_rules(struct run *r)
{
    const char *act = ant_action_name(r->action);
    const struct ant_decide_ctx *ctx = r->ctx;
    char role[16], unmet[ANT_DUO_CODE_MAX + 1] = "";
    bool live = false;
    enum miss best = MISS_NONE;
    int rc;

    /* 1 */
    if (r->p == NULL || r->p->id[0] == '\0') {
        decide_as(r, false, "principal", "no_principal", "no authenticated principal");
        return 0;
    }
    note(r, "principal", "pass", "%s (tenant %s)", r->p->id, r->p->tenant[0] ? r->p->tenant : "-");
    /* 2 */
    rc = load_dataset(r);
    if (rc == -ENOENT) {
        decide_as(r, false, "dataset", "dataset_not_found", "no such dataset");
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    snprintf(r->d->tenant, sizeof(r->d->tenant), "%s", r->ds.tenant);
    r->member = r->p->site[0] == '\0' && r->p->kind == ANT_PRINCIPAL_USER &&
                r->p->tenant[0] != '\0' && strcmp(r->p->tenant, r->ds.tenant) == 0;
    note(r, "dataset", "pass", "%s of tenant %s, %s, %s", r->ds.id, r->ds.tenant,
         ant_ds_state_name(r->ds.state), ant_ds_class_name(r->ds.classification));
    bool draft = r->ds.state == ANT_DS_DRAFT;
    /* Whether the caller may learn the dataset exists. When this leaves it open (a stranger
     * to a non-public dataset), a live grant decides it: looked up only if the answer is a
     * denial (decide_common), or on the way by rule 9. */
    r->d->visible = r->member || (!draft && (r->public_describe || (r->p->roles & ANT_ROLE_ADMIN &&
                                                                     r->p->site[0] == '\0')));
    r->vis_known = r->d->visible || draft;
    /* 3 */
    if (draft && !r->member) {
        r->d->visible = false;
        decide_as(r, false, "draft", "dataset_not_found",
                  "no such dataset (drafts are visible to their tenant only)");
        return 0;
    }
    note(r, "draft", draft ? "pass" : "skip", draft ? "a draft, and the caller is of its tenant"
                                                    : "not a draft");
    /* 4 */
    if ((r->action & (DATA_ACTIONS | ANT_ACT_GRANT)) && r->ds.state == ANT_DS_WITHDRAWN) {
        decide_as(r, false, "state", "dataset_withdrawn", "the dataset was withdrawn: no %s", act);
        return 0;
    }
    if ((r->action & (ANT_ACT_WRITE | ANT_ACT_PUBLISH)) && !draft) {
        decide_as(r, false, "state", "dataset_not_draft", "%s needs a draft dataset", act);
        return 0;
    }
    if (r->action == ANT_ACT_WITHDRAW && r->ds.state != ANT_DS_PUBLISHED) {
        decide_as(r, false, "state", "dataset_not_published", "only a published dataset can be"
                                                              " withdrawn");
        return 0;
    }
    note(r, "state", "pass", "%s allows %s", ant_ds_state_name(r->ds.state), act);
    /* 5 */
    if (r->action == ANT_ACT_TRANSFER) {
        const char *region = ctx != NULL ? ctx->dest_region : NULL;
        rc = region_allowed(r, region);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            decide_as(r, false, "residency", "residency",
                      "the dataset may not go to region %s (site %s)", region ? region : "(none)",
                      ctx != NULL && ctx->dest_site ? ctx->dest_site : "?");
            return 0;
        }
        note(r, "residency", "pass", "region %s is allowed", region);
    } else {
        note(r, "residency", "skip", "not a transfer");
    }
    /* 6 */
    bool plain = ctx != NULL && ctx->plaintext && (r->action & (ANT_ACT_READ | ANT_ACT_TRANSFER));
    if (plain && !r->plaintext_leaves) {
        decide_as(r, false, "plaintext", "sensitive_plaintext",
                  "%s data leaves the site only encrypted (decrypt into scratch by staging)",
                  ant_ds_class_name(r->ds.classification));
        return 0;
    }
    note(r, "plaintext", plain ? "pass" : "skip", plain ? "plaintext may leave for this class"
                                                        : "no plaintext leaves the site");
    /* 7 */
    rc = role_allows(r, role);
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        char reason[24];
        snprintf(reason, sizeof(reason), "role_%s", role);
        /* The reason must be a static string: pick it from the known roles. */
        static const char *const reasons[] = {"role_owner", "role_reader", "role_auditor",
                                              "role_admin"};
        const char *rs = "role";
        for (size_t i = 0; i < ANT_ARRAY_LEN(reasons); i++) {
            if (strcmp(reasons[i], reason) == 0) {
                rs = reasons[i];
            }
        }
        decide_as(r, true, "role", rs, "role %s allows %s%s", role, act,
                  r->member ? " on its tenant's datasets" : " site-wide");
        return 0;
    }
    note(r, "role", "skip", "no role of the caller allows %s here", act);
    /* 8 */
    if (r->action == ANT_ACT_DESCRIBE && !draft && r->public_describe) {
        decide_as(r, true, "public", "public_describe", "%s datasets are listed for everyone",
                  ant_ds_class_name(r->ds.classification));
        return 0;
    }
    note(r, "public", "skip", "not a describe of a public dataset");
    /* 9, 10 */
    if (r->action & (DATA_ACTIONS | ANT_ACT_DESCRIBE)) {
        rc = grant_allows(r, &best, &live, unmet);
        if (rc < 0) {
            return rc;
        }
        r->d->visible = r->d->visible || live || rc == 1;
        r->vis_known = true;
        if (rc == 1) {
            decide_as(r, true, "grant", "grant", "grant %s allows %s", r->d->grant_id, act);
            return 0;
        }
        if (best == MISS_DUO || best == MISS_DUO_NO_PURPOSE) {
            decide_as(r, false, "duo", g_miss_reason[best],
                      best == MISS_DUO ? "purpose %s does not meet the data-use condition %s"
                                       : "%sa stated purpose is needed for condition %s",
                      best == MISS_DUO ? ctx->purpose : "", unmet);
            return 0;
        }
        if (best != MISS_NONE) {
            decide_as(r, false, "grant", g_miss_reason[best], "no live grant allows %s (%s)", act,
                      g_miss_reason[best]);
            return 0;
        }
    } else {
        note(r, "grant", "skip", "%s is not grantable", act);
    }
    /* 11 */
    decide_as(r, false, "default", "no_grant", "nothing allows %s on this dataset", act);
    return 0;
}

static int decide_common(struct ant_store *st, const struct ant_principal *p, unsigned action,
                         const char *dataset_id, const struct ant_decide_ctx *ctx,
                         struct ant_decision *out, json_t *rules)
{
    struct ant_decision d;
    struct run *r = NULL;
    int rc = 0;
    if (st == NULL || out == NULL || action == 0 || (action & (action - 1)) != 0 ||
        action > ANT_ACT_ADMIN || dataset_id == NULL) {
        return -EINVAL;
    }
    memset(&d, 0, sizeof(d));
    d.valid_until = INT64_MAX;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->st = st;
    r->p = p;
    r->action = action;
    r->ctx = ctx;
    r->now = ctx != NULL && ctx->now != 0 ? ctx->now : ant_now_unix();
    r->d = &d;
    r->rules = rules;
    if (snprintf(r->ds.id, sizeof(r->ds.id), "%s", dataset_id) >= (int)sizeof(r->ds.id)) {
        r->ds.id[0] = '\0'; /* too long to be an id: not found */
    }
    /* One read transaction around all the rule queries: one snapshot of the catalog for the
     * whole decision, and one round of WAL locking instead of one per query. */
    bool txn = sqlite3_get_autocommit(st->db) != 0;
    sqlite3_stmt *b = txn ? ant_store_stmt(st, "BEGIN") : NULL;
    if (txn && (b == NULL || ant_store_exec_stmt(b) < 0)) {
        txn = false; /* decide without: each query is then its own snapshot */
    }
    rc = run_rules(r);
    if (rc == 0 && d.allow) {
        d.visible = true;
    } else if (rc == 0 && !r->vis_known && r->ds.tenant[0] != '\0') {
        rc = has_live_grant(r);
        d.visible = rc == 1;
        rc = rc < 0 ? rc : 0;
    }
    if (txn) {
        sqlite3_stmt *e = ant_store_stmt(st, "COMMIT");
        if (e == NULL || ant_store_exec_stmt(e) < 0) {
            ant_store_rollback(st);
        }
    }
    if (rc == 0) {
        *out = d;
    }
    free(r);
    return rc;
}

int ant_decide(struct ant_store *st, const struct ant_principal *p, unsigned action,
               const char *dataset_id, const struct ant_decide_ctx *ctx, struct ant_decision *out)
{
    return decide_common(st, p, action, dataset_id, ctx, out, NULL);
}

int ant_explain(struct ant_store *st, const struct ant_principal *p, unsigned action,
                const char *dataset_id, const struct ant_decide_ctx *ctx, struct ant_decision *out,
                json_t **rules)
{
    json_t *a = json_array();
    if (a == NULL) {
        return -ENOMEM;
    }
    int rc = decide_common(st, p, action, dataset_id, ctx, out, a);
    if (rc == 0) {
        *rules = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

json_t *ant_decision_json(const struct ant_decision *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "decision", d->allow ? "allow" : "deny", "reason",
                          d->reason ? d->reason : "", "message", d->message);
    if (o != NULL && d->grant_id[0] != '\0') {
        json_object_set_new(o, "grant_id", json_string(d->grant_id));
    }
    return o;
}

int ant_decide_tenant(struct ant_store *st, const struct ant_principal *p, unsigned action,
                      const char *tenant, struct ant_decision *out)
{
    struct ant_decision d;
    struct run r;
    char role[16];
    if (st == NULL || out == NULL || (action != ANT_ACT_AUDIT && action != ANT_ACT_ADMIN)) {
        return -EINVAL;
    }
    memset(&d, 0, sizeof(d));
    memset(&r, 0, sizeof(r));
    d.valid_until = INT64_MAX;
    r.st = st;
    r.p = p;
    r.action = action;
    r.d = &d;
    if (p == NULL || p->id[0] == '\0') {
        decide_as(&r, false, "principal", "no_principal", "no authenticated principal");
        *out = d;
        return 0;
    }
    r.member = tenant != NULL && p->site[0] == '\0' && p->kind == ANT_PRINCIPAL_USER &&
               p->tenant[0] != '\0' && strcmp(p->tenant, tenant) == 0;
    snprintf(d.tenant, sizeof(d.tenant), "%s", tenant != NULL ? tenant : "");
    int rc = role_allows(&r, role);
    if (rc < 0) {
        return rc;
    }
    d.visible = true;
    if (rc == 1) {
        decide_as(&r, true, "role", strcmp(role, "admin") == 0 ? "role_admin" : "role_auditor",
                  "role %s allows %s", role, ant_action_name(action));
    } else {
        decide_as(&r, false, "role", "no_role", "no role of the caller allows %s %s%s",
                  ant_action_name(action), tenant != NULL ? "on tenant " : "site-wide",
                  tenant != NULL ? tenant : "");
    }
    *out = d;
    return 0;
}

/* --- the hot-path cache (decide.h) --- */

#define HOT_DIGEST 32
#define HOT_LOCKS 16

struct hot_slot {
    uint8_t digest[HOT_DIGEST]; /* keyed BLAKE2b of the key */
    uint64_t gen;               /* the cache generation read before the catalog was */
    int64_t expires_ns;         /* monotonic; 0: empty */
    int64_t valid_until;        /* unix seconds */
    size_t len;
    uint8_t *value; /* value_max bytes, allocated at the first put */
};

struct ant_hotcache {
    uint8_t key[crypto_generichash_KEYBYTES]; /* per process: digests mean nothing elsewhere */
    _Atomic uint64_t gen;
    size_t nslots; /* a power of two */
    size_t value_max;
    pthread_mutex_t mu[HOT_LOCKS];
    struct hot_slot *slot;
};

int ant_hotcache_new(size_t slots, size_t value_max, struct ant_hotcache **out)
{
    if (slots == 0 || slots > (1u << 20) || value_max == 0 || value_max > (1u << 20)) {
        return -EINVAL;
    }
    size_t n = 16;
    while (n < slots) {
        n <<= 1;
    }
    struct ant_hotcache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->slot = calloc(n, sizeof(*c->slot));
    if (c->slot == NULL) {
        free(c);
        return -ENOMEM;
    }
    c->nslots = n;
    c->value_max = value_max;
    randombytes_buf(c->key, sizeof(c->key));
    atomic_init(&c->gen, 1);
    for (size_t i = 0; i < HOT_LOCKS; i++) {
        pthread_mutex_init(&c->mu[i], NULL);
    }
    *out = c;
    return 0;
}

void ant_hotcache_free(struct ant_hotcache *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->nslots; i++) {
        free(c->slot[i].value);
    }
    for (size_t i = 0; i < HOT_LOCKS; i++) {
        pthread_mutex_destroy(&c->mu[i]);
    }
    free(c->slot);
    sodium_memzero(c->key, sizeof(c->key));
    free(c);
}

void ant_hotcache_invalidate(struct ant_hotcache *c)
{
    if (c != NULL) {
        atomic_fetch_add(&c->gen, 1);
    }
}

uint64_t ant_hotcache_gen(struct ant_hotcache *c)
{
    return c != NULL ? atomic_load(&c->gen) : 0;
}

static size_t hot_slot_of(const struct ant_hotcache *c, const uint8_t d[HOT_DIGEST])
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++) {
        v |= (uint64_t)d[i] << (8 * i);
    }
    return (size_t)(v & (c->nslots - 1));
}

bool ant_hotcache_get(struct ant_hotcache *c, const void *key, size_t keylen, int64_t now_ns,
                      int64_t now_unix, void *out, size_t cap, size_t *len)
{
    uint8_t d[HOT_DIGEST];
    bool hit = false;
    if (c == NULL) {
        return false;
    }
    crypto_generichash(d, sizeof(d), key, keylen, c->key, sizeof(c->key));
    size_t i = hot_slot_of(c, d);
    uint64_t gen = atomic_load(&c->gen);
    pthread_mutex_lock(&c->mu[i % HOT_LOCKS]);
    struct hot_slot *s = &c->slot[i];
    if (s->expires_ns > now_ns && s->gen == gen && s->valid_until > now_unix && s->len <= cap &&
        sodium_memcmp(s->digest, d, sizeof(d)) == 0) {
        memcpy(out, s->value, s->len);
        *len = s->len;
        hit = true;
    }
    pthread_mutex_unlock(&c->mu[i % HOT_LOCKS]);
    return hit;
}

void ant_hotcache_put(struct ant_hotcache *c, const void *key, size_t keylen, uint64_t gen,
                      int64_t t0_ns, int64_t valid_until, const void *value, size_t len)
{
    uint8_t d[HOT_DIGEST];
    if (c == NULL || len > c->value_max) {
        return;
    }
    crypto_generichash(d, sizeof(d), key, keylen, c->key, sizeof(c->key));
    size_t i = hot_slot_of(c, d);
    pthread_mutex_lock(&c->mu[i % HOT_LOCKS]);
    struct hot_slot *s = &c->slot[i];
    if (s->value == NULL) {
        s->value = malloc(c->value_max);
    }
    if (s->value != NULL) {
        memcpy(s->digest, d, sizeof(d));
        memcpy(s->value, value, len);
        s->len = len;
        s->gen = gen;
        s->valid_until = valid_until;
        s->expires_ns = t0_ns + ANT_HOTCACHE_NS;
    }
    pthread_mutex_unlock(&c->mu[i % HOT_LOCKS]);
}

/* The key of a question: each part NUL-terminated, a NULL string told from "" by a leading
 * byte, so that no two questions share a key. */
struct qkey {
    uint8_t p[8 * (ANT_NAME_MAX + 2) + ANT_ID_MAX + 64];
    size_t len;
    bool full;
};

static void qkey_str(struct qkey *k, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (k->full || n + 2 > sizeof(k->p) - k->len) {
        k->full = true;
        return;
    }
    k->p[k->len++] = s != NULL ? 's' : 'n';
    memcpy(k->p + k->len, s != NULL ? s : "", n);
    k->len += n;
    k->p[k->len++] = '\0';
}

static void qkey_uint(struct qkey *k, uint32_t v)
{
    if (k->full || sizeof(v) > sizeof(k->p) - k->len) {
        k->full = true;
        return;
    }
    memcpy(k->p + k->len, &v, sizeof(v));
    k->len += sizeof(v);
}

int ant_decide_cached(struct ant_hotcache *c, struct ant_store *(*get_store)(void *arg), void *arg,
                      const struct ant_principal *p, unsigned action, const char *dataset_id,
                      const struct ant_decide_ctx *ctx, int64_t now_unix, int64_t now_ns,
                      struct ant_decision *out, bool *hit)
{
    struct ant_decide_ctx q = {0};
    struct qkey k;
    size_t len = 0;
    if (ctx != NULL) {
        if (ctx->now != 0) {
            return -EINVAL; /* the time is now_unix */
        }
        q = *ctx;
    }
    q.now = now_unix;
    if (hit != NULL) {
        *hit = false;
    }
    k.len = 0;
    k.full = p == NULL || dataset_id == NULL;
    if (!k.full) {
        qkey_uint(&k, action);
        qkey_str(&k, dataset_id);
        qkey_uint(&k, (uint32_t)p->kind);
        qkey_uint(&k, p->roles);
        qkey_str(&k, p->id);
        qkey_str(&k, p->tenant);
        qkey_str(&k, p->site);
        qkey_uint(&k, q.plaintext);
        qkey_str(&k, q.purpose);
        qkey_str(&k, q.dest_region);
        qkey_str(&k, q.dest_site);
    }
    bool cacheable = c != NULL && !k.full; /* an oversized question is only decided */
    if (cacheable && ant_hotcache_get(c, k.p, k.len, now_ns, now_unix, out, sizeof(*out), &len) &&
        len == sizeof(*out)) {
        if (hit != NULL) {
            *hit = true;
        }
        return 0;
    }
    uint64_t gen = ant_hotcache_gen(c); /* before the catalog read */
    struct ant_store *st = get_store(arg);
    if (st == NULL) {
        return -EBUSY;
    }
    int rc = ant_decide(st, p, action, dataset_id, &q, out);
    if (rc == 0 && cacheable) {
        ant_hotcache_put(c, k.p, k.len, gen, now_ns, out->valid_until, out, sizeof(*out));
    }
    return rc;
}
