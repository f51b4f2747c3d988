/* The audit chain: audit.db, its writer thread and group commits, checkpoints, queries, export
 * and live verification (the verifier itself is in audit_verify.c). */
#include "policy/audit.h"

#include "crypto/base/json.h"
#include "crypto/base/log.h"
#include "policy/audit_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_EVERY 1000u
#define DEFAULT_SECONDS 60u
#define DEFAULT_BATCH 1024u
#define QUERY_MAX 1000u
#define BUSY_TIMEOUT_MS 10000
#define EXPORT_FLUSH (256 * 1024)
/* The writer indexes the events not yet in events_by (schema step 2) once this many are
 * waiting, or once the oldest has waited INDEX_DELAY_MS: a query scans at most about that many
 * events beyond the index. (ant_audit_opts may say otherwise.) Callers queued meanwhile wait
 * for the batch: 4,096 events a batch took the gateway's p99 from 7-8 ms to 12-15 ms; 512 keeps
 * it at 7-8 ms and the throughput of 64 writers within the noise. */
#define INDEX_BATCH 512u
#define INDEX_DELAY_MS 250u
/* WAL pages before a WAL checkpoint (SQLite's default is 1,000): a hot page (the tip of each
 * tenant's index range) is copied once per checkpoint however often it was written, and each
 * checkpoint costs two fsyncs; 4,000 pages (16 MiB) took the checkpoint time from 0.5-0.6 s
 * to 0.27-0.32 s in a 130,000-event benchmark. The checkpoints run on a thread of their own
 * (checkpointer_main): run by the writer inside a COMMIT, each one held up the group
 * committing and everything queued behind it for milliseconds, the gateway's p99. */
#define WAL_CHECKPOINT_PAGES 4000u

/* The schema, one step per entry; PRAGMA user_version counts the steps applied. Later work
 * appends steps, never edits these. */
static const char *const k_migrations[] = {
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY,"
    " time_ms INTEGER NOT NULL,"
    " request_id TEXT, actor TEXT, tenant TEXT, credential TEXT, action TEXT,"
    " resource_kind TEXT, resource_id TEXT, dataset_id TEXT,"
    " decision INTEGER NOT NULL,"
    " reason TEXT, transfer TEXT, detail TEXT,"
    " hash BLOB NOT NULL);"
    "CREATE INDEX events_time ON events(time_ms);"
    "CREATE INDEX events_tenant_time ON events(tenant, time_ms);"
    "CREATE INDEX events_actor_time ON events(actor, time_ms);"
    "CREATE INDEX events_dataset_time ON events(dataset_id, time_ms);"
    "CREATE TABLE checkpoints ("
    " seq INTEGER PRIMARY KEY,"
    " hash BLOB NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " prev_seq INTEGER NOT NULL,"
    " sig BLOB NOT NULL);"
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",

    /* Step 2: the secondary indexes leave the insert. Four indexes made each event five B-tree
     * inserts, and the (tenant|actor|dataset, time) ones put nearly every event of a group on
     * a leaf page of its own (one WAL frame each). Now an event is one append to `events`;
     * the writer indexes the events after `events_indexed` in batches (sorted, so each key's
     * leaf is written once per batch, not once per event), and queries read the few events
     * not indexed yet by scanning them (ant_audit_query_run). Time needs no index: time order
     * is seq order (the writer never lets time go back), so a time bound is found by binary
     * search over seq. Derived data: verify and export never read it. */
    "CREATE TABLE events_by ("
    " k INTEGER NOT NULL," /* 1 actor, 2 tenant, 3 dataset_id */
    " v TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " PRIMARY KEY (k, v, seq)) WITHOUT ROWID;"
    "CREATE TABLE events_indexed (upto INTEGER PRIMARY KEY);"
    "INSERT INTO events_by SELECT 1, actor, seq FROM events WHERE actor IS NOT NULL"
    " UNION ALL SELECT 2, tenant, seq FROM events WHERE tenant IS NOT NULL"
    " UNION ALL SELECT 3, dataset_id, seq FROM events WHERE dataset_id IS NOT NULL"
    " ORDER BY 1, 2, 3;"
    "INSERT INTO events_indexed SELECT coalesce(max(seq), 0) FROM events;"
    "DROP INDEX events_time;"
    "DROP INDEX events_tenant_time;"
    "DROP INDEX events_actor_time;"
    "DROP INDEX events_dataset_time;"
    "CREATE TRIGGER events_by_no_update BEFORE UPDATE ON events_by"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER events_by_no_delete BEFORE DELETE ON events_by"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER events_indexed_no_update BEFORE UPDATE ON events_indexed"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER events_indexed_no_delete BEFORE DELETE ON events_indexed"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",

    /* Step 3: chain v2 (audit.h). Each new event gets 16 random bytes and chains through a
     * salted commitment to its content, so that a tenant's export can show another tenant's
     * event as its commitment and hash alone while every link still checks: with v1, whose
     * h_n hashes the event itself, nothing ties a hidden event's hash to the one before it.
     * The events written before keep no salt (NULL) and their v1 hashes. */
    "ALTER TABLE events ADD COLUMN salt BLOB;",
};

#define EVENT_COLS                                                                                 \
    "seq, time_ms, request_id, actor, tenant, credential, action, resource_kind, resource_id, "    \
    "dataset_id, decision, reason, transfer, detail, hash, salt"
#define EVENT_COLS_E                                                                               \
    "e.seq, e.time_ms, e.request_id, e.actor, e.tenant, e.credential, e.action, "                  \
    "e.resource_kind, e.resource_id, e.dataset_id, e.decision, e.reason, e.transfer, e.detail, "   \
    "e.hash, e.salt"
/* The columns of EVENT_COLS that are not strings of the event */
#define COL_DECISION 10
#define COL_HASH 14
#define COL_SALT 15

/* One queued append. Synchronous (done_fn NULL): lives on the caller's stack, which is blocked
 * until `done` is posted, so the writer may read the borrowed event strings directly.
 * Asynchronous: one heap block holding the request, a copy of the event and its strings,
 * freed by the writer after done_fn. n == 0 asks for a checkpoint. */
struct audit_req {
    const struct ant_audit_event *evs;
    size_t n;
    int64_t first_seq;
    int rc;
    ant_audit_done_fn done_fn;
    void *arg;
    /* Posted once, when done, after the writer let go of the queue's mutex: the caller wakes
     * straight into its own return, not into a queue on a lock (64 callers on 2 cores spend
     * their time in context switches otherwise). glibc's sem_post does not touch the
     * semaphore after waking the waiter, so the caller may destroy it at once. */
    sem_t done;
    struct audit_req *next;
};

struct ant_audit {
    /* v2 salts are BLAKE2b keyed with this (random per handle) over the seq: as unpredictable
     * to a reader of a redacted export as random bytes, without a getrandom(2) per event */
    uint8_t salt_key[crypto_generichash_KEYBYTES];
    sqlite3 *wdb; /* the writer thread's */
    sqlite3 *rdb; /* queries and checkpoint lists: under rlock */
    char *path;   /* for the connection of each export and verify */
    pthread_mutex_t rlock;
    const struct ant_signkey *sign;
    struct ant_audit_opts opts;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t work_cv;
    struct audit_req *head, *tail;
    int64_t queued_events;
    bool stopping, has_thread;
    pthread_t thread;
    int fail_err;
    uint64_t commits;
    double commit_s; /* EWMA */
    /* 0, or the first fdatasync failure: after it the kernel may have dropped the dirty pages
     * and a later fsync can succeed without writing them, so nothing committed after it can
     * ever be called durable. Every append fails (-EIO) until the handle is reopened. */
    int poisoned;
    uint64_t syncs;
    double sync_s; /* EWMA */
    int (*sync_hook)(void *ctx); /* testing only: runs before each fdatasync */
    void *sync_ctx;
    /* Blocking callers of durable groups waiting for the releaser thread, in commit order.
     * Waking 64 callers costs about as much as a group commit; on a thread of its own it
     * overlaps with the next commit and fdatasync instead of delaying them. */
    struct audit_req *done_head, *done_tail;
    int64_t pending_events; /* queued, being written or waiting for release: bounds async memory */
    pthread_cond_t done_cv;
    bool writer_exited, has_releaser;
    pthread_t releaser;
    /* The checkpointer: its own connection, woken through ck_due by the writer's WAL hook, and
     * its own fd on audit.db, to sync what each pass copied. */
    sqlite3 *cdb;
    int db_fd;
    pthread_cond_t ck_cv;
    bool ck_due, ck_running, ck_stop, has_checkpointer;
    uint64_t ck_passes; /* passes done by the checkpointer */
    uint64_t ck_seen;   /* writer thread only: passes whose remainder it copied */
    pthread_t checkpointer;

    /* writer thread only: our own fd on the WAL, and which file it is */
    char *wal_path; /* absolute, as SQLite names it */
    int wal_fd;
    dev_t wal_dev;
    ino_t wal_ino;

    /* writer thread only */
    EVP_MD_CTX *md;
    EVP_MD *sha256; /* fetched once (see ant_audit_verifier) */
    struct ant_buf canon;
    int64_t unsigned_since_ms;   /* time of the oldest unsigned event we wrote; 0: none */
    sqlite3_stmt *ws[11];        /* WS_*: prepared once */
    int64_t head_seq;            /* the last seq we know of (ours or another process's) */
    int64_t indexed_upto;        /* events_indexed as we last read or wrote it */
    int64_t indexed_ms;          /* when we last indexed, or tried (monotonic ms) */
    bool index_failed;           /* the last try failed: the next waits index_delay_ms */
    int64_t (*clock)(void *ctx); /* testing only: the events' time source */
    void *clock_ctx;
    bool write_v1; /* testing only, under mu: chain new events as v1 */
    /* testing only (ant_audit_test_verify_split): 0 for the defaults */
    int64_t vrange_seqs;
    size_t vpiece_rows;
    unsigned vworkers;
    int64_t vranges; /* under mu: the ranges the last verify handed out */
};

static int sqlerr(int src)
{
    switch (src & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return -EBADMSG;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_CONSTRAINT:
        return -EPERM;
    default:
        return -EIO;
    }
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    int src = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "audit.sql", "%s", sqlite3_errmsg(db));
    }
    return sqlerr(src);
}

static int step_done(sqlite3_stmt *s)
{
    int src = sqlite3_step(s);
    int rc = src == SQLITE_DONE || src == SQLITE_ROW ? 0 : sqlerr(src);
    sqlite3_reset(s);
    return rc;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v == NULL) {
        sqlite3_bind_null(s, i);
    } else {
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    }
}

