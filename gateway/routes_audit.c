/* The audit log over HTTP: events (JSON, NDJSON or CSV, cursor pages), chain status,
 * checkpoints, export. A tenant's auditors read their tenant's events (the events whose actor
 * belongs to the tenant) and, with ?dataset= naming one of the tenant's datasets, every event
 * about that dataset whoever the actor; site admins read everything, and only they export the
 * whole chain. An auditor's export holds the events it may read in full and every other event
 * redacted (its seq and hashes only), so that it still verifies against the site's key. */
#include "gateway/api.h"
#include "gateway/routes.h"
#include "gateway/site.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum fmt { FMT_JSON, FMT_NDJSON, FMT_CSV };

/* ?format= wins over Accept. -EINVAL for an unknown format. */
static int pick_format(struct ant_req *r, enum fmt *out)
{
    const char *f = ant_req_query(r, "format");
    const char *accept = ant_req_header(r, MHD_HTTP_HEADER_ACCEPT);
    *out = FMT_JSON;
    if (f != NULL) {
        if (strcmp(f, "json") == 0) {
            *out = FMT_JSON;
        } else if (strcmp(f, "ndjson") == 0) {
            *out = FMT_NDJSON;
        } else if (strcmp(f, "csv") == 0) {
            *out = FMT_CSV;
        } else {
            return -EINVAL;
        }
        return 0;
    }
    if (accept != NULL) {
        if (strstr(accept, "application/x-ndjson") != NULL ||
            strstr(accept, "application/ndjson") != NULL) {
            *out = FMT_NDJSON;
        } else if (strstr(accept, "text/csv") != NULL) {
            *out = FMT_CSV;
        }
    }
    return 0;
}

/* ant_api_decide_site(ANT_ACT_AUDIT), except that a refusal says `deny` when it is not NULL. */
static int decide_audit(struct ant_req *r, const char *tenant, const char *event, const char *id,
                        const char *deny)
{
    struct ant_decision d;
    if (deny == NULL) {
        return ant_api_decide_site(r, ANT_ACT_AUDIT, tenant, event, "audit", id);
    }
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_decide_tenant(st, &r->who, ANT_ACT_AUDIT, tenant, &d);
    ant_store_pool_release(r->site->pool, st);
    rc = rc < 0 ? rc
                : ant_api_audit(r, event, "audit", id, NULL,
                                d.allow ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY, d.reason, NULL);
    if (rc != 0 || d.allow) {
        return rc;
    }
    return ant_api_fail(r, MHD_HTTP_FORBIDDEN, "forbidden", "%s", deny);
}

/* Which tenant's log the caller reads: NULL (the whole site) for an admin unless ?tenant=
 * narrows it; the caller's own tenant for an auditor. `deny`: the message of a refusal (NULL:
 * ant_api_decide_site's). */
static int audit_scope(struct ant_req *r, const char *event, const char *deny,
                       const char **tenant)
{
    const char *want = ant_req_query(r, "tenant");
    if ((r->who.roles & ANT_ROLE_ADMIN) != 0) {
        *tenant = want;
        return decide_audit(r, NULL, event, NULL, deny);
    }
    if (want != NULL && strcmp(want, r->who.tenant) != 0) {
        /* asking for another tenant's log is refused the same way as having no auditor role */
        *tenant = want;
        return decide_audit(r, want, event, want, deny);
    }
    *tenant = r->who.tenant[0] != '\0' ? r->who.tenant : NULL;
    if (*tenant == NULL) {
        /* a site-wide principal without admin has no tenant log to read */
        return decide_audit(r, NULL, event, NULL, deny);
    }
    return decide_audit(r, *tenant, event, *tenant, deny);
}

static int query_time(struct ant_req *r, const char *name, int64_t *ms)
{
    const char *v = ant_req_query(r, name);
    int64_t s;
    *ms = 0;
    if (v == NULL) {
        return 0;
    }
    if (ant_api_parse_time(v, &s) < 0) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "%s is unix seconds or YYYY-MM-DDTHH:MM:SSZ", name);
    }
    *ms = s * 1000;
    return 0;
}

