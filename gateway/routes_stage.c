/* Stage jobs over HTTP: admit (POST /v1/stage), status with the job token once ready (GET),
 * cancel (DELETE), and the job's files for compute nodes that do not mount scratch (GET
 * /v1/stage/{id}/files/{path} with the job token, Range supported).
 *
 * The routes find the running `struct ant_jobs` in their site (site->jobs), set by
 * ant_gw_stage_start before the server starts and cleared after it stopped. */
#include "gateway/routes_stage.h"

#include "crypto/base/log.h"
#include "crypto/token.h"
#include "gateway/api.h"
#include "gateway/metrics.h"
#include "gateway/routes.h"
#include "gateway/server.h"
#include "gateway/site.h"
#include "policy/audit.h"
#include "policy/decide.h"
#include "staging/jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Test hook (tests/integration/test_stage.sh): when this variable names a file, the first
 * resume mark (a big file's durable prefix, docs/staging.md) a stage job records in this
 * process writes "<job id> <file index> <bytes>" there (whole: written beside it, then
 * renamed) and holds that job's runner, and so its engine, until the file is removed or the
 * daemon stops. A test then stops the daemon (kill -9 or SIGTERM) at a known point: the mark
 * recorded in antenna.db, the file half written. Unset, nothing is installed. */
#define STAGE_PAUSE_ENV "ANTENNA_TEST_STAGE_PAUSE"

struct stage_pause {
    struct ant_site *site;
    const char *path; /* the environment's string */
    atomic_bool fired; /* once per process */
};
static struct stage_pause g_ant_stage_pause;

static void stage_pause_at_mark(void *arg, const char *job_id, size_t idx, uint64_t bytes)
{
    struct stage_pause *p = arg;
    char line[ANT_JOB_ID_LEN + 64], tmp[PATH_MAX];
    if (bytes == 0 || atomic_exchange(&p->fired, true)) {
        return;
    }
    int n = snprintf(line, sizeof(line), "%s %zu %llu\n", job_id, idx, (unsigned long long)bytes);
    int rc = 0;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", p->path) >= (int)sizeof(tmp)) {
        rc = -ENAMETOOLONG;
    } else {
        rc = ant_write_new_file(AT_FDCWD, tmp, 0600, line, (size_t)n);
    }
    if (rc == 0 && rename(tmp, p->path) < 0) {
        rc = -errno;
        (void)unlink(tmp);
    }
    if (rc < 0) {
        ant_log(ANT_LOG_ERROR, "stage.test_pause", "test hook: cannot write %s: %s", p->path,
                strerror(-rc));
        return;
    }
    ant_log_kv(ANT_LOG_WARN, "stage.test_pause", ((const char *[]){"job_id", job_id, NULL}),
               "test hook: paused at the resume mark of file %zu (%llu bytes) until %s is "
               "removed or the daemon stops",
               idx, (unsigned long long)bytes, p->path);
    while (access(p->path, F_OK) == 0 && !ant_jobs_is_stopping(p->site->jobs)) {
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

/* Remote stage jobs pull with [federation] connections and max_rate of antenna.conf (0: the
 * fetcher's defaults); two environment variables override them (docs/federation.md):
 * ANTENNA_FED_CONNECTIONS (transfers at once) and ANTENNA_FED_MAX_RATE (bytes/s per
 * connection, a size such as 10M: to share a link, and for the tests that stop a site in the
 * middle of a pull). */
static int fetch_opts(const struct ant_config *cfg, struct ant_fetch_opts *o, struct ant_diag *d)
{
    const char *c = getenv("ANTENNA_FED_CONNECTIONS");
    const char *m = getenv("ANTENNA_FED_MAX_RATE");
    uint64_t v = 0;
    memset(o, 0, sizeof(*o));
    o->max_conns = cfg->fed_connections;
    o->max_rate = cfg->fed_max_rate;
    if (c != NULL && c[0] != '\0') {
        if (ant_parse_u64(ant_bytes_str(c), 1, 256, &v) < 0) {
            ant_diag_set(d, "ANTENNA_FED_CONNECTIONS: '%s' is not 1..256", c);
            return -EINVAL;
        }
        o->max_conns = (unsigned)v;
    }
    if (m != NULL && m[0] != '\0') {
        if (ant_parse_size(ant_bytes_str(m), UINT64_C(1) << 40, &v) < 0) {
            ant_diag_set(d, "ANTENNA_FED_MAX_RATE: '%s' is not a size such as 10M", m);
            return -EINVAL;
        }
        o->max_rate = v;
    }
    return 0;
}

int ant_gw_stage_start(struct ant_site *site, struct ant_diag *d)
{
    struct ant_engine_opts eo;
    struct ant_fetch_opts fo;
    struct ant_jobs *jobs = NULL;
    ant_engine_opts_init(&eo);
    int rc = ant_io_engine_parse(site->cfg.io_engine, &eo.io_engine);
    if (rc < 0) {
        ant_diag_set(d, "[staging] io_engine: '%s' is not auto, uring or threads",
                     site->cfg.io_engine);
        return rc;
    }
    /* off: no O_DIRECT at all, for filesystems that take it but serve it badly (NFS scratch);
     * auto already falls back where open(O_DIRECT) is refused */
    eo.buffered_only = strcmp(site->cfg.direct_io, "off") == 0;
    eo.resume_min = site->cfg.resume_min;
    eo.resume_every = site->cfg.resume_every;
    rc = fetch_opts(&site->cfg, &fo, d);
    if (rc < 0) {
        return rc;
    }
    struct ant_jobs_conf c = {
        .dirfd = site->dirfd,
        .archive_fd = site->archive_fd,
        .scratch_fd = site->scratch_fd,
        .kx = site->keys.kx,
        .audit = site->audit,
        .site_id = site->cfg.site_id,
        .workers = site->cfg.stage_workers,
        .default_quota = site->cfg.default_scratch_quota,
        .max_jobs = site->cfg.max_stage_jobs,
        .default_ttl_s = site->cfg.default_ttl_s,
        .purge_interval_s = site->cfg.purge_interval_s,
        .engine = &eo,
        .pool = site->pool,
        .keys = &site->keys,
        .fetch = &fo,
        .fed_cache_max = site->cfg.fed_cache_max,
    };
    const char *pause = getenv(STAGE_PAUSE_ENV);
    if (pause != NULL && pause[0] != '\0') {
        ant_log(ANT_LOG_WARN, "stage.test_pause",
                "test hook: the first resume mark of a stage job holds it while %s exists", pause);
        g_ant_stage_pause.site = site;
        g_ant_stage_pause.path = pause;
        c.test_file_mark = stage_pause_at_mark;
        c.test_arg = &g_ant_stage_pause;
    }
    rc = ant_jobs_open(&c, &jobs);
    if (rc < 0) {
        ant_diag_set(d, "cannot open the stage jobs: %s%s", strerror(-rc),
                     rc == -ENOTSUP ? " (antenna.db predates stage jobs)" : "");
        return rc;
    }
    site->jobs = jobs;
    rc = ant_jobs_start(jobs);
    if (rc < 0) {
        ant_diag_set(d, "cannot start the stage workers: %s", strerror(-rc));
        ant_gw_stage_stop(site);
        return rc;
    }
    return 0;
}

void ant_gw_stage_stop(struct ant_site *site)
{
    if (site == NULL || site->jobs == NULL) {
        return;
    }
    ant_jobs_stop(site->jobs);
    ant_jobs_close(site->jobs);
    site->jobs = NULL;
}

/* The jobs of the request's site, or NULL with a 503 answered. */
static struct ant_jobs *jobs_of(struct ant_req *r)
{
    struct ant_jobs *jobs = r->site->jobs;
    if (jobs == NULL && ant_api_fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                     "staging is not running on this site") < 0) {
        ant_log(ANT_LOG_ERROR, "stage.unavailable", "cannot answer: out of memory");
    }
    return jobs;
}

/* --- POST /v1/stage --- */

static int parse_ttl(struct ant_req *r, const json_t *doc, uint64_t *ttl)
{
    const json_t *v = json_object_get(doc, "ttl");
    *ttl = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= ANT_JOB_TTL_MIN &&
        json_integer_value(v) <= ANT_JOB_TTL_MAX) {
        *ttl = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && ant_parse_duration(ant_bytes_str(json_string_value(v)),
                                                ANT_JOB_TTL_MAX, ttl) == 0 &&
        *ttl >= ANT_JOB_TTL_MIN) {
        return 0;
    }
    return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                        "ttl is seconds or a duration such as \"30m\", \"2h\", \"7d\" (at most "
                        "%d days)",
                        ANT_JOB_TTL_MAX / 86400);
}

