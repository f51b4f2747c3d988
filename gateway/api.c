/* Helpers shared by the /v1 handlers; see api.h. */
#include "gateway/api.h"

#include "crypto/base/json.h"
#include "crypto/base/log.h"
#include "gateway/metrics.h"
#include "gateway/server.h"
#include "gateway/site.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Is s well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without
 * control characters? */
static bool param_text_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                return false;
            }
            i++;
            continue;
        }
        size_t len = 0;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
        }
        if (len == 0 || n - i < len) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        uint8_t c1 = s[i + 1];
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
            (c == 0xf4 && c1 > 0x8f)) {
            return false;
        }
        i += len;
    }
    return true;
}

int ant_api_param(const struct ant_req *r, unsigned i, char *out, size_t cap)
{
    if (i >= r->nparams || r->params[i].len >= cap ||
        !param_text_ok(r->params[i].p, r->params[i].len)) {
        return -ENOENT;
    }
    memcpy(out, r->params[i].p, r->params[i].len);
    out[r->params[i].len] = '\0';
    /* every parameter goes into the request's audit event, which refuses what looks like a
     * credential: such a name names nothing (404), not a failed append (503) */
    return ant_audit_looks_secret(out) ? -ENOENT : 0;
}

int ant_api_fail(struct ant_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int rc = ant_req_error(r, status, code, "%s", msg);
    return rc < 0 ? rc : ANT_API_DONE;
}

int ant_api_body(struct ant_req *r, const char *const *allowed, bool optional, json_t **out)
{
    struct ant_diag d = {{0}};
    json_t *doc = NULL;
    int rc;
    if (r->body.len == 0) {
        if (!optional) {
            return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_json", "a JSON object is required");
        }
        doc = json_object();
        if (doc == NULL) {
            return -ENOMEM;
        }
        *out = doc;
        return 0;
    }
    rc = ant_json_parse(ant_buf_view(&r->body), r->site->cfg.max_json_body, ANT_JSON_MAX_DEPTH,
                        &doc, &d);
    if (rc == -E2BIG) {
        return ant_api_fail(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "%s",
                            ant_diag_msg(&d, "JSON body too large"));
    }
    if (rc < 0) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_json", "%s",
                            ant_diag_msg(&d, "malformed JSON"));
    }
    if (!json_is_object(doc)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_json", "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(doc, key, val)
    {
        bool known = false;
        for (size_t i = 0; allowed != NULL && allowed[i] != NULL && !known; i++) {
            known = strcmp(allowed[i], key) == 0;
        }
        if (!known) {
            /* the key is untrusted: print a bounded, escaped-enough form */
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "unknown member \"%.64s\"",
                              strpbrk(key, "\"\\\n\r") == NULL ? key : "?");
            goto out;
        }
    }
    *out = doc;
    doc = NULL;
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

int ant_api_str(struct ant_req *r, const json_t *doc, const char *key, bool required, size_t max,
                const char **out)
{
    const json_t *v = json_object_get(doc, key);
    if (v == NULL || json_is_null(v)) {
        if (required) {
            return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "\"%s\" is required", key);
        }
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "\"%s\" must be a string", key);
    }
    /* jansson allows NUL inside strings: such a value could mean two things to two readers */
    if (json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v)) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "\"%s\" must be at most %zu bytes without NUL", key, max);
    }
    *out = json_string_value(v);
    return 0;
}

int ant_api_int(struct ant_req *r, const json_t *doc, const char *key, int64_t min, int64_t max,
                bool *present, int64_t *out)
{
    const json_t *v = json_object_get(doc, key);
    *present = false;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "\"%s\" must be an integer in [%lld, %lld]", key, (long long)min,
                            (long long)max);
    }
    *present = true;
    *out = json_integer_value(v);
    return 0;
}

int ant_api_purpose(struct ant_req *r, const json_t *doc, const char **out)
{
    int rc = ant_api_str(r, doc, "purpose", false, ANT_DUO_CODE_MAX, out);
    if (rc == 0 && *out != NULL && !ant_duo_code_is_valid(*out)) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "\"purpose\" is a DUO code such as DUO:0000042");
    }
    return rc;
}

