/* The audit chain: append, checkpoints, fail-closed, concurrency, queries, export, verify and
 * tampering (live and on exports). */
#include "testutil.h"

#include "policy/audit.h"

#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <stdarg.h>
#include <pthread.h>
#include <semaphore.h>
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

struct sync_gate;
static struct sync_gate *g_gate;
static void gate_open(struct sync_gate *g, int opened);

static int teardown(void **state)
{
    struct fx *f = *state;
    if (g_gate != NULL) {
        ant_audit_test_sync_hook(f->a, NULL, NULL);
        gate_open(g_gate, INT_MAX); /* a test failed while an fdatasync waited at its gate */
    }
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

/* Every live verify in these tests runs with the default split of the log (one range and one
 * thread for a log this small) and again cut into small ranges read by two to four threads:
 * one seq a range and one row a piece (each row its own turn), ranges of 3 on three threads
 * (a range's first rows read by one thread, the next range's by another), ranges of 4 read in
 * pieces of 2 on four threads, and so on. Each must give the same result and the same report:
 * a failure in the middle of a range another thread reads keeps its seq and its words. */
static const struct {
    int64_t seqs;
    size_t rows;
    unsigned workers;
} k_splits[] = {{1, 1, 2}, {3, 0, 3}, {4, 2, 4}, {7, 5, 2}, {10, 0, 2}, {64, 3, 3}};

static void expect_same_report(const struct ant_audit_report *a, const struct ant_audit_report *b)
{
    if (a->first_bad_seq != b->first_bad_seq || strcmp(a->what, b->what) != 0) {
        fprintf(stderr, "split verify: %lld (%s) against %lld (%s)\n", (long long)b->first_bad_seq,
                b->what, (long long)a->first_bad_seq, a->what);
    }
    assert_int_equal(a->first_bad_seq, b->first_bad_seq);
    assert_string_equal(a->what, b->what);
    assert_int_equal(a->events, b->events);
    assert_int_equal(a->checkpoints, b->checkpoints);
    assert_int_equal(a->last_seq, b->last_seq);
    assert_int_equal(a->signed_seq, b->signed_seq);
    assert_int_equal(a->line, b->line);
    assert_int_equal(a->redacted, b->redacted);
    assert_int_equal(a->unbound, b->unbound);
    assert_int_equal(a->first_unbound, b->first_unbound);
}

static int verify_splits_w(struct ant_audit *a, const uint8_t *pub, bool strict,
                           const struct ant_audit_witnesses *w, struct ant_audit_report *rep)
{
    ant_audit_test_verify_split(a, 0, 0, 0);
    int rc = ant_audit_verify_witnessed(a, pub, strict, w, rep);
    for (size_t i = 0; i < sizeof(k_splits) / sizeof(k_splits[0]); i++) {
        struct ant_audit_report r2;
        /* each range costs a hand-off between threads (tens of us, a few ms on a loaded host):
         * on the bigger logs (65,536 events) a split is widened to at most 1,024 ranges, still
         * read in tiny pieces on 2 to 4 threads */
        int64_t seqs = rep->last_seq / 1024 + 1;
        seqs = seqs > k_splits[i].seqs ? seqs : k_splits[i].seqs;
        memset(&r2, 0xa5, sizeof(r2));
        ant_audit_test_verify_split(a, seqs, k_splits[i].rows, k_splits[i].workers);
        assert_int_equal(ant_audit_verify_witnessed(a, pub, strict, w, &r2), rc);
        if (rc == 0 || rc == -EBADMSG) {
            expect_same_report(rep, &r2);
        }
    }
    ant_audit_test_verify_split(a, 0, 0, 0);
    return rc;
}

static int verify_splits(struct ant_audit *a, const uint8_t *pub, bool strict,
                         struct ant_audit_report *rep)
{
    return verify_splits_w(a, pub, strict, NULL, rep);
}

static void expect_intact(struct fx *f, bool strict, int64_t events)
{
    struct ant_audit_report rep;
    int rc = verify_splits(f->a, ant_signkey_public(f->sk), strict, &rep);
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
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), false, &rep), 0);
    assert_int_equal(rep.checkpoints, 2); /* at 10 and 20 */
    assert_int_equal(rep.signed_seq, 20);
    /* strict: 21..25 unsigned until the tail is signed */
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), true, &rep), -EBADMSG);
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
        /* not verify_splits: the writer may sign between its verifies */
        rc = ant_audit_verify(f->a, ant_signkey_public(f->sk), true, &rep);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rep.signed_seq, 3);
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), true, &rep), 0);
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
    assert_int_equal(verify_splits(ro, ant_signkey_public(f->sk), false, &rep), 0);
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
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE events SET actor='eve' WHERE seq=2", NULL, NULL, NULL), SQLITE_OK);
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
        "Bearer abcdefghijklmnop.qrstuvwx",
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
    ev.detail = "{\"a\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}";
    assert_int_equal(ant_audit_append(f->a, &ev), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    ev.reason = "bearer token expired"; /* prose about a credential is not one */
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
    evs[3].credential = "Bearer 0123456789abcdef0123";
    assert_int_equal(ant_audit_append_many(f->a, evs, 30), -EINVAL);
    expect_intact(f, false, 60);
}

/* --- tampering, live: a closed, fully signed base file; each case tampers with a copy --- */

#define BASE_N 30 /* checkpoints at 10, 20, 30 */

static void make_base(struct fx *f)
{
    append_n(f->a, 0, BASE_N);
    ant_audit_close(f->a);
    f->a = NULL;
}

static void copy_file(struct fx *f, const char *from, const char *to)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof(src), "%s/%s", f->dir, from);
    snprintf(dst, sizeof(dst), "%s/%s", f->dir, to);
    size_t len = 0;
    uint8_t *p = test_read_file(src, &len);
    unlink(dst);
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ant_write_all(fd, p, len), 0);
    close(fd);
    free(p);
}

/* Applies `sql` to t.db, a copy of the base with the triggers dropped. */
static void tamper_copy(struct fx *f, const char *sql)
{
    char path[4096];
    copy_file(f, "audit.db", "t.db");
    assert_int_equal(ant_audit_test_drop_triggers(f->dirfd, "t.db"), 0);
    snprintf(path, sizeof(path), "%s/t.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int src = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (src != SQLITE_OK) {
        fprintf(stderr, "tamper sql: %s: %s\n", sql, err);
    }
    assert_int_equal(src, SQLITE_OK);
    sqlite3_close(db);
}

/* Applies `sql` to a copy of the base with the triggers dropped; verifies it strictly. */
static int64_t tampered_bad_seq(struct fx *f, const char *sql, char *what, size_t wlen)
{
    tamper_copy(f, sql);
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "t.db", 0, NULL, NULL, &ro), 0);
    struct ant_audit_report rep;
    int rc = verify_splits(ro, ant_signkey_public(f->sk), true, &rep);
    ant_audit_close(ro);
    if (what != NULL) {
        snprintf(what, wlen, "%s", rep.what);
    }
    assert_int_equal(rc == 0, rep.first_bad_seq == 0);
    return rep.first_bad_seq;
}

static void expect_live_bad(struct fx *f, int64_t want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void expect_live_bad(struct fx *f, int64_t want, const char *fmt, ...)
{
    char sql[1024], what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    int64_t got = tampered_bad_seq(f, sql, what, sizeof(what));
    if (got != want) {
        fprintf(stderr, "%s: want bad seq %lld, got %lld (%s)\n", sql, (long long)want,
                (long long)got, what);
    }
    assert_int_equal(got, want);
}

static const char *const k_cols[] = {
    "time_ms",     "request_id", "actor",  "tenant",   "credential", "action",   "resource_kind",
    "resource_id", "dataset_id", "reason", "transfer", "detail",     "decision", "hash", "salt",
};

static void test_live_tamper_each_field_is_named(void **state)
{
    struct fx *f = *state;
    make_base(f);
    assert_int_equal(tampered_bad_seq(f, "SELECT 1", NULL, 0), 0); /* the copy itself is good */
    srand(12345);
    for (size_t i = 0; i < sizeof(k_cols) / sizeof(k_cols[0]); i++) {
        int seq = 1 + rand() % BASE_N;
        const char *c = k_cols[i];
        if (strcmp(c, "time_ms") == 0) {
            expect_live_bad(f, seq, "UPDATE events SET time_ms = time_ms + 1 WHERE seq = %d", seq);
        } else if (strcmp(c, "decision") == 0) {
            expect_live_bad(f, seq,
                            "UPDATE events SET decision = (decision + 1) %% 3 WHERE seq = %d", seq);
        } else if (strcmp(c, "hash") == 0) {
            expect_live_bad(f, seq, "UPDATE events SET hash = randomblob(32) WHERE seq = %d", seq);
        } else if (strcmp(c, "salt") == 0) {
            /* another salt, none (a v1 event after v2 ones, or a v1 hash that does not match),
             * one of another length */
            expect_live_bad(f, seq, "UPDATE events SET salt = randomblob(16) WHERE seq = %d", seq);
            expect_live_bad(f, seq, "UPDATE events SET salt = NULL WHERE seq = %d", seq);
            expect_live_bad(f, seq, "UPDATE events SET salt = randomblob(17) WHERE seq = %d", seq);
        } else {
            /* absent -> present and present -> changed both break the chain */
            expect_live_bad(f, seq, "UPDATE events SET %s = COALESCE(%s, '') || 'x' WHERE seq = %d",
                            c, c, seq);
            expect_live_bad(f, seq,
                            "UPDATE events SET %s = NULL WHERE seq = %d AND %s IS NOT NULL;"
                            "UPDATE events SET %s = 'y' WHERE seq = %d AND %s IS NULL",
                            c, seq, c, c, seq, c);
        }
    }
}

static void test_live_tamper_structure_is_named(void **state)
{
    struct fx *f = *state;
    make_base(f);
    /* delete an event (also one a checkpoint signs) */
    expect_live_bad(f, 7, "DELETE FROM events WHERE seq = 7");
    expect_live_bad(f, 20, "DELETE FROM events WHERE seq = 20");
    /* swap the contents of two events, hashes included */
    expect_live_bad(f, 4,
                    "CREATE TEMP TABLE t AS SELECT * FROM events WHERE seq IN (4, 17);"
                    "UPDATE events SET (time_ms, request_id, actor, tenant, credential, action,"
                    " resource_kind, resource_id, dataset_id, decision, reason, transfer, detail,"
                    " hash, salt) = (SELECT time_ms, request_id, actor, tenant, credential,"
                    " action, resource_kind, resource_id, dataset_id, decision, reason, transfer,"
                    " detail, hash, salt FROM t WHERE t.seq = 21 - events.seq)"
                    " WHERE seq IN (4, 17)");
    /* truncate the tail: checkpoint 30 still names the missing events */
    expect_live_bad(f, 26, "DELETE FROM events WHERE seq > 25");
    /* truncate events and the checkpoints past them: the rest is an unsigned tail */
    expect_live_bad(f, 21,
                    "DELETE FROM events WHERE seq > 25; DELETE FROM checkpoints WHERE seq > 25");
    /* a forged event appended (with a hash that chains): not covered by any checkpoint */
    expect_live_bad(f, 31,
                    "INSERT INTO events SELECT 31, time_ms + 1, request_id, actor, tenant,"
                    " credential, action, resource_kind, resource_id, dataset_id, decision, reason,"
                    " transfer, detail, hash, salt FROM events WHERE seq = 30");
    /* a forged event inserted in the middle: the later ones shift up by one */
    expect_live_bad(f, 12,
                    "UPDATE events SET seq = seq + 1000 WHERE seq >= 12;"
                    "UPDATE events SET seq = seq - 999 WHERE seq >= 1000;"
                    "INSERT INTO events SELECT 12, time_ms, request_id, 'mallory', tenant,"
                    " credential, action, resource_kind, resource_id, dataset_id, 1, reason,"
                    " transfer, detail, hash, salt FROM events WHERE seq = 11");
    /* forge a checkpoint: another signature, another hash, a new one */
    expect_live_bad(f, 20, "UPDATE checkpoints SET sig = randomblob(64) WHERE seq = 20");
    expect_live_bad(f, 10,
                    "UPDATE checkpoints SET hash = (SELECT hash FROM events WHERE seq = 9)"
                    " WHERE seq = 10");
    expect_live_bad(f, 20, "UPDATE checkpoints SET time_ms = time_ms + 1 WHERE seq = 20");
    expect_live_bad(f, 15,
                    "INSERT INTO checkpoints SELECT 15, hash, time_ms, 10, randomblob(64) FROM"
                    " events WHERE seq = 15");
    /* drop a checkpoint: the next one's signed link names it; the last one leaves a tail */
    expect_live_bad(f, 10, "DELETE FROM checkpoints WHERE seq = 10");
    expect_live_bad(f, 21, "DELETE FROM checkpoints WHERE seq = 30");
    expect_live_bad(f, 1, "DELETE FROM checkpoints");
}

static void test_live_tamper_seqs_out_of_range_are_named(void **state)
{
    /* rows below the first seq or far past the head (up to INT64_MAX, where a range's end
     * would overflow): ranges start at the seqs present, so every row is read, in seq order */
    struct fx *f = *state;
    make_base(f);
    static const char *const seqs[] = {"0", "-5", "-9223372036854775808"};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        expect_live_bad(f, 1,
                        "INSERT INTO events SELECT %s, time_ms, request_id, actor, tenant,"
                        " credential, action, resource_kind, resource_id, dataset_id, decision,"
                        " reason, transfer, detail, hash, salt FROM events WHERE seq = 1",
                        seqs[i]);
    }
    static const char *const far[] = {"1000000000000000", "9223372036854775807"};
    for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++) {
        expect_live_bad(f, 31,
                        "INSERT INTO events SELECT %s, time_ms, request_id, actor, tenant,"
                        " credential, action, resource_kind, resource_id, dataset_id, decision,"
                        " reason, transfer, detail, hash, salt FROM events WHERE seq = 30",
                        far[i]);
        expect_live_bad(f, 31,
                        "INSERT INTO checkpoints SELECT %s, hash, time_ms, 30, sig FROM"
                        " checkpoints WHERE seq = 30",
                        far[i]);
    }
    expect_live_bad(f, 1,
                    "INSERT INTO checkpoints SELECT -3, hash, time_ms, 0, sig FROM checkpoints"
                    " WHERE seq = 10");
    expect_live_bad(f, 31,
                    "INSERT INTO events SELECT seq + 9223372036854775777, time_ms, request_id,"
                    " actor, tenant, credential, action, resource_kind, resource_id, dataset_id,"
                    " decision, reason, transfer, detail, hash, salt FROM events;"
                    "INSERT INTO checkpoints SELECT seq + 9223372036854775777, hash, time_ms,"
                    " prev_seq, sig FROM checkpoints");
}