static int db_path(int dirfd, const char *name, char *path, size_t cap)
{
    int n;
    if (name == NULL || name[0] == '\0') {
        return -EINVAL;
    }
    if (name[0] == '/' || dirfd == AT_FDCWD) {
        n = snprintf(path, cap, "%s", name);
    } else {
        /* SQLite takes a path and names its -wal and -shm files after it: use the folder's
         * real path, read back from the fd. */
        char link[64], dir[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        ssize_t dl = readlink(link, dir, sizeof(dir) - 1);
        if (dl <= 0) {
            return dl < 0 ? -errno : -EINVAL;
        }
        dir[dl] = '\0';
        n = snprintf(path, cap, "%s/%s", dir, name);
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int db_open(const char *path, bool readonly, sqlite3 **out)
{
    sqlite3 *db = NULL;
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                SQLITE_OPEN_NOFOLLOW;
    int rc = sqlerr(sqlite3_open_v2(path, &db, flags, NULL));
    if (rc < 0) {
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    *out = db;
    db = NULL;
out:
    sqlite3_close(db);
    return rc;
}

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlerr(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL));
    if (rc == 0) {
        rc = sqlite3_step(s) == SQLITE_ROW ? 0 : -EBADMSG;
        *v = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    return rc;
}

/* Each step runs in its own BEGIN IMMEDIATE with its user_version, so two processes opening a
 * new file at once apply each step exactly once. Applies the first `steps`. */
static int migrate_to(sqlite3 *db, size_t steps)
{
    int v = 0;
    int rc = user_version(db, &v);
    if (rc == 0 && (size_t)v > ANT_ARRAY_LEN(k_migrations)) {
        rc = -ENOTSUP;
    }
    while (rc == 0 && (size_t)v < steps) {
        char setv[48];
        rc = exec_sql(db, "BEGIN IMMEDIATE");
        rc = rc < 0 ? rc : user_version(db, &v);
        if (rc == 0 && (size_t)v < steps) {
            snprintf(setv, sizeof(setv), "PRAGMA user_version = %d", v + 1);
            rc = exec_sql(db, k_migrations[v]);
            rc = rc < 0 ? rc : exec_sql(db, setv);
        }
        rc = rc < 0 ? rc : exec_sql(db, "COMMIT");
        if (rc < 0) {
            (void)exec_sql(db, "ROLLBACK");
            break;
        }
        rc = user_version(db, &v);
    }
    return rc;
}

static int migrate(sqlite3 *db)
{
    return migrate_to(db, ANT_ARRAY_LEN(k_migrations));
}

/* --- validation: the log must never hold a secret --- */

static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k) {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        /* overlong forms, surrogates and values past U+10FFFF */
        if ((k == 2 && cp < 0x800) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
            (k == 3 && cp < 0x10000)) {
            return false;
        }
        i += k + 1;
    }
    return true;
}

static bool is_hexc(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_b64url(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '=';
}

/* API keys "ak_<hex id>_<64 hex>", "Bearer <...>", JWTs ("eyJ<b64>.eyJ<b64>...") and PEM
 * blocks: what a careless caller might paste into a detail field. */
bool ant_audit_looks_secret(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t left = n - i;
        if (left >= 3 && memcmp(p, "ak_", 3) == 0) {
            size_t j = 3, hex = 0;
            while (j < left && is_hexc(p[j])) {
                j++;
            }
            if (j > 3 && j < left && p[j] == '_') {
                j++;
                while (j < left && is_hexc(p[j])) {
                    j++;
                    hex++;
                }
                if (hex >= 32) {
                    return true;
                }
            }
        }
        if ((p[0] | 0x20) == 'b' && left >= 7 + 16 &&
            strncasecmp((const char *)p, "bearer ", 7) == 0) {
            /* a credential follows, not prose such as "bearer token expired" */
            size_t j = 7;
            while (j < left &&
                   (is_b64url(p[j]) || p[j] == '.' || p[j] == '+' || p[j] == '/' || p[j] == '~')) {
                j++;
            }
            if (j - 7 >= 16) {
                return true;
            }
        }
        if (left >= 10 && memcmp(p, "eyJ", 3) == 0) {
            size_t j = 3;
            while (j < left && is_b64url(p[j])) {
                j++;
            }
            if (j < left && p[j] == '.' && left - j > 3 && memcmp(p + j + 1, "eyJ", 3) == 0) {
                return true;
            }
        }
        if (left >= 10 && memcmp(p, "-----BEGIN", 10) == 0) {
            return true;
        }
    }
    return false;
}

static int check_field(const char *s, size_t max)
{
    if (s == NULL) {
        return 0;
    }
    size_t n = strlen(s);
    if (n > max) {
        return -E2BIG;
    }
    if (!utf8_ok((const unsigned char *)s, n) || ant_audit_looks_secret(s)) {
        return -EINVAL;
    }
    return 0;
}

static int check_event(const struct ant_audit_event *ev)
{
    const char *fields[] = {ev->request_id, ev->actor,         ev->tenant,      ev->credential,
                            ev->action,     ev->resource_kind, ev->resource_id, ev->dataset_id,
                            ev->reason,     ev->transfer};
    int rc = (unsigned)ev->decision > ANT_AUDIT_INFO ? -EINVAL : 0;
    for (size_t i = 0; rc == 0 && i < ANT_ARRAY_LEN(fields); i++) {
        rc = check_field(fields[i], ANT_AUDIT_FIELD_MAX);
    }
    rc = rc < 0 ? rc : check_field(ev->detail, ANT_AUDIT_DETAIL_MAX);
    if (rc == 0 && ev->detail != NULL) {
        json_t *o = NULL;
        rc = ant_json_parse(ant_bytes_str(ev->detail), ANT_AUDIT_DETAIL_MAX, ANT_JSON_MAX_DEPTH, &o,
                            NULL);
        rc = rc < 0 ? rc : json_is_object(o) ? 0 : -EINVAL;
        json_decref(o);
    }
    return rc;
}

/* --- the writer --- */

struct chain_head {
    int64_t seq, time_ms;
    uint8_t hash[ANT_AUDIT_HASH_LEN];
    int64_t ck_seq;
};

/* The writer's statements, prepared once (a group commit runs about eight). */
enum {
    WS_BEGIN,
    WS_COMMIT,
    WS_ROLLBACK,
    WS_HEAD,
    WS_CK_MAX,
    WS_INSERT,
    WS_OLDEST,
    WS_CK_INSERT,
    WS_IX_UPTO,
    WS_IX_INSERT,
    WS_IX_MARK,
    WS_COUNT,
};
_Static_assert(WS_COUNT == ANT_ARRAY_LEN(((struct ant_audit *)0)->ws), "one slot per statement");

static const char *const k_wsql[WS_COUNT] = {
    [WS_BEGIN] = "BEGIN IMMEDIATE",
    [WS_COMMIT] = "COMMIT",
    [WS_ROLLBACK] = "ROLLBACK",
    [WS_HEAD] = "SELECT seq, time_ms, hash FROM events ORDER BY seq DESC LIMIT 1",
    [WS_CK_MAX] = "SELECT max(seq) FROM checkpoints",
    [WS_INSERT] = "INSERT INTO events(" EVENT_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [WS_OLDEST] = "SELECT time_ms FROM events WHERE seq = ?",
    [WS_CK_INSERT] = ("INSERT INTO checkpoints(seq, hash, time_ms, prev_seq, sig) "
                      "VALUES (?, ?, ?, ?, ?)"),
    [WS_IX_UPTO] = "SELECT coalesce(max(upto), 0) FROM events_indexed",
    /* sorted, so the B-tree is walked left to right and each leaf written once a batch */
    [WS_IX_INSERT] = ("INSERT INTO events_by(k, v, seq)"
                      " SELECT 1, actor, seq FROM events"
                      "  WHERE seq > ?1 AND seq <= ?2 AND actor IS NOT NULL"
                      " UNION ALL SELECT 2, tenant, seq FROM events"
                      "  WHERE seq > ?1 AND seq <= ?2 AND tenant IS NOT NULL"
                      " UNION ALL SELECT 3, dataset_id, seq FROM events"
                      "  WHERE seq > ?1 AND seq <= ?2 AND dataset_id IS NOT NULL"
                      " ORDER BY 1, 2, 3"),
    [WS_IX_MARK] = "INSERT INTO events_indexed(upto) VALUES (?)",
};

static int wstmt(struct ant_audit *a, int which, sqlite3_stmt **out)
{
    if (a->ws[which] == NULL) {
        int src = sqlite3_prepare_v3(a->wdb, k_wsql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                     &a->ws[which], NULL);
        if (src != SQLITE_OK) {
            ant_log(ANT_LOG_ERROR, "audit.sql", "%s", sqlite3_errmsg(a->wdb));
            return sqlerr(src);
        }
    }
    *out = a->ws[which];
    return 0;
}

static int wexec(struct ant_audit *a, int which)
{
    sqlite3_stmt *s = NULL;
    int rc = wstmt(a, which, &s);
    return rc < 0 ? rc : step_done(s);
}

static int read_head(struct ant_audit *a, struct chain_head *h)
{
    sqlite3_stmt *s = NULL;
    memset(h, 0, sizeof(*h));
    int rc = wstmt(a, WS_HEAD, &s);
    int src = rc == 0 ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc == 0 && src == SQLITE_ROW) {
        h->seq = sqlite3_column_int64(s, 0);
        h->time_ms = sqlite3_column_int64(s, 1);
        if (sqlite3_column_bytes(s, 2) != ANT_AUDIT_HASH_LEN) {
            rc = -EBADMSG;
        } else {
            memcpy(h->hash, sqlite3_column_blob(s, 2), ANT_AUDIT_HASH_LEN);
        }
    } else if (rc == 0 && src != SQLITE_DONE) {
        rc = sqlerr(src);
    }
    if (s != NULL) {
        sqlite3_reset(s);
    }
    rc = rc < 0 ? rc : wstmt(a, WS_CK_MAX, &s);
    if (rc == 0) {
        src = sqlite3_step(s);
        rc = src == SQLITE_ROW ? 0 : sqlerr(src);
        h->ck_seq = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    return rc;
}

static int write_checkpoint(struct ant_audit *a, const struct chain_head *h)
{
    uint8_t msg[ANT_AUDIT_CKPT_MSG_LEN], sig[ANT_SIG_LEN];
    sqlite3_stmt *s = NULL;
    ant_audit_checkpoint_msg(h->seq, h->hash, h->time_ms, h->ck_seq, msg);
    int rc = ant_signkey_sign(a->sign, ant_bytes_of(msg, sizeof(msg)), sig);
    rc = rc < 0 ? rc : wstmt(a, WS_CK_INSERT, &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, h->seq);
        sqlite3_bind_blob(s, 2, h->hash, ANT_AUDIT_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, h->time_ms);
        sqlite3_bind_int64(s, 4, h->ck_seq);
        sqlite3_bind_blob(s, 5, sig, sizeof(sig), SQLITE_STATIC);
        rc = step_done(s);
        sqlite3_clear_bindings(s);
    }
    return rc;
}

static int oldest_unsigned_ms(struct ant_audit *a, int64_t ck_seq, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = wstmt(a, WS_OLDEST, &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, ck_seq + 1);
        int src = sqlite3_step(s);
        *out = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        rc = src == SQLITE_ROW || src == SQLITE_DONE ? 0 : sqlerr(src);
        sqlite3_reset(s);
    }
    return rc;
}

static int insert_event(struct ant_audit *a, sqlite3_stmt *ins, struct chain_head *h,
                        const struct ant_audit_event *ev, int64_t now, bool v1)
{
    uint8_t hash[ANT_AUDIT_HASH_LEN], commit[ANT_AUDIT_HASH_LEN], salt[ANT_AUDIT_SALT_LEN];
    int64_t seq = h->seq + 1;
    int64_t t = now > h->time_ms ? now : h->time_ms;
    a->canon.len = 0;
    int rc = ant_audit_canonical(seq, t, ev, &a->canon);
    if (rc < 0) {
        return rc;
    }
    if (v1) {
        rc = ant_audit_link_v1(a->md, a->sha256, h->hash, ant_buf_view(&a->canon), hash);
    } else {
        uint8_t le[8];
        for (int i = 0; i < 8; i++) {
            le[i] = (uint8_t)((uint64_t)seq >> (8 * i));
        }
        crypto_generichash(salt, sizeof(salt), le, sizeof(le), a->salt_key, sizeof(a->salt_key));
        rc = ant_audit_commit_v2(a->md, a->sha256, salt, ant_buf_view(&a->canon), commit);
        rc = rc < 0 ? rc : ant_audit_link_v2(a->md, a->sha256, h->hash, seq, commit, hash);
    }
    if (rc < 0) {
        return rc;
    }
    const char *texts[] = {ev->request_id, ev->actor,         ev->tenant,      ev->credential,
                           ev->action,     ev->resource_kind, ev->resource_id, ev->dataset_id};
    sqlite3_bind_int64(ins, 1, seq);
    sqlite3_bind_int64(ins, 2, t);
    for (int i = 0; i < (int)ANT_ARRAY_LEN(texts); i++) {
        bind_text(ins, 3 + i, texts[i]);
    }
    sqlite3_bind_int(ins, 11, (int)ev->decision);
    bind_text(ins, 12, ev->reason);
    bind_text(ins, 13, ev->transfer);
    bind_text(ins, 14, ev->detail);
    sqlite3_bind_blob(ins, 15, hash, sizeof(hash), SQLITE_STATIC);
    if (!v1) {
        sqlite3_bind_blob(ins, 16, salt, sizeof(salt), SQLITE_STATIC);
    }
    rc = step_done(ins);
    sqlite3_clear_bindings(ins);
    if (rc == 0) {
        h->seq = seq;
        h->time_ms = t;
        memcpy(h->hash, hash, sizeof(hash));
    }
    return rc;
}

/* One group commit: all of `batch` or nothing. Checkpoints whenever checkpoint_every events are
 * unsigned, and at the end if `force` or the oldest unsigned event is older than
 * checkpoint_seconds. */
static int write_batch(struct ant_audit *a, struct audit_req *batch, bool force, int fail_err,
                       int64_t now, bool v1)
{
    sqlite3_stmt *ins = NULL;
    struct chain_head h;
    int rc = wexec(a, WS_BEGIN);
    if (rc < 0) {
        return rc;
    }
    rc = read_head(a, &h);
    rc = rc < 0 ? rc : wstmt(a, WS_INSERT, &ins);
    for (struct audit_req *r = batch; rc == 0 && r != NULL; r = r->next) {
        r->first_seq = h.seq + 1;
        for (size_t i = 0; rc == 0 && i < r->n; i++) {
            rc = insert_event(a, ins, &h, &r->evs[i], now, v1);
            if (rc == 0 && h.seq - h.ck_seq >= (int64_t)a->opts.checkpoint_every) {
                rc = write_checkpoint(a, &h);
                h.ck_seq = h.seq;
            }
        }
    }
    int64_t oldest = 0;
    if (rc == 0 && h.seq > h.ck_seq) {
        rc = oldest_unsigned_ms(a, h.ck_seq, &oldest);
        if (rc == 0 && (force || now - oldest >= (int64_t)a->opts.checkpoint_seconds * 1000)) {
            rc = write_checkpoint(a, &h);
            h.ck_seq = h.seq;
        }
    }
    if (rc == 0 && fail_err < 0) {
        rc = fail_err; /* testing only: as if the disk filled up under this batch */
    }
    rc = rc < 0 ? rc : wexec(a, WS_COMMIT);
    if (rc < 0) {
        /* Rolled back: no caller of this batch gets a seq, and the chain is as before. */
        ant_log(ANT_LOG_DEBUG, "audit.rollback", "%s", sqlite3_errmsg(a->wdb));
        if (!sqlite3_get_autocommit(a->wdb)) {
            (void)wexec(a, WS_ROLLBACK);
        }
        return rc;
    }
    a->unsigned_since_ms = h.seq > h.ck_seq ? oldest : 0;
    a->head_seq = h.seq;
    return 0;
}