static const char *const k_csv_cols[] = {
    "seq",        "time_ms", "request_id",    "actor",       "tenant",
    "credential", "action",  "resource_kind", "resource_id", "dataset_id",
    "decision",   "reason",  "transfer",      "detail",      "hash",
};

/* RFC 4180 quoting; a cell that a spreadsheet would run as a formula gets a leading quote
 * (OWASP CSV injection): audit fields carry caller-chosen names. */
static int csv_cell(struct ant_buf *b, const json_t *v)
{
    char num[32];
    const char *s = "";
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        s = num;
    } else if (json_is_string(v)) {
        s = json_string_value(v);
    }
    bool formula = s[0] != '\0' && strchr("=+-@\t", s[0]) != NULL && !json_is_integer(v);
    bool quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    int rc = quote ? ant_buf_append(b, "\"", 1) : 0;
    if (rc == 0 && formula) {
        rc = ant_buf_append(b, "'", 1);
    }
    for (const char *p = s; rc == 0 && *p != '\0'; p++) {
        rc = *p == '"' ? ant_buf_append(b, "\"\"", 2) : ant_buf_append(b, p, 1);
    }
    if (rc == 0 && quote) {
        rc = ant_buf_append(b, "\"", 1);
    }
    return rc;
}

static int render(enum fmt f, const json_t *events, struct ant_buf *b)
{
    size_t i;
    json_t *e;
    int rc = 0;
    if (f == FMT_CSV) {
        for (size_t c = 0; rc == 0 && c < ANT_ARRAY_LEN(k_csv_cols); c++) {
            rc = ant_buf_printf(b, "%s%s", c ? "," : "", k_csv_cols[c]);
        }
        rc = rc < 0 ? rc : ant_buf_append(b, "\r\n", 2);
    }
    json_array_foreach(events, i, e)
    {
        if (rc < 0) {
            break;
        }
        if (f == FMT_NDJSON) {
            char *s = json_dumps(e, JSON_COMPACT);
            rc = s == NULL ? -ENOMEM : ant_buf_append_str(b, s);
            rc = rc < 0 ? rc : ant_buf_append(b, "\n", 1);
            free(s);
            continue;
        }
        for (size_t c = 0; rc == 0 && c < ANT_ARRAY_LEN(k_csv_cols); c++) {
            rc = c ? ant_buf_append(b, ",", 1) : 0;
            rc = rc < 0 ? rc : csv_cell(b, json_object_get(e, k_csv_cols[c]));
        }
        rc = rc < 0 ? rc : ant_buf_append(b, "\r\n", 2);
    }
    return rc;
}

/* Does dataset `id` belong to `tenant`? An auditor reads every event about its tenant's
 * datasets, also those of other tenants' principals (a grantee's downloads). 1 yes, 0 no (also
 * for an unknown dataset), or a negative errno. */
static int own_dataset(struct ant_req *r, const char *id, const char *tenant)
{
    struct ant_dataset ds;
    if (id == NULL) {
        return 0;
    }
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_store_dataset_get(st, id, &ds);
    ant_store_pool_release(r->site->pool, st);
    if (rc == -ENOENT) {
        return 0;
    }
    return rc < 0 ? rc : strcmp(ds.tenant, tenant) == 0;
}