/* The event of a remote stage's admission: as ant_api_audit, with the transfer id the peer's
 * events carry too, so that the two sites' logs join. Fails closed (503, ANT_API_DONE). */
static int remote_audit(struct ant_req *r, const char *peer, const char *ds, const char *job,
                        const char *transfer, enum ant_audit_decision decision,
                        const char *reason, const json_t *detail)
{
    char res[2 * ANT_NAME_MAX + 4];
    snprintf(res, sizeof(res), "%s:%s", peer, ds);
    struct ant_audit_event ev = {
        .request_id = r->request_id,
        .actor = r->who.id[0] ? r->who.id : NULL,
        .tenant = r->who.tenant[0] ? r->who.tenant : NULL,
        .credential = r->who.key_id[0] ? r->who.key_id : NULL,
        .action = "stage.remote",
        .resource_kind = job != NULL ? "job" : "peer_dataset",
        .resource_id = job != NULL ? job : res,
        .dataset_id = res,
        .decision = decision,
        .reason = reason,
        .transfer = transfer != NULL && transfer[0] ? transfer : NULL,
    };
    ant_metrics_decision(ant_server_metrics(r->srv), decision == ANT_AUDIT_ALLOW);
    return ant_api_audit_event(r, ev, detail, JSON_COMPACT);
}

/* The HTTP answer to a refused remote admission: the serving site's own refusals keep their
 * meaning (its 403 and 404 with its reason); what is wrong between the two sites is a 502. */
