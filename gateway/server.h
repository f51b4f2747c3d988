/* The HTTPS listener: libmicrohttpd with TLS (1.2 minimum), a thread pool with epoll, deferred
 * responses, JSON errors, one JSON log line per request, graceful shutdown. */
#ifndef ANT_SERVER_H
#define ANT_SERVER_H

#include "crypto/base/base.h"

#include <stdint.h>

struct ant_site;
struct ant_server;

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
/* Requests being served right now. */
unsigned ant_server_inflight(const struct ant_server *s);

#endif
