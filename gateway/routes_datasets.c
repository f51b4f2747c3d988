/* Datasets: create a draft, list what the caller may see, show, list files, publish, withdraw.
 *
 * The manifest hash recorded at publication is SHA-256 over these bytes (docs/api.md):
 *   "antenna-manifest-v1\n", then for each file in byte order of its logical path
 *   "<path>\t<size in decimal>\t<sha256 of plaintext, lowercase hex>\t<sha256 of the stored
 *   Crypt4GH file, lowercase hex>\n".
 * Logical paths hold no control byte (ant_path_is_valid), so tab and newline cannot be forged
 * inside a path and the encoding is unambiguous. */
#include "gateway/api.h"
#include "gateway/routes.h"
#include "gateway/server.h"
#include "gateway/site.h"
#include "policy/decide.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_MAGIC "antenna-manifest-v1\n"

int ant_route_dataset_create(struct ant_req *r)
{
    static const char *const allowed[] = {"name",    "description", "classification",
                                          "regions", "duo",         NULL};
    const char *name = NULL, *desc = NULL, *cls_s = NULL;
    const char *regions[ANT_DS_MAX_REGIONS], *duo[ANT_DS_MAX_DUO];
    unsigned nregions = 0, nduo = 0;
    char id[ANT_ID_MAX + 1];
    enum ant_ds_class cls = ANT_DS_INTERNAL;
    struct ant_store *st = NULL;
    json_t *doc = NULL, *shown = NULL;
    int rc = 0;
    if (r->who.tenant[0] == '\0') {
        /* a site-wide principal owns no data: datasets belong to tenants */
        rc = ant_api_audit(r, "dataset.create", "dataset", NULL, NULL, ANT_AUDIT_DENY, "no_tenant",
                           NULL);
        if (rc == 0) {
            rc = ant_api_fail(r, MHD_HTTP_FORBIDDEN, "forbidden",
                              "datasets belong to tenants: this principal has none");
        }
        goto out;
    }
    if ((r->who.roles & ANT_ROLE_OWNER) == 0) {
        rc = ant_api_audit(r, "dataset.create", "dataset", NULL, NULL, ANT_AUDIT_DENY, "no_role",
                           NULL);
        if (rc == 0) {
            rc = ant_api_fail(r, MHD_HTTP_FORBIDDEN, "forbidden",
                              "creating a dataset needs the owner role");
        }
        goto out;
    }
    rc = ant_api_audit(r, "dataset.create", "dataset", NULL, NULL, ANT_AUDIT_ALLOW, "role_owner",
                       NULL);
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "name", true, ANT_NAME_MAX, &name);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "description", false, ANT_DS_DESC_MAX, &desc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "classification", false, 32, &cls_s);
    }
    if (rc == 0) {
        rc = ant_api_strv(r, doc, "regions", ANT_DS_MAX_REGIONS, ANT_NAME_MAX, regions, &nregions);
    }
    if (rc == 0) {
        rc = ant_api_strv(r, doc, "duo", ANT_DS_MAX_DUO, ANT_DUO_CODE_MAX, duo, &nduo);
    }
    if (rc != 0) {
        goto out;
    }
    if (cls_s != NULL && ant_ds_class_parse(cls_s, &cls) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "classification is open, internal or sensitive");
        goto out;
    }
    if (!ant_name_is_valid(name)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_name",
                          "a dataset name is 1-64 of [A-Za-z0-9._@-], starting alphanumeric, "
                          "not shaped like an API key or a JWT");
        goto out;
    }
    struct ant_dataset_spec spec = {
        .tenant = r->who.tenant,
        .name = name,
        .description = desc,
        .classification = cls,
        .regions = regions,
        .nregions = nregions,
        .duo = duo,
        .nduo = nduo,
    };
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_dataset_create(st, &spec, id);
    if (rc == -EEXIST) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, NULL, "your tenant has a dataset named %s", name);
    } else if (rc == -EINVAL) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "a region name or DUO code is not valid");
    } else if (rc == 0) {
        rc = ant_store_dataset_show(st, id, &shown);
        if (rc == 0) {
            rc = ant_api_json_take(r, MHD_HTTP_CREATED, shown);
        }
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

int ant_route_dataset_list(struct ant_req *r)
{
    json_t *list = NULL;
    ant_req_allow_hold(r); /* read-only: the answer waits for the event, the thread does not */
    int rc = ant_api_audit(r, "dataset.list", "dataset", NULL, NULL, ANT_AUDIT_ALLOW,
                           "visible_only", NULL);
    if (rc == 0) {
        struct ant_store *st = ant_store_pool_acquire(r->site->pool);
        rc = ant_store_dataset_list_visible(st, &r->who, ant_now_unix(), &list);
        ant_store_pool_release(r->site->pool, st);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "datasets", list);
    }
    return ant_api_end(rc);
}