/* Seqs planted far apart cost a range each, not one per range_seqs seqs between them (until
 * session 11 a seq of 10^15 made verify step through 65,536 empty ranges). */
static void test_live_far_seqs_cost_a_range_each(void **state)
{
    struct fx *f = *state;
    static const struct {
        int64_t seqs, dense, far; /* split; ranges of seqs 1..30; of the planted seqs */
    } k[] = {{1, 30, 5}, {4, 8, 3}, {64, 1, 3}, {0, 1, 3}};
    const uint8_t *pub = NULL;
    make_base(f);
    pub = ant_signkey_public(f->sk);
    tamper_copy(f, "SELECT 1");
    struct ant_audit *ro = NULL;
    struct ant_audit_report rep;
    assert_int_equal(ant_audit_open(f->dirfd, "t.db", 0, NULL, NULL, &ro), 0);
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        ant_audit_test_verify_split(ro, k[i].seqs, 0, 2);
        assert_int_equal(ant_audit_verify(ro, pub, true, &rep), 0);
        assert_int_equal(ant_audit_test_verify_ranges(ro), k[i].dense);
    }
    ant_audit_close(ro);
    /* 10^15 and the next (one range of 4 seqs), 2^62, the last two seqs of int64 */
    tamper_copy(f, "INSERT INTO events SELECT CASE seq WHEN 1 THEN 1000000000000000"
                   " WHEN 2 THEN 1000000000000001 WHEN 3 THEN 4611686018427387904"
                   " WHEN 4 THEN 9223372036854775806 ELSE 9223372036854775807 END,"
                   " time_ms, request_id, actor, tenant, credential, action, resource_kind,"
                   " resource_id, dataset_id, decision, reason, transfer, detail, hash, salt"
                   " FROM events WHERE seq <= 5;"
                   "INSERT INTO checkpoints SELECT 9223372036854775807, hash, time_ms, 30, sig"
                   " FROM checkpoints WHERE seq = 30");
    assert_int_equal(ant_audit_open(f->dirfd, "t.db", 0, NULL, NULL, &ro), 0);
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        ant_audit_test_verify_split(ro, k[i].seqs, 0, 2);
        assert_int_equal(ant_audit_verify(ro, pub, true, &rep), -EBADMSG);
        assert_int_equal(rep.first_bad_seq, 31);
        assert_string_equal(rep.what, "event 31 is missing (next is 1000000000000000)");
        /* the range of 10^15 names the failure; the ones after it may have been read ahead */
        int64_t n = ant_audit_test_verify_ranges(ro);
        assert_true(n >= k[i].dense + 1 && n <= k[i].dense + k[i].far);
    }
    ant_audit_close(ro);
}

/* A log of several default ranges (4,096 seqs): each range's first, middle and last event and
 * a gap across two ranges are named, whichever thread reads them. */
#define BIG_N 10000

static void make_big_base(struct fx *f)
{
    static const struct ant_audit_opts opts = {
        .checkpoint_every = 1000, .checkpoint_seconds = 3600, .max_batch = 1024};
    ant_audit_close(f->a);
    f->a = NULL;
    static const char *const names[] = {"audit.db", "audit.db-wal", "audit.db-shm"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        (void)unlinkat(f->dirfd, names[i], 0);
    }
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", ANT_STORE_CREATE, f->sk, &opts, &f->a),
                     0);
    struct ant_audit_event *evs = calloc(1000, sizeof(*evs));
    char(*rids)[32] = calloc(1000, sizeof(*rids));
    assert_non_null(evs);
    assert_non_null(rids);
    for (int b = 0; b < BIG_N / 1000; b++) {
        for (int i = 0; i < 1000; i++) {
            evs[i] = make_event(b * 1000 + i, rids[i], sizeof(rids[i]));
        }
        assert_int_equal(ant_audit_append_many(f->a, evs, 1000), b * 1000 + 1);
    }
    free(evs);
    free(rids);
    struct ant_audit_report rep;
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), true, &rep), 0);
    assert_int_equal(rep.events, BIG_N);
    assert_int_equal(rep.checkpoints, BIG_N / 1000);
    assert_int_equal(rep.signed_seq, BIG_N);
    ant_audit_close(f->a);
    f->a = NULL;
}

static void test_live_tamper_in_every_range_is_named(void **state)
{
    struct fx *f = *state;
    make_big_base(f);
    static const int seqs[] = {1, 2048, 4096, 4097, 6000, 8192, 8193, 9999, BIG_N};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        expect_live_bad(f, seqs[i], "UPDATE events SET actor = 'mallory' WHERE seq = %d",
                        seqs[i]);
    }
    expect_live_bad(f, 4000, "DELETE FROM events WHERE seq BETWEEN 4000 AND 5000");
    expect_live_bad(f, 8001, "DELETE FROM events WHERE seq > 8000");
    expect_live_bad(f, 5000, "UPDATE checkpoints SET sig = randomblob(64) WHERE seq = 5000");
    expect_live_bad(f, 7000, "DELETE FROM checkpoints WHERE seq = 7000");
}

struct bg_writer {
    struct ant_audit *a;
    int n;
};

static void *bg_writer_main(void *arg)
{
    struct bg_writer *b = arg;
    for (int i = 0; i < b->n; i += 50) {
        struct ant_audit_event evs[50];
        char rids[50][32];
        for (int k = 0; k < 50; k++) {
            evs[k] = make_event(i + k, rids[k], sizeof(rids[k]));
        }
        assert_true(ant_audit_append_many(b->a, evs, 50) > 0);
    }
    return NULL;
}

static void test_live_verify_while_appending_sees_one_snapshot(void **state)
{
    /* each worker has its own read transaction, begun after the first one's, while the writer
     * commits: every verify must see a whole chain, its checkpoints and nothing past them */
    struct fx *f = *state;
    struct bg_writer b = {f->a, 3000};
    pthread_t th;
    int64_t last = 0;
    int rounds = 0;
    append_n(f->a, 0, 20);
    assert_int_equal(pthread_create(&th, NULL, bg_writer_main, &b), 0);
    for (; last < 3020; rounds++) {
        struct ant_audit_report rep;
        ant_audit_test_verify_split(f->a, 1 + rounds % 37, 0, 2 + rounds % 3);
        int rc = ant_audit_verify(f->a, ant_signkey_public(f->sk), false, &rep);
        if (rc != 0) {
            fprintf(stderr, "verify while appending: %lld: %s\n", (long long)rep.first_bad_seq,
                    rep.what);
        }
        assert_int_equal(rc, 0);
        assert_true(rep.events >= last);
        assert_int_equal(rep.last_seq, rep.events);
        assert_true(rep.signed_seq <= rep.last_seq);
        last = rep.events;
    }
    pthread_join(th, NULL);
    ant_audit_test_verify_split(f->a, 0, 0, 0);
    assert_true(rounds > 1);
    expect_intact(f, false, 3020);
}

static void test_live_rewrite_of_the_whole_chain_is_caught_by_checkpoints(void **state)
{
    /* An attacker who rewrites event 5 and recomputes every later hash still cannot sign. */
    struct fx *f = *state;
    make_base(f);
    copy_file(f, "audit.db", "t.db");
    assert_int_equal(ant_audit_test_drop_triggers(f->dirfd, "t.db"), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/t.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE events SET actor = 'mallory' WHERE seq = 5", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_stmt *rd = NULL, *up = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT seq, time_ms, request_id, actor, tenant, "
                                        "credential, action, resource_kind, resource_id, "
                                        "dataset_id, decision, reason, transfer, detail, salt "
                                        "FROM events ORDER BY seq",
                                        -1, &rd, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "UPDATE events SET hash = ? WHERE seq = ?", -1, &up, NULL),
        SQLITE_OK);
    struct ant_audit_verifier v;
    uint8_t zero[ANT_KEY_LEN] = {0};
    assert_int_equal(ant_audit_verifier_init(&v, zero), 0);
    while (sqlite3_step(rd) == SQLITE_ROW) {
        struct ant_audit_event ev = {0};
        const char **slots[] = {&ev.request_id, &ev.actor,         &ev.tenant,      &ev.credential,
                                &ev.action,     &ev.resource_kind, &ev.resource_id, &ev.dataset_id};
        for (int i = 0; i < 8; i++) {
            *slots[i] = (const char *)sqlite3_column_text(rd, 2 + i);
        }
        ev.decision = (enum ant_audit_decision)sqlite3_column_int(rd, 10);
        ev.reason = (const char *)sqlite3_column_text(rd, 11);
        ev.transfer = (const char *)sqlite3_column_text(rd, 12);
        ev.detail = (const char *)sqlite3_column_text(rd, 13);
        int64_t seq = sqlite3_column_int64(rd, 0);
        assert_int_equal(sqlite3_column_bytes(rd, 14), ANT_AUDIT_SALT_LEN);
        assert_int_equal(ant_audit_verifier_event(&v, seq, sqlite3_column_int64(rd, 1), &ev,
                                                  sqlite3_column_blob(rd, 14), NULL),
                         0);
        sqlite3_bind_blob(up, 1, v.head, sizeof(v.head), SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 2, seq);
        assert_int_equal(sqlite3_step(up), SQLITE_DONE);
        sqlite3_reset(up);
    }
    ant_audit_verifier_fini(&v);
    sqlite3_finalize(rd);
    sqlite3_finalize(up);
    sqlite3_close(db);
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "t.db", 0, NULL, NULL, &ro), 0);
    struct ant_audit_report rep;
    assert_int_equal(verify_splits(ro, ant_signkey_public(f->sk), false, &rep), -EBADMSG);
    assert_int_equal(rep.first_bad_seq, 10); /* the first checkpoint after the rewrite */
    ant_audit_close(ro);
}

/* --- export --- */

static uint8_t *export_to_mem(struct fx *f, struct ant_audit *a, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/export.ndjson", f->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    int64_t lines = ant_audit_export(a, fd);
    assert_true(lines > 0);
    close(fd);
    return test_read_file(path, len);
}

static void test_export_verifies_offline(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 25);
    size_t len = 0;
    uint8_t *p = export_to_mem(f, f->a, &len);
    struct ant_audit_report rep;
    uint8_t *copy = test_memdup(p, len);
    assert_int_equal(
        ant_audit_verify_export(ant_bytes_of(copy, len), ant_signkey_public(f->sk), &rep), 0);
    assert_int_equal(rep.events, 25);
    assert_int_equal(rep.checkpoints, 3); /* 10, 20 and the one export wrote at 25 */
    assert_int_equal(rep.signed_seq, 25);
    /* another site's key */
    struct ant_signkey *other = NULL;
    assert_int_equal(ant_signkey_generate(&other), 0);
    assert_int_equal(
        ant_audit_verify_export(ant_bytes_of(copy, len), ant_signkey_public(other), &rep),
        -EBADMSG);
    assert_int_equal(rep.first_bad_seq, 10);
    ant_signkey_free(other);
    free(copy);
    free(p);
}

/* --- witnesses (a peer's record of our checkpoints) --- */

/* The checkpoint lines of an export, as `antenna admin peer witnessed` prints them. */
static char *checkpoint_lines(const uint8_t *p, size_t len, int64_t upto)
{
    char *out = calloc(1, len + 1);
    size_t o = 0;
    assert_non_null(out);
    for (size_t i = 0; i < len;) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        size_t n = nl != NULL ? (size_t)(nl - (p + i)) + 1 : len - i;
        json_t *doc = json_loadb((const char *)p + i, n, 0, NULL);
        struct ant_audit_ckpt c;
        if (doc != NULL && ant_audit_ckpt_from_json(doc, &c) == 0 && c.seq <= upto) {
            memcpy(out + o, p + i, n);
            o += n;
        }
        json_decref(doc);
        i += n;
    }
    return out;
}

/* Where the export's line for checkpoint `seq` ends. */
static size_t export_cut_after_checkpoint(const uint8_t *p, size_t len, int64_t seq)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "{\"type\":\"checkpoint\",\"seq\":%lld,", (long long)seq);
    const char *at = memmem(p, len, pat, strlen(pat));
    assert_non_null(at);
    const char *nl = memchr(at, '\n', len - (size_t)((const uint8_t *)at - p));
    assert_non_null(nl);
    return (size_t)((const uint8_t *)nl - p) + 1;
}

