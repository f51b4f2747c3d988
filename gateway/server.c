/* The HTTPS server on libmicrohttpd. Responses are always queued on a later call of the access
 * handler than the first: queuing on the first call costs a 40x drop in request rate over TLS
 * (DESIGN.md §11). */
#include "gateway/server.h"

#include "ant_version.h"
#include "crypto/base/log.h"
#include "gateway/auth.h"
#include "gateway/http.h"
#include "gateway/metrics.h"
#include "gateway/ratelimit.h"
#include "gateway/routes.h"
#include "gateway/site.h"

#include "policy/audit.h"
#include "policy/decide.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* How long ant_server_stop waits, after its grace period, for answers held for their audit. */
#define HOLD_STOP_WAIT_NS (10LL * 1000 * 1000 * 1000)

/* The hot-path caches: enough slots for the questions asked within one second by the clients
 * of a busy site; a collision only costs a catalog read. */
#define DECISION_SLOTS 1024
#define DATASET_SLOTS 256

/* GnuTLS priorities: TLS 1.3 and 1.2 only, the server's order. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

struct ant_server {
    struct ant_site *site;
    struct MHD_Daemon *d;
    uint16_t port;
    atomic_uint inflight;
    struct ant_ratelimit *rl;
    struct ant_metrics *metrics;
    struct ant_hotcache *auth; /* credential -> principal (gateway/auth.h) */
    /* Decisions and serialised datasets for read-only requests, at most 1 s (policy/decide.h);
     * emptied with the authentication cache by every request that may write. */
    struct ant_hotcache *decisions;
    struct ant_hotcache *datasets;
    /* Answers held for their audit event (see ant_req_audit_hold) */
    atomic_uint holds; /* events queued whose done has not come yet */
    /* Request ids: a keyed BLAKE2b of a counter, unique and unguessable like random bytes,
     * without a getrandom(2) per request. */
    uint8_t id_key[crypto_generichash_KEYBYTES];
    _Atomic uint64_t id_counter;
    bool log_buffered; /* this server started the log's buffering (and stops it) */
};

/* A held answer's handshake between the worker and the audit writer's callback, without a lock:
 * the worker suspends the connection and then moves PENDING -> SUSPENDED; the callback moves
 * any state to DONE and resumes the connection only if it found SUSPENDED. Whichever comes
 * second sees the other's step, so the connection is resumed exactly once after its suspension
 * and never before. */
enum hold_state {
    HOLD_NONE = 0,  /* nothing held (or the hold is over) */
    HOLD_ALLOWED,   /* the handler allows its first audit event to be queued */
    HOLD_PENDING,   /* queued: the answer waits for done */
    HOLD_SUSPENDED, /* queued, and the connection suspended: done resumes it */
    HOLD_DONE,      /* done came: hold_seq says how it went */
};

/* Answers whose body is at most this many bytes go out as one TLS record (queue_answer). */
#define ONE_RECORD_BODY_MAX 4096

/* What the server keeps per request beyond struct ant_req (which handlers see). */
struct req_full {
    struct ant_req r;
    _Atomic int hold;       /* enum hold_state */
    _Atomic int64_t hold_seq; /* written by done before it sets HOLD_DONE */
    bool small;  /* the answer is a buffer of at most ONE_RECORD_BODY_MAX bytes */
    bool corked; /* its TLS records are gathered until on_completed (queue_answer) */
};

static struct req_full *req_full_of(struct ant_req *r)
{
    return (struct req_full *)((char *)r - offsetof(struct req_full, r));
}

