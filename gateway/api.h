/* Shared helpers of the /v1 route handlers: route parameters, request bodies, the decision
 * function and its audit event, responses.
 *
 * Convention: a helper that had to answer the request itself (400 for a bad body, 404/403 for a
 * denial, 503 when the audit log cannot take the event) sets the response and returns
 * ANT_API_DONE; a handler then returns 0. Helpers return 0 when the handler should go on, and a
 * negative errno for a failure that the server maps to a status (ant_http_status_of). Handlers
 * end with `return ant_api_end(rc);`.
 *
 * Threads: all run on the libmicrohttpd worker thread that owns the request. */
#ifndef ANT_API_H
#define ANT_API_H

#include "gateway/http.h"
#include "policy/audit.h"
#include "policy/decide.h"
#include "policy/store.h"

#define ANT_API_DONE 1

static inline int ant_api_end(int rc)
{
    return rc > 0 ? 0 : rc;
}

/* Copies route parameter i (a view into the decoded URL) into out as a C string. A parameter
 * that does not fit, is not UTF-8 or holds a control character (NUL included) is -ENOENT: no
 * object has such a name, and it could not be written to the audit log. */
ANT_MUST_CHECK int ant_api_param(const struct ant_req *r, unsigned i, char *out, size_t cap);

/* Parses the buffered request body as one JSON object with ant_json_parse (the site's
 * max_json_body, ANT_JSON_MAX_DEPTH, duplicate keys refused). `allowed` (NULL-terminated) lists
 * the members the route knows: any other is a 400, so a typo is not silently ignored. An empty
 * body is an empty object when `optional`, else a 400. *out is a new reference on success. */
ANT_MUST_CHECK int ant_api_body(struct ant_req *r, const char *const *allowed, bool optional,
                                json_t **out);

/* Member accessors that answer 400 naming the member when it has the wrong type, is missing
 * (required) or is too long. An absent optional member leaves *out as NULL / untouched. */
ANT_MUST_CHECK int ant_api_str(struct ant_req *r, const json_t *doc, const char *key, bool required,
                               size_t max, const char **out);
ANT_MUST_CHECK int ant_api_int(struct ant_req *r, const json_t *doc, const char *key, int64_t min,
                               int64_t max, bool *present, int64_t *out);
ANT_MUST_CHECK int ant_api_bool(struct ant_req *r, const json_t *doc, const char *key, bool *out);
/* The optional member "purpose": NULL, or a DUO code ("DUO:" and 7 digits; 400 otherwise). */
ANT_MUST_CHECK int ant_api_purpose(struct ant_req *r, const json_t *doc, const char **out);

/* An array of at most `max` strings of at most `len` bytes; v[] borrows from doc. */
ANT_MUST_CHECK int ant_api_strv(struct ant_req *r, const json_t *doc, const char *key, unsigned max,
                                size_t len, const char **v, unsigned *n);

/* Appends the audit event for this request (actor, tenant, credential and request id from the
 * caller). Values from the request that the log would refuse (an id or dataset id shaped like
 * a credential, not UTF-8 text or too long; such strings in the detail) are recorded as
 * "[redacted]": the event is written, the request answered as the rest decides. Returns 0
 * once the event is durable; if the log cannot take it the request fails closed: 503 is
 * answered and ANT_API_DONE returned, and the caller releases nothing. In a
 * handler that called ant_req_allow_hold() (gateway/server.h), the first event is queued
 * instead and 0 returned at once: the server holds the answer until the event is durable, and
 * answers 503 instead if it cannot be written. */
ANT_MUST_CHECK int ant_api_audit(struct ant_req *r, const char *action, const char *kind,
                                 const char *id, const char *dataset_id,
                                 enum ant_audit_decision decision, const char *reason,
                                 const json_t *detail);

/* What ant_api_audit records of a value from the request: `s` (NULL for NULL), or
 * "[redacted]" for one the audit log would refuse (shaped like a credential, not UTF-8 text
 * without control characters, over ANT_AUDIT_FIELD_MAX bytes). */
const char *ant_api_audit_value(const char *s);

