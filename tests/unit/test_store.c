/* policy/store.h: opening and migrations, the pool, tenants, principals, API keys, catalog. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "policy/store.h"
#include "tests/unit/testutil.h"

struct fx {
    char *dir;
    int dirfd;
    struct ant_store *st;
};

/* A second, raw connection for edits the API does not offer; closed at teardown. */
static sqlite3 *g_raw;

static sqlite3 *raw_db(struct fx *f)
{
    char path[4096];
    if (g_raw == NULL) {
        snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
        assert_int_equal(sqlite3_open(path, &g_raw), SQLITE_OK);
    }
    return g_raw;
}

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
    sqlite3_close(g_raw);
    g_raw = NULL;
    ant_store_close(f->st);
    close(f->dirfd);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void test_store_create_refuses_existing_file(void **state)
{
    struct fx *f = *state;
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", ANT_STORE_CREATE, &st), -EEXIST);
    assert_null(st);
}

static void test_store_open_missing_file_is_enoent(void **state)
{
    struct fx *f = *state;
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "missing.db", 0, &st), -ENOENT);
    assert_null(st);
}

static void test_store_migrations_set_user_version_and_reopen(void **state)
{
    struct fx *f = *state;
    struct ant_store *st = NULL;
    assert_true(ant_store_schema_latest() >= 1);
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), 0);
    json_t *a = NULL;
    assert_int_equal(ant_store_tenant_list(st, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    ant_store_close(st);

    char path[4096];
    snprintf(path, sizeof(path), "%s/antenna.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), ant_store_schema_latest());
    sqlite3_finalize(s);
    /* A schema newer than the binary is refused rather than misread. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ant_store_open(f->dirfd, "antenna.db", 0, &st), -ENOTSUP);
}

/* A site made by an older antenna (schema step 5: stage jobs always name a local dataset) is
 * upgraded in place by step 6: its jobs and their files keep every column, the foreign keys
 * still hold, and the new rule (exactly one of a local dataset and a peer) is enforced. */
static void test_store_upgrade_from_step5_keeps_stage_jobs(void **state)
{
    struct fx *f = *state;
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    struct ant_store *st = NULL;
    assert_true(ant_store_schema_latest() >= 6);
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old.db", 99), -EINVAL);
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old.db", 5), 0);
    assert_int_equal(ant_store_create_at_step(f->dirfd, "old.db", 5), -EEXIST);

    snprintf(path, sizeof(path), "%s/old.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 5);
    sqlite3_finalize(s);
    /* step 5's stage_jobs refuses a job without a dataset: the column is NOT NULL there */
    const char *fill =
        "PRAGMA foreign_keys=ON;"
        "INSERT INTO tenants VALUES('lab', 1);"
        "INSERT INTO datasets(id, tenant_id, name, classification, created)"
        "  VALUES('ds1', 'lab', 'genomes', 'sensitive', 2);"
        "INSERT INTO stage_jobs(id, tenant_id, principal_id, dataset_id, mode, paths, state,"
        "  files_total, files_done, bytes_total, bytes_done, scratch_bytes, ttl_s, created,"
        "  started, finished, expires)"
        "  VALUES('job1', 'lab', 'alice', 'ds1', 'decrypt', '[\"a\"]', 'ready', 2, 2, 300, 300,"
        "  300, 3600, 10, 11, 12, 3610);"
        "INSERT INTO stage_job_files(job_id, idx, file_id, storage_id, path, size, sha256,"
        "  state, bytes_done)"
        "  VALUES('job1', 0, 'f0', 's0', 'a/x', 100, zeroblob(32), 'done', 100),"
        "        ('job1', 1, 'f1', 's1', 'a/y', 200, zeroblob(32), 'done', 200);";
    assert_int_equal(sqlite3_exec(db, fill, NULL, NULL, NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO stage_jobs(id, tenant_id, principal_id, mode,"
                                      " state, ttl_s, created, expires) VALUES('j', 'lab', 'a',"
                                      " 'decrypt', 'queued', 1, 1, 2)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
    db = NULL;

    assert_int_equal(ant_store_open(f->dirfd, "old.db", 0, &st), 0);
    ant_store_close(st);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), ant_store_schema_latest());
    sqlite3_finalize(s);
    /* the job kept every column, and gained empty federation columns */
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT dataset_id, state, files_done, bytes_done,"
                                        " scratch_bytes, started, expires, paths, peer_id,"
                                        " transfer_id FROM stage_jobs WHERE id = 'job1'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ds1");
    assert_string_equal((const char *)sqlite3_column_text(s, 1), "ready");
    assert_int_equal(sqlite3_column_int64(s, 2), 2);
    assert_int_equal(sqlite3_column_int64(s, 3), 300);
    assert_int_equal(sqlite3_column_int64(s, 4), 300);
    assert_int_equal(sqlite3_column_int64(s, 5), 11);
    assert_int_equal(sqlite3_column_int64(s, 6), 3610);
    assert_string_equal((const char *)sqlite3_column_text(s, 7), "[\"a\"]");
    assert_int_equal(sqlite3_column_type(s, 8), SQLITE_NULL);
    assert_int_equal(sqlite3_column_type(s, 9), SQLITE_NULL);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), sum(size) FROM stage_job_files"
                                        " WHERE job_id = 'job1' AND state = 'done'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(s, 0), 2);
    assert_int_equal(sqlite3_column_int64(s, 1), 300);
    sqlite3_finalize(s);
    /* nothing dangles, and the file table points at the renamed job table */
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO stage_job_files(job_id, idx, file_id,"
                                      " storage_id, path, size, sha256) VALUES('nojob', 0, 'f',"
                                      " 's', 'p', 1, zeroblob(32))",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    /* step 6's rule: a job names a local dataset or a peer's, exactly one */
    const char *both = "INSERT INTO stage_jobs(id, tenant_id, principal_id, dataset_id, mode,"
                       " state, ttl_s, created, expires, peer_id, remote_dataset, transfer_id)"
                       " VALUES('j2', 'lab', 'a', 'ds1', 'decrypt', 'queued', 1, 1, 2, 'site-a',"
                       " 'r', 't')";
    assert_int_not_equal(sqlite3_exec(db, both, NULL, NULL, NULL), SQLITE_OK);
    const char *remote = "INSERT INTO stage_jobs(id, tenant_id, principal_id, mode, state, ttl_s,"
                         " created, expires, peer_id, remote_dataset, transfer_id)"
                         " VALUES('j3', 'lab', 'a', 'decrypt', 'queued', 1, 1, 2, 'site-a', 'r',"
                         " 't')";
    assert_int_equal(sqlite3_exec(db, remote, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_store_rejects_non_database(void **state)
{
    struct fx *f = *state;
    struct ant_store *st = NULL;
    assert_int_equal(ant_write_new_file(f->dirfd, "junk.db", 0600, "not a database at all....", 25),
                     0);
    assert_int_equal(ant_store_open(f->dirfd, "junk.db", 0, &st), -EBADMSG);
}

static void test_tenant_and_principal_names_validated(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), -EEXIST);
    assert_int_equal(ant_store_tenant_add(f->st, "../x"), -EINVAL);
    assert_int_equal(ant_store_tenant_add(f->st, ""), -EINVAL);
    /* in the alphabet, but shaped like a credential: audit events would refuse it */
    assert_int_equal(
        ant_store_tenant_add(f->st, "ak_0123456789abcdef_00112233445566778899aabbccddeeff"),
        -EINVAL);
    assert_int_equal(ant_store_principal_add(f->st, "eyJhbGci.eyJzdWIi", "acme", ANT_ROLE_OWNER),
                     -EINVAL);
    assert_true(ant_name_is_valid("eyJhbGci.sig") && ant_name_is_valid("ak_01_23"));
    assert_int_equal(ant_store_principal_add(f->st, "alice", "acme", ANT_ROLE_OWNER), 0);
    assert_int_equal(ant_store_principal_add(f->st, "alice", "acme", ANT_ROLE_READER), -EEXIST);
    assert_int_equal(ant_store_principal_add(f->st, "bob", "nope", ANT_ROLE_READER), -ENOENT);
    /* Tenant roles need a tenant. */
    assert_int_equal(ant_store_principal_add(f->st, "carol", NULL, ANT_ROLE_READER), -EINVAL);
    assert_int_equal(ant_store_principal_add(f->st, "root", NULL, ANT_ROLE_ADMIN), 0);
    json_t *a = NULL;
    assert_int_equal(ant_store_principal_list(f->st, "acme", ANT_ROLE_OWNER, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    assert_int_equal(ant_store_principal_list(f->st, NULL, 0, &a), 0);
    assert_int_equal(json_array_size(a), 2);
    json_decref(a);
    unsigned r = 0;
    assert_int_equal(ant_role_parse("auditor", &r), 0);
    assert_int_equal(r, ANT_ROLE_AUDITOR);
    assert_int_equal(ant_role_parse("root", &r), -EINVAL);
}

static void test_bootstrap_admin_key_authenticates(void **state)
{
    struct fx *f = *state;
    struct ant_buf key = ANT_BUF_INIT(256);
    struct ant_principal p;
    assert_int_equal(ant_store_bootstrap_admin(f->st, "admin", &key), 0);
    assert_int_equal(key.len, ANT_API_KEY_LEN);
    assert_memory_equal(key.p, "ak_", 3);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&key), ant_now_unix(), &p), 0);
    assert_string_equal(p.id, "admin");
    assert_string_equal(p.tenant, "");
    assert_int_equal(p.roles, ANT_ROLE_ADMIN);
    assert_int_equal(strlen(p.key_id), ANT_KEY_ID_LEN);
    assert_memory_equal(p.key_id, key.p + 3, ANT_KEY_ID_LEN);
    /* A second bootstrap of the same name fails and leaves no half-made principal. */
    struct ant_buf key2 = ANT_BUF_INIT(256);
    assert_int_equal(ant_store_bootstrap_admin(f->st, "admin", &key2), -EEXIST);
    assert_int_equal(key2.len, 0);
    ant_buf_wipe_fini(&key);
    ant_buf_wipe_fini(&key2);
}

static void test_key_unknown_revoked_expired_all_rejected_alike(void **state)
{
    struct fx *f = *state;
    struct ant_buf good = ANT_BUF_INIT(256), exp = ANT_BUF_INIT(256);
    char id[ANT_KEY_ID_LEN + 1], exp_id[ANT_KEY_ID_LEN + 1];
    struct ant_principal p;
    int64_t now = ant_now_unix();
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_principal_add(f->st, "alice", "acme", ANT_ROLE_READER), 0);
    assert_int_equal(ant_store_key_create(f->st, "alice", 0, &good, id), 0);
    assert_int_equal(ant_store_key_create(f->st, "alice", 60, &exp, exp_id), 0);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&good), now, &p), 0);
    assert_string_equal(p.id, "alice");
    assert_string_equal(p.tenant, "acme");
    /* expired: the same answer as unknown */
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&exp), now, &p), 0);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&exp), now + 61, &p),
                     -EKEYREJECTED);
    /* wrong secret on a real id */
    uint8_t *bad = test_memdup(good.p, good.len);
    bad[good.len - 1] = bad[good.len - 1] == 'a' ? 'b' : 'a';
    assert_int_equal(
        ant_store_authenticate_key(f->st, (struct ant_bytes){bad, good.len}, now, &p),
        -EKEYREJECTED);
    /* unknown id */
    memcpy(bad, good.p, good.len);
    bad[3] = bad[3] == 'a' ? 'b' : 'a';
    assert_int_equal(
        ant_store_authenticate_key(f->st, (struct ant_bytes){bad, good.len}, now, &p),
        -EKEYREJECTED);
    free(bad);
    /* every truncation, on exact-size copies */
    for (size_t n = 0; n < good.len; n++) {
        uint8_t *cut = test_memdup(good.p, n);
        assert_int_equal(ant_store_authenticate_key(f->st, (struct ant_bytes){cut, n}, now, &p),
                         -EKEYREJECTED);
        free(cut);
    }
    /* a disabled principal's keys stop working at once */
    assert_int_equal(ant_store_principal_disable(f->st, "alice"), 0);
    assert_int_equal(ant_store_principal_disable(f->st, "alice"), -EALREADY);
    assert_int_equal(ant_store_principal_disable(f->st, "nobody"), -ENOENT);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&good), now, &p),
                     -EKEYREJECTED);
    assert_int_equal(ant_store_principal_get(f->st, "alice", &p), -ENOENT);
    assert_int_equal(sqlite3_exec(raw_db(f), "UPDATE principals SET disabled_at = NULL",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&good), now, &p), 0);
    /* revoked */
    assert_int_equal(ant_store_key_revoke(f->st, id), 0);
    assert_int_equal(ant_store_key_revoke(f->st, id), -EALREADY);
    assert_int_equal(ant_store_key_revoke(f->st, "0123456789abcdef"), -ENOENT);
    assert_int_equal(ant_store_authenticate_key(f->st, ant_buf_view(&good), now, &p),
                     -EKEYREJECTED);
    json_t *a = NULL;
    assert_int_equal(ant_store_key_list(f->st, "alice", &a), 0);
    assert_int_equal(json_array_size(a), 2);
    char *dump = json_dumps(a, 0);
    assert_null(strstr(dump, "hash"));
    assert_non_null(strstr(dump, "revoked"));
    free(dump);
    json_decref(a);
    ant_buf_wipe_fini(&good);
    ant_buf_wipe_fini(&exp);
}