unsigned ant_http_status_of(int err)
{
    switch (err) {
    case -EBADMSG:
    case -EINVAL:
        return MHD_HTTP_BAD_REQUEST;
    case -E2BIG:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case -EKEYREJECTED:
    case -EKEYEXPIRED:
    case -EKEYREVOKED:
        return MHD_HTTP_UNAUTHORIZED;
    case -EACCES:
    case -EPERM:
        return MHD_HTTP_FORBIDDEN;
    case -ENOENT:
        return MHD_HTTP_NOT_FOUND;
    case -EEXIST:
        return MHD_HTTP_CONFLICT;
    case -EDQUOT:
    case -ENOSPC:
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

const char *ant_http_error_code(unsigned status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthenticated";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 416:
        return "range_not_satisfiable";
    case 422:
        return "unprocessable";
    case 429:
        return "rate_limited";
    case 431:
        return "headers_too_large";
    case 503:
        return "unavailable";
    case 507:
        return "insufficient_storage";
    default:
        return status >= 500 ? "internal" : "error";
    }
}

static void add_common_headers(struct ant_req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
}

void ant_req_respond(struct ant_req *r, unsigned status, struct MHD_Response *resp)
{
    if (r->resp != NULL) {
        MHD_destroy_response(r->resp);
    }
    add_common_headers(r, resp);
    r->resp = resp;
    r->status = status;
    req_full_of(r)->small = false; /* the buffer answers below say when it is */
}

static int respond_bytes(struct ant_req *r, unsigned status, const char *ctype, char *data,
                         size_t len)
{
    /* MHD frees `data` with free() once sent: the response owns it from here */
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(data);
        return -ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    ant_req_respond(r, status, resp);
    r->bytes_out = len;
    req_full_of(r)->small = len <= ONE_RECORD_BODY_MAX;
    return 0;
}

int ant_req_json(struct ant_req *r, unsigned status, const json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    if (s == NULL) {
        return -ENOMEM;
    }
    size_t len = strlen(s);
    s[len] = '\n'; /* replaces the NUL: a trailing newline is friendlier to curl users */
    return respond_bytes(r, status, "application/json", s, len + 1);
}

int ant_req_json_bytes(struct ant_req *r, unsigned status, const char *p, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)p, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return -ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ant_req_respond(r, status, resp);
    r->bytes_out = len;
    req_full_of(r)->small = len <= ONE_RECORD_BODY_MAX;
    return 0;
}

int ant_req_error(struct ant_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "error", code ? code : ant_http_error_code(status),
                            "message", msg, "request_id", r->request_id);
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, status, doc);
    json_decref(doc);
    if (rc == 0 && status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"antenna\"");
    }
    return rc;
}

int ant_http_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    uint64_t a, b;
    if (h == NULL || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL) {
        return 0;
    }
    const char *spec = h + 6, *dash = strchr(spec, '-');
    if (dash == NULL) {
        return 0;
    }
    struct ant_bytes left = ant_bytes_of(spec, (size_t)(dash - spec));
    struct ant_bytes right = ant_bytes_of(dash + 1, strlen(dash + 1));
    if (left.len == 0) {
        /* the last n bytes */
        if (ant_parse_u64(right, 1, UINT64_MAX, &b) < 0) {
            return 0;
        }
        if (size == 0) {
            return -ERANGE;
        }
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (ant_parse_u64(left, 0, UINT64_MAX, &a) < 0) {
        return 0;
    }
    b = UINT64_MAX;
    if (right.len > 0 && (ant_parse_u64(right, 0, UINT64_MAX, &b) < 0 || b < a)) {
        return 0;
    }
    if (a >= size) {
        return -ERANGE;
    }
    *first = a;
    *last = b >= size ? size - 1 : b;
    return 1;
}

