/* policy/peers.h: peers, single use of federation tokens, the cache of peers' files. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "crypto/token.h"
#include "policy/peers.h"
#include "tests/unit/testutil.h"

struct fx {
    char *dir;
    int dirfd;
    struct ant_store *st;
};

static const char g_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_tmpdir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->dirfd >= 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", ANT_STORE_CREATE, &f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ant_store_close(f->st);
    close(f->dirfd);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static struct ant_peer peer_b(void)
{
    struct ant_peer p;
    memset(&p, 0, sizeof(p));
    snprintf(p.id, sizeof(p.id), "site-b");
    snprintf(p.url, sizeof(p.url), "https://127.0.0.1:8444");
    snprintf(p.region, sizeof(p.region), "EU-MD");
    memset(p.x25519_pk, 0x11, sizeof(p.x25519_pk));
    memset(p.ed25519_pk, 0x22, sizeof(p.ed25519_pk));
    snprintf(p.added_by, sizeof(p.added_by), "cli:root");
    return p;
}

static void test_peer_add_get_list_remove(void **state)
{
    struct fx *f = *state;
    struct ant_peer p = peer_b(), got;
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), 0);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EEXIST);
    assert_int_equal(ant_peer_get(f->st, "site-b", &got), 0);
    assert_string_equal(got.url, p.url);
    assert_string_equal(got.region, "EU-MD");
    assert_memory_equal(got.x25519_pk, p.x25519_pk, 32);
    assert_memory_equal(got.ed25519_pk, p.ed25519_pk, 32);
    assert_true(got.added > 0);
    struct ant_buf a = ANT_BUF_INIT(ANT_PEER_ANCHOR_MAX + 1);
    assert_int_equal(ant_peer_anchor(f->st, "site-b", &a), 0);
    assert_string_equal((const char *)a.p, g_pem);
    ant_buf_fini(&a);
    json_t *rows = NULL;
    assert_int_equal(ant_peer_list(f->st, &rows), 0);
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "id")),
                        "site-b");
    json_decref(rows);
    assert_int_equal(ant_peer_remove(f->st, "site-b"), 0);
    assert_int_equal(ant_peer_remove(f->st, "site-b"), -ENOENT);
    assert_int_equal(ant_peer_get(f->st, "site-b", &got), -ENOENT);
    assert_int_equal(ant_peer_get(f->st, "../x", &got), -ENOENT);
}

static void test_peer_add_refuses_bad_fields(void **state)
{
    struct fx *f = *state;
    static const char *const bad_urls[] = {
        "http://127.0.0.1:8444", "https://", "https://a@b", "https://a/?x", "https://a/",
        "https://a b", "https:///x", "ftp://x", "https://a#f",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad_urls); i++) {
        struct ant_peer p = peer_b();
        snprintf(p.url, sizeof(p.url), "%s", bad_urls[i]);
        assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    }
    struct ant_peer p = peer_b();
    memset(p.ed25519_pk, 0, 32);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    p = peer_b();
    snprintf(p.id, sizeof(p.id), "../b");
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), -EINVAL);
    p = peer_b();
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str("not a certificate")), -EINVAL);
    assert_int_equal(ant_peer_add(f->st, &p, ANT_BYTES_NULL), -EINVAL);
    assert_true(ant_peer_url_is_valid("https://peer.example.org:8443/antenna"));
}

static void test_jti_is_accepted_once_and_purged_after_expiry(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 900), 0);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 950), -EALREADY);
    /* the same jti from another issuer is another token */
    assert_int_equal(ant_peer_jti_use(f->st, "site-c", "j1", 1000, 950), 0);
    /* past exp but inside the verifier's clock skew (60 s; any caller's: at most 300 s) the
     * token is still accepted: its jti must still be refused (a row purged at exp let it be
     * replayed for up to a minute) */
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 1001), -EALREADY);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 1000 + 59), -EALREADY);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "j1", 1000, 1000 + ANT_TOKEN_SKEW_MAX),
                     -EALREADY);
    /* once no verifier can accept it any more the row is purged */
    assert_int_equal(
        ant_peer_jti_use(f->st, "site-b", "j1", 2000, 1001 + ANT_TOKEN_SKEW_MAX), 0);
    assert_int_equal(ant_peer_jti_use(f->st, "", "j1", 2000, 1001), -EINVAL);
    assert_int_equal(ant_peer_jti_use(f->st, "site-b", "", 2000, 1001), -EINVAL);
}