static void test_key_revocation_is_immediate_on_other_connections(void **state)
{
    struct fx *f = *state;
    struct ant_store_pool *pool = NULL;
    struct ant_buf key = ANT_BUF_INIT(256);
    char id[ANT_KEY_ID_LEN + 1];
    struct ant_principal p;
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_principal_add(f->st, "alice", "acme", ANT_ROLE_READER), 0);
    assert_int_equal(ant_store_key_create(f->st, "alice", 0, &key, id), 0);
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 2, &pool), 0);
    struct ant_store *c = ant_store_pool_acquire(pool);
    assert_int_equal(ant_store_authenticate_key(c, ant_buf_view(&key), ant_now_unix(), &p), 0);
    assert_int_equal(ant_store_key_revoke(f->st, id), 0);
    assert_int_equal(ant_store_authenticate_key(c, ant_buf_view(&key), ant_now_unix(), &p),
                     -EKEYREJECTED);
    ant_store_pool_release(pool, c);
    ant_store_pool_free(pool);
    ant_buf_wipe_fini(&key);
}

struct pool_arg {
    struct ant_store_pool *pool;
    int errors;
};

static void *pool_worker(void *arg)
{
    struct pool_arg *pa = arg;
    for (int i = 0; i < 50; i++) {
        struct ant_store *st = ant_store_pool_acquire(pa->pool);
        struct ant_principal p;
        if (ant_store_principal_get(st, "alice", &p) != 0) {
            __atomic_add_fetch(&pa->errors, 1, __ATOMIC_RELAXED);
        }
        ant_store_pool_release(pa->pool, st);
    }
    return NULL;
}

