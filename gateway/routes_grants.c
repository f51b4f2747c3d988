/* Grants on a dataset (create, list, revoke) and POST /v1/policy/explain.
 *
 * Grant ids are known only to those who may manage the dataset's grants: a caller without the
 * grant action on its dataset gets 404 for a grant, as for one that does not exist. */
#include "gateway/api.h"
#include "gateway/routes.h"
#include "gateway/site.h"
#include "policy/peers.h"

#include <string.h>

#define GRANT_TIME_MAX 253402300799ll /* 9999-12-31 */

/* A grant to a principal or tenant that does not exist would wait for whoever takes the name
 * later: refuse it. Peer sites are checked by the federation layer when they connect. */
/* "name@peer" names a principal or tenant of a peer site: valid when the peer is one of ours. */
static int peer_qualified(struct ant_store *st, const char *id)
{
    const char *at = strrchr(id, '@');
    struct ant_peer peer;
    if (at == NULL || at == id || at[1] == '\0') {
        return -ENOENT;
    }
    return ant_peer_get(st, at + 1, &peer);
}

static int grantee_exists(struct ant_store *st, enum ant_grantee_kind kind, const char *id)
{
    struct ant_principal p;
    json_t *list = NULL, *t;
    size_t i;
    int rc = 0;
    if (kind == ANT_GRANTEE_PRINCIPAL) {
        rc = ant_store_principal_get(st, id, &p);
        return rc == -ENOENT ? peer_qualified(st, id) : rc;
    }
    if (kind == ANT_GRANTEE_SITE) {
        struct ant_peer peer;
        return ant_peer_get(st, id, &peer);
    }
    if (strchr(id, '@') != NULL) {
        return peer_qualified(st, id);
    }
    rc = ant_store_tenant_list(st, &list);
    if (rc < 0) {
        return rc;
    }
    rc = -ENOENT;
    json_array_foreach(list, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "tenant"));
        if (name != NULL && strcmp(name, id) == 0) {
            rc = 0;
        }
    }
    json_decref(list);
    return rc;
}

int ant_route_grant_create(struct ant_req *r)
{
    static const char *const allowed[] = {"grantee_kind", "grantee", "actions",    "purpose",
                                          "not_before",   "expires", "expires_in", NULL};
    char ds[ANT_ID_MAX + 1], gid[ANT_ID_MAX + 1];
    const char *kind_s = NULL, *grantee = NULL, *purpose = NULL, *actv[8];
    unsigned nact = 0, acts = 0;
    int64_t nbf = 0, exp = 0, exp_in = 0;
    bool has_nbf = false, has_exp = false, has_exp_in = false;
    enum ant_grantee_kind kind;
    struct ant_decision d;
    json_t *doc = NULL, *shown = NULL;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_api_param(r, 0, ds, sizeof(ds));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
        goto out;
    }
    rc = ant_api_decide(r, st, ANT_ACT_GRANT, ds, NULL, NULL, NULL, &d);
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "grantee_kind", true, 16, &kind_s);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "grantee", true, ANT_NAME_MAX, &grantee);
    }
    if (rc == 0) {
        rc = ant_api_purpose(r, doc, &purpose);
    }
    if (rc == 0) {
        rc = ant_api_strv(r, doc, "actions", 8, 16, actv, &nact);
    }
    if (rc == 0) {
        rc = ant_api_int(r, doc, "not_before", 0, GRANT_TIME_MAX, &has_nbf, &nbf);
    }
    if (rc == 0) {
        rc = ant_api_int(r, doc, "expires", 0, GRANT_TIME_MAX, &has_exp, &exp);
    }
    if (rc == 0) {
        rc = ant_api_int(r, doc, "expires_in", 1, 100ll * 365 * 86400, &has_exp_in, &exp_in);
    }
    if (rc != 0) {
        goto out;
    }
    for (unsigned i = 0; i < nact; i++) {
        unsigned bit;
        if (ant_action_parse(actv[i], &bit) < 0 || (bit & ANT_ACT_GRANTABLE) == 0) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_action",
                              "grantable actions are read, stage and transfer");
            goto out;
        }
        acts |= bit;
    }
    if (ant_grantee_kind_parse(kind_s, &kind) < 0 || acts == 0 || (has_exp && has_exp_in)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "a grant needs grantee_kind (principal, tenant or site), a grantee, at "
                          "least one action, and at most one of expires / expires_in");
        goto out;
    }
    rc = grantee_exists(st, kind, grantee);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "unknown_grantee", "no %s named %s",
                          ant_grantee_kind_name(kind), grantee);
    }
    if (rc != 0) {
        goto out;
    }
    struct ant_grant_spec spec = {
        .dataset_id = ds,
        .grantee_kind = kind,
        .grantee_id = grantee,
        .actions = acts,
        .purpose = purpose,
        .not_before = nbf,
        .expires = has_exp_in ? ant_now_unix() + exp_in : exp,
        .created_by = r->who.id,
    };
    rc = ant_store_grant_create(st, &spec, gid);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "unknown_grantee", "no %s named %s",
                          ant_grantee_kind_name(kind), grantee);
    } else if (rc == -EINVAL) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "the grant is not valid (purpose code, time window or grantee name)");
    } else if (rc == 0) {
        rc = ant_store_grant_show(st, gid, &shown);
        if (rc == 0) {
            rc = ant_api_json_take(r, MHD_HTTP_CREATED, shown);
        }
    }
out:
    ant_store_pool_release(r->site->pool, st);
    json_decref(doc);
    return ant_api_end(rc);
}

