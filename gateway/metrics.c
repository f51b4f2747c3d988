/* Prometheus counters; see metrics.h. */
#include "gateway/metrics.h"

#include "ant_version.h"
#include "gateway/routes.h"

#include <stdatomic.h>
#include <stdlib.h>

/* The statuses antenna answers with; anything else is counted under "other". */
static const unsigned k_statuses[] = {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 409,
                                      412, 413, 416, 422, 429, 431, 500, 503, 507};
#define NSTATUS (ANT_ARRAY_LEN(k_statuses) + 1)

/* Request-duration histogram buckets, seconds. */
static const double k_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5};
#define NBUCKET ANT_ARRAY_LEN(k_buckets)

struct route_counters {
    atomic_uint_fast64_t by_status[NSTATUS];
    atomic_uint_fast64_t bytes_in;
    atomic_uint_fast64_t bytes_out;
    atomic_uint_fast64_t dur_bucket[NBUCKET]; /* non-cumulative; summed when rendered */
    atomic_uint_fast64_t dur_count;
    atomic_uint_fast64_t dur_sum_us;
};

struct ant_metrics {
    size_t nroutes;
    atomic_uint_fast64_t decisions[2]; /* deny, allow */
    struct route_counters routes[];    /* nroutes + 1: the last is "no route" */
};

int ant_metrics_new(size_t nroutes, struct ant_metrics **out)
{
    struct ant_metrics *m =
        calloc(1, sizeof(*m) + (nroutes + 1) * sizeof(struct route_counters));
    if (m == NULL) {
        return -ENOMEM;
    }
    m->nroutes = nroutes;
    *out = m;
    return 0;
}

void ant_metrics_free(struct ant_metrics *m)
{
    free(m);
}

static size_t status_index(unsigned status)
{
    for (size_t i = 0; i < ANT_ARRAY_LEN(k_statuses); i++) {
        if (k_statuses[i] == status) {
            return i;
        }
    }
    return NSTATUS - 1;
}