/* The dataset id of the route, or a 404 (an id too long to exist). */
static int ds_param(struct ant_req *r, char id[ANT_ID_MAX + 1])
{
    if (ant_api_param(r, 0, id, ANT_ID_MAX + 1) < 0) {
        return ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    return 0;
}

/* The dataset's JSON answer (the bytes ant_req_json sends: compact, then a newline), from the
 * server's cache or built from the catalog and kept there. A dataset's object is the same for
 * every caller allowed to describe it; the cache keeps it at most 1 s and loses it with any
 * write request (policy/decide.h). */
static int dataset_json(struct ant_req *r, struct ant_store **st, const char *id)
{
    struct ant_hotcache *c = ant_server_datasets(r->srv);
    char *buf = NULL;
    json_t *shown = NULL;
    size_t len = 0;
    int rc = 0;
    int64_t t0 = ant_mono_ns();
    char cached[ANT_DATASET_JSON_CACHE_MAX];
    if (ant_hotcache_get(c, id, strlen(id), t0, ant_now_unix(), cached, sizeof(cached), &len)) {
        return ant_req_json_bytes(r, MHD_HTTP_OK, cached, len);
    }
    uint64_t gen = ant_hotcache_gen(c); /* before the catalog read */
    if (*st == NULL) {
        *st = ant_store_pool_acquire(r->site->pool);
    }
    rc = ant_store_dataset_show(*st, id, &shown);
    if (rc < 0) {
        goto out;
    }
    buf = json_dumps(shown, JSON_COMPACT);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    len = strlen(buf);
    buf[len] = '\n'; /* replaces the NUL, as ant_req_json does */
    len++;
    ant_hotcache_put(c, id, strlen(id), gen, t0, INT64_MAX, buf, len);
    rc = ant_req_json_bytes(r, MHD_HTTP_OK, buf, len);
out:
    free(buf);
    json_decref(shown);
    return rc;
}

int ant_route_dataset_show(struct ant_req *r)
{
    char id[ANT_ID_MAX + 1];
    struct ant_decision d;
    struct ant_store *st = NULL; /* taken from the pool only when a cache misses */
    ant_req_allow_hold(r); /* read-only: the answer waits for the event, the thread does not */
    int rc = ds_param(r, id);
    if (rc == 0) {
        rc = ant_api_decide_lazy(r, &st, ANT_ACT_DESCRIBE, id, NULL, NULL, NULL, &d);
    }
    if (rc == 0) {
        rc = dataset_json(r, &st, id);
    }
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    return ant_api_end(rc);
}

int ant_route_file_list(struct ant_req *r)
{
    char id[ANT_ID_MAX + 1];
    struct ant_decision d;
    json_t *list = NULL;
    ant_req_allow_hold(r); /* read-only: the answer waits for the event, the thread does not */
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ds_param(r, id);
    if (rc == 0) {
        rc = ant_api_decide(r, st, ANT_ACT_DESCRIBE, id, NULL, NULL, NULL, &d);
    }
    if (rc == 0) {
        rc = ant_store_file_list(st, id, &list);
    }
    if (rc == 0) {
        /* storage ids are the archive's business, not the caller's */
        size_t i;
        json_t *f;
        json_array_foreach(list, i, f)
        {
            json_object_del(f, "storage_id");
        }
        rc = ant_api_list_take(r, "files", list);
    }
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}

static int cmp_path(const void *a, const void *b)
{
    const json_t *fa = *(const json_t *const *)a, *fb = *(const json_t *const *)b;
    const char *pa = json_string_value(json_object_get(fa, "path"));
    const char *pb = json_string_value(json_object_get(fb, "path"));
    return strcmp(pa != NULL ? pa : "", pb != NULL ? pb : ""); /* byte order */
}

/* SHA-256 over the manifest bytes described at the top of this file. */
static int manifest_hash(const json_t *files, uint8_t out[32])
{
    size_t n = json_array_size(files);
    const json_t **v = calloc(n > 0 ? n : 1, sizeof(*v));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct ant_buf line = ANT_BUF_INIT(ANT_PATH_MAX + 256);
    int rc = (v == NULL || md == NULL) ? -ENOMEM : 0;
    if (rc == 0 && (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
                    EVP_DigestUpdate(md, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC)) != 1)) {
        rc = -EIO;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        v[i] = json_array_get(files, i);
    }
    if (rc == 0) {
        qsort(v, n, sizeof(*v), cmp_path);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *path = json_string_value(json_object_get(v[i], "path"));
        const char *h = json_string_value(json_object_get(v[i], "sha256"));
        const char *hc = json_string_value(json_object_get(v[i], "sha256_c4gh"));
        const json_t *size = json_object_get(v[i], "size");
        if (path == NULL || h == NULL || hc == NULL || !json_is_integer(size)) {
            rc = -EIO; /* a catalog row without its checksums cannot be published */
            break;
        }
        line.len = 0;
        rc = ant_buf_printf(&line, "%s\t%lld\t%s\t%s\n", path, (long long)json_integer_value(size),
                            h, hc);
        if (rc == 0 && EVP_DigestUpdate(md, line.p, line.len) != 1) {
            rc = -EIO;
        }
    }
    if (rc == 0 && EVP_DigestFinal_ex(md, out, NULL) != 1) {
        rc = -EIO;
    }
    ant_buf_fini(&line);
    EVP_MD_CTX_free(md);
    free(v);
    return rc;
}