static void test_witness_verify_pass_tail_removed_rewritten(void **state)
{
    struct fx *f = *state;
    const uint8_t *pub = ant_signkey_public(f->sk);
    append_n(f->a, 0, 25);
    size_t len = 0;
    uint8_t *p = export_to_mem(f, f->a, &len);
    char *wl = checkpoint_lines(p, len, INT64_MAX);
    struct ant_audit_ckpt *wc = NULL;
    size_t nw = 0;
    struct ant_diag d = {{0}};
    assert_int_equal(ant_audit_witness_parse(ant_bytes_str(wl), &wc, &nw, &d), 0);
    assert_int_equal(nw, 3); /* 10, 20, 25 */
    assert_int_equal(wc[2].seq, 25);
    struct ant_audit_witnesses w = {wc, nw};
    struct ant_audit_report rep;
    /* intact: the export and the live chain both hold every witnessed checkpoint */
    assert_int_equal(ant_audit_verify_export_witnessed(ant_bytes_of(p, len), pub, &w, &rep), 0);
    assert_int_equal(verify_splits_w(f->a, pub, false, &w, &rep), 0);
    assert_int_equal(verify_splits_w(f->a, pub, false, NULL, &rep), 0);
    /* the tail from event 21 on removed with its checkpoint: alone it still verifies */
    size_t cut = export_cut_after_checkpoint(p, len, 20);
    assert_int_equal(ant_audit_verify_export(ant_bytes_of(p, cut), pub, &rep), 0);
    assert_int_equal(ant_audit_verify_export_witnessed(ant_bytes_of(p, cut), pub, &w, &rep),
                     -EBADMSG);
    assert_non_null(strstr(rep.what, "tail removed after it was witnessed"));
    /* witnessed only up to 20: the cut export passes */
    struct ant_audit_witnesses w20 = {wc, 2};
    assert_int_equal(ant_audit_verify_export_witnessed(ant_bytes_of(p, cut), pub, &w20, &rep), 0);
    /* history rewritten and re-signed with the site's own key: another log, same key */
    struct ant_audit *b = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "b.db", ANT_STORE_CREATE, f->sk, &k_opts, &b), 0);
    append_n(b, 100, 25); /* each event salted anew: every hash differs */
    size_t blen = 0;
    uint8_t *bp = export_to_mem(f, b, &blen);
    assert_int_equal(ant_audit_verify_export(ant_bytes_of(bp, blen), pub, &rep), 0);
    assert_int_equal(ant_audit_verify_export_witnessed(ant_bytes_of(bp, blen), pub, &w, &rep),
                     -EBADMSG);
    assert_int_equal(rep.first_bad_seq, 10);
    assert_non_null(strstr(rep.what, "rewritten"));
    assert_int_equal(verify_splits_w(b, pub, false, &w, &rep), -EBADMSG);
    assert_non_null(strstr(rep.what, "rewritten"));
    ant_audit_close(b);
    /* a witness not signed by the site's key proves nothing: refused */
    wc[1].sig[3] ^= 1;
    assert_int_equal(ant_audit_verify_export_witnessed(ant_bytes_of(p, len), pub, &w, &rep),
                     -EBADMSG);
    assert_non_null(strstr(rep.what, "not signed"));
    free(bp);
    free(wc);
    free(wl);
    free(p);
}

static void test_witness_parse_refuses_bad_input(void **state)
{
    (void)state;
    static const char h64[] = "00000000000000000000000000000000"
                              "00000000000000000000000000000000";
    char sig[129];
    memset(sig, 'a', 128);
    sig[128] = '\0';
    char good[512], line[2048];
    snprintf(good, sizeof(good),
             "{\"type\":\"checkpoint\",\"seq\":7,\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0,"
             "\"sig\":\"%s\"}",
             h64, sig);
    struct ant_audit_ckpt *c = NULL;
    size_t n = 99;
    struct ant_diag d = {{0}};
    /* empty input and blank lines: no witness */
    assert_int_equal(ant_audit_witness_parse(ant_bytes_str(""), &c, &n, &d), 0);
    assert_int_equal(n, 0);
    free(c);
    c = NULL;
    snprintf(line, sizeof(line), "\n%s\n\n", good);
    assert_int_equal(ant_audit_witness_parse(ant_bytes_str(line), &c, &n, &d), 0);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].seq, 7);
    free(c);
    c = NULL;
    const char *bad[] = {
        "not json",
        "[1,2]",
        "{\"type\":\"event\",\"seq\":1}",
        "{\"type\":\"checkpoint\",\"seq\":0,\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0,"
        "\"sig\":\"%s\"}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"hash\":\"%s\",\"time_ms\":-1,\"prev_seq\":0,"
        "\"sig\":\"%s\"}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"hash\":\"%s00\",\"time_ms\":1,\"prev_seq\":0,"
        "\"sig\":\"%s\"}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0,"
        "\"sig\":\"%.100s\"}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0,"
        "\"sig\":\"%s\",\"x\":1}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0}%s",
        "{\"type\":\"checkpoint\",\"seq\":\"1\",\"hash\":\"%s\",\"time_ms\":1,\"prev_seq\":0,"
        "\"sig\":\"%s\"}",
        "{\"type\":\"checkpoint\",\"seq\":1,\"seq\":2,\"hash\":\"%s\",\"time_ms\":1,"
        "\"sig\":\"%s\"}",
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(bad); i++) {
        char b[1024];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
        snprintf(b, sizeof(b), bad[i], h64, sig);
#pragma GCC diagnostic pop
        snprintf(line, sizeof(line), "%s\n%s\n", good, b);
        memset(&d, 0, sizeof(d));
        c = NULL;
        assert_int_equal(ant_audit_witness_parse(ant_bytes_str(line), &c, &n, &d), -EBADMSG);
        assert_null(c);
        assert_non_null(strstr(d.msg, "line 2"));
    }
    /* a line past the limit */
    size_t big = ANT_AUDIT_EXPORT_LINE_MAX + 16;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    assert_int_equal(ant_audit_witness_parse(ant_bytes_str(huge), &c, &n, &d), -EBADMSG);
    free(huge);
    /* sorted by seq whatever the file's order */
    char two[1200];
    snprintf(two, sizeof(two), "%s\n%s\n", good, good);
    memcpy(strstr(two + 1, "\"seq\":7"), "\"seq\":3", 7);
    assert_int_equal(ant_audit_witness_parse(ant_bytes_str(two), &c, &n, &d), 0);
    assert_int_equal(n, 2);
    assert_true(c[0].seq == 7 || c[1].seq == 7);
    assert_true(c[0].seq <= c[1].seq);
    free(c);
}

static void test_export_without_key_leaves_out_the_unsigned_tail(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 25); /* signed up to 20 */
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, NULL, NULL, &ro), 0);
    size_t len = 0;
    uint8_t *p = export_to_mem(f, ro, &len);
    struct ant_audit_report rep;
    assert_int_equal(ant_audit_verify_export(ant_bytes_of(p, len), ant_signkey_public(f->sk), &rep),
                     0);
    assert_int_equal(rep.last_seq, 20);
    assert_int_equal(rep.signed_seq, 20);
    ant_audit_close(ro);
    free(p);
}

/* Every prefix of the export p fails, except those that end right after a checkpoint line. */
static void expect_every_prefix_fails_unless_at_a_checkpoint(const uint8_t *p, size_t len,
                                                             const uint8_t *pub)
{
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = test_memdup(p, n);
        struct ant_audit_report rep;
        int rc = ant_audit_verify_export(ant_bytes_of(cut, n), pub, &rep);
        /* a prefix ending right after a checkpoint line is a valid export of an earlier state */
        bool at_ckpt = n == 0;
        if (n > 0) {
            size_t end = p[n - 1] == '\n' ? n - 1 : n;
            size_t start = end;
            while (start > 0 && p[start - 1] != '\n') {
                start--;
            }
            at_ckpt = (n == len || p[n] == '\n' || p[n - 1] == '\n') &&
                      memmem(p + start, end - start, "\"type\":\"checkpoint\"", 19) != NULL;
        }
        if (rc != (at_ckpt ? 0 : -EBADMSG)) {
            fprintf(stderr, "prefix %zu: rc %d (%s)\n", n, rc, rep.what);
        }
        assert_int_equal(rc, at_ckpt ? 0 : -EBADMSG);
        free(cut);
    }
}

static void test_export_every_truncation_fails_unless_at_a_checkpoint(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 12);
    size_t len = 0;
    uint8_t *p = export_to_mem(f, f->a, &len);
    expect_every_prefix_fails_unless_at_a_checkpoint(p, len, ant_signkey_public(f->sk));
    free(p);
}

/* The export as an array of JSON objects, one per line, for the tamper cases. */
static json_t *export_lines(const uint8_t *p, size_t len)
{
    json_t *arr = json_array();
    size_t i = 0;
    while (i < len) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (p + i)) : len - i;
        json_error_t err;
        json_t *o = json_loadb((const char *)p + i, n, 0, &err);
        assert_non_null(o);
        json_array_append_new(arr, o);
        i += n + 1;
    }
    return arr;
}

static int64_t lines_bad_seq(const json_t *lines, const uint8_t pub[ANT_KEY_LEN])
{
    struct ant_buf b = ANT_BUF_INIT(1 << 24);
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        char *s = json_dumps(o, JSON_COMPACT);
        assert_int_equal(ant_buf_append_str(&b, s), 0);
        assert_int_equal(ant_buf_append(&b, "\n", 1), 0);
        free(s);
    }
    uint8_t *copy = test_memdup(b.p, b.len);
    struct ant_audit_report rep;
    int rc = ant_audit_verify_export(ant_bytes_of(copy, b.len), pub, &rep);
    assert_int_equal(rc == 0, rep.first_bad_seq == 0);
    free(copy);
    ant_buf_fini(&b);
    return rep.first_bad_seq;
}

/* Index of the line of event `seq` (or checkpoint `seq` with ckpt). */
static size_t line_of(const json_t *lines, int64_t seq, bool ckpt)
{
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        if (json_integer_value(json_object_get(o, "seq")) == seq &&
            strcmp(json_string_value(json_object_get(o, "type")), ckpt ? "checkpoint" : "event") ==
                0) {
            return i;
        }
    }
    fail();
    return 0;
}

static void test_export_tamper_is_named(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, BASE_N);
    size_t len = 0;
    uint8_t *p = export_to_mem(f, f->a, &len);
    json_t *base = export_lines(p, len);
    const uint8_t *pub = ant_signkey_public(f->sk);
    assert_int_equal(lines_bad_seq(base, pub), 0);
    srand(777);
    /* change each field of a random event */
    const char *fields[] = {"seq",        "time_ms",  "request_id",    "actor",       "tenant",
                            "credential", "action",   "resource_kind", "resource_id", "dataset_id",
                            "reason",     "transfer", "detail",        "decision",    "hash"};
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
        int64_t seq = 1 + rand() % BASE_N;
        json_t *t = json_deep_copy(base);
        json_t *o = json_array_get(t, line_of(t, seq, false));
        const char *fk = fields[k];
        json_t *cur = json_object_get(o, fk);
        if (strcmp(fk, "seq") == 0 || strcmp(fk, "time_ms") == 0) {
            json_object_set_new(o, fk, json_integer(json_integer_value(cur) + 1));
        } else if (strcmp(fk, "decision") == 0) {
            json_object_set_new(
                o, fk,
                json_string(strcmp(json_string_value(cur), "allow") == 0 ? "deny" : "allow"));
        } else if (strcmp(fk, "hash") == 0) {
            char h[65];
            snprintf(h, sizeof(h), "%s", json_string_value(cur));
            h[0] = h[0] == '0' ? '1' : '0';
            json_object_set_new(o, fk, json_string(h));
        } else if (cur == NULL) {
            json_object_set_new(o, fk, json_string("x"));
        } else {
            json_object_del(o, fk);
        }
        int64_t got = lines_bad_seq(t, pub);
        if (got != seq) {
            fprintf(stderr, "export field %s of %lld: got %lld\n", fk, (long long)seq,
                    (long long)got);
        }
        assert_int_equal(got, seq);
        json_decref(t);
    }
    json_t *t;
    /* delete an event */
    t = json_deep_copy(base);
    json_array_remove(t, line_of(t, 14, false));
    assert_int_equal(lines_bad_seq(t, pub), 14);
    json_decref(t);
    /* swap the contents of two events but keep their seqs */
    t = json_deep_copy(base);
    {
        json_t *a = json_array_get(t, line_of(t, 3, false));
        json_t *b = json_array_get(t, line_of(t, 22, false));
        json_t *ac = json_deep_copy(a);
        json_object_update(a, b);
        json_object_update(b, ac);
        json_object_set_new(a, "seq", json_integer(3));
        json_object_set_new(b, "seq", json_integer(22));
        json_decref(ac);
    }
    assert_int_equal(lines_bad_seq(t, pub), 3);
    json_decref(t);
    /* swap two lines */
    t = json_deep_copy(base);
    {
        size_t i5 = line_of(t, 5, false), i6 = line_of(t, 6, false);
        json_t *a = json_incref(json_array_get(t, i5));
        json_t *b = json_incref(json_array_get(t, i6));
        json_array_set_new(t, i5, b);
        json_array_set_new(t, i6, a);
    }
    assert_int_equal(lines_bad_seq(t, pub), 5);
    json_decref(t);
    /* truncate the tail (not at a checkpoint): the rest is unsigned */
    t = json_deep_copy(base);
    while (json_array_size(t) > line_of(t, 26, false) + 1) {
        json_array_remove(t, json_array_size(t) - 1);
    }
    assert_int_equal(lines_bad_seq(t, pub), 21);
    json_decref(t);
    /* insert a forged event after event 8 */
    t = json_deep_copy(base);
    {
        json_t *forged = json_deep_copy(json_array_get(t, line_of(t, 8, false)));
        json_object_set_new(forged, "seq", json_integer(9));
        json_object_set_new(forged, "actor", json_string("mallory"));
        json_array_insert_new(t, line_of(t, 8, false) + 1, forged);
    }
    assert_int_equal(lines_bad_seq(t, pub), 9);
    json_decref(t);
    /* forge a checkpoint's signature; add a forged checkpoint; drop one */
    t = json_deep_copy(base);
    {
        json_t *c = json_array_get(t, line_of(t, 20, true));
        char sig[129];
        snprintf(sig, sizeof(sig), "%s", json_string_value(json_object_get(c, "sig")));
        sig[5] = sig[5] == 'a' ? 'b' : 'a';
        json_object_set_new(c, "sig", json_string(sig));
    }
    assert_int_equal(lines_bad_seq(t, pub), 20);
    json_decref(t);
    t = json_deep_copy(base);
    {
        json_t *c = json_deep_copy(json_array_get(t, line_of(t, 10, true)));
        json_t *e = json_array_get(t, line_of(t, 15, false));
        json_object_set_new(c, "seq", json_integer(15));
        json_object_set(c, "hash", json_object_get(e, "hash"));
        json_array_insert_new(t, line_of(t, 15, false) + 1, c);
    }
    assert_int_equal(lines_bad_seq(t, pub), 15);
    json_decref(t);
    t = json_deep_copy(base);
    json_array_remove(t, line_of(t, 10, true));
    assert_int_equal(lines_bad_seq(t, pub), 10);
    json_decref(t);
    t = json_deep_copy(base);
    json_array_remove(t, line_of(t, 30, true));
    assert_int_equal(lines_bad_seq(t, pub), 21);
    json_decref(t);
    json_decref(base);
    free(p);
}