static int step_int64(sqlite3_stmt *s, int64_t *v)
{
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -EBADMSG : sqlerr(src);
    *v = rc == 0 ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc;
}

static int64_t mono_ms(void)
{
    return ant_mono_ns() / 1000000;
}

/* Writer thread, called with a->mu held: are events waiting to be indexed, and is it time? */
static bool index_due(const struct ant_audit *a, bool idle)
{
    int64_t backlog = a->head_seq - a->indexed_upto;
    bool waited = mono_ms() - a->indexed_ms >= (int64_t)a->opts.index_delay_ms;
    if (a->index_failed) {
        return backlog > 0 && (idle || waited); /* not after every group while it fails */
    }
    return backlog >= (int64_t)a->opts.index_batch || (backlog > 0 && (idle || waited));
}

/* Indexes the events after events_indexed, at most twice index_batch of them, in one
 * transaction of its own. The cap matters after a long backlog (a log written by a build that
 * indexed nothing, or indexing that failed for a while): 340,000 events indexed in one go held
 * every append queued behind them for ~0.9 s; in slices, the backlog is worked off between
 * groups. The mark is read inside BEGIN IMMEDIATE, so two processes writing one log never
 * index an event twice. No
 * caller waits for it: the next group's fdatasync (or the WAL checkpoint's) makes it durable,
 * and a crash before that only leaves more events for the next batch and for queries to scan.
 * A failure is logged and tried again index_delay_ms later; it never fails an append. */
static void index_backlog(struct ant_audit *a)
{
    sqlite3_stmt *s = NULL;
    struct chain_head h = {0};
    int64_t upto = 0;
    int rc = wexec(a, WS_BEGIN);
    if (rc < 0) {
        goto out;
    }
    rc = wstmt(a, WS_IX_UPTO, &s);
    rc = rc < 0 ? rc : step_int64(s, &upto);
    rc = rc < 0 ? rc : read_head(a, &h);
    int64_t to = h.seq - upto > 2 * (int64_t)a->opts.index_batch
                     ? upto + 2 * (int64_t)a->opts.index_batch
                     : h.seq;
    if (rc == 0 && to > upto) {
        rc = wstmt(a, WS_IX_INSERT, &s);
        if (rc == 0) {
            sqlite3_bind_int64(s, 1, upto);
            sqlite3_bind_int64(s, 2, to);
            rc = step_done(s);
        }
        rc = rc < 0 ? rc : wstmt(a, WS_IX_MARK, &s);
        if (rc == 0) {
            sqlite3_bind_int64(s, 1, to);
            rc = step_done(s);
        }
    }
    rc = rc < 0 ? rc : wexec(a, WS_COMMIT);
    if (rc == 0) {
        a->head_seq = h.seq;
        a->indexed_upto = to > upto ? to : upto;
    }
out:
    if (rc < 0) {
        ant_log(ANT_LOG_WARN, "audit.index_failed", "indexing the audit log: %s", strerror(-rc));
        if (!sqlite3_get_autocommit(a->wdb)) {
            (void)wexec(a, WS_ROLLBACK);
        }
    }
    a->indexed_ms = mono_ms();
    a->index_failed = rc < 0;
}

/* fdatasync of the WAL through an fd of our own (fsync flushes the file, whichever fd wrote
 * it). SQLite keeps the WAL while any connection has the database open (ours do), but if the
 * path ever names another file, the old one is synced too (harmless: SQLite only lets a WAL
 * go after checkpointing it into the synced database file) and the new one opened.
 * The check asks statx for the inode number only, never the times: since Linux 6.13 a stat(2)
 * that reads a file's ctime makes the next write stamp it with a fine-grained time (multigrain
 * timestamps), so every write dirtied the WAL's inode and every fdatasync wrote the inode
 * table block too, a second device round trip (on ext4 without a journal; with a journal,
 * fdatasync skips a change of times anyway). */
static int sync_wal(struct ant_audit *a)
{
    const char *wal = a->wal_path;
    struct statx sx;
    int rc = 0;
    if (a->wal_fd >= 0 && (statx(AT_FDCWD, wal, AT_SYMLINK_NOFOLLOW, STATX_INO, &sx) < 0 ||
                           makedev(sx.stx_dev_major, sx.stx_dev_minor) != a->wal_dev ||
                           sx.stx_ino != a->wal_ino)) {
        rc = fdatasync(a->wal_fd) < 0 ? -errno : 0;
        ant_close(a->wal_fd);
        a->wal_fd = -1;
    }
    if (rc == 0 && a->wal_fd < 0) {
        a->wal_fd = open(wal, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (a->wal_fd < 0 || statx(a->wal_fd, "", AT_EMPTY_PATH, STATX_INO, &sx) < 0) {
            rc = -errno;
        } else {
            a->wal_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
            a->wal_ino = sx.stx_ino;
        }
    }
    if (rc == 0 && fdatasync(a->wal_fd) < 0) {
        rc = -errno;
    }
    return rc;
}

static void *writer_main(void *arg)
{
    struct ant_audit *a = arg;
    pthread_setname_np(pthread_self(), "audit-writer"); /* for top -H and perf */
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->head == NULL && !a->stopping) {
            /* Sleep until the oldest unsigned event is due for a checkpoint, or the oldest
             * unindexed one for indexing. */
            bool timed = false;
            int64_t wait_ms = INT64_MAX;
            if (a->unsigned_since_ms != 0) {
                timed = true;
                wait_ms = a->unsigned_since_ms + (int64_t)a->opts.checkpoint_seconds * 1000 -
                          ant_now_ms();
            }
            if (a->head_seq > a->indexed_upto && a->poisoned == 0) {
                int64_t w = a->indexed_ms + (int64_t)a->opts.index_delay_ms - mono_ms();
                timed = true;
                wait_ms = w < wait_ms ? w : wait_ms;
            }
            if (!timed) {
                pthread_cond_wait(&a->work_cv, &a->mu);
                continue;
            }
            if (wait_ms <= 0) {
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait_ms / 1000);
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&a->work_cv, &a->mu, &ts);
        }
        if (a->head == NULL && a->stopping) {
            break;
        }
        /* Take up to max_batch events (at least one request) off the queue, without waiting
         * for more: whatever arrives while this group is committed and made durable shares the
         * next one, so the groups form by themselves and grow with the load. */
        struct audit_req *batch = a->head, *last = a->head;
        bool force = false;
        size_t n = 0;
        for (struct audit_req *r = a->head; r != NULL; r = r->next) {
            if (n > 0 && n + r->n > a->opts.max_batch) {
                break;
            }
            n += r->n;
            force |= r->n == 0;
            last = r;
        }
        if (batch != NULL) {
            a->head = last->next;
            if (a->head == NULL) {
                a->tail = NULL;
            }
            last->next = NULL;
            a->queued_events -= (int64_t)n;
        }
        int fail_err = a->fail_err;
        bool poisoned = a->poisoned < 0;
        int64_t (*clk)(void *) = a->clock;
        void *clk_ctx = a->clock_ctx;
        int (*hook)(void *) = a->sync_hook;
        void *hook_ctx = a->sync_ctx;
        bool v1 = a->write_v1;
        pthread_mutex_unlock(&a->mu);

        int64_t t0 = ant_mono_ns();
        /* Poisoned: what was queued before the failed fdatasync was noticed fails unwritten. */
        int rc = poisoned ? -EIO
                          : write_batch(a, batch, force, fail_err,
                                        clk != NULL ? clk(clk_ctx) : ant_now_ms(), v1);
        int64_t t1 = ant_mono_ns();
        if (rc < 0 && !poisoned) {
            ant_log(ANT_LOG_ERROR, "audit.write_failed", "group commit of %zu events failed: %s", n,
                    strerror(-rc));
        }
        /* Durable before anyone hears of it: the fdatasync of the WAL (COMMIT does not sync,
         * synchronous=NORMAL). On this thread, right after the COMMIT: a sync thread of its
         * own overlapped it with the next group's commit, but that took more, smaller groups
         * (two or three commits per fdatasync, each with its BEGIN, head reads, COMMIT and
         * WAL pages) and two thread hand-offs per group; see docs/benchmarks.md. */
        int src = 0;
        if (rc == 0 && batch != NULL) {
            src = hook != NULL ? hook(hook_ctx) : 0;
            src = src < 0 ? src : sync_wal(a);
            if (src < 0) {
                ant_log(ANT_LOG_ERROR, "audit.sync_failed",
                        "fdatasync of the WAL failed: %s; refusing appends until reopened",
                        strerror(-src));
                rc = src;
            }
        }
        int64_t t2 = ant_mono_ns();

        /* The batch is off the queue and ours alone. Failed batches go the same way, so that
         * callbacks keep commit order. Asynchronous callers are called back here, at once:
         * their callbacks must not block (the gateway's resumes a connection), and a hand-over
         * to the releaser would add a thread wake-up to each group's latency. Blocking callers
         * go to the releaser: waking each of them is a futex call and a thread switch (64
         * callers cost about as much as a group commit). */
        struct audit_req *wake = NULL, *wake_last = NULL, *calls = NULL, **calls_end = &calls;
        for (struct audit_req *r = batch, *nx; r != NULL; r = nx) {
            nx = r->next;
            r->rc = rc;
            r->next = NULL;
            if (r->done_fn != NULL) {
                *calls_end = r;
                calls_end = &r->next;
            } else if (wake_last != NULL) {
                wake_last->next = r;
                wake_last = r;
            } else {
                wake = wake_last = r;
            }
        }
        pthread_mutex_lock(&a->mu);
        if (src < 0 && a->poisoned == 0) {
            a->poisoned = src;
        }
        if (wake != NULL) {
            if (a->done_tail != NULL) {
                a->done_tail->next = wake;
            } else {
                a->done_head = wake;
            }
            a->done_tail = wake_last;
            pthread_cond_signal(&a->done_cv);
        }
        if (batch != NULL) {
            double dc = (double)(t1 - t0) / 1e9, ds = (double)(t2 - t1) / 1e9;
            a->commits++;
            a->commit_s = a->commit_s < 0 ? dc : 0.9 * a->commit_s + 0.1 * dc;
            if (rc == 0 || src < 0) {
                a->syncs++;
                a->sync_s = a->sync_s < 0 ? ds : 0.9 * a->sync_s + 0.1 * ds;
            }
        }
        if (calls != NULL) {
            pthread_mutex_unlock(&a->mu);
            int64_t called = 0;
            for (struct audit_req *r = calls, *nx; r != NULL; r = nx) {
                nx = r->next;
                called += (int64_t)r->n;
                r->done_fn(r->arg, r->rc < 0 ? r->rc : r->first_seq);
                free(r);
            }
            pthread_mutex_lock(&a->mu);
            a->pending_events -= called;
        }
        if (batch == NULL && rc < 0) {
            /* the timed checkpoint failed: try again one period later, not in a spin */
            a->unsigned_since_ms = ant_now_ms();
        }
        /* After the release: the releaser wakes blocking callers meanwhile. */
        if (a->poisoned == 0 && index_due(a, false)) {
            pthread_mutex_unlock(&a->mu);
            index_backlog(a);
            pthread_mutex_lock(&a->mu);
        }
    }
    while (a->poisoned == 0 && index_due(a, true)) {
        /* what this process wrote is indexed before it goes (a CLI's few admin events) */
        pthread_mutex_unlock(&a->mu);
        index_backlog(a);
        pthread_mutex_lock(&a->mu);
        if (a->index_failed) {
            break;
        }
    }
    a->writer_exited = true;
    pthread_cond_signal(&a->done_cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* SQLite calls this on the writer's thread after each commit (its locks released), with the
 * WAL's size in pages. Past wal_checkpoint_pages it has the checkpointer copy the WAL into the
 * database, off this thread. That copy ends with a few frames committed meanwhile still to go,
 * and SQLite starts the WAL over only once every frame is in the database when a transaction
 * begins: so after each pass the writer copies that remainder itself, here, between two
 * groups (a few pages and two fsyncs, not the whole WAL), and the next group starts the WAL
 * over. Without that, the checkpointer ran pass after pass, each with its fsyncs, while the WAL
 * kept growing. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct ant_audit *a = arg;
    uint64_t due = a->opts.wal_checkpoint_pages;
    if (pages < 0 || (uint64_t)pages < due) {
        return SQLITE_OK;
    }
    pthread_mutex_lock(&a->mu);
    bool finish = !a->ck_due && !a->ck_running && a->ck_passes != a->ck_seen;
    if (finish) {
        a->ck_seen = a->ck_passes;
    } else if (!a->ck_due && !a->ck_running) {
        a->ck_due = true;
        pthread_cond_signal(&a->ck_cv);
    }
    pthread_mutex_unlock(&a->mu);
    /* Past eight times the mark the checkpointer is not keeping up (or a reader pins the WAL):
     * copy here, as SQLite's own autocheckpoint would, so the WAL cannot grow without bound. */
    if (finish || (uint64_t)pages >= 8 * due) {
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    return SQLITE_OK;
}

/* Copies the WAL into the database while the writer goes on appending: a PASSIVE checkpoint
 * takes no lock a writer needs (it copies the frames committed when it began), and syncs the
 * WAL before and the database after the copy. */
static void *checkpointer_main(void *arg)
{
    struct ant_audit *a = arg;
    pthread_setname_np(pthread_self(), "audit-ckpt");
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->ck_due && !a->ck_stop) {
            pthread_cond_wait(&a->ck_cv, &a->mu);
        }
        if (a->ck_stop) {
            break;
        }
        a->ck_due = false;
        a->ck_running = true;
        pthread_mutex_unlock(&a->mu);
        int src = sqlite3_wal_checkpoint_v2(a->cdb, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (src != SQLITE_OK && src != SQLITE_BUSY) {
            ant_log(ANT_LOG_WARN, "audit.wal_checkpoint", "copying the WAL into audit.db: %s",
                    sqlite3_errmsg(a->cdb));
        }
        /* SQLite syncs audit.db only after a pass that copied every frame, which with a busy
         * writer is the writer's own short pass (wal_hook): synced here, the pages this pass
         * copied are not left for that one to wait on (4-5 ms on the writer's thread). */
        (void)fdatasync(a->db_fd);
        pthread_mutex_lock(&a->mu);
        a->ck_running = false;
        a->ck_passes++;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Releases the blocking callers of durable (or failed) groups, in commit order, off the queue's
 * lock: sem_post orders the writer's rc and first_seq before the caller reads them. (The
 * writer calls the asynchronous ones back itself.) */
static void *releaser_main(void *arg)
{
    struct ant_audit *a = arg;
    pthread_setname_np(pthread_self(), "audit-release");
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->done_head == NULL && !a->writer_exited) {
            pthread_cond_wait(&a->done_cv, &a->mu);
        }
        struct audit_req *batch = a->done_head;
        if (batch == NULL) {
            break;
        }
        a->done_head = a->done_tail = NULL;
        pthread_mutex_unlock(&a->mu);
        int64_t released = 0;
        for (struct audit_req *r = batch, *nx; r != NULL; r = nx) {
            nx = r->next; /* r lives on a stack that unwinds once it is posted */
            released += (int64_t)r->n;
            sem_post(&r->done);
        }
        pthread_mutex_lock(&a->mu);
        a->pending_events -= released;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Puts req at the tail of the queue; -ESHUTDOWN / -EROFS (no writer) / -EIO (poisoned) /
 * -ENOMEM (async and the queue is full), and then req is not queued. */
static int enqueue(struct ant_audit *a, struct audit_req *req)
{
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    if (a->stopping || !a->has_thread) {
        rc = a->has_thread ? -ESHUTDOWN : -EROFS;
        goto out;
    }
    if (a->poisoned < 0) {
        rc = -EIO;
        goto out;
    }
    if (req->done_fn != NULL && a->pending_events + (int64_t)req->n > ANT_AUDIT_QUEUE_MAX) {
        rc = -ENOMEM;
        goto out;
    }
    if (a->tail != NULL) {
        a->tail->next = req;
    } else {
        a->head = req;
    }
    a->tail = req;
    a->queued_events += (int64_t)req->n;
    a->pending_events += (int64_t)req->n;
    pthread_cond_signal(&a->work_cv);
out:
    pthread_mutex_unlock(&a->mu);
    return rc;
}

static int64_t submit(struct ant_audit *a, const struct ant_audit_event *evs, size_t n)
{
    struct audit_req req = {.evs = evs, .n = n};
    if (sem_init(&req.done, 0, 0) < 0) {
        return -errno;
    }
    int rc = enqueue(a, &req);
    if (rc < 0) {
        sem_destroy(&req.done);
        return rc;
    }
    while (sem_wait(&req.done) < 0) {
        /* EINTR only: a signal handler ran; the event is still on its way */
    }
    sem_destroy(&req.done);
    return req.rc < 0 ? req.rc : req.first_seq;
}

int64_t ant_audit_append_many(struct ant_audit *a, const struct ant_audit_event *evs, size_t n)
{
    if (a == NULL || evs == NULL || n == 0) {
        return -EINVAL;
    }
    if (n > a->opts.max_batch) {
        return -E2BIG;
    }
    if (a->sign == NULL) {
        return -EROFS;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = check_event(&evs[i]);
        if (rc < 0) {
            return rc;
        }
    }
    return submit(a, evs, n);
}

int64_t ant_audit_append(struct ant_audit *a, const struct ant_audit_event *ev)
{
    return ant_audit_append_many(a, ev, 1);
}

/* The string fields of an event, in struct order, as slots to fill. */
static void event_fields(struct ant_audit_event *ev, const char **f[12])
{
    const char **slots[12] = {&ev->request_id,  &ev->actor,       &ev->tenant,
                              &ev->credential,  &ev->action,      &ev->resource_kind,
                              &ev->resource_id, &ev->dataset_id,  &ev->reason,
                              &ev->transfer,    &ev->detail,      NULL};
    memcpy(f, slots, sizeof(slots));
}

/* One heap block: the request, the copied event, then its strings (NUL-terminated). The
 * fields were checked, so each is at most ANT_AUDIT_DETAIL_MAX bytes. */
static int async_req_new(const struct ant_audit_event *ev, struct audit_req **out)
{
    struct ant_audit_event copy = *ev;
    const char **f[12];
    size_t need = sizeof(struct audit_req) + sizeof(struct ant_audit_event);
    event_fields(&copy, f);
    for (size_t i = 0; f[i] != NULL; i++) {
        need += *f[i] != NULL ? strlen(*f[i]) + 1 : 0;
    }
    struct audit_req *r = calloc(1, need);
    if (r == NULL) {
        return -ENOMEM;
    }
    struct ant_audit_event *e = (struct ant_audit_event *)(r + 1);
    char *p = (char *)(e + 1);
    *e = copy;
    event_fields(e, f);
    for (size_t i = 0; f[i] != NULL; i++) {
        if (*f[i] != NULL) {
            size_t len = strlen(*f[i]) + 1;
            memcpy(p, *f[i], len);
            *f[i] = p;
            p += len;
        }
    }
    r->evs = e;
    r->n = 1;
    *out = r;
    return 0;
}

int ant_audit_append_async(struct ant_audit *a, const struct ant_audit_event *ev,
                           ant_audit_done_fn done, void *arg)
{
    struct audit_req *r = NULL;
    if (a == NULL || ev == NULL || done == NULL) {
        return -EINVAL;
    }
    if (a->sign == NULL) {
        return -ENOTSUP;
    }
    int rc = check_event(ev);
    rc = rc < 0 ? rc : async_req_new(ev, &r);
    if (rc < 0) {
        return rc;
    }
    r->done_fn = done;
    r->arg = arg;
    rc = enqueue(a, r);
    if (rc < 0) {
        free(r); /* not queued: done is never called */
    }
    return rc;
}

int ant_audit_checkpoint(struct ant_audit *a)
{
    if (a == NULL) {
        return -EINVAL;
    }
    if (a->sign == NULL) {
        return -EROFS;
    }
    int64_t rc = submit(a, NULL, 0);
    return rc < 0 ? (int)rc : 0;
}

void ant_audit_stats(struct ant_audit *a, struct ant_audit_stats *out)
{
    pthread_mutex_lock(&a->mu);
    out->queue_depth = a->queued_events;
    out->commit_seconds = a->commit_s;
    out->commits = a->commits;
    out->sync_seconds = a->sync_s;
    out->syncs = a->syncs;
    out->failed = a->poisoned;
    pthread_mutex_unlock(&a->mu);
}

void ant_audit_test_sync_hook(struct ant_audit *a, int (*hook)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&a->mu);
    a->sync_hook = hook;
    a->sync_ctx = ctx;
    pthread_mutex_unlock(&a->mu);
}

