/* The audit log over HTTP: events (JSON, NDJSON or CSV, cursor pages), chain status,
 * checkpoints, export. A tenant's auditors read their tenant's events (the events whose actor
 * belongs to the tenant) and, with ?dataset= naming one of the tenant's datasets, every event
 * about that dataset whoever the actor; site admins read everything, and only they export the
 * whole chain. */
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

/* Which tenant's log the caller reads: NULL (the whole site) for an admin unless ?tenant=
 * narrows it; the caller's own tenant for an auditor. */
static int audit_scope(struct ant_req *r, const char *event, const char **tenant)
{
    const char *want = ant_req_query(r, "tenant");
    if ((r->who.roles & ANT_ROLE_ADMIN) != 0) {
        *tenant = want;
        return ant_api_decide_site(r, ANT_ACT_AUDIT, NULL, event, "audit", NULL);
    }
    if (want != NULL && strcmp(want, r->who.tenant) != 0) {
        /* asking for another tenant's log is refused the same way as having no auditor role */
        *tenant = want;
        return ant_api_decide_site(r, ANT_ACT_AUDIT, want, event, "audit", want);
    }
    *tenant = r->who.tenant[0] != '\0' ? r->who.tenant : NULL;
    if (*tenant == NULL) {
        /* a site-wide principal without admin has no tenant log to read */
        return ant_api_decide_site(r, ANT_ACT_AUDIT, NULL, event, "audit", NULL);
    }
    return ant_api_decide_site(r, ANT_ACT_AUDIT, *tenant, event, "audit", *tenant);
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
 * datasets, also those of other tenants' principals (a grantee's downloads). */
static bool own_dataset(struct ant_req *r, const char *id, const char *tenant)
{
    struct ant_dataset ds;
    if (id == NULL) {
        return false;
    }
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    bool own = ant_store_dataset_get(st, id, &ds) == 0 && strcmp(ds.tenant, tenant) == 0;
    ant_store_pool_release(r->site->pool, st);
    return own;
}

int ant_route_audit_events(struct ant_req *r)
{
    struct ant_audit_query q = {0};
    const char *tenant = NULL, *v;
    json_t *events = NULL;
    int64_t next = 0;
    enum fmt f;
    struct ant_buf b = ANT_BUF_INIT(64u << 20);
    int rc = audit_scope(r, "audit.query", &tenant);
    if (rc != 0) {
        goto out;
    }
    if (tenant != NULL && (r->who.roles & ANT_ROLE_ADMIN) == 0 &&
        own_dataset(r, ant_req_query(r, "dataset"), tenant)) {
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
    int rc = audit_scope(r, "audit.status", &tenant);
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

/* The chain as an export in an unnamed temporary file of the site folder: bounded memory
 * whatever the size of the log. Returns the fd (at offset 0) or -errno. */
static int export_tmp(struct ant_req *r, off_t *size)
{
    int fd = openat(r->site->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    struct stat sb;
    if (fd < 0) {
        return -errno;
    }
    int64_t n = ant_audit_export(r->site->audit, fd);
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

#define CKPT_PREFIX "{\"type\":\"checkpoint\""

/* GET /v1/audit/checkpoints: the last `limit` (default 100, at most 1000) signed checkpoints,
 * oldest first, as the export prints them. */
int ant_route_audit_checkpoints(struct ant_req *r)
{
    const char *tenant, *v;
    uint64_t limit = 100;
    off_t size = 0;
    int fd = -1;
    FILE *fp = NULL;
    char *line = NULL;
    size_t cap = 0;
    json_t *list = json_array();
    int rc = list == NULL ? -ENOMEM : audit_scope(r, "audit.checkpoints", &tenant);
    if (rc != 0) {
        goto out;
    }
    if ((v = ant_req_query(r, "limit")) != NULL &&
        ant_parse_u64(ant_bytes_str(v), 1, 1000, &limit) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "limit is 1..1000");
        goto out;
    }
    rc = fd = export_tmp(r, &size);
    if (rc < 0) {
        goto out;
    }
    fp = fdopen(fd, "r");
    if (fp == NULL) {
        rc = -errno;
        goto out;
    }
    fd = -1;
    rc = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, fp)) > 0) {
        if (strncmp(line, CKPT_PREFIX, strlen(CKPT_PREFIX)) != 0) {
            continue;
        }
        json_t *c = json_loadb(line, (size_t)len, 0, NULL);
        if (c == NULL) {
            rc = -EIO;
            goto out;
        }
        json_object_del(c, "type");
        json_array_append_new(list, c);
        if (json_array_size(list) > limit) {
            json_array_remove(list, 0);
        }
    }
    rc = ant_api_list_take(r, "checkpoints", list);
    list = NULL;
out:
    free(line);
    if (fp != NULL) {
        fclose(fp);
    }
    ant_close(fd);
    json_decref(list);
    return ant_api_end(rc);
}

/* GET /v1/audit/export: the whole chain as NDJSON, for offline verification with only the
 * site's public key (`antenna audit verify`). Site admins only: it holds every tenant's events. */
int ant_route_audit_export(struct ant_req *r)
{
    off_t size = 0;
    int rc = ant_api_decide_site(r, ANT_ACT_AUDIT, NULL, "audit.export", "audit", NULL);
    if (rc != 0) {
        return ant_api_end(rc);
    }
    int fd = export_tmp(r, &size);
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