static void test_fed_cache_matches_on_body_digest(void **state)
{
    struct fx *f = *state;
    struct ant_peer p = peer_b();
    struct ant_fed_cached c, got;
    memset(&c, 0, sizeof(c));
    snprintf(c.storage, sizeof(c.storage), "fc_0011223344556677");
    c.size = 42;
    memset(c.sha256_c4gh, 0xab, 32);
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), 0);
    assert_int_equal(ant_fed_cache_put(f->st, "site-b", "ds_1", "a/b.txt", &c, 0), 0);
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", c.sha256_c4gh, 0, &got),
                     0);
    assert_string_equal(got.storage, c.storage);
    assert_int_equal(got.size, 42);
    uint8_t other[32];
    memset(other, 0xac, sizeof(other));
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", other, 0, &got),
                     -ENOENT);
    assert_int_equal(ant_fed_cache_put(f->st, "site-b", "ds_1", "../x", &c, 0), -EINVAL);
    /* a removed peer's copies are not served from cache */
    assert_int_equal(ant_peer_remove(f->st, "site-b"), 0);
    assert_int_equal(ant_fed_cache_get(f->st, "site-b", "ds_1", "a/b.txt", c.sha256_c4gh, 0, &got),
                     -ENOENT);
}

/* --- eviction --- */

/* A cached copy of `size` bytes for path `path` of site-b's ds_1, put at `now`, with its file
 * in archive/fed (archive = the test folder) when `with_file`. */
static void cache_add(struct fx *f, const char *path, const char *storage, uint64_t size,
                      int64_t now, bool with_file)
{
    struct ant_fed_cached c;
    memset(&c, 0, sizeof(c));
    snprintf(c.storage, sizeof(c.storage), "%s", storage);
    c.size = size;
    memset(c.sha256_c4gh, path[0], 32);
    assert_int_equal(ant_fed_cache_put(f->st, "site-b", "ds_1", path, &c, now), 0);
    if (with_file) {
        char name[ANT_ID_MAX + 8];
        if (mkdirat(f->dirfd, "fed", 0700) < 0) {
            assert_int_equal(errno, EEXIST);
        }
        int fed = openat(f->dirfd, "fed", O_RDONLY | O_DIRECTORY);
        assert_true(fed >= 0);
        snprintf(name, sizeof(name), "%s.c4gh", storage);
        assert_int_equal(ant_write_new_file(fed, name, 0600, (const uint8_t *)"x", 1), 0);
        close(fed);
    }
}

static bool cache_has(struct fx *f, const char *path, int64_t now)
{
    struct ant_fed_cached got;
    uint8_t sha[32];
    memset(sha, path[0], sizeof(sha));
    int rc = ant_fed_cache_get(f->st, "site-b", "ds_1", path, sha, now, &got);
    assert_true(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

static bool file_exists(struct fx *f, const char *rel)
{
    struct stat sb;
    return fstatat(f->dirfd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

static void add_peer(struct fx *f)
{
    struct ant_peer p = peer_b();
    assert_int_equal(ant_peer_add(f->st, &p, ant_bytes_str(g_pem)), 0);
}

/* Past the limit the least recently used copies go, row and file, until the rest fits; a
 * lookup (get) counts as a use as much as the put does. */
static void test_fed_cache_evicts_least_recently_used_first(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    cache_add(f, "a", "fc_a", 100, 1000, true);
    cache_add(f, "b", "fc_b", 100, 2000, true);
    cache_add(f, "c", "fc_c", 100, 3000, true);
    cache_add(f, "d", "fc_d", 100, 4000, true);
    assert_true(cache_has(f, "a", 5000)); /* a: now the most recently used */
    /* a lookup with an older clock does not make a copy look less recently used */
    assert_true(cache_has(f, "a", 10));
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 250, 100000, 0, &es), 0);
    assert_int_equal(es.total_before, 400);
    assert_int_equal(es.total_after, 200);
    assert_int_equal(es.evicted_files, 2);
    assert_int_equal(es.evicted_bytes, 200);
    assert_int_equal(es.unlink_failed, 0);
    assert_false(file_exists(f, "fed/fc_b.c4gh"));
    assert_false(file_exists(f, "fed/fc_c.c4gh"));
    assert_true(file_exists(f, "fed/fc_d.c4gh"));
    assert_true(file_exists(f, "fed/fc_a.c4gh"));
    assert_false(cache_has(f, "b", 100000));
    assert_false(cache_has(f, "c", 100000));
    assert_true(cache_has(f, "d", 100000));
    assert_true(cache_has(f, "a", 100000));
    /* under the limit: a second pass removes nothing */
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 250, 100000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 0);
    assert_int_equal(es.total_after, 200);
    /* a copy is evicted whole: one byte over the limit takes a whole file */
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 199, 200000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 1);
    assert_int_equal(es.total_after, 100);
}