static const struct {
    int rc;
    unsigned status;
    const char *code;
} g_remote_refusals[] = {
    {-ENXIO, MHD_HTTP_NOT_FOUND, "unknown_peer"},
    {-EACCES, MHD_HTTP_FORBIDDEN, "peer_denied"},
    {-ENOENT, MHD_HTTP_NOT_FOUND, "not_found"},
    {-EPERM, MHD_HTTP_BAD_GATEWAY, "peer_refused_token"},
    {-EKEYREJECTED, MHD_HTTP_BAD_GATEWAY, "bad_manifest_signature"},
    {-EBADMSG, MHD_HTTP_BAD_GATEWAY, "bad_manifest"},
    {-EIO, MHD_HTTP_BAD_GATEWAY, "peer_unreachable"},
    {-EDQUOT, MHD_HTTP_INSUFFICIENT_STORAGE, "quota_exceeded"},
    {-EINVAL, MHD_HTTP_BAD_REQUEST, "bad_request"},
    {-E2BIG, MHD_HTTP_CONTENT_TOO_LARGE, "too_large"},
    {-ENOTSUP, MHD_HTTP_NOT_IMPLEMENTED, "unsupported"},
};

/* The error code of a refusal, as audited ("refused" for one the table does not name). */
static const char *remote_refusal_code(int rc)
{
    for (size_t i = 0; i < ANT_ARRAY_LEN(g_remote_refusals); i++) {
        if (g_remote_refusals[i].rc == rc) {
            return g_remote_refusals[i].code;
        }
    }
    return "refused";
}

/* Answers the refusal with its status, code and message; an unlisted code is returned for the
 * caller's logged 500. */
static int remote_refusal(struct ant_req *r, int rc, const char *msg)
{
    for (size_t i = 0; i < ANT_ARRAY_LEN(g_remote_refusals); i++) {
        if (g_remote_refusals[i].rc == rc) {
            return ant_api_fail(r, g_remote_refusals[i].status, g_remote_refusals[i].code, "%s",
                                msg);
        }
    }
    return rc; /* a logged 500 */
}

/* POST /v1/stage with "site": a peer's dataset. The local right is only membership of a tenant
 * (the job is the caller's, in its tenant's scratch, under its quota); whether the data may
 * come is the serving site's decision (`transfer`, residency, purpose), asked before the job is
 * recorded. */
static int stage_create_remote(struct ant_req *r, struct ant_jobs *jobs,
                               const struct ant_job_request *rq)
{
    char id[ANT_JOB_ID_LEN + 1], transfer[65] = "";
    struct ant_diag diag = {{0}};
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    int rc = ant_jobs_submit_remote(jobs, st, rq, id, transfer, &diag);
    ant_store_pool_release(r->site->pool, st);
    if (rc < 0) {
        const char *msg = ant_diag_msg(&diag, strerror(-rc));
        int arc = rc;
        if (rc != -EINVAL) {
            json_t *det = json_pack("{s:s, s:s?}", "message", msg, "purpose", rq->purpose);
            arc = remote_audit(r, rq->peer_id, rq->dataset_id, NULL, transfer, ANT_AUDIT_DENY,
                               remote_refusal_code(rc), det);
            json_decref(det);
        } else {
            arc = 0;
        }
        if (arc != 0) {
            return arc;
        }
        return remote_refusal(r, rc, msg);
    }
    struct ant_job_info info;
    rc = ant_jobs_get(jobs, id, &info);
    if (rc < 0) {
        return rc;
    }
    json_t *det = json_pack("{s:s, s:s, s:I, s:I, s:s}", "mode", ant_job_mode_name(rq->mode),
                            "purpose", rq->purpose, "files", (json_int_t)info.files_total,
                            "bytes", (json_int_t)info.bytes_total, "rule", "tenant_member");
    rc = remote_audit(r, rq->peer_id, info.dataset_id, id, transfer, ANT_AUDIT_ALLOW,
                      "admitted", det);
    json_decref(det);
    if (rc != 0) {
        /* fail closed: a job nobody can account for does not run */
        int crc = ant_jobs_cancel(jobs, id, 0);
        if (crc < 0) {
            ant_log_kv(ANT_LOG_ERROR, "stage.unaudited_job", ((const char *[]){"job_id", id, NULL}),
                       "cannot withdraw the unaudited job: %s", strerror(-crc));
        }
        return rc;
    }
    char url[64];
    snprintf(url, sizeof(url), "/v1/stage/%s", id);
    json_t *ans = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "id", id,
                            "state", ant_job_state_name(info.state), "site", info.peer_id,
                            "dataset_id", info.dataset_id, "dataset_name", info.remote_name,
                            "transfer_id", info.transfer_id, "mode",
                            ant_job_mode_name(rq->mode), "files_total",
                            (json_int_t)info.files_total, "bytes_total",
                            (json_int_t)info.bytes_total, "ttl_s", (json_int_t)info.ttl_s,
                            "status_url", url);
    if (ans == NULL) {
        return -ENOMEM;
    }
    rc = ant_api_json_take(r, MHD_HTTP_ACCEPTED, ans);
    if (rc == 0 && r->resp != NULL) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, url);
    }
    return rc;
}

