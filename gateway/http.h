/* What a route handler sees of an HTTP request, and how it answers. One struct ant_req lives
 * from the first call of the access handler to the completion callback; handlers run on a
 * libmicrohttpd worker thread and must not block for long. */
#ifndef ANT_HTTP_H
#define ANT_HTTP_H

#include "crypto/base/base.h"
#include "policy/store.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdint.h>

struct ant_site;
struct ant_server;
struct ant_req;

#define ANT_ROUTE_MAX_PARAMS 4

/* Called once the whole body has arrived (or at once without a body): must set a response
 * through one of the ant_req_* responders below and return 0, or return a negative errno that
 * is mapped to a status by ant_http_status_of(). */
typedef int (*ant_route_fn)(struct ant_req *r);
/* Optional streaming body consumer: gets every chunk of the body as it arrives, and first a call
 * with n == 0 once the headers are in and the caller admitted. Returns 0 or a negative errno
 * (the request then fails with the mapped status once the body ends); when it has also set the
 * answer on that first call, the answer goes before any of the body is read. */
typedef int (*ant_body_fn)(struct ant_req *r, const uint8_t *p, size_t n);

enum {
    ANT_ROUTE_PUBLIC = 1u << 0, /* no credential needed */
};

/* Routes answer 401 before reading a body when the request carries no valid credential. */

struct ant_route {
    const char *method; /* "GET" also answers HEAD */
    const char *pattern; /* "/v1/datasets/{}/files/{*}": {} one segment, {*} the rest */
    const char *name;    /* for metrics and logs: "datasets.show" */
    ant_route_fn handle;
    ant_body_fn body; /* NULL: a JSON body up to the configured limit is buffered */
    unsigned flags;
};

struct ant_req {
    struct ant_server *srv;
    struct ant_site *site;
    struct MHD_Connection *conn;
    const struct ant_route *route;
    bool path_known; /* some route has this path: 405 rather than 404 */
    char request_id[33];
    char method[16];
    char *url; /* decoded path, owned */
    int64_t t0_ns;
    unsigned status;
    uint64_t bytes_in;
    uint64_t bytes_out;
    char principal[160]; /* who, once authenticated, for the request log */
    bool authed;
    struct ant_principal who; /* valid when authed */
    struct ant_bytes params[ANT_ROUTE_MAX_PARAMS];
    unsigned nparams;
    struct ant_buf body;
    int body_rc; /* first error from the body consumer, or -E2BIG past the limit */
    struct MHD_Response *resp;
    void *state; /* route-owned, freed with state_free in the completion callback */
    void (*state_free)(void *state);
};

/* Answers with a JSON document (borrowed: it is serialised at once). */
ANT_MUST_CHECK int ant_req_json(struct ant_req *r, unsigned status, const json_t *doc);
/* Answers with the JSON error body {"error", "message", "request_id"}. */
ANT_MUST_CHECK int ant_req_error(struct ant_req *r, unsigned status, const char *code,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Takes one request from the per-principal rate limit ([server] rate_limit, rate_burst) of
 * `key`: 0, or -1 with the answer set (429 with Retry-After). Routes that authenticate in
 * their handler (job tokens, federation tokens) call it once the caller is known; the others
 * are limited before their handler, by API key or OIDC principal. */
ANT_MUST_CHECK int ant_req_rate_limit(struct ant_req *r, const char *key);
/* Answers with a prepared MHD response, which the request now owns. */
void ant_req_respond(struct ant_req *r, unsigned status, struct MHD_Response *resp);

/* A request header, or NULL. */
const char *ant_req_header(const struct ant_req *r, const char *name);
/* A query argument (decoded), or NULL. */
const char *ant_req_query(const struct ant_req *r, const char *name);

/* A Range header (RFC 9110 §14.1.2: one "bytes=a-b", "bytes=a-" or "bytes=-n") against a body
 * of `size` bytes; h may be NULL. Returns 1 with the satisfiable [*first, *last] inside the
 * body, 0 to send the whole body (no Range, several ranges, or a form it ignores, as §14.2
 * allows), -ERANGE when the range starts past the end (416). Untrusted input: fuzzed. */
int ant_http_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last);

/* STYLE.md §2's one mapping of error codes to HTTP statuses; anything unlisted is 500. */
unsigned ant_http_status_of(int err);
/* The machine-readable error code for a status ("not_found", ...). */
const char *ant_http_error_code(unsigned status);

#endif