int ant_route_audit_events(struct ant_req *r)
{
    struct ant_audit_query q = {0};
    const char *tenant = NULL, *v;
    json_t *events = NULL;
    int64_t next = 0;
    enum fmt f;
    struct ant_buf b = ANT_BUF_INIT(64u << 20);
    int rc = audit_scope(r, "audit.query", NULL, &tenant);
    if (rc != 0) {
        goto out;
    }
    if (tenant != NULL && (r->who.roles & ANT_ROLE_ADMIN) == 0 &&
        own_dataset(r, ant_req_query(r, "dataset"), tenant) > 0) {
        /* the whole trail of one of the tenant's datasets, whoever acted on it */
        tenant = NULL;
    }
    if (pick_format(r, &f) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "format is json, ndjson or csv");
        goto out;
    }
    rc = query_time(r, "since", &q.from_ms);
    if (rc == 0) {
        rc = query_time(r, "until", &q.to_ms);
    }
    if (rc != 0) {
        goto out;
    }
    q.tenant = tenant;
    q.actor = ant_req_query(r, "principal");
    q.dataset_id = ant_req_query(r, "dataset");
    q.action = ant_req_query(r, "action");
    q.decision = ant_req_query(r, "decision");
    uint64_t n;
    if ((v = ant_req_query(r, "cursor")) != NULL) {
        if (ant_parse_u64(ant_bytes_str(v), 0, INT64_MAX, &n) < 0) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "bad cursor");
            goto out;
        }
        q.after_seq = (int64_t)n;
    }
    if ((v = ant_req_query(r, "limit")) != NULL) {
        if (ant_parse_u64(ant_bytes_str(v), 1, 1000, &n) < 0) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "limit is 1..1000");
            goto out;
        }
        q.limit = (unsigned)n;
    }
    rc = ant_audit_query_run(r->site->audit, &q, &events, &next);
    if (rc == -EINVAL) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "bad filter (decision is allow, deny or info; until after since)");
        goto out;
    }
    if (rc < 0) {
        goto out;
    }
    char cursor[24];
    snprintf(cursor, sizeof(cursor), "%lld", (long long)next);
    if (f == FMT_JSON) {
        json_t *doc = json_pack("{s:O, s:o}", "events", events, "next_cursor",
                                next > 0 ? json_string(cursor) : json_null());
        rc = ant_api_json_take(r, MHD_HTTP_OK, doc);
        goto out;
    }
    rc = render(f, events, &b);
    if (rc < 0) {
        goto out;
    }
    size_t len;
    uint8_t *p = ant_buf_take(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(p);
        rc = -ENOMEM;
        goto out;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            f == FMT_CSV ? "text/csv; charset=utf-8" : "application/x-ndjson");
    if (next > 0) {
        MHD_add_response_header(resp, "X-Next-Cursor", cursor);
    }
    ant_req_respond(r, MHD_HTTP_OK, resp);
    r->bytes_out = len;
out:
    json_decref(events);
    ant_buf_fini(&b);
    return ant_api_end(rc);
}

int ant_route_audit_status(struct ant_req *r)
{
    const char *tenant;
    struct ant_audit_report rep = {0};
    struct ant_audit_stats stats;
    int rc = audit_scope(r, "audit.status", NULL, &tenant);
    if (rc != 0) {
        return ant_api_end(rc);
    }
    int v = ant_audit_verify(r->site->audit, ant_signkey_public(r->site->keys.sign), false, &rep);
    if (v < 0 && v != -EBADMSG) {
        return v;
    }
    ant_audit_stats(r->site->audit, &stats);
    json_t *doc = json_pack(
        "{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "intact", v == 0, "events", (json_int_t)rep.events,
        "checkpoints", (json_int_t)rep.checkpoints, "last_seq", (json_int_t)rep.last_seq,
        "signed_seq", (json_int_t)rep.signed_seq, "first_bad_seq", (json_int_t)rep.first_bad_seq,
        "queue_depth", (json_int_t)stats.queue_depth);
    if (doc != NULL && v != 0) {
        json_object_set_new(doc, "what", json_string(rep.what));
    }
    return ant_api_json_take(r, MHD_HTTP_OK, doc);
}

/* An auditor's export: which events it shows in full. The datasets it looked up are remembered
 * for the request (a dataset never changes owner and is never deleted), in a table of fixed
 * size, so memory stays bounded whatever the log holds. */
#define OWN_SLOTS 256
struct own_slot {
    bool used, own;
    char id[ANT_AUDIT_FIELD_MAX + 1];
};
struct export_view {
    struct ant_req *r;
    const char *tenant;
    struct own_slot slot[OWN_SLOTS];
};

static int own_dataset_cached(struct export_view *x, const char *id)
{
    size_t len = strlen(id);
    uint32_t h = 2166136261u; /* FNV-1a: only spreads the ids over the slots */
    if (len > ANT_AUDIT_FIELD_MAX) {
        return own_dataset(x->r, id, x->tenant); /* the writer stores none: not worth a slot */
    }
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    }
    struct own_slot *e = &x->slot[h % OWN_SLOTS];
    if (e->used && strcmp(e->id, id) == 0) {
        return e->own;
    }
    int own = own_dataset(x->r, id, x->tenant);
    if (own >= 0) {
        e->used = true;
        e->own = own > 0;
        memcpy(e->id, id, len + 1);
    }
    return own;
}