const char *ant_req_header(const struct ant_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *ant_req_query(const struct ant_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

void ant_req_allow_hold(struct ant_req *r)
{
    struct req_full *f = req_full_of(r);
    if (f->hold == HOLD_NONE) {
        f->hold = HOLD_ALLOWED;
    }
}

/* The audit writer's callback: the event is durable (seq > 0) or failed. Runs on the audit
 * writer thread and must not block: MHD_resume_connection is thread-safe and only signals the
 * worker. Nothing of f is touched after the exchange unless the connection was suspended (then
 * f lives until the resume is handled): once it sees DONE, the worker may finish and free it. */
static void hold_done(void *arg, int64_t seq)
{
    struct req_full *f = arg;
    struct ant_server *s = f->r.srv;
    struct MHD_Connection *conn = f->r.conn;
    atomic_store(&f->hold_seq, seq);
    if (atomic_exchange(&f->hold, HOLD_DONE) == HOLD_SUSPENDED) {
        MHD_resume_connection(conn);
    }
    atomic_fetch_sub(&s->holds, 1);
}

int ant_req_audit_hold(struct ant_req *r, const struct ant_audit_event *ev)
{
    struct req_full *f = req_full_of(r);
    if (f->hold != HOLD_ALLOWED) {
        return -EAGAIN;
    }
    atomic_fetch_add(&r->srv->holds, 1);
    f->hold = HOLD_PENDING; /* before the queue: done may come at once */
    int rc = ant_audit_append_async(r->site->audit, ev, hold_done, f);
    if (rc < 0) {
        f->hold = HOLD_NONE; /* refused: done never comes */
        atomic_fetch_sub(&r->srv->holds, 1);
    }
    return rc;
}

/* Called once the answer is set. True when it must wait: the connection is then suspended, and
 * the access handler runs again once the event is durable. A failed event replaces the answer
 * with a 503: the caller is told nothing was released, and nothing was. */
static bool hold_answer(struct req_full *f)
{
    int h = atomic_load(&f->hold);
    if (h == HOLD_PENDING) {
        MHD_suspend_connection(f->r.conn);
        if (atomic_compare_exchange_strong(&f->hold, &h, HOLD_SUSPENDED)) {
            return true; /* done resumes the connection */
        }
        /* done came between the load and the exchange: no one else will resume */
        MHD_resume_connection(f->r.conn);
        return true;
    }
    if (h != HOLD_DONE) {
        return false;
    }
    atomic_store(&f->hold, HOLD_NONE);
    int64_t seq = atomic_load(&f->hold_seq);
    if (seq < 0) {
        struct ant_req *r = &f->r;
        ant_log_kv(ANT_LOG_ERROR, "audit.append_failed",
                   ((const char *[]){"request_id", r->request_id, NULL}),
                   "cannot record the decision: %s; answer withheld", strerror((int)-seq));
        r->bytes_out = 0;
        if (ant_req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "audit_unavailable",
                          "the audit log cannot record this request; nothing was done") < 0) {
            /* no memory for the 503: the held answer must not go out, so drop the connection */
            if (r->resp != NULL) {
                MHD_destroy_response(r->resp);
                r->resp = NULL;
            }
        }
    }
    return false;
}

/* Finds the route for method and path. *path_known tells a 405 from a 404. */
static const struct ant_route *route_find(struct ant_req *r, bool *path_known)
{
    const char *m = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    *path_known = false;
    for (size_t i = 0; i < g_ant_nroutes; i++) {
        struct ant_bytes params[ANT_ROUTE_MAX_PARAMS];
        unsigned n = 0;
        if (!ant_route_match(g_ant_routes[i].pattern, r->url, params, &n)) {
            continue;
        }
        *path_known = true;
        if (strcmp(g_ant_routes[i].method, m) == 0) {
            memcpy(r->params, params, sizeof(params));
            r->nparams = n;
            return &g_ant_routes[i];
        }
    }
    return NULL;
}

static void allow_header(struct ant_req *r)
{
    char allow[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < g_ant_nroutes; i++) {
        struct ant_bytes params[ANT_ROUTE_MAX_PARAMS];
        unsigned n = 0;
        if (!ant_route_match(g_ant_routes[i].pattern, r->url, params, &n)) {
            continue;
        }
        int w = snprintf(allow + used, sizeof(allow) - used, "%s%s%s", used ? ", " : "",
                         g_ant_routes[i].method,
                         strcmp(g_ant_routes[i].method, "GET") == 0 ? ", HEAD" : "");
        if (w < 0 || (size_t)w >= sizeof(allow) - used) {
            break;
        }
        used += (size_t)w;
    }
    if (r->resp != NULL) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
}

static struct ant_req *req_new(struct ant_server *s, struct MHD_Connection *conn, const char *url,
                               const char *method)
{
    struct req_full *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    struct ant_req *r = &f->r;
    uint8_t id[16], n[8];
    uint64_t c = atomic_fetch_add(&s->id_counter, 1);
    for (size_t i = 0; i < sizeof(n); i++) {
        n[i] = (uint8_t)(c >> (8 * i));
    }
    crypto_generichash(id, sizeof(id), n, sizeof(n), s->id_key, sizeof(s->id_key));
    ant_hex_encode(id, sizeof(id), r->request_id);
    r->srv = s;
    r->site = s->site;
    r->conn = conn;
    r->t0_ns = ant_mono_ns();
    r->url = strdup(url);
    snprintf(r->method, sizeof(r->method), "%s", method);
    ant_buf_init(&r->body, s->site->cfg.max_json_body);
    if (r->url == NULL) {
        free(f);
        return NULL;
    }
    return r;
}

static void req_free(struct ant_req *r)
{
    if (r == NULL) {
        return;
    }
    if (r->state_free != NULL) {
        r->state_free(r->state);
    }
    if (r->resp != NULL) {
        MHD_destroy_response(r->resp);
    }
    ant_buf_fini(&r->body);
    free(r->url);
    free(req_full_of(r));
}

static void dispatch(struct ant_req *r, bool path_known)
{
    int rc = 0;
    if (r->route == NULL) {
        if (path_known) {
            rc = ant_req_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, NULL,
                               "method %s is not allowed on this resource", r->method);
            allow_header(r);
        } else {
            rc = ant_req_error(r, MHD_HTTP_NOT_FOUND, NULL, "no such resource");
        }
    } else if (r->body_rc == -E2BIG && r->route->body == NULL) {
        rc = ant_req_error(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                           "request body larger than %llu bytes",
                           (unsigned long long)r->site->cfg.max_json_body);
    } else {
        rc = r->body_rc < 0 ? r->body_rc : r->route->handle(r);
        if (r->authed && strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
            /* This request may have revoked a key or disabled a principal: the next request
             * must not be let in by a cached authentication (before this answer is sent). */
            ant_hotcache_invalidate(r->srv->auth);
            ant_hotcache_invalidate(r->srv->decisions);
            ant_hotcache_invalidate(r->srv->datasets);
        }
        if (rc < 0) {
            unsigned st = ant_http_status_of(rc);
            if (st == MHD_HTTP_INTERNAL_SERVER_ERROR) {
                ant_log_kv(ANT_LOG_ERROR, "http.handler_failed",
                           ((const char *[]){"request_id", r->request_id, "route",
                                             r->route->name, NULL}),
                           "handler failed: %s", strerror(-rc));
            }
            rc = ant_req_error(r, st, NULL, "%s",
                               st == MHD_HTTP_INTERNAL_SERVER_ERROR ? "internal error"
                                                                    : strerror(-rc));
        } else if (r->resp == NULL) {
            rc = ant_req_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "no response");
        }
    }
    (void)rc;
}