#define Z32 "00000000000000000000000000000000"
#define Z64 Z32 Z32

static void test_export_hostile_lines_are_refused(void **state)
{
    (void)state;
    uint8_t pub[ANT_KEY_LEN] = {1};
    const char *bad[] = {
        "not json\n",
        "[]\n",
        "{\"type\":\"event\",\"type\":\"event\"}\n",
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"hash\":\"00\"}\n",
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"hash\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"x\":\"1\"}\n",
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"actor\":{\"a\":[1]},"
        "\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n",
        "{\"type\":\"checkpoint\",\"seq\":-1}\n",
        "{\"type\":\"nope\"}\n",
        "{\"type\":\"event\",\"seq\":1.5}\n",
        /* a salt of the wrong length or type */
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"salt\":\"00\","
        "\"hash\":\"" Z64 "\"}\n",
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"salt\":\"" Z32
        "0\",\"hash\":\"" Z64 "\"}\n",
        "{\"type\":\"event\",\"seq\":1,\"time_ms\":1,\"decision\":\"allow\",\"salt\":7,"
        "\"hash\":\"" Z64 "\"}\n",
        /* redacted events: seq, hash and (v2) commit, nothing else, every one well formed */
        "{\"type\":\"redacted\",\"seq\":1}\n",
        "{\"type\":\"redacted\",\"hash\":\"" Z64 "\"}\n",
        "{\"type\":\"redacted\",\"seq\":0,\"hash\":\"" Z64 "\"}\n",
        "{\"type\":\"redacted\",\"seq\":\"1\",\"hash\":\"" Z64 "\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"00\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "0\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"commit\":\"" Z64 "0\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"commit\":\"zz" Z64 "\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"commit\":1}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"commit\":null}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"tenant\":\"t\"}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":\"" Z64 "\",\"commit\":\"" Z64 "\","
        "\"time_ms\":1}\n",
        "{\"type\":\"redacted\",\"seq\":1,\"hash\":{\"a\":1}}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]);
        uint8_t *c = test_memdup(bad[i], n);
        struct ant_audit_report rep;
        assert_int_equal(ant_audit_verify_export(ant_bytes_of(c, n), pub, &rep), -EBADMSG);
        if (strstr(rep.what, "malformed") == NULL && strstr(rep.what, "not an export") == NULL &&
            strstr(rep.what, "unknown") == NULL) {
            fprintf(stderr, "bad line %zu: %s\n", i, rep.what);
        }
        assert_int_equal(rep.first_bad_seq, 1);
        assert_int_equal(rep.line, 1);
        free(c);
    }
    /* a line over the limit */
    size_t n = ANT_AUDIT_EXPORT_LINE_MAX + 10;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    struct ant_audit_report rep;
    assert_int_equal(ant_audit_verify_export(ant_bytes_of(big, n), pub, &rep), -EBADMSG);
    free(big);
    /* deep nesting */
    char deep[512];
    memset(deep, '[', sizeof(deep));
    uint8_t *d = test_memdup(deep, sizeof(deep));
    assert_int_equal(ant_audit_verify_export(ant_bytes_of(d, sizeof(deep)), pub, &rep), -EBADMSG);
    free(d);
    /* empty input: nothing to check */
    assert_int_equal(ant_audit_verify_export(ant_bytes_of("", 0), pub, &rep), 0);
}

/* --- queries --- */

static int count_matching(int n, const char *tenant, const char *action, int decision)
{
    int c = 0;
    for (int i = 0; i < n; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        if ((tenant == NULL || strcmp(ev.tenant, tenant) == 0) &&
            (action == NULL || strcmp(ev.action, action) == 0) &&
            (decision < 0 || (int)ev.decision == decision)) {
            c++;
        }
    }
    return c;
}

static void test_query_filters_and_pages(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 60);
    json_t *res = NULL;
    int64_t next = -1;
    struct ant_audit_query q = {.tenant = "tenant-b"};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), count_matching(60, "tenant-b", NULL, -1));
    assert_int_equal(next, 0);
    size_t i;
    json_t *o;
    json_array_foreach(res, i, o)
    {
        assert_string_equal(json_string_value(json_object_get(o, "tenant")), "tenant-b");
        assert_null(json_object_get(o, "type"));
    }
    json_decref(res);

    q = (struct ant_audit_query){.tenant = "tenant-a", .action = "read", .decision = "allow"};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), count_matching(60, "tenant-a", "read", 1));
    json_decref(res);

    q = (struct ant_audit_query){.actor = "alice", .dataset_id = "ds_0123456789abcdef"};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    json_array_foreach(res, i, o)
    {
        int64_t seq = json_integer_value(json_object_get(o, "seq"));
        assert_true((seq - 1) % 2 == 1 && (seq - 1) % 5 != 0);
    }
    json_decref(res);

    /* pages of 7 give exactly the unpaged result, in order */
    q = (struct ant_audit_query){.decision = "deny"};
    json_t *all = NULL;
    assert_int_equal(ant_audit_query_run(f->a, &q, &all, &next), 0);
    assert_int_equal(json_array_size(all), count_matching(60, NULL, NULL, 0));
    q.limit = 7;
    size_t got = 0;
    int pages = 0;
    do {
        assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
        json_array_foreach(res, i, o)
        {
            assert_true(json_equal(o, json_array_get(all, got)));
            got++;
        }
        json_decref(res);
        q.after_seq = next;
        pages++;
    } while (next != 0);
    assert_int_equal(got, json_array_size(all));
    assert_int_equal(pages, (got + 6) / 7);
    json_decref(all);

    /* time range: everything so far is in [first, last] */
    q = (struct ant_audit_query){.from_ms = 1, .to_ms = ant_now_ms() + 1000, .limit = 1000};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), 60);
    json_decref(res);
    q = (struct ant_audit_query){.from_ms = ant_now_ms() + 1000};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), 0);
    json_decref(res);

    q = (struct ant_audit_query){.limit = 1001};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), -EINVAL);
    q = (struct ant_audit_query){.decision = "maybe"};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), -EINVAL);
    q = (struct ant_audit_query){.from_ms = 10, .to_ms = 5};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), -EINVAL);
}

/* The secondary indexes are built in batches; a query reads indexed events through them and
 * scans the rest. Whatever part is indexed, every filter, time range and page size must give
 * exactly what a brute-force filter over the events gives. */
#define IX_EVENTS 700
#define IX_BASE_MS 1700000000000LL

struct ix_event {
    char actor[8], tenant[8], dataset[8];
    const char *action;
    int decision;
    int64_t time_ms;
};
static struct ix_event g_ix[IX_EVENTS + 1]; /* by seq */
static int64_t g_ix_now;

static int64_t ix_clock(void *ctx)
{
    (void)ctx;
    return g_ix_now;
}

static void ix_append(struct ant_audit *a, int from, int to)
{
    for (int seq = from; seq <= to; seq++) {
        struct ix_event *e = &g_ix[seq];
        snprintf(e->actor, sizeof(e->actor), "a%d", seq % 3);
        snprintf(e->tenant, sizeof(e->tenant), "t%d", seq % 5);
        snprintf(e->dataset, sizeof(e->dataset), "d%d", seq % 4);
        e->action = seq % 2 ? "read" : "write";
        e->decision = seq % 3 == 0 ? 0 : 1;
        e->time_ms = IX_BASE_MS + (seq / 3) * 1000; /* three events share a second */
        g_ix_now = e->time_ms;
        struct ant_audit_event ev = {
            .actor = e->actor,
            .tenant = seq % 11 == 0 ? NULL : e->tenant,
            .action = e->action,
            .dataset_id = seq % 4 == 0 ? NULL : e->dataset,
            .decision = (enum ant_audit_decision)e->decision,
        };
        assert_int_equal(ant_audit_append(a, &ev), seq);
    }
}

static bool ix_match(int seq, const struct ant_audit_query *q)
{
    const struct ix_event *e = &g_ix[seq];
    return (q->actor == NULL || strcmp(q->actor, e->actor) == 0) &&
           (q->tenant == NULL || (seq % 11 != 0 && strcmp(q->tenant, e->tenant) == 0)) &&
           (q->dataset_id == NULL || (seq % 4 != 0 && strcmp(q->dataset_id, e->dataset) == 0)) &&
           (q->action == NULL || strcmp(q->action, e->action) == 0) &&
           (q->decision == NULL || strcmp(q->decision, e->decision ? "allow" : "deny") == 0) &&
           (q->from_ms == 0 || e->time_ms >= q->from_ms) &&
           (q->to_ms == 0 || e->time_ms < q->to_ms);
}

static int64_t ix_indexed_upto(const char *dir)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    snprintf(path, sizeof(path), "%s/audit.db", dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT coalesce(max(upto), 0) FROM events_indexed", -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* The index's mark once it reaches `want`, or where it stood after ~5 s. */
static int64_t ix_wait_upto(const char *dir, int64_t want)
{
    int64_t upto = ix_indexed_upto(dir);
    for (int tries = 0; tries < 500 && upto < want; tries++) {
        usleep(10000);
        upto = ix_indexed_upto(dir);
    }
    return upto;
}

/* How many events of `tenant` one query of up to 1,000 returns. */
static size_t ix_tenant_count(struct ant_audit *a, const char *tenant)
{
    json_t *res = NULL;
    int64_t next = 0;
    struct ant_audit_query q = {.tenant = tenant, .limit = 1000};
    assert_int_equal(ant_audit_query_run(a, &q, &res, &next), 0);
    size_t n = json_array_size(res);
    json_decref(res);
    return n;
}

/* Every filter combination x time range x page size against the brute force over 1..n. */
static void ix_check_all(struct ant_audit *a, int n)
{
    const struct ant_audit_query filters[] = {
        {0},
        {.tenant = "t1"},
        {.actor = "a2"},
        {.dataset_id = "d3"},
        {.tenant = "t2", .actor = "a0"},
        {.dataset_id = "d1", .decision = "allow"},
        {.tenant = "t4", .action = "write"},
        {.actor = "a1", .tenant = "t3", .dataset_id = "d2"},
        {.decision = "deny"},
        {.actor = "nobody"},
    };
    const int64_t ranges[][2] = {
        {0, 0},
        {IX_BASE_MS + 33 * 1000, IX_BASE_MS + 183 * 1000},
        {IX_BASE_MS + 150 * 1000 + 1, 0},
        {0, IX_BASE_MS + 140 * 1000},
        {IX_BASE_MS + 500 * 1000, 0},
    };
    const unsigned limits[] = {7, 1000};
    for (size_t fi = 0; fi < ANT_ARRAY_LEN(filters); fi++) {
        for (size_t ri = 0; ri < ANT_ARRAY_LEN(ranges); ri++) {
            for (size_t li = 0; li < ANT_ARRAY_LEN(limits); li++) {
                struct ant_audit_query q = filters[fi];
                q.from_ms = ranges[ri][0];
                q.to_ms = ranges[ri][1];
                q.limit = limits[li];
                int want = 1, pages = 0;
                int64_t next = 0;
                do {
                    json_t *res = NULL;
                    assert_int_equal(ant_audit_query_run(a, &q, &res, &next), 0);
                    assert_true(json_array_size(res) <= q.limit);
                    size_t i;
                    json_t *o;
                    json_array_foreach(res, i, o)
                    {
                        while (want <= n && !ix_match(want, &q)) {
                            want++;
                        }
                        assert_true(want <= n);
                        assert_int_equal(json_integer_value(json_object_get(o, "seq")), want);
                        want++;
                    }
                    json_decref(res);
                    assert_true(++pages < 200);
                    q.after_seq = next;
                } while (next != 0);
                while (want <= n && !ix_match(want, &q)) {
                    want++;
                }
                assert_int_equal(want, n + 1); /* nothing missed */
            }
        }
    }
}

/* Replaces the fixture's log by a new, empty one opened with the index options given (none:
 * only the file is removed). */
static struct ant_audit_opts fresh_log(struct fx *f, unsigned index_batch, unsigned delay_ms)
{
    const struct ant_audit_opts o = {.checkpoint_every = 100,
                                     .checkpoint_seconds = 3600,
                                     .max_batch = 64,
                                     .index_batch = index_batch,
                                     .index_delay_ms = delay_ms};
    ant_audit_close(f->a);
    f->a = NULL;
    assert_int_equal(unlinkat(f->dirfd, "audit.db", 0), 0);
    if (index_batch != 0) {
        assert_int_equal(ant_audit_open(f->dirfd, "audit.db", ANT_STORE_CREATE, f->sk, &o, &f->a),
                         0);
    }
    return o;
}

static void test_query_indexed_and_unindexed_agree(void **state)
{
    struct fx *f = *state;
    /* nothing is indexed while the handle is open: only at close */
    const struct ant_audit_opts o = fresh_log(f, 1000000, 3600000);
    ant_audit_test_clock(f->a, ix_clock, NULL);
    ix_append(f->a, 1, 400);
    assert_int_equal(ix_indexed_upto(f->dir), 0);
    ix_check_all(f->a, 400); /* all scanned */

    ant_audit_close(f->a);
    assert_int_equal(ix_indexed_upto(f->dir), 400);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &f->a), 0);
    ant_audit_test_clock(f->a, ix_clock, NULL);
    ix_check_all(f->a, 400); /* all indexed */
    ix_append(f->a, 401, IX_EVENTS);
    assert_int_equal(ix_indexed_upto(f->dir), 400);
    ix_check_all(f->a, IX_EVENTS); /* pages across the mark */

    ant_audit_close(f->a);
    assert_int_equal(ix_indexed_upto(f->dir), IX_EVENTS);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &f->a), 0);
    ix_check_all(f->a, IX_EVENTS);
    struct ant_audit_report rep;
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), false, &rep), 0);
}

