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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* GnuTLS priorities: TLS 1.3 and 1.2 only, the server's order. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

struct ant_server {
    struct ant_site *site;
    struct MHD_Daemon *d;
    uint16_t port;
    atomic_uint inflight;
    struct ant_ratelimit *rl;
    struct ant_metrics *metrics;
};

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
    struct ant_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    uint8_t id[16];
    randombytes_buf(id, sizeof(id));
    ant_hex_encode(id, sizeof(id), r->request_id);
    r->srv = s;
    r->site = s->site;
    r->conn = conn;
    r->t0_ns = ant_mono_ns();
    r->url = strdup(url);
    snprintf(r->method, sizeof(r->method), "%s", method);
    ant_buf_init(&r->body, s->site->cfg.max_json_body);
    if (r->url == NULL) {
        free(r);
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
    free(r);
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
    unsigned wait = ant_ratelimit_take(r->srv->rl, r->principal, ant_mono_ns());
    if (wait > 0) {
        rc = ant_req_error(r, MHD_HTTP_TOO_MANY_REQUESTS, NULL,
                           "rate limit of %u requests per second exceeded; retry in %u s",
                           r->site->cfg.rate_limit_per_s, wait);
        if (rc == 0) {
            char ra[16];
            snprintf(ra, sizeof(ra), "%u", wait);
            MHD_add_response_header(r->resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
        }
        return -1;
    }
    return 0;
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
                                 declared_too_large(r))) {
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
    if (r->resp == NULL) {
        return MHD_NO;
    }
    return MHD_queue_response(conn, r->status, r->resp);
}

static void log_request(const struct ant_req *r, enum MHD_RequestTerminationCode toe)
{
    int64_t ms = ant_now_ms();
    char ts[32], when[40];
    ant_fmt_time(ms / 1000, ts);
    snprintf(when, sizeof(when), "%.19s.%03dZ", ts, (int)(ms % 1000));
    double dur = (double)(ant_mono_ns() - r->t0_ns) / 1e6;
    json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:f}", "ts", when,
                             "level", "info", "event", "http.request", "request_id",
                             r->request_id, "method", r->method, "path", r->url, "status",
                             (int)r->status, "bytes_in", (json_int_t)r->bytes_in, "bytes_out",
                             (json_int_t)r->bytes_out, "duration_ms", dur);
    if (line == NULL) {
        return;
    }
    if (r->route != NULL) {
        json_object_set_new(line, "route", json_string(r->route->name));
    }
    if (r->principal[0] != '\0') {
        json_object_set_new(line, "principal", json_string(r->principal));
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        json_object_set_new(line, "aborted", json_true());
    }
    char *s = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s != NULL) {
        size_t len = strlen(s);
        s[len] = '\n';
        (void)!write(STDERR_FILENO, s, len + 1);
        free(s);
    }
    json_decref(line);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ant_server *s = cls;
    struct ant_req *r = *con_cls;
    (void)conn;
    if (r == NULL) {
        return;
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
    unsigned flags = MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (s == NULL) {
        return -ENOMEM;
    }
    s->site = site;
    if (ant_ratelimit_new(site->cfg.rate_limit_per_s, site->cfg.rate_limit_burst, &s->rl) < 0 ||
        ant_metrics_new(g_ant_nroutes, &s->metrics) < 0) {
        ant_ratelimit_free(s->rl);
        free(s);
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
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_HTTPS_MEM_CERT, (const char *)site->cert_pem.p, MHD_OPTION_HTTPS_MEM_KEY,
        (const char *)site->key_pem.p, MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        site->cfg.connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        site->cfg.per_ip_connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        site->cfg.connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)site->cfg.max_header_bytes, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, s, MHD_OPTION_STRICT_FOR_CLIENT, 1,
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
    MHD_stop_daemon(s->d);
    server_free(s);
}