static void test_pool_serves_more_threads_than_connections(void **state)
{
    struct fx *f = *state;
    struct pool_arg pa = {NULL, 0};
    pthread_t th[8];
    assert_int_equal(ant_store_tenant_add(f->st, "acme"), 0);
    assert_int_equal(ant_store_principal_add(f->st, "alice", "acme", ANT_ROLE_READER), 0);
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 0, &pa.pool), -EINVAL);
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 3, &pa.pool), 0);
    for (unsigned i = 0; i < ANT_ARRAY_LEN(th); i++) {
        assert_int_equal(pthread_create(&th[i], NULL, pool_worker, &pa), 0);
    }
    for (unsigned i = 0; i < ANT_ARRAY_LEN(th); i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(pa.errors, 0);
    ant_store_pool_free(pa.pool);
}

static void make_tenants(struct ant_store *st)
{
    assert_int_equal(ant_store_tenant_add(st, "acme"), 0);
    assert_int_equal(ant_store_tenant_add(st, "beta"), 0);
    assert_int_equal(ant_store_principal_add(st, "alice", "acme", ANT_ROLE_OWNER), 0);
    assert_int_equal(ant_store_principal_add(st, "bob", "beta", ANT_ROLE_READER), 0);
}

static void make_dataset(struct ant_store *st, const char *name, enum ant_ds_class cls,
                         char id[ANT_ID_MAX + 1])
{
    static const char *const regions[] = {"EU-MD", "EU-DE"};
    static const char *const duo[] = {"DUO:0000006"};
    struct ant_dataset_spec spec = {"acme", name, "a test set", cls, regions, 2, duo, 1};
    assert_int_equal(ant_store_dataset_create(st, &spec, id), 0);
}

static void test_dataset_create_get_list_show(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1];
    struct ant_dataset d;
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_SENSITIVE, id);
    assert_int_equal(strncmp(id, "ds_", 3), 0);
    assert_int_equal(ant_store_dataset_get(f->st, id, &d), 0);
    assert_string_equal(d.tenant, "acme");
    assert_string_equal(d.name, "cohort");
    assert_int_equal(d.state, ANT_DS_DRAFT);
    assert_int_equal(d.classification, ANT_DS_SENSITIVE);
    assert_int_equal(d.nregions, 2);
    assert_string_equal(d.regions[0], "EU-DE");
    assert_int_equal(d.nduo, 1);
    assert_string_equal(d.duo[0], "DUO:0000006");
    assert_false(d.has_manifest);
    assert_int_equal(ant_store_dataset_get(f->st, "ds_nope", &d), -ENOENT);

    char id2[ANT_ID_MAX + 1];
    struct ant_dataset_spec dup = {"acme", "cohort", NULL, ANT_DS_OPEN, NULL, 0, NULL, 0};
    assert_int_equal(ant_store_dataset_create(f->st, &dup, id2), -EEXIST);
    struct ant_dataset_spec nt = {"nope", "x", NULL, ANT_DS_OPEN, NULL, 0, NULL, 0};
    assert_int_equal(ant_store_dataset_create(f->st, &nt, id2), -ENOENT);
    static const char *const bad_duo[] = {"DUO:9999999"};
    struct ant_dataset_spec bd = {"acme", "y", NULL, ANT_DS_OPEN, NULL, 0, bad_duo, 1};
    assert_int_equal(ant_store_dataset_create(f->st, &bd, id2), -EINVAL);
    static const char *const worse_duo[] = {"'; DROP TABLE x"};
    bd.duo = worse_duo;
    assert_int_equal(ant_store_dataset_create(f->st, &bd, id2), -EINVAL);
    /* the failed creations left nothing behind */
    json_t *a = NULL;
    assert_int_equal(ant_store_dataset_list(f->st, NULL, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    assert_int_equal(ant_store_dataset_list(f->st, "beta", &a), 0);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
    json_t *o = NULL;
    assert_int_equal(ant_store_dataset_show(f->st, id, &o), 0);
    assert_string_equal(json_string_value(json_object_get(o, "classification")), "sensitive");
    assert_int_equal(json_array_size(json_object_get(o, "regions")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "duo"), 0)),
                        "DUO:0000006");
    json_decref(o);
    assert_int_equal(ant_store_dataset_show(f->st, "ds_nope", &o), -ENOENT);
}