/* What ant_api_audit records of a detail object: json_dumps(detail, flags) with every string
 * shaped like a credential (at any depth) replaced by "[redacted]", and {"detail":"[redacted]"}
 * if it is still refused (a key so shaped) or over ANT_AUDIT_DETAIL_MAX bytes. Free it; NULL
 * when out of memory. */
char *ant_api_audit_detail(const json_t *detail, size_t flags);

/* Appends `ev`, an event the caller filled whole (a federation or peer request's, whose
 * credential or transfer id is not the caller's key), with `detail` as json_dumps(json_flags)
 * writes it; written at once, never held. As in ant_api_audit, values from the request that
 * the log would refuse (resource_id, dataset_id, transfer, strings in the detail: shaped like
 * a credential, not UTF-8 text, too long) are recorded as "[redacted]"; returns as it does. */
ANT_MUST_CHECK int ant_api_audit_event(struct ant_req *r, struct ant_audit_event ev,
                                       const json_t *detail, size_t json_flags);

/* ant_decide for the caller on dataset `ds`, audited (action name from ant_action_name, the
 * decision's reason). Allowed: 0. Denied: 404 when the caller may not learn the dataset exists,
 * else 403 with the decision's message, and ANT_API_DONE. `kind`/`id` name the object the
 * event is about ("dataset" and ds when NULL). ctx may be NULL. */
ANT_MUST_CHECK int ant_api_decide(struct ant_req *r, struct ant_store *st, unsigned action,
                                  const char *ds, const char *kind, const char *id,
                                  const struct ant_decide_ctx *ctx, struct ant_decision *d);

/* The same with the store taken from the pool only when the catalog must be read: *st is NULL
 * or the caller's; on return, a non-NULL *st is to be released by the caller. A GET or HEAD
 * request decides through the server's decision cache (at most 1 s old, policy/decide.h); any
 * other decides on the catalog. ctx->now must be 0. */
ANT_MUST_CHECK int ant_api_decide_lazy(struct ant_req *r, struct ant_store **st, unsigned action,
                                       const char *ds, const char *kind, const char *id,
                                       const struct ant_decide_ctx *ctx, struct ant_decision *d);

/* ant_decide_tenant for the routes that name no dataset: ANT_ACT_ADMIN (tenant NULL) or
 * ANT_ACT_AUDIT (the tenant whose log is read, NULL: the whole site), audited as `event` on
 * (kind, id). 0 when allowed, else 403 and ANT_API_DONE. */
ANT_MUST_CHECK int ant_api_decide_site(struct ant_req *r, unsigned action, const char *tenant,
                                       const char *event, const char *kind, const char *id);

/* Answers with doc and drops the reference. */
ANT_MUST_CHECK int ant_api_json_take(struct ant_req *r, unsigned status, json_t *doc);
/* Answers {"<key>": list} and drops the reference to list. */
ANT_MUST_CHECK int ant_api_list_take(struct ant_req *r, const char *key, json_t *list);
/* ant_req_error, returning ANT_API_DONE when the answer is set. */
ANT_MUST_CHECK int ant_api_fail(struct ant_req *r, unsigned status, const char *code,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Unix seconds from an integer or an RFC 3339 UTC time ("2026-11-27T03:00:00Z"); -EINVAL. */
ANT_MUST_CHECK int ant_api_parse_time(const char *s, int64_t *out);

/* The part of a body of `total` bytes a download sends: the Range header's (unless If-Range
 * names another ETag than `etag`; etag NULL: If-Range ignored), else the whole body. */
struct ant_api_span {
    uint64_t start, len;
    bool partial;           /* 206 with content_range */
    char content_range[96];
};
/* 0 with *sp, or ANT_API_DONE with 416 (and Content-Range: bytes * /total) answered. */
ANT_MUST_CHECK int ant_api_range(struct ant_req *r, const char *etag, uint64_t total,
                                 struct ant_api_span *sp);
/* Answers with a streamed body response (owned from here): 200, or 206 with Content-Range;
 * Accept-Ranges; bytes_out for the log. */
void ant_api_respond_span(struct ant_req *r, struct MHD_Response *resp,
                          const struct ant_api_span *sp);

#endif
