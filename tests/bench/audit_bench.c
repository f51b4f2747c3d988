/* Audit chain benchmark: durable events/s with 1 and 64 writers, verify events/s, and a filtered
 * query (one tenant, one day) on a large log.
 *
 *   audit_bench [EVENTS (default 1000000)] [DIR (default: a fresh folder under /tmp)]
 *   (AUDIT_BENCH_WRITERS_ONLY=1: only the append phases; AUDIT_BENCH_NO_EXPORT=1: no export;
 *   AUDIT_BENCH_V1=1: the big log chained as v1, as before schema step 3, to compare)
 *
 * The large log is written with ant_audit_append_many (one commit per 1,024 events) and a test
 * clock that spreads the events over 100 days among 100 tenants. Each writer measurement is one
 * fresh file, durable as in production (every event's WAL frames fdatasynced before its caller
 * returns). */
#include "crypto/base/base.h"
#include "policy/audit.h"

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define TENANTS 100
#define DAYS 100
#define DAY_MS (86400LL * 1000)
#define START_MS 1764547200000LL /* 2025-12-01T00:00:00Z */

static const struct ant_audit_opts k_opts = {
    .checkpoint_every = 1000, .checkpoint_seconds = 60, .max_batch = 1024};

static char g_tenants[TENANTS][16];

static struct ant_audit_event event_for(uint64_t i)
{
    static const char *const actions[] = {"read", "stage", "transfer", "admin.grant.create"};
    struct ant_audit_event ev = {
        .request_id = "req-0000000000000000",
        .actor = i % 7 ? "alice@tenant" : "bob@tenant",
        .tenant = g_tenants[(i * 2654435761u) % TENANTS],
        .credential = "3fa9c0ffee000001",
        .action = actions[i % 4],
        .resource_kind = "dataset",
        .resource_id = "ds_0123456789abcdef",
        .dataset_id = "ds_0123456789abcdef",
        .decision = i % 5 ? ANT_AUDIT_ALLOW : ANT_AUDIT_DENY,
        .reason = i % 5 ? "grant" : "no_grant",
    };
    return ev;
}

static double secs(int64_t t0)
{
    return (double)(ant_mono_ns() - t0) / 1e9;
}

/* CPU seconds (user + system) of the whole process so far: over a phase's wall time, how many
 * of the cores it kept busy. */
static double cpu_secs(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int open_fresh(int dirfd, const char *name, struct ant_signkey *sk, struct ant_audit **a)
{
    (void)unlinkat(dirfd, name, 0);
    char wal[128], shm[128];
    snprintf(wal, sizeof(wal), "%s-wal", name);
    snprintf(shm, sizeof(shm), "%s-shm", name);
    (void)unlinkat(dirfd, wal, 0);
    (void)unlinkat(dirfd, shm, 0);
    return ant_audit_open(dirfd, name, ANT_STORE_CREATE, sk, &k_opts, a);
}

struct writer {
    struct ant_audit *a;
    uint64_t from, n;
    int errors;
};

static void *writer_main(void *p)
{
    struct writer *w = p;
    for (uint64_t i = w->from; i < w->from + w->n; i++) {
        struct ant_audit_event ev = event_for(i);
        if (ant_audit_append(w->a, &ev) <= 0) {
            w->errors++;
        }
    }
    return NULL;
}

static int bench_writers(int dirfd, struct ant_signkey *sk, unsigned nthreads, uint64_t per)
{
    struct ant_audit *a = NULL;
    pthread_t th[64];
    struct writer w[64];
    int rc = open_fresh(dirfd, "writers.db", sk, &a);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", strerror(-rc));
        return 1;
    }
    double c0 = cpu_secs();
    int64_t t0 = ant_mono_ns();
    for (unsigned i = 0; i < nthreads; i++) {
        w[i] = (struct writer){.a = a, .from = i * per, .n = per};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    int errors = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    double dt = secs(t0);
    double cpu = cpu_secs() - c0;
    struct ant_audit_stats st;
    ant_audit_stats(a, &st);
    printf("append, %2u writer(s): %8.0f durable events/s (%llu events in %.2f s, %llu group "
           "commits, %.2f ms mean commit, %llu fdatasyncs, %.2f ms mean, %.2f cores busy)%s\n",
           nthreads, (double)(nthreads * per) / dt, (unsigned long long)(nthreads * per), dt,
           (unsigned long long)st.commits, st.commit_seconds * 1e3, (unsigned long long)st.syncs,
           st.sync_seconds * 1e3, cpu / dt, errors ? " ERRORS" : "");
    ant_audit_close(a);
    return errors ? 1 : 0;
}

/* One thread keeps `depth` async appends in flight (as a gateway thread serving many requests
 * would): a token per slot, returned by the done callback. */
struct async_bench {
    sem_t tokens;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done, errors;
};

static void async_bench_done(void *arg, int64_t seq)
{
    struct async_bench *b = arg;
    pthread_mutex_lock(&b->mu);
    b->done++;
    b->errors += seq <= 0;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    sem_post(&b->tokens);
}

static int bench_async(int dirfd, struct ant_signkey *sk, unsigned depth, uint64_t total)
{
    struct ant_audit *a = NULL;
    struct async_bench b = {.done = 0};
    int rc = open_fresh(dirfd, "async.db", sk, &a);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", strerror(-rc));
        return 1;
    }
    sem_init(&b.tokens, 0, depth);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    uint64_t refused = 0;
    double c0 = cpu_secs();
    int64_t t0 = ant_mono_ns();
    for (uint64_t i = 0; i < total; i++) {
        while (sem_wait(&b.tokens) < 0) {
        }
        struct ant_audit_event ev = event_for(i);
        if (ant_audit_append_async(a, &ev, async_bench_done, &b) < 0) {
            refused++;
            sem_post(&b.tokens);
        }
    }
    pthread_mutex_lock(&b.mu);
    while (b.done < total - refused) {
        pthread_cond_wait(&b.cv, &b.mu);
    }
    pthread_mutex_unlock(&b.mu);
    double dt = secs(t0);
    double cpu = cpu_secs() - c0;
    struct ant_audit_stats st;
    ant_audit_stats(a, &st);
    printf("append_async, 1 thread, %u in flight: %8.0f durable events/s (%llu events in %.2f s, "
           "%llu group commits, %.2f ms mean commit, %llu fdatasyncs, %.2f ms mean, %.2f cores "
           "busy)%s\n",
           depth, (double)total / dt, (unsigned long long)total, dt,
           (unsigned long long)st.commits, st.commit_seconds * 1e3, (unsigned long long)st.syncs,
           st.sync_seconds * 1e3, cpu / dt, refused || b.errors ? " ERRORS" : "");
    ant_audit_close(a);
    sem_destroy(&b.tokens);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    return refused || b.errors ? 1 : 0;
}