static void test_dataset_state_moves_draft_published_withdrawn(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1];
    uint8_t m[32] = {1, 2, 3};
    struct ant_dataset d;
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_OPEN, id);
    assert_int_equal(ant_store_dataset_withdraw(f->st, id), -EINVAL);
    assert_int_equal(ant_store_dataset_publish(f->st, id, m), 0);
    assert_int_equal(ant_store_dataset_publish(f->st, id, m), -EINVAL);
    assert_int_equal(ant_store_dataset_get(f->st, id, &d), 0);
    assert_int_equal(d.state, ANT_DS_PUBLISHED);
    assert_true(d.has_manifest);
    assert_memory_equal(d.manifest_sha256, m, 32);
    assert_int_equal(ant_store_dataset_withdraw(f->st, id), 0);
    assert_int_equal(ant_store_dataset_get(f->st, id, &d), 0);
    assert_int_equal(d.state, ANT_DS_WITHDRAWN);
    assert_int_equal(ant_store_dataset_publish(f->st, "ds_nope", m), -ENOENT);
}

static void test_files_only_into_drafts_with_safe_paths(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1], fid[ANT_ID_MAX + 1];
    uint8_t m[32] = {9};
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_OPEN, id);
    struct ant_file_spec fs = {id, "reads/a.bam", 1234, {1}, {2}};
    assert_int_equal(ant_store_file_add(f->st, &fs, fid), 0);
    assert_int_equal(strncmp(fid, "f_", 2), 0);
    assert_int_equal(ant_store_file_add(f->st, &fs, fid), -EEXIST);
    static const char *const bad[] = {"",      "/etc/passwd", "a/../../b", "..",     "a//b",
                                      "a/./b", "a/",          "a\\b",      "a\nb",   "."};
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        fs.path = bad[i];
        assert_int_equal(ant_store_file_add(f->st, &fs, fid), -EINVAL);
    }
    assert_true(ant_path_is_valid("a/..b/c.d"));
    /* what the audit log would refuse as a credential is no path (a 400, not a failed append) */
    assert_false(ant_path_is_valid("d/x-----BEGIN CERTIFICATE.txt"));
    assert_false(ant_path_is_valid("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.sig"));
    assert_true(ant_path_is_valid("sample_0123456789abcdef0123456789abcdef.bam")); /* a hash */
    assert_true(ant_path_is_valid("notes/bearer token expired.txt"));
    fs.path = "b.txt";
    fs.dataset_id = "ds_nope";
    assert_int_equal(ant_store_file_add(f->st, &fs, fid), -ENOENT);
    struct ant_file file;
    assert_int_equal(ant_store_file_get(f->st, id, "reads/a.bam", &file), 0);
    assert_int_equal(file.size, 1234);
    assert_int_equal(file.sha256_plain[0], 1);
    assert_int_equal(file.sha256_c4gh[0], 2);
    assert_int_equal(ant_store_file_get(f->st, id, file.id, &file), 0);
    assert_int_equal(ant_store_file_get(f->st, id, "nope", &file), -ENOENT);
    assert_int_equal(ant_store_dataset_publish(f->st, id, m), 0);
    fs.dataset_id = id;
    assert_int_equal(ant_store_file_add(f->st, &fs, fid), -EINVAL);
    json_t *a = NULL;
    assert_int_equal(ant_store_file_list(f->st, id, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "path")),
                        "reads/a.bam");
    json_decref(a);
}

static void add_file(struct ant_store *st, const char *ds, const char *path, int want)
{
    char fid[ANT_ID_MAX + 1];
    struct ant_file_spec fs = {ds, path, 7, {1}, {2}};
    assert_int_equal(ant_store_file_add(st, &fs, fid), want);
}

static void expect_conflict(struct ant_store *st, const char *ds, const char *path, int want,
                            const char *with)
{
    char c[ANT_PATH_MAX + 1] = "unset";
    assert_int_equal(ant_store_file_conflict(st, ds, path, c), want);
    if (with != NULL) {
        assert_string_equal(c, with);
    }
}

static void test_files_never_both_a_file_and_its_folder(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1], other[ANT_ID_MAX + 1];
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_OPEN, id);
    make_dataset(f->st, "other", ANT_DS_OPEN, other);
    add_file(f->st, id, "a/b/c", 0);
    add_file(f->st, id, "top", 0);
    /* a parent folder of an existing file, at each depth */
    add_file(f->st, id, "a/b", -EISDIR);
    add_file(f->st, id, "a", -EISDIR);
    expect_conflict(f->st, id, "a/b", -EISDIR, "a/b/c");
    expect_conflict(f->st, id, "a", -EISDIR, "a/b/c");
    /* beneath an existing file, one level or more */
    add_file(f->st, id, "a/b/c/d", -ENOTDIR);
    add_file(f->st, id, "top/x/y", -ENOTDIR);
    expect_conflict(f->st, id, "a/b/c/d/e", -ENOTDIR, "a/b/c");
    expect_conflict(f->st, id, "top/x", -ENOTDIR, "top");
    expect_conflict(f->st, id, "a/b/c", -EEXIST, "a/b/c");
    add_file(f->st, id, "a/b/c", -EEXIST);
    /* a parent folder ends at a '/': shared prefixes that are not folders are fine, and so
     * are names that differ only in case (bytes compare exactly) */
    static const char *const fine[] = {"a/bc",  "a/b/cd", "a/b/c.d", "a/b-c/d", "a/b/c-",
                                       "top2",  "to",     "A/b",     "a/B",     "Top/x",
                                       "a/b/C/d"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(fine); i++) {
        expect_conflict(f->st, id, fine[i], 0, "unset");
        add_file(f->st, id, fine[i], 0);
    }
    /* "a/b-c" sorts between "a/b" and "a/b/...": the range scan still finds what is beneath
     * "a/b", the first in byte order ('C' < 'c') */
    expect_conflict(f->st, id, "a/b", -EISDIR, "a/b/C/d");
    expect_conflict(f->st, id, "a/b-c", -EISDIR, "a/b-c/d");
    /* another dataset's tree is its own */
    add_file(f->st, other, "a/b", 0);
    add_file(f->st, other, "top/x/y", 0);
    expect_conflict(f->st, id, "bad/../x", -EINVAL, "unset");
    /* nothing refused left a row, and the file in the way is untouched */
    json_t *a = NULL;
    assert_int_equal(ant_store_file_list(f->st, id, &a), 0);
    assert_int_equal(json_array_size(a), 2 + ANT_ARRAY_LEN(fine));
    json_decref(a);
    struct ant_file file;
    assert_int_equal(ant_store_file_get(f->st, id, "a/b/c", &file), 0);
    assert_int_equal(file.size, 7);
    assert_int_equal(ant_store_file_get(f->st, id, "a/b", &file), -ENOENT);
    assert_int_equal(ant_store_file_get(f->st, id, "top/x/y", &file), -ENOENT);
}