void ant_audit_test_fail_writes(struct ant_audit *a, int err)
{
    pthread_mutex_lock(&a->mu);
    a->fail_err = err;
    pthread_mutex_unlock(&a->mu);
}

void ant_audit_test_write_v1(struct ant_audit *a, bool v1)
{
    pthread_mutex_lock(&a->mu);
    a->write_v1 = v1;
    pthread_mutex_unlock(&a->mu);
}

void ant_audit_test_verify_split(struct ant_audit *a, int64_t range_seqs, size_t piece_rows,
                                 unsigned workers)
{
    a->vrange_seqs = range_seqs;
    a->vpiece_rows = piece_rows;
    a->vworkers = workers;
}

int64_t ant_audit_test_verify_ranges(struct ant_audit *a)
{
    pthread_mutex_lock(&a->mu);
    int64_t n = a->vranges;
    pthread_mutex_unlock(&a->mu);
    return n;
}

void ant_audit_test_clock(struct ant_audit *a, int64_t (*clock)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&a->mu);
    a->clock = clock;
    a->clock_ctx = ctx;
    pthread_mutex_unlock(&a->mu);
}

/* --- open / close --- */

int ant_audit_open(int dirfd, const char *name, unsigned flags, const struct ant_signkey *sign,
                   const struct ant_audit_opts *opts, struct ant_audit **out)
{
    char path[PATH_MAX + 64];
    bool created = false;
    struct ant_audit *a = NULL;
    int rc = db_path(dirfd, name, path, sizeof(path));
    if (rc < 0) {
        return rc;
    }
    if (flags & ANT_STORE_CREATE) {
        int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            return -errno;
        }
        ant_close(fd);
        created = true;
    } else {
        struct stat sb;
        if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            return -errno;
        }
        if (!S_ISREG(sb.st_mode)) {
            return -EINVAL;
        }
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->rlock, NULL);
    pthread_cond_init(&a->work_cv, NULL);
    pthread_cond_init(&a->done_cv, NULL);
    pthread_cond_init(&a->ck_cv, NULL);
    a->wal_fd = -1;
    a->db_fd = -1;
    a->sign = sign;
    a->commit_s = -1;
    a->sync_s = -1;
    a->opts.checkpoint_every =
        opts && opts->checkpoint_every ? opts->checkpoint_every : DEFAULT_EVERY;
    a->opts.checkpoint_seconds =
        opts && opts->checkpoint_seconds ? opts->checkpoint_seconds : DEFAULT_SECONDS;
    a->opts.max_batch = opts && opts->max_batch ? opts->max_batch : DEFAULT_BATCH;
    a->opts.index_batch = opts && opts->index_batch ? opts->index_batch : INDEX_BATCH;
    a->opts.index_delay_ms = opts && opts->index_delay_ms ? opts->index_delay_ms : INDEX_DELAY_MS;
    a->opts.wal_checkpoint_pages = opts && opts->wal_checkpoint_pages ? opts->wal_checkpoint_pages
                                                                      : WAL_CHECKPOINT_PAGES;
    a->indexed_ms = mono_ms(); /* a tail left by another process waits one delay, no more */
    ant_buf_init(&a->canon, 64 * 1024);
    randombytes_buf(a->salt_key, sizeof(a->salt_key));
    a->md = EVP_MD_CTX_new();
    a->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (a->md == NULL || a->sha256 == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = db_open(path, false, &a->wdb);
    /* WAL lets queries and exports read while the writer commits. synchronous=NORMAL: COMMIT
     * writes the WAL without fsync (SQLite still syncs the WAL before and the database after
     * each WAL checkpoint, so the file stays consistent); the writer's fdatasync of the
     * WAL is what makes an event durable before its caller hears of it (see audit.h). */
    rc = rc < 0 ? rc
                : exec_sql(a->wdb, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                   " PRAGMA cache_size=-32768;");
    rc = rc < 0 ? rc : migrate(a->wdb);
    a->path = strdup(path);
    rc = rc < 0 ? rc : a->path == NULL ? -ENOMEM : 0;
    if (rc == 0) {
        /* SQLite's own absolute name of the WAL: what the writer opens and checks */
        const char *wal = sqlite3_filename_wal(sqlite3_db_filename(a->wdb, "main"));
        a->wal_path = wal != NULL ? strdup(wal) : NULL;
        rc = wal == NULL ? -EIO : a->wal_path == NULL ? -ENOMEM : 0;
    }
    rc = rc < 0 ? rc : db_open(path, false, &a->rdb);
    rc = rc < 0 ? rc
                : exec_sql(a->rdb, "PRAGMA query_only=ON; PRAGMA mmap_size=268435456;"
                                   " PRAGMA cache_size=-32768;");
    if (rc < 0) {
        goto out;
    }
    if (sign != NULL) {
        /* A previous run (or another process) may have left an unsigned tail: the writer's
         * first tick signs it if it is older than checkpoint_seconds. */
        a->unsigned_since_ms = 1;
        if (pthread_create(&a->releaser, NULL, releaser_main, a) != 0) {
            rc = -EAGAIN;
            goto out;
        }
        a->has_releaser = true;
        rc = db_open(path, false, &a->cdb);
        rc = rc < 0 ? rc : exec_sql(a->cdb, "PRAGMA synchronous=NORMAL;");
        a->db_fd = rc < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        rc = rc < 0 ? rc : a->db_fd < 0 ? -errno : 0;
        if (rc < 0) {
            goto out;
        }
        if (pthread_create(&a->checkpointer, NULL, checkpointer_main, a) != 0) {
            rc = -EAGAIN;
            goto out;
        }
        a->has_checkpointer = true;
        /* instead of SQLite's checkpoints inside the writer's COMMITs (wal_autocheckpoint) */
        sqlite3_wal_hook(a->wdb, wal_hook, a);
        if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
            rc = -EAGAIN;
            goto out;
        }
        a->has_thread = true;
    }
    *out = a;
    a = NULL;