int ant_api_bool(struct ant_req *r, const json_t *doc, const char *key, bool *out)
{
    const json_t *v = json_object_get(doc, key);
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "\"%s\" must be a boolean",
                            key);
    }
    *out = json_is_true(v);
    return 0;
}

int ant_api_strv(struct ant_req *r, const json_t *doc, const char *key, unsigned max, size_t len,
                 const char **v, unsigned *n)
{
    const json_t *a = json_object_get(doc, key);
    *n = 0;
    if (a == NULL || json_is_null(a)) {
        return 0;
    }
    if (!json_is_array(a) || json_array_size(a) > max) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                            "\"%s\" must be an array of at most %u strings", key, max);
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *s = json_array_get(a, i);
        if (!json_is_string(s) || json_string_length(s) > len ||
            strlen(json_string_value(s)) != json_string_length(s)) {
            return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                                "\"%s\" must hold strings of at most %zu bytes", key, len);
        }
        v[i] = json_string_value(s);
    }
    *n = (unsigned)json_array_size(a);
    return 0;
}

static const char *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

_Static_assert(ANT_CREDENTIAL_MAX <= ANT_AUDIT_FIELD_MAX, "a principal's credential is auditable");

/* Values from the request go into its event, and the audit log refuses what looks like a
 * credential, text that is not UTF-8 and overlong fields (audit.h). Such a value is recorded
 * as REDACTED instead: the request is still audited (a refusal too), no secret is kept, and
 * a client cannot turn its own bad input into a 503. */
#define REDACTED "[redacted]"

const char *ant_api_audit_value(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s);
    bool ok = n <= ANT_AUDIT_FIELD_MAX && param_text_ok((const uint8_t *)s, n) &&
              !ant_audit_looks_secret(s);
    return ok ? s : REDACTED;
}

/* Replaces every string in v that looks like a credential by REDACTED. */
static void detail_redact(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach (v, k, e) {
            if (json_is_string(e) && ant_audit_looks_secret(json_string_value(e))) {
                json_object_set_new(v, k, json_string(REDACTED));
            } else {
                detail_redact(e);
            }
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            if (json_is_string(e) && ant_audit_looks_secret(json_string_value(e))) {
                json_array_set_new(v, i, json_string(REDACTED));
            } else {
                detail_redact(e);
            }
        }
    }
}

char *ant_api_audit_detail(const json_t *detail, size_t flags)
{
    char *det = json_dumps(detail, flags);
    if (det != NULL && ant_audit_looks_secret(det)) {
        free(det);
        json_t *copy = json_deep_copy(detail);
        det = NULL;
        if (copy != NULL) {
            detail_redact(copy);
            det = json_dumps(copy, flags);
            json_decref(copy);
        }
    }
    if (det != NULL && (strlen(det) > ANT_AUDIT_DETAIL_MAX || ant_audit_looks_secret(det))) {
        free(det); /* too long, or a key or the values together look like a credential */
        det = strdup("{\"detail\":\"" REDACTED "\"}");
    }
    return det;
}

static int append(struct ant_req *r, struct ant_audit_event *ev, const json_t *detail,
                  size_t flags, bool hold)
{
    char *det = NULL;
    if (detail != NULL) {
        det = ant_api_audit_detail(detail, flags);
        if (det == NULL) {
            return -ENOMEM;
        }
    }
    ev->resource_id = ant_api_audit_value(nonempty(ev->resource_id));
    ev->dataset_id = ant_api_audit_value(nonempty(ev->dataset_id));
    ev->transfer = ant_api_audit_value(nonempty(ev->transfer));
    ev->detail = det;
    /* a handler that holds its answer gets its event queued, not waited for (server.h) */
    int64_t seq = hold ? ant_req_audit_hold(r, ev) : -EAGAIN;
    if (seq == -EAGAIN) {
        seq = ant_audit_append(r->site->audit, ev);
    }
    ev->detail = NULL;
    free(det);
    if (seq < 0) {
        ant_log_kv(ANT_LOG_ERROR, "audit.append_failed",
                   ((const char *[]){"request_id", r->request_id, NULL}),
                   "cannot record %s: %s; request refused", ev->action, strerror((int)-seq));
        return ant_api_fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, "audit_unavailable",
                            "the audit log cannot record this request; nothing was done");
    }
    return 0;
}

