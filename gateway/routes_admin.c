/* Site administration: tenants, principals and API keys (role admin). A principal may also list
 * and revoke its own keys, so a leaked key can be killed without waiting for an admin. */
#include "gateway/api.h"
#include "gateway/routes.h"
#include "gateway/site.h"

#include <string.h>

#define TTL_MAX_S (10ll * 365 * 86400)

int ant_route_tenant_create(struct ant_req *r)
{
    static const char *const allowed[] = {"name", NULL};
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    const char *name = NULL;
    int rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.tenant.create", "tenant", NULL);
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "name", true, ANT_NAME_MAX, &name);
    }
    if (rc != 0) {
        goto out;
    }
    if (!ant_name_is_valid(name)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_name",
                          "a tenant name is 1-64 of [A-Za-z0-9._@-], starting alphanumeric, "
                          "not shaped like an API key or a JWT");
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_tenant_add(st, name);
    if (rc == -EEXIST) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, NULL, "tenant %s exists", name);
    } else if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_CREATED, json_pack("{s:s}", "name", name));
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

int ant_route_tenant_list(struct ant_req *r)
{
    json_t *list = NULL;
    int rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.tenant.list", "tenant", NULL);
    if (rc == 0) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_store_tenant_list(st, &list);
        ant_store_pool_release(r->site->pool, st);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "tenants", list);
    }
    return ant_api_end(rc);
}

int ant_route_principal_create(struct ant_req *r)
{
    static const char *const allowed[] = {"name", "tenant", "roles", NULL};
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    const char *name = NULL, *tenant = NULL, *rolev[4];
    unsigned nroles = 0, roles = 0;
    int rc =
        ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.principal.create", "principal", NULL);
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "name", true, ANT_NAME_MAX, &name);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "tenant", false, ANT_NAME_MAX, &tenant);
    }
    if (rc == 0) {
        rc = ant_api_strv(r, doc, "roles", 4, 16, rolev, &nroles);
    }
    if (rc != 0) {
        goto out;
    }
    for (unsigned i = 0; i < nroles; i++) {
        unsigned bit;
        if (ant_role_parse(rolev[i], &bit) < 0) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_role",
                              "roles are owner, reader, auditor, admin");
            goto out;
        }
        roles |= bit;
    }
    if (!ant_name_is_valid(name) || (tenant != NULL && !ant_name_is_valid(tenant)) || roles == 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "a principal needs a valid name, at least one role, and a valid tenant "
                          "name when it has one");
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_principal_add(st, name, tenant, roles);
    if (rc == -EEXIST) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, NULL, "principal %s exists", name);
    } else if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "unknown_tenant", "no tenant %s",
                          tenant != NULL ? tenant : "");
    } else if (rc == -EINVAL) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "owner, reader and auditor need a tenant");
    } else if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_CREATED,
                               json_pack("{s:s, s:s?, s:O}", "principal", name, "tenant", tenant,
                                         "roles", json_object_get(doc, "roles")));
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

int ant_route_principal_list(struct ant_req *r)
{
    json_t *list = NULL;
    const char *tenant = ant_req_query(r, "tenant");
    const char *role_s = ant_req_query(r, "role");
    unsigned role = 0;
    int rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.principal.list", "principal", NULL);
    if (rc == 0 && role_s != NULL && ant_role_parse(role_s, &role) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_role", "unknown role");
    }
    if (rc == 0) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_store_principal_list(st, tenant, role, &list);
        ant_store_pool_release(r->site->pool, st);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "principals", list);
    }
    return ant_api_end(rc);
}

int ant_route_key_create(struct ant_req *r)
{
    static const char *const allowed[] = {"ttl", NULL};
    char name[ANT_NAME_MAX + 1], key_id[ANT_KEY_ID_LEN + 1];
    struct ant_buf key = ANT_BUF_INIT(ANT_API_KEY_LEN + 1);
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    int64_t ttl = 0;
    bool has_ttl = false;
    int rc = ant_api_param(r, 0, name, sizeof(name));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
        goto out;
    }
    rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.key.create", "principal", name);
    if (rc == 0) {
        rc = ant_api_body(r, allowed, true, &doc);
    }
    if (rc != 0) {
        goto out;
    }
    /* ttl: seconds, or a duration string "90d" */
    const json_t *t = json_object_get(doc, "ttl");
    if (json_is_string(t)) {
        uint64_t secs;
        if (ant_parse_duration(ant_bytes_str(json_string_value(t)), TTL_MAX_S, &secs) < 0) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                              "\"ttl\" must be seconds or a duration such as 90d");
            goto out;
        }
        ttl = (int64_t)secs;
    } else {
        rc = ant_api_int(r, doc, "ttl", 0, TTL_MAX_S, &has_ttl, &ttl);
        if (rc != 0) {
            goto out;
        }
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_key_create(st, name, ttl, &key, key_id);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
        goto out;
    }
    if (rc == 0) {
        rc = ant_buf_terminate(&key);
    }
    if (rc == 0) {
        /* the secret is shown this once: only its salted hash is kept */
        json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "key_id", key_id, "principal", name, "key",
                              (const char *)key.p, "ttl", (json_int_t)ttl);
        if (o != NULL) {
            json_object_set_new(o, "expires",
                                ttl > 0 ? json_integer(ant_now_unix() + ttl) : json_null());
        }
        rc = ant_api_json_take(r, MHD_HTTP_CREATED, o);
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    ant_buf_wipe_fini(&key);
    return ant_api_end(rc);
}