out:
    if (a != NULL) {
        ant_audit_close(a);
        if (created) {
            (void)unlinkat(dirfd, name, 0);
        }
    }
    return rc;
}

void ant_audit_close(struct ant_audit *a)
{
    if (a == NULL) {
        return;
    }
    if (a->has_thread) {
        int rc = ant_audit_checkpoint(a);
        if (rc < 0) {
            ant_log(ANT_LOG_WARN, "audit.final_checkpoint", "cannot sign the tail: %s",
                    strerror(-rc));
        }
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        pthread_cond_signal(&a->work_cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    if (a->has_checkpointer) {
        /* after the writer: its last commits may have asked for one more */
        pthread_mutex_lock(&a->mu);
        a->ck_stop = true;
        pthread_cond_signal(&a->ck_cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->checkpointer, NULL);
    }
    if (a->has_releaser) {
        /* the writer has handed over its last batch (or never started) */
        pthread_mutex_lock(&a->mu);
        a->writer_exited = true;
        pthread_cond_signal(&a->done_cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->releaser, NULL);
    }
    for (size_t i = 0; i < ANT_ARRAY_LEN(a->ws); i++) {
        sqlite3_finalize(a->ws[i]);
    }
    sqlite3_close(a->rdb);
    sqlite3_close(a->cdb);
    sqlite3_close(a->wdb);
    free(a->path);
    free(a->wal_path);
    EVP_MD_CTX_free(a->md);
    EVP_MD_free(a->sha256);
    ant_buf_fini(&a->canon);
    pthread_cond_destroy(&a->work_cv);
    pthread_cond_destroy(&a->done_cv);
    pthread_cond_destroy(&a->ck_cv);
    ant_close(a->wal_fd);
    ant_close(a->db_fd);
    pthread_mutex_destroy(&a->rlock);
    pthread_mutex_destroy(&a->mu);
    sodium_memzero(a->salt_key, sizeof(a->salt_key));
    free(a);
}

int ant_audit_test_drop_triggers(int dirfd, const char *name)
{
    char path[PATH_MAX + 64];
    sqlite3 *db = NULL;
    int rc = db_path(dirfd, name, path, sizeof(path));
    rc = rc < 0 ? rc : db_open(path, false, &db);
    rc = rc < 0 ? rc
                : exec_sql(db, "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"
                               "DROP TRIGGER checkpoints_no_update;"
                               "DROP TRIGGER checkpoints_no_delete;");
    sqlite3_close(db);
    return rc;
}

int ant_audit_test_create_at_step(int dirfd, const char *name, int steps)
{
    char path[PATH_MAX + 64];
    sqlite3 *db = NULL;
    if (steps < 0 || (size_t)steps > ANT_ARRAY_LEN(k_migrations)) {
        return -EINVAL;
    }
    int rc = db_path(dirfd, name, path, sizeof(path));
    int fd = rc < 0 ? -1 : openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                  0600);
    rc = rc < 0 ? rc : fd < 0 ? -errno : 0;
    ant_close(fd);
    rc = rc < 0 ? rc : db_open(path, false, &db);
    rc = rc < 0 ? rc : exec_sql(db, "PRAGMA journal_mode=WAL");
    rc = rc < 0 ? rc : migrate_to(db, (size_t)steps);
    sqlite3_close(db);
    return rc;
}

/* --- reading: rows as JSON, queries, export, live verify --- */

static const char *const k_text_cols[] = {
    "request_id", "actor",         "tenant",      "credential",
    "action",     "resource_kind", "resource_id", "dataset_id",
};
static const char *const k_decisions[] = {"deny", "allow", "info"};

/* A row of EVENT_COLS as an export object (without "type"); with_salt: with its salt, when it
 * has one (v2), as the export shows it. */
static json_t *event_json(sqlite3_stmt *s, bool with_salt)
{
    char hex[2 * ANT_AUDIT_HASH_LEN + 1];
    json_t *o = json_object();
    int d = sqlite3_column_int(s, COL_DECISION);
    int rc = o == NULL ? -1 : 0;
    rc = rc < 0 ? rc : json_object_set_new(o, "seq", json_integer(sqlite3_column_int64(s, 0)));
    rc = rc < 0 ? rc : json_object_set_new(o, "time_ms", json_integer(sqlite3_column_int64(s, 1)));
    for (int i = 0; rc == 0 && i < (int)ANT_ARRAY_LEN(k_text_cols); i++) {
        const char *v = (const char *)sqlite3_column_text(s, 2 + i);
        rc = v == NULL ? 0 : json_object_set_new(o, k_text_cols[i], json_string(v));
    }
    rc = rc < 0 ? rc
                : json_object_set_new(o, "decision",
                                      json_string(d >= 0 && d <= 2 ? k_decisions[d] : "?"));
    const char *tail[] = {"reason", "transfer", "detail"};
    for (int i = 0; rc == 0 && i < 3; i++) {
        const char *v = (const char *)sqlite3_column_text(s, 11 + i);
        rc = v == NULL ? 0 : json_object_set_new(o, tail[i], json_string(v));
    }
    /* exported as found: a salt of another length is there for the verifier to refuse */
    int salt_len = sqlite3_column_bytes(s, COL_SALT);
    if (rc == 0 && with_salt && sqlite3_column_type(s, COL_SALT) != SQLITE_NULL) {
        char shex[2 * ANT_AUDIT_FIELD_MAX + 1];
        salt_len = salt_len <= ANT_AUDIT_FIELD_MAX ? salt_len : ANT_AUDIT_FIELD_MAX;
        ant_hex_encode(sqlite3_column_blob(s, COL_SALT), (size_t)salt_len, shex);
        rc = json_object_set_new(o, "salt", json_string(shex));
    }
    if (rc == 0 && sqlite3_column_bytes(s, COL_HASH) == ANT_AUDIT_HASH_LEN) {
        ant_hex_encode(sqlite3_column_blob(s, COL_HASH), ANT_AUDIT_HASH_LEN, hex);
        rc = json_object_set_new(o, "hash", json_string(hex));
    }
    if (rc < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* rdb, in a read transaction: the first seq whose time_ms >= t (time order is seq order), or
 * head + 1 when there is none; a binary search over seq, one point read a step. */
static int seq_at_time(sqlite3 *db, int64_t head, int64_t t, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int64_t lo = 1, hi = head + 1;
    int rc = sqlerr(sqlite3_prepare_v2(
        db, "SELECT seq, time_ms FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", -1, &s, NULL));
    while (rc == 0 && lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        sqlite3_bind_int64(s, 1, mid);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW && sqlite3_column_int64(s, 1) < t) {
            lo = sqlite3_column_int64(s, 0) + 1;
        } else if (src == SQLITE_ROW || src == SQLITE_DONE) {
            hi = mid; /* no seq in [mid, the row's) exists: as a bound, mid is the same */
        } else {
            rc = sqlerr(src);
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    *out = lo;
    return rc;
}

static int read_int64(sqlite3 *db, const char *sql, int64_t *v)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlerr(sqlite3_prepare_v2(db, sql, -1, &s, NULL));
    rc = rc < 0 ? rc : step_int64(s, v);
    sqlite3_finalize(s);
    return rc;
}

struct query_page {
    json_t *arr;
    unsigned limit;
    int64_t last, next;
};

/* Runs one phase of a query: seq in [from, to), the filters `q` (bound as ?3..?7), appending
 * rows to the page until it holds limit + 1 (then sets next: there is another page). */
static int query_phase(sqlite3 *db, const char *sql, const char *const vals[4], int decision,
                       int64_t from, int64_t to, const char *key, struct query_page *pg)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    int rc = sqlerr(src);
    if (rc < 0) {
        goto out;
    }
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    for (int i = 0; i < 4; i++) {
        bind_text(s, 3 + i, vals[i]);
    }
    sqlite3_bind_int(s, 7, decision);
    bind_text(s, 8, key);
    sqlite3_bind_int64(s, 9, (int64_t)pg->limit + 1 - (int64_t)json_array_size(pg->arr));
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (json_array_size(pg->arr) == pg->limit) {
            pg->next = pg->last; /* one more row exists: there is a next page */
            break;
        }
        json_t *o = event_json(s, false);
        if (o == NULL || json_array_append_new(pg->arr, o) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        pg->last = sqlite3_column_int64(s, 0);
    }
    rc = src == SQLITE_ROW || src == SQLITE_DONE ? 0 : sqlerr(src);
out:
    sqlite3_finalize(s);
    return rc;
}

/* The SQL of one phase: indexed (events_by for one key, joined to events) or a scan of events
 * by seq, each with the remaining filters. */
static int query_sql(struct ant_buf *sql, int key_k, const char *const vals[4], int decision)
{
    static const char *const cols[] = {"actor", "tenant", "dataset_id", "action"};
    const char *e = key_k ? "e." : "";
    int rc;
    if (key_k) {
        rc = ant_buf_printf(sql,
                            "SELECT " EVENT_COLS_E " FROM events_by b CROSS JOIN events e"
                            " ON e.seq = b.seq WHERE b.k = %d AND b.v = ?8 AND b.seq >= ?1"
                            " AND b.seq < ?2",
                            key_k);
    } else {
        rc = ant_buf_append_str(sql, "SELECT " EVENT_COLS " FROM events WHERE seq >= ?1"
                                     " AND seq < ?2");
    }
    for (int i = 0; rc == 0 && i < 4; i++) {
        if (vals[i] != NULL) {
            rc = ant_buf_printf(sql, " AND %s%s = ?%d", e, cols[i], 3 + i);
        }
    }
    if (rc == 0 && decision >= 0) {
        rc = ant_buf_printf(sql, " AND %sdecision = ?7", e);
    }
    rc = rc < 0 ? rc : ant_buf_printf(sql, " ORDER BY %sseq LIMIT ?9", key_k ? "b." : "");
    return rc < 0 ? rc : ant_buf_terminate(sql);
}

int ant_audit_query_run(struct ant_audit *a, const struct ant_audit_query *q, json_t **out,
                        int64_t *next)
{
    struct ant_buf sql = ANT_BUF_INIT(2048), sql_ix = ANT_BUF_INIT(2048);
    struct query_page pg = {.limit = q->limit ? q->limit : 100};
    const char *vals[] = {q->actor, q->tenant, q->dataset_id, q->action};
    bool in_txn = false;
    int decision = -1;
    int rc = 0;
    if (pg.limit > QUERY_MAX || (q->to_ms != 0 && q->to_ms < q->from_ms) || q->after_seq < 0) {
        return -EINVAL;
    }
    if (q->decision != NULL) {
        for (int i = 0; i < 3; i++) {
            decision = strcmp(q->decision, k_decisions[i]) == 0 ? i : decision;
        }
        if (decision < 0) {
            return -EINVAL;
        }
    }
    /* The indexed key: the most selective filter given (events_by.k: 1 actor, 2 tenant,
     * 3 dataset_id). */
    int key_k = q->dataset_id != NULL ? 3 : q->actor != NULL ? 1 : q->tenant != NULL ? 2 : 0;
    const char *key = key_k == 3 ? q->dataset_id : key_k == 1 ? q->actor : q->tenant;
    rc = query_sql(&sql, 0, vals, decision);
    rc = rc < 0 || key_k == 0 ? rc : query_sql(&sql_ix, key_k, vals, decision);
    pg.arr = rc < 0 ? NULL : json_array();
    if (rc < 0 || pg.arr == NULL) {
        rc = rc < 0 ? rc : -ENOMEM;
        goto out_nolock;
    }
    pthread_mutex_lock(&a->rlock);
    /* One read transaction: the index mark, the time bounds and both phases see one log. */
    rc = exec_sql(a->rdb, "BEGIN");
    in_txn = rc == 0;
    int64_t head = 0, upto = 0, lo = 1, hi = INT64_MAX;
    rc = rc < 0 ? rc : read_int64(a->rdb, "SELECT coalesce(max(seq), 0) FROM events", &head);
    rc = rc < 0 ? rc
                : read_int64(a->rdb, "SELECT coalesce(max(upto), 0) FROM events_indexed", &upto);
    if (rc == 0 && q->from_ms != 0) {
        rc = seq_at_time(a->rdb, head, q->from_ms, &lo);
    }
    if (rc == 0 && q->to_ms != 0) {
        rc = seq_at_time(a->rdb, head, q->to_ms, &hi);
    }
    lo = q->after_seq >= lo ? q->after_seq + 1 : lo;
    /* Events up to the mark through the index, then the few after it by a scan; each phase
     * in seq order, the second's all after the first's. */
    if (rc == 0 && key_k != 0 && lo <= upto) {
        rc = query_phase(a->rdb, (const char *)sql_ix.p, vals, decision, lo,
                         hi < upto + 1 ? hi : upto + 1, key, &pg);
    }
    if (rc == 0 && pg.next == 0) {
        int64_t from = key_k != 0 && lo <= upto ? upto + 1 : lo;
        rc = query_phase(a->rdb, (const char *)sql.p, vals, decision, from, hi, key, &pg);
    }
    if (rc == 0) {
        *next = pg.next;
        *out = pg.arr;
        pg.arr = NULL;
    }
    if (in_txn) {
        (void)exec_sql(a->rdb, "COMMIT");
    }
    pthread_mutex_unlock(&a->rlock);
out_nolock:
    json_decref(pg.arr);
    ant_buf_fini(&sql);
    ant_buf_fini(&sql_ix);
    return rc;
}

/* Walks events and checkpoints in seq order inside one read transaction, calling back for
 * each; the checkpoints of event n come right after it, and any past the last event at the
 * end. */
struct walk_ops {
    int (*event)(void *ctx, sqlite3_stmt *row);
    int (*checkpoint)(void *ctx, sqlite3_stmt *row); /* seq, hash, time_ms, prev_seq, sig */
};

static int walk(struct ant_audit *a, const struct walk_ops *ops, bool signed_only, void *ctx)
{
    sqlite3_stmt *ev = NULL, *ck = NULL;
    sqlite3 *db = NULL;
    int esrc = SQLITE_DONE, csrc = SQLITE_DONE;
    /* A connection of its own: an export to a slow reader must not hold up queries, and one
     * read transaction gives a consistent snapshot while the writer goes on appending. */
    int rc = db_open(a->path, false, &db);
    rc = rc < 0 ? rc
                : exec_sql(db, "PRAGMA query_only=ON; PRAGMA mmap_size=268435456;"
                               " PRAGMA cache_size=-32768;");
    rc = rc < 0 ? rc : exec_sql(db, "BEGIN");
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(db,
                                            "SELECT " EVENT_COLS " FROM events WHERE seq <= ?1 "
                                            "ORDER BY seq",
                                            -1, &ev, NULL));
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(db,
                                            "SELECT seq, hash, time_ms, prev_seq, sig FROM "
                                            "checkpoints WHERE seq <= ?1 ORDER BY seq",
                                            -1, &ck, NULL));
    if (rc < 0) {
        goto out;
    }
    int64_t upto = INT64_MAX;
    if (signed_only) {
        /* An export ends at the last checkpoint of its snapshot: events appended since the
         * caller's checkpoint are not signed yet and belong to the next export. */
        sqlite3_stmt *m = NULL;
        rc = sqlerr(
            sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) FROM checkpoints", -1, &m, NULL));
        if (rc == 0) {
            rc = sqlite3_step(m) == SQLITE_ROW ? 0 : -EIO;
            upto = sqlite3_column_int64(m, 0);
        }
        sqlite3_finalize(m);
        if (rc < 0) {
            goto out;
        }
    }
    sqlite3_bind_int64(ev, 1, upto);
    sqlite3_bind_int64(ck, 1, upto);
    csrc = sqlite3_step(ck);
    while (rc == 0 && (esrc = sqlite3_step(ev)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(ev, 0);
        /* checkpoints for seqs before this event (its predecessor was deleted) come first */
        while (rc == 0 && csrc == SQLITE_ROW && sqlite3_column_int64(ck, 0) < seq) {
            rc = ops->checkpoint(ctx, ck);
            csrc = sqlite3_step(ck);
        }
        rc = rc < 0 ? rc : ops->event(ctx, ev);
        while (rc == 0 && csrc == SQLITE_ROW && sqlite3_column_int64(ck, 0) == seq) {
            rc = ops->checkpoint(ctx, ck);
            csrc = sqlite3_step(ck);
        }
    }
    while (rc == 0 && csrc == SQLITE_ROW) {
        rc = ops->checkpoint(ctx, ck);
        csrc = sqlite3_step(ck);
    }
    if (rc == 0 && esrc != SQLITE_ROW && esrc != SQLITE_DONE) {
        rc = sqlerr(esrc);
    }
    if (rc == 0 && csrc != SQLITE_ROW && csrc != SQLITE_DONE) {
        rc = sqlerr(csrc);
    }
out:
    sqlite3_finalize(ev);
    sqlite3_finalize(ck);
    if (db != NULL && !sqlite3_get_autocommit(db)) {
        (void)exec_sql(db, "COMMIT");
    }
    sqlite3_close(db);
    return rc;
}

/* --- export --- */

struct export_ctx {
    int (*write)(void *ctx, const uint8_t *p, size_t len);
    void *ctx;
    struct ant_buf out;
    int64_t lines;
    const struct ant_audit_scope *scope; /* NULL: every event in full */
    EVP_MD_CTX *md;                      /* redacted events' commitments */
    EVP_MD *sha256;
    struct ant_buf canon;
};

static int export_line(struct export_ctx *x, json_t *o)
{
    int rc = o == NULL ? -ENOMEM : 0;
    char *s = rc < 0 ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    rc = rc < 0 ? rc : s == NULL ? -ENOMEM : ant_buf_append_str(&x->out, s);
    rc = rc < 0 ? rc : ant_buf_append(&x->out, "\n", 1);
    free(s);
    json_decref(o);
    if (rc == 0 && x->out.len >= EXPORT_FLUSH) {
        rc = x->write(x->ctx, x->out.p, x->out.len);
        x->out.len = 0;
    }
    x->lines++;
    return rc;
}

/* A row of EVENT_COLS as an event; its strings are the row's, valid until the next step. */
static void row_event(sqlite3_stmt *row, struct ant_audit_event *ev)
{
    const char **slots[] = {&ev->request_id, &ev->actor,         &ev->tenant,
                            &ev->credential, &ev->action,        &ev->resource_kind,
                            &ev->resource_id, &ev->dataset_id};
    for (int i = 0; i < (int)ANT_ARRAY_LEN(slots); i++) {
        *slots[i] = (const char *)sqlite3_column_text(row, 2 + i);
    }
    ev->decision = (enum ant_audit_decision)sqlite3_column_int(row, COL_DECISION);
    ev->reason = (const char *)sqlite3_column_text(row, 11);
    ev->transfer = (const char *)sqlite3_column_text(row, 12);
    ev->detail = (const char *)sqlite3_column_text(row, 13);
}

/* {"type":"redacted","seq","commit"?,"hash"}: what a verifier needs to chain the event, and
 * nothing that tells what it was. The commitment is computed from the row as stored, so a row
 * changed since it was written fails the link check like a full event would. A row that does
 * not make one (a salt of the wrong length, a field over the limit) is exported without it,
 * which a verifier refuses after any v2 event. */
static int export_redacted(struct export_ctx *x, sqlite3_stmt *row,
                           const struct ant_audit_event *ev)
{
    char hash[2 * ANT_AUDIT_HASH_LEN + 1] = "", commit[2 * ANT_AUDIT_HASH_LEN + 1] = "";
    uint8_t c[ANT_AUDIT_HASH_LEN];
    int64_t seq = sqlite3_column_int64(row, 0);
    bool v2 = sqlite3_column_bytes(row, COL_SALT) == ANT_AUDIT_SALT_LEN;
    if (v2) {
        x->canon.len = 0;
        int rc = ant_audit_canonical(seq, sqlite3_column_int64(row, 1), ev, &x->canon);
        rc = rc < 0 ? rc
                    : ant_audit_commit_v2(x->md, x->sha256, sqlite3_column_blob(row, COL_SALT),
                                          ant_buf_view(&x->canon), c);
        if (rc == -ENOMEM) {
            return rc;
        }
        v2 = rc == 0;
    }
    if (v2) {
        ant_hex_encode(c, sizeof(c), commit);
    }
    if (sqlite3_column_bytes(row, COL_HASH) == ANT_AUDIT_HASH_LEN) {
        ant_hex_encode(sqlite3_column_blob(row, COL_HASH), ANT_AUDIT_HASH_LEN, hash);
    }
    json_t *o = v2 ? json_pack("{s:s, s:I, s:s, s:s}", "type", "redacted", "seq",
                               (json_int_t)seq, "commit", commit, "hash", hash)
                   : json_pack("{s:s, s:I, s:s}", "type", "redacted", "seq", (json_int_t)seq,
                               "hash", hash);
    return export_line(x, o);
}

static int export_event(void *ctx, sqlite3_stmt *row)
{
    struct export_ctx *x = ctx;
    if (x->scope != NULL) {
        struct ant_audit_event ev = {0};
        row_event(row, &ev);
        int vis = x->scope->visible(x->scope->ctx, &ev);
        if (vis < 0) {
            return vis;
        }
        if (vis == 0) {
            return export_redacted(x, row, &ev);
        }
    }
    json_t *o = json_object();
    json_t *e = event_json(row, true);
    if (o == NULL || e == NULL || json_object_set_new(o, "type", json_string("event")) < 0 ||
        json_object_update(o, e) < 0) {
        json_decref(o);
        json_decref(e);
        return -ENOMEM;
    }
    json_decref(e);
    return export_line(ctx, o);
}

static int export_checkpoint(void *ctx, sqlite3_stmt *row)
{
    char hash[2 * ANT_AUDIT_HASH_LEN + 1], sig[2 * ANT_SIG_LEN + 1];
    if (sqlite3_column_bytes(row, 1) != ANT_AUDIT_HASH_LEN ||
        sqlite3_column_bytes(row, 4) != ANT_SIG_LEN) {
        hash[0] = sig[0] = '\0'; /* exported as found: the verifier will say it is bad */
    } else {
        ant_hex_encode(sqlite3_column_blob(row, 1), ANT_AUDIT_HASH_LEN, hash);
        ant_hex_encode(sqlite3_column_blob(row, 4), ANT_SIG_LEN, sig);
    }
    json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:I, s:s}", "type", "checkpoint", "seq",
                          (json_int_t)sqlite3_column_int64(row, 0), "hash", hash, "time_ms",
                          (json_int_t)sqlite3_column_int64(row, 2), "prev_seq",
                          (json_int_t)sqlite3_column_int64(row, 3), "sig", sig);
    return export_line(ctx, o);
}