/* A copy used within the grace period stays, even when the cache is then over the limit; one
 * used just before the cut-off goes. */
static void test_fed_cache_grace_keeps_recent_copies(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    cache_add(f, "a", "fc_a", 100, 1000, true);
    cache_add(f, "b", "fc_b", 100, 6399, true);
    cache_add(f, "c", "fc_c", 100, 6400, true); /* exactly now - grace: within it */
    cache_add(f, "d", "fc_d", 100, 9500, true);
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 1, 10000, 3600, &es), 0);
    assert_int_equal(es.evicted_files, 2);
    assert_int_equal(es.evicted_bytes, 200);
    assert_int_equal(es.total_after, 200); /* still over the limit: c and d are in use */
    assert_false(cache_has(f, "a", 10000));
    assert_false(cache_has(f, "b", 10000));
    assert_true(cache_has(f, "c", 10000));
    assert_true(cache_has(f, "d", 10000));
    assert_false(file_exists(f, "fed/fc_a.c4gh"));
    assert_true(file_exists(f, "fed/fc_c.c4gh"));
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 1, 10000, -1, &es), -EINVAL);
}

/* max 0 is no limit: nothing is evicted however large and old the cache is. */
static void test_fed_cache_limit_zero_evicts_nothing(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    cache_add(f, "a", "fc_a", UINT64_C(1) << 40, 1, true);
    cache_add(f, "b", "fc_b", 100, 2, true);
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 0, 1000000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 0);
    assert_true(es.total_before == (UINT64_C(1) << 40) + 100);
    assert_true(es.total_after == es.total_before);
    assert_true(cache_has(f, "a", 1000000));
    assert_true(file_exists(f, "fed/fc_a.c4gh"));
    assert_true(file_exists(f, "fed/fc_b.c4gh"));
}

/* An empty cache, or none at all (no archive/fed), is under any limit. */
static void test_fed_cache_evict_empty_cache(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 1, 1000000, 0, &es), 0);
    assert_int_equal(es.total_before, 0);
    assert_int_equal(es.evicted_files, 0);
    assert_int_equal(ant_fed_cache_evict(f->st, -1, 1, 1000000, 0, &es), -EINVAL);
}

/* A row whose file is already gone (removed by hand), or with no archive/fed at all, is
 * evicted all the same: the row goes, the missing file is not an error. */
static void test_fed_cache_evict_missing_file_is_fine(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    cache_add(f, "a", "fc_a", 100, 1000, false); /* no archive/fed folder yet */
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 50, 5000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 1);
    assert_int_equal(es.unlink_failed, 0);
    assert_false(cache_has(f, "a", 5000));
    cache_add(f, "b", "fc_b", 100, 1000, true);
    cache_add(f, "c", "fc_c", 100, 1001, false); /* the folder exists, this file does not */
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 50, 5000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 2);
    assert_int_equal(es.unlink_failed, 0);
    assert_false(file_exists(f, "fed/fc_b.c4gh"));
    assert_int_equal(es.total_after, 0);
}

/* A row naming something that is not a copy's name (a path out of archive/fed) loses its row
 * and touches no file. */
static void test_fed_cache_evict_never_unlinks_outside_fed(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    assert_int_equal(ant_write_new_file(f->dirfd, "keep.c4gh", 0600, (const uint8_t *)"x", 1), 0);
    cache_add(f, "a", "../keep", 100, 1000, false);
    cache_add(f, "b", ".hidden", 100, 1001, false);
    assert_int_equal(mkdirat(f->dirfd, "fed", 0700), 0);
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 1, 5000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 2);
    assert_int_equal(es.unlink_failed, 2);
    assert_true(file_exists(f, "keep.c4gh"));
    assert_int_equal(es.total_after, 0);
}

