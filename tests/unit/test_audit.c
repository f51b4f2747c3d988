/* The audit chain: append, checkpoints, fail-closed, concurrency, queries, export, verify and
 * tampering (live and on exports). */
#include "testutil.h"

#include "policy/audit.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char *dir;
    int dirfd;
    struct ant_signkey *sk;
    struct ant_audit *a;
};

static const struct ant_audit_opts k_opts = {
    .checkpoint_every = 10, .checkpoint_seconds = 3600, .max_batch = 64};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_tmpdir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->dirfd >= 0);
    assert_int_equal(ant_signkey_generate(&f->sk), 0);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", ANT_STORE_CREATE, f->sk, &k_opts, &f->a),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ant_audit_close(f->a);
    ant_signkey_free(f->sk);
    close(f->dirfd);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const char *k_tenants[] = {"tenant-a", "tenant-b", "tenant-c"};
static const char *k_actions[] = {"read", "stage", "transfer", "admin.key.create"};

static struct ant_audit_event make_event(int i, char *rid, size_t rlen)
{
    snprintf(rid, rlen, "req-%d", i);
    struct ant_audit_event ev = {
        .request_id = rid,
        .actor = i % 2 ? "alice" : "bob",
        .tenant = k_tenants[i % 3],
        .credential = "3fa9c0ffee000001",
        .action = k_actions[i % 4],
        .resource_kind = "dataset",
        .resource_id = "ds_0123456789abcdef",
        .dataset_id = i % 5 == 0 ? NULL : "ds_0123456789abcdef",
        .decision = i % 3 == 0 ? ANT_AUDIT_DENY : ANT_AUDIT_ALLOW,
        .reason = i % 3 == 0 ? "no_grant" : "grant",
        .transfer = NULL,
        .detail = i % 7 == 0 ? "{\"bytes\":123,\"path\":\"a/b.c4gh\"}" : NULL,
    };
    return ev;
}

static void append_n(struct ant_audit *a, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        int64_t seq = ant_audit_append(a, &ev);
        assert_true(seq > 0);
    }
}

static void reopen(struct fx *f)
{
    ant_audit_close(f->a);
    f->a = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
}

static void expect_intact(struct fx *f, bool strict, int64_t events)
{
    struct ant_audit_report rep;
    int rc = ant_audit_verify(f->a, ant_signkey_public(f->sk), strict, &rep);
    if (rc != 0) {
        fprintf(stderr, "verify: %lld: %s\n", (long long)rep.first_bad_seq, rep.what);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rep.first_bad_seq, 0);
    assert_int_equal(rep.events, events);
    assert_int_equal(rep.last_seq, events);
}

/* --- basics --- */

static void test_append_returns_consecutive_seqs(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 25; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        assert_int_equal(ant_audit_append(f->a, &ev), i + 1);
    }
    expect_intact(f, false, 25);
}

static void test_checkpoint_every_n_events(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 25);
    struct ant_audit_report rep;
    assert_int_equal(ant_audit_verify(f->a, ant_signkey_public(f->sk), false, &rep), 0);
    assert_int_equal(rep.checkpoints, 2); /* at 10 and 20 */
    assert_int_equal(rep.signed_seq, 20);
    /* strict: 21..25 unsigned until the tail is signed */
    assert_int_equal(ant_audit_verify(f->a, ant_signkey_public(f->sk), true, &rep), -EBADMSG);
    assert_int_equal(rep.first_bad_seq, 21);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 25);
}

static void test_close_signs_the_tail(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 13);
    reopen(f);
    expect_intact(f, true, 13);
    append_n(f->a, 13, 4);
    expect_intact(f, false, 17);
}

static void test_checkpoint_after_seconds(void **state)
{
    struct fx *f = *state;
    struct ant_audit_opts o = {.checkpoint_every = 1000, .checkpoint_seconds = 1, .max_batch = 8};
    ant_audit_close(f->a);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &f->a), 0);
    append_n(f->a, 0, 3);
    struct ant_audit_report rep;
    int rc = -1;
    for (int i = 0; i < 40 && rc != 0; i++) {
        usleep(100 * 1000);
        rc = ant_audit_verify(f->a, ant_signkey_public(f->sk), true, &rep);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rep.signed_seq, 3);
}

static void test_open_create_refuses_existing_and_open_needs_file(void **state)
{
    struct fx *f = *state;
    struct ant_audit *b = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", ANT_STORE_CREATE, f->sk, NULL, &b),
                     -EEXIST);
    assert_int_equal(ant_audit_open(f->dirfd, "nope.db", 0, f->sk, NULL, &b), -ENOENT);
    assert_null(b);
}

static void test_open_without_key_is_read_only(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 3);
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, NULL, NULL, &ro), 0);
    char rid[32];
    struct ant_audit_event ev = make_event(1, rid, sizeof(rid));
    assert_int_equal(ant_audit_append(ro, &ev), -EROFS);
    struct ant_audit_report rep;
    assert_int_equal(ant_audit_verify(ro, ant_signkey_public(f->sk), false, &rep), 0);
    assert_int_equal(rep.events, 3);
    ant_audit_close(ro);
}

static void test_triggers_refuse_update_and_delete(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 10);
    char path[4096];
    snprintf(path, sizeof(path), "%s/audit.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET actor='eve' WHERE seq=2", NULL, NULL,
                                      NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events WHERE seq=2", NULL, NULL, NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM checkpoints", NULL, NULL, NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE checkpoints SET time_ms=0", NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
    expect_intact(f, true, 10);
}