int ant_route_stage_create(struct ant_req *r)
{
    static const char *const allowed[] = {"dataset", "paths",   "mode", "recipient",
                                          "ttl",     "purpose", "site", NULL};
    const char *ds = NULL, *mode_s = NULL, *recip_s = NULL, *purpose = NULL, *site = NULL;
    const char *globs[ANT_JOB_GLOBS_MAX];
    unsigned nglobs = 0;
    uint8_t recip[ANT_KEY_LEN];
    uint64_t ttl = 0;
    enum ant_job_mode mode = ANT_JOB_DECRYPT;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag diag = {{0}};
    struct ant_decision dec;
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : 0;
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "dataset", true, ANT_ID_MAX, &ds);
    }
    if (rc == 0) {
        rc = ant_api_strv(r, doc, "paths", ANT_JOB_GLOBS_MAX, ANT_JOB_GLOB_MAX, globs, &nglobs);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "mode", false, 16, &mode_s);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "recipient", false, 64, &recip_s);
    }
    if (rc == 0) {
        rc = ant_api_purpose(r, doc, &purpose);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "site", false, ANT_NAME_MAX, &site);
    }
    if (rc == 0) {
        rc = parse_ttl(r, doc, &ttl);
    }
    if (rc != 0) {
        goto out;
    }
    if (site != NULL && strcmp(site, r->site->cfg.site_id) == 0) {
        site = NULL; /* this site's own dataset: a local job */
    }
    if (mode_s != NULL && (ant_job_mode_parse(mode_s, &mode) < 0 || mode == ANT_JOB_ENCRYPT)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "mode is decrypt or reencrypt");
        goto out;
    }
    if (mode == ANT_JOB_REENCRYPT &&
        (recip_s == NULL || ant_key_b64_decode(ant_bytes_str(recip_s), recip) < 0)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "mode reencrypt needs recipient: the base64 of a 32-byte X25519 "
                          "public key");
        goto out;
    }
    if (mode == ANT_JOB_DECRYPT && recip_s != NULL) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "recipient is only for mode reencrypt");
        goto out;
    }
    /* one request for both sources: peer_id NULL is a local job (its purpose is kept: a job
     * token's reads are decided again with it) */
    struct ant_job_request rq = {
        .who = &r->who,
        .dataset_id = ds,
        .globs = globs,
        .nglobs = nglobs,
        .mode = mode,
        .recipient_pk = mode == ANT_JOB_REENCRYPT ? recip : NULL,
        .ttl_s = ttl,
        .peer_id = site,
        .purpose = purpose,
    };
    if (site != NULL) {
        rc = stage_create_remote(r, jobs, &rq);
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    /* Decrypting into this site's scratch is not plaintext leaving the site (decide.h rule 6):
     * the plaintext stays on this site's storage, readable by the job's token only. */
    struct ant_decide_ctx ctx = {.purpose = purpose, .plaintext = false};
    rc = ant_api_decide(r, st, ANT_ACT_STAGE, ds, "dataset", ds, &ctx, &dec);
    if (rc != 0) {
        goto out;
    }
    rc = ant_jobs_submit(jobs, st, &rq, id, &diag);
    switch (rc) {
    case 0:
        break;
    case -EDQUOT:
        rc = ant_api_fail(r, MHD_HTTP_INSUFFICIENT_STORAGE, "quota_exceeded", "%s",
                          ant_diag_msg(&diag, "scratch quota exceeded"));
        goto out;
    case -EINVAL:
    case -ENOENT:
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, rc == -ENOENT ? "no_files" : "bad_request",
                          "%s", ant_diag_msg(&diag, "bad stage request"));
        goto out;
    case -E2BIG:
        rc = ant_api_fail(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "%s",
                          ant_diag_msg(&diag, "too many files"));
        goto out;
    default:
        goto out;
    }
    struct ant_job_info info;
    rc = ant_jobs_get(jobs, id, &info);
    if (rc < 0) {
        goto out;
    }
    char url[64];
    snprintf(url, sizeof(url), "/v1/stage/%s", id);
    json_t *ans = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "id", id, "state",
                            ant_job_state_name(info.state), "dataset_id", ds, "mode",
                            ant_job_mode_name(mode), "files_total", (json_int_t)info.files_total,
                            "bytes_total", (json_int_t)info.bytes_total, "ttl_s",
                            (json_int_t)info.ttl_s, "status_url", url);
    if (ans == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = ant_api_json_take(r, MHD_HTTP_ACCEPTED, ans);
    if (rc == 0 && r->resp != NULL) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, url);
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

/* --- POST /v1/stage-out --- */