/* Under load the writer indexes by itself, batch after batch; a second process writing the
 * same log never makes it index an event twice (the primary key would refuse it). */
static void test_index_batches_while_writing(void **state)
{
    struct fx *f = *state;
    const struct ant_audit_opts o = fresh_log(f, 50, 20);
    struct ant_audit *b = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &b), 0);
    for (int i = 0; i < 300; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        assert_true(ant_audit_append(i % 2 ? b : f->a, &ev) > 0);
    }
    /* indexed in batches without a close: within a few delays */
    assert_int_equal(ix_wait_upto(f->dir, 300), 300);
    ant_audit_close(b);
    assert_int_equal(ix_tenant_count(f->a, "tenant-b"), count_matching(300, "tenant-b", NULL, -1));
}

/* A long backlog (here left by a handle that never indexes while open) is indexed in slices of
 * twice index_batch, one after a group, never in one transaction that would hold up every
 * append queued behind it. */
static void test_index_backlog_in_slices(void **state)
{
    struct fx *f = *state;
    fresh_log(f, 1000000, 3600000); /* f->a indexes nothing until it closes */
    append_n(f->a, 0, 500);
    assert_int_equal(ix_indexed_upto(f->dir), 0);
    /* batch 50, and no timed batch for an hour: only a group makes b index, a slice each */
    const struct ant_audit_opts o = {.checkpoint_every = 100,
                                     .checkpoint_seconds = 3600,
                                     .max_batch = 64,
                                     .index_batch = 50,
                                     .index_delay_ms = 3600000};
    struct ant_audit *b = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &b), 0);
    for (int64_t want = 100; want <= 300; want += 100) {
        char rid[32];
        struct ant_audit_event ev = make_event(500 + (int)(want / 100) - 1, rid, sizeof(rid));
        assert_true(ant_audit_append(b, &ev) > 0);
        /* slices of 2 x index_batch, never the backlog at once (an extra slice may run when the
         * writer wakes for another reason under load: seen once in a full suite run) */
        int64_t got = ix_wait_upto(f->dir, want);
        assert_true(got >= want && got <= want + 100 && got % 100 == 0);
    }
    /* closing indexes the rest, slice after slice */
    ant_audit_close(b);
    assert_int_equal(ix_indexed_upto(f->dir), 503);
    assert_int_equal(ix_tenant_count(f->a, "tenant-b"), count_matching(503, "tenant-b", NULL, -1));
}

/* The index check finds a row removed from events_by (by someone who can write the file and
 * drop its triggers): the chain still verifies, the query misses the event, the check names it. */
static void test_verify_index_finds_a_hole(void **state)
{
    struct fx *f = *state;
    fresh_log(f, 50, 20);
    append_n(f->a, 0, 120);
    ant_audit_close(f->a); /* indexes the rest */
    f->a = NULL;
    assert_int_equal(ix_indexed_upto(f->dir), 120);
    struct ant_audit *ro = NULL;
    int64_t upto = -1, missing = -1;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, NULL, NULL, &ro), 0);
    assert_int_equal(ant_audit_verify_index(ro, &upto, &missing), 0);
    assert_int_equal(upto, 120);
    assert_int_equal(missing, 0);
    ant_audit_close(ro);

    char path[4096];
    copy_file(f, "audit.db", "t.db");
    assert_int_equal(ant_audit_test_drop_triggers(f->dirfd, "t.db"), 0);
    snprintf(path, sizeof(path), "%s/t.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TRIGGER IF EXISTS events_by_no_delete;"
                                  " DELETE FROM events_by WHERE k = 2 AND seq IN (37, 90)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ant_audit_open(f->dirfd, "t.db", 0, NULL, NULL, &ro), 0);
    struct ant_audit_report rep;
    assert_int_equal(verify_splits(ro, ant_signkey_public(f->sk), false, &rep), 0);
    assert_int_equal(ant_audit_verify_index(ro, &upto, &missing), -EBADMSG);
    assert_int_equal(upto, 120);
    assert_int_equal(missing, 37);
    /* what the hole hides: event 37 (make_event(36): tenant k_tenants[0]) from its tenant */
    assert_int_equal(ix_tenant_count(ro, k_tenants[0]),
                     count_matching(120, k_tenants[0], NULL, -1) - 1);
    ant_audit_close(ro);
}

/* An index build that fails (here its table is gone) never fails an append, is not retried
 * after every group, and catches up once it can. */
static void test_index_failure_never_fails_appends(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    (void)fresh_log(f, 5, 50);
    snprintf(path, sizeof(path), "%s/audit.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE events_by RENAME TO events_by_away", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    for (int i = 0; i < 60; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        assert_int_equal(ant_audit_append(f->a, &ev), i + 1);
    }
    assert_int_equal(ix_indexed_upto(f->dir), 0);
    json_t *res = NULL;
    int64_t next = 0;
    struct ant_audit_query q = {.tenant = "tenant-b", .limit = 1000};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0); /* all scanned */
    assert_int_equal(json_array_size(res), count_matching(60, "tenant-b", NULL, -1));
    json_decref(res);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE events_by_away RENAME TO events_by", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char rid[32];
    struct ant_audit_event ev = make_event(60, rid, sizeof(rid));
    assert_int_equal(ant_audit_append(f->a, &ev), 61);
    assert_int_equal(ix_wait_upto(f->dir, 61), 61);
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), count_matching(61, "tenant-b", NULL, -1));
    json_decref(res);
}

static off_t file_size(int dirfd, const char *name)
{
    struct stat sb;
    return fstatat(dirfd, name, &sb, 0) == 0 ? sb.st_size : -1;
}

/* The WAL is copied into audit.db while the handle is open (by the checkpointer thread, or by
 * the writer when the WAL has grown eight times past the mark), so it stays small however many
 * groups are committed. Without checkpoints, 400 groups leave 800+ pages (3+ MiB) in it. */
static void test_wal_is_checkpointed_while_open(void **state)
{
    struct fx *f = *state;
    const struct ant_audit_opts o = {.checkpoint_every = 1000,
                                     .checkpoint_seconds = 3600,
                                     .max_batch = 64,
                                     .wal_checkpoint_pages = 16};
    ant_audit_close(f->a);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &o, &f->a), 0);
    off_t db0 = file_size(f->dirfd, "audit.db");
    for (int i = 0; i < 400; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(i, rid, sizeof(rid));
        assert_int_equal(ant_audit_append(f->a, &ev), i + 1);
    }
    off_t db = db0;
    for (int tries = 0; tries < 500 && db <= db0; tries++) {
        usleep(10000);
        db = file_size(f->dirfd, "audit.db");
    }
    assert_true(db > db0);
    off_t wal = file_size(f->dirfd, "audit.db-wal");
    assert_true(wal >= 0 && wal < 1024 * 1024);
    expect_intact(f, false, 400);
}

/* A log written before the indexes moved (schema step 1) is upgraded: its events are indexed
 * by the upgrade, and queries find them. */
static void test_upgrade_from_step1_indexes_old_events(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    (void)fresh_log(f, 0, 0);
    assert_int_equal(ant_audit_test_create_at_step(f->dirfd, "audit.db", 1), 0);
    snprintf(path, sizeof(path), "%s/audit.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                                  " WHERE i < 90) INSERT INTO events(seq, time_ms, actor,"
                                  " tenant, dataset_id, action, decision, hash)"
                                  " SELECT i, 1000 * i, 'a' || (i % 2), 't' || (i % 3),"
                                  " 'd' || (i % 5), 'read', 1, zeroblob(32) FROM n",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
    assert_int_equal(ix_indexed_upto(f->dir), 90);
    json_t *res = NULL;
    int64_t next = 0;
    struct ant_audit_query q = {.tenant = "t1", .actor = "a0", .to_ms = 60000};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    /* i % 3 == 1, i even, i < 60: 4, 10, ..., 58 */
    assert_int_equal(json_array_size(res), 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 0), "seq")), 4);
    json_decref(res);
    /* the index refuses to be edited like the log itself */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events_by", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* --- the gateway's calls: checkpoints, status, export to a callback --- */

static void test_checkpoints_lists_the_last_ones_oldest_first(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 35);
    json_t *arr = NULL;
    assert_int_equal(ant_audit_checkpoints(f->a, 2, &arr), 0);
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 20);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 1), "seq")), 30);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 1), "prev_seq")), 20);
    assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(arr, 1), "sig"))),
                     128);
    json_decref(arr);
    assert_int_equal(ant_audit_checkpoints(f->a, 0, &arr), 0);
    assert_int_equal(json_array_size(arr), 3);
    json_decref(arr);
    assert_int_equal(ant_audit_checkpoints(f->a, 1001, &arr), -EINVAL);
}

static void test_status_reports_intact_and_broken(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 12);
    json_t *st = NULL;
    assert_int_equal(ant_audit_status(f->a, NULL, &st), 0);
    assert_true(json_is_true(json_object_get(st, "intact")));
    assert_int_equal(json_integer_value(json_object_get(st, "last_seq")), 12);
    assert_int_equal(json_integer_value(json_object_get(st, "signed_seq")), 10);
    assert_int_equal(json_integer_value(json_object_get(st, "queue_depth")), 0);
    assert_null(json_object_get(st, "what"));
    json_decref(st);
    /* with another site's key, the first checkpoint fails */
    struct ant_signkey *other = NULL;
    assert_int_equal(ant_signkey_generate(&other), 0);
    assert_int_equal(ant_audit_status(f->a, ant_signkey_public(other), &st), 0);
    assert_true(json_is_false(json_object_get(st, "intact")));
    assert_int_equal(json_integer_value(json_object_get(st, "first_bad_seq")), 10);
    assert_non_null(json_string_value(json_object_get(st, "what")));
    json_decref(st);
    ant_signkey_free(other);
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, NULL, NULL, &ro), 0);
    assert_int_equal(ant_audit_status(ro, NULL, &st), -EINVAL);
    ant_audit_close(ro);
}

struct sink {
    struct ant_buf b;
    int fail_after;
};

static int sink_write(void *ctx, const uint8_t *p, size_t len)
{
    struct sink *s = ctx;
    if (s->fail_after-- == 0) {
        return -EPIPE;
    }
    return ant_buf_append(&s->b, p, len);
}

static void test_export_to_callback_while_appending(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 7);
    struct sink s = {.b = ANT_BUF_INIT(1 << 24), .fail_after = -1};
    /* appenders keep going during the export: it sees one consistent snapshot */
    pthread_t t;
    struct thr_arg arg = {.a = f->a, .id = 9, .n = 30};
    assert_int_equal(pthread_create(&t, NULL, appender, &arg), 0);
    int64_t lines = ant_audit_export_cb(f->a, sink_write, &s);
    pthread_join(t, NULL);
    assert_true(lines >= 8);
    struct ant_audit_report rep;
    uint8_t *copy = test_memdup(s.b.p, s.b.len);
    assert_int_equal(
        ant_audit_verify_export(ant_bytes_of(copy, s.b.len), ant_signkey_public(f->sk), &rep), 0);
    assert_true(rep.events >= 7);
    free(copy);
    ant_buf_fini(&s.b);
    /* a consumer that goes away stops the export with its error */
    struct sink bad = {.b = ANT_BUF_INIT(1 << 24), .fail_after = 0};
    assert_int_equal(ant_audit_export_cb(f->a, sink_write, &bad), -EPIPE);
    ant_buf_fini(&bad.b);
    expect_intact(f, false, 37);
}

/* --- tenant-scoped exports: one tenant's events in full, the others redacted --- */

/* Shows the events of one tenant (the gateway's rule, with datasets, is tested with the
 * daemon); fail_at: the n-th call fails. */
struct tscope {
    const char *tenant;
    int fail_at, calls;
};

static int tenant_visible(void *ctx, const struct ant_audit_event *ev)
{
    struct tscope *t = ctx;
    if (++t->calls == t->fail_at) {
        return -EIO;
    }
    return t->tenant == NULL || (ev->tenant != NULL && strcmp(ev->tenant, t->tenant) == 0);
}

/* The export of `a` as `tenant`'s auditor sees it (NULL: a scope that shows everything). */
static uint8_t *scoped_to_mem(struct ant_audit *a, const char *tenant, size_t *len)
{
    struct tscope t = {.tenant = tenant};
    struct ant_audit_scope scope = {tenant_visible, &t};
    struct sink s = {.b = ANT_BUF_INIT(1 << 24), .fail_after = -1};
    int64_t lines = ant_audit_export_scoped(a, &scope, sink_write, &s);
    assert_true(lines > 0);
    uint8_t *p = test_memdup(s.b.p, s.b.len);
    *len = s.b.len;
    ant_buf_fini(&s.b);
    return p;
}