int ant_route_grant_list(struct ant_req *r)
{
    char ds[ANT_ID_MAX + 1];
    struct ant_decision d;
    json_t *list = NULL;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_api_param(r, 0, ds, sizeof(ds));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    } else {
        rc = ant_api_decide(r, st, ANT_ACT_GRANT, ds, NULL, NULL, NULL, &d);
    }
    if (rc == 0) {
        rc = ant_store_grant_list(st, ds, &list);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "grants", list);
    }
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}

int ant_route_grant_revoke(struct ant_req *r)
{
    char gid[ANT_ID_MAX + 1];
    struct ant_decision d = {0};
    struct ant_decide_ctx ctx = {0};
    json_t *g = NULL, *shown = NULL;
    const char *ds = NULL;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_api_param(r, 0, gid, sizeof(gid));
    if (rc == 0) {
        rc = ant_store_grant_show(st, gid, &g);
    }
    if (rc == 0) {
        ds = json_string_value(json_object_get(g, "dataset_id"));
        rc = ds != NULL ? ant_decide(st, &r->who, ANT_ACT_GRANT, ds, &ctx, &d) : -EIO;
    }
    if (rc == -ENOENT) {
        rc = 0; /* unknown grant: audited as a denial like the invisible ones below */
        d.allow = false;
        d.reason = "grant_not_found";
    }
    if (rc < 0) {
        goto out;
    }
    rc = ant_api_audit(r, "grant.revoke", "grant", g != NULL ? gid : NULL, ds,
                       d.allow ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY, d.reason, NULL);
    if (rc != 0) {
        goto out;
    }
    if (!d.allow) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such grant");
        goto out;
    }
    rc = ant_store_grant_revoke(st, gid, ant_now_unix());
    if (rc == -EALREADY) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "already_revoked", "grant %s was revoked before",
                          gid);
    } else if (rc == 0) {
        rc = ant_store_grant_show(st, gid, &shown);
        if (rc == 0) {
            rc = ant_api_json_take(r, MHD_HTTP_OK, shown);
        }
    }
out:
    json_decref(g);
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}

/* POST /v1/policy/explain: why would (principal, action, dataset) be allowed or denied? One may
 * ask about oneself; about another principal only an admin, or one who may manage the
 * dataset's grants (an owner checking why a grantee is refused). A dataset the caller may not
 * see is a 404, so explain cannot be used to probe for hidden datasets: the rule trace would
 * tell a draft from a missing id. */
int ant_route_policy_explain(struct ant_req *r)
{
    static const char *const allowed[] = {"principal",   "action",    "dataset_id", "purpose",
                                          "dest_region", "dest_site", "plaintext",  NULL};
    const char *who = NULL, *act_s = NULL, *ds = NULL;
    struct ant_decide_ctx ctx = {0};
    struct ant_principal target;
    struct ant_decision d, mine;
    unsigned act;
    json_t *doc = NULL, *rules = NULL, *out_doc = NULL;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
    int rc = ant_api_body(r, allowed, false, &doc);
    if (rc == 0) {
        rc = ant_api_str(r, doc, "principal", false, ANT_NAME_MAX, &who);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "action", true, 16, &act_s);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "dataset_id", true, ANT_ID_MAX, &ds);
    }
    if (rc == 0) {
        rc = ant_api_purpose(r, doc, &ctx.purpose);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "dest_region", false, ANT_NAME_MAX, &ctx.dest_region);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "dest_site", false, ANT_NAME_MAX, &ctx.dest_site);
    }
    if (rc == 0) {
        rc = ant_api_bool(r, doc, "plaintext", &ctx.plaintext);
    }
    if (rc != 0) {
        goto out;
    }
    if (ant_action_parse(act_s, &act) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_action", "unknown action %.32s", act_s);
        goto out;
    }
    target = r->who;
    bool self = who == NULL || strcmp(who, r->who.id) == 0;
    if (!self) {
        /* about someone else: the caller must be admin or able to manage the dataset's grants */
        if (!admin) {
            rc = ant_api_decide(r, st, ANT_ACT_GRANT, ds, NULL, NULL, NULL, &mine);
            if (rc != 0) {
                goto out;
            }
        }
        rc = ant_store_principal_get(st, who, &target);
        if (rc == -ENOENT) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, "unknown_principal", "no such principal");
            goto out;
        }
        if (rc < 0) {
            goto out;
        }
    }
    rc = ant_explain(st, &target, act, ds, &ctx, &d, &rules);
    if (rc < 0) {
        goto out;
    }
    /* visibility to the caller, not to the target: an admin sees all */
    if (!admin && self && !d.visible) {
        rc = ant_api_audit(r, "policy.explain", "dataset", ds, ds, ANT_AUDIT_DENY,
                           "dataset_not_found", NULL);
        if (rc == 0) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
        }
        goto out;
    }
    json_t *detail = json_pack("{s:s, s:s, s:s}", "principal", target.id, "action", act_s, "result",
                               d.allow ? "allow" : "deny");
    rc = ant_api_audit(r, "policy.explain", "dataset", ds, ds, ANT_AUDIT_INFO, d.reason, detail);
    json_decref(detail);
    if (rc != 0) {
        goto out;
    }
    out_doc = ant_decision_json(&d);
    if (out_doc == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_set_new(out_doc, "principal", json_string(target.id));
    json_object_set_new(out_doc, "action", json_string(act_s));
    json_object_set_new(out_doc, "dataset_id", json_string(ds));
    json_object_set_new(out_doc, "visible", json_boolean(d.visible));
    json_object_set(out_doc, "rules", rules);
    rc = ant_api_json_take(r, MHD_HTTP_OK, out_doc);
out:
    json_decref(rules);
    json_decref(doc);
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}