struct add_arg {
    struct ant_store_pool *pool;
    const char *ds;
    int rc;
};

static void *add_later(void *arg)
{
    struct add_arg *aa = arg;
    char fid[ANT_ID_MAX + 1];
    struct ant_store *st = ant_store_pool_acquire(aa->pool);
    struct ant_file_spec fs = {aa->ds, "x/y", 1, {1}, {2}};
    aa->rc = ant_store_file_add(st, &fs, fid);
    ant_store_pool_release(aa->pool, st);
    return NULL;
}

/* Two adds racing on two connections: the second waits for the first's transaction (BEGIN
 * IMMEDIATE), then sees its row and is refused, instead of both checking before either
 * inserts. */
static void test_file_conflict_check_holds_against_a_concurrent_add(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1], fid[ANT_ID_MAX + 1];
    struct add_arg aa = {NULL, NULL, 1};
    pthread_t th;
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_OPEN, id);
    aa.ds = id;
    assert_int_equal(ant_store_pool_new(f->dirfd, "antenna.db", 1, &aa.pool), 0);
    assert_int_equal(ant_store_begin(f->st), 0);
    struct ant_file_spec fs = {id, "x", 1, {1}, {2}};
    assert_int_equal(ant_store_file_add(f->st, &fs, fid), 0);
    assert_int_equal(pthread_create(&th, NULL, add_later, &aa), 0);
    usleep(200 * 1000); /* the other connection is now waiting for the write lock */
    assert_int_equal(aa.rc, 1);
    assert_int_equal(ant_store_commit(f->st), 0);
    pthread_join(th, NULL);
    assert_int_equal(aa.rc, -ENOTDIR);
    ant_store_pool_free(aa.pool);
    json_t *a = NULL;
    assert_int_equal(ant_store_file_list(f->st, id, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
}

static void expect_set_conflict(const char *const *paths, size_t n, int want, size_t first,
                                size_t second)
{
    size_t i = 99, j = 99;
    assert_int_equal(ant_paths_find_conflict(paths, n, &i, &j), want);
    if (want != 0) {
        assert_int_equal(i, first);
        assert_int_equal(j, second);
    }
}

static void test_paths_find_conflict_in_a_list(void **state)
{
    (void)state;
    static const char *const fine[] = {"a/bc", "a/b/c", "a/b-c", "A/b", "a/b/cd", "a.b", "z"};
    expect_set_conflict(fine, ANT_ARRAY_LEN(fine), 0, 0, 0);
    expect_set_conflict(fine, 0, 0, 0, 0);
    static const char *const parent[] = {"a/b/c", "q", "a/b"};
    expect_set_conflict(parent, ANT_ARRAY_LEN(parent), -EEXIST, 2, 0);
    static const char *const deep[] = {"a/b-c", "a/b/c/d/e", "a/b.x", "a/b/c"};
    expect_set_conflict(deep, ANT_ARRAY_LEN(deep), -EEXIST, 3, 1);
    static const char *const top[] = {"x/y/z", "x"};
    expect_set_conflict(top, ANT_ARRAY_LEN(top), -EEXIST, 1, 0);
    static const char *const twice[] = {"p", "d/e", "p"};
    size_t i = 99, j = 99;
    assert_int_equal(ant_paths_find_conflict(twice, ANT_ARRAY_LEN(twice), &i, &j), -EEXIST);
    assert_true((i == 0 && j == 2) || (i == 2 && j == 0));
}

static void test_grants_create_list_revoke(void **state)
{
    struct fx *f = *state;
    char id[ANT_ID_MAX + 1], gid[ANT_ID_MAX + 1];
    unsigned acts = 0;
    make_tenants(f->st);
    make_dataset(f->st, "cohort", ANT_DS_OPEN, id);
    assert_int_equal(ant_actions_parse_list("read,stage", &acts), 0);
    assert_int_equal(acts, ANT_ACT_READ | ANT_ACT_STAGE);
    assert_int_equal(ant_actions_parse_list("read,admin", &acts), -EINVAL);
    assert_int_equal(ant_actions_parse_list("read,", &acts), -EINVAL);
    assert_int_equal(ant_actions_parse_list("", &acts), -EINVAL);
    struct ant_grant_spec g = {id, ANT_GRANTEE_TENANT, "beta", ANT_ACT_READ, "DUO:0000006",
                               0, 0, "alice"};
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), 0);
    g.actions = ANT_ACT_ADMIN;
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), -EINVAL);
    g.actions = ANT_ACT_READ;
    g.purpose = "DUO:1234567";
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), -EINVAL);
    g.purpose = NULL;
    g.expires = 100; /* in the past */
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), -EINVAL);
    g.expires = 0;
    g.dataset_id = "ds_nope";
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), -ENOENT);
    json_t *a = NULL;
    assert_int_equal(ant_store_grant_list(f->st, id, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_t *o = json_array_get(a, 0);
    char first[ANT_ID_MAX + 1];
    snprintf(first, sizeof(first), "%s", json_string_value(json_object_get(o, "id")));
    assert_string_equal(json_string_value(json_object_get(o, "state")), "active");
    assert_string_equal(json_string_value(json_object_get(o, "tenant")), "acme");
    json_decref(a);
    assert_int_equal(ant_store_grant_revoke(f->st, first, 0), 0);
    assert_int_equal(ant_store_grant_revoke(f->st, first, 0), -EALREADY);
    assert_int_equal(ant_store_grant_revoke(f->st, "gr_nope", 0), -ENOENT);
    assert_int_equal(ant_store_grant_show(f->st, first, &o), 0);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "revoked");
    json_decref(o);
    assert_int_equal(ant_store_grant_list_tenant(f->st, "acme", &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
}

static void test_dataset_list_visible_follows_tenant_grants_and_class(void **state)
{
    struct fx *f = *state;
    char d_open[ANT_ID_MAX + 1], d_int[ANT_ID_MAX + 1], d_draft[ANT_ID_MAX + 1];
    char gid[ANT_ID_MAX + 1];
    uint8_t m[32] = {0};
    struct ant_principal alice, bob, root;
    json_t *a = NULL;
    make_tenants(f->st);
    assert_int_equal(ant_store_principal_add(f->st, "root", NULL, ANT_ROLE_ADMIN), 0);
    make_dataset(f->st, "open", ANT_DS_OPEN, d_open);
    make_dataset(f->st, "internal", ANT_DS_INTERNAL, d_int);
    make_dataset(f->st, "draft", ANT_DS_INTERNAL, d_draft);
    assert_int_equal(ant_store_dataset_publish(f->st, d_open, m), 0);
    assert_int_equal(ant_store_dataset_publish(f->st, d_int, m), 0);
    assert_int_equal(ant_store_principal_get(f->st, "alice", &alice), 0);
    assert_int_equal(ant_store_principal_get(f->st, "bob", &bob), 0);
    assert_int_equal(ant_store_principal_get(f->st, "root", &root), 0);
    int64_t now = ant_now_unix();
    assert_int_equal(ant_store_dataset_list_visible(f->st, &alice, now, &a), 0);
    assert_int_equal(json_array_size(a), 3);
    json_decref(a);
    assert_int_equal(ant_store_dataset_list_visible(f->st, &bob, now, &a), 0);
    assert_int_equal(json_array_size(a), 1); /* only the open one */
    json_decref(a);
    assert_int_equal(ant_store_dataset_list_visible(f->st, &root, now, &a), 0);
    assert_int_equal(json_array_size(a), 2); /* no drafts */
    json_decref(a);
    struct ant_grant_spec g = {d_int, ANT_GRANTEE_PRINCIPAL, "bob", ANT_ACT_READ, NULL,
                               0, 0, "alice"};
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), 0);
    g.dataset_id = d_draft;
    assert_int_equal(ant_store_grant_create(f->st, &g, gid), 0);
    now = ant_now_unix(); /* a grant starts when made: `now` from before may be a second early */
    assert_int_equal(ant_store_dataset_list_visible(f->st, &bob, now, &a), 0);
    assert_int_equal(json_array_size(a), 2); /* the granted draft stays invisible */
    json_decref(a);
    assert_int_equal(ant_store_dataset_list_visible(f->st, &bob, now + 1000000000, &a), 0);
    assert_int_equal(json_array_size(a), 2);
    json_decref(a);
}

