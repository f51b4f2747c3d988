/* policy_bench: decisions/s over a large catalog; durable audit events/s with 1 and 64
 * writers; chain verification speed; a filtered audit query over a large log.
 *
 *   policy_bench [--dir DIR] [--tenants N] [--datasets N] [--grants N] [--events N]
 *                [--seconds S] [--only decisions|audit]
 *
 * With --dir naming a folder that already holds antenna.db, the catalog is reused as it is. *
 * Defaults: 1,000 tenants, 100,000 datasets, 1,000,000 grants, 1,000,000 audit events, 2 s per
 * timed phase. The catalog is filled with SQL (recursive CTEs), not through the API, so that
 * building it takes seconds. Prints one line per measurement. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "policy/audit.h"
#include "policy/decide.h"
#include "policy/store.h"

static long g_tenants = 1000, g_datasets = 100000, g_grants = 1000000, g_events = 1000000;
static double g_seconds = 2.0;
static bool g_audit = true, g_decisions = true;

static double now_s(void)
{
    return (double)ant_mono_ns() / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "policy_bench: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "policy_bench: sql: %s\n", err);
        exit(1);
    }
}

/* Tenants t0.., 10 principals each (p0.. ; every tenth an owner, the others readers), datasets
 * ds_0.. spread over the tenants (published, internal, region EU-MD, half with DUO HMB), and
 * grants to random principals (read/stage/transfer; some with purpose HMB, some expired, some
 * revoked). */
static void fill_catalog(const char *dir)
{
    char path[4096], sql[2048];
    sqlite3 *db = NULL;
    long nprin = g_tenants * 10;
    snprintf(path, sizeof(path), "%s/antenna.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        die("open antenna.db", EIO);
    }
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; BEGIN");
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x < %ld)"
             " INSERT INTO tenants SELECT 't'||x, 0 FROM c;",
             g_tenants - 1);
    exec(db, sql);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x < %ld)"
             " INSERT INTO principals(id, tenant_id, roles, created)"
             " SELECT 'p'||x, 't'||(x/10), CASE WHEN x%%10 = 0 THEN 1 ELSE 2 END, 0 FROM c;",
             nprin - 1);
    exec(db, sql);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x < %ld)"
             " INSERT INTO datasets(id, tenant_id, name, state, classification, created)"
             " SELECT 'ds_'||x, 't'||(x %% %ld), 'd'||x, 'published', 'internal', 0 FROM c;"
             "INSERT INTO dataset_regions SELECT id, 'EU-MD' FROM datasets;"
             "INSERT INTO dataset_duo SELECT id, 'DUO:0000006' FROM datasets"
             " WHERE CAST(substr(id, 4) AS INTEGER) %% 2 = 0;",
             g_datasets - 1, g_tenants);
    exec(db, sql);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM c WHERE x < %ld)"
             " INSERT INTO grants(id, dataset_id, grantee_kind, grantee_id, actions, purpose,"
             "  not_before, expires, revoked_at, created_by, created)"
             " SELECT 'gr_'||x, 'ds_'||(x %% %ld), 'principal', 'p'||(abs(random()) %% %ld), 14,"
             "  CASE WHEN x %% 3 = 0 THEN NULL ELSE 'DUO:0000006' END, 0,"
             "  CASE WHEN x %% 17 = 0 THEN 1 ELSE NULL END,"
             "  CASE WHEN x %% 23 = 0 THEN 1 ELSE NULL END, 'p0', 0 FROM c;",
             g_grants - 1, g_datasets, nprin);
    exec(db, sql);
    exec(db, "COMMIT; ANALYZE;");
    sqlite3_close(db);
}

struct req {
    struct ant_principal p;
    char ds[ANT_ID_MAX + 1];
};