int64_t ant_audit_export_scoped(struct ant_audit *a, const struct ant_audit_scope *scope,
                                int (*write)(void *ctx, const uint8_t *p, size_t len), void *ctx)
{
    static const struct walk_ops ops = {export_event, export_checkpoint};
    struct export_ctx x = {.write = write,
                           .ctx = ctx,
                           .out = ANT_BUF_INIT(EXPORT_FLUSH + 2 * ANT_AUDIT_EXPORT_LINE_MAX),
                           .scope = scope,
                           .canon = ANT_BUF_INIT(64 * 1024)}; /* as the writer's */
    int rc = 0;
    if (scope != NULL) {
        x.md = EVP_MD_CTX_new();
        x.sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
        rc = x.md == NULL || x.sha256 == NULL ? -ENOMEM : 0;
    }
    if (rc == 0 && a->sign != NULL) {
        rc = ant_audit_checkpoint(a);
    }
    rc = rc < 0 ? rc : walk(a, &ops, true, &x);
    if (rc == 0 && x.out.len > 0) {
        rc = write(ctx, x.out.p, x.out.len);
    }
    ant_buf_fini(&x.out);
    ant_buf_fini(&x.canon);
    EVP_MD_CTX_free(x.md);
    EVP_MD_free(x.sha256);
    return rc < 0 ? rc : x.lines;
}

int64_t ant_audit_export_cb(struct ant_audit *a,
                            int (*write)(void *ctx, const uint8_t *p, size_t len), void *ctx)
{
    return ant_audit_export_scoped(a, NULL, write, ctx);
}

static int write_fd(void *ctx, const uint8_t *p, size_t len)
{
    return ant_write_all(*(const int *)ctx, p, len);
}

int64_t ant_audit_export(struct ant_audit *a, int fd)
{
    return ant_audit_export_cb(a, write_fd, &fd);
}

/* --- checkpoints and status --- */