/* The principal the claims name, for a token verified as the catalog's idp.example issuer. */
static int idp_principal(struct fx *f, const json_t *c, struct ant_principal *p)
{
    return ant_store_oidc_principal(f->st, "https://idp.example", "antenna", "idp.jwks", c, p);
}

static void test_oidc_claims_map_to_principal(void **state)
{
    struct fx *f = *state;
    struct ant_principal p;
    make_tenants(f->st);
    struct ant_oidc_issuer iss = {"https://idp.example", "idp.jwks", "antenna", "preferred_username",
                                  "tenant"};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), -EEXIST);
    json_t *c = json_pack("{s:s, s:s}", "preferred_username", "alice", "tenant", "acme");
    assert_int_equal(idp_principal(f, c, &p), 0);
    assert_string_equal(p.id, "alice");
    assert_string_equal(p.key_id, "oidc:https://idp.example");
    /* an issuer not in the catalog, or verified with another audience or JWKS than the catalog
     * now names: the caller's copy is stale */
    assert_int_equal(ant_store_oidc_principal(f->st, "https://other", "antenna", "idp.jwks", c, &p),
                     -ESTALE);
    assert_int_equal(
        ant_store_oidc_principal(f->st, "https://idp.example", "other", "idp.jwks", c, &p),
        -ESTALE);
    assert_int_equal(
        ant_store_oidc_principal(f->st, "https://idp.example", "antenna", "old.jwks", c, &p),
        -ESTALE);
    json_object_set_new(c, "tenant", json_string("beta"));
    assert_int_equal(idp_principal(f, c, &p), -EKEYREJECTED);
    json_object_del(c, "tenant");
    assert_int_equal(idp_principal(f, c, &p), -EKEYREJECTED);
    json_object_set_new(c, "tenant", json_string("acme"));
    json_object_set_new(c, "preferred_username", json_string("mallory"));
    assert_int_equal(idp_principal(f, c, &p), -EKEYREJECTED);
    json_object_set_new(c, "preferred_username", json_integer(7));
    assert_int_equal(idp_principal(f, c, &p), -EKEYREJECTED);
    json_t *a = NULL;
    assert_int_equal(ant_store_oidc_issuer_list(f->st, &a), 0);
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);
    /* removed: its tokens no longer map; a second removal finds nothing */
    json_object_set_new(c, "preferred_username", json_string("alice"));
    assert_int_equal(idp_principal(f, c, &p), 0);
    assert_int_equal(ant_store_oidc_issuer_remove(f->st, "https://idp.example"), 0);
    assert_int_equal(ant_store_oidc_issuer_remove(f->st, "https://idp.example"), -ENOENT);
    assert_int_equal(ant_store_oidc_issuer_remove(f->st, ""), -EINVAL);
    assert_int_equal(idp_principal(f, c, &p), -ESTALE);
    json_decref(c);
    assert_int_equal(ant_store_oidc_issuer_list(f->st, &a), 0);
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
}

/* The audited credential names the issuer whole, or by its SHA-256 when too long to fit: two
 * issuers sharing a long prefix are never recorded alike. */
static void test_oidc_credential_never_cut(void **state)
{
    struct fx *f = *state;
    struct ant_principal p;
    char fits[ANT_CREDENTIAL_MAX - 5 + 1], long_a[300], long_b[300];
    make_tenants(f->st);
    memset(fits, 'a', sizeof(fits) - 1);
    memcpy(fits, "https://", 8);
    fits[sizeof(fits) - 1] = '\0';
    memset(long_a, 'b', sizeof(long_a) - 1);
    memcpy(long_a, "https://", 8);
    long_a[sizeof(long_a) - 1] = '\0';
    memcpy(long_b, long_a, sizeof(long_b));
    long_b[sizeof(long_b) - 2] = 'c'; /* differs in its last byte only */
    const char *issuers[] = {fits, long_a, long_b};
    for (size_t i = 0; i < 3; i++) {
        struct ant_oidc_issuer iss = {issuers[i], "idp.jwks", "antenna", "preferred_username",
                                      "tenant"};
        assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    }
    json_t *c = json_pack("{s:s, s:s}", "preferred_username", "alice", "tenant", "acme");
    assert_int_equal(ant_store_oidc_principal(f->st, fits, "antenna", "idp.jwks", c, &p), 0);
    assert_int_equal(strlen(p.key_id), ANT_CREDENTIAL_MAX);
    assert_string_equal(p.key_id + 5, fits);
    char ka[ANT_CREDENTIAL_MAX + 1], want[12 + 64 + 1];
    uint8_t d[crypto_hash_sha256_BYTES];
    assert_int_equal(ant_store_oidc_principal(f->st, long_a, "antenna", "idp.jwks", c, &p), 0);
    memcpy(ka, p.key_id, sizeof(ka));
    crypto_hash_sha256(d, (const unsigned char *)long_a, strlen(long_a));
    memcpy(want, "oidc:sha256:", 12);
    ant_hex_encode(d, sizeof(d), want + 12);
    assert_string_equal(ka, want);
    assert_int_equal(ant_store_oidc_principal(f->st, long_b, "antenna", "idp.jwks", c, &p), 0);
    assert_string_not_equal(p.key_id, ka);
    assert_int_equal(strncmp(p.key_id, "oidc:sha256:", 12), 0);
    json_decref(c);
}