int ant_api_audit(struct ant_req *r, const char *action, const char *kind, const char *id,
                  const char *dataset_id, enum ant_audit_decision decision, const char *reason,
                  const json_t *detail)
{
    struct ant_audit_event ev = {
        .request_id = r->request_id,
        .actor = nonempty(r->who.id),
        .tenant = nonempty(r->who.tenant),
        .credential = nonempty(r->who.key_id),
        .action = action,
        .resource_kind = kind,
        .resource_id = id,
        .dataset_id = dataset_id,
        .decision = decision,
        .reason = reason,
    };
    if (decision != ANT_AUDIT_INFO) {
        ant_metrics_decision(ant_server_metrics(r->srv), decision == ANT_AUDIT_ALLOW);
    }
    return append(r, &ev, detail, JSON_COMPACT, true);
}

int ant_api_audit_event(struct ant_req *r, struct ant_audit_event ev, const json_t *detail,
                        size_t json_flags)
{
    return append(r, &ev, detail, json_flags, false);
}

/* The store a cache miss decides with: the caller's, or one taken from the pool and kept in
 * *st for the caller to release. */
struct lazy_store {
    struct ant_req *r;
    struct ant_store **st;
};

static struct ant_store *lazy_store_get(void *arg)
{
    struct lazy_store *l = arg;
    if (*l->st == NULL) {
        *l->st = ant_store_pool_acquire(l->r->site->pool);
    }
    return *l->st;
}

static bool read_only(const struct ant_req *r)
{
    return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
}

int ant_api_decide_lazy(struct ant_req *r, struct ant_store **st, unsigned action, const char *ds,
                        const char *kind, const char *id, const struct ant_decide_ctx *ctx,
                        struct ant_decision *d)
{
    struct lazy_store l = {r, st};
    /* Only a read-only request decides from the cache: a write decides on the catalog as it
     * is, and empties the cache once done (server.c). */
    struct ant_hotcache *c = read_only(r) ? ant_server_decisions(r->srv) : NULL;
    int rc = ant_decide_cached(c, lazy_store_get, &l, &r->who, action, ds, ctx, ant_now_unix(),
                               ant_mono_ns(), d, NULL);
    if (rc < 0) {
        return rc; /* could not decide: not a decision, nothing to audit; never an allow */
    }
    rc = ant_api_audit(r, ant_action_name(action), kind != NULL ? kind : "dataset",
                       id != NULL ? id : ds, ds, d->allow ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
                       d->reason, NULL);
    if (rc != 0) {
        return rc;
    }
    if (d->allow) {
        return 0;
    }
    if (!d->visible) {
        return ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    return ant_api_fail(r, MHD_HTTP_FORBIDDEN, d->reason, "%s", d->message);
}

int ant_api_decide(struct ant_req *r, struct ant_store *st, unsigned action, const char *ds,
                   const char *kind, const char *id, const struct ant_decide_ctx *ctx,
                   struct ant_decision *d)
{
    if (st == NULL) {
        return -EINVAL;
    }
    return ant_api_decide_lazy(r, &st, action, ds, kind, id, ctx, d);
}

int ant_api_decide_site(struct ant_req *r, unsigned action, const char *tenant, const char *event,
                        const char *kind, const char *id)
{
    struct ant_decision d;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_decide_tenant(st, &r->who, action, tenant, &d);
    ant_store_pool_release(r->site->pool, st);
    if (rc < 0) {
        return rc;
    }
    rc = ant_api_audit(r, event, kind, id, NULL, d.allow ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
                       d.reason, NULL);
    if (rc != 0 || d.allow) {
        return rc;
    }
    /* Only role_actions rows of scope 'site' allow an action with no tenant (the whole site's
     * audit trail, which holds every tenant's events): as seeded, admin's alone. A tenant's
     * auditor is told so rather than to get a role it already has. */
    const char *why = action == ANT_ACT_ADMIN ? "this needs the admin role"
                      : tenant == NULL
                          ? "the whole site's audit trail holds every tenant's events: this "
                            "needs the site admin role"
                          : "this needs the auditor role (or admin)";
    return ant_api_fail(r, MHD_HTTP_FORBIDDEN, "forbidden", "%s", why);
}

int ant_api_json_take(struct ant_req *r, unsigned status, json_t *doc)
{
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, status, doc);
    json_decref(doc);
    return rc;
}