int ant_route_stage_out(struct ant_req *r)
{
    static const char *const allowed[] = {"path", "dataset", NULL};
    const char *src = NULL, *ds = NULL;
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_diag diag = {{0}};
    struct ant_decision dec;
    struct ant_store *st = NULL;
    json_t *doc = NULL;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : 0;
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "path", true, ANT_STAGE_PATH_MAX, &src);
    }
    if (rc == 0) {
        rc = ant_api_str(r, doc, "dataset", true, ANT_ID_MAX, &ds);
    }
    if (rc != 0) {
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    /* adding files to a dataset is `write`, which only a draft allows (decide.h rule 4) */
    rc = ant_api_decide(r, st, ANT_ACT_WRITE, ds, "dataset", ds, NULL, &dec);
    if (rc != 0) {
        goto out;
    }
    struct ant_job_out_request rq = {.who = &r->who, .source = src, .dataset_id = ds};
    rc = ant_jobs_submit_out(jobs, st, &rq, id, &diag);
    if (rc == -EINVAL || rc == -ENOENT || rc == -EEXIST || rc == -E2BIG) {
        unsigned status = rc == -EEXIST   ? MHD_HTTP_CONFLICT
                          : rc == -E2BIG ? MHD_HTTP_CONTENT_TOO_LARGE
                                         : MHD_HTTP_BAD_REQUEST;
        rc = ant_api_fail(r, status, NULL, "%s", ant_diag_msg(&diag, "bad stage-out request"));
        goto out;
    }
    if (rc < 0) {
        goto out;
    }
    char url[64];
    snprintf(url, sizeof(url), "/v1/stage/%s", id);
    json_t *ans = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "state", "queued",
                            "dataset_id", ds, "path", src, "mode", "encrypt", "status_url", url);
    rc = ans != NULL ? ant_api_json_take(r, MHD_HTTP_ACCEPTED, ans) : -ENOMEM;
    if (rc == 0 && r->resp != NULL) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, url);
    }
out:
    if (st != NULL) {
        ant_store_pool_release(r->site->pool, st);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

/* --- GET /v1/stage --- */

int ant_route_stage_list(struct ant_req *r)
{
    json_t *list = NULL;
    uint64_t limit = 100;
    const char *q = ant_req_query(r, "limit");
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : 0;
    if (rc == 0 && q != NULL && ant_parse_u64(ant_bytes_str(q), 1, 1000, &limit) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "limit is 1..1000");
    }
    if (rc == 0) {
        /* one's own jobs; an admin sees every tenant's */
        rc = ant_api_audit(r, "stage.list", "job", NULL, NULL, ANT_AUDIT_ALLOW,
                           admin ? "role_admin" : "own_jobs", NULL);
    }
    if (rc == 0) {
        rc = ant_jobs_list_json(jobs, admin ? NULL : r->who.tenant, admin ? NULL : r->who.id,
                                (unsigned)limit, &list);
    }
    if (rc == 0) {
        rc = ant_api_list_take(r, "jobs", list);
    }
    return ant_api_end(rc);
}

/* --- GET and DELETE /v1/stage/{id} --- */

/* The job of the route for its owner (an admin may see and cancel any). Another caller gets the
 * same 404 as for a job that does not exist; both are audited. */
static int job_for_caller(struct ant_req *r, struct ant_jobs *jobs, const char *action,
                          struct ant_job_info *info, bool *owner)
{
    char id[ANT_JOB_ID_LEN + 1];
    int rc = ant_api_param(r, 0, id, sizeof(id));
    rc = rc < 0 ? rc : ant_jobs_get(jobs, id, info);
    if (rc == -ENOENT) {
        rc = ant_api_audit(r, action, "job", NULL, NULL, ANT_AUDIT_DENY, "job_not_found", NULL);
        return rc != 0 ? rc : ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such stage job");
    }
    if (rc < 0) {
        return rc;
    }
    *owner = strcmp(info->principal, r->who.id) == 0 && strcmp(info->tenant, r->who.tenant) == 0;
    bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
    if (!*owner && !admin) {
        rc = ant_api_audit(r, action, "job", info->id, info->dataset_id, ANT_AUDIT_DENY,
                           "not_owner", NULL);
        return rc != 0 ? rc : ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such stage job");
    }
    return ant_api_audit(r, action, "job", info->id, info->dataset_id, ANT_AUDIT_ALLOW,
                         *owner ? "job_owner" : "role_admin", NULL);
}