/* Authentication and the per-principal rate limit, before the handler and before any body is
 * read. Returns 0, or -1 with the error response set. */
static int admit(struct ant_req *r)
{
    int rc = ant_gw_authenticate(r);
    if (rc == -EKEYREJECTED) {
        rc = ant_req_error(r, MHD_HTTP_UNAUTHORIZED, NULL, ANT_AUTH_REJECTED_MSG);
        return -1;
    }
    if (rc < 0) {
        ant_log_kv(ANT_LOG_ERROR, "auth.failed",
                   ((const char *[]){"request_id", r->request_id, NULL}),
                   "cannot check credentials: %s", strerror(-rc));
        rc = ant_req_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                           "credentials cannot be checked right now; retry later");
        return -1;
    }
    return ant_req_rate_limit(r, r->principal);
}

int ant_req_rate_limit(struct ant_req *r, const char *key)
{
    unsigned wait = ant_ratelimit_take(r->srv->rl, key, ant_mono_ns());
    if (wait == 0) {
        return 0;
    }
    int rc = ant_req_error(r, MHD_HTTP_TOO_MANY_REQUESTS, NULL,
                           "rate limit of %u requests per second exceeded; retry in %u s",
                           r->site->cfg.rate_limit_per_s, wait);
    if (rc == 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", wait);
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    return -1;
}

/* An upload whose declared Content-Length is past max_upload is refused at once with 413,
 * before any of it is read (a client sending `Expect: 100-continue` sends none). JSON bodies,
 * at most max_json_body, are read and then refused: the client gets its 413 cleanly instead
 * of a connection closed under it. Returns true when answered. */
static bool declared_too_large(struct ant_req *r)
{
    const char *cl = ant_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t len, max = r->site->cfg.max_upload_bytes;
    if (r->route->body == NULL || cl == NULL ||
        ant_parse_u64(ant_bytes_of(cl, strlen(cl)), 0, UINT64_MAX, &len) < 0 || len <= max) {
        return false;
    }
    int rc = ant_req_error(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                           "request body of %llu bytes is over the limit of %llu bytes",
                           (unsigned long long)len, (unsigned long long)max);
    return rc == 0;
}

/* A streaming body consumer is first called with no bytes once the caller is admitted, so that
 * what it refuses from the headers alone (an upload to a path the dataset cannot take, a write
 * the caller may not do) is answered before any of the body is read. Returns true when
 * answered. */
static bool body_start_refused(struct ant_req *r)
{
    static const uint8_t none[1];
    if (r->route->body == NULL) {
        return false;
    }
    r->body_rc = r->route->body(r, none, 0);
    return r->body_rc < 0 && r->resp != NULL;
}

/* Whether a request refused before its body is read (401, 429, 413, an upload's 403/409) is
 * answered at once, the connection then closed under whatever body follows. Yes when no body
 * comes, when the client waits for "100 Continue" (it then sends none), and when the body is
 * too big to be worth reading. A small body sent right behind the headers (curl does so up to
 * 1 MiB) is read and dropped first: closing with it unread resets the connection, and the
 * client, still sending, saw "broken pipe" instead of its 429 and could not retry. */
#define REFUSED_BODY_READ_MAX (1u << 20)
static bool refuse_at_once(struct ant_req *r)
{
    const char *cl = ant_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = ant_req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *expect = ant_req_header(r, MHD_HTTP_HEADER_EXPECT);
    uint64_t len = 0;
    if (te == NULL && (cl == NULL || strcmp(cl, "0") == 0)) {
        return true;
    }
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0) {
        return true;
    }
    return cl == NULL || ant_parse_u64(ant_bytes_of(cl, strlen(cl)), 0, UINT64_MAX, &len) < 0 ||
           len > REFUSED_BODY_READ_MAX;
}