int ant_audit_checkpoints(struct ant_audit *a, unsigned limit, json_t **out)
{
    sqlite3_stmt *s = NULL;
    json_t *arr = json_array();
    int rc = arr == NULL ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    limit = limit ? limit : 100;
    if (limit > QUERY_MAX) {
        json_decref(arr);
        return -EINVAL;
    }
    pthread_mutex_lock(&a->rlock);
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(a->rdb,
                                            "SELECT seq, hash, time_ms, prev_seq, sig FROM ("
                                            "SELECT * FROM checkpoints ORDER BY seq DESC LIMIT ?)"
                                            " ORDER BY seq",
                                            -1, &s, NULL));
    if (rc == 0) {
        sqlite3_bind_int(s, 1, (int)limit);
    }
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        char hash[2 * ANT_AUDIT_HASH_LEN + 1] = "", sig[2 * ANT_SIG_LEN + 1] = "";
        if (sqlite3_column_bytes(s, 1) == ANT_AUDIT_HASH_LEN &&
            sqlite3_column_bytes(s, 4) == ANT_SIG_LEN) {
            ant_hex_encode(sqlite3_column_blob(s, 1), ANT_AUDIT_HASH_LEN, hash);
            ant_hex_encode(sqlite3_column_blob(s, 4), ANT_SIG_LEN, sig);
        }
        json_t *o =
            json_pack("{s:I, s:s, s:I, s:I, s:s}", "seq", (json_int_t)sqlite3_column_int64(s, 0),
                      "hash", hash, "time_ms", (json_int_t)sqlite3_column_int64(s, 2), "prev_seq",
                      (json_int_t)sqlite3_column_int64(s, 3), "sig", sig);
        rc = o == NULL || json_array_append_new(arr, o) < 0 ? -ENOMEM : 0;
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sqlerr(src);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&a->rlock);
    if (rc == 0) {
        *out = arr;
        arr = NULL;
    }
    json_decref(arr);
    return rc;
}

int ant_audit_status(struct ant_audit *a, const uint8_t *pub, json_t **out)
{
    struct ant_audit_report rep;
    struct ant_audit_stats st;
    if (pub == NULL && a->sign == NULL) {
        return -EINVAL;
    }
    int rc = ant_audit_verify(a, pub != NULL ? pub : ant_signkey_public(a->sign), false, &rep);
    if (rc < 0 && rc != -EBADMSG) {
        return rc;
    }
    ant_audit_stats(a, &st);
    json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "intact", rc == 0, "events",
                          (json_int_t)rep.events, "checkpoints", (json_int_t)rep.checkpoints,
                          "last_seq", (json_int_t)rep.last_seq, "signed_seq",
                          (json_int_t)rep.signed_seq, "first_bad_seq",
                          (json_int_t)rep.first_bad_seq, "queue_depth", (json_int_t)st.queue_depth);
    if (o != NULL && rc != 0 && json_object_set_new(o, "what", json_string(rep.what)) < 0) {
        json_decref(o);
        o = NULL;
    }
    if (o == NULL) {
        return -ENOMEM;
    }
    *out = o;
    return 0;
}

/* --- live verification ---
 * The log is cut by seq into ranges of VRANGE_SEQS, and W workers (the caller's thread and W - 1
 * helpers; W = the cores, 2 to 4) take the ranges in turn: each worker takes the next range
 * (range k) as soon as it is done with its last one, reads it on a connection of its own and
 * does there, for each row, all that needs no chain state: stepping SQLite, the canonical bytes,
 * a v2 event's commitment c_n, a checkpoint's signature. Then it waits for its turn (range k - 1
 * chained) and chains its rows through the one verifier: the link h_n (one short hash an
 * event), every order, gap and v1/v2 check, the witnesses, in seq order as a single walk would.
 * Until session 10 one thread read SQLite and copied the rows out while the caller's thread
 * hashed them: the reader was the bottleneck, and the hasher idle 40 % of the time.
 *
 * A range starts at a seq the snapshot holds: the lowest one past the ranges handed out so far,
 * found in the tables' primary keys (two lookups a range). An intact log's seqs are 1, 2, ...,
 * so its ranges are (kR, (k+1)R]; a tampered one can hold seqs anywhere in the int64 range, and
 * the ranges then jump the gaps: the work grows with the rows, not with the seqs between them
 * (until session 11 a seq of 10^15 made verify step through up to 65,536 empty ranges). How the
 * rows are cut does not change the report: they are chained in one seq order either way.
 *
 * One snapshot: the first worker's read transaction is the snapshot; the others start theirs
 * later and read only up to its last event and its last checkpoint. The log is append-only
 * (triggers refuse UPDATE and DELETE, an event is appended at the head's seq + 1 and a
 * checkpoint at the head's seq, each seq once), so the rows up to those seqs are the same in
 * every later snapshot, and the workers together read exactly the first one's rows. */

#define VRANGE_SEQS 4096
#define VPIECE_ROWS (2 * VRANGE_SEQS + 8) /* a range's events and its checkpoints (every 1) */
#define VPIECE_TEXT (4 * 1024 * 1024)     /* v1 events' canonical bytes kept for the link */
#define VWORKERS_MAX 4

enum { VROW_EVENT, VROW_CKPT, VROW_BAD_HASH, VROW_BAD_SALT, VROW_BAD_CKPT };

struct vrow {
    int kind;
    int sig_ok; /* checkpoint: its signature is valid */
    int64_t seq;
    union {
        struct {
            struct ant_audit_prepared pre;
            uint8_t hash[ANT_AUDIT_HASH_LEN];
        } ev;
        struct ant_audit_ckpt ck;
    } u;
};

struct vshared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t turn; /* the range whose rows may be chained now */
    bool stop;    /* the holder of a turn found a failure (1) or an error (< 0): `result` */
    int result;
    pthread_mutex_t next_mu; /* the ranges handed out: */
    int64_t next_k;          /* how many */
    int64_t next_lo;         /* the lowest seq past them */
    bool next_end;           /* none left (or verify stops) */
    struct ant_audit_verifier *v; /* used by the turn's holder only */
    const char *path;
    int64_t range_seqs;
    size_t piece_rows;
    unsigned nworkers;
    bool ev_any, ck_any;   /* the snapshot has events / checkpoints */
    int64_t ev_max, ck_max; /* and up to which seq */
};

struct vworker {
    struct vshared *s;
    sqlite3 *db;
    sqlite3_stmt *ev, *ck;
    sqlite3_stmt *ev_next, *ck_next; /* the lowest seq in [?1, ?2] */
    int esrc, csrc;
    EVP_MD_CTX *md;
    struct ant_buf canon; /* one event's canonical bytes */
    struct ant_buf text;  /* the piece's v1 canonical bytes */
    struct vrow *rows;
    size_t n;
    pthread_t thread;
    bool started;
};

static int vworker_open(struct vworker *w)
{
    int rc = db_open(w->s->path, false, &w->db);
    rc = rc < 0 ? rc
                : exec_sql(w->db, "PRAGMA query_only=ON; PRAGMA mmap_size=268435456;"
                                  " PRAGMA cache_size=-32768; BEGIN");
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(w->db,
                                            "SELECT " EVENT_COLS " FROM events WHERE seq >= ?1 "
                                            "AND seq <= ?2 ORDER BY seq",
                                            -1, &w->ev, NULL));
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(w->db,
                                            "SELECT seq, hash, time_ms, prev_seq, sig FROM "
                                            "checkpoints WHERE seq >= ?1 AND seq <= ?2 "
                                            "ORDER BY seq",
                                            -1, &w->ck, NULL));
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(w->db,
                                            "SELECT seq FROM events WHERE seq >= ?1 AND "
                                            "seq <= ?2 ORDER BY seq LIMIT 1",
                                            -1, &w->ev_next, NULL));
    rc = rc < 0 ? rc
                : sqlerr(sqlite3_prepare_v2(w->db,
                                            "SELECT seq FROM checkpoints WHERE seq >= ?1 AND "
                                            "seq <= ?2 ORDER BY seq LIMIT 1",
                                            -1, &w->ck_next, NULL));
    w->md = rc < 0 ? NULL : EVP_MD_CTX_new();
    rc = rc < 0 ? rc : w->md == NULL ? -ENOMEM : 0;
    w->rows = rc < 0 ? NULL : calloc(w->s->piece_rows, sizeof(*w->rows));
    rc = rc < 0 ? rc : w->rows == NULL ? -ENOMEM : 0;
    ant_buf_init(&w->canon, ANT_AUDIT_CANON_MAX);
    ant_buf_init(&w->text, VPIECE_TEXT + ANT_AUDIT_CANON_MAX);
    return rc;
}

static void vworker_close(struct vworker *w)
{
    sqlite3_finalize(w->ev);
    sqlite3_finalize(w->ck);
    sqlite3_finalize(w->ev_next);
    sqlite3_finalize(w->ck_next);
    if (w->db != NULL && !sqlite3_get_autocommit(w->db)) {
        (void)exec_sql(w->db, "COMMIT");
    }
    sqlite3_close(w->db);
    EVP_MD_CTX_free(w->md);
    free(w->rows);
    ant_buf_fini(&w->canon);
    ant_buf_fini(&w->text);
    w->db = NULL;
    w->ev = w->ck = w->ev_next = w->ck_next = NULL;
    w->md = NULL;
    w->rows = NULL;
}

/* The first worker's read transaction: the snapshot, and where every reader stops. */
static int vsnapshot(struct vworker *w)
{
    struct vshared *s = w->s;
    static const char *const sql[2] = {"SELECT max(seq) FROM events",
                                       "SELECT max(seq) FROM checkpoints"};
    bool *any[2] = {&s->ev_any, &s->ck_any};
    int64_t *max[2] = {&s->ev_max, &s->ck_max};
    int rc = 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        sqlite3_stmt *m = NULL;
        rc = sqlerr(sqlite3_prepare_v2(w->db, sql[i], -1, &m, NULL));
        int src = rc < 0 ? SQLITE_ERROR : sqlite3_step(m);
        rc = rc < 0 ? rc : src == SQLITE_ROW ? 0 : sqlerr(src) < 0 ? sqlerr(src) : -EIO;
        if (rc == 0) {
            *any[i] = sqlite3_column_type(m, 0) != SQLITE_NULL;
            *max[i] = sqlite3_column_int64(m, 0);
        }
        sqlite3_finalize(m);
    }
    return rc;
}

/* The lowest seq in [lo, max] of one table: 0 and *found, 0 (none), or a negative errno. */
static int vseq_next(sqlite3_stmt *st, int64_t lo, int64_t max, bool *found, int64_t *seq)
{
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, max);
    int src = sqlite3_step(st);
    *found = src == SQLITE_ROW;
    *seq = *found ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? 0 : sqlerr(src);
}

/* Hands out the next range, [*lo, *hi] as range *k: from the lowest seq the snapshot holds past
 * the ranges handed out so far, range_seqs seqs on. false when none is left. A worker that has
 * an error (*rc < 0, or a lookup fails) still takes a range, and hands out no more: it reports
 * the error in that range's turn, after the failures the ranges before it may hold. */
static bool vrange_next(struct vworker *w, int *rc, int64_t *k, int64_t *lo, int64_t *hi)
{
    struct vshared *s = w->s;
    bool ev = false, ck = false, got = false;
    int64_t e = 0, c = 0;
    pthread_mutex_lock(&s->next_mu);
    if (!s->next_end && *rc == 0 && s->ev_any) {
        *rc = vseq_next(w->ev_next, s->next_lo, s->ev_max, &ev, &e);
    }
    if (!s->next_end && *rc == 0 && s->ck_any) {
        *rc = vseq_next(w->ck_next, s->next_lo, s->ck_max, &ck, &c);
    }
    if (!s->next_end && (*rc < 0 || ev || ck)) {
        *lo = ev && (!ck || e < c) ? e : c;
        *hi = *lo > INT64_MAX - (s->range_seqs - 1) ? INT64_MAX : *lo + (s->range_seqs - 1);
        *k = s->next_k++;
        s->next_lo = *hi < INT64_MAX ? *hi + 1 : *hi;
        s->next_end = *rc < 0 || *hi == INT64_MAX;
        got = true;
    } else {
        s->next_end = true;
    }
    pthread_mutex_unlock(&s->next_mu);
    return got;
}

static void vrange_start(struct vworker *w, int64_t lo, int64_t hi)
{
    struct vshared *s = w->s;
    sqlite3_reset(w->ev);
    sqlite3_reset(w->ck);
    sqlite3_bind_int64(w->ev, 1, lo);
    sqlite3_bind_int64(w->ev, 2, hi < s->ev_max ? hi : s->ev_max);
    sqlite3_bind_int64(w->ck, 1, lo);
    sqlite3_bind_int64(w->ck, 2, hi < s->ck_max ? hi : s->ck_max);
    w->esrc = s->ev_any ? sqlite3_step(w->ev) : SQLITE_DONE;
    w->csrc = s->ck_any ? sqlite3_step(w->ck) : SQLITE_DONE; /* errors: seen by vfill */
}

/* A string column as the C-string reading before saw it: up to its first NUL (the canonical
 * encoder measured with strlen), and one byte past ANT_AUDIT_DETAIL_MAX at most, enough for the
 * encoder to refuse it (a huge tampered value costs no more). sqlite3_column_blob instead
 * (no NUL needed) was no faster: OP_Column copies every string out of the page already. */
