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
#include <sqlite3.h>

#include "policy/store.h"
#include "tests/unit/testutil.h"

struct fx {
    char *dir;
    int dirfd;
    struct ant_store *st;
};

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_create_refuses_existing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_open_missing_file_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_migrations_set_user_version_and_reopen, setup,
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