int ant_route_key_list(struct ant_req *r)
{
    const char *who = ant_req_query(r, "principal");
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
    json_t *list = NULL;
    int rc;
    if (!admin && who != NULL && strcmp(who, r->who.id) != 0) {
        rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.key.list", "principal", who);
        goto out;
    }
    if (!admin) {
        who = r->who.id; /* one's own keys */
    }
    rc = ant_api_audit(r, "admin.key.list", "principal", who, NULL, ANT_AUDIT_ALLOW,
                       admin ? "role_admin" : "own_keys", NULL);
    if (rc == 0) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_store_key_list(st, who, &list);
        ant_store_pool_release(r->site->pool, st);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "keys", list);
    }
out:
    return ant_api_end(rc);
}

/* Is key_id one of p's keys? */
static int key_is_own(struct ant_store *st, const char *principal, const char *key_id, bool *own)
{
    json_t *list = NULL;
    size_t i;
    json_t *k;
    int rc = ant_store_key_list(st, principal, &list);
    *own = false;
    if (rc < 0) {
        return rc;
    }
    json_array_foreach(list, i, k)
    {
        const char *id = json_string_value(json_object_get(k, "key_id"));
        if (id != NULL && strcmp(id, key_id) == 0) {
            *own = true;
        }
    }
    json_decref(list);
    return 0;
}

int ant_route_key_revoke(struct ant_req *r)
{
    char id[ANT_ID_MAX + 1];
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0, own = false;
    int rc = ant_api_param(r, 0, id, sizeof(id));
    if (rc == 0) {
        rc = key_is_own(st, r->who.id, id, &own);
    }
    if (rc == -ENOENT || (rc == 0 && !admin && !own)) {
        /* another principal's key: the same answer as an unknown one */
        rc = ant_api_audit(r, "admin.key.revoke", "key", rc == 0 ? id : NULL, NULL, ANT_AUDIT_DENY,
                           "not_found", NULL);
        if (rc == 0) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such key");
        }
        goto out;
    }
    if (rc == 0) {
        rc = ant_api_audit(r, "admin.key.revoke", "key", id, NULL, ANT_AUDIT_ALLOW,
                           own ? "own_key" : "role_admin", NULL);
    }
    if (rc != 0) {
        goto out;
    }
    rc = ant_store_key_revoke(st, id);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such key");
    } else if (rc == -EALREADY) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "already_revoked", "key %s was revoked before", id);
    } else if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_OK,
                               json_pack("{s:s, s:s}", "key_id", id, "state", "revoked"));
    }
out:
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}

/* May the caller manage `name`'s own Crypt4GH key? Itself, or a site admin; for anyone else the
 * principal does not exist (audited as a denial). Returns 0 (allowed, audited) or an answered
 * request / error. */
static int pubkey_access(struct ant_req *r, const char *action, const char *name)
{
    bool self = r->who.kind == ANT_PRINCIPAL_USER && strcmp(r->who.id, name) == 0;
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
    int rc = ant_api_audit(r, action, "principal", name, NULL,
                           self || admin ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
                           self ? "self" : admin ? "role_admin" : "not_found", NULL);
    if (rc == 0 && !self && !admin) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
    }
    return rc;
}

/* PUT /v1/principals/{name}/c4gh-key {"public_key": "<base64 X25519>"}: the key downloads are
 * re-encrypted for when they name no ?recipient=. */
int ant_route_principal_pubkey_put(struct ant_req *r)
{
    static const char *const allowed[] = {"public_key", NULL};
    char name[ANT_NAME_MAX + 1], b64[64];
    const char *pk_s = NULL;
    uint8_t pk[ANT_KEY_LEN];
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    int rc = ant_api_param(r, 0, name, sizeof(name));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
        goto out;
    }
    rc = ant_api_body(r, allowed, false, &doc);
    if (rc == 0) {
        rc = ant_api_str(r, doc, "public_key", true, 60, &pk_s);
    }
    if (rc == 0 && ant_key_b64_decode(ant_bytes_str(pk_s), pk) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_public_key",
                          "public_key must be the base64 of a 32-byte X25519 public key");
    }
    if (rc == 0) {
        rc = pubkey_access(r, "principal.c4gh_key.set", name);
    }
    if (rc != 0) {
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_principal_set_pubkey(st, name, pk);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
    } else if (rc == 0) {
        ant_key_b64(pk, b64);
        rc = ant_api_json_take(r, MHD_HTTP_OK,
                               json_pack("{s:s, s:s}", "principal", name, "public_key", b64));
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

/* GET /v1/principals/{name}/c4gh-key */
int ant_route_principal_pubkey_get(struct ant_req *r)
{
    char name[ANT_NAME_MAX + 1], b64[64];
    uint8_t pk[ANT_KEY_LEN];
    struct ant_store *st = NULL;
    int rc = ant_api_param(r, 0, name, sizeof(name));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
        goto out;
    }
    rc = pubkey_access(r, "principal.c4gh_key.show", name);
    if (rc != 0) {
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_principal_pubkey(st, name, pk);
    if (rc == -ENOENT) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such principal");
    } else if (rc == -ENODATA) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, "no_public_key",
                          "%s has no Crypt4GH public key registered", name);
    } else if (rc == 0) {
        ant_key_b64(pk, b64);
        rc = ant_api_json_take(r, MHD_HTTP_OK,
                               json_pack("{s:s, s:s}", "principal", name, "public_key", b64));
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    return ant_api_end(rc);
}
