/* Counters for GET /metrics (Prometheus text format 0.0.4). Updated with relaxed atomics from
 * the worker threads; a scrape reads them without stopping anyone, so one scrape may see a
 * request counted and its bytes not yet: fine for monitoring. */
#ifndef ANT_METRICS_H
#define ANT_METRICS_H

#include "crypto/base/base.h"

#include <stdbool.h>
#include <stdint.h>

struct ant_metrics;

ANT_MUST_CHECK int ant_metrics_new(size_t nroutes, struct ant_metrics **out);
void ant_metrics_free(struct ant_metrics *m); /* accepts NULL */

/* One finished request: route index into g_ant_routes, or SIZE_MAX for no route. */
void ant_metrics_request(struct ant_metrics *m, size_t route, unsigned status, uint64_t bytes_in,
                         uint64_t bytes_out, int64_t duration_ns);
/* One policy decision. */
void ant_metrics_decision(struct ant_metrics *m, bool allow);

/* Gauges read at scrape time from the parts that own them. */
struct ant_metrics_gauges {
    unsigned inflight;
    int64_t audit_queue_depth;      /* -1: unknown */
    double audit_commit_seconds;    /* mean latency of the last group commits; <0: unknown */
    uint64_t audit_commits;
    double audit_sync_seconds;      /* mean fdatasync of the audit WAL; <0: none yet */
    uint64_t audit_syncs;
    bool audit_failed; /* an fdatasync failed: audited requests are refused until restart */
    /* the archive cache of peers' copies (archive/fed, docs/federation.md) */
    int64_t fed_cache_bytes;      /* the fed_cache rows' bytes; -1: unknown (not rendered) */
    uint64_t fed_cache_max;       /* [federation] cache_max; 0: no limit */
    uint64_t fed_evicted_files;   /* evicted by this daemon's passes since it started */
    uint64_t fed_evicted_bytes;
};

/* Appends the whole exposition to out. */
ANT_MUST_CHECK int ant_metrics_render(const struct ant_metrics *m,
                                      const struct ant_metrics_gauges *g, struct ant_buf *out);

#endif