#include <sodium.h>

#include "crypto/keys.h"
#include "crypto/token.h"
#include "policy/auth.h"

static char *sign_token(const struct ant_signkey *k, const char *iss, const char *aud,
                        const char *user, const char *tenant, int64_t exp)
{
    struct ant_buf out = ANT_BUF_INIT(ANT_TOKEN_MAX + 1);
    json_t *c = json_pack("{s:s, s:s, s:s, s:I}", "iss", iss, "aud", aud, "preferred_username",
                          user, "exp", (json_int_t)exp);
    if (tenant != NULL) {
        json_object_set_new(c, "tenant", json_string(tenant));
    }
    assert_int_equal(ant_token_sign_eddsa(k, "k1", c, "JWT", &out), 0);
    json_decref(c);
    size_t len = 0;
    return (char *)ant_buf_take(&out, &len);
}

/* idp.jwks in the site folder: idp's Ed25519 public key as the one key "k1". */
static void write_jwks(struct fx *f, const struct ant_signkey *idp)
{
    char x[64], doc[256];
    sodium_bin2base64(x, sizeof(x), ant_signkey_public(idp), ANT_KEY_LEN,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int n = snprintf(doc, sizeof(doc),
                     "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k1\",\"x\":\"%s\"}]}",
                     x);
    assert_int_equal(ant_write_new_file(f->dirfd, "idp.jwks", 0600, doc, (size_t)n), 0);
}

static void test_oidc_bearer_tokens_map_to_principals(void **state)
{
    struct fx *f = *state;
    struct ant_signkey *idp = NULL, *other = NULL;
    struct ant_oidc *o = NULL;
    struct ant_principal p;
    struct ant_diag d = {{0}};
    int64_t now = ant_now_unix();
    make_tenants(f->st);
    assert_int_equal(ant_signkey_generate(&idp), 0);
    assert_int_equal(ant_signkey_generate(&other), 0);
    write_jwks(f, idp);
    /* no issuer: a valid empty set, and tokens are rejected */
    assert_int_equal(ant_oidc_load(f->st, f->dirfd, &o, &d), 0);
    assert_int_equal(ant_oidc_count(o), 0);
    ant_oidc_free(o);
    o = NULL;
    struct ant_oidc_issuer iss = {"https://idp.example", "idp.jwks", "antenna",
                                  "preferred_username", "tenant"};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    assert_int_equal(ant_oidc_load(f->st, f->dirfd, &o, &d), 0);
    assert_int_equal(ant_oidc_count(o), 1);

    char *t = sign_token(idp, "https://idp.example", "antenna", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), 0);
    assert_string_equal(p.id, "alice");
    assert_string_equal(p.tenant, "acme");
    assert_string_equal(p.key_id, "oidc:https://idp.example");
    /* expired */
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now + 1000, &p), -EKEYREJECTED);
    /* without OIDC configured */
    assert_int_equal(ant_auth_bearer(f->st, NULL, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    free(t);
    static const struct {
        const char *iss, *aud, *user, *tenant;
        bool other_key;
    } bad[] = {
        {"https://evil.example", "antenna", "alice", "acme", false},
        {"https://idp.example", "someone-else", "alice", "acme", false},
        {"https://idp.example", "antenna", "alice", "beta", false},
        {"https://idp.example", "antenna", "mallory", "acme", false},
        {"https://idp.example", "antenna", "alice", NULL, false},
        {"https://idp.example", "antenna", "alice", "acme", true},
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        t = sign_token(bad[i].other_key ? other : idp, bad[i].iss, bad[i].aud, bad[i].user,
                       bad[i].tenant, now + 300);
        assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
        free(t);
    }
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str("garbage"), now, &p), -EKEYREJECTED);
    ant_oidc_free(o);
    o = NULL;
    /* an issuer whose JWKS is missing fails the load, naming it */
    struct ant_oidc_issuer broken = {"https://broken.example", "nope.jwks", "antenna", "sub", NULL};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &broken), 0);
    assert_int_equal(ant_oidc_load(f->st, f->dirfd, &o, &d), -ENOENT);
    assert_non_null(strstr(d.msg, "broken.example"));
    ant_signkey_free(idp);
    ant_signkey_free(other);
}

/* The tenants, and an identity provider's key whose JWKS is idp.jwks in the site folder. */
static struct ant_signkey *oidc_idp(struct fx *f)
{
    struct ant_signkey *idp = NULL;
    make_tenants(f->st);
    assert_int_equal(ant_signkey_generate(&idp), 0);
    write_jwks(f, idp);
    return idp;
}

/* An issuer added to the catalog after the load (antenna admin oidc add, the daemon running)
 * is taken up by the first token naming it; one whose JWKS is unusable is left out, and the
 * rest go on working. */
static void test_oidc_issuer_added_after_load(void **state)
{
    struct fx *f = *state;
    struct ant_oidc *o = NULL;
    struct ant_principal p;
    struct ant_diag d = {{0}};
    int64_t now = ant_now_unix();
    struct ant_signkey *idp = oidc_idp(f);
    assert_int_equal(ant_oidc_load(f->st, f->dirfd, &o, &d), 0);
    assert_int_equal(ant_oidc_count(o), 0);
    struct ant_oidc_issuer iss = {"https://idp.example", "idp.jwks", "antenna",
                                  "preferred_username", "tenant"};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    char *t = sign_token(idp, "https://idp.example", "antenna", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), 0);
    assert_string_equal(p.id, "alice");
    assert_int_equal(ant_oidc_count(o), 1);
    free(t);
    /* an issuer the catalog does not have is not added */
    t = sign_token(idp, "https://evil.example", "antenna", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    free(t);
    /* a catalog issuer whose JWKS is missing: its tokens are refused, the set stays as it was
     * (after the one-second pause between two lookups) */
    struct ant_oidc_issuer broken = {"https://broken.example", "nope.jwks", "antenna", "sub", NULL};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &broken), 0);
    usleep(1100 * 1000);
    t = sign_token(idp, "https://broken.example", "antenna", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    free(t);
    assert_int_equal(ant_oidc_count(o), 1);
    t = sign_token(idp, "https://idp.example", "antenna", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), 0);
    free(t);
    ant_oidc_free(o);
    ant_signkey_free(idp);
}