struct fake_clock {
    uint64_t events, total;
};

/* Advances with the events written so far: 100 days over the whole run. */
static int64_t fake_now(void *ctx)
{
    const struct fake_clock *c = ctx;
    return START_MS + (int64_t)((double)c->events / (double)c->total * (double)(DAYS * DAY_MS));
}

int main(int argc, char **argv)
{
    uint64_t total = 1000000;
    char dir[256];
    struct ant_signkey *sk = NULL;
    struct ant_audit *a = NULL;
    if (argc > 1 && ant_parse_u64(ant_bytes_str(argv[1]), 1000, 100000000, &total) < 0) {
        fprintf(stderr, "usage: audit_bench [EVENTS] [DIR]\n");
        return 2;
    }
    if (argc > 2) {
        snprintf(dir, sizeof(dir), "%s", argv[2]);
        mkdir(dir, 0700);
    } else {
        snprintf(dir, sizeof(dir), "/tmp/audit_bench.XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
    }
    for (int i = 0; i < TENANTS; i++) {
        snprintf(g_tenants[i], sizeof(g_tenants[i]), "tenant-%03d", i);
    }
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || ant_signkey_generate(&sk) < 0) {
        perror(dir);
        return 1;
    }
    printf("audit_bench in %s\n", dir);
    if (argc > 2) {
        /* kept for a look afterwards: `antenna audit verify --export DIR/big.ndjson
         * --site-key DIR/site.pub` */
        struct ant_buf pub = ANT_BUF_INIT(4096);
        if (ant_keyfile_public_encode(ant_signkey_public(sk), ANT_KEYFILE_ED25519_PUBLIC, &pub) <
                0 ||
            ant_write_new_file(dirfd, "site.pub", 0644, pub.p, pub.len) < 0) {
            fprintf(stderr, "cannot write %s/site.pub\n", dir);
        }
        ant_buf_fini(&pub);
    }
    int fails = bench_writers(dirfd, sk, 1, 2000);
    fails += bench_writers(dirfd, sk, 64, 1000);
    fails += bench_async(dirfd, sk, 64, 64000);
    if (getenv("AUDIT_BENCH_WRITERS_ONLY") != NULL) {
        /* profiling the append paths: skip the big log */
        ant_signkey_free(sk);
        ant_close(dirfd);
        if (argc <= 2 && ant_rmtree_at(AT_FDCWD, dir) < 0) {
            fprintf(stderr, "cannot remove %s\n", dir);
        }
        return fails ? 1 : 0;
    }

    /* the big log, in batches of 1,024 */
    struct fake_clock clk = {0, total};
    int rc = open_fresh(dirfd, "big.db", sk, &a);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", strerror(-rc));
        return 1;
    }
    ant_audit_test_clock(a, fake_now, &clk);
    ant_audit_test_write_v1(a, getenv("AUDIT_BENCH_V1") != NULL);
    struct ant_audit_event *batch = calloc(1024, sizeof(*batch));
    int64_t t0 = ant_mono_ns();
    for (uint64_t i = 0; i < total && batch != NULL;) {
        size_t n = total - i < 1024 ? (size_t)(total - i) : 1024;
        for (size_t k = 0; k < n; k++) {
            batch[k] = event_for(i + k);
        }
        clk.events = i; /* read by the writer only while this thread waits in append_many */
        if (ant_audit_append_many(a, batch, n) <= 0) {
            fprintf(stderr, "append_many failed\n");
            return 1;
        }
        i += n;
    }
    double dt = secs(t0);
    printf("append_many, 1 writer, batches of 1024: %8.0f durable events/s (%llu events in "
           "%.1f s)\n",
           (double)total / dt, (unsigned long long)total, dt);
    free(batch);
    if (ant_audit_checkpoint(a) < 0) {
        return 1;
    }

    struct ant_audit_report rep;
    t0 = ant_mono_ns();
    rc = ant_audit_verify(a, ant_signkey_public(sk), true, &rep);
    dt = secs(t0);
    printf("verify: %8.0f events/s (%lld events, %lld checkpoints in %.2f s)%s\n",
           (double)rep.events / dt, (long long)rep.events, (long long)rep.checkpoints, dt,
           rc == 0 ? "" : " BROKEN");
    fails += rc != 0;

    /* AUDIT_BENCH_NO_EXPORT=1: the 10,000,000-event run (its export would be ~4 GB) */
    if (getenv("AUDIT_BENCH_NO_EXPORT") != NULL) {
        goto query;
    }
    t0 = ant_mono_ns();
    int fd = openat(dirfd, "big.ndjson", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int64_t lines = fd < 0 ? -errno : ant_audit_export(a, fd);
    ant_close(fd);
    dt = secs(t0);
    printf("export: %8.0f lines/s (%lld lines in %.2f s)\n", (double)lines / dt, (long long)lines,
           dt);
    {
        struct ant_buf ex = ANT_BUF_INIT((size_t)1 << 34);
        fd = openat(dirfd, "big.ndjson", O_RDONLY | O_CLOEXEC);
        rc = fd < 0 ? -errno : ant_read_all(fd, &ex);
        ant_close(fd);
        t0 = ant_mono_ns();
        rc = rc < 0 ? rc : ant_audit_verify_export(ant_buf_view(&ex), ant_signkey_public(sk), &rep);
        dt = secs(t0);
        printf("verify export offline: %8.0f events/s (%lld events, %.1f MB in %.2f s)%s\n",
               (double)rep.events / dt, (long long)rep.events, (double)ex.len / 1e6, dt,
               rc == 0 ? "" : " BROKEN");
        fails += rc != 0;
        ant_buf_fini(&ex);
    }

query:;
    /* one tenant, one day: 20 random (tenant, day) pairs, after one warm-up query */
    double worst = 0, sum = 0;
    size_t rows = 0;
    srand(42);
    for (int i = 0; i <= 20; i++) {
        int day = 1 + rand() % (DAYS - 2);
        struct ant_audit_query q = {
            .tenant = g_tenants[rand() % TENANTS],
            .from_ms = START_MS + day * DAY_MS,
            .to_ms = START_MS + (day + 1) * DAY_MS,
            .limit = 1000,
        };
        json_t *res = NULL;
        int64_t next = 0;
        t0 = ant_mono_ns();
        rc = ant_audit_query_run(a, &q, &res, &next);
        dt = secs(t0);
        if (rc < 0) {
            fprintf(stderr, "query: %s\n", strerror(-rc));
            return 1;
        }
        if (i > 0) {
            sum += dt;
            worst = dt > worst ? dt : worst;
            rows += json_array_size(res);
        }
        json_decref(res);
    }
    printf("query (one tenant, one day, %llu events): mean %.2f ms, worst %.2f ms, %.0f rows "
           "per page\n",
           (unsigned long long)total, sum / 20 * 1e3, worst * 1e3, (double)rows / 20);
    ant_audit_close(a);
    ant_signkey_free(sk);
    ant_close(dirfd);
    if (argc <= 2) {
        if (ant_rmtree_at(AT_FDCWD, dir) < 0) {
            fprintf(stderr, "cannot remove %s\n", dir);
        }
    }
    return fails ? 1 : 0;
}