static int lines_verify(const json_t *lines, const uint8_t pub[ANT_KEY_LEN],
                        struct ant_audit_report *rep)
{
    struct ant_buf b = ANT_BUF_INIT(1 << 24);
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_int_equal(ant_buf_append_str(&b, s), 0);
        assert_int_equal(ant_buf_append(&b, "\n", 1), 0);
        free(s);
    }
    uint8_t *copy = test_memdup(b.p, b.len);
    int rc = ant_audit_verify_export(ant_bytes_of(copy, b.len), pub, rep);
    assert_int_equal(rc == 0, rep->first_bad_seq == 0);
    free(copy);
    ant_buf_fini(&b);
    return rc;
}

/* The line of the event with this seq, shown in full or redacted. */
static size_t record_of(const json_t *lines, int64_t seq)
{
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        if (json_integer_value(json_object_get(o, "seq")) == seq &&
            strcmp(json_string_value(json_object_get(o, "type")), "checkpoint") != 0) {
            return i;
        }
    }
    fail();
    return 0;
}

static bool is_type(const json_t *o, const char *type)
{
    return strcmp(json_string_value(json_object_get(o, "type")), type) == 0;
}

static bool is_hex(const json_t *v, size_t bytes)
{
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) != 2 * bytes) {
        return false;
    }
    return strspn(s, "0123456789abcdef") == 2 * bytes;
}

/* make_event(i) is seq i + 1; tenant-a's are the seqs 1, 4, 7, ... */
static bool seq_is_tenant_a(int64_t seq)
{
    return (seq - 1) % 3 == 0;
}

static void test_scoped_export_shows_one_tenant_and_verifies(void **state)
{
    struct fx *f = *state;
    const uint8_t *pub = ant_signkey_public(f->sk);
    append_n(f->a, 0, BASE_N); /* signed at 10, 20, 30: the exports add no checkpoint */
    size_t flen = 0, slen = 0;
    uint8_t *full = export_to_mem(f, f->a, &flen);
    uint8_t *sc = scoped_to_mem(f->a, "tenant-a", &slen);
    json_t *fl = export_lines(full, flen), *sl = export_lines(sc, slen);
    assert_int_equal(json_array_size(fl), json_array_size(sl));
    int64_t redacted = 0;
    for (size_t i = 0; i < json_array_size(fl); i++) {
        json_t *fo = json_array_get(fl, i), *so = json_array_get(sl, i);
        int64_t seq = json_integer_value(json_object_get(fo, "seq"));
        if (is_type(fo, "event")) {
            assert_true(is_hex(json_object_get(fo, "salt"), ANT_AUDIT_SALT_LEN)); /* v2 */
        }
        if (is_type(fo, "checkpoint") || seq_is_tenant_a(seq)) {
            assert_true(json_equal(fo, so)); /* the same line as in the full export */
            continue;
        }
        /* the others: their seq and hashes, nothing else */
        assert_true(is_type(so, "redacted"));
        assert_int_equal(json_object_size(so), 4);
        assert_int_equal(json_integer_value(json_object_get(so, "seq")), seq);
        assert_true(json_equal(json_object_get(so, "hash"), json_object_get(fo, "hash")));
        assert_true(is_hex(json_object_get(so, "commit"), ANT_AUDIT_HASH_LEN));
        redacted++;
    }
    assert_int_equal(redacted, BASE_N - 10);
    /* nothing of the other tenants' events is in it, not even their times */
    assert_null(memmem(sc, slen, "tenant-b", 8));
    assert_null(memmem(sc, slen, "tenant-c", 8));
    assert_null(memmem(sc, slen, "\"req-1\"", 7)); /* seq 2's request id */
    struct ant_audit_report rep;
    assert_int_equal(lines_verify(sl, pub, &rep), 0);
    assert_int_equal(rep.events, BASE_N);
    assert_int_equal(rep.redacted, BASE_N - 10);
    assert_int_equal(rep.unbound, 0);
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.signed_seq, BASE_N);
    /* the full export verifies as before, with nothing redacted */
    assert_int_equal(lines_verify(fl, pub, &rep), 0);
    assert_int_equal(rep.redacted, 0);
    /* a scope that shows everything gives the full export, byte for byte */
    size_t alen = 0;
    uint8_t *all = scoped_to_mem(f->a, NULL, &alen);
    assert_int_equal(alen, flen);
    assert_memory_equal(all, full, flen);
    /* a failing scope stops the export with its error */
    struct tscope t = {.tenant = "tenant-a", .fail_at = 7};
    struct ant_audit_scope scope = {tenant_visible, &t};
    struct sink s = {.b = ANT_BUF_INIT(1 << 24), .fail_after = -1};
    assert_int_equal(ant_audit_export_scoped(f->a, &scope, sink_write, &s), -EIO);
    ant_buf_fini(&s.b);
    /* queries show no salt: it is for verifiers of exports */
    json_t *res = NULL;
    int64_t next = 0;
    struct ant_audit_query q = {.tenant = "tenant-a"};
    assert_int_equal(ant_audit_query_run(f->a, &q, &res, &next), 0);
    assert_int_equal(json_array_size(res), 10);
    assert_null(json_object_get(json_array_get(res, 0), "salt"));
    assert_non_null(json_object_get(json_array_get(res, 0), "hash"));
    json_decref(res);
    json_decref(fl);
    json_decref(sl);
    free(all);
    free(full);
    free(sc);
}

/* Applies `edit` to a copy of the lines and returns the first bad seq the verifier names. */
static int64_t edited_bad_seq(const json_t *base, const uint8_t *pub,
                              void (*edit)(json_t *lines, int64_t seq), int64_t seq)
{
    struct ant_audit_report rep;
    json_t *t = json_deep_copy(base);
    edit(t, seq);
    int rc = lines_verify(t, pub, &rep);
    json_decref(t);
    if (rc == 0) {
        return 0;
    }
    return rep.first_bad_seq;
}

static void set_member(json_t *lines, int64_t seq, const char *key, json_t *v)
{
    json_object_set_new(json_array_get(lines, record_of(lines, seq)), key, v);
}

/* Flips the first hex digit of member `key` of the record of seq. */
static void flip_hex(json_t *lines, int64_t seq, const char *key)
{
    json_t *o = json_array_get(lines, record_of(lines, seq));
    char h[160];
    snprintf(h, sizeof(h), "%s", json_string_value(json_object_get(o, key)));
    h[0] = h[0] == '0' ? '1' : '0';
    json_object_set_new(o, key, json_string(h));
}

static void edit_actor(json_t *l, int64_t seq)
{
    set_member(l, seq, "actor", json_string("mallory"));
}

static void edit_salt(json_t *l, int64_t seq)
{
    flip_hex(l, seq, "salt");
}

static void edit_hash(json_t *l, int64_t seq)
{
    flip_hex(l, seq, "hash");
}

static void edit_commit(json_t *l, int64_t seq)
{
    flip_hex(l, seq, "commit");
}

static void edit_drop_commit(json_t *l, int64_t seq)
{
    json_object_del(json_array_get(l, record_of(l, seq)), "commit");
}

static void edit_add_tenant(json_t *l, int64_t seq)
{
    set_member(l, seq, "tenant", json_string("tenant-b"));
}

static void edit_drop(json_t *l, int64_t seq)
{
    json_array_remove(l, record_of(l, seq));
}

/* The redacted records of seq and seq + 3 trade their commitments and hashes. */
static void edit_swap(json_t *l, int64_t seq)
{
    json_t *a = json_array_get(l, record_of(l, seq)), *b = json_array_get(l, record_of(l, seq + 3));
    json_t *ac = json_deep_copy(a);
    json_object_set(a, "commit", json_object_get(b, "commit"));
    json_object_set(a, "hash", json_object_get(b, "hash"));
    json_object_set(b, "commit", json_object_get(ac, "commit"));
    json_object_set(b, "hash", json_object_get(ac, "hash"));
    json_decref(ac);
}

/* A redacted event shown as another event in full: tenant-a's event 1 copied to seq. */
static void edit_forge_full(json_t *l, int64_t seq)
{
    json_t *forged = json_deep_copy(json_array_get(l, record_of(l, 1)));
    json_object_set_new(forged, "seq", json_integer(seq));
    json_array_set_new(l, record_of(l, seq), forged);
}

static void edit_ckpt_sig(json_t *l, int64_t seq)
{
    json_t *c = json_array_get(l, line_of(l, seq, true));
    char sig[129];
    snprintf(sig, sizeof(sig), "%s", json_string_value(json_object_get(c, "sig")));
    sig[5] = sig[5] == 'a' ? 'b' : 'a';
    json_object_set_new(c, "sig", json_string(sig));
}

/* A checkpoint forged at seq with the hash the export shows there. */
static void edit_ckpt_forge(json_t *l, int64_t seq)
{
    json_t *c = json_deep_copy(json_array_get(l, line_of(l, 10, true)));
    json_object_set(c, "hash", json_object_get(json_array_get(l, record_of(l, seq)), "hash"));
    json_object_set_new(c, "seq", json_integer(seq));
    json_array_insert_new(l, record_of(l, seq) + 1, c);
}

static void edit_ckpt_drop(json_t *l, int64_t seq)
{
    json_array_remove(l, line_of(l, seq, true));
}

static void test_scoped_export_tamper_fails(void **state)
{
    struct fx *f = *state;
    const uint8_t *pub = ant_signkey_public(f->sk);
    append_n(f->a, 0, BASE_N);
    size_t len = 0;
    uint8_t *p = scoped_to_mem(f->a, "tenant-a", &len);
    json_t *base = export_lines(p, len);
    struct {
        void (*edit)(json_t *lines, int64_t seq);
        int64_t seq, want;
    } cases[] = {
        {edit_actor, 7, 7},         /* an event in full changed */
        {edit_salt, 13, 13},        /* its salt changed */
        {edit_hash, 7, 7},          /* its stored hash changed */
        {edit_hash, 5, 5},          /* a redacted event's hash changed */
        {edit_hash, 20, 20},        /* ... also one a checkpoint signs */
        {edit_commit, 5, 5},        /* a redacted event's commitment changed */
        {edit_drop_commit, 5, 5},   /* shown as a v1 event, whose link cannot be checked */
        {edit_add_tenant, 5, 5},    /* a member a redacted event may not have */
        {edit_drop, 5, 5},          /* a redacted event dropped */
        {edit_drop, 7, 7},          /* an event in full dropped */
        {edit_drop, 30, 30},        /* the last one, a checkpoint follows */
        {edit_swap, 5, 5},          /* two redacted events swapped */
        {edit_forge_full, 8, 8},    /* a redacted event replaced by a forged one */
        {edit_ckpt_sig, 20, 20},    /* a checkpoint's signature forged */
        {edit_ckpt_forge, 15, 15},  /* a checkpoint added */
        {edit_ckpt_drop, 10, 10},   /* a checkpoint dropped */
    };
    for (size_t i = 0; i < ANT_ARRAY_LEN(cases); i++) {
        int64_t got = edited_bad_seq(base, pub, cases[i].edit, cases[i].seq);
        if (got != cases[i].want) {
            fprintf(stderr, "scoped tamper case %zu: want %lld, got %lld\n", i,
                    (long long)cases[i].want, (long long)got);
        }
        assert_int_equal(got, cases[i].want);
    }
    json_decref(base);
    free(p);
}

static void test_scoped_export_every_truncation_and_flip_fails(void **state)
{
    struct fx *f = *state;
    const uint8_t *pub = ant_signkey_public(f->sk);
    append_n(f->a, 0, 12); /* signed at 10, and at 12 by the export */
    size_t len = 0;
    uint8_t *p = scoped_to_mem(f->a, "tenant-b", &len);
    assert_non_null(memmem(p, len, "\"type\":\"redacted\"", 17));
    expect_every_prefix_fails_unless_at_a_checkpoint(p, len, pub);
    struct ant_audit_report rep;
    for (size_t i = 0; i < len; i++) {
        uint8_t *c = test_memdup(p, len);
        c[i] ^= 1;
        int rc = ant_audit_verify_export(ant_bytes_of(c, len), pub, &rep);
        if (rc != -EBADMSG) {
            fprintf(stderr, "flip at %zu ('%c') verifies\n", i, p[i]);
        }
        assert_int_equal(rc, -EBADMSG);
        free(c);
    }
    free(p);
}

/* The limit docs/security.md states: the site chooses which events a tenant sees in full, and
 * one of the tenant's own shown redacted is, to the verifier, one of another tenant's. */
static int hide_seq_4(void *ctx, const struct ant_audit_event *ev)
{
    (void)ctx;
    return ev->tenant != NULL && strcmp(ev->tenant, "tenant-a") == 0 &&
           strcmp(ev->request_id, "req-3") != 0;
}

static void test_scoped_export_cannot_show_an_own_event_was_hidden(void **state)
{
    struct fx *f = *state;
    append_n(f->a, 0, 12);
    struct ant_audit_scope scope = {hide_seq_4, NULL};
    struct sink s = {.b = ANT_BUF_INIT(1 << 24), .fail_after = -1};
    assert_true(ant_audit_export_scoped(f->a, &scope, sink_write, &s) > 0);
    json_t *l = export_lines(s.b.p, s.b.len);
    assert_true(is_type(json_array_get(l, record_of(l, 4)), "redacted"));
    struct ant_audit_report rep;
    assert_int_equal(lines_verify(l, ant_signkey_public(f->sk), &rep), 0);
    assert_int_equal(rep.redacted, 12 - 3);
    json_decref(l);
    ant_buf_fini(&s.b);
}

/* A log that an older antenna began (v1 events, no salt) and this one continued: both
 * verify; a scoped export shows v1 events redacted without a commitment, and the events in
 * full whose link to a checkpoint runs through one are counted as unbound. */