int ant_route_stage_show(struct ant_req *r)
{
    struct ant_job_info info;
    struct ant_buf tok = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    json_t *doc = NULL;
    bool owner = false;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : job_for_caller(r, jobs, "stage.status", &info, &owner);
    if (rc != 0) {
        goto out;
    }
    int64_t now = ant_now_unix();
    rc = ant_jobs_status_json(jobs, info.id, now, &doc);
    if (rc < 0) {
        goto out;
    }
    const char *state = json_string_value(json_object_get(doc, "state"));
    char files_url[64];
    snprintf(files_url, sizeof(files_url), "/v1/stage/%s/files/", info.id);
    if (owner && state != NULL && strcmp(state, "ready") == 0 && info.expires > now &&
        info.mode != ANT_JOB_ENCRYPT) {
        /* The token reads this job's files and nothing else, and dies with the job (or after
         * the longest lifetime a job token may have; a later GET gives a fresh one). */
        int64_t exp = info.expires;
        if (exp - now > ANT_TOKEN_JOB_LIFETIME_MAX) {
            exp = now + ANT_TOKEN_JOB_LIFETIME_MAX;
        }
        struct ant_job_token t = {.iat = now, .exp = exp};
        snprintf(t.site, sizeof(t.site), "%s", r->site->cfg.site_id);
        snprintf(t.principal, sizeof(t.principal), "%s", info.principal);
        snprintf(t.job_id, sizeof(t.job_id), "%s", info.id);
        rc = ant_token_job_sign(r->site->keys.sign, &t, &tok);
        if (rc < 0) {
            goto out;
        }
        char when[32];
        ant_fmt_time(exp, when);
        json_object_set_new(doc, "token", json_string((const char *)tok.p));
        json_object_set_new(doc, "token_expires", json_string(when));
        json_object_set_new(doc, "files_url", json_string(files_url));
        /* where the output is on this site's filesystem, for jobs that mount scratch */
        char link[64], dir[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", r->site->scratch_fd);
        ssize_t dl = readlink(link, dir, sizeof(dir) - 1);
        if (dl > 0) {
            dir[dl] = '\0';
            json_t *abs = json_sprintf("%s/%s/%s", dir, info.tenant, info.id);
            if (abs != NULL) {
                json_object_set_new(doc, "scratch_dir", abs);
            }
        }
    }
    rc = ant_api_json_take(r, MHD_HTTP_OK, doc);
    doc = NULL;
out:
    json_decref(doc);
    ant_buf_wipe_fini(&tok);
    return ant_api_end(rc);
}

int ant_route_stage_cancel(struct ant_req *r)
{
    struct ant_job_info info;
    bool owner = false;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : job_for_caller(r, jobs, "stage.cancel", &info, &owner);
    if (rc != 0) {
        return ant_api_end(rc);
    }
    rc = ant_jobs_cancel(jobs, info.id, 0);
    if (rc == -EALREADY) {
        if (ant_jobs_get(jobs, info.id, &info) < 0) {
            info.state = ANT_JOB_CANCELLED;
        }
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "conflict", "the job is already %s",
                          ant_job_state_name(info.state));
    } else if (rc == 0) {
        json_t *ans = json_pack("{s:s, s:s}", "id", info.id, "state", "cancelled");
        rc = ans != NULL ? ant_api_json_take(r, MHD_HTTP_OK, ans) : -ENOMEM;
    }
    return ant_api_end(rc);
}

/* --- GET /v1/stage/{id}/files/{path} with the job token --- */

static int token_fail(struct ant_req *r, const char *why)
{
    ant_log_kv(ANT_LOG_DEBUG, "stage.token_rejected",
               ((const char *[]){"request_id", r->request_id, NULL}), "%s", why);
    int rc = ant_api_fail(r, MHD_HTTP_UNAUTHORIZED, NULL,
                          "a valid job token for this job is required (Authorization: Bearer; "
                          "GET /v1/stage/{id} gives one to the job's owner once it is ready)");
    if (r->resp != NULL) {
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"antenna\", error=\"invalid_token\"");
    }
    return rc;
}

/* Authenticates a request of the job-token routes: the bearer must be a job token of this site
 * for the job the route names, whose owner still owns it. Fills *info and the request's who
 * (the token's principal, credential "job:<id>") for the audit. 0, ANT_API_DONE (401 or 503
 * answered) or a negative errno. */
static int job_token_auth(struct ant_req *r, struct ant_jobs *jobs, struct ant_job_info *info)
{
    char id[ANT_JOB_ID_LEN + 1];
    struct ant_job_token t;
    struct ant_diag diag = {{0}};
    const char *h = ant_req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return token_fail(r, "no bearer token");
    }
    const char *tok = h + 7;
    while (*tok == ' ') {
        tok++;
    }
    int rc = ant_token_job_verify(ant_bytes_str(tok), ant_signkey_public(r->site->keys.sign),
                                  r->site->cfg.site_id, 0, &t, &diag);
    if (rc == -EKEYREJECTED || rc == -EKEYEXPIRED || rc == -E2BIG) {
        return token_fail(r, ant_diag_msg(&diag, "token rejected"));
    }
    if (rc < 0) {
        return rc;
    }
    if (ant_api_param(r, 0, id, sizeof(id)) < 0 || strcmp(id, t.job_id) != 0) {
        return token_fail(r, "token of another job");
    }
    if (strlen(t.principal) > ANT_NAME_MAX) {
        return token_fail(r, "principal name too long");
    }
    /* from here the request is the token's: its owner, for the audit event and the log */
    memcpy(r->who.id, t.principal, strlen(t.principal) + 1);
    snprintf(r->who.key_id, sizeof(r->who.key_id), "job:%s", id);
    snprintf(r->principal, sizeof(r->principal), "%s (job %s)", r->who.id, id);
    rc = ant_jobs_get(jobs, id, info);
    if (rc == -ENOENT || (rc == 0 && strcmp(info->principal, t.principal) != 0)) {
        return token_fail(r, "no such job for this token");
    }
    if (rc < 0) {
        return rc;
    }
    /* a principal disabled since (ant_store_principal_disable) loses its job tokens at once */
    struct ant_principal p;
    struct ant_decision dec = {0};
    struct ant_store *st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_principal_get(st, t.principal, &p);
    /* The token carries a decision taken at admission: a grant revoked or expired since, a
     * role taken away, a dataset withdrawn ends its reads too, as it ends the owner's other
     * requests (decided again here, not cached: a revocation takes effect at once). A remote
     * job's files came under the peer's decision, a stage-out writes: neither is re-decided. */
    bool local = rc == 0 && info->peer_id[0] == '\0' && info->mode != ANT_JOB_ENCRYPT;
    if (local) {
        struct ant_decide_ctx ctx = {.purpose = info->purpose[0] != '\0' ? info->purpose : NULL,
                                     .plaintext = false};
        rc = ant_decide(st, &p, ANT_ACT_STAGE, info->dataset_id, &ctx, &dec);
        if (rc >= 0) {
            rc = 0;
        }
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc == -ENOENT || (rc == 0 && strcmp(p.tenant, info->tenant) != 0)) {
        return token_fail(r, "the token's principal is disabled or gone");
    }
    if (rc < 0) {
        return rc;
    }
    snprintf(r->who.tenant, sizeof(r->who.tenant), "%s", info->tenant);
    if (local && !dec.allow) {
        rc = ant_api_audit(r, "stage.read", "job", id, info->dataset_id, ANT_AUDIT_DENY,
                           dec.reason, NULL);
        if (rc == 0) {
            rc = ant_api_fail(r, MHD_HTTP_FORBIDDEN, dec.reason,
                              "the job's access to dataset %s has ended: %s", info->dataset_id,
                              dec.message);
        }
        return rc != 0 ? rc : ANT_API_DONE;
    }
    /* the token acts for its owner: the same bucket as the owner's API keys */
    char key[2 * ANT_NAME_MAX + 2];
    snprintf(key, sizeof(key), "%s@%s", r->who.id, r->who.tenant);
    return ant_req_rate_limit(r, key) < 0 ? ANT_API_DONE : 0;
}