int ant_route_dataset_publish(struct ant_req *r)
{
    char id[ANT_ID_MAX + 1];
    struct ant_decision d;
    uint8_t h[32];
    json_t *files = NULL, *shown = NULL;
    bool in_tx = false;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ds_param(r, id);
    if (rc == 0) {
        rc = ant_api_decide(r, st, ANT_ACT_PUBLISH, id, NULL, NULL, NULL, &d);
    }
    if (rc != 0) {
        goto out;
    }
    /* one write transaction: no upload can add a file between the hash and the state change */
    rc = ant_store_begin(st);
    in_tx = rc == 0;
    if (rc == 0) {
        rc = ant_store_file_list(st, id, &files);
    }
    if (rc == 0) {
        rc = manifest_hash(files, h);
    }
    if (rc == 0) {
        rc = ant_store_dataset_publish(st, id, h);
    }
    if (rc == 0) {
        rc = ant_store_commit(st);
        in_tx = rc != 0;
    }
    if (rc == -EINVAL) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "dataset_not_draft",
                          "only a draft can be published");
        goto out;
    }
    if (rc == 0) {
        rc = ant_store_dataset_show(st, id, &shown);
    }
    if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_OK, shown);
    }
out:
    if (in_tx) {
        ant_store_rollback(st);
    }
    json_decref(files);
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}

int ant_route_dataset_withdraw(struct ant_req *r)
{
    char id[ANT_ID_MAX + 1];
    struct ant_decision d;
    json_t *shown = NULL;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ds_param(r, id);
    if (rc == 0) {
        rc = ant_api_decide(r, st, ANT_ACT_WITHDRAW, id, NULL, NULL, NULL, &d);
    }
    if (rc == 0) {
        rc = ant_store_dataset_withdraw(st, id);
        if (rc == -EINVAL) {
            rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "dataset_not_published",
                              "only a published dataset can be withdrawn");
        }
    }
    if (rc == 0) {
        rc = ant_store_dataset_show(st, id, &shown);
    }
    if (rc == 0) {
        rc = ant_api_json_take(r, MHD_HTTP_OK, shown);
    }
    ant_store_pool_release(r->site->pool, st);
    return ant_api_end(rc);
}