/* More copies than one batch: the pass goes on batch after batch until the rest fits. */
static void test_fed_cache_evicts_past_one_batch(void **state)
{
    struct fx *f = *state;
    struct ant_fed_evict_stats es;
    add_peer(f);
    assert_int_equal(ant_store_begin(f->st), 0);
    for (unsigned i = 0; i < 300; i++) {
        char path[32], storage[32];
        snprintf(path, sizeof(path), "p%03u", i);
        snprintf(storage, sizeof(storage), "fc_%03u", i);
        cache_add(f, path, storage, 10, 1000 + i, false);
    }
    assert_int_equal(ant_store_commit(f->st), 0);
    assert_int_equal(ant_fed_cache_evict(f->st, f->dirfd, 500, 5000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 250);
    assert_int_equal(es.total_after, 500);
    assert_false(cache_has(f, "p249", 5000));
    assert_true(cache_has(f, "p250", 5000));
}

/* A site whose antenna.db predates last_used (schema step 6) is upgraded in place: its cache
 * rows stay and count as used when they were created, oldest evicted first. */
static void test_fed_cache_upgrade_from_step6_keeps_rows(void **state)
{
    struct fx *f = *state;
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    struct ant_store *st = NULL;
    struct ant_fed_evict_stats es;
    assert_true(ant_store_schema_latest() >= 7);
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old.db", 6), 0);
    snprintf(path, sizeof(path), "%s/old.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    /* step 6's fed_cache has no last_used */
    assert_int_not_equal(sqlite3_exec(db, "SELECT last_used FROM fed_cache", NULL, NULL, NULL),
                         SQLITE_OK);
    const char *fill =
        "INSERT INTO peers VALUES('site-b', 'https://127.0.0.1:8444', 'EU', zeroblob(32),"
        "  zeroblob(32), 'pem', 1, 'cli:root');"
        "INSERT INTO fed_cache VALUES('site-b', 'ds_1', 'new', zeroblob(32), 100, 'fc_new', 300),"
        "  ('site-b', 'ds_1', 'old', zeroblob(32), 100, 'fc_old', 100),"
        "  ('site-b', 'ds_1', 'mid', zeroblob(32), 100, 'fc_mid', 200);";
    assert_int_equal(sqlite3_exec(db, fill, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    db = NULL;

    assert_int_equal(ant_store_open(f->dirfd, "old.db", 0, &st), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT path, created, last_used FROM fed_cache"
                                        " ORDER BY path",
                                        -1, &s, NULL),
                     SQLITE_OK);
    unsigned n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        assert_int_equal(sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 1));
        n++;
    }
    assert_int_equal(n, 3);
    sqlite3_finalize(s);
    sqlite3_close(db);
    uint8_t zero[32] = {0};
    struct ant_fed_cached got;
    assert_int_equal(ant_fed_cache_get(st, "site-b", "ds_1", "old", zero, 400, &got), 0);
    assert_string_equal(got.storage, "fc_old");
    /* "old" was just looked up: "mid" is now the least recently used, then "new" */
    assert_int_equal(ant_fed_cache_evict(st, f->dirfd, 150, 1000, 0, &es), 0);
    assert_int_equal(es.evicted_files, 2);
    assert_int_equal(ant_fed_cache_get(st, "site-b", "ds_1", "mid", zero, 1000, &got), -ENOENT);
    assert_int_equal(ant_fed_cache_get(st, "site-b", "ds_1", "new", zero, 1000, &got), -ENOENT);
    assert_int_equal(ant_fed_cache_get(st, "site-b", "ds_1", "old", zero, 1000, &got), 0);
    ant_store_close(st);
}

/* The bytes the rows add up to (what /metrics reports), and the remote stage jobs recorded
 * running (what `antenna admin peer pull` will not evict under): local jobs, and remote ones
 * not running, do not count. */
static void test_fed_cache_bytes_and_remote_jobs_running(void **state)
{
    struct fx *f = *state;
    uint64_t n = 99;
    assert_int_equal(ant_fed_cache_bytes(f->st, &n), 0);
    assert_int_equal(n, 0);
    add_peer(f);
    cache_add(f, "a", "fc_a", 100, 1000, false);
    cache_add(f, "b", "fc_b", 250, 1000, false);
    assert_int_equal(ant_fed_cache_bytes(f->st, &n), 0);
    assert_int_equal(n, 350);
    assert_int_equal(ant_fed_cache_remote_jobs_running(f->st, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ant_store_tenant_add(f->st, "lab"), 0);
    struct ant_dataset_spec spec = {.tenant = "lab", .name = "local",
                                    .classification = ANT_DS_SENSITIVE};
    char ds[ANT_ID_MAX + 1];
    assert_int_equal(ant_store_dataset_create(f->st, &spec, ds), 0);
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    char path[4200];
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO stage_jobs(id, dataset_id, peer_id,"
                                        " remote_dataset, transfer_id, state, tenant_id,"
                                        " principal_id, mode, ttl_s, created, expires)"
                                        " VALUES(?, ?, ?, ?, ?, ?, 'lab', 'alice', 'decrypt',"
                                        " 60, 1, 61)",
                                        -1, &ins, NULL),
                     SQLITE_OK);
    static const struct {
        const char *id, *peer, *transfer, *state;
    } jobs[] = {
        {"job_r1", "site-b", "tr_1", "running"}, {"job_r2", "site-b", "tr_2", "running"},
        {"job_q1", "site-b", "tr_3", "queued"},  {"job_d1", "site-b", "tr_4", "ready"},
        {"job_l1", NULL, NULL, "running"}, /* a local job */
    };
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, jobs[i].id, -1, SQLITE_STATIC);
        if (jobs[i].peer != NULL) {
            sqlite3_bind_null(ins, 2);
            sqlite3_bind_text(ins, 3, jobs[i].peer, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 4, "ds_1", -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 5, jobs[i].transfer, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_text(ins, 2, ds, -1, SQLITE_STATIC);
            sqlite3_bind_null(ins, 3);
            sqlite3_bind_null(ins, 4);
            sqlite3_bind_null(ins, 5);
        }
        sqlite3_bind_text(ins, 6, jobs[i].state, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
    }
    sqlite3_finalize(ins);
    sqlite3_close(db);
    assert_int_equal(ant_fed_cache_remote_jobs_running(f->st, &n), 0);
    assert_int_equal(n, 2);
}

/* --- witnessed checkpoints --- */

static struct ant_audit_ckpt ckpt(int64_t seq, uint8_t h, int64_t prev)
{
    struct ant_audit_ckpt c;
    memset(&c, 0, sizeof(c));
    c.seq = seq;
    c.time_ms = 1000 * seq;
    c.prev_seq = prev;
    memset(c.hash, h, sizeof(c.hash));
    memset(c.sig, 0x5a, sizeof(c.sig));
    return c;
}

/* Records c for site-a as a session would: `top` is what it read before asking. */
static struct ant_witness_result rec(struct fx *f, const char *peer, const struct ant_audit_ckpt *c,
                                     int64_t top, int64_t seen)
{
    struct ant_witness_result w;
    memset(&w, 0xee, sizeof(w));
    assert_int_equal(ant_peer_witness_record(f->st, peer, c, top, seen, &w), 0);
    assert_int_equal(w.highest, top);
    return w;
}

static int64_t top_of(struct fx *f, const char *peer)
{
    int64_t top = -1;
    assert_int_equal(ant_peer_witness_top(f->st, peer, &top), 0);
    return top;
}

static void test_witness_records_and_detects_conflicts(void **state)
{
    struct fx *f = *state;
    struct ant_witness_result w;
    struct ant_audit_ckpt c10 = ckpt(10, 1, 0), c20 = ckpt(20, 2, 10);
    assert_int_equal(top_of(f, "site-a"), 0);
    w = rec(f, "site-a", &c10, 0, 5);
    assert_true(w.added && !w.equivocation && !w.rollback && !w.rollback_seen);
    assert_int_equal(top_of(f, "site-a"), 10);
    w = rec(f, "site-a", &c10, 10, 6); /* the same again: known */
    assert_true(!w.added && !w.equivocation && !w.rollback && !w.rollback_seen);
    w = rec(f, "site-a", &c20, 10, 7);
    assert_true(w.added && !w.equivocation && !w.rollback);
    assert_int_equal(top_of(f, "site-a"), 20);
    /* equivocation: seq 20 with another hash; kept beside the first */
    struct ant_audit_ckpt e20 = ckpt(20, 9, 10);
    w = rec(f, "site-a", &e20, 20, 8);
    assert_true(w.added && w.equivocation && !w.rollback);
    w = rec(f, "site-a", &e20, 20, 9);
    assert_true(!w.added && !w.equivocation && !w.rollback); /* recorded once */
    /* rollback: a seq below the highest with no row of its own */
    struct ant_audit_ckpt r15 = ckpt(15, 3, 10);
    w = rec(f, "site-a", &r15, 20, 10);
    assert_true(w.added && !w.equivocation && w.rollback && !w.rollback_seen);
    w = rec(f, "site-a", &r15, 20, 11); /* still there: the same rollback, not recorded twice */
    assert_true(!w.added && !w.rollback && w.rollback_seen);
    /* rollback to a recorded checkpoint: c10, recorded first, served after 20 was */
    w = rec(f, "site-a", &c10, 20, 12);
    assert_true(!w.added && !w.equivocation && w.rollback && !w.rollback_seen);
    w = rec(f, "site-a", &c10, 20, 13);
    assert_true(!w.added && !w.rollback && w.rollback_seen);
    /* but not when the higher one was recorded after this session asked (two sessions at
     * once): the peer may have answered this one first */
    w = rec(f, "site-a", &c10, 10, 14);
    assert_true(!w.added && !w.rollback && !w.rollback_seen);
    w = rec(f, "site-a", &c20, 20, 15); /* at the highest: not behind */
    assert_true(!w.added && !w.rollback && !w.rollback_seen);
    /* equivocation below the highest: both */
    struct ant_audit_ckpt e10 = ckpt(10, 8, 0);
    w = rec(f, "site-a", &e10, 20, 16);
    assert_true(w.added && w.equivocation && w.rollback);
    /* another peer's record is its own */
    w = rec(f, "site-c", &r15, 0, 17);
    assert_true(w.added && !w.equivocation && !w.rollback);
    assert_int_equal(top_of(f, "site-c"), 15);
    /* bad arguments */
    struct ant_witness_result o;
    struct ant_audit_ckpt z = ckpt(0, 1, 0);
    assert_int_equal(ant_peer_witness_record(f->st, "site-a", &z, 0, 0, &o), -EINVAL);
    struct ant_audit_ckpt back = ckpt(5, 1, 5);
    assert_int_equal(ant_peer_witness_record(f->st, "site-a", &back, 0, 0, &o), -EINVAL);
    assert_int_equal(ant_peer_witness_record(f->st, "bad name!", &c10, 0, 0, &o), -EINVAL);
    assert_int_equal(ant_peer_witness_record(f->st, "site-a", &c10, -1, 0, &o), -EINVAL);
    int64_t top;
    assert_int_equal(ant_peer_witness_top(f->st, "bad name!", &top), -EINVAL);

    struct ant_audit_ckpt *w2 = NULL;
    int64_t *seen = NULL;
    size_t n = 0;
    assert_int_equal(ant_peer_witnessed(f->st, "site-a", &w2, &seen, &n), 0);
    assert_int_equal(n, 5); /* each (seq, hash) once: the export's checkpoint lines */
    assert_int_equal(w2[0].seq, 10);
    assert_int_equal(w2[1].seq, 10);
    assert_int_equal(w2[2].seq, 15);
    assert_int_equal(w2[3].seq, 20);
    assert_int_equal(w2[4].seq, 20);
    assert_int_equal(w2[0].hash[0], 1); /* by seen time */
    assert_int_equal(w2[1].hash[0], 8);
    assert_int_equal(w2[3].hash[0], 2);
    assert_int_equal(w2[4].hash[0], 9);
    assert_int_equal(seen[0], 5);
    assert_memory_equal(w2[0].sig, c10.sig, sizeof(c10.sig));
    assert_int_equal(w2[3].prev_seq, 10);
    assert_int_equal(w2[3].time_ms, 20000);
    free(w2);
    free(seen);
    assert_int_equal(ant_peer_witnessed(f->st, "site-z", &w2, NULL, &n), 0);
    assert_int_equal(n, 0);
    free(w2);
    /* the rollbacks: each observation once, by the time it was seen */
    struct ant_witness_rollback *rb = NULL;
    assert_int_equal(ant_peer_witness_rollbacks(f->st, "site-a", &rb, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rb[0].seq, 15);
    assert_int_equal(rb[0].highest, 20);
    assert_int_equal(rb[0].seen_ms, 10);
    assert_int_equal(rb[0].hash[0], 3);
    assert_int_equal(rb[1].seq, 10);
    assert_int_equal(rb[1].highest, 20);
    assert_int_equal(rb[1].seen_ms, 12);
    assert_int_equal(rb[1].hash[0], 1);
    assert_int_equal(rb[2].seq, 10);
    assert_int_equal(rb[2].hash[0], 8);
    free(rb);
    assert_int_equal(ant_peer_witness_rollbacks(f->st, "site-c", &rb, &n), 0);
    assert_int_equal(n, 0);
    free(rb);
    assert_int_equal(ant_peer_witness_rollbacks(f->st, "bad name!", &rb, &n), -EINVAL);
    /* append-only: the tables refuse changes, also by hand; a rollback row names a recorded
     * checkpoint */
    sqlite3 *db = NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL), SQLITE_OK);
    static const char *const refused[] = {
        "DELETE FROM peer_witness",
        "UPDATE peer_witness SET seq = 1",
        "DELETE FROM peer_witness_rollback",
        "UPDATE peer_witness_rollback SET highest = 99",
        "INSERT INTO peer_witness_rollback VALUES('site-a', 12, zeroblob(32), 20, 1)",
        "INSERT INTO peer_witness_rollback SELECT peer, seq, hash, seq, 1 FROM peer_witness",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(refused); i++) {
        assert_int_not_equal(sqlite3_exec(db, refused[i], NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);
}

static void test_witness_upgrade_from_step8(void **state)
{
    struct fx *f = *state;
    struct ant_store *old = NULL;
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old.db", 8), 0);
    assert_int_equal(ant_store_open(f->dirfd, "old.db", 0, &old), 0);
    struct ant_witness_result w;
    struct ant_audit_ckpt c = ckpt(3, 7, 0);
    assert_int_equal(ant_peer_witness_record(old, "site-a", &c, 0, 0, &w), 0);
    assert_true(w.added);
    ant_store_close(old);
}

/* A record made before step 10 (no table of rollbacks) stays, and a rollback to one of its
 * checkpoints is recorded after the upgrade. */
static void test_witness_upgrade_from_step9_keeps_rows(void **state)
{
    struct fx *f = *state;
    struct ant_store *old = NULL;
    sqlite3 *db = NULL;
    char path[4096];
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old9.db", 9), 0);
    snprintf(path, sizeof(path), "%s/old9.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO peer_witness VALUES('site-a', 4, zeroblob(32), 1,"
                                  " 0, zeroblob(64), 1);"
                                  "INSERT INTO peer_witness VALUES('site-a', 9, randomblob(32), 2,"
                                  " 4, zeroblob(64), 2);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ant_store_open(f->dirfd, "old9.db", 0, &old), 0);
    int64_t top = 0;
    assert_int_equal(ant_peer_witness_top(old, "site-a", &top), 0);
    assert_int_equal(top, 9);
    struct ant_audit_ckpt c = ckpt(4, 0, 0);
    struct ant_witness_result w;
    assert_int_equal(ant_peer_witness_record(old, "site-a", &c, top, 0, &w), 0);
    assert_true(!w.added && w.rollback);
    struct ant_witness_rollback *rb = NULL;
    size_t n = 0;
    assert_int_equal(ant_peer_witness_rollbacks(old, "site-a", &rb, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rb[0].seq, 4);
    assert_int_equal(rb[0].highest, 9);
    free(rb);
    ant_store_close(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peer_add_get_list_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_add_refuses_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_is_accepted_once_and_purged_after_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_matches_on_body_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_records_and_detects_conflicts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_witness_upgrade_from_step8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_upgrade_from_step9_keeps_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_evicts_least_recently_used_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_grace_keeps_recent_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_limit_zero_evicts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_evict_empty_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_evict_missing_file_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_evict_never_unlinks_outside_fed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_evicts_past_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_upgrade_from_step6_keeps_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fed_cache_bytes_and_remote_jobs_running, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