/* Whether the job's output may be read now: ready, and its time to live not over. The purger
 * marks a job expired within one pass of its expiry, and a job token is accepted a little past
 * its own expiry (clock skew): neither may stretch the job's lifetime. */
static bool job_readable(const struct ant_job_info *info)
{
    return info->state == ANT_JOB_READY && (info->expires == 0 || info->expires > ant_now_unix());
}

/* The output of a job that is not readable cannot be read: 404, or 410 once expired. */
static int not_ready(struct ant_req *r, const struct ant_job_info *info, const char *what)
{
    bool gone = info->state == ANT_JOB_EXPIRED || info->state == ANT_JOB_READY;
    int rc = ant_api_audit(r, "stage.read", "job", what, info->dataset_id, ANT_AUDIT_DENY,
                           gone ? "job_expired" : "job_not_ready", NULL);
    if (rc == 0) {
        rc = ant_api_fail(r, gone ? MHD_HTTP_GONE : MHD_HTTP_NOT_FOUND, NULL,
                          "the job's output is not available: the job is %s",
                          gone ? "expired" : ant_job_state_name(info->state));
    }
    return rc;
}

int ant_route_stage_files(struct ant_req *r)
{
    struct ant_job_info info;
    json_t *list = NULL;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : job_token_auth(r, jobs, &info);
    if (rc == 0 && !job_readable(&info)) {
        rc = not_ready(r, &info, info.id);
    }
    if (rc == 0) {
        rc = ant_api_audit(r, "stage.list", "job", info.id, info.dataset_id, ANT_AUDIT_ALLOW,
                           "job_token", NULL);
    }
    if (rc == 0) {
        rc = ant_jobs_manifest_json(jobs, info.id, &list);
    }
    if (rc == 0) {
        json_t *doc = json_pack("{s:s, s:s, s:o}", "id", info.id, "mode",
                                ant_job_mode_name(info.mode), "files", list);
        rc = doc != NULL ? ant_api_json_take(r, MHD_HTTP_OK, doc) : -ENOMEM;
    }
    return ant_api_end(rc);
}