/* The events a tenant's auditor may read, one by one: the rule of GET /v1/audit/events for
 * that caller (its tenant's events, and every event about one of its tenant's datasets, which
 * the query gives with ?dataset=), not a second one. */
static int export_visible(void *ctx, const struct ant_audit_event *ev)
{
    struct export_view *x = ctx;
    if (ev->tenant != NULL && strcmp(ev->tenant, x->tenant) == 0) {
        return 1;
    }
    return ev->dataset_id != NULL ? own_dataset_cached(x, ev->dataset_id) : 0;
}

static int write_fd(void *ctx, const uint8_t *p, size_t len)
{
    return ant_write_all(*(const int *)ctx, p, len);
}

/* The chain as an export in an unnamed temporary file of the site folder: bounded memory
 * whatever the size of the log. tenant NULL: the whole chain; else what that tenant's auditor
 * may read in full and the other events redacted. Returns the fd (at offset 0) or -errno. */
static int export_tmp(struct ant_req *r, const char *tenant, off_t *size)
{
    struct export_view *view = NULL;
    struct ant_audit_scope scope = {export_visible, NULL};
    int fd = openat(r->site->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    struct stat sb;
    if (fd < 0) {
        return -errno;
    }
    if (tenant != NULL) {
        view = calloc(1, sizeof(*view));
        if (view == NULL) {
            ant_close(fd);
            return -ENOMEM;
        }
        view->r = r;
        view->tenant = tenant;
        scope.ctx = view;
    }
    int64_t n = ant_audit_export_scoped(r->site->audit, tenant != NULL ? &scope : NULL, write_fd,
                                        &fd);
    free(view);
    if (n < 0) {
        ant_close(fd);
        return (int)n;
    }
    if (fstat(fd, &sb) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
        int e = -errno;
        ant_close(fd);
        return e;
    }
    *size = sb.st_size;
    return fd;
}

/* GET /v1/audit/checkpoints: the last `limit` (default 100, at most 1000) signed checkpoints,
 * oldest first, as the export prints them (read from the checkpoints table: the cost does not
 * grow with the log). */
int ant_route_audit_checkpoints(struct ant_req *r)
{
    const char *tenant, *v;
    uint64_t limit = 100;
    json_t *list = NULL;
    int rc = audit_scope(r, "audit.checkpoints", NULL, &tenant);
    if (rc != 0) {
        return ant_api_end(rc);
    }
    if ((v = ant_req_query(r, "limit")) != NULL &&
        ant_parse_u64(ant_bytes_str(v), 1, 1000, &limit) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "limit is 1..1000");
        return ant_api_end(rc);
    }
    rc = ant_audit_checkpoints(r->site->audit, (unsigned)limit, &list);
    return ant_api_end(rc < 0 ? rc : ant_api_list_take(r, "checkpoints", list));
}

/* GET /v1/audit/export: the chain as NDJSON, for offline verification with only the site's
 * public key (`antenna audit verify`). A site admin gets every event in full, or with
 * ?tenant=T what T's auditors get; a tenant's auditor gets the events it may read in full and
 * the others redacted (policy/audit.h): it verifies all the same, and tells nothing of the
 * other tenants' events but their number and places in the chain. */
int ant_route_audit_export(struct ant_req *r)
{
    const char *tenant = NULL;
    off_t size = 0;
    int rc = audit_scope(r, "audit.export",
                         "the audit export needs the auditor role (your tenant's events, the "
                         "others as hashes; ?tenant= only yours) or admin",
                         &tenant);
    if (rc != 0) {
        return ant_api_end(rc);
    }
    int fd = export_tmp(r, tenant, &size);
    if (fd < 0) {
        return fd;
    }
    /* the response owns fd from here and closes it once sent */
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)size, fd);
    if (resp == NULL) {
        ant_close(fd);
        return -ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    MHD_add_response_header(resp, "Content-Disposition", "attachment; filename=\"audit.ndjson\"");
    ant_req_respond(r, MHD_HTTP_OK, resp);
    r->bytes_out = (uint64_t)size;
    return 0;
}