/* One TLS record per small answer. libmicrohttpd 0.9.75 hands a TLS answer's headers and body
 * to GnuTLS in two sends, so two records: two sendmsg here and, for the client, two records to
 * read and decrypt (wrk spent 4-6 us more per answer than on nginx's one record). GnuTLS's
 * record cork gathers both into one record; on_completed, which libmicrohttpd calls right after
 * the last send of the answer, flushes it. Only when the socket has nothing unsent or unacked
 * (SIOCOUTQ 0): the record (a few KiB at most) then fits in the empty send buffer and the flush
 * cannot meet EAGAIN. A client that pipelines without reading gets the two-record path. */
static void cork_answer(struct MHD_Connection *conn, struct req_full *f)
{
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int unsent = -1;
    if (ti != NULL && ti->tls_session != NULL && fi != NULL &&
        ioctl(fi->connect_fd, SIOCOUTQ, &unsent) == 0 && unsent == 0) {
        gnutls_record_cork((gnutls_session_t)ti->tls_session);
        f->corked = true;
    }
}

/* Per TCP connection (libmicrohttpd's socket context). */
struct conn_state {
    bool uncorked; /* flush_answer has taken the socket out of libmicrohttpd's TCP_CORK */
};

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)conn;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(struct conn_state)); /* NULL: flush_answer copes */
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        free(*socket_context);
        *socket_context = NULL;
    }
}

/* Sends what cork_answer gathered. libmicrohttpd keeps a TLS socket corked (TCP_CORK, set at
 * its first answer) and pushes each answer by setting TCP_NODELAY after its last send, before
 * this record existed. The first flush of a connection takes the cork off, which pushes the
 * record; libmicrohttpd, which believes the socket corked, never sets it again, so from then
 * on the record's sendmsg sends it at once (TCP_NODELAY is on): one system call fewer per
 * answer. Without a connection state, setting TCP_NODELAY again pushes it. A flush that fails
 * (the client gone) shuts the socket down, so that the session is never left corked under the
 * next answer. */
