/* The HTTPS listener: libmicrohttpd with TLS (1.2 minimum), a thread pool of poll(2) loops,
 * deferred responses, JSON errors, one JSON log line per request (buffered), graceful shutdown. */
#ifndef ANT_SERVER_H
#define ANT_SERVER_H

#include "crypto/base/base.h"

#include <stdint.h>

struct ant_site;
struct ant_server;
struct ant_hotcache;

/* Starts listening on the site's configured address. Returns 0, or -errno with diag set. The
 * site must outlive the server. */
ANT_MUST_CHECK int ant_server_start(struct ant_site *site, struct ant_server **out,
                                    struct ant_diag *d);
/* The port actually bound (useful with port 0). */
uint16_t ant_server_port(const struct ant_server *s);
/* Stops accepting new connections, waits up to grace_s for requests in flight, then stops.
 * Accepts NULL. */
void ant_server_stop(struct ant_server *s, unsigned grace_s);
/* The server's counters, for /metrics and for handlers counting decisions. */
struct ant_metrics *ant_server_metrics(struct ant_server *s);
/* Holding an answer for its audit event. A handler whose answer releases nothing before its
 * audit event is durable, and that changes nothing after it, calls ant_req_allow_hold(); the
 * first event it audits (ant_api_audit) is then queued with ant_audit_append_async instead of
 * waited for, the handler goes on preparing its answer, and the server sends it only once the
 * event is durable. The worker thread serves other connections meanwhile: the connection is
 * suspended and the audit writer resumes it. If the event cannot be written, the answer is
 * replaced by a 503 (fail closed, as with a synchronous append). */
struct ant_req;
struct ant_audit_event;
void ant_req_allow_hold(struct ant_req *r);
/* Queues ev for r's held answer: 0, -EAGAIN when r holds no answer (not allowed, or its one
 * event is already queued: append synchronously), or the refusal of ant_audit_append_async. */
ANT_MUST_CHECK int ant_req_audit_hold(struct ant_req *r, const struct ant_audit_event *ev);

/* The authentication cache (gateway/auth.h); NULL for NULL. */
struct ant_hotcache *ant_server_authcache(struct ant_server *s);
/* The caches of decisions and of serialised datasets (policy/decide.h: at most 1 s, emptied by
 * every request other than GET/HEAD); NULL for NULL. */
struct ant_hotcache *ant_server_decisions(struct ant_server *s);
struct ant_hotcache *ant_server_datasets(struct ant_server *s);
/* The largest serialised dataset the cache keeps (bigger ones are built per request). */
#define ANT_DATASET_JSON_CACHE_MAX 8192

/* Answers with JSON already serialised (copied). */
ANT_MUST_CHECK int ant_req_json_bytes(struct ant_req *r, unsigned status, const char *p,
                                      size_t len);
/* Requests being served right now. */
unsigned ant_server_inflight(const struct ant_server *s);

#endif