int ant_route_stage_file(struct ant_req *r)
{
    char path[ANT_STAGE_PATH_MAX + 1];
    struct ant_job_info info;
    int dirfd = -1, fd = -1;
    struct MHD_Response *resp = NULL;
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : job_token_auth(r, jobs, &info);
    if (rc != 0) {
        goto out;
    }
    struct ant_bytes p = r->params[1];
    if (r->nparams < 2 || p.len > ANT_STAGE_PATH_MAX || ant_stage_path_check(p) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such file in this job");
        goto out;
    }
    memcpy(path, p.p, p.len);
    path[p.len] = '\0';
    if (!job_readable(&info)) {
        rc = not_ready(r, &info, path);
        goto out;
    }
    rc = ant_jobs_open_output(jobs, &info, &dirfd);
    /* Scratch is shared with the job's users, who may plant anything in the job's folder:
     * O_NONBLOCK so that a FIFO does not hold this server thread waiting for a writer (a few
     * such requests would stop the gateway); only a regular file with one link is served (a
     * hard link to a file elsewhere is not the job's output). */
    fd = rc < 0 ? rc
                : ant_stage_openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1 ||
                    fcntl(fd, F_SETFL, 0) < 0)) {
        ant_close(fd);
        fd = -ENOENT;
    }
    if (fd < 0) {
        fd = -1;
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such file in this job");
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size, off = 0, len = size, last = 0;
    int range = ant_http_range(ant_req_header(r, MHD_HTTP_HEADER_RANGE), size, &off, &last);
    if (range == 1) {
        len = last - off + 1;
    } else {
        off = 0;
    }
    json_t *det = json_pack("{s:I, s:I}", "offset", (json_int_t)off, "length", (json_int_t)len);
    /* fail closed: nothing is sent unless its event is durable */
    rc = ant_api_audit(r, "stage.read", "file", path, info.dataset_id,
                       range == -ERANGE ? ANT_AUDIT_DENY : ANT_AUDIT_ALLOW,
                       range == -ERANGE ? "range_not_satisfiable" : "job_token", det);
    json_decref(det);
    if (rc != 0) {
        goto out;
    }
    if (range == -ERANGE) {
        rc = ant_api_fail(r, MHD_HTTP_RANGE_NOT_SATISFIABLE, NULL,
                          "the range is outside the file (%llu bytes)",
                          (unsigned long long)size);
        if (r->resp != NULL) {
            char cr[64];
            snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
            MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        }
        goto out;
    }
    if (len == 0) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        /* the response owns fd from here and closes it once sent */
        resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
        if (resp != NULL) {
            fd = -1;
        }
    }
    if (resp == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (range == 1) {
        char cr[96];
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1), (unsigned long long)size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    ant_req_respond(r, range == 1 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
    r->bytes_out = len;
    rc = 0;
out:
    ant_close(fd);
    ant_close(dirfd);
    return ant_api_end(rc);
}

/* --- scratch quotas: PUT (admin) and GET (admin or the tenant's members)
 *     /v1/tenants/{name}/scratch-quota --- */

static int quota_answer(struct ant_req *r, struct ant_jobs *jobs, const char *tenant,
                        unsigned status)
{
    uint64_t quota = 0, used = 0;
    int rc = ant_jobs_quota_get(jobs, tenant, &quota, &used);
    if (rc < 0) {
        return rc;
    }
    return ant_api_json_take(r, status,
                             json_pack("{s:s, s:I, s:I}", "tenant", tenant, "quota",
                                       (json_int_t)quota, "used", (json_int_t)used));
}

int ant_route_quota_put(struct ant_req *r)
{
    static const char *const allowed[] = {"bytes", NULL};
    char tenant[ANT_NAME_MAX + 1];
    struct ant_jobs *jobs = jobs_of(r);
    json_t *doc = NULL;
    int64_t bytes = 0;
    bool has = false;
    int rc = jobs == NULL ? ANT_API_DONE : ant_api_param(r, 0, tenant, sizeof(tenant));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such tenant");
    }
    if (rc == 0) {
        rc = ant_api_decide_site(r, ANT_ACT_ADMIN, NULL, "admin.quota.set", "tenant", tenant);
    }
    if (rc == 0) {
        rc = ant_api_body(r, allowed, false, &doc);
    }
    if (rc == 0) {
        /* bytes: a number, or a size such as "500G"; 0 means no limit */
        const json_t *b = json_object_get(doc, "bytes");
        uint64_t v;
        if (json_is_string(b)) {
            if (ant_parse_size(ant_bytes_str(json_string_value(b)), INT64_MAX, &v) < 0) {
                rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                                  "\"bytes\" must be a number or a size such as 500G");
            } else {
                bytes = (int64_t)v;
                has = true;
            }
        } else {
            rc = ant_api_int(r, doc, "bytes", 0, INT64_MAX, &has, &bytes);
        }
        if (rc == 0 && !has) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request", "\"bytes\" is required");
        }
    }
    if (rc == 0) {
        rc = ant_jobs_quota_set(jobs, tenant, (uint64_t)bytes);
        if (rc == -ENOENT || rc == -EINVAL) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such tenant");
        }
    }
    if (rc == 0) {
        rc = quota_answer(r, jobs, tenant, MHD_HTTP_OK);
    }
    json_decref(doc);
    return ant_api_end(rc);
}

int ant_route_quota_get(struct ant_req *r)
{
    char tenant[ANT_NAME_MAX + 1];
    struct ant_jobs *jobs = jobs_of(r);
    int rc = jobs == NULL ? ANT_API_DONE : ant_api_param(r, 0, tenant, sizeof(tenant));
    if (rc < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such tenant");
    }
    if (rc == 0) {
        bool admin = (r->who.roles & ANT_ROLE_ADMIN) != 0;
        bool member = r->who.tenant[0] != '\0' && strcmp(r->who.tenant, tenant) == 0;
        rc = ant_api_audit(r, "stage.quota.show", "tenant", tenant, NULL,
                           admin || member ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
                           admin ? "role_admin" : member ? "member" : "not_found", NULL);
        if (rc == 0 && !admin && !member) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such tenant");
        }
    }
    if (rc == 0) {
        rc = quota_answer(r, jobs, tenant, MHD_HTTP_OK);
    }
    return ant_api_end(rc);
}