static void bench_decisions(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct ant_store *st = NULL;
    int rc = ant_store_open(dfd, "antenna.db", 0, &st);
    if (rc < 0) {
        die("store open", rc);
    }
    /* A third of the requests are by a grantee (grant path), a third by a member of the owner
     * tenant (role path), a third by a stranger (every rule, then deny). */
    enum { NREQ = 3000 };
    struct req *reqs = calloc(NREQ, sizeof(*reqs));
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    snprintf(path, sizeof(path), "%s/antenna.db", dir);
    if (reqs == NULL || sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT grantee_id, dataset_id FROM grants"
                               " ORDER BY random() LIMIT 1000", -1, &s, NULL) != SQLITE_OK) {
        die("sample", EIO);
    }
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW && n < 1000) {
        rc = ant_store_principal_get(st, (const char *)sqlite3_column_text(s, 0), &reqs[n].p);
        snprintf(reqs[n].ds, sizeof(reqs[n].ds), "%s", (const char *)sqlite3_column_text(s, 1));
        n += rc == 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    for (int i = 0; n < NREQ; i++, n++) {
        long d = random() % g_datasets;
        long t = d % g_tenants;
        char who[32];
        /* members: principals 10t..10t+9 of the owner tenant; strangers: another tenant's */
        long pi = i % 2 == 0 ? t * 10 + random() % 10 : ((t + 1) % g_tenants) * 10 + 1;
        snprintf(who, sizeof(who), "p%ld", pi);
        rc = ant_store_principal_get(st, who, &reqs[n].p);
        if (rc < 0) {
            die("principal", rc);
        }
        snprintf(reqs[n].ds, sizeof(reqs[n].ds), "ds_%ld", d);
    }
    struct ant_decide_ctx ctx = {"DUO:0000006", "EU-MD", "site-b", false, 0};
    long count = 0, allowed = 0;
    double t0 = now_s(), t1;
    static const unsigned acts[] = {ANT_ACT_READ, ANT_ACT_STAGE, ANT_ACT_DESCRIBE, ANT_ACT_TRANSFER};
    do {
        for (int i = 0; i < 1000; i++, count++) {
            struct ant_decision dec;
            struct req *r = &reqs[count % NREQ];
            rc = ant_decide(st, &r->p, acts[count % 4], r->ds, &ctx, &dec);
            if (rc < 0) {
                die("decide", rc);
            }
            allowed += dec.allow;
        }
        t1 = now_s();
    } while (t1 - t0 < g_seconds);
    printf("decisions: %ld in %.2f s = %.0f decisions/s on one thread (%.0f%% allowed; %ld tenants,"
           " %ld datasets, %ld grants)\n",
           count, t1 - t0, (double)count / (t1 - t0), 100.0 * (double)allowed / (double)count,
           g_tenants, g_datasets, g_grants);
    free(reqs);
    ant_store_close(st);
    close(dfd);
}

struct writer {
    struct ant_audit *a;
    double until;
    long n;
    int id;
};

static void event_for(long k, struct ant_audit_event *ev, char *tenant, char *actor, char *ds)
{
    snprintf(tenant, 32, "t%ld", k % g_tenants);
    snprintf(actor, 32, "p%ld", k % (g_tenants * 10));
    snprintf(ds, 32, "ds_%ld", k % g_datasets);
    memset(ev, 0, sizeof(*ev));
    ev->request_id = "bench";
    ev->actor = actor;
    ev->tenant = tenant;
    ev->credential = "0123456789abcdef";
    ev->action = "read";
    ev->resource_kind = "dataset";
    ev->resource_id = ds;
    ev->dataset_id = ds;
    ev->decision = k % 5 == 0 ? ANT_AUDIT_DENY : ANT_AUDIT_ALLOW;
    ev->reason = k % 5 == 0 ? "no_grant" : "grant";
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char tenant[32], actor[32], ds[32];
    struct ant_audit_event ev;
    while (now_s() < w->until) {
        event_for(w->n * 64 + w->id, &ev, tenant, actor, ds);
        int64_t seq = ant_audit_append(w->a, &ev);
        if (seq < 0) {
            die("append", (int)seq);
        }
        w->n++;
    }
    return NULL;
}

static void bench_writers(struct ant_audit *a, int nthreads)
{
    pthread_t th[64];
    struct writer w[64];
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct writer){a, t0 + g_seconds, 0, i};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    long total = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
    }
    double t1 = now_s();
    printf("audit append, %d writer%s: %ld durable events in %.2f s = %.0f events/s\n", nthreads,
           nthreads > 1 ? "s" : "", total, t1 - t0, (double)total / (t1 - t0));
}

