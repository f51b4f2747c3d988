/* GET /v1/health and GET /v1/site: public, so peers and load balancers can reach them.
 * GET /metrics: for admins. */
#include "ant_version.h"
#include "gateway/routes.h"
#include "gateway/metrics.h"
#include "gateway/server.h"
#include "gateway/site.h"
#include "policy/audit.h"
#include "policy/peers.h"
#include "staging/jobs.h"

#include <stdlib.h>

/* GET /v1/health: 200 {"status":"ok"}, or 503 {"status":"audit_failed"} once an fdatasync of
 * the audit log failed, when every audited request is refused until the daemon restarts (a
 * load balancer then takes the site out instead of sending it requests that all fail). */
int ant_route_health(struct ant_req *r)
{
    struct ant_audit_stats as;
    ant_audit_stats(r->site->audit, &as);
    bool failed = as.failed < 0;
    json_t *doc = failed ? json_pack("{s:s, s:s, s:s}", "status", "audit_failed", "message",
                                     "the audit log cannot be made durable; restart the daemon "
                                     "once the disk is fixed",
                                     "version", ANT_VERSION)
                         : json_pack("{s:s, s:s}", "status", "ok", "version", ANT_VERSION);
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, failed ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, doc);
    json_decref(doc);
    return rc;
}

int ant_route_site(struct ant_req *r)
{
    const struct ant_site *s = r->site;
    json_t *doc = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s}", "id", s->cfg.site_id, "region",
                            s->cfg.region, "public_keys", "x25519", s->x25519_b64, "ed25519",
                            s->ed25519_b64, "tls_cert_sha256", s->cert_sha256, "version",
                            ANT_VERSION);
    if (doc == NULL) {
        return -ENOMEM;
    }
    int rc = ant_req_json(r, MHD_HTTP_OK, doc);
    json_decref(doc);
    return rc;
}

/* GET /metrics: Prometheus text format, for the site's admins (a scraper gets an admin key). */
int ant_route_metrics(struct ant_req *r)
{
    if ((r->who.roles & ANT_ROLE_ADMIN) == 0) {
        return ant_req_error(r, MHD_HTTP_FORBIDDEN, NULL, "metrics are for site admins");
    }
    struct ant_buf out;
    ant_buf_init(&out, 4u << 20);
    struct ant_audit_stats as;
    ant_audit_stats(r->site->audit, &as);
    struct ant_metrics_gauges g = {
        .inflight = ant_server_inflight(r->srv),
        .audit_queue_depth = as.queue_depth,
        .audit_commit_seconds = as.commit_seconds,
        .audit_commits = as.commits,
        .audit_sync_seconds = as.sync_seconds,
        .audit_syncs = as.syncs,
        .audit_failed = as.failed < 0,
        .fed_cache_bytes = -1,
        .fed_cache_max = r->site->cfg.fed_cache_max,
    };
    uint64_t cached = 0;
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    if (ant_fed_cache_bytes(st, &cached) == 0) {
        g.fed_cache_bytes = cached > INT64_MAX ? INT64_MAX : (int64_t)cached;
    }
    ant_store_pool_release(r->site->pool, st);
    if (r->site->jobs != NULL) {
        struct ant_jobs_fed_stats fs;
        ant_jobs_fed_stats(r->site->jobs, &fs);
        g.fed_evicted_files = fs.evicted_files;
        g.fed_evicted_bytes = fs.evicted_bytes;
    }
    int rc = ant_metrics_render(ant_server_metrics(r->srv), &g, &out);
    if (rc == 0) {
        size_t len;
        uint8_t *p = ant_buf_take(&out, &len);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL) {
            free(p);
            rc = -ENOMEM;
        } else {
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    "text/plain; version=0.0.4; charset=utf-8");
            ant_req_respond(r, MHD_HTTP_OK, resp);
            r->bytes_out = len;
        }
    }
    ant_buf_fini(&out);
    return rc;
}