static void test_scoped_export_of_a_v1_then_v2_chain(void **state)
{
    struct fx *f = *state;
    const uint8_t *pub = ant_signkey_public(f->sk);
    struct ant_audit_report rep;
    ant_audit_test_write_v1(f->a, true);
    append_n(f->a, 0, 15); /* v1: 1..15, signed at 10 */
    ant_audit_test_write_v1(f->a, false);
    append_n(f->a, 15, 15); /* v2: 16..30, signed at 20 and 30 */
    expect_intact(f, true, BASE_N);
    size_t flen = 0, len = 0;
    uint8_t *full = export_to_mem(f, f->a, &flen);
    json_t *fl = export_lines(full, flen);
    assert_int_equal(lines_verify(fl, pub, &rep), 0);
    assert_null(json_object_get(json_array_get(fl, record_of(fl, 15)), "salt"));
    assert_non_null(json_object_get(json_array_get(fl, record_of(fl, 16)), "salt"));
    uint8_t *p = scoped_to_mem(f->a, "tenant-a", &len);
    json_t *l = export_lines(p, len);
    assert_int_equal(json_object_size(json_array_get(l, record_of(l, 14))), 3); /* no commit */
    assert_int_equal(json_object_size(json_array_get(l, record_of(l, 17))), 4);
    assert_int_equal(lines_verify(l, pub, &rep), 0);
    assert_int_equal(rep.redacted, 20);
    /* tenant-a's 1, 4, 7 and 13 are followed by a v1 event shown redacted before the next
     * checkpoint; 10 is signed itself; 16, 19, ... are followed by v2 events only */
    assert_int_equal(rep.unbound, 4);
    assert_int_equal(rep.first_unbound, 1);
    /* no v1 event after a v2 one: a v2 event shown without its commitment or salt fails */
    assert_int_equal(edited_bad_seq(l, pub, edit_drop_commit, 17), 17);
    json_object_del(json_array_get(l, record_of(l, 19)), "salt");
    assert_int_equal(lines_verify(l, pub, &rep), -EBADMSG);
    assert_int_equal(rep.first_bad_seq, 19);
    json_decref(l);
    free(p);
    /* before the first v2 event shown, a v2 event shown as v1 is not caught, but it can only
     * unbind the events in full before it, which the report counts: tenant-c's 15, which the
     * first v2 event (16) follows */
    p = scoped_to_mem(f->a, "tenant-c", &len);
    l = export_lines(p, len);
    assert_int_equal(lines_verify(l, pub, &rep), 0);
    assert_int_equal(rep.unbound, 4); /* 3, 6, 9, 12 */
    json_object_del(json_array_get(l, record_of(l, 16)), "commit");
    assert_int_equal(lines_verify(l, pub, &rep), 0);
    assert_int_equal(rep.unbound, 5);
    json_decref(l);
    json_decref(fl);
    free(p);
    free(full);
}

/* A log of schema step 2 (v1 events, a signed checkpoint) is upgraded: the old events keep
 * their hashes and no salt, the new ones are v2, and the whole chain verifies. */
static void test_upgrade_from_step2_continues_the_chain_as_v2(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    struct ant_audit_verifier v;
    (void)fresh_log(f, 0, 0);
    assert_int_equal(ant_audit_test_create_at_step(f->dirfd, "audit.db", 2), 0);
    snprintf(path, sizeof(path), "%s/audit.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO events(seq, time_ms, request_id, actor,"
                                        " tenant, action, decision, hash)"
                                        " VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                                        -1, &ins, NULL),
                     SQLITE_OK);
    assert_int_equal(ant_audit_verifier_init(&v, ant_signkey_public(f->sk)), 0);
    for (int64_t seq = 1; seq <= 5; seq++) {
        char rid[32];
        snprintf(rid, sizeof(rid), "old-%lld", (long long)seq);
        struct ant_audit_event ev = {
            .request_id = rid, .actor = "alice", .tenant = "tenant-a", .action = "read"};
        ev.decision = ANT_AUDIT_ALLOW;
        assert_int_equal(ant_audit_verifier_event(&v, seq, 1000 * seq, &ev, NULL, NULL), 0);
        sqlite3_bind_int64(ins, 1, seq);
        sqlite3_bind_int64(ins, 2, 1000 * seq);
        sqlite3_bind_text(ins, 3, rid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, "alice", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 5, "tenant-a", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 6, "read", -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 7, v.head, sizeof(v.head), SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    uint8_t msg[ANT_AUDIT_CKPT_MSG_LEN], sig[ANT_SIG_LEN];
    ant_audit_checkpoint_msg(5, v.head, 5000, 0, msg);
    assert_int_equal(ant_signkey_sign(f->sk, ant_bytes_of(msg, sizeof(msg)), sig), 0);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO checkpoints(seq, hash, time_ms, prev_seq, sig)"
                                        " VALUES (5, ?, 5000, 0, ?)",
                                        -1, &ins, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(ins, 1, v.head, sizeof(v.head), SQLITE_TRANSIENT);
    sqlite3_bind_blob(ins, 2, sig, sizeof(sig), SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    ant_audit_verifier_fini(&v);
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
    append_n(f->a, 0, 10);
    reopen(f); /* signs the tail */
    expect_intact(f, true, 15);
    size_t len = 0;
    uint8_t *p = scoped_to_mem(f->a, "tenant-b", &len);
    json_t *l = export_lines(p, len);
    assert_null(json_object_get(json_array_get(l, record_of(l, 5)), "commit"));
    assert_non_null(json_object_get(json_array_get(l, record_of(l, 6)), "commit"));
    struct ant_audit_report rep;
    assert_int_equal(lines_verify(l, ant_signkey_public(f->sk), &rep), 0);
    assert_int_equal(rep.events, 15);
    json_decref(l);
    free(p);
}

/* --- asynchronous append --- */

/* What one async event's done saw; `t` collects the calls of one test. */
struct async_track {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    pthread_t writer; /* the thread of the first done */
    bool writer_seen, other_thread;
    sem_t *hold; /* the queue-bound test holds the writer in its first done */
};

struct async_slot {
    struct async_track *t;
    int64_t seq;
    int calls;
    pthread_t submitter;
};

static void async_done(void *arg, int64_t seq)
{
    struct async_slot *s = arg;
    struct async_track *t = s->t;
    pthread_mutex_lock(&t->mu);
    s->seq = seq;
    s->calls++;
    if (pthread_equal(pthread_self(), s->submitter)) {
        t->other_thread = true; /* must run on the writer, never inside the submit */
    }
    if (!t->writer_seen) {
        t->writer = pthread_self();
        t->writer_seen = true;
    } else if (!pthread_equal(t->writer, pthread_self())) {
        t->other_thread = true;
    }
    t->calls++;
    sem_t *hold = t->hold;
    t->hold = NULL;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (hold != NULL) {
        while (sem_wait(hold) < 0) {
        }
    }
}

static void async_track_init(struct async_track *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
}

static void async_wait(struct async_track *t, int calls)
{
    pthread_mutex_lock(&t->mu);
    while (t->calls < calls) {
        pthread_cond_wait(&t->cv, &t->mu);
    }
    pthread_mutex_unlock(&t->mu);
}

static void async_track_fini(struct async_track *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

/* Submits events from..from+n with every string in a heap copy that is wiped and freed right
 * after the call returns, so ASan catches a writer that kept a borrowed pointer. */
static void submit_async(struct ant_audit *a, struct async_slot *slots, int from, int n)
{
    for (int i = 0; i < n; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(from + i, rid, sizeof(rid));
        const char **f[] = {&ev.request_id, &ev.actor,       &ev.tenant,
                            &ev.credential, &ev.action,      &ev.resource_kind,
                            &ev.resource_id, &ev.dataset_id, &ev.reason,
                            &ev.transfer,   &ev.detail};
        char *copies[ANT_ARRAY_LEN(f)];
        for (size_t k = 0; k < ANT_ARRAY_LEN(f); k++) {
            copies[k] = *f[k] != NULL ? (char *)test_memdup(*f[k], strlen(*f[k]) + 1) : NULL;
            *f[k] = copies[k];
        }
        slots[i].submitter = pthread_self();
        assert_int_equal(ant_audit_append_async(a, &ev, async_done, &slots[i]), 0);
        for (size_t k = 0; k < ANT_ARRAY_LEN(f); k++) {
            if (copies[k] != NULL) {
                memset(copies[k], 'Z', strlen(copies[k]));
                free(copies[k]);
            }
        }
    }
}

struct async_thr {
    struct ant_audit *a;
    struct async_slot *slots;
    int id, n;
};

static void *async_submitter(void *p)
{
    struct async_thr *t = p;
    submit_async(t->a, t->slots, t->id * 1000, t->n);
    return NULL;
}

static void test_async_from_threads_completes_once_in_order(void **state)
{
    struct fx *f = *state;
    enum { NT = 6, PER = 150, SYNC_NT = 4, SYNC_PER = 30 };
    struct async_track t;
    async_track_init(&t);
    struct async_slot *slots = calloc(NT * PER, sizeof(*slots));
    assert_non_null(slots);
    pthread_t th[NT + SYNC_NT];
    struct async_thr args[NT];
    struct thr_arg sargs[SYNC_NT];
    for (int i = 0; i < NT * PER; i++) {
        slots[i].t = &t;
    }
    for (int i = 0; i < NT; i++) {
        args[i] = (struct async_thr){.a = f->a, .slots = slots + i * PER, .id = i, .n = PER};
        assert_int_equal(pthread_create(&th[i], NULL, async_submitter, &args[i]), 0);
    }
    /* synchronous callers share the queue and the group commits */
    for (int i = 0; i < SYNC_NT; i++) {
        sargs[i] = (struct thr_arg){.a = f->a, .id = 100 + i, .n = SYNC_PER};
        assert_int_equal(pthread_create(&th[NT + i], NULL, appender, &sargs[i]), 0);
    }
    for (int i = 0; i < NT + SYNC_NT; i++) {
        pthread_join(th[i], NULL);
    }
    for (int i = 0; i < SYNC_NT; i++) {
        assert_int_equal(sargs[i].errors, 0);
    }
    async_wait(&t, NT * PER);
    const int total = NT * PER + SYNC_NT * SYNC_PER;
    bool *seen = calloc(total + 1, sizeof(*seen));
    assert_non_null(seen);
    for (int i = 0; i < NT; i++) {
        int64_t prev = 0;
        for (int k = 0; k < PER; k++) {
            const struct async_slot *s = &slots[i * PER + k];
            assert_int_equal(s->calls, 1);
            assert_true(s->seq > prev && s->seq <= total); /* one thread's events in order */
            assert_false(seen[s->seq]);
            seen[s->seq] = true;
            prev = s->seq;
        }
    }
    assert_false(t.other_thread);
    struct ant_audit_stats st;
    ant_audit_stats(f->a, &st);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, total);
    /* what was stored is the copy taken at submit time, not the wiped caller memory */
    struct ant_audit_query q = {.limit = 1000};
    json_t *rows = NULL;
    int64_t next = 0;
    assert_int_equal(ant_audit_query_run(f->a, &q, &rows, &next), 0);
    size_t idx;
    json_t *row;
    int checked = 0;
    json_array_foreach(rows, idx, row) {
        const char *rid = json_string_value(json_object_get(row, "request_id"));
        int64_t seq = json_integer_value(json_object_get(row, "seq"));
        assert_non_null(rid);
        uint64_t id64 = 0;
        assert_int_equal(ant_parse_u64(ant_bytes_str(rid + 4), 0, 1000000, &id64), 0);
        int id = (int)id64;
        if (id >= NT * 1000) {
            continue; /* a synchronous caller's */
        }
        const struct async_slot *s = &slots[(id / 1000) * PER + id % 1000];
        assert_int_equal(s->seq, seq);
        char want_rid[32];
        struct ant_audit_event want = make_event(id, want_rid, sizeof(want_rid));
        assert_string_equal(json_string_value(json_object_get(row, "actor")), want.actor);
        assert_string_equal(json_string_value(json_object_get(row, "tenant")), want.tenant);
        if (want.detail != NULL) {
            assert_string_equal(json_string_value(json_object_get(row, "detail")), want.detail);
        } else {
            assert_null(json_object_get(row, "detail"));
        }
        checked++;
    }
    assert_int_equal(checked, NT * PER);
    json_decref(rows);
    free(seen);
    free(slots);
    async_track_fini(&t);
}

static void test_async_write_failure_reaches_every_callback(void **state)
{
    struct fx *f = *state;
    enum { N = 150 }; /* over max_batch (64): several group commits fail */
    struct async_track t;
    async_track_init(&t);
    struct async_slot slots[N] = {{0}};
    for (int i = 0; i < N; i++) {
        slots[i].t = &t;
    }
    append_n(f->a, 0, 5);
    ant_audit_test_fail_writes(f->a, -EIO);
    submit_async(f->a, slots, 5, N);
    async_wait(&t, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(slots[i].calls, 1);
        assert_int_equal(slots[i].seq, -EIO);
    }
    ant_audit_test_fail_writes(f->a, 0);
    expect_intact(f, false, 5);
    /* after the fault clears, the next event follows the last durable one */
    struct async_slot one = {.t = &t};
    submit_async(f->a, &one, 200, 1);
    async_wait(&t, N + 1);
    assert_int_equal(one.seq, 6);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 6);
    async_track_fini(&t);
}

static void test_async_close_writes_what_is_queued(void **state)
{
    struct fx *f = *state;
    enum { N = 300 };
    struct async_track t;
    async_track_init(&t);
    struct async_slot slots[N] = {{0}};
    for (int i = 0; i < N; i++) {
        slots[i].t = &t;
    }
    submit_async(f->a, slots, 0, N);
    ant_audit_close(f->a); /* returns once every queued event is written and signed */
    f->a = NULL;
    assert_int_equal(t.calls, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(slots[i].calls, 1);
        assert_int_equal(slots[i].seq, i + 1);
    }
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, f->sk, &k_opts, &f->a), 0);
    expect_intact(f, true, N);
    async_track_fini(&t);
}