static void test_append_refuses_secrets_and_bad_fields(void **state)
{
    struct fx *f = *state;
    char rid[32], big[ANT_AUDIT_FIELD_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *secrets[] = {
        "ak_3fa9c0ffee000001_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "Bearer abc.def",
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
        "-----BEGIN PRIVATE KEY-----",
    };
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        struct ant_audit_event ev = make_event(1, rid, sizeof(rid));
        ev.credential = secrets[i];
        assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
        ev = make_event(1, rid, sizeof(rid));
        char detail[300];
        snprintf(detail, sizeof(detail), "{\"k\":\"%s\"}", secrets[i]);
        ev.detail = detail;
        assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    }
    struct ant_audit_event ev = make_event(1, rid, sizeof(rid));
    ev.actor = big;
    assert_int_equal(ant_audit_append(f->a, &ev), -E2BIG);
    ev = make_event(1, rid, sizeof(rid));
    ev.detail = "[1,2]";
    assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    ev.detail = "{\"a\":1,\"a\":2}";
    assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    ev.actor = "bad\xc3(utf8";
    assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    ev.decision = (enum ant_audit_decision)7;
    assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    ev.actor = "ünïcode-ok";
    assert_int_equal(ant_audit_append(f->a, &ev), 1);
    expect_intact(f, false, 1);
}

/* --- fail closed --- */

static void test_write_error_fails_closed_then_recovers(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 5);
    ant_audit_test_fail_writes(f->a, -ENOSPC);
    char rid[32];
    struct ant_audit_event ev = make_event(5, rid, sizeof(rid));
    assert_int_equal(ant_audit_append(f->a, &ev), -ENOSPC);
    assert_int_equal(ant_audit_append(f->a, &ev), -ENOSPC);
    assert_int_equal(ant_audit_checkpoint(f->a), -ENOSPC);
    ant_audit_test_fail_writes(f->a, -EIO);
    assert_int_equal(ant_audit_append(f->a, &ev), -EIO);
    ant_audit_test_fail_writes(f->a, 0);
    expect_intact(f, false, 5);
    assert_int_equal(ant_audit_append(f->a, &ev), 6);
    append_n(f->a, 6, 10);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 16);
}

static void test_read_only_file_fails_closed(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 3);
    ant_audit_close(f->a);
    f->a = NULL;
    if (geteuid() == 0) {
        /* root writes through 0444; the injected-error test covers this path */
        assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
        skip();
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/audit.db", f->dir);
    assert_int_equal(chmod(path, 0444), 0);
    int rc = ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a);
    if (rc == 0) {
        char rid[32];
        struct ant_audit_event ev = make_event(3, rid, sizeof(rid));
        assert_true(ant_audit_append(f->a, &ev) < 0);
        ant_audit_close(f->a);
        f->a = NULL;
    }
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
    expect_intact(f, true, 3);
}

/* --- concurrency --- */

struct thr_arg {
    struct ant_audit *a;
    int id, n;
    int64_t max_seq;
    int errors;
};

static void *appender(void *p)
{
    struct thr_arg *t = p;
    for (int i = 0; i < t->n; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(t->id * 1000 + i, rid, sizeof(rid));
        int64_t seq = ant_audit_append(t->a, &ev);
        if (seq <= 0) {
            t->errors++;
        } else if (seq > t->max_seq) {
            t->max_seq = seq;
        }
    }
    return NULL;
}

static void test_64_threads_append_a_valid_chain(void **state)
{
    struct fx *f = *state;
    enum { NT = 64, PER = 20 };
    pthread_t th[NT];
    struct thr_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (struct thr_arg){.a = f->a, .id = i, .n = PER};
        assert_int_equal(pthread_create(&th[i], NULL, appender, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
    }
    struct ant_audit_stats st;
    ant_audit_stats(f->a, &st);
    assert_true(st.commits > 0 && st.commits <= NT * PER);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, NT * PER);
}

static void test_two_handles_append_one_linear_chain(void **state)
{
    /* Two handles on one file stand for two processes: BEGIN IMMEDIATE keeps the chain linear. */
    struct fx *f = *state;
    struct ant_audit *b = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &b), 0);
    pthread_t t1, t2;
    struct thr_arg a1 = {.a = f->a, .id = 1, .n = 40}, a2 = {.a = b, .id = 2, .n = 40};
    assert_int_equal(pthread_create(&t1, NULL, appender, &a1), 0);
    assert_int_equal(pthread_create(&t2, NULL, appender, &a2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(a1.errors + a2.errors, 0);
    ant_audit_close(b);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 80);
}

static void test_append_many_is_one_commit(void **state)
{
    struct fx *f = *state;
    struct ant_audit_event evs[30];
    char rids[30][32];
    for (int i = 0; i < 30; i++) {
        evs[i] = make_event(i, rids[i], sizeof(rids[i]));
    }
    assert_int_equal(ant_audit_append_many(f->a, evs, 30), 1);
    assert_int_equal(ant_audit_append_many(f->a, evs, 30), 31);
    assert_int_equal(ant_audit_append_many(f->a, evs, 65), -E2BIG);
    evs[3].credential = "Bearer x";
    assert_int_equal(ant_audit_append_many(f->a, evs, 30), -EINVAL);
    expect_intact(f, false, 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_returns_consecutive_seqs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_every_n_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_signs_the_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_after_seconds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_create_refuses_existing_and_open_needs_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_without_key_is_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_refuse_update_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_refuses_secrets_and_bad_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_error_fails_closed_then_recovers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_64_threads_append_a_valid_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_append_one_linear_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_many_is_one_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