int ant_api_list_take(struct ant_req *r, const char *key, json_t *list)
{
    json_t *doc = json_object();
    if (doc == NULL) {
        json_decref(list);
        return -ENOMEM;
    }
    if (list == NULL || json_object_set_new(doc, key, list) < 0) { /* set_new took list */
        json_decref(doc);
        return -ENOMEM;
    }
    return ant_api_json_take(r, MHD_HTTP_OK, doc);
}

int ant_api_parse_time(const char *s, int64_t *out)
{
    uint64_t v;
    size_t len = strlen(s);
    if (ant_parse_u64(ant_bytes_of(s, len), 0, 253402300799ull, &v) == 0) {
        *out = (int64_t)v;
        return 0;
    }
    /* RFC 3339 in UTC only: "YYYY-MM-DDTHH:MM:SSZ", each field a fixed slice */
    static const struct {
        size_t off, len;
        uint64_t min, max;
    } f[6] = {{0, 4, 1970, 9999}, {5, 2, 1, 12},  {8, 2, 1, 31},
              {11, 2, 0, 23},     {14, 2, 0, 59}, {17, 2, 0, 60}};
    uint64_t part[6];
    if (len != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z') {
        return -EINVAL;
    }
    for (size_t i = 0; i < 6; i++) {
        if (ant_parse_u64(ant_bytes_of(s + f[i].off, f[i].len), f[i].min, f[i].max, &part[i]) < 0) {
            return -EINVAL;
        }
    }
    if (!ant_date_is_valid(part[0], part[1], part[2])) {
        return -EINVAL;
    }
    /* a leap second only where one can be, the last second of a day ("23:59:60Z") */
    if (part[5] == 60 && (part[3] != 23 || part[4] != 59)) {
        return -EINVAL;
    }
    struct tm tm = {
        .tm_year = (int)part[0],
        .tm_mon = (int)part[1],
        .tm_mday = (int)part[2],
        .tm_hour = (int)part[3],
        .tm_min = (int)part[4],
        .tm_sec = (int)part[5],
    };
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int ant_api_range(struct ant_req *r, const char *etag, uint64_t total, struct ant_api_span *sp)
{
    const char *ifr = ant_req_header(r, MHD_HTTP_HEADER_IF_RANGE);
    uint64_t first = 0, last = 0;
    int pr = etag != NULL && ifr != NULL && strcmp(ifr, etag) != 0
                 ? 0
                 : ant_http_range(ant_req_header(r, MHD_HTTP_HEADER_RANGE), total, &first, &last);
    memset(sp, 0, sizeof(*sp));
    sp->len = total;
    if (pr == -ERANGE) {
        snprintf(sp->content_range, sizeof(sp->content_range), "bytes */%llu",
                 (unsigned long long)total);
        int rc = ant_api_fail(r, MHD_HTTP_RANGE_NOT_SATISFIABLE, NULL, "range outside 0-%llu",
                              (unsigned long long)total);
        if (rc > 0) {
            MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONTENT_RANGE, sp->content_range);
        }
        return rc;
    }
    if (pr == 1) {
        sp->start = first;
        sp->len = last - first + 1;
        sp->partial = true;
        snprintf(sp->content_range, sizeof(sp->content_range), "bytes %llu-%llu/%llu",
                 (unsigned long long)first, (unsigned long long)last, (unsigned long long)total);
    }
    return 0;
}

void ant_api_respond_span(struct ant_req *r, struct MHD_Response *resp,
                          const struct ant_api_span *sp)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (sp->partial) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, sp->content_range);
    }
    ant_req_respond(r, sp->partial ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
    r->bytes_out = strcmp(r->method, "HEAD") == 0 ? 0 : sp->len;
}