static struct ant_bytes vfield(sqlite3_stmt *row, int col)
{
    const char *t = (const char *)sqlite3_column_text(row, col);
    return t == NULL ? ANT_BYTES_NULL : ant_bytes_of(t, strnlen(t, ANT_AUDIT_DETAIL_MAX + 1));
}

static int vread_event(struct vworker *w, struct vrow *r)
{
    sqlite3_stmt *row = w->ev;
    static const int cols[ANT_AUDIT_NFIELDS] = {2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13};
    struct ant_bytes f[ANT_AUDIT_NFIELDS];
    int64_t time_ms = sqlite3_column_int64(row, 1);
    int decision = sqlite3_column_int(row, COL_DECISION);
    r->seq = sqlite3_column_int64(row, 0);
    for (int i = 0; i < ANT_AUDIT_NFIELDS; i++) {
        f[i] = vfield(row, cols[i]); /* valid until the next step */
    }
    bool has_salt = sqlite3_column_type(row, COL_SALT) != SQLITE_NULL;
    if (sqlite3_column_bytes(row, COL_HASH) != ANT_AUDIT_HASH_LEN) {
        r->kind = VROW_BAD_HASH;
        return 0;
    }
    if (has_salt && sqlite3_column_bytes(row, COL_SALT) != ANT_AUDIT_SALT_LEN) {
        r->kind = VROW_BAD_SALT;
        return 0;
    }
    r->kind = VROW_EVENT;
    memcpy(r->u.ev.hash, sqlite3_column_blob(row, COL_HASH), ANT_AUDIT_HASH_LEN);
    w->canon.len = 0;
    ant_audit_event_prepare(w->md, w->s->v->md, r->seq, time_ms, decision, f,
                            has_salt ? sqlite3_column_blob(row, COL_SALT) : NULL, &w->canon,
                            &r->u.ev.pre);
    if (has_salt || r->u.ev.pre.status != 0) {
        return 0;
    }
    /* v1: the link hashes the canonical bytes themselves */
    r->u.ev.pre.canon_off = w->text.len;
    return ant_buf_append(&w->text, w->canon.p, w->canon.len);
}

static void vread_checkpoint(struct vworker *w, struct vrow *r)
{
    sqlite3_stmt *row = w->ck;
    struct ant_audit_ckpt *c = &r->u.ck;
    r->seq = c->seq = sqlite3_column_int64(row, 0);
    c->time_ms = sqlite3_column_int64(row, 2);
    c->prev_seq = sqlite3_column_int64(row, 3);
    if (sqlite3_column_bytes(row, 1) != ANT_AUDIT_HASH_LEN ||
        sqlite3_column_bytes(row, 4) != ANT_SIG_LEN) {
        r->kind = VROW_BAD_CKPT;
        return;
    }
    r->kind = VROW_CKPT;
    memcpy(c->hash, sqlite3_column_blob(row, 1), ANT_AUDIT_HASH_LEN);
    memcpy(c->sig, sqlite3_column_blob(row, 4), ANT_SIG_LEN);
    r->sig_ok = ant_audit_ckpt_sig_is_valid(w->s->v->pub, c) ? 1 : 0;
}

/* Reads the next rows of the range, in walk()'s order (a checkpoint right after its event),
 * up to a piece; *more: the range has rows left. On an error the rows before it stay. */
static int vfill(struct vworker *w, bool *more)
{
    int rc = 0;
    w->n = 0;
    w->text.len = 0;
    while (rc == 0 && w->n < w->s->piece_rows && w->text.len <= VPIECE_TEXT) {
        bool ev = w->esrc == SQLITE_ROW &&
                  (w->csrc != SQLITE_ROW ||
                   sqlite3_column_int64(w->ck, 0) >= sqlite3_column_int64(w->ev, 0));
        if (ev) {
            rc = vread_event(w, &w->rows[w->n]);
            w->esrc = sqlite3_step(w->ev);
        } else if (w->csrc == SQLITE_ROW) {
            vread_checkpoint(w, &w->rows[w->n]);
            w->csrc = sqlite3_step(w->ck);
        } else {
            break;
        }
        w->n += rc == 0 ? 1 : 0;
    }
    if (rc == 0 && w->esrc != SQLITE_ROW && w->esrc != SQLITE_DONE) {
        rc = sqlerr(w->esrc);
    }
    if (rc == 0 && w->csrc != SQLITE_ROW && w->csrc != SQLITE_DONE) {
        rc = sqlerr(w->csrc);
    }
    *more = rc == 0 && (w->esrc == SQLITE_ROW || w->csrc == SQLITE_ROW);
    return rc;
}

/* Chains one row: 0, 1 when it failed (the report says where), or a negative errno. */
static int vchain_row(struct vworker *w, const struct vrow *r)
{
    struct ant_audit_verifier *v = w->s->v;
    int rc;
    if (r->kind == VROW_EVENT) {
        const struct ant_audit_prepared *e = &r->u.ev.pre;
        rc = ant_audit_verifier_prepared(v, w->md, r->seq, e,
                                         ant_bytes_of(w->text.p + (e->v2 ? 0 : e->canon_off),
                                                      e->v2 ? 0 : e->canon_len),
                                         r->u.ev.hash);
    } else if (r->kind == VROW_BAD_HASH) {
        ant_audit_verifier_fail(v, r->seq, "event %lld has no valid hash", (long long)r->seq);
        rc = -EBADMSG;
    } else if (r->kind == VROW_BAD_SALT) {
        ant_audit_verifier_fail(v, r->seq, "event %lld has no valid salt", (long long)r->seq);
        rc = -EBADMSG;
    } else if (r->kind == VROW_BAD_CKPT) {
        ant_audit_verifier_fail(v, r->seq, "checkpoint %lld is malformed", (long long)r->seq);
        rc = -EBADMSG;
    } else if (r->seq > v->rep.last_seq) {
        /* Walked before its event: the event it signs is gone (tail truncated or deleted). */
        ant_audit_verifier_fail(v, v->rep.last_seq + 1,
                                "event %lld is missing (checkpoint %lld signs up to it)",
                                (long long)(v->rep.last_seq + 1), (long long)r->seq);
        rc = -EBADMSG;
    } else {
        rc = ant_audit_verifier_ckpt_checked(v, &r->u.ck, r->sig_ok);
    }
    return rc == -EBADMSG ? 1 : rc;
}

static bool vturn_wait(struct vshared *s, int64_t k)
{
    pthread_mutex_lock(&s->mu);
    while (s->turn != k && !s->stop) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    bool go = !s->stop;
    pthread_mutex_unlock(&s->mu);
    return go;
}

/* Ends the turn of range k: the next range's, or (result != 0) everyone's. */
static void vturn_end(struct vshared *s, int64_t k, int result)
{
    pthread_mutex_lock(&s->mu);
    if (result != 0 && !s->stop) {
        s->stop = true;
        s->result = result;
    }
    s->turn = k + 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (result != 0) {
        pthread_mutex_lock(&s->next_mu); /* no more ranges to read */
        s->next_end = true;
        pthread_mutex_unlock(&s->next_mu);
    }
}

/* A worker's ranges. Reads a range's first piece before its turn; a range that holds more rows
 * than a piece (only a tampered log: seqs are unique) is read on during its turn. */
static void vworker_run(struct vworker *w, int rc)
{
    struct vshared *s = w->s;
    int64_t k = 0, lo = 0, hi = 0;
    while (vrange_next(w, &rc, &k, &lo, &hi)) {
        bool more = false, mine = false;
        if (rc == 0) {
            vrange_start(w, lo, hi);
        }
        do {
            if (rc == 0) {
                rc = vfill(w, &more);
            }
            if (!mine && !vturn_wait(s, k)) {
                return; /* an earlier range failed: its holder stopped the others */
            }
            mine = true;
            int c = 0;
            for (size_t i = 0; c == 0 && i < w->n; i++) {
                c = vchain_row(w, &w->rows[i]);
            }
            w->n = 0;
            if (c != 0 || rc < 0) {
                /* a failure found in the rows read before an error is the one to report */
                vturn_end(s, k, c != 0 ? c : rc);
                return;
            }
        } while (more);
        vturn_end(s, k, 0);
    }
}

static void *vworker_main(void *arg)
{
    struct vworker *w = arg;
    vworker_run(w, vworker_open(w));
    vworker_close(w);
    return NULL;
}

int ant_audit_verify_index(struct ant_audit *a, int64_t *upto, int64_t *first_missing)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t mark = 0;
    *upto = 0;
    *first_missing = 0;
    /* A connection of its own, one read transaction: the writer goes on meanwhile. Only a
     * missing row can hide an event (a query re-checks every filter on the event it joins), so
     * each event up to the mark must have its rows; events after the mark are scanned by
     * queries anyway. Three lookups in the index's primary key per event. */
    int rc = db_open(a->path, true, &db);
    rc = rc < 0 ? rc : exec_sql(db, "PRAGMA query_only=ON; BEGIN");
    rc = rc < 0 ? rc
                : read_int64(db, "SELECT coalesce(max(upto), 0) FROM events_indexed", &mark);
    rc = rc < 0
             ? rc
             : sqlerr(sqlite3_prepare_v2(
                   db,
                   "SELECT coalesce(min(e.seq), 0) FROM events e WHERE e.seq <= ?1 AND ("
                   " (e.actor IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events_by b"
                   "   WHERE b.k = 1 AND b.v = e.actor AND b.seq = e.seq))"
                   " OR (e.tenant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events_by b"
                   "   WHERE b.k = 2 AND b.v = e.tenant AND b.seq = e.seq))"
                   " OR (e.dataset_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events_by b"
                   "   WHERE b.k = 3 AND b.v = e.dataset_id AND b.seq = e.seq)))",
                   -1, &s, NULL));
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, mark);
        rc = step_int64(s, first_missing);
    }
    sqlite3_finalize(s);
    if (db != NULL) {
        (void)exec_sql(db, "COMMIT");
    }
    sqlite3_close(db);
    if (rc == 0) {
        *upto = mark;
    }
    return rc < 0 ? rc : *first_missing != 0 ? -EBADMSG : 0;
}

int ant_audit_verify(struct ant_audit *a, const uint8_t pub[ANT_KEY_LEN], bool strict,
                     struct ant_audit_report *rep)
{
    return ant_audit_verify_witnessed(a, pub, strict, NULL, rep);
}

int ant_audit_verify_witnessed(struct ant_audit *a, const uint8_t pub[ANT_KEY_LEN], bool strict,
                               const struct ant_audit_witnesses *w, struct ant_audit_report *rep)
{
    struct ant_audit_verifier v;
    struct vshared s = {.path = a->path};
    struct vworker wk[VWORKERS_MAX];
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = ant_audit_verifier_init(&v, pub);
    memset(wk, 0, sizeof(wk));
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_mutex_init(&s.next_mu, NULL);
    s.next_lo = INT64_MIN;
    s.v = &v;
    s.range_seqs = a->vrange_seqs > 0 ? a->vrange_seqs : VRANGE_SEQS;
    s.piece_rows = a->vpiece_rows > 0 ? a->vpiece_rows : VPIECE_ROWS;
    s.nworkers = a->vworkers > 0 ? a->vworkers : cores < 2 ? 2 : (unsigned)cores;
    s.nworkers = s.nworkers > VWORKERS_MAX ? VWORKERS_MAX : s.nworkers;
    for (unsigned i = 0; i < VWORKERS_MAX; i++) {
        wk[i].s = &s;
    }
    if (rc == 0) {
        ant_audit_verifier_witness(&v, w);
        rc = vworker_open(&wk[0]);
    }
    rc = rc < 0 ? rc : vsnapshot(&wk[0]);
    if (rc == 0) {
        /* one worker when every seq fits in one range, as it does in a small intact log */
        int64_t top = s.ev_any ? s.ev_max : INT64_MIN;
        top = s.ck_any && s.ck_max > top ? s.ck_max : top;
        s.nworkers = top <= s.range_seqs ? 1 : s.nworkers;
        /* the helpers open their connections once the snapshot is taken */
        for (unsigned i = 1; i < s.nworkers; i++) {
            if (pthread_create(&wk[i].thread, NULL, vworker_main, &wk[i]) != 0) {
                vturn_end(&s, -1, -EAGAIN); /* the ones started stop at their first turn */
                break;
            }
            wk[i].started = true;
        }
        vworker_run(&wk[0], 0);
        for (unsigned i = 1; i < s.nworkers; i++) {
            if (wk[i].started) {
                pthread_join(wk[i].thread, NULL);
            }
        }
        rc = s.result < 0 ? s.result : 0; /* 1: a failure, in the report */
        pthread_mutex_lock(&a->mu);
        a->vranges = s.next_k;
        pthread_mutex_unlock(&a->mu);
    }
    vworker_close(&wk[0]);
    if (rc == 0) {
        rc = ant_audit_verifier_finish(&v, strict, rep);
    }
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.next_mu);
    ant_audit_verifier_fini(&v);
    return rc;
}