static void test_async_refusals_never_call_back(void **state)
{
    struct fx *f = *state;
    struct async_track t;
    async_track_init(&t);
    struct async_slot s = {.t = &t};
    char rid[32];
    struct ant_audit_event ev = make_event(1, rid, sizeof(rid));
    ev.credential = "Bearer abcdefghijklmnop.qrstuvwx";
    assert_int_equal(ant_audit_append_async(f->a, &ev, async_done, &s), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    ev.detail = "[1]";
    assert_int_equal(ant_audit_append_async(f->a, &ev, async_done, &s), -EINVAL);
    ev = make_event(1, rid, sizeof(rid));
    assert_int_equal(ant_audit_append_async(f->a, &ev, NULL, &s), -EINVAL);
    struct ant_audit *ro = NULL;
    assert_int_equal(ant_audit_open(f->dirfd, "audit.db", 0, NULL, NULL, &ro), 0);
    assert_int_equal(ant_audit_append_async(ro, &ev, async_done, &s), -ENOTSUP);
    ant_audit_close(ro);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    assert_int_equal(t.calls, 0);
    assert_int_equal(s.calls, 0);
    async_track_fini(&t);
}

static void test_async_queue_is_bounded(void **state)
{
    struct fx *f = *state;
    /* The first done holds the audit thread that releases callers (as a stalled disk would
     * hold the writer), so events pile up until the bound. */
    enum { N = ANT_AUDIT_QUEUE_MAX + 1 };
    struct async_track t;
    sem_t hold;
    async_track_init(&t);
    assert_int_equal(sem_init(&hold, 0, 0), 0);
    t.hold = &hold;
    struct async_slot *slots = calloc(N + 1, sizeof(*slots));
    assert_non_null(slots);
    for (int i = 0; i <= N; i++) {
        slots[i].t = &t;
    }
    char rid[32];
    struct ant_audit_event ev = make_event(0, rid, sizeof(rid));
    assert_int_equal(ant_audit_append_async(f->a, &ev, async_done, &slots[0]), 0);
    async_wait(&t, 1); /* the writer now sits in the first done */
    int queued = 0, rc = 0;
    for (int i = 1; i <= N && rc == 0; i++) {
        rc = ant_audit_append_async(f->a, &ev, async_done, &slots[i]);
        queued += rc == 0;
    }
    sem_post(&hold); /* before any assertion: a failed one must not leave the writer held */
    assert_int_equal(rc, -ENOMEM);
    /* the held event is not released yet, so it still counts */
    assert_int_equal(queued, ANT_AUDIT_QUEUE_MAX - 1);
    async_wait(&t, 1 + queued);
    for (int i = 0; i <= queued; i++) {
        assert_int_equal(slots[i].seq, i + 1);
    }
    assert_int_equal(slots[queued + 1].calls, 0);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 1 + queued);
    sem_destroy(&hold);
    free(slots);
    async_track_fini(&t);
}

/* --- durability: no caller hears of an event before the fdatasync after its commit --- */

/* A sync hook with a gate: the n-th fdatasync waits until `opened` >= n, then fails with
 * fail_err if n >= fail_from (fail_from 0: never). */
struct sync_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, opened, fail_from, fail_err;
};

/* g_gate: the gate of the running test; teardown opens it, so that a failed assertion does
 * not leave the sync thread (and the close after it) waiting forever (left allocated then). */

static struct sync_gate *gate_new(int opened, int fail_from, int fail_err)
{
    struct sync_gate *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->opened = opened;
    g->fail_from = fail_from;
    g->fail_err = fail_err;
    g_gate = g;
    return g;
}

static void gate_free(struct sync_gate *g)
{
    g_gate = NULL;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int gate_hook(void *ctx)
{
    struct sync_gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    int me = ++g->calls;
    pthread_cond_broadcast(&g->cv);
    while (me > g->opened) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    int rc = g->fail_from > 0 && me >= g->fail_from ? g->fail_err : 0;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static void gate_wait_calls(struct sync_gate *g, int calls)
{
    pthread_mutex_lock(&g->mu);
    while (g->calls < calls) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct sync_gate *g, int opened)
{
    pthread_mutex_lock(&g->mu);
    g->opened = opened;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gate_calls(struct sync_gate *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->calls;
    pthread_mutex_unlock(&g->mu);
    return n;
}

static int track_calls(struct async_track *t)
{
    pthread_mutex_lock(&t->mu);
    int n = t->calls;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Waits until event `seq` is committed: readable by a query (it need not be durable yet). */
static void wait_committed(struct fx *f, int64_t seq)
{
    for (int tries = 0; tries < 5000; tries++) {
        struct ant_audit_query q = {.after_seq = seq - 1, .limit = 1};
        json_t *rows = NULL;
        int64_t next = 0;
        assert_int_equal(ant_audit_query_run(f->a, &q, &rows, &next), 0);
        size_t n = json_array_size(rows);
        json_decref(rows);
        if (n > 0) {
            return;
        }
        usleep(1000);
    }
    fail_msg("event %lld never committed", (long long)seq);
}

struct one_append {
    struct ant_audit *a;
    int id;
    int64_t seq;
    sem_t done;
};

static void *one_appender(void *p)
{
    struct one_append *o = p;
    char rid[32];
    struct ant_audit_event ev = make_event(o->id, rid, sizeof(rid));
    o->seq = ant_audit_append(o->a, &ev);
    sem_post(&o->done);
    return NULL;
}

static void test_release_waits_for_the_fdatasync_after_its_commit(void **state)
{
    struct fx *f = *state;
    enum { N = 100 }; /* over max_batch (64): the next group is a full one */
    struct async_track t;
    struct async_slot s1 = {0};
    struct async_slot *more = calloc(N, sizeof(*more));
    assert_non_null(more);
    struct sync_gate *g = gate_new(0, 0, 0); /* every fdatasync waits at the gate */
    async_track_init(&t);
    s1.t = &t;
    for (int i = 0; i < N; i++) {
        more[i].t = &t;
    }
    ant_audit_test_sync_hook(f->a, gate_hook, g);

    submit_async(f->a, &s1, 0, 1);
    gate_wait_calls(g, 1); /* event 1 is committed and its fdatasync has begun */
    wait_committed(f, 1);
    /* committed, visible, but not released while its fdatasync runs; what comes meanwhile
     * waits for a group (and an fdatasync) of its own */
    submit_async(f->a, more, 1, N);
    usleep(20 * 1000);
    assert_int_equal(track_calls(&t), 0);
    gate_open(g, 1);
    async_wait(&t, 1);
    assert_int_equal(s1.calls, 1);
    assert_int_equal(s1.seq, 1);
    gate_wait_calls(g, 2); /* the next group (max_batch events) is committed, its sync held */
    wait_committed(f, 65);
    usleep(20 * 1000);
    assert_int_equal(track_calls(&t), 1);
    gate_open(g, INT_MAX);
    async_wait(&t, 1 + N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(more[i].calls, 1);
        assert_int_equal(more[i].seq, 2 + i);
    }

    /* a blocking caller likewise returns only after the fdatasync */
    int held = gate_calls(g);
    gate_open(g, held);
    struct one_append o = {.a = f->a, .id = 2};
    pthread_t th;
    assert_int_equal(sem_init(&o.done, 0, 0), 0);
    assert_int_equal(pthread_create(&th, NULL, one_appender, &o), 0);
    gate_wait_calls(g, held + 1);
    wait_committed(f, N + 2);
    usleep(20 * 1000);
    assert_int_equal(sem_trywait(&o.done), -1);
    gate_open(g, INT_MAX);
    pthread_join(th, NULL);
    assert_int_equal(o.seq, N + 2);
    sem_destroy(&o.done);

    ant_audit_test_sync_hook(f->a, NULL, NULL);
    struct ant_audit_stats st;
    ant_audit_stats(f->a, &st);
    assert_true(st.syncs >= 3);
    expect_intact(f, false, N + 2);
    gate_free(g);
    free(more);
    async_track_fini(&t);
}

static void test_failed_fdatasync_poisons_until_reopened(void **state)
{
    struct fx *f = *state;
    struct sync_gate *g = NULL;
    struct async_track t;
    struct async_slot s = {0};
    char rid[32];
    append_n(f->a, 0, 5);
    g = gate_new(INT_MAX, 1, -EIO);
    async_track_init(&t);
    s.t = &t;
    ant_audit_test_sync_hook(f->a, gate_hook, g);
    struct ant_audit_event ev = make_event(5, rid, sizeof(rid));
    assert_int_equal(ant_audit_append(f->a, &ev), -EIO); /* committed, not durable */
    /* the disk may have dropped what it was asked to write: nothing more is accepted */
    ant_audit_test_sync_hook(f->a, NULL, NULL);
    assert_int_equal(ant_audit_append(f->a, &ev), -EIO);
    assert_int_equal(ant_audit_append_many(f->a, &ev, 1), -EIO);
    assert_int_equal(ant_audit_checkpoint(f->a), -EIO);
    assert_int_equal(ant_audit_append_async(f->a, &ev, async_done, &s), -EIO);
    assert_int_equal(gate_calls(g), 1);
    /* reopened: the event whose fdatasync failed is in the chain (over-logging, never
     * under-logging), the chain is intact, and appends work again */
    reopen(f);
    expect_intact(f, false, 6);
    assert_int_equal(ant_audit_append(f->a, &ev), 7);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, 7);
    assert_int_equal(track_calls(&t), 0);
    gate_free(g);
    async_track_fini(&t);
}

struct err_thr {
    struct ant_audit *a;
    int id;
    int ok, eio, other;
};

static void *err_appender(void *p)
{
    struct err_thr *e = p;
    for (int i = 0; i < 10; i++) {
        char rid[32];
        struct ant_audit_event ev = make_event(e->id * 100 + i, rid, sizeof(rid));
        int64_t seq = ant_audit_append(e->a, &ev);
        e->ok += seq > 0;
        e->eio += seq == -EIO;
        e->other += seq <= 0 && seq != -EIO;
    }
    return NULL;
}

static void test_failed_fdatasync_fails_every_waiting_caller(void **state)
{
    struct fx *f = *state;
    enum { N = 150, NT = 4 };
    struct sync_gate *g = NULL;
    struct async_track t;
    struct async_slot first = {0};
    struct async_slot *slots = calloc(N, sizeof(*slots));
    assert_non_null(slots);
    g = gate_new(0, 1, -EIO); /* the first fdatasync waits, then fails */
    async_track_init(&t);
    first.t = &t;
    for (int i = 0; i < N; i++) {
        slots[i].t = &t;
    }
    ant_audit_test_sync_hook(f->a, gate_hook, g);
    submit_async(f->a, &first, 0, 1);
    gate_wait_calls(g, 1);
    /* while it runs: more than two batches (max_batch 64) committed or queued behind it,
     * and blocking callers */
    submit_async(f->a, slots, 1, N);
    pthread_t th[NT];
    struct err_thr et[NT];
    for (int i = 0; i < NT; i++) {
        et[i] = (struct err_thr){.a = f->a, .id = 10 + i};
        assert_int_equal(pthread_create(&th[i], NULL, err_appender, &et[i]), 0);
    }
    usleep(20 * 1000);
    assert_int_equal(track_calls(&t), 0);
    gate_open(g, INT_MAX);
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(et[i].ok, 0);
        assert_int_equal(et[i].other, 0);
        assert_int_equal(et[i].eio, 10);
    }
    async_wait(&t, N + 1);
    assert_int_equal(first.calls, 1);
    assert_int_equal(first.seq, -EIO);
    for (int i = 0; i < N; i++) {
        assert_int_equal(slots[i].calls, 1);
        assert_int_equal(slots[i].seq, -EIO);
    }
    assert_int_equal(gate_calls(g), 1); /* nothing after the failure counts on an fdatasync */
    ant_audit_test_sync_hook(f->a, NULL, NULL);
    reopen(f);
    struct ant_audit_report rep;
    assert_int_equal(verify_splits(f->a, ant_signkey_public(f->sk), false, &rep), 0);
    assert_true(rep.last_seq >= 1 && rep.last_seq <= 1 + N + NT * 10);
    char rid[32];
    struct ant_audit_event ev = make_event(999, rid, sizeof(rid));
    assert_int_equal(ant_audit_append(f->a, &ev), rep.last_seq + 1);
    assert_int_equal(ant_audit_checkpoint(f->a), 0);
    expect_intact(f, true, rep.last_seq + 1);
    free(slots);
    gate_free(g);
    async_track_fini(&t);
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
        cmocka_unit_test_setup_teardown(test_async_from_threads_completes_once_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_async_write_failure_reaches_every_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_async_close_writes_what_is_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_refusals_never_call_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_queue_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_waits_for_the_fdatasync_after_its_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_fdatasync_poisons_until_reopened, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_fdatasync_fails_every_waiting_caller, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_tamper_each_field_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_tamper_structure_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_live_rewrite_of_the_whole_chain_is_caught_by_checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_tamper_seqs_out_of_range_are_named, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_live_far_seqs_cost_a_range_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_tamper_in_every_range_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_verify_while_appending_sees_one_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_export_verifies_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_witness_verify_pass_tail_removed_rewritten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_witness_parse_refuses_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_without_key_leaves_out_the_unsigned_tail, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_export_every_truncation_fails_unless_at_a_checkpoint,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_tamper_is_named, setup, teardown),
        cmocka_unit_test(test_export_hostile_lines_are_refused),
        cmocka_unit_test_setup_teardown(test_query_filters_and_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_indexed_and_unindexed_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_batches_while_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_backlog_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_index_finds_a_hole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_failure_never_fails_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_is_checkpointed_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_step1_indexes_old_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_lists_the_last_ones_oldest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_reports_intact_and_broken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_to_callback_while_appending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scoped_export_shows_one_tenant_and_verifies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scoped_export_tamper_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scoped_export_every_truncation_and_flip_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scoped_export_cannot_show_an_own_event_was_hidden,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_scoped_export_of_a_v1_then_v2_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_step2_continues_the_chain_as_v2, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