/* An issuer removed from the catalog while loaded (antenna admin oidc rm, the daemon running)
 * refuses its next token; added again with another audience, it is loaded afresh and the old
 * audience no longer passes. */
static void test_oidc_issuer_removed_after_load(void **state)
{
    struct fx *f = *state;
    struct ant_oidc *o = NULL;
    struct ant_principal p;
    struct ant_diag d = {{0}};
    int64_t now = ant_now_unix();
    struct ant_signkey *idp = oidc_idp(f);
    struct ant_oidc_issuer iss = {"https://idp.example", "idp.jwks", "antenna",
                                  "preferred_username", "tenant"};
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    assert_int_equal(ant_oidc_load(f->st, f->dirfd, &o, &d), 0);
    char *t = sign_token(idp, "https://idp.example", "antenna", "alice", "acme", now + 300);
    char *t2 = sign_token(idp, "https://idp.example", "antenna-2", "alice", "acme", now + 300);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), 0);
    assert_int_equal(ant_store_oidc_issuer_remove(f->st, "https://idp.example"), 0);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    usleep(1100 * 1000); /* the next lookup of an unknown issuer finds nothing either */
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    iss.audience = "antenna-2";
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    usleep(1100 * 1000);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t2), now, &p), 0);
    assert_string_equal(p.id, "alice");
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), -EKEYREJECTED);
    assert_int_equal(ant_oidc_count(o), 2); /* the stale entry stays until the daemon stops */
    /* changed in place (removed and added with the old audience, the new one loaded): the
     * loaded entry is found stale at its next token and the row is loaded again */
    assert_int_equal(ant_store_oidc_issuer_remove(f->st, "https://idp.example"), 0);
    iss.audience = "antenna";
    assert_int_equal(ant_store_oidc_issuer_add(f->st, &iss), 0);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t2), now, &p), -EKEYREJECTED);
    usleep(1100 * 1000);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t), now, &p), 0);
    assert_int_equal(ant_auth_bearer(f->st, o, ant_bytes_str(t2), now, &p), -EKEYREJECTED);
    assert_int_equal(ant_oidc_count(o), 3);
    free(t);
    free(t2);
    ant_oidc_free(o);
    ant_signkey_free(idp);
}

struct open_arg {
    int dirfd;
    int rc;
};

static void *open_worker(void *arg)
{
    struct open_arg *oa = arg;
    struct ant_store *st = NULL;
    oa->rc = ant_store_open(oa->dirfd, "fresh.db", 0, &st);
    json_t *a = NULL;
    if (oa->rc == 0) {
        oa->rc = ant_store_tenant_list(st, &a) < 0 ? -EIO : 0;
    }
    json_decref(a);
    ant_store_close(st);
    return NULL;
}

/* The daemon and an admin command may open a new (empty) file at once: each migration step
 * runs once, under BEGIN IMMEDIATE, and everyone ends on the latest schema. */
static void test_concurrent_openers_migrate_once(void **state)
{
    struct fx *f = *state;
    struct open_arg oa[6];
    pthread_t th[6];
    int fd = openat(f->dirfd, "fresh.db", O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    for (unsigned i = 0; i < ANT_ARRAY_LEN(th); i++) {
        oa[i] = (struct open_arg){f->dirfd, 1};
        assert_int_equal(pthread_create(&th[i], NULL, open_worker, &oa[i]), 0);
    }
    for (unsigned i = 0; i < ANT_ARRAY_LEN(th); i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(oa[i].rc, 0);
    }
    struct ant_store *st = NULL;
    assert_int_equal(ant_store_open(f->dirfd, "fresh.db", 0, &st), 0);
    assert_int_equal(ant_store_tenant_add(st, "acme"), 0);
    ant_store_close(st);
}

static void test_principal_c4gh_pubkey(void **state)
{
    struct fx *f = *state;
    uint8_t pk[32], got[32];
    make_tenants(f->st);
    for (int i = 0; i < 32; i++) {
        pk[i] = (uint8_t)(i * 7 + 1);
    }
    assert_int_equal(ant_store_principal_pubkey(f->st, "alice", got), -ENODATA);
    assert_int_equal(ant_store_principal_set_pubkey(f->st, "alice", pk), 0);
    assert_int_equal(ant_store_principal_pubkey(f->st, "alice", got), 0);
    assert_memory_equal(got, pk, 32);
    assert_int_equal(ant_store_principal_set_pubkey(f->st, "nobody", pk), -ENOENT);
    assert_int_equal(ant_store_principal_pubkey(f->st, "nobody", got), -ENOENT);
    assert_int_equal(ant_store_principal_set_pubkey(f->st, "alice", NULL), 0);
    assert_int_equal(ant_store_principal_pubkey(f->st, "alice", got), -ENODATA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_create_refuses_existing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_open_missing_file_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_migrations_set_user_version_and_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_upgrade_from_step5_keeps_stage_jobs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_rejects_non_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_and_principal_names_validated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_admin_key_authenticates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_unknown_revoked_expired_all_rejected_alike, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_key_revocation_is_immediate_on_other_connections,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_serves_more_threads_than_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_openers_migrate_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_create_get_list_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_state_moves_draft_published_withdrawn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_files_only_into_drafts_with_safe_paths, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_files_never_both_a_file_and_its_folder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_file_conflict_check_holds_against_a_concurrent_add,
                                        setup, teardown),
        cmocka_unit_test(test_paths_find_conflict_in_a_list),
        cmocka_unit_test_setup_teardown(test_grants_create_list_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_list_visible_follows_tenant_grants_and_class,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_oidc_claims_map_to_principal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oidc_credential_never_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oidc_issuer_added_after_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oidc_issuer_removed_after_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_principal_c4gh_pubkey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oidc_bearer_tokens_map_to_principals, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