static void flush_answer(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_state *cs = ci != NULL ? ci->socket_context : NULL;
    if (ti == NULL || ti->tls_session == NULL || fi == NULL) {
        return;
    }
    if (gnutls_record_uncork((gnutls_session_t)ti->tls_session, 0) < 0) {
        (void)shutdown(fi->connect_fd, SHUT_RDWR);
        return;
    }
    int on = 1, off = 0;
    if (cs == NULL) {
        (void)setsockopt(fi->connect_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    } else if (!cs->uncorked) {
        cs->uncorked = setsockopt(fi->connect_fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)) == 0;
        if (!cs->uncorked) {
            (void)setsockopt(fi->connect_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        }
    }
}

static enum MHD_Result queue_answer(struct MHD_Connection *conn, struct ant_req *r)
{
    struct req_full *f = req_full_of(r);
    if (f->small && !f->corked) {
        cork_answer(conn, f);
    }
    return MHD_queue_response(conn, r->status, r->resp);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct ant_server *s = cls;
    struct ant_req *r = *con_cls;
    (void)version;
    if (r == NULL) {
        r = req_new(s, conn, url, method);
        if (r == NULL) {
            return MHD_NO;
        }
        *con_cls = r;
        atomic_fetch_add(&s->inflight, 1);
        bool known;
        r->route = route_find(r, &known);
        r->path_known = known;
        if (r->route != NULL && (((r->route->flags & ANT_ROUTE_PUBLIC) == 0 && admit(r) < 0) ||
                                 declared_too_large(r) || body_start_refused(r))) {
            if (!refuse_at_once(r)) {
                r->body_rc = -ECANCELED; /* read and dropped; the answer comes at its end */
                return MHD_YES;
            }
            /* refused before any body is read: answering now also skips "100 Continue" */
            return MHD_queue_response(conn, r->status, r->resp);
        }
        return MHD_YES; /* defer: see the comment at the top */
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        r->bytes_in += n;
        *upload_data_size = 0;
        if (r->body_rc < 0 || r->route == NULL) {
            return MHD_YES; /* drain what follows an error; answer at the end */
        }
        r->body_rc = r->route->body != NULL
                         ? r->route->body(r, (const uint8_t *)upload_data, n)
                         : ant_buf_append(&r->body, upload_data, n);
        return MHD_YES;
    }
    if (r->resp == NULL) {
        dispatch(r, r->path_known);
    }
    if (r->resp != NULL && hold_answer(req_full_of(r))) {
        return MHD_YES; /* suspended until the audit event is durable */
    }
    if (r->resp == NULL) {
        return MHD_NO;
    }
    return queue_answer(conn, r);
}

/* A log line built in a fixed buffer: the request log costs no allocation. `full` once
 * something did not fit. */
struct logline {
    char p[2048];
    size_t len;
    bool full;
};

static void line_put(struct logline *l, const char *s, size_t n)
{
    if (l->full || n > sizeof(l->p) - l->len) {
        l->full = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

__attribute__((format(printf, 2, 3))) static void line_printf(struct logline *l, const char *fmt,
                                                              ...)
{
    va_list ap;
    size_t room = sizeof(l->p) - l->len;
    va_start(ap, fmt);
    int n = l->full ? -1 : vsnprintf(l->p + l->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        l->full = true;
        return;
    }
    l->len += (size_t)n;
}

/* Appends s as the inside of a JSON string: quotes, backslashes and control bytes escaped,
 * valid UTF-8 kept, any other byte (the path is the client's, decoded) as U+FFFD. */
static void line_str(struct logline *l, const char *s)
{
    for (const uint8_t *p = (const uint8_t *)s; *p != '\0' && !l->full; p++) {
        uint8_t c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            line_put(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            line_printf(l, "\\u%04x", c);
        } else if (c < 0x80) {
            line_put(l, (const char *)p, 1);
        } else {
            /* one UTF-8 sequence: a lead byte, its continuation bytes, no overlong form, no
             * surrogate, nothing past U+10FFFF */
            size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                         : c >= 0xe0 && c <= 0xef ? 3
                         : c >= 0xf0 && c <= 0xf4 ? 4
                                                  : 0;
            bool ok = len > 0;
            for (size_t i = 1; ok && i < len; i++) {
                ok = (p[i] & 0xc0) == 0x80; /* also stops at the NUL */
            }
            if (ok && len == 3) {
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            } else if (ok && len == 4) {
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            }
            if (ok) {
                line_put(l, (const char *)p, len);
                p += len - 1;
            } else {
                line_put(l, "\xef\xbf\xbd", 3);
            }
        }
    }
}

/* a string literal, as it is */
#define LINE_LIT(l, s) line_put((l), (s), sizeof(s) - 1)

static void line_u64(struct logline *l, uint64_t v)
{
    char d[20];
    size_t n = 0;
    do {
        d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    line_put(l, d + sizeof(d) - n, n);
}

/* ns as milliseconds with six decimals, "%.6f" of ns / 1e6 without floating point */
static void line_ms(struct logline *l, uint64_t ns)
{
    char frac[7];
    uint64_t f = ns % 1000000;
    line_u64(l, ns / 1000000);
    frac[0] = '.';
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    line_put(l, frac, sizeof(frac));
}

/* "YYYY-MM-DDTHH:MM:SS" of the current second, formatted once a second per worker */
static const char *log_second(int64_t unix_s)
{
    static _Thread_local int64_t cached = -1;
    static _Thread_local char ts[32];
    if (unix_s != cached) {
        ant_fmt_time(unix_s, ts);
        ts[19] = '\0'; /* without the Z: the milliseconds follow */
        cached = unix_s;
    }
    return ts;
}

/* The request's log line, formatted by hand (built with jansson it cost ~7 % of the CPU of a
 * small authenticated request, with snprintf ~3 %) and buffered: a write(2) per line cost
 * another 5 %. */
static void log_request(const struct ant_req *r, enum MHD_RequestTerminationCode toe)
{
    int64_t ms = ant_now_ms();
    char msd[4] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                   (char)('0' + ms % 10), 'Z'};
    const char *ts = log_second(ms / 1000);
    struct logline l;
    l.len = 0;
    l.full = false;
    int64_t dur = ant_mono_ns() - r->t0_ns;
    LINE_LIT(&l, "{\"ts\":\"");
    line_put(&l, ts, strlen(ts));
    line_put(&l, ".", 1);
    line_put(&l, msd, sizeof(msd));
    LINE_LIT(&l, "\",\"level\":\"info\",\"event\":\"http.request\",\"request_id\":\"");
    line_put(&l, r->request_id, strlen(r->request_id));
    LINE_LIT(&l, "\",\"method\":\"");
    line_str(&l, r->method);
    LINE_LIT(&l, "\",\"path\":\"");
    line_str(&l, r->url);
    LINE_LIT(&l, "\",\"status\":");
    line_u64(&l, r->status);
    LINE_LIT(&l, ",\"bytes_in\":");
    line_u64(&l, r->bytes_in);
    LINE_LIT(&l, ",\"bytes_out\":");
    line_u64(&l, r->bytes_out);
    LINE_LIT(&l, ",\"duration_ms\":");
    line_ms(&l, dur > 0 ? (uint64_t)dur : 0);
    if (r->route != NULL) {
        LINE_LIT(&l, ",\"route\":\"");
        line_put(&l, r->route->name, strlen(r->route->name));
        line_put(&l, "\"", 1);
    }
    if (r->principal[0] != '\0') {
        LINE_LIT(&l, ",\"principal\":\"");
        line_str(&l, r->principal);
        line_put(&l, "\"", 1);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        LINE_LIT(&l, ",\"aborted\":true");
    }
    LINE_LIT(&l, "}\n");
    if (l.full) {
        /* a path too long for the line: the line without it, marked so */
        l.len = 0;
        l.full = false;
        line_printf(&l,
                    "{\"ts\":\"%s.%.4s\",\"level\":\"info\",\"event\":\"http.request\","
                    "\"request_id\":\"%s\",\"status\":%u,\"path_truncated\":true}\n",
                    ts, msd, r->request_id, r->status);
    }
    if (!l.full) {
        ant_log_line(ANT_LOG_INFO, l.p, l.len); /* buffered while the server runs */
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ant_server *s = cls;
    struct ant_req *r = *con_cls;
    if (r == NULL) {
        return;
    }
    if (req_full_of(r)->corked) {
        flush_answer(conn);
    }
    if (g_ant_log_level >= ANT_LOG_INFO) {
        log_request(r, toe);
    }
    ant_metrics_request(s->metrics, r->route != NULL ? (size_t)(r->route - g_ant_routes) : SIZE_MAX,
                        r->status, r->bytes_in, r->bytes_out, ant_mono_ns() - r->t0_ns);
    req_free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

/* Percent-decoding of the path and the query arguments. A decoded NUL would silently cut the
 * string short ("a%00b" becoming "a"), so it becomes 0x01 instead, which every path and name
 * check refuses as a control byte. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *p = s; *p != '\0'; p++) {
        uint8_t c;
        if (p[0] == '%' && p[1] != '\0' && p[2] != '\0' &&
            ant_hex_decode(ant_bytes_of(p + 1, 2), &c, 1) == 0) {
            *w++ = c == 0 ? '\x01' : (char)c;
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* libmicrohttpd's messages: its own format strings */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                             va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    ant_log(ANT_LOG_DEBUG, "http.mhd", "%s", msg);
}

static void server_free(struct ant_server *s)
{
    if (s->log_buffered) {
        ant_log_buffer_stop();
    }
    ant_hotcache_free(s->auth);
    ant_hotcache_free(s->decisions);
    ant_hotcache_free(s->datasets);
    ant_ratelimit_free(s->rl);
    ant_metrics_free(s->metrics);
    free(s);
}

int ant_server_start(struct ant_site *site, struct ant_server **out, struct ant_diag *d)
{
    struct ant_server *s = calloc(1, sizeof(*s));
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa;
    /* [server] event_loop. poll(2) by default: every held answer suspends and resumes its
     * connection, which with epoll costs an epoll_ctl each way plus, edge-triggered, a recv
     * that ends in EAGAIN per request; a worker's poll set is its share of the connections.
     * poll used 10-20 % less CPU per small request at 64 connections, but its cost grows with
     * every connection a worker holds, idle ones too: with 960 idle connections beside the 64
     * busy ones, 106-108 against 66-71 us per request with epoll (docs/benchmarks.md). */
    unsigned flags = MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME |
                     (strcmp(site->cfg.event_loop, "epoll") == 0 ? MHD_USE_EPOLL : MHD_USE_POLL);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->site = site;
    randombytes_buf(s->id_key, sizeof(s->id_key));
    if (ant_ratelimit_new(site->cfg.rate_limit_per_s, site->cfg.rate_limit_burst, &s->rl) < 0 ||
        ant_metrics_new(g_ant_nroutes, &s->metrics) < 0 || ant_authcache_new(&s->auth) < 0 ||
        ant_hotcache_new(DECISION_SLOTS, sizeof(struct ant_decision), &s->decisions) < 0 ||
        ant_hotcache_new(DATASET_SLOTS, ANT_DATASET_JSON_CACHE_MAX, &s->datasets) < 0) {
        server_free(s);
        return -ENOMEM;
    }
    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, site->cfg.listen_addr, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(site->cfg.listen_port);
        sa = (struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, site->cfg.listen_addr, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(site->cfg.listen_port);
        sa = (struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        ant_diag_set(d, "listen address %s is not an IP literal", site->cfg.listen_addr);
        server_free(s);
        return -EINVAL;
    }
    unsigned threads = ant_config_http_threads(&site->cfg);
    if (ant_buf_terminate(&site->cert_pem) < 0 || ant_buf_terminate(&site->key_pem) < 0) {
        server_free(s);
        return -ENOMEM;
    }
    /* The request log in batches, at most log_flush_ms late (crypto/base/log.h); stopped, and
     * everything written, by ant_server_stop. Not fatal: lines then go out one by one. Another
     * server of this process may have started it already: then that one stops it. */
    int lrc = ant_log_buffer_start(site->cfg.log_flush_ms);
    s->log_buffered = lrc == 0 && site->cfg.log_flush_ms > 0;
    if (lrc < 0 && lrc != -EALREADY) {
        ant_log(ANT_LOG_WARN, "log.unbuffered", "request log written line by line: %s",
                strerror(-lrc));
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_HTTPS_MEM_CERT, (const char *)site->cert_pem.p, MHD_OPTION_HTTPS_MEM_KEY,
        (const char *)site->key_pem.p, MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        site->cfg.connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        site->cfg.per_ip_connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        site->cfg.connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)site->cfg.max_header_bytes, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, s, MHD_OPTION_STRICT_FOR_CLIENT, 1,
        MHD_OPTION_END);
    if (s->d == NULL) {
        ant_diag_set(d, "cannot listen on %s:%u (address in use, or a bad TLS key/certificate)",
                     site->cfg.listen_addr, site->cfg.listen_port);
        server_free(s);
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : site->cfg.listen_port;
    *out = s;
    return 0;
}

uint16_t ant_server_port(const struct ant_server *s)
{
    return s->port;
}

struct ant_metrics *ant_server_metrics(struct ant_server *s)
{
    return s->metrics;
}

struct ant_hotcache *ant_server_authcache(struct ant_server *s)
{
    return s != NULL ? s->auth : NULL;
}

struct ant_hotcache *ant_server_decisions(struct ant_server *s)
{
    return s != NULL ? s->decisions : NULL;
}

struct ant_hotcache *ant_server_datasets(struct ant_server *s)
{
    return s != NULL ? s->datasets : NULL;
}

unsigned ant_server_inflight(const struct ant_server *s)
{
    return atomic_load(&s->inflight);
}

void ant_server_stop(struct ant_server *s, unsigned grace_s)
{
    if (s == NULL) {
        return;
    }
    MHD_socket lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) {
        close(lfd);
    }
    int64_t deadline = ant_mono_ns() + (int64_t)grace_s * 1000000000LL;
    while (atomic_load(&s->inflight) > 0 && ant_mono_ns() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    unsigned left = atomic_load(&s->inflight);
    if (left > 0) {
        ant_log(ANT_LOG_WARN, "server.shutdown_deadline",
                "%u requests still in flight after %us; closing them", left, grace_s);
    }
    /* A held answer's connection is suspended, and libmicrohttpd cannot stop with one
     * suspended. Its audit event is already queued and the writer runs until the site closes,
     * after this, so its done comes unless the disk is stuck: wait for it a while longer. */
    deadline = ant_mono_ns() + HOLD_STOP_WAIT_NS;
    while (atomic_load(&s->holds) > 0 && ant_mono_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&s->holds) > 0) {
        /* stopping now would abort the process inside libmicrohttpd; leave the daemon be */
        ant_log(ANT_LOG_ERROR, "server.shutdown_audit_stuck",
                "%u answers still wait for the audit log; not stopping the listener cleanly",
                atomic_load(&s->holds));
        ant_log_flush();
        return;
    }
    MHD_stop_daemon(s->d);
    server_free(s); /* the last requests' lines are written now */
}