static void bench_audit(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct ant_signkey *k = NULL;
    struct ant_audit *a = NULL;
    struct ant_audit_opts o = {.checkpoint_every = 1000, .checkpoint_seconds = 60, .max_batch = 512};
    int rc = ant_signkey_generate(&k);
    rc = rc < 0 ? rc : ant_audit_open(dfd, "audit.db", ANT_STORE_CREATE, k, &o, &a);
    if (rc < 0) {
        die("audit open", rc);
    }
    bench_writers(a, 1);
    bench_writers(a, 64);

    /* Fill to g_events with batches, then verify and query. */
    struct ant_audit_event *evs = calloc(512, sizeof(*evs));
    char (*tn)[32] = calloc(512, 32), (*ac)[32] = calloc(512, 32), (*dn)[32] = calloc(512, 32);
    long have = 0;
    struct ant_audit_report rep;
    memset(&rep, 0, sizeof(rep));
    rc = ant_audit_verify(a, ant_signkey_public(k), false, &rep);
    have = rep.last_seq;
    double t0 = now_s();
    for (long k0 = have; k0 < g_events; k0 += 512) {
        size_t n = (size_t)(g_events - k0 < 512 ? g_events - k0 : 512);
        for (size_t i = 0; i < n; i++) {
            event_for(k0 + (long)i, &evs[i], tn[i], ac[i], dn[i]);
        }
        int64_t seq = ant_audit_append_many(a, evs, n);
        if (seq < 0) {
            die("append_many", (int)seq);
        }
    }
    double t1 = now_s();
    printf("audit fill: %ld events in batches of 512 in %.2f s = %.0f events/s\n",
           g_events - have, t1 - t0, (double)(g_events - have) / (t1 - t0));
    rc = ant_audit_checkpoint(a);
    if (rc < 0) {
        die("checkpoint", rc);
    }
    t0 = now_s();
    rc = ant_audit_verify(a, ant_signkey_public(k), true, &rep);
    t1 = now_s();
    if (rc < 0) {
        die("verify", rc);
    }
    printf("audit verify (live chain): %lld events, %lld checkpoints in %.2f s = %.0f events/s\n",
           (long long)rep.events, (long long)rep.checkpoints, t1 - t0,
           (double)rep.events / (t1 - t0));

    int64_t now_ms = ant_now_ms();
    struct ant_audit_query q = {now_ms - 86400000, now_ms + 60000, NULL, "t42", NULL, NULL,
                                NULL, 0, 100};
    json_t *rows = NULL;
    int64_t next = 0;
    double best = 1e9, sum = 0;
    for (int i = 0; i < 20; i++) {
        t0 = now_s();
        rc = ant_audit_query_run(a, &q, &rows, &next);
        t1 = now_s();
        if (rc < 0) {
            die("query", rc);
        }
        if (i == 0) {
            printf("audit query (tenant t42, last 24 h, first page of 100): %zu rows\n",
                   json_array_size(rows));
        }
        json_decref(rows);
        sum += t1 - t0;
        best = t1 - t0 < best ? t1 - t0 : best;
    }
    printf("audit query over %lld events: mean %.2f ms, best %.2f ms\n", (long long)rep.events,
           sum / 20 * 1000, best * 1000);
    free(evs);
    free(tn);
    free(ac);
    free(dn);
    ant_audit_close(a);
    ant_signkey_free(k);
    close(dfd);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    char tmpl[] = "/tmp/policy_bench.XXXXXX";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--tenants") == 0) {
            g_tenants = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--datasets") == 0) {
            g_datasets = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--grants") == 0) {
            g_grants = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--events") == 0) {
            g_events = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            g_seconds = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "--only") == 0) {
            g_audit = strcmp(argv[i + 1], "audit") == 0;
            g_decisions = strcmp(argv[i + 1], "decisions") == 0;
        } else {
            fprintf(stderr, "usage: policy_bench [--dir DIR] [--tenants N] [--datasets N]"
                            " [--grants N] [--events N] [--seconds S]"
                            " [--only decisions|audit]\n");
            return 2;
        }
    }
    if (g_tenants < 2 || g_datasets < 1 || g_grants < 1 || g_events < 1 || g_seconds <= 0) {
        fprintf(stderr, "policy_bench: counts must be positive (tenants >= 2)\n");
        return 2;
    }
    if (dir == NULL) {
        dir = mkdtemp(tmpl);
        if (dir == NULL) {
            die("mkdtemp", errno);
        }
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct ant_store *st = NULL;
    struct stat sb;
    bool reuse = dfd >= 0 && fstatat(dfd, "antenna.db", &sb, 0) == 0;
    int rc = dfd < 0 ? -errno : reuse ? 0 : ant_store_open(dfd, "antenna.db", ANT_STORE_CREATE, &st);
    if (rc < 0) {
        die("create antenna.db", rc);
    }
    ant_store_close(st);
    close(dfd);
    if (!reuse) {
        double t0 = now_s();
        fill_catalog(dir);
        printf("catalog fill: %ld tenants, %ld principals, %ld datasets, %ld grants in %.1f s\n",
               g_tenants, g_tenants * 10, g_datasets, g_grants, now_s() - t0);
    }
    if (g_decisions) {
        bench_decisions(dir);
    }
    if (g_audit) {
        bench_audit(dir);
    }
    printf("(data left in %s)\n", dir);
    return 0;
}