void ant_metrics_request(struct ant_metrics *m, size_t route, unsigned status, uint64_t bytes_in,
                         uint64_t bytes_out, int64_t duration_ns)
{
    if (m == NULL) {
        return;
    }
    struct route_counters *c = &m->routes[route < m->nroutes ? route : m->nroutes];
    atomic_fetch_add_explicit(&c->by_status[status_index(status)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes_in, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes_out, bytes_out, memory_order_relaxed);
    double s = (double)duration_ns / 1e9;
    for (size_t i = 0; i < NBUCKET; i++) {
        if (s <= k_buckets[i]) {
            atomic_fetch_add_explicit(&c->dur_bucket[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&c->dur_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->dur_sum_us, (uint64_t)(duration_ns / 1000),
                              memory_order_relaxed);
}

void ant_metrics_decision(struct ant_metrics *m, bool allow)
{
    if (m != NULL) {
        atomic_fetch_add_explicit(&m->decisions[allow ? 1 : 0], 1, memory_order_relaxed);
    }
}

static uint64_t ld(const atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static const char *route_name(const struct ant_metrics *m, size_t i)
{
    return i < m->nroutes ? g_ant_routes[i].name : "none";
}

int ant_metrics_render(const struct ant_metrics *m, const struct ant_metrics_gauges *g,
                       struct ant_buf *out)
{
    int rc = ant_buf_printf(out,
                            "# HELP antenna_build_info Build information.\n"
                            "# TYPE antenna_build_info gauge\n"
                            "antenna_build_info{version=\"%s\"} 1\n"
                            "# HELP antenna_http_requests_total HTTP requests by route and status.\n"
                            "# TYPE antenna_http_requests_total counter\n",
                            ANT_VERSION);
    for (size_t i = 0; rc == 0 && i <= m->nroutes; i++) {
        for (size_t j = 0; rc == 0 && j < NSTATUS; j++) {
            uint64_t v = ld(&m->routes[i].by_status[j]);
            if (v == 0) {
                continue;
            }
            char st[8];
            if (j < NSTATUS - 1) {
                snprintf(st, sizeof(st), "%u", k_statuses[j]);
            } else {
                snprintf(st, sizeof(st), "other");
            }
            rc = ant_buf_printf(out,
                                "antenna_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                                route_name(m, i), st, (unsigned long long)v);
        }
    }
    static const char *const dir_name[2] = {"received", "sent"};
    for (int dir = 0; rc == 0 && dir < 2; dir++) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_http_bytes_%s_total Body bytes %s, by route.\n"
                            "# TYPE antenna_http_bytes_%s_total counter\n",
                            dir_name[dir], dir_name[dir], dir_name[dir]);
        for (size_t i = 0; rc == 0 && i <= m->nroutes; i++) {
            uint64_t v = ld(dir == 0 ? &m->routes[i].bytes_in : &m->routes[i].bytes_out);
            if (v != 0) {
                rc = ant_buf_printf(out, "antenna_http_bytes_%s_total{route=\"%s\"} %llu\n",
                                    dir_name[dir], route_name(m, i), (unsigned long long)v);
            }
        }
    }
    if (rc == 0) {
        rc = ant_buf_printf(out, "# HELP antenna_http_request_duration_seconds Time to answer.\n"
                                 "# TYPE antenna_http_request_duration_seconds histogram\n");
    }
    for (size_t i = 0; rc == 0 && i <= m->nroutes; i++) {
        uint64_t count = ld(&m->routes[i].dur_count);
        if (count == 0) {
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; rc == 0 && b < NBUCKET; b++) {
            cum += ld(&m->routes[i].dur_bucket[b]);
            rc = ant_buf_printf(out,
                                "antenna_http_request_duration_seconds_bucket{route=\"%s\","
                                "le=\"%g\"} %llu\n",
                                route_name(m, i), k_buckets[b], (unsigned long long)cum);
        }
        if (rc == 0) {
            rc = ant_buf_printf(
                out,
                "antenna_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                "antenna_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                "antenna_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                route_name(m, i), (unsigned long long)count, route_name(m, i),
                (double)ld(&m->routes[i].dur_sum_us) / 1e6, route_name(m, i),
                (unsigned long long)count);
        }
    }
    if (rc == 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_policy_decisions_total Policy decisions by outcome.\n"
                            "# TYPE antenna_policy_decisions_total counter\n"
                            "antenna_policy_decisions_total{decision=\"allow\"} %llu\n"
                            "antenna_policy_decisions_total{decision=\"deny\"} %llu\n"
                            "# HELP antenna_http_requests_in_flight Requests being served.\n"
                            "# TYPE antenna_http_requests_in_flight gauge\n"
                            "antenna_http_requests_in_flight %u\n",
                            (unsigned long long)ld(&m->decisions[1]),
                            (unsigned long long)ld(&m->decisions[0]), g->inflight);
    }
    if (rc == 0 && g->audit_queue_depth >= 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_audit_queue_depth Audit events waiting to be durable.\n"
                            "# TYPE antenna_audit_queue_depth gauge\n"
                            "antenna_audit_queue_depth %lld\n",
                            (long long)g->audit_queue_depth);
    }
    if (rc == 0 && g->audit_commit_seconds >= 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_audit_commit_seconds Mean duration of recent audit "
                            "group commits.\n"
                            "# TYPE antenna_audit_commit_seconds gauge\n"
                            "antenna_audit_commit_seconds %.6f\n"
                            "# HELP antenna_audit_commits_total Audit group commits.\n"
                            "# TYPE antenna_audit_commits_total counter\n"
                            "antenna_audit_commits_total %llu\n",
                            g->audit_commit_seconds, (unsigned long long)g->audit_commits);
    }
    /* An event is durable after its group's commit and the next fdatasync of the WAL: the two
     * gauges together are the latency a held answer waits for. */
    if (rc == 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_audit_failed 1 once an fdatasync of the audit log "
                            "failed: audited requests get 503 until the daemon restarts.\n"
                            "# TYPE antenna_audit_failed gauge\n"
                            "antenna_audit_failed %d\n",
                            g->audit_failed ? 1 : 0);
    }
    if (rc == 0 && g->audit_sync_seconds >= 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_audit_sync_seconds Mean duration of recent fdatasyncs "
                            "of the audit log.\n"
                            "# TYPE antenna_audit_sync_seconds gauge\n"
                            "antenna_audit_sync_seconds %.6f\n"
                            "# HELP antenna_audit_syncs_total fdatasyncs of the audit log.\n"
                            "# TYPE antenna_audit_syncs_total counter\n"
                            "antenna_audit_syncs_total %llu\n",
                            g->audit_sync_seconds, (unsigned long long)g->audit_syncs);
    }
    if (rc == 0 && g->fed_cache_bytes >= 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_fed_cache_bytes Bytes of peers' copies in the archive "
                            "cache (archive/fed), as its rows add them up.\n"
                            "# TYPE antenna_fed_cache_bytes gauge\n"
                            "antenna_fed_cache_bytes %lld\n",
                            (long long)g->fed_cache_bytes);
    }
    /* evictions of another process (`antenna admin peer pull`) show in the bytes only */
    if (rc == 0) {
        rc = ant_buf_printf(out,
                            "# HELP antenna_fed_cache_max_bytes The archive cache's limit, "
                            "[federation] cache_max (0: no limit).\n"
                            "# TYPE antenna_fed_cache_max_bytes gauge\n"
                            "antenna_fed_cache_max_bytes %llu\n"
                            "# HELP antenna_fed_cache_evicted_copies_total Cached copies evicted "
                            "from the archive cache by this daemon since it started.\n"
                            "# TYPE antenna_fed_cache_evicted_copies_total counter\n"
                            "antenna_fed_cache_evicted_copies_total %llu\n"
                            "# HELP antenna_fed_cache_evicted_bytes_total Bytes of the copies "
                            "evicted from the archive cache by this daemon since it started.\n"
                            "# TYPE antenna_fed_cache_evicted_bytes_total counter\n"
                            "antenna_fed_cache_evicted_bytes_total %llu\n",
                            (unsigned long long)g->fed_cache_max,
                            (unsigned long long)g->fed_evicted_files,
                            (unsigned long long)g->fed_evicted_bytes);
    }
    return rc;
}
