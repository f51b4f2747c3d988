/* Stage jobs: admission, the job table, the runner threads and the purger; see jobs.h. */
#include "staging/jobs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/base/json.h"
#include "crypto/base/log.h"
#include "crypto/c4gh.h"
#include "policy/audit.h"
#include "policy/peers.h"

/* Per-file progress is written in batches: one commit (an fsync with synchronous=FULL) per file
 * would bound a job of many small files by the database, not the disks. A crash loses at most
 * one batch of `done` marks; those files are verified and kept by the engine on resume anyway. */
#define FLUSH_FILES 512
#define FLUSH_NS (1000LL * 1000 * 1000)
#define DB_BUSY_MS 10000
#define C4GH_SEGMENT 65536u
#define C4GH_SEGMENT_OVERHEAD 28u /* nonce + MAC */
#define C4GH_HEADER_ALLOWANCE 1024u

static const char *const g_state_names[] = {"queued", "running", "ready",
                                            "failed", "cancelled", "expired"};

const char *ant_job_state_name(enum ant_job_state s)
{
    return (unsigned)s < ANT_ARRAY_LEN(g_state_names) ? g_state_names[s] : "unknown";
}

int ant_job_state_parse(const char *s, enum ant_job_state *out)
{
    for (unsigned i = 0; s != NULL && i < ANT_ARRAY_LEN(g_state_names); i++) {
        if (strcmp(s, g_state_names[i]) == 0) {
            *out = (enum ant_job_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

bool ant_job_transition_is_allowed(enum ant_job_state from, enum ant_job_state to)
{
    switch (from) {
    case ANT_JOB_QUEUED:
        return to == ANT_JOB_RUNNING || to == ANT_JOB_CANCELLED || to == ANT_JOB_EXPIRED;
    case ANT_JOB_RUNNING:
        /* back to queued: the daemon stopped or crashed while it ran */
        return to == ANT_JOB_READY || to == ANT_JOB_FAILED || to == ANT_JOB_CANCELLED ||
               to == ANT_JOB_QUEUED;
    case ANT_JOB_READY:
        return to == ANT_JOB_EXPIRED || to == ANT_JOB_CANCELLED;
    default:
        return false;
    }
}

bool ant_job_state_is_final(enum ant_job_state s)
{
    return s != ANT_JOB_QUEUED && s != ANT_JOB_RUNNING;
}

const char *ant_job_mode_name(enum ant_job_mode m)
{
    return m == ANT_JOB_REENCRYPT ? "reencrypt" : m == ANT_JOB_ENCRYPT ? "encrypt" : "decrypt";
}

int ant_job_mode_parse(const char *s, enum ant_job_mode *out)
{
    if (s != NULL && strcmp(s, "decrypt") == 0) {
        *out = ANT_JOB_DECRYPT;
    } else if (s != NULL && strcmp(s, "reencrypt") == 0) {
        *out = ANT_JOB_REENCRYPT;
    } else if (s != NULL && strcmp(s, "encrypt") == 0) {
        *out = ANT_JOB_ENCRYPT;
    } else {
        return -EINVAL;
    }
    return 0;
}

uint64_t ant_job_output_size(enum ant_job_mode m, uint64_t size)
{
    if (m == ANT_JOB_DECRYPT) {
        return size;
    }
    uint64_t segs = size / C4GH_SEGMENT + (size % C4GH_SEGMENT != 0);
    return size + segs * C4GH_SEGMENT_OVERHEAD + C4GH_HEADER_ALLOWANCE;
}

/* One job being run by a worker: what cancel and the status document need from outside. */
struct job_run {
    struct job_run *next;
    char id[ANT_JOB_ID_LEN + 1];
    atomic_bool cancel;  /* stop: a DELETE or a shutdown */
    /* a DELETE: the engine removes the output (cancel alone, a shutdown, has it keep what the
     * next start can use: its stop flag) */
    atomic_bool discard;
    bool user_cancel; /* under mu: a DELETE, not a shutdown */
    struct ant_stage_progress progress;
    atomic_uint_least64_t received; /* a remote job: bytes its pull received in this run */
    atomic_bool staging;            /* a remote job: the pull is over, the engine writes */
    uint64_t bytes_prev; /* bytes of files done before this run */
    int64_t t0_ns;
};

/* A peer's dataset being pulled by one of the runners. */
struct pulling {
    struct pulling *next;
    char key[ANT_NAME_MAX + ANT_ID_MAX + 2]; /* "<peer>:<dataset>" */
};

struct ant_jobs {
    struct ant_jobs_conf conf;
    struct pulling *pulling; /* under mu */
    struct ant_fetch_opts fetch;
    char site_id[ANT_NAME_MAX + 1];
    sqlite3 *db;
    pthread_mutex_t mu; /* the connection, runs, stopping */
    pthread_cond_t cv;  /* a job was queued, a run ended, or stop */
    struct ant_engine *engine;
    struct job_run *runs;
    /* under mu: remote jobs from the start of their pull to the end of their run (they read
     * archive/fed copies), and whether a cache eviction pass runs: never both at once */
    unsigned remote_running;
    bool evicting;
    /* under mu: remote jobs that ended with the pass skipped since the last pass, and whether
     * remote jobs about to start wait for the running ones to end (ANT_FED_CACHE_TRIM_EVERY) */
    unsigned trims_skipped;
    bool trim_drain;
    struct ant_jobs_fed_stats fed_stats; /* under mu */
    pthread_t *threads;
    unsigned nthreads;
    pthread_t purger;
    bool purger_started;
    bool started;
    bool stopping;
};

/* --- the connection --- */

static int sqlerr(int src)
{
    switch (src & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT:
        return (src == SQLITE_CONSTRAINT_FOREIGNKEY) ? -ENOENT : -EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    default:
        return -EIO;
    }
}

static int db_prepare(struct ant_jobs *j, const char *sql, sqlite3_stmt **s)
{
    int src = sqlite3_prepare_v2(j->db, sql, -1, s, NULL);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "jobs.sql", "%s", sqlite3_errmsg(j->db));
        return sqlerr(src);
    }
    return 0;
}

/* Steps a statement that returns no rows and finalizes it. */
static int db_done(sqlite3_stmt *s)
{
    int src = sqlite3_step(s);
    int rc = (src == SQLITE_DONE || src == SQLITE_ROW) ? 0 : sqlerr(src);
    sqlite3_finalize(s);
    return rc;
}

static int db_exec(struct ant_jobs *j, const char *sql)
{
    int src = sqlite3_exec(j->db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "jobs.sql", "%s", sqlite3_errmsg(j->db));
    }
    return sqlerr(src);
}

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t n)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, n, "%s", t != NULL ? (const char *)t : "");
}

static int db_open(int dirfd, const char *name, sqlite3 **out)
{
    char link[64], dir[4096], path[4200];
    sqlite3 *db = NULL;
    int rc = 0;
    if (dirfd == AT_FDCWD || name[0] == '/') {
        snprintf(path, sizeof(path), "%s", name);
    } else {
        /* SQLite takes a path: the folder's real path, read back from the fd */
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        ssize_t dl = readlink(link, dir, sizeof(dir) - 1);
        if (dl <= 0) {
            return dl < 0 ? -errno : -EINVAL;
        }
        dir[dl] = '\0';
        int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            return -ENAMETOOLONG;
        }
    }
    int src = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                             SQLITE_OPEN_NOFOLLOW, NULL);
    if (src != SQLITE_OK) {
        rc = src == SQLITE_CANTOPEN ? -ENOENT : sqlerr(src);
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, DB_BUSY_MS);
    /* synchronous=FULL: a job marked ready survives a power cut (issue 6) */
    src = sqlite3_exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = sqlerr(src);
        goto out;
    }
    /* schema step 8: resume marks */
    src = sqlite3_exec(db, "SELECT resume_bytes FROM stage_jobs, stage_job_files LIMIT 0", NULL,
                       NULL, NULL);
    if (src != SQLITE_OK) {
        ant_log(ANT_LOG_ERROR, "jobs.schema", "antenna.db has no stage job tables of step 8: %s",
                sqlite3_errmsg(db));
        rc = -ENOTSUP;
        goto out;
    }
    *out = db;
    db = NULL;
out:
    sqlite3_close(db);
    return rc;
}

/* --- reading jobs (under mu) --- */

/* a remote job has no local dataset: the peer's dataset id stands in its place */
#define JOB_COLS                                                                                \
    "id, tenant_id, principal_id, COALESCE(dataset_id, remote_dataset), mode, state, error,"   \
    " files_total, files_done, bytes_total, bytes_done, scratch_bytes, ttl_s, created, started," \
    " finished, expires, peer_id, remote_name, transfer_id, purpose"

static int job_from_row(sqlite3_stmt *s, struct ant_job_info *o)
{
    memset(o, 0, sizeof(*o));
    col_copy(s, 0, o->id, sizeof(o->id));
    col_copy(s, 1, o->tenant, sizeof(o->tenant));
    col_copy(s, 2, o->principal, sizeof(o->principal));
    col_copy(s, 3, o->dataset_id, sizeof(o->dataset_id));
    col_copy(s, 6, o->error, sizeof(o->error));
    if (ant_job_mode_parse((const char *)sqlite3_column_text(s, 4), &o->mode) < 0 ||
        ant_job_state_parse((const char *)sqlite3_column_text(s, 5), &o->state) < 0) {
        return -EBADMSG;
    }
    o->files_total = (uint64_t)sqlite3_column_int64(s, 7);
    o->files_done = (uint64_t)sqlite3_column_int64(s, 8);
    o->bytes_total = (uint64_t)sqlite3_column_int64(s, 9);
    o->bytes_done = (uint64_t)sqlite3_column_int64(s, 10);
    o->scratch_bytes = (uint64_t)sqlite3_column_int64(s, 11);
    o->ttl_s = (uint64_t)sqlite3_column_int64(s, 12);
    o->created = sqlite3_column_int64(s, 13);
    o->started = sqlite3_column_int64(s, 14);
    o->finished = sqlite3_column_int64(s, 15);
    o->expires = sqlite3_column_int64(s, 16);
    col_copy(s, 17, o->peer_id, sizeof(o->peer_id));
    col_copy(s, 18, o->remote_name, sizeof(o->remote_name));
    col_copy(s, 19, o->transfer_id, sizeof(o->transfer_id));
    col_copy(s, 20, o->purpose, sizeof(o->purpose));
    return 0;
}

static int job_get_locked(struct ant_jobs *j, const char *id, struct ant_job_info *out)
{
    sqlite3_stmt *s = NULL;
    int rc = db_prepare(j, "SELECT " JOB_COLS " FROM stage_jobs WHERE id = ?", &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    rc = src == SQLITE_ROW ? job_from_row(s, out) : src == SQLITE_DONE ? -ENOENT : sqlerr(src);
    sqlite3_finalize(s);
    return rc;
}

static struct job_run *run_find(struct ant_jobs *j, const char *id)
{
    for (struct job_run *r = j->runs; r != NULL; r = r->next) {
        if (strcmp(r->id, id) == 0) {
            return r;
        }
    }
    return NULL;
}

/* Moves a job from `from` to `to` (checked against the state machine) with the extra SET
 * clause `set` (a literal; ?3 may be bound by the caller through the int64 `v`). -ESTALE when
 * the job was no longer in `from`. */
static int job_move(struct ant_jobs *j, const char *id, enum ant_job_state from,
                    enum ant_job_state to, const char *set, int64_t v)
{
    char sql[512];
    sqlite3_stmt *s = NULL;
    if (!ant_job_transition_is_allowed(from, to)) {
        ant_log(ANT_LOG_ERROR, "jobs.bad_transition", "%s: %s -> %s refused", id,
                ant_job_state_name(from), ant_job_state_name(to));
        return -EINVAL;
    }
    snprintf(sql, sizeof(sql), "UPDATE stage_jobs SET state = ?4%s%s WHERE id = ?1 AND state = ?2",
             set != NULL ? ", " : "", set != NULL ? set : "");
    int rc = db_prepare(j, sql, &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, ant_job_state_name(from), -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 3) {
        sqlite3_bind_int64(s, 3, v);
    }
    sqlite3_bind_text(s, 4, ant_job_state_name(to), -1, SQLITE_STATIC);
    rc = db_done(s);
    if (rc == 0 && sqlite3_changes(j->db) == 0) {
        rc = -ESTALE;
    }
    if (rc == 0) {
        ant_log_kv(ANT_LOG_INFO, "jobs.state", ((const char *[]){"job_id", id, NULL}), "%s -> %s",
                   ant_job_state_name(from), ant_job_state_name(to));
    }
    return rc;
}

/* --- opening and closing --- */

/* A pull killed with its process leaves its temporary copies in archive/fed (staging/fetch.c
 * names them ".fetch-..."); the next pull starts those files over under new names. At start-up
 * the ones nobody has written to for FETCH_STALE_S are removed: a live pull writes within
 * seconds, or times out after 30 s without progress.
 * A cached copy ("fc_<id>.c4gh") is data while a fed_cache row names it. When a peer's file
 * changes, the next pull keeps the new copy under a new name and the row moves to it: the old
 * copy is then named by no row and nobody can find it again. Those are removed at start-up
 * too, once as old as FETCH_STALE_S (a pull renames its copy into place just before it writes
 * the row, possibly from another process such as `antenna admin peer pull`). If the rows
 * cannot be read, no cached copy is touched. */
#define FETCH_STALE_S 600

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every storage name of fed_cache, sorted, in *out (caller frees each and the array). */
static int cached_storage_names(struct ant_jobs *j, char ***out, size_t *n_out)
{
    sqlite3_stmt *s = NULL;
    char **v = NULL;
    size_t n = 0, cap = 0;
    int src = sqlite3_prepare_v2(j->db, "SELECT storage FROM fed_cache", -1, &s, NULL);
    int rc = sqlerr(src);
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (t == NULL) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nv = realloc(v, ncap * sizeof(*v));
            if (nv == NULL) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[n] = strdup((const char *)t);
        rc = v[n] == NULL ? -ENOMEM : 0;
        n += v[n] != NULL;
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sqlerr(src);
    }
    sqlite3_finalize(s);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            free(v[i]);
        }
        free(v);
        return rc;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp_str);
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* "fc_<id>.c4gh" named by no row of fed_cache (see above) */
static bool orphan_copy(const char *name, char *const *rows, size_t nrows)
{
    size_t len = strlen(name);
    char storage[NAME_MAX + 1];
    if (rows == NULL || strncmp(name, "fc_", 3) != 0 || len <= 5 || len > NAME_MAX ||
        strcmp(name + len - 5, ".c4gh") != 0) {
        return false;
    }
    memcpy(storage, name, len - 5);
    storage[len - 5] = '\0';
    const char *key = storage;
    return bsearch(&key, rows, nrows, sizeof(*rows), cmp_str) == NULL;
}

static void sweep_fetch_leftovers(struct ant_jobs *j)
{
    int fd = openat(j->conf.archive_fd, "fed", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    unsigned n = 0, orphans = 0;
    char **rows = NULL;
    size_t nrows = 0;
    if (dir == NULL) {
        ant_close(fd);
        return;
    }
    if (cached_storage_names(j, &rows, &nrows) < 0) {
        ant_log(ANT_LOG_WARN, "jobs.fed_cache", "cannot read the cache rows: no cached copy swept");
        rows = NULL;
        nrows = 0;
    } else if (rows == NULL) {
        rows = calloc(1, sizeof(*rows)); /* no row at all: every old copy is unnamed */
    }
    time_t now = time(NULL);
    while ((de = readdir(dir)) != NULL) {
        struct stat sb;
        bool partial = strncmp(de->d_name, ".fetch-", 7) == 0;
        bool orphan = !partial && orphan_copy(de->d_name, rows, nrows);
        if ((!partial && !orphan) || fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(sb.st_mode) || now - sb.st_mtime < FETCH_STALE_S) {
            continue;
        }
        if (unlinkat(fd, de->d_name, 0) == 0) {
            n += partial;
            orphans += orphan;
        }
    }
    closedir(dir); /* closes fd */
    for (size_t i = 0; i < nrows; i++) {
        free(rows[i]);
    }
    free(rows);
    if (n > 0) {
        ant_log(ANT_LOG_INFO, "jobs.fetch_leftovers",
                "removed %u stale partial copies from archive/fed", n);
    }
    if (orphans > 0) {
        ant_log(ANT_LOG_INFO, "jobs.fed_cache_orphans",
                "removed %u cached copies no cache row names any more from archive/fed", orphans);
    }
}

static void fed_step(struct ant_jobs *j, const char *job_id, enum ant_jobs_fed_step step)
{
    if (j->conf.test_fed_step != NULL) {
        j->conf.test_fed_step(j->conf.test_arg, job_id, step);
    }
}

/* Under mu, at open or when a remote job ends (remote_running already counts it out): may the
 * caller run an eviction pass (fed_cache_trim)? Only while no remote job runs: one may be
 * reading any copy, even one it found before the pass (the rows' grace period covers only
 * lookups since the cut-off). If so, the pass is claimed (evicting). If not, it is skipped, and
 * the last remote job to end runs it; once ANT_FED_CACHE_TRIM_EVERY were skipped in a row,
 * remote jobs about to start are held back (trim_drain, run_job) so that one does end last. */
static bool fed_cache_trim_claim_locked(struct ant_jobs *j)
{
    if (j->conf.fed_cache_max == 0 || j->conf.pool == NULL) {
        return false;
    }
    if (j->remote_running > 0 || j->evicting) {
        j->trims_skipped++;
        if (j->trims_skipped >= ANT_FED_CACHE_TRIM_EVERY && !j->trim_drain) {
            j->trim_drain = true;
            ant_log(ANT_LOG_INFO, "fed.cache_drain",
                    "%u remote jobs ended while others ran: new remote jobs wait until the %u "
                    "running end and archive/fed is trimmed",
                    j->trims_skipped, j->remote_running);
        }
        return false;
    }
    j->evicting = true;
    return true;
}

/* Trims archive/fed to conf.fed_cache_max (ant_fed_cache_evict) in a pass claimed by
 * fed_cache_trim_claim_locked, then lets held remote jobs go on. `job_id`: the job that just
 * ended, for the log; NULL at start-up. */
static void fed_cache_trim(struct ant_jobs *j, const char *job_id)
{
    struct ant_fed_evict_stats es;
    const char *kv[] = {"job_id", job_id, NULL};
    struct ant_store *st = ant_store_pool_acquire(j->conf.pool);
    int rc = ant_fed_cache_evict(st, j->conf.archive_fd, j->conf.fed_cache_max, ant_now_unix(),
                                 ANT_FED_CACHE_GRACE_S, &es);
    ant_store_pool_release(j->conf.pool, st);
    fed_step(j, job_id, ANT_JOBS_FED_TRIMMED); /* before any held job goes on */
    pthread_mutex_lock(&j->mu);
    j->evicting = false;
    j->trim_drain = false; /* also after a failed pass: held jobs must not wait for ever */
    j->trims_skipped = 0;
    if (rc == 0) {
        j->fed_stats.evicted_files += es.evicted_files;
        j->fed_stats.evicted_bytes += es.evicted_bytes;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        ant_log_kv(ANT_LOG_ERROR, "fed.cache_evict", job_id != NULL ? kv : NULL,
                   "cannot trim archive/fed to cache_max: %s", strerror(-rc));
        return;
    }
    if (es.evicted_files > 0) {
        ant_log_kv(ANT_LOG_INFO, "fed.cache_evicted", job_id != NULL ? kv : NULL,
                   "evicted %llu cached copies (%llu bytes) from archive/fed, least recently "
                   "used first: %llu bytes cached, cache_max %llu",
                   (unsigned long long)es.evicted_files, (unsigned long long)es.evicted_bytes,
                   (unsigned long long)es.total_after, (unsigned long long)j->conf.fed_cache_max);
    }
    if (es.total_after > j->conf.fed_cache_max) {
        ant_log_kv(ANT_LOG_WARN, "fed.cache_over_limit", job_id != NULL ? kv : NULL,
                   "archive/fed holds %llu bytes, over cache_max %llu: the rest was used within "
                   "the last %d s",
                   (unsigned long long)es.total_after, (unsigned long long)j->conf.fed_cache_max,
                   ANT_FED_CACHE_GRACE_S);
    }
}

void ant_jobs_fed_stats(struct ant_jobs *j, struct ant_jobs_fed_stats *out)
{
    pthread_mutex_lock(&j->mu);
    *out = j->fed_stats;
    pthread_mutex_unlock(&j->mu);
}

int ant_jobs_open(const struct ant_jobs_conf *c, struct ant_jobs **out)
{
    struct ant_jobs *j = NULL;
    struct ant_engine_opts eo;
    int rc;
    if (c == NULL || c->archive_fd < 0 || c->scratch_fd < 0 ||
        (c->kx == NULL && !c->test_raw) || c->audit == NULL) {
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return -ENOMEM;
    }
    j->conf = *c;
    if (c->fetch != NULL) {
        j->fetch = *c->fetch;
    }
    j->conf.fetch = &j->fetch;
    snprintf(j->site_id, sizeof(j->site_id), "%s", c->site_id != NULL ? c->site_id : "");
    j->conf.site_id = j->site_id;
    j->conf.engine = NULL;
    if (j->conf.workers == 0) {
        j->conf.workers = 2;
    }
    if (j->conf.default_ttl_s == 0) {
        j->conf.default_ttl_s = 7 * 86400;
    }
    if (j->conf.purge_interval_s == 0) {
        j->conf.purge_interval_s = 10;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    rc = db_open(c->dirfd, c->db_name != NULL ? c->db_name : "antenna.db", &j->db);
    if (rc < 0) {
        goto out;
    }
    if (c->engine != NULL) {
        eo = *c->engine;
    } else {
        ant_engine_opts_init(&eo);
    }
    rc = ant_engine_new(&eo, &j->engine);
    if (rc < 0) {
        goto out;
    }
    /* A job left running was interrupted (stop or crash): it resumes from its done files. */
    rc = db_exec(j, "UPDATE stage_jobs SET state = 'queued' WHERE state = 'running'");
    if (rc < 0) {
        goto out;
    }
    int requeued = sqlite3_changes(j->db);
    if (requeued > 0) {
        ant_log(ANT_LOG_INFO, "jobs.resume", "%d interrupted job(s) queued to resume", requeued);
    }
    sweep_fetch_leftovers(j);
    pthread_mutex_lock(&j->mu);
    bool trim = fed_cache_trim_claim_locked(j);
    pthread_mutex_unlock(&j->mu);
    if (trim) {
        fed_cache_trim(j, NULL);
    }
    *out = j;
    j = NULL;
out:
    ant_jobs_close(j);
    return rc;
}

const char *ant_jobs_backend(const struct ant_jobs *j)
{
    return ant_engine_backend(j->engine);
}

static void *worker_main(void *arg);
static void *purger_main(void *arg);

int ant_jobs_start(struct ant_jobs *j)
{
    int rc = 0;
    if (j->started) {
        return -EALREADY;
    }
    j->threads = calloc(j->conf.workers, sizeof(*j->threads));
    if (j->threads == NULL) {
        return -ENOMEM;
    }
    j->started = true;
    j->stopping = false;
    for (unsigned i = 0; i < j->conf.workers; i++) {
        int e = pthread_create(&j->threads[i], NULL, worker_main, j);
        if (e != 0) {
            rc = -e;
            goto out;
        }
        j->nthreads++;
    }
    int e = pthread_create(&j->purger, NULL, purger_main, j);
    if (e != 0) {
        rc = -e;
        goto out;
    }
    j->purger_started = true;
    ant_log(ANT_LOG_INFO, "jobs.started", "%u stage worker(s), engine %s, purge every %us",
            j->nthreads, ant_engine_backend(j->engine), j->conf.purge_interval_s);
out:
    if (rc < 0) {
        ant_jobs_stop(j);
    }
    return rc;
}

void ant_jobs_stop(struct ant_jobs *j)
{
    if (j == NULL || !j->started) {
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    for (struct job_run *r = j->runs; r != NULL; r = r->next) {
        atomic_store(&r->cancel, true);
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    for (unsigned i = 0; i < j->nthreads; i++) {
        pthread_join(j->threads[i], NULL);
    }
    if (j->purger_started) {
        pthread_join(j->purger, NULL);
    }
    free(j->threads);
    j->threads = NULL;
    j->nthreads = 0;
    j->purger_started = false;
    j->started = false;
}

bool ant_jobs_is_stopping(struct ant_jobs *j)
{
    pthread_mutex_lock(&j->mu);
    bool stopping = j->stopping;
    pthread_mutex_unlock(&j->mu);
    return stopping;
}

void ant_jobs_close(struct ant_jobs *j)
{
    if (j == NULL) {
        return;
    }
    ant_jobs_stop(j);
    ant_engine_free(j->engine);
    sqlite3_close(j->db);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* --- quota --- */

static int quota_get_locked(struct ant_jobs *j, const char *tenant, uint64_t *quota,
                            uint64_t *used, uint64_t *njobs)
{
    sqlite3_stmt *s = NULL;
    int rc = db_prepare(j,
                        "SELECT (SELECT bytes FROM scratch_quotas WHERE tenant_id = ?1),"
                        " (SELECT COALESCE(SUM(scratch_bytes), 0) FROM stage_jobs"
                        "  WHERE tenant_id = ?1 AND state IN ('queued','running','ready')),"
                        " (SELECT COUNT(*) FROM stage_jobs WHERE tenant_id = ?1 AND"
                        "  (state IN ('queued','running') OR (state = 'ready' AND"
                        "   mode != 'encrypt')))",
                        &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, tenant, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *quota = sqlite3_column_type(s, 0) == SQLITE_NULL ? j->conf.default_quota
                                                           : (uint64_t)sqlite3_column_int64(s, 0);
        *used = (uint64_t)sqlite3_column_int64(s, 1);
        if (njobs != NULL) {
            *njobs = (uint64_t)sqlite3_column_int64(s, 2);
        }
    } else {
        rc = sqlerr(src);
    }
    sqlite3_finalize(s);
    return rc;
}

int ant_jobs_quota_get(struct ant_jobs *j, const char *tenant, uint64_t *quota, uint64_t *used)
{
    pthread_mutex_lock(&j->mu);
    int rc = quota_get_locked(j, tenant, quota, used, NULL);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int ant_jobs_quota_set(struct ant_jobs *j, const char *tenant, uint64_t bytes)
{
    sqlite3_stmt *s = NULL;
    if (tenant == NULL || !ant_name_is_valid(tenant) || bytes > INT64_MAX) {
        return -EINVAL;
    }
    pthread_mutex_lock(&j->mu);
    int rc = db_prepare(j,
                        "INSERT INTO scratch_quotas(tenant_id, bytes) VALUES(?1, ?2)"
                        " ON CONFLICT(tenant_id) DO UPDATE SET bytes = ?2",
                        &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)bytes);
        rc = db_done(s);
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* --- admission --- */

struct pick {
    const char *file_id, *storage_id, *path;
    uint64_t size;
    uint8_t sha[32];
};

static bool glob_match(const struct ant_job_request *rq, const char *path)
{
    if (rq->nglobs == 0) {
        return true;
    }
    for (unsigned i = 0; i < rq->nglobs; i++) {
        if (fnmatch(rq->globs[i], path, 0) == 0) {
            return true;
        }
    }
    return false;
}

static int check_request(const struct ant_jobs *j, const struct ant_job_request *rq,
                         uint64_t *ttl, struct ant_diag *d)
{
    if (rq->who == NULL || rq->who->tenant[0] == '\0' || !ant_name_is_valid(rq->who->tenant)) {
        ant_diag_set(d, "only a member of a tenant can stage: scratch belongs to a tenant");
        return -EINVAL;
    }
    if (rq->dataset_id == NULL || rq->dataset_id[0] == '\0') {
        ant_diag_set(d, "a dataset is required");
        return -EINVAL;
    }
    if (rq->mode == ANT_JOB_REENCRYPT && rq->recipient_pk == NULL) {
        ant_diag_set(d, "mode reencrypt needs a recipient public key");
        return -EINVAL;
    }
    if (rq->mode == ANT_JOB_DECRYPT && rq->recipient_pk != NULL) {
        ant_diag_set(d, "a recipient public key is only for mode reencrypt");
        return -EINVAL;
    }
    if (rq->mode != ANT_JOB_DECRYPT && rq->mode != ANT_JOB_REENCRYPT) {
        ant_diag_set(d, "mode must be decrypt or reencrypt");
        return -EINVAL;
    }
    *ttl = rq->ttl_s != 0 ? rq->ttl_s : j->conf.default_ttl_s;
    if (*ttl < ANT_JOB_TTL_MIN || *ttl > ANT_JOB_TTL_MAX) {
        ant_diag_set(d, "ttl must be between %d s and %d days", ANT_JOB_TTL_MIN,
                     ANT_JOB_TTL_MAX / 86400);
        return -EINVAL;
    }
    if (rq->nglobs > ANT_JOB_GLOBS_MAX) {
        ant_diag_set(d, "at most %d path patterns", ANT_JOB_GLOBS_MAX);
        return -EINVAL;
    }
    for (unsigned i = 0; i < rq->nglobs; i++) {
        size_t n = rq->globs[i] != NULL ? strnlen(rq->globs[i], ANT_JOB_GLOB_MAX + 1) : 0;
        if (n == 0 || n > ANT_JOB_GLOB_MAX) {
            ant_diag_set(d, "path pattern %u is empty or longer than %d bytes", i + 1,
                         ANT_JOB_GLOB_MAX);
            return -EINVAL;
        }
    }
    return 0;
}

/* What a remote job records instead of a local dataset. */
struct remote_src {
    const char *peer_id, *dataset, *name, *transfer, *purpose;
};

static int insert_job(struct ant_jobs *j, const struct ant_job_request *rq, const char *id,
                      const struct pick *picks, size_t n, uint64_t bytes, uint64_t scratch,
                      uint64_t ttl, int64_t now, const struct remote_src *rs)
{
    sqlite3_stmt *s = NULL;
    json_t *globs = json_array();
    char *gtext = NULL;
    int rc = -ENOMEM;
    for (unsigned i = 0; globs != NULL && i < rq->nglobs; i++) {
        json_array_append_new(globs, json_string(rq->globs[i]));
    }
    gtext = globs != NULL ? json_dumps(globs, JSON_COMPACT) : NULL;
    if (gtext == NULL) {
        goto out;
    }
    rc = db_prepare(j,
                    "INSERT INTO stage_jobs(id, tenant_id, principal_id, dataset_id, mode,"
                    " recipient_pk, paths, state, files_total, bytes_total, scratch_bytes, ttl_s,"
                    " created, expires, peer_id, remote_dataset, remote_name, transfer_id,"
                    " purpose) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9,"
                    " ?10, ?11, ?12, ?12 + ?11, ?13, ?14, ?15, ?16, ?17)",
                    &s);
    if (rc < 0) {
        goto out;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, rq->who->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, rq->who->id, -1, SQLITE_STATIC);
    if (rs == NULL) {
        sqlite3_bind_text(s, 4, rq->dataset_id, -1, SQLITE_STATIC);
        /* kept for a local job too: its job token's reads are decided again with it */
        if (rq->purpose != NULL && rq->purpose[0] != '\0') {
            sqlite3_bind_text(s, 17, rq->purpose, -1, SQLITE_STATIC);
        }
    } else {
        sqlite3_bind_text(s, 13, rs->peer_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 14, rs->dataset, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 15, rs->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 16, rs->transfer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 17, rs->purpose, -1, SQLITE_STATIC);
    }
    sqlite3_bind_text(s, 5, ant_job_mode_name(rq->mode), -1, SQLITE_STATIC);
    if (rq->recipient_pk != NULL) {
        sqlite3_bind_blob(s, 6, rq->recipient_pk, ANT_KEY_LEN, SQLITE_STATIC);
    }
    sqlite3_bind_text(s, 7, gtext, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, (int64_t)n);
    sqlite3_bind_int64(s, 9, (int64_t)bytes);
    sqlite3_bind_int64(s, 10, (int64_t)scratch);
    sqlite3_bind_int64(s, 11, (int64_t)ttl);
    sqlite3_bind_int64(s, 12, now);
    rc = db_done(s);
    s = NULL;
    if (rc < 0) {
        goto out;
    }
    rc = db_prepare(j,
                    "INSERT INTO stage_job_files(job_id, idx, file_id, storage_id, path, size,"
                    " sha256) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &s);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, picks[i].file_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, picks[i].storage_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, picks[i].path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, (int64_t)picks[i].size);
        sqlite3_bind_blob(s, 7, picks[i].sha, 32, SQLITE_STATIC);
        int src = sqlite3_step(s);
        rc = src == SQLITE_DONE ? 0 : sqlerr(src);
    }
out:
    sqlite3_finalize(s);
    free(gtext);
    json_decref(globs);
    return rc;
}

static void fmt_bytes(uint64_t v, char out[32])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double x = (double)v;
    unsigned u = 0;
    while (x >= 1024.0 && u + 1 < ANT_ARRAY_LEN(units)) {
        x /= 1024.0;
        u++;
    }
    if (u == 0) {
        snprintf(out, 32, "%llu B", (unsigned long long)v);
    } else {
        snprintf(out, 32, "%.1f %s", x, units[u]);
    }
}

/* Checks the tenant's quota and records the job, in one transaction: two admissions cannot
 * both take the last bytes. */
static int admit(struct ant_jobs *j, const struct ant_job_request *rq, const struct pick *picks,
                 size_t n, uint64_t bytes, uint64_t scratch, uint64_t ttl,
                 const struct remote_src *rs, char id_out[ANT_JOB_ID_LEN + 1], struct ant_diag *d)
{
    int64_t now = rq->now != 0 ? rq->now : ant_now_unix();
    uint64_t quota = 0, used = 0, njobs = 0;
    char id[ANT_JOB_ID_LEN + 1];
    bool in_tx = false;
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(id, "job_", 4);
    ant_hex_encode(rnd, sizeof(rnd), id + 4);

    pthread_mutex_lock(&j->mu);
    int rc = db_exec(j, "BEGIN IMMEDIATE");
    if (rc < 0) {
        goto out;
    }
    in_tx = true;
    rc = quota_get_locked(j, rq->who->tenant, &quota, &used, &njobs);
    if (rc < 0) {
        goto out;
    }
    /* The byte quota does not bound the count: many small jobs each hold their file list in
     * the jobs table, a place in the queue and a folder in the shared scratch. */
    if (j->conf.max_jobs != 0 && njobs >= j->conf.max_jobs) {
        ant_diag_set(d,
                     "tenant %s has %llu stage jobs queued, running or ready, the most it may "
                     "have at once ([staging] max_jobs); cancel finished jobs (DELETE "
                     "/v1/stage/{id}) or wait for them to expire",
                     rq->who->tenant, (unsigned long long)njobs);
        rc = -EDQUOT;
        goto out;
    }
    if (quota != 0 && (scratch > quota || used > quota - scratch)) {
        char need[32], inuse[32], lim[32];
        fmt_bytes(scratch, need);
        fmt_bytes(used, inuse);
        fmt_bytes(quota, lim);
        ant_diag_set(d,
                     "scratch quota of tenant %s exceeded: this job needs %s, %s of %s are in "
                     "use; cancel finished jobs (DELETE /v1/stage/{id}), stage fewer paths, or "
                     "ask an admin for more",
                     rq->who->tenant, need, inuse, lim);
        rc = -EDQUOT;
        goto out;
    }
    rc = insert_job(j, rq, id, picks, n, bytes, scratch, ttl, now, rs);
    if (rc < 0) {
        goto out;
    }
    rc = db_exec(j, "COMMIT");
    if (rc < 0) {
        goto out;
    }
    in_tx = false;
    pthread_cond_broadcast(&j->cv);
    memcpy(id_out, id, sizeof(id));
    if (rs != NULL) {
        ant_log_kv(ANT_LOG_INFO, "jobs.queued", ((const char *[]){"job_id", id, NULL}),
                   "%zu file(s), %llu bytes of %s:%s (transfer %s), %s, for %s@%s", n,
                   (unsigned long long)bytes, rs->peer_id, rs->dataset, rs->transfer,
                   ant_job_mode_name(rq->mode), rq->who->id, rq->who->tenant);
    } else {
        ant_log_kv(ANT_LOG_INFO, "jobs.queued", ((const char *[]){"job_id", id, NULL}),
                   "%zu file(s), %llu bytes of %s, %s, for %s@%s", n, (unsigned long long)bytes,
                   rq->dataset_id, ant_job_mode_name(rq->mode), rq->who->id, rq->who->tenant);
    }
out:
    if (in_tx) {
        (void)db_exec(j, "ROLLBACK");
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* Adds one file to the admission list; -E2BIG past ANT_JOB_FILES_MAX. */
static int pick_add(const struct ant_job_request *rq, struct pick *p, size_t *n, uint64_t *bytes,
                    uint64_t *scratch, struct ant_diag *d)
{
    *bytes += p->size;
    *scratch += ant_job_output_size(rq->mode, p->size);
    if (++*n > ANT_JOB_FILES_MAX) {
        ant_diag_set(d, "more than %d files match: stage the dataset in parts (paths)",
                     ANT_JOB_FILES_MAX);
        return -E2BIG;
    }
    return 0;
}

static int no_match(size_t total, const char *what, struct ant_diag *d)
{
    if (total == 0) {
        ant_diag_set(d, "dataset %s has no files to stage", what);
    } else {
        ant_diag_set(d, "none of the %zu files of dataset %s matches the given paths", total,
                     what);
    }
    return -ENOENT;
}

/* The picks are written as one folder tree under the job: "a" and "a/b" cannot both be. The
 * catalog refuses such a pair (ant_store_file_add), but a catalog written before it did may
 * hold one: refused here whole rather than half-way through the copy. -EINVAL with diag. */
static int picks_tree_check(const struct pick *picks, size_t n, const char *ds,
                            struct ant_diag *d)
{
    const char **paths = calloc(n > 0 ? n : 1, sizeof(*paths));
    size_t a = 0, b = 0;
    if (paths == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        paths[i] = picks[i].path;
    }
    int rc = ant_paths_find_conflict(paths, n, &a, &b);
    if (rc == -EEXIST) {
        ant_diag_set(d, "dataset %s holds both %s and %s, which one folder tree cannot: stage "
                     "it in parts (paths) that leave one of them out", ds, paths[a], paths[b]);
        rc = -EINVAL;
    }
    free(paths);
    return rc;
}

int ant_jobs_submit(struct ant_jobs *j, struct ant_store *st, const struct ant_job_request *rq,
                    char id_out[ANT_JOB_ID_LEN + 1], struct ant_diag *d)
{
    json_t *files = NULL;
    struct pick *picks = NULL;
    size_t n = 0;
    uint64_t ttl = 0, bytes = 0, scratch = 0;
    int rc = check_request(j, rq, &ttl, d);
    if (rc < 0) {
        goto out;
    }
    if (rq->peer_id != NULL) {
        ant_diag_set(d, "a peer's dataset is staged with ant_jobs_submit_remote");
        rc = -EINVAL;
        goto out;
    }
    rc = ant_store_file_list(st, rq->dataset_id, &files);
    if (rc < 0) {
        goto out;
    }
    size_t total = json_array_size(files);
    picks = calloc(total > 0 ? total : 1, sizeof(*picks));
    if (picks == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < total; i++) {
        json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        /* what the engine checks (engine.h): a decrypted copy against the plaintext's digest,
         * a re-encrypted one against its body's, which the new header does not change */
        const char *sha = json_string_value(
            json_object_get(f, rq->mode == ANT_JOB_DECRYPT ? "sha256" : "sha256_c4gh"));
        struct pick *p = &picks[n];
        if (path == NULL || sha == NULL || !glob_match(rq, path)) {
            continue;
        }
        p->path = path;
        p->file_id = json_string_value(json_object_get(f, "id"));
        p->storage_id = json_string_value(json_object_get(f, "storage_id"));
        json_int_t size = json_integer_value(json_object_get(f, "size"));
        if (p->file_id == NULL || p->storage_id == NULL || size < 0 ||
            ant_hex_decode(ant_bytes_str(sha), p->sha, sizeof(p->sha)) < 0) {
            rc = -EBADMSG; /* the catalog row is not what policy/ writes */
            goto out;
        }
        p->size = (uint64_t)size;
        rc = pick_add(rq, p, &n, &bytes, &scratch, d);
        if (rc < 0) {
            goto out;
        }
    }
    if (n == 0) {
        rc = no_match(total, rq->dataset_id, d);
        goto out;
    }
    rc = picks_tree_check(picks, n, rq->dataset_id, d);
    if (rc < 0) {
        goto out;
    }
    rc = admit(j, rq, picks, n, bytes, scratch, ttl, NULL, id_out, d);
out:
    free(picks);
    json_decref(files);
    return rc;
}

int ant_jobs_submit_remote(struct ant_jobs *j, struct ant_store *st,
                           const struct ant_job_request *rq, char id_out[ANT_JOB_ID_LEN + 1],
                           char transfer_out[65], struct ant_diag *d)
{
    struct ant_fetch_manifest m;
    struct ant_peer peer;
    struct pick *picks = NULL;
    size_t n = 0;
    uint64_t ttl = 0, bytes = 0, scratch = 0;
    char transfer[65];
    memset(&m, 0, sizeof(m));
    transfer_out[0] = '\0';
    int rc = check_request(j, rq, &ttl, d);
    if (rc < 0) {
        goto out;
    }
    if (j->conf.keys == NULL || j->conf.pool == NULL) {
        ant_diag_set(d, "staging from peers is not enabled on this site");
        rc = -ENOTSUP;
        goto out;
    }
    /* the dataset id goes into the peer's URL: a plain name, no '/' or dot segments */
    if (rq->peer_id == NULL || !ant_name_is_valid(rq->peer_id) ||
        !ant_name_is_valid(rq->dataset_id) || strlen(rq->dataset_id) > ANT_ID_MAX) {
        ant_diag_set(d, "a site id and the site's dataset id are required (letters, digits, "
                        "'.', '_', '-')");
        rc = -EINVAL;
        goto out;
    }
    if (rq->purpose == NULL || rq->purpose[0] == '\0' ||
        strlen(rq->purpose) > ANT_DUO_CODE_MAX) {
        ant_diag_set(d, "staging from a peer needs purpose (a DUO code such as DUO:0000042): "
                        "the serving site checks it against the dataset's data-use conditions");
        rc = -EINVAL;
        goto out;
    }
    rc = ant_peer_get(st, rq->peer_id, &peer);
    if (rc == -ENOENT) {
        ant_diag_set(d, "%s is not a peer of this site: an admin adds it with antenna admin "
                        "peer add",
                     rq->peer_id);
        rc = -ENXIO;
    }
    if (rc < 0) {
        goto out;
    }
    uint8_t rnd[12];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(transfer, "tr_", 3);
    ant_hex_encode(rnd, sizeof(rnd), transfer + 3);
    memcpy(transfer_out, transfer, sizeof(transfer));
    struct ant_fed_pull_req q = {
        .st = st,
        .keys = j->conf.keys,
        .self_id = j->site_id,
        .peer_id = rq->peer_id,
        .dataset = rq->dataset_id,
        .principal = rq->who->id,
        .tenant = rq->who->tenant,
        .purpose = rq->purpose,
        .transfer_id = transfer,
        .audit = j->conf.audit, /* a witness conflict seen here is audited too */
    };
    rc = ant_fed_manifest(&q, &m, d);
    if (rc < 0) {
        goto out;
    }
    picks = calloc(m.nfiles > 0 ? m.nfiles : 1, sizeof(*picks));
    if (picks == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m.nfiles; i++) {
        const struct ant_fetch_file *f = &m.files[i];
        struct pick *p = &picks[n];
        if (!glob_match(rq, f->path)) {
            continue;
        }
        /* the storage is known once pulled: the runner fills it in */
        p->path = f->path;
        p->file_id = "";
        p->storage_id = "";
        p->size = f->size;
        memcpy(p->sha, rq->mode == ANT_JOB_DECRYPT ? f->sha256 : f->sha256_c4gh, sizeof(p->sha));
        rc = pick_add(rq, p, &n, &bytes, &scratch, d);
        if (rc < 0) {
            goto out;
        }
    }
    if (n == 0) {
        char what[2 * ANT_NAME_MAX + 4];
        snprintf(what, sizeof(what), "%s:%s", rq->peer_id, rq->dataset_id);
        rc = no_match(m.nfiles, what, d);
        goto out;
    }
    struct remote_src rs = {
        .peer_id = rq->peer_id,
        .dataset = m.dataset_id[0] ? m.dataset_id : rq->dataset_id,
        .name = m.dataset_name,
        .transfer = transfer,
        .purpose = rq->purpose,
    };
    rc = admit(j, rq, picks, n, bytes, scratch, ttl, &rs, id_out, d);
out:
    free(picks);
    ant_fetch_manifest_fini(&m);
    return rc;
}

static int tenant_dir(struct ant_jobs *j, const char *tenant, bool create, int *out);

/* --- stage-out admission --- */

struct walk {
    struct pick *picks;
    char **names; /* owned logical paths */
    size_t n, cap;
    uint64_t bytes;
    struct ant_diag *d;
};

/* Lists the regular files beneath dirfd (whose logical path is `prefix`), refusing symlinks,
 * files with more than one hard link and names the catalog would refuse. */
static int walk_dir(struct walk *w, int dirfd, const char *prefix, unsigned depth)
{
    DIR *dir = NULL;
    int rc = 0;
    if (depth > ANT_STAGE_DEPTH_MAX) {
        ant_diag_set(w->d, "%s: folders nest too deep", prefix);
        return -EINVAL;
    }
    int fd = dup(dirfd);
    dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (dir == NULL) {
        rc = -errno;
        ant_close(fd);
        return rc;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        char rel[ANT_PATH_MAX + 2];
        struct stat sb;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        int n = snprintf(rel, sizeof(rel), "%s%s%s", prefix, prefix[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n > ANT_PATH_MAX || !ant_path_is_valid(rel)) {
            ant_diag_set(w->d, "%s%s%.64s: not a name a dataset can hold", prefix,
                         prefix[0] ? "/" : "", de->d_name);
            rc = -EINVAL;
            break;
        }
        if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -errno;
            break;
        }
        if (S_ISLNK(sb.st_mode)) {
            ant_diag_set(w->d, "%s is a symbolic link: copy the file itself into the folder", rel);
            rc = -EINVAL;
        } else if (S_ISREG(sb.st_mode) && sb.st_nlink != 1) {
            /* another name of the file may be anywhere on the filesystem, the site's own files
             * included: antenna reads only what the folder alone names */
            ant_diag_set(w->d, "%s has %lu hard links: copy the file itself into the folder", rel,
                         (unsigned long)sb.st_nlink);
            rc = -EINVAL;
        } else if (S_ISDIR(sb.st_mode)) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            rc = sub < 0 ? -errno : walk_dir(w, sub, rel, depth + 1);
            ant_close(sub);
        } else if (S_ISREG(sb.st_mode)) {
            if (w->n == ANT_JOB_FILES_MAX) {
                ant_diag_set(w->d, "more than %d files: stage out in parts", ANT_JOB_FILES_MAX);
                rc = -E2BIG;
                break;
            }
            if (w->n == w->cap) {
                size_t nc = w->cap ? w->cap * 2 : 64;
                struct pick *p = realloc(w->picks, nc * sizeof(*p));
                char **nm = p != NULL ? realloc(w->names, nc * sizeof(*nm)) : NULL;
                if (p != NULL) {
                    w->picks = p;
                }
                if (nm == NULL) {
                    rc = -ENOMEM;
                    break;
                }
                w->names = nm;
                w->cap = nc;
            }
            w->names[w->n] = strdup(rel);
            if (w->names[w->n] == NULL) {
                rc = -ENOMEM;
                break;
            }
            memset(&w->picks[w->n], 0, sizeof(w->picks[w->n]));
            w->picks[w->n].path = w->names[w->n];
            w->picks[w->n].file_id = "";
            w->picks[w->n].storage_id = "";
            w->picks[w->n].size = (uint64_t)sb.st_size;
            w->bytes += (uint64_t)sb.st_size;
            w->n++;
        }
        /* sockets, fifos and devices are not data: skipped */
    }
    closedir(dir);
    return rc;
}

int ant_jobs_submit_out(struct ant_jobs *j, struct ant_store *st,
                        const struct ant_job_out_request *rq, char id_out[ANT_JOB_ID_LEN + 1],
                        struct ant_diag *d)
{
    struct walk w = {.d = d};
    int tfd = -1, sfd = -1;
    int64_t now = rq->now != 0 ? rq->now : ant_now_unix();
    char id[ANT_JOB_ID_LEN + 1];
    bool locked = false, in_tx = false;
    int rc = 0;
    if (j->conf.pool == NULL) {
        ant_diag_set(d, "stage-out is not enabled on this site");
        return -ENOTSUP;
    }
    if (rq->who == NULL || rq->who->tenant[0] == '\0' || !ant_name_is_valid(rq->who->tenant)) {
        ant_diag_set(d, "only a member of a tenant has scratch to stage out from");
        return -EINVAL;
    }
    if (rq->dataset_id == NULL || rq->dataset_id[0] == '\0' || rq->source == NULL ||
        ant_stage_path_check(ant_bytes_str(rq->source)) < 0) {
        ant_diag_set(d, "path must be a folder relative to your tenant's scratch (no '..')");
        return -EINVAL;
    }
    rc = tenant_dir(j, rq->who->tenant, false, &tfd);
    if (rc == 0) {
        sfd = ant_stage_openat(tfd, rq->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        rc = sfd < 0 ? sfd : 0;
    }
    if (rc < 0) {
        ant_diag_set(d, "no folder %s in the scratch of tenant %s%s", rq->source,
                     rq->who->tenant, rc == -ELOOP || rc == -EXDEV ? " (symlinks are refused)" : "");
        rc = rc == -ENOTDIR || rc == -ELOOP || rc == -EXDEV ? -ENOENT : rc;
        goto out;
    }
    rc = walk_dir(&w, sfd, "", 0);
    if (rc < 0) {
        goto out;
    }
    if (w.n == 0) {
        ant_diag_set(d, "folder %s holds no files", rq->source);
        rc = -ENOENT;
        goto out;
    }
    for (size_t i = 0; i < w.n; i++) {
        char with[ANT_PATH_MAX + 1];
        const char *p = w.picks[i].path;
        int e = ant_store_file_conflict(st, rq->dataset_id, p, with);
        if (e == -EEXIST) {
            ant_diag_set(d, "dataset %s has %s already", rq->dataset_id, p);
        } else if (e == -ENOTDIR || e == -EISDIR) {
            /* the dataset is one folder tree: never both a file "a" and a file "a/b" */
            ant_diag_set(d, "%s cannot join dataset %s: its file %s is in the way (a file "
                         "cannot also be a folder)", p, rq->dataset_id, with);
        } else if (e < 0) {
            rc = e;
            goto out;
        }
        if (e < 0) {
            rc = -EEXIST;
            goto out;
        }
    }
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(id, "job_", 4);
    ant_hex_encode(rnd, sizeof(rnd), id + 4);
    struct ant_job_request jr = {.who = rq->who, .dataset_id = rq->dataset_id,
                                 .mode = ANT_JOB_ENCRYPT};
    pthread_mutex_lock(&j->mu);
    locked = true;
    rc = db_exec(j, "BEGIN IMMEDIATE");
    if (rc < 0) {
        goto out;
    }
    in_tx = true;
    rc = insert_job(j, &jr, id, w.picks, w.n, w.bytes, 0, j->conf.default_ttl_s, now, NULL);
    if (rc == 0) {
        sqlite3_stmt *s = NULL;
        rc = db_prepare(j, "UPDATE stage_jobs SET source = ? WHERE id = ?", &s);
        if (rc == 0) {
            sqlite3_bind_text(s, 1, rq->source, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
            rc = db_done(s);
        }
    }
    rc = rc < 0 ? rc : db_exec(j, "COMMIT");
    if (rc < 0) {
        goto out;
    }
    in_tx = false;
    pthread_cond_broadcast(&j->cv);
    memcpy(id_out, id, sizeof(id));
    ant_log_kv(ANT_LOG_INFO, "jobs.queued", ((const char *[]){"job_id", id, NULL}),
               "stage-out of %zu file(s), %llu bytes from %s/%s into %s", w.n,
               (unsigned long long)w.bytes, rq->who->tenant, rq->source, rq->dataset_id);
out:
    if (in_tx) {
        (void)db_exec(j, "ROLLBACK");
    }
    if (locked) {
        pthread_mutex_unlock(&j->mu);
    }
    for (size_t i = 0; i < w.n; i++) {
        free(w.names[i]);
    }
    free(w.names);
    free(w.picks);
    ant_close(sfd);
    ant_close(tfd);
    return rc;
}

/* --- queries --- */

int ant_jobs_get(struct ant_jobs *j, const char *id, struct ant_job_info *out)
{
    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, id, out);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

static json_t *time_json(int64_t t)
{
    char s[32];
    if (t <= 0) {
        return json_null();
    }
    ant_fmt_time(t, s);
    return json_string(s);
}

static int files_json_locked(struct ant_jobs *j, const char *id, json_t *arr)
{
    sqlite3_stmt *s = NULL;
    int rc = db_prepare(j,
                        "SELECT path, size, state, bytes_done, error, resume_bytes"
                        " FROM stage_job_files"
                        " WHERE job_id = ? ORDER BY state = 'failed' DESC, idx LIMIT ?",
                        &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, ANT_JOB_STATUS_FILES_MAX);
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *err = (const char *)sqlite3_column_text(s, 4);
        /* resume_bytes: how much of a pending file's partial copy is durable (a restart
         * continues after it) */
        json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:s?, s:I}", "path",
                              sqlite3_column_text(s, 0), "size",
                              (json_int_t)sqlite3_column_int64(s, 1), "state",
                              sqlite3_column_text(s, 2), "bytes_done",
                              (json_int_t)sqlite3_column_int64(s, 3), "error", err,
                              "resume_bytes", (json_int_t)sqlite3_column_int64(s, 5));
        if (o == NULL || json_array_append_new(arr, o) < 0) {
            rc = -ENOMEM;
            break;
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sqlerr(src);
    }
    sqlite3_finalize(s);
    return rc;
}

int ant_jobs_status_json(struct ant_jobs *j, const char *id, int64_t now, json_t **out)
{
    struct ant_job_info info;
    json_t *doc = NULL, *files = json_array();
    double rate = 0;
    uint64_t received = 0;
    bool running = false, staging = false;
    char path[2 * ANT_NAME_MAX + 8];
    if (files == NULL) {
        return -ENOMEM;
    }
    if (now == 0) {
        now = ant_now_unix();
    }
    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, id, &info);
    if (rc == 0) {
        struct job_run *r = run_find(j, id);
        if (r != NULL) {
            uint64_t now_bytes = atomic_load(&r->progress.bytes_done);
            double secs = (double)(ant_mono_ns() - r->t0_ns) / 1e9;
            uint64_t done = r->bytes_prev + now_bytes;
            info.bytes_done = done < info.bytes_total ? done : info.bytes_total;
            uint64_t fdone = atomic_load(&r->progress.files_done);
            info.files_done = fdone > info.files_done ? fdone : info.files_done;
            rate = secs > 0.2 ? (double)now_bytes / secs : 0;
            running = true;
            received = atomic_load(&r->received);
            staging = atomic_load(&r->staging);
        }
        rc = files_json_locked(j, id, files);
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        json_decref(files);
        return rc;
    }
    snprintf(path, sizeof(path), "%s/%s", info.tenant, info.id);
    doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id", info.id,
                    "dataset_id", info.dataset_id, "tenant", info.tenant, "owner",
                    info.principal, "mode", ant_job_mode_name(info.mode), "state",
                    ant_job_state_name(info.state), "files_total", (json_int_t)info.files_total,
                    "files_done", (json_int_t)info.files_done, "bytes_total",
                    (json_int_t)info.bytes_total, "bytes_done", (json_int_t)info.bytes_done,
                    "scratch_bytes", (json_int_t)info.scratch_bytes, "ttl_s",
                    (json_int_t)info.ttl_s);
    if (doc == NULL) {
        json_decref(files);
        return -ENOMEM;
    }
    json_object_set_new(doc, "error", info.error[0] ? json_string(info.error) : json_null());
    json_object_set_new(doc, "rate_bytes_per_s", json_integer((json_int_t)rate));
    if (info.state == ANT_JOB_RUNNING && rate > 0) {
        double left = (double)(info.bytes_total - info.bytes_done) / rate;
        json_object_set_new(doc, "eta_s", json_integer((json_int_t)(left + 0.5)));
    } else {
        json_object_set_new(doc, "eta_s",
                            info.state == ANT_JOB_READY ? json_integer(0) : json_null());
    }
    json_object_set_new(doc, "created", time_json(info.created));
    json_object_set_new(doc, "started", time_json(info.started));
    json_object_set_new(doc, "finished", time_json(info.finished));
    json_object_set_new(doc, "expires", time_json(info.expires));
    json_object_set_new(doc, "expires_in_s",
                        json_integer(info.expires > now ? (json_int_t)(info.expires - now) : 0));
    json_object_set_new(doc, "scratch_path", info.state == ANT_JOB_READY &&
                                                     info.mode != ANT_JOB_ENCRYPT
                                                 ? json_string(path)
                                                 : json_null());
    json_object_set_new(doc, "files", files);
    if (info.peer_id[0] != '\0') {
        json_object_set_new(doc, "site", json_string(info.peer_id));
        json_object_set_new(doc, "dataset_name", json_string(info.remote_name));
        json_object_set_new(doc, "transfer_id", json_string(info.transfer_id));
        json_object_set_new(doc, "purpose", json_string(info.purpose));
        json_object_set_new(doc, "phase", running ? json_string(staging ? "stage" : "transfer")
                                                  : json_null());
        json_object_set_new(doc, "bytes_received", json_integer((json_int_t)received));
    }
    *out = doc;
    return 0;
}

int ant_jobs_list_json(struct ant_jobs *j, const char *tenant, const char *principal,
                       unsigned limit, json_t **out)
{
    sqlite3_stmt *s = NULL;
    json_t *arr = json_array();
    if (limit == 0 || limit > 1000) {
        json_decref(arr);
        return -EINVAL;
    }
    if (arr == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&j->mu);
    int rc = db_prepare(j,
                        "SELECT " JOB_COLS " FROM stage_jobs"
                        " WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR principal_id = ?2)"
                        " ORDER BY created DESC, rowid DESC LIMIT ?3",
                        &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, principal, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, (int)limit);
        int src;
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            struct ant_job_info info;
            if (job_from_row(s, &info) < 0) {
                continue;
            }
            json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:s?}",
                                  "id", info.id, "dataset_id", info.dataset_id, "site",
                                  info.peer_id[0] ? info.peer_id : NULL, "owner",
                                  info.principal, "mode", ant_job_mode_name(info.mode), "state",
                                  ant_job_state_name(info.state), "files_total",
                                  (json_int_t)info.files_total, "bytes_total",
                                  (json_int_t)info.bytes_total, "created",
                                  time_json(info.created), "expires", time_json(info.expires),
                                  "error", info.error[0] ? info.error : NULL);
            if (o == NULL || json_array_append_new(arr, o) < 0) {
                rc = -ENOMEM;
                break;
            }
        }
        if (rc == 0 && src != SQLITE_DONE) {
            rc = sqlerr(src);
        }
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

int ant_jobs_manifest_json(struct ant_jobs *j, const char *id, json_t **out)
{
    struct ant_job_info info;
    sqlite3_stmt *s = NULL;
    json_t *arr = json_array();
    if (arr == NULL) {
        return -ENOMEM;
    }
    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, id, &info);
    rc = rc < 0 ? rc
                : db_prepare(j,
                             "SELECT path, size, sha256 FROM stage_job_files"
                             " WHERE job_id = ? ORDER BY idx",
                             &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        int src;
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            char hex[2 * ANT_SHA256_LEN + 1];
            bool has = info.mode == ANT_JOB_DECRYPT &&
                       sqlite3_column_bytes(s, 2) == ANT_SHA256_LEN;
            if (has) {
                ant_hex_encode(sqlite3_column_blob(s, 2), ANT_SHA256_LEN, hex);
            }
            json_t *o = json_pack("{s:s, s:I, s:s?}", "path", sqlite3_column_text(s, 0), "size",
                                  (json_int_t)sqlite3_column_int64(s, 1), "sha256",
                                  has ? hex : NULL);
            if (o == NULL || json_array_append_new(arr, o) < 0) {
                rc = -ENOMEM;
                break;
            }
        }
        if (rc == 0 && src != SQLITE_DONE) {
            rc = sqlerr(src);
        }
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* --- scratch folders --- */

/* Opens <scratch>/<tenant>, creating it (0700) when `create`. */
static int tenant_dir(struct ant_jobs *j, const char *tenant, bool create, int *out)
{
    if (!ant_name_is_valid(tenant)) {
        return -EINVAL;
    }
    if (create && mkdirat(j->conf.scratch_fd, tenant, 0700) < 0 && errno != EEXIST) {
        return -errno;
    }
    int fd = ant_stage_openat(j->conf.scratch_fd, tenant, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        return fd;
    }
    *out = fd;
    return 0;
}

/* The engine's job name: the output folder. A stage-out job writes beside the archive's files
 * under a prefix no file id has. */
static void engine_name(const struct ant_job_info *info, char out[ANT_JOB_ID_LEN + 8])
{
    snprintf(out, ANT_JOB_ID_LEN + 8, "%s%s", info->mode == ANT_JOB_ENCRYPT ? "so-" : "",
             info->id);
}

/* Opens <archive>/<dataset>, creating it (0700) when `create`. */
static int archive_dir(struct ant_jobs *j, const char *ds, bool create, int *out)
{
    if (ant_stage_path_check(ant_bytes_str(ds)) < 0 || strchr(ds, '/') != NULL) {
        return -EINVAL;
    }
    if (create && mkdirat(j->conf.archive_fd, ds, 0700) < 0 && errno != EEXIST) {
        return -errno;
    }
    int fd = ant_stage_openat(j->conf.archive_fd, ds, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        return fd;
    }
    *out = fd;
    return 0;
}

/* Removes everything a job may have written: its folder and the engine's partial and temporary
 * folders (in the tenant's scratch, or for a stage-out beside the dataset's archive files). */
static int remove_output(struct ant_jobs *j, const struct ant_job_info *info)
{
    char name[ANT_JOB_ID_LEN + 24], base[ANT_JOB_ID_LEN + 8];
    int tfd = -1;
    int rc = info->mode == ANT_JOB_ENCRYPT ? archive_dir(j, info->dataset_id, false, &tfd)
                                           : tenant_dir(j, info->tenant, false, &tfd);
    if (rc == -ENOENT) {
        return 0;
    }
    if (rc < 0) {
        return rc;
    }
    engine_name(info, base);
    const char *pre[] = {"", ".", "."}, *suf[] = {"", ".partial", ".tmp"};
    for (size_t i = 0; i < ANT_ARRAY_LEN(pre); i++) {
        snprintf(name, sizeof(name), "%s%s%s", pre[i], base, suf[i]);
        int e = ant_rmtree_at(tfd, name);
        if (e < 0 && e != -ENOENT && rc == 0) {
            rc = e;
        }
    }
    if (rc == 0) {
        rc = ant_fsync_dir(tfd);
    }
    ant_close(tfd);
    return rc;
}

int ant_jobs_open_output(struct ant_jobs *j, const struct ant_job_info *info, int *fd_out)
{
    char rel[2 * ANT_NAME_MAX + 8];
    if (info->state != ANT_JOB_READY) {
        return -ENOENT;
    }
    snprintf(rel, sizeof(rel), "%s/%s", info->tenant, info->id);
    int fd = ant_stage_openat(j->conf.scratch_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        return fd == -ENOTDIR ? -ENOENT : fd;
    }
    *fd_out = fd;
    return 0;
}

/* --- audit --- */

static int audit_job(struct ant_jobs *j, const struct ant_job_info *info, const char *action,
                     const char *reason, const char *detail)
{
    /* a remote job's events carry the transfer id, which the serving site's events carry too,
     * and name the dataset as peer:dataset (it is not one of this site's) */
    bool remote = info->peer_id[0] != '\0';
    char ds[2 * ANT_NAME_MAX + 4];
    snprintf(ds, sizeof(ds), "%s%s%s", remote ? info->peer_id : "", remote ? ":" : "",
             info->dataset_id);
    struct ant_audit_event ev = {
        .actor = j->site_id[0] ? j->site_id : "antenna",
        .tenant = info->tenant,
        .action = action,
        .resource_kind = "job",
        .resource_id = info->id,
        .dataset_id = ds,
        .decision = ANT_AUDIT_INFO,
        .reason = reason,
        .transfer = remote ? info->transfer_id : info->id,
        .detail = detail,
    };
    int64_t seq = ant_audit_append(j->conf.audit, &ev);
    return seq < 0 ? (int)seq : 0;
}

/* --- cancel and purge --- */

int ant_jobs_cancel(struct ant_jobs *j, const char *id, int64_t now)
{
    struct ant_job_info info;
    bool locked = true;
    (void)now;
    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, id, &info);
    if (rc < 0) {
        goto out;
    }
    if (info.state == ANT_JOB_RUNNING) {
        struct job_run *r = run_find(j, id);
        if (r != NULL) {
            r->user_cancel = true;
            atomic_store(&r->discard, true); /* before cancel: the engine then sees both */
            atomic_store(&r->cancel, true);
            pthread_cond_broadcast(&j->cv); /* a remote job held for a pass waits on it */
            /* the worker moves it to cancelled and removes its partial output */
            while (run_find(j, id) != NULL) {
                pthread_cond_wait(&j->cv, &j->mu);
            }
            rc = job_get_locked(j, id, &info);
            if (rc == 0 && info.state != ANT_JOB_CANCELLED) {
                /* it ended on its own meanwhile: cancel what it ended as */
                rc = info.state == ANT_JOB_READY ? 1 : -EALREADY;
            }
            if (rc <= 0) {
                goto out;
            }
        }
    }
    if ((info.state != ANT_JOB_QUEUED && info.state != ANT_JOB_RUNNING &&
         info.state != ANT_JOB_READY) ||
        (info.state == ANT_JOB_READY && info.mode == ANT_JOB_ENCRYPT)) {
        /* a finished stage-out's files belong to the dataset now, not to the job */
        rc = -EALREADY;
        goto out;
    }
    /* cancelled first, then removed: no reader is handed a file that is about to go */
    rc = job_move(j, id, info.state, ANT_JOB_CANCELLED, "finished = ?3", ant_now_unix());
    if (rc < 0) {
        goto out;
    }
    pthread_mutex_unlock(&j->mu);
    locked = false;
    rc = remove_output(j, &info);
    if (rc < 0) {
        ant_log_kv(ANT_LOG_ERROR, "jobs.cancel_cleanup", ((const char *[]){"job_id", id, NULL}),
                   "cannot remove output: %s", strerror(-rc));
    }
out:
    if (locked) {
        pthread_mutex_unlock(&j->mu);
    }
    return rc;
}

int ant_jobs_purge(struct ant_jobs *j, int64_t now)
{
    struct ant_job_info *due = NULL;
    size_t n = 0, cap = 0;
    int purged = 0;
    sqlite3_stmt *s = NULL;
    if (now == 0) {
        now = ant_now_unix();
    }
    pthread_mutex_lock(&j->mu);
    int rc = db_prepare(j,
                        "SELECT " JOB_COLS " FROM stage_jobs WHERE state IN ('queued','ready')"
                        " AND mode != 'encrypt' AND expires <= ? ORDER BY expires LIMIT 256",
                        &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, now);
        int src;
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct ant_job_info *g = realloc(due, nc * sizeof(*g));
                if (g == NULL) {
                    rc = -ENOMEM;
                    break;
                }
                due = g;
                cap = nc;
            }
            if (job_from_row(s, &due[n]) == 0) {
                n++;
            }
        }
        if (rc == 0 && src != SQLITE_DONE) {
            rc = sqlerr(src);
        }
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct ant_job_info *info = &due[i];
        char detail[256];
        snprintf(detail, sizeof(detail),
                 "{\"state\":\"%s\",\"files\":%llu,\"bytes\":%llu,\"expired_at\":%lld}",
                 ant_job_state_name(info->state), (unsigned long long)info->files_total,
                 (unsigned long long)info->scratch_bytes, (long long)info->expires);
        /* A queued job has no output: it is taken first, so that a worker cannot start it
         * after the event says it expired. A ready job's output is data: its purge is audited
         * before anything changes, and if the log cannot take the event the job stays as it is
         * until the next pass (the log fails closed). */
        bool queued = info->state == ANT_JOB_QUEUED;
        int e = 0;
        if (queued) {
            pthread_mutex_lock(&j->mu);
            e = job_move(j, info->id, ANT_JOB_QUEUED, ANT_JOB_EXPIRED, "purged = ?3", now);
            pthread_mutex_unlock(&j->mu);
            if (e == -ESTALE) {
                continue; /* a worker took it, or it was cancelled, in between */
            }
            if (e < 0) {
                rc = e;
                break;
            }
        }
        e = audit_job(j, info, "stage.purge", "ttl_expired", detail);
        if (e < 0 && !queued) {
            ant_log_kv(ANT_LOG_ERROR, "jobs.purge_unaudited",
                       ((const char *[]){"job_id", info->id, NULL}),
                       "purge postponed: audit log refused the event: %s", strerror(-e));
            continue;
        }
        if (e < 0) {
            ant_log_kv(ANT_LOG_ERROR, "jobs.unaudited", ((const char *[]){"job_id", info->id, NULL}),
                       "a queued job expired unaudited: %s", strerror(-e));
        }
        if (!queued) {
            pthread_mutex_lock(&j->mu);
            e = job_move(j, info->id, info->state, ANT_JOB_EXPIRED, "purged = ?3", now);
            pthread_mutex_unlock(&j->mu);
            if (e == -ESTALE) {
                continue; /* cancelled in between: its output is gone already */
            }
            if (e < 0) {
                rc = e;
                break;
            }
        }
        e = remove_output(j, info);
        if (e < 0) {
            ant_log_kv(ANT_LOG_ERROR, "jobs.purge_failed",
                       ((const char *[]){"job_id", info->id, NULL}),
                       "cannot remove the output: %s", strerror(-e));
        }
        ant_log_kv(ANT_LOG_INFO, "jobs.purged", ((const char *[]){"job_id", info->id, NULL}),
                   "time to live over: output removed");
        purged++;
    }
    free(due);
    return rc < 0 ? rc : purged;
}

/* --- running a job --- */

struct pending {
    size_t idx;
    int rc;
    uint64_t bytes;
    bool has_sha, has_body; /* stage-out: the digests the catalog will record */
    uint8_t sha[ANT_SHA256_LEN], body[ANT_SHA256_LEN];
    char err[256];
};

struct runctx {
    struct ant_jobs *j;
    struct job_run *run;
    const char *id;
    struct pending *pend;
    size_t npend, cap;
    int64_t last_flush_ns;
    const struct ant_stage_file *files; /* the engine's list */
    const char *const *logical;         /* logical paths, for messages */
    size_t nfiles;
    bool encrypt;      /* a stage-out */
    uint64_t ndone;    /* files reported done in this run */
    char first_err[256];
    int flush_rc;
};

/* Writes the pending per-file results in one transaction. */
static int flush_files(struct runctx *c)
{
    struct ant_jobs *j = c->j;
    sqlite3_stmt *s = NULL;
    if (c->npend == 0) {
        return 0;
    }
    pthread_mutex_lock(&j->mu);
    int rc = db_exec(j, "BEGIN IMMEDIATE");
    if (rc == 0) {
        rc = db_prepare(j,
                        "UPDATE stage_job_files SET state = ?3, bytes_done = ?4, error = ?5,"
                        " sha256 = COALESCE(?6, sha256), sha256_body = COALESCE(?7, sha256_body),"
                        " resume_bytes = 0 WHERE job_id = ?1 AND idx = ?2",
                        &s);
    }
    for (size_t i = 0; rc == 0 && i < c->npend; i++) {
        const struct pending *p = &c->pend[i];
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, c->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)p->idx);
        sqlite3_bind_text(s, 3, p->rc == 0 ? "done" : "failed", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (int64_t)p->bytes);
        if (p->rc == 0) {
            sqlite3_bind_null(s, 5);
        } else {
            sqlite3_bind_text(s, 5, p->err, -1, SQLITE_STATIC);
        }
        if (p->has_sha) {
            sqlite3_bind_blob(s, 6, p->sha, ANT_SHA256_LEN, SQLITE_STATIC);
        }
        if (p->has_body) {
            sqlite3_bind_blob(s, 7, p->body, ANT_SHA256_LEN, SQLITE_STATIC);
        }
        int src = sqlite3_step(s);
        rc = src == SQLITE_DONE ? 0 : sqlerr(src);
    }
    sqlite3_finalize(s);
    if (rc == 0) {
        sqlite3_stmt *u = NULL;
        rc = db_prepare(j,
                        "UPDATE stage_jobs SET"
                        " files_done = (SELECT count(*) FROM stage_job_files"
                        "   WHERE job_id = ?1 AND state = 'done'),"
                        " bytes_done = (SELECT COALESCE(SUM(size), 0) FROM stage_job_files"
                        "   WHERE job_id = ?1 AND state = 'done')"
                        " WHERE id = ?1",
                        &u);
        if (rc == 0) {
            sqlite3_bind_text(u, 1, c->id, -1, SQLITE_STATIC);
            rc = db_done(u);
        }
    }
    rc = rc < 0 ? rc : db_exec(j, "COMMIT");
    if (rc < 0) {
        (void)db_exec(j, "ROLLBACK");
    }
    pthread_mutex_unlock(&j->mu);
    c->npend = 0;
    c->last_flush_ns = ant_mono_ns();
    if (rc < 0 && c->flush_rc == 0) {
        c->flush_rc = rc;
        ant_log_kv(ANT_LOG_ERROR, "jobs.progress", ((const char *[]){"job_id", c->id, NULL}),
                   "cannot record progress: %s", strerror(-rc));
    }
    return rc;
}

static void on_file(void *arg, const struct ant_stage_file_result *r)
{
    struct runctx *c = arg;
    if (c->npend == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        struct pending *p = realloc(c->pend, nc * sizeof(*p));
        if (p == NULL) {
            /* progress is an optimisation for resume: losing a mark only means a re-check */
            (void)flush_files(c);
            if (c->npend == c->cap) {
                return;
            }
        } else {
            c->pend = p;
            c->cap = nc;
        }
    }
    struct pending *p = &c->pend[c->npend++];
    p->idx = r->index;
    p->rc = r->rc;
    p->bytes = r->bytes;
    p->has_sha = c->encrypt && r->rc == 0;
    p->has_body = c->encrypt && r->rc == 0 && r->has_sha256_body;
    if (p->has_sha) {
        memcpy(p->sha, r->sha256, ANT_SHA256_LEN);
    }
    if (p->has_body) {
        memcpy(p->body, r->sha256_body, ANT_SHA256_LEN);
    }
    p->err[0] = '\0';
    if (r->rc < 0) {
        /* the user knows the file by its logical path, not by its archive name */
        const char *path = r->index < c->nfiles ? c->logical[r->index] : "?";
        const char *src = r->index < c->nfiles ? c->files[r->index].src : NULL;
        const char *msg = r->msg != NULL ? r->msg : strerror(-r->rc);
        char clean[192];
        /* storage names are the archive's business: say "the archive copy" instead */
        const char *at = src != NULL ? strstr(msg, src) : NULL;
        if (at != NULL) {
            snprintf(clean, sizeof(clean), "%.*sthe archive copy%s", (int)(at - msg), msg,
                     at + strlen(src));
            msg = clean;
        }
        if (strstr(msg, path) != NULL) {
            snprintf(p->err, sizeof(p->err), "%s", msg);
        } else {
            snprintf(p->err, sizeof(p->err), "%s: %s", path, msg);
        }
    }
    if (r->rc < 0 && c->first_err[0] == '\0') {
        snprintf(c->first_err, sizeof(c->first_err), "%s", p->err);
    }
    if (r->rc == 0) {
        c->ndone++;
        if (c->j->conf.test_file_done != NULL) {
            (void)flush_files(c);
            c->j->conf.test_file_done(c->j->conf.test_arg, c->id, c->ndone);
        }
    }
    if (c->npend >= FLUSH_FILES || ant_mono_ns() - c->last_flush_ns >= FLUSH_NS) {
        (void)flush_files(c);
    }
}

/* The engine made the first `bytes` of a big pending file durable (its fdatasync returned):
 * recorded at once, so that a restarted job continues the file from there (0: an earlier mark
 * no longer holds). At most ANT_RESUME_MARKS_MAX (+1 at a stop) per file: one small commit
 * each. A mark that cannot be recorded only costs a copy from an earlier mark, or the start. */
static void on_mark(void *arg, size_t idx, uint64_t bytes)
{
    struct runctx *c = arg;
    struct ant_jobs *j = c->j;
    sqlite3_stmt *s = NULL;
    pthread_mutex_lock(&j->mu);
    int rc = db_prepare(j,
                        "UPDATE stage_job_files SET resume_bytes = ?3"
                        " WHERE job_id = ?1 AND idx = ?2 AND state = 'pending'",
                        &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, c->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)idx);
        sqlite3_bind_int64(s, 3, (int64_t)bytes);
        rc = db_done(s);
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        ant_log_kv(ANT_LOG_WARN, "jobs.progress", ((const char *[]){"job_id", c->id, NULL}),
                   "cannot record a resume mark: %s", strerror(-rc));
        return;
    }
    if (j->conf.test_file_mark != NULL) {
        j->conf.test_file_mark(j->conf.test_arg, c->id, idx, bytes);
    }
}

struct filelist {
    struct ant_stage_file *files;
    char **strs; /* 2 per file: src, dst */
    const char **logical; /* per file: its logical path (dst, or for a stage-out its path) */
    char **paths;         /* stage-out: the logical paths */
    char *source;         /* stage-out: the folder under the tenant's scratch */
    size_t n;
    uint64_t bytes_prev;
    uint8_t recipient[ANT_KEY_LEN];
    bool has_recipient;
};

static void filelist_fini(struct filelist *fl)
{
    for (size_t i = 0; fl->strs != NULL && i < 2 * fl->n; i++) {
        free(fl->strs[i]);
    }
    for (size_t i = 0; fl->paths != NULL && i < fl->n; i++) {
        free(fl->paths[i]);
    }
    free(fl->strs);
    free(fl->paths);
    free(fl->logical);
    free(fl->source);
    free(fl->files);
    memset(fl, 0, sizeof(*fl));
}

static int load_files_locked(struct ant_jobs *j, const struct ant_job_info *info,
                             struct filelist *fl)
{
    sqlite3_stmt *s = NULL;
    bool out = info->mode == ANT_JOB_ENCRYPT;
    enum ant_xform x = out                            ? ANT_XFORM_ENCRYPT
                       : j->conf.test_raw              ? ANT_XFORM_RAW
                       : info->mode == ANT_JOB_DECRYPT ? ANT_XFORM_DECRYPT
                                                       : ANT_XFORM_REENCRYPT;
    size_t n = info->files_total;
    int rc = db_prepare(j, "SELECT recipient_pk, source FROM stage_jobs WHERE id = ?", &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, info->id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == ANT_KEY_LEN) {
        memcpy(fl->recipient, sqlite3_column_blob(s, 0), ANT_KEY_LEN);
        fl->has_recipient = true;
    }
    if (out && sqlite3_column_text(s, 1) != NULL) {
        fl->source = strdup((const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_finalize(s);
    s = NULL;
    if (out && fl->source == NULL) {
        return -EBADMSG;
    }
    fl->files = calloc(n > 0 ? n : 1, sizeof(*fl->files));
    fl->strs = calloc(2 * (n > 0 ? n : 1), sizeof(*fl->strs));
    fl->paths = calloc(n > 0 ? n : 1, sizeof(*fl->paths));
    fl->logical = calloc(n > 0 ? n : 1, sizeof(*fl->logical));
    if (fl->files == NULL || fl->strs == NULL || fl->paths == NULL || fl->logical == NULL) {
        return -ENOMEM;
    }
    rc = db_prepare(j,
                    "SELECT idx, storage_id, path, size, sha256, state, resume_bytes"
                    " FROM stage_job_files WHERE job_id = ? ORDER BY idx",
                    &s);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_text(s, 1, info->id, -1, SQLITE_STATIC);
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        size_t i = fl->n;
        if (i >= n || (size_t)sqlite3_column_int64(s, 0) != i ||
            sqlite3_column_bytes(s, 4) != ANT_SHA256_LEN) {
            rc = -EBADMSG;
            break;
        }
        struct ant_stage_file *f = &fl->files[i];
        const char *sid = (const char *)sqlite3_column_text(s, 1);
        const char *path = (const char *)sqlite3_column_text(s, 2);
        const char *st = (const char *)sqlite3_column_text(s, 5);
        char *src_path = NULL, *dst_path = NULL;
        int e1 = -1, e2 = 0;
        if (sid != NULL && path != NULL && out) {
            /* stage-out: from <source>/<path> to a flat name the registration renames */
            e1 = asprintf(&src_path, "%s/%s", fl->source, path);
            e2 = asprintf(&dst_path, "%zu.c4gh", i);
        } else if (sid != NULL && path != NULL && info->peer_id[0] != '\0') {
            /* a remote job's source is its copy in the archive cache, known once pulled */
            src_path = strdup("");
            e1 = src_path != NULL ? 0 : -1;
            dst_path = strdup(path);
        } else if (sid != NULL && path != NULL) {
            e1 = asprintf(&src_path, "%s/%s.c4gh", info->dataset_id, sid);
            dst_path = strdup(path);
        }
        fl->strs[2 * i] = e1 < 0 ? NULL : src_path;
        fl->strs[2 * i + 1] = e2 < 0 ? NULL : dst_path;
        fl->paths[i] = path != NULL ? strdup(path) : NULL;
        fl->n++;
        if (fl->strs[2 * i] == NULL || fl->strs[2 * i + 1] == NULL || fl->paths[i] == NULL) {
            rc = -ENOMEM;
            break;
        }
        f->src = fl->strs[2 * i];
        f->dst = fl->strs[2 * i + 1];
        fl->logical[i] = fl->paths[i];
        f->xform = x;
        /* a stage-out's digests are learnt as it runs: the catalog records what was read */
        f->has_sha256 = !out;
        memcpy(f->sha256, sqlite3_column_blob(s, 4), ANT_SHA256_LEN);
        f->done = st != NULL && strcmp(st, "done") == 0;
        if (f->done) {
            fl->bytes_prev += (uint64_t)sqlite3_column_int64(s, 3);
        } else if (sqlite3_column_int64(s, 6) > 0) {
            f->resume_at = (uint64_t)sqlite3_column_int64(s, 6); /* the engine checks it */
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sqlerr(src);
    }
    if (rc == 0 && fl->n != n) {
        rc = -EBADMSG;
    }
    sqlite3_finalize(s);
    return rc;
}

/* The catalog size of a stored Crypt4GH file: the plaintext length of its body. */
static int stored_plain_len(int fd, uint64_t *plain)
{
    struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct stat sb;
    int rc = ant_c4gh_header_read_fd(fd, &hdr, NULL);
    if (rc == 0 && fstat(fd, &sb) < 0) {
        rc = -errno;
    }
    if (rc == 0 && (uint64_t)sb.st_size < hdr.len) {
        rc = -EBADMSG;
    }
    rc = rc < 0 ? rc : ant_c4gh_plain_len((uint64_t)sb.st_size - hdr.len, plain);
    ant_buf_fini(&hdr);
    return rc;
}

struct out_file {
    size_t idx;
    char path[ANT_PATH_MAX + 1];
    uint8_t sha[ANT_SHA256_LEN], body[ANT_SHA256_LEN];
};

/* Registers one encrypted file of a stage-out: the catalog row, its audit event, the rename to
 * <file-id>.c4gh and the folder's fsync, the row committed last (as an upload does). */
static int register_one(struct ant_jobs *j, struct ant_store *st, const struct ant_job_info *info,
                        const struct out_file *of, int afd, const char *ename,
                        char id[ANT_ID_MAX + 1])
{
    char from[ANT_JOB_ID_LEN + 40], to[ANT_ID_MAX + 8];
    struct ant_file_spec spec = {.dataset_id = info->dataset_id, .path = of->path};
    bool renamed = false;
    snprintf(from, sizeof(from), "%s/%zu.c4gh", ename, of->idx);
    int fd = openat(afd, from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = fd < 0 ? -errno : stored_plain_len(fd, &spec.size);
    ant_close(fd);
    if (rc < 0) {
        return rc;
    }
    memcpy(spec.sha256_plain, of->sha, ANT_SHA256_LEN);
    memcpy(spec.sha256_c4gh, of->body, ANT_SHA256_LEN);
    rc = ant_store_begin(st);
    if (rc < 0) {
        return rc;
    }
    rc = ant_store_file_add(st, &spec, id);
    if (rc == 0) {
        char detail[160];
        snprintf(detail, sizeof(detail), "{\"size\":%llu,\"job\":\"%s\"}",
                 (unsigned long long)spec.size, info->id);
        struct ant_audit_event ev = {
            .actor = info->principal,
            .tenant = info->tenant,
            .credential = "job",
            .action = "stage_out.register",
            .resource_kind = "file",
            .resource_id = id,
            .dataset_id = info->dataset_id,
            .decision = ANT_AUDIT_INFO,
            .reason = "stage_out",
            .transfer = info->id,
            .detail = detail,
        };
        int64_t seq = ant_audit_append(j->conf.audit, &ev);
        rc = seq < 0 ? (int)seq : 0;
    }
    if (rc == 0) {
        snprintf(to, sizeof(to), "%s.c4gh", id);
        rc = renameat(afd, from, afd, to) < 0 ? -errno : 0;
        renamed = rc == 0;
    }
    rc = rc < 0 ? rc : ant_fsync_dir(afd);
    rc = rc < 0 ? rc : ant_store_commit(st);
    if (rc < 0) {
        ant_store_rollback(st);
        if (renamed && renameat(afd, to, afd, from) < 0) {
            ant_log(ANT_LOG_ERROR, "jobs.stage_out_orphan", "%s/%s left unregistered: %s",
                    info->dataset_id, to, strerror(errno));
        }
    }
    return rc;
}

/* After a stage-out's engine run: registers every file not registered yet. */
static int register_out(struct ant_jobs *j, const struct ant_job_info *info,
                        const struct filelist *fl, int afd, const char *ename,
                        struct runctx *c, struct ant_diag *d)
{
    struct out_file *pending = calloc(fl->n > 0 ? fl->n : 1, sizeof(*pending));
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    int rc = pending != NULL ? 0 : -ENOMEM;
    if (j->conf.pool == NULL) {
        rc = -ENOTSUP;
    }
    pthread_mutex_lock(&j->mu);
    rc = rc < 0 ? rc
                : db_prepare(j,
                             "SELECT idx, path, sha256, sha256_body FROM stage_job_files"
                             " WHERE job_id = ? AND file_id = '' ORDER BY idx",
                             &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, info->id, -1, SQLITE_STATIC);
        while (n < fl->n && sqlite3_step(s) == SQLITE_ROW) {
            struct out_file *of = &pending[n];
            of->idx = (size_t)sqlite3_column_int64(s, 0);
            col_copy(s, 1, of->path, sizeof(of->path));
            if (sqlite3_column_bytes(s, 2) != ANT_SHA256_LEN ||
                sqlite3_column_bytes(s, 3) != ANT_SHA256_LEN) {
                ant_diag_set(d, "%s: its digests were not recorded; stage out again", of->path);
                rc = -EIO;
                break;
            }
            memcpy(of->sha, sqlite3_column_blob(s, 2), ANT_SHA256_LEN);
            memcpy(of->body, sqlite3_column_blob(s, 3), ANT_SHA256_LEN);
            n++;
        }
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&j->mu);
    struct ant_store *st = rc == 0 ? ant_store_pool_acquire(j->conf.pool) : NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char id[ANT_ID_MAX + 1];
        rc = register_one(j, st, info, &pending[i], afd, ename, id);
        if (rc < 0) {
            ant_diag_set(d, "%s: cannot add it to dataset %s: %s", pending[i].path, info->dataset_id,
                         rc == -EEXIST    ? "the dataset has this path already"
                         : rc == -ENOTDIR ? "one of its folders is a file of the dataset"
                         : rc == -EISDIR  ? "files of the dataset lie beneath it"
                         : rc == -EINVAL  ? "the dataset is no longer a draft"
                         : rc == -ENOENT  ? "its encrypted copy is gone (interrupted)"
                                          : strerror(-rc));
            snprintf(c->first_err, sizeof(c->first_err), "%s", ant_diag_msg(d, "?"));
            break;
        }
        pthread_mutex_lock(&j->mu);
        int e = db_prepare(j,
                           "UPDATE stage_job_files SET file_id = ?3, storage_id = ?3"
                           " WHERE job_id = ?1 AND idx = ?2",
                           &s);
        if (e == 0) {
            sqlite3_bind_text(s, 1, info->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (int64_t)pending[i].idx);
            sqlite3_bind_text(s, 3, id, -1, SQLITE_TRANSIENT);
            e = db_done(s);
        }
        pthread_mutex_unlock(&j->mu);
        if (e < 0) {
            ant_log_kv(ANT_LOG_ERROR, "jobs.record", ((const char *[]){"job_id", info->id, NULL}),
                       "%s registered as %s but not recorded: %s", pending[i].path, id,
                       strerror(-e));
        }
    }
    if (st != NULL) {
        ant_store_pool_release(j->conf.pool, st);
    }
    if (rc == 0) {
        /* every file was renamed out of it: the folder is empty */
        int e = ant_rmtree_at(afd, ename);
        if (e < 0 && e != -ENOENT) {
            ant_log(ANT_LOG_WARN, "jobs.cleanup", "%s: %s", ename, strerror(-e));
        }
    }
    free(pending);
    return rc;
}

/* --- a remote job's pull --- */

static void timed_wait(struct ant_jobs *j, unsigned secs);

struct want_set {
    const char **paths; /* sorted */
    size_t n;
};

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool want_path(void *arg, const char *path)
{
    const struct want_set *w = arg;
    return bsearch(&path, w->paths, w->n, sizeof(*w->paths), cmp_path) != NULL;
}

/* Pulls a remote job's files from its peer into the archive cache (files already there are not
 * transferred: ant_fed_pull) and points the engine's sources at those copies. The peer decides
 * again, under the job's transfer id: a grant revoked since admission stops the job here. A
 * file whose digest differs from the one admitted (the peer's dataset changed) fails the job. */
static int remote_pull(struct ant_jobs *j, struct job_run *run, const struct ant_job_info *info,
                       struct filelist *fl, struct ant_diag *d)
{
    struct ant_fed_pulled res;
    struct want_set w = {.paths = calloc(fl->n > 0 ? fl->n : 1, sizeof(*w.paths)), .n = fl->n};
    struct ant_store *st = NULL;
    struct pulling mine = {0};
    bool registered = false;
    int rc = 0;
    memset(&res, 0, sizeof(res));
    if (w.paths == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (j->conf.keys == NULL || j->conf.pool == NULL) {
        ant_diag_set(d, "staging from peers is not enabled on this site");
        rc = -ENOTSUP;
        goto out;
    }
    memcpy(w.paths, fl->logical, fl->n * sizeof(*w.paths));
    qsort(w.paths, w.n, sizeof(*w.paths), cmp_path);
    /* One pull of a peer's dataset at a time: a second job of the same dataset waits, then
     * finds the first one's copies in the cache and transfers nothing. */
    snprintf(mine.key, sizeof(mine.key), "%s:%s", info->peer_id, info->dataset_id);
    pthread_mutex_lock(&j->mu);
    for (;;) {
        struct pulling *p = j->pulling;
        while (p != NULL && strcmp(p->key, mine.key) != 0) {
            p = p->next;
        }
        if (p == NULL || atomic_load(&run->cancel)) {
            break;
        }
        timed_wait(j, 1);
    }
    if (!atomic_load(&run->cancel)) {
        mine.next = j->pulling;
        j->pulling = &mine;
        registered = true;
    }
    pthread_mutex_unlock(&j->mu);
    if (!registered) {
        rc = -ECANCELED;
        goto out;
    }
    struct ant_fetch_opts o = j->fetch;
    o.cancel = &run->cancel;
    o.received = &run->received;
    st = ant_store_pool_acquire(j->conf.pool);
    struct ant_fed_pull_req q = {
        .st = st,
        .audit = j->conf.audit,
        .keys = j->conf.keys,
        .self_id = j->site_id,
        .archive_fd = j->conf.archive_fd,
        .peer_id = info->peer_id,
        .dataset = info->dataset_id,
        .principal = info->principal,
        .tenant = info->tenant,
        .purpose = info->purpose,
        .transfer_id = info->transfer_id,
        .request_id = info->id,
        .opts = &o,
        .want = want_path,
        .want_arg = &w,
    };
    rc = ant_fed_pull(&q, &res, d);
    if (rc < 0 && rc != -ECANCELED) {
        char why[200];
        snprintf(why, sizeof(why), "%s", ant_diag_msg(d, strerror(-rc)));
        ant_diag_set(d, "cannot pull %s from %s (transfer %s): %s", info->dataset_id,
                     info->peer_id, info->transfer_id, why);
    }
    if (rc < 0) {
        goto out;
    }
    /* both lists are in the manifest's order: one walk pairs them */
    size_t k = 0;
    for (size_t i = 0; i < fl->n; i++) {
        const char *path = fl->logical[i];
        while (k < res.nfiles && (res.files[k].skipped || strcmp(res.files[k].path, path) != 0)) {
            k++;
        }
        const struct ant_fed_pulled_file *pf = k < res.nfiles ? &res.files[k++] : NULL;
        const uint8_t *got = pf == NULL                      ? NULL
                             : info->mode == ANT_JOB_DECRYPT ? pf->sha256
                                                             : pf->sha256_c4gh;
        if (got == NULL || memcmp(got, fl->files[i].sha256, ANT_SHA256_LEN) != 0) {
            ant_diag_set(d, "%s: %s at %s since the job was admitted; stage it again", path,
                         got == NULL ? "no longer in the dataset" : "changed", info->peer_id);
            rc = -ESTALE;
            goto out;
        }
        char *src = strdup(pf->archive_name);
        if (src == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        free(fl->strs[2 * i]);
        fl->strs[2 * i] = src;
        fl->files[i].src = src;
    }
    ant_log_kv(ANT_LOG_INFO, "jobs.pulled", ((const char *[]){"job_id", info->id, NULL}),
               "%s:%s (transfer %s): %zu file(s), %llu bytes received, %u retries",
               info->peer_id, info->dataset_id, info->transfer_id, fl->n,
               (unsigned long long)res.stats.bytes, res.stats.retries);
out:
    if (st != NULL) {
        ant_store_pool_release(j->conf.pool, st);
    }
    if (registered) {
        pthread_mutex_lock(&j->mu);
        for (struct pulling **pp = &j->pulling; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == &mine) {
                *pp = mine.next;
                break;
            }
        }
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    ant_fed_pulled_fini(&res);
    free(w.paths);
    return rc;
}

/* Runs one claimed job and records how it ended. */
static void run_job(struct ant_jobs *j, struct job_run *run)
{
    struct ant_job_info info;
    struct filelist fl;
    struct runctx c;
    struct ant_diag diag = {{0}};
    int tfd = -1, afd = -1;
    bool remote = false;
    memset(&fl, 0, sizeof(fl));
    memset(&c, 0, sizeof(c));
    c.j = j;
    c.run = run;
    c.id = run->id;
    c.last_flush_ns = ant_mono_ns();

    pthread_mutex_lock(&j->mu);
    int rc = job_get_locked(j, run->id, &info);
    rc = rc < 0 ? rc : load_files_locked(j, &info, &fl);
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        ant_diag_set(&diag, "cannot read the job's file list: %s", strerror(-rc));
        goto end;
    }
    run->bytes_prev = fl.bytes_prev;
    if (info.peer_id[0] != '\0') {
        /* from its lookups in the cache to the engine's last read of the copies found, no
         * eviction pass may run (fed_cache_trim); a pass already running is short, a drain
         * (trim_drain) lasts until the remote jobs running now have ended */
        bool held = false;
        pthread_mutex_lock(&j->mu);
        while ((j->evicting || j->trim_drain) && !atomic_load(&run->cancel)) {
            if (j->trim_drain && !held) {
                held = true;
                pthread_mutex_unlock(&j->mu);
                fed_step(j, run->id, ANT_JOBS_FED_HELD);
                pthread_mutex_lock(&j->mu);
                continue;
            }
            timed_wait(j, 1);
        }
        if (atomic_load(&run->cancel)) {
            pthread_mutex_unlock(&j->mu);
            rc = -ECANCELED;
            goto end;
        }
        j->remote_running++;
        remote = true;
        pthread_mutex_unlock(&j->mu);
        fed_step(j, run->id, ANT_JOBS_FED_RUNNING);
        rc = remote_pull(j, run, &info, &fl, &diag);
        if (rc < 0) {
            goto end;
        }
    }
    atomic_store(&run->staging, true);
    c.files = fl.files;
    c.logical = fl.logical;
    c.nfiles = fl.n;
    c.encrypt = info.mode == ANT_JOB_ENCRYPT;
    bool out = info.mode == ANT_JOB_ENCRYPT;
    char ename[ANT_JOB_ID_LEN + 8];
    engine_name(&info, ename);
    rc = tenant_dir(j, info.tenant, !out, &tfd);
    if (rc < 0) {
        ant_diag_set(&diag, "cannot open the tenant's scratch folder: %s", strerror(-rc));
        goto end;
    }
    if (out) {
        rc = archive_dir(j, info.dataset_id, true, &afd);
        if (rc < 0) {
            ant_diag_set(&diag, "cannot open the dataset's archive folder: %s", strerror(-rc));
            goto end;
        }
    }
    struct ant_stage_job job = {
        .name = ename,
        .src_root = out ? tfd : j->conf.archive_fd,
        .dst_root = out ? afd : tfd,
        .files = fl.files,
        .nfiles = fl.n,
        .key = j->conf.kx,
        .recipient_pk = out ? ant_key_public(j->conf.kx)
                            : fl.has_recipient ? fl.recipient : NULL,
        .on_file = on_file,
        .on_mark = on_mark,
        .cb_arg = &c,
        .progress = &run->progress,
        .cancel = &run->discard,
        .stop = &run->cancel,
    };
    rc = ant_engine_run(j->engine, &job, &diag);
    (void)flush_files(&c);
    /* how the bytes went: O_DIRECT or the page cache ([staging] direct_io) */
    ant_log_kv(ANT_LOG_INFO, "jobs.io", ((const char *[]){"job_id", run->id, NULL}),
               "%zu files, %llu written with O_DIRECT, %llu read with O_DIRECT, %llu resumed "
               "inside (%llu bytes kept), %llu resumes refused or mismatched",
               fl.n, (unsigned long long)atomic_load(&run->progress.files_direct),
               (unsigned long long)atomic_load(&run->progress.files_direct_read),
               (unsigned long long)atomic_load(&run->progress.files_resumed),
               (unsigned long long)atomic_load(&run->progress.bytes_resumed),
               (unsigned long long)atomic_load(&run->progress.files_resume_failed));
    if (rc == -EEXIST) {
        /* The folder appears only complete and durable (engine.h): an earlier run finished it
         * and the daemon stopped before recording so. */
        rc = 0;
    }
    if (rc == 0) {
        /* what a crashed earlier run may have left beside the finished folder */
        char tmp[ANT_JOB_ID_LEN + 16];
        snprintf(tmp, sizeof(tmp), ".%s.tmp", ename);
        int rrc = ant_rmtree_at(out ? afd : tfd, tmp);
        if (rrc < 0 && rrc != -ENOENT) {
            ant_log(ANT_LOG_WARN, "jobs.leftover", "cannot remove %s: %s", tmp, strerror(-rrc));
        }
    }
    if (rc == 0 && out) {
        rc = register_out(j, &info, &fl, afd, ename, &c, &diag);
    }
end:
    ant_close(tfd);
    ant_close(afd);
    pthread_mutex_lock(&j->mu);
    int64_t now = ant_now_unix();
    enum ant_job_state to;
    const char *why = NULL;
    if (rc == 0) {
        to = ANT_JOB_READY;
        /* time to live runs from when the data is there to use */
        rc = job_move(j, run->id, ANT_JOB_RUNNING, to,
                      "finished = ?3, expires = ?3 + ttl_s, error = NULL,"
                      " files_done = files_total, bytes_done = bytes_total",
                      now);
    } else if ((rc == -ECANCELED || rc == -EINTR) && !run->user_cancel) {
        /* a shutdown (-EINTR from the engine, -ECANCELED before it ran): the next start
         * resumes from the files done and the marks recorded */
        to = ANT_JOB_QUEUED;
        rc = job_move(j, run->id, ANT_JOB_RUNNING, to, NULL, 0);
    } else if (rc == -ECANCELED || rc == -EINTR) {
        to = ANT_JOB_CANCELLED;
        rc = job_move(j, run->id, ANT_JOB_RUNNING, to, "finished = ?3", now);
    } else {
        to = ANT_JOB_FAILED;
        why = c.first_err[0] ? c.first_err : ant_diag_msg(&diag, strerror(-rc));
        sqlite3_stmt *s = NULL;
        int e = job_move(j, run->id, ANT_JOB_RUNNING, to, "finished = ?3", now);
        if (e == 0 && db_prepare(j, "UPDATE stage_jobs SET error = ? WHERE id = ?", &s) == 0) {
            sqlite3_bind_text(s, 1, why, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, run->id, -1, SQLITE_STATIC);
            e = db_done(s);
        }
        rc = e;
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        ant_log_kv(ANT_LOG_ERROR, "jobs.record", ((const char *[]){"job_id", run->id, NULL}),
                   "cannot record the end of the job (%s): %s", ant_job_state_name(to),
                   strerror(-rc));
    }
    if (to == ANT_JOB_FAILED || to == ANT_JOB_CANCELLED) {
        /* nothing of a failed job stays in scratch: its quota is released with it */
        (void)remove_output(j, &info);
    }
    if (to == ANT_JOB_READY || to == ANT_JOB_FAILED) {
        /* the error is free text (a path, a peer's message): cut where it stopped being UTF-8
         * (a message cut at 255 bytes), and redacted if it looks like a credential, which the
         * log refuses; the detail is dumped whole, never cut, so it stays one JSON object */
        char err[256] = "";
        if (why != NULL) {
            snprintf(err, sizeof(err), "%s", why);
            ant_json_cut_to_text(err);
            if (ant_audit_looks_secret(err)) {
                snprintf(err, sizeof(err), "[redacted]");
            }
        }
        json_t *dj = json_pack("{s:I, s:I, s:s?}", "files", (json_int_t)info.files_total,
                               "bytes", (json_int_t)info.bytes_total, "error",
                               why != NULL ? err : NULL);
        char *detail = dj != NULL ? json_dumps(dj, JSON_COMPACT) : NULL;
        json_decref(dj);
        int e = audit_job(j, &info, to == ANT_JOB_READY ? "stage.ready" : "stage.failed",
                          to == ANT_JOB_READY ? "complete" : "failed",
                          detail != NULL ? detail : "{}");
        free(detail);
        if (e < 0) {
            ant_log_kv(ANT_LOG_ERROR, "jobs.unaudited", ((const char *[]){"job_id", run->id, NULL}),
                       "audit log refused the job's end: %s", strerror(-e));
        }
    }
    if (why != NULL) {
        ant_log_kv(ANT_LOG_WARN, "jobs.failed", ((const char *[]){"job_id", run->id, NULL}), "%s",
                   why);
    }
    free(c.pend);
    filelist_fini(&fl);
    if (remote) {
        /* counted out and the pass claimed at once: a remote job starting in between would
         * otherwise make the last one to end skip it */
        pthread_mutex_lock(&j->mu);
        j->remote_running--;
        bool trim = fed_cache_trim_claim_locked(j);
        pthread_mutex_unlock(&j->mu);
        if (trim) {
            fed_cache_trim(j, run->id);
        } else if (j->conf.fed_cache_max > 0 && j->conf.pool != NULL) {
            fed_step(j, run->id, ANT_JOBS_FED_TRIM_SKIPPED);
        }
    }
}

/* Claims the oldest queued job (under mu); NULL when there is none. */
static struct job_run *claim_locked(struct ant_jobs *j, int *err)
{
    sqlite3_stmt *s = NULL;
    char id[ANT_JOB_ID_LEN + 1] = "";
    *err = db_prepare(j,
                      "SELECT id FROM stage_jobs WHERE state = 'queued' ORDER BY created, rowid"
                      " LIMIT 1",
                      &s);
    if (*err < 0) {
        return NULL;
    }
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        col_copy(s, 0, id, sizeof(id));
    } else if (src != SQLITE_DONE) {
        *err = sqlerr(src);
    }
    sqlite3_finalize(s);
    if (id[0] == '\0') {
        return NULL;
    }
    struct job_run *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    *err = job_move(j, id, ANT_JOB_QUEUED, ANT_JOB_RUNNING, "started = COALESCE(started, ?3)",
                    ant_now_unix());
    if (*err < 0) {
        free(r);
        return NULL;
    }
    memcpy(r->id, id, sizeof(id));
    r->t0_ns = ant_mono_ns();
    atomic_init(&r->cancel, false);
    atomic_init(&r->discard, false);
    r->next = j->runs;
    j->runs = r;
    return r;
}

static void run_release_locked(struct ant_jobs *j, struct job_run *run)
{
    for (struct job_run **pp = &j->runs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == run) {
            *pp = run->next;
            break;
        }
    }
    free(run);
    pthread_cond_broadcast(&j->cv);
}

int ant_jobs_run_next(struct ant_jobs *j, bool *ran)
{
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    struct job_run *run = claim_locked(j, &rc);
    pthread_mutex_unlock(&j->mu);
    *ran = run != NULL;
    if (run == NULL) {
        return rc;
    }
    run_job(j, run);
    pthread_mutex_lock(&j->mu);
    run_release_locked(j, run);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void timed_wait(struct ant_jobs *j, unsigned secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    (void)pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

static void *worker_main(void *arg)
{
    struct ant_jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stopping) {
        int err = 0;
        struct job_run *run = claim_locked(j, &err);
        if (run == NULL) {
            if (err < 0 && err != -ESTALE) {
                ant_log(ANT_LOG_ERROR, "jobs.claim", "cannot take a job: %s", strerror(-err));
            }
            timed_wait(j, 1);
            continue;
        }
        if (j->stopping) {
            atomic_store(&run->cancel, true);
        }
        pthread_mutex_unlock(&j->mu);
        run_job(j, run);
        pthread_mutex_lock(&j->mu);
        run_release_locked(j, run);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static void *purger_main(void *arg)
{
    struct ant_jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stopping) {
        pthread_mutex_unlock(&j->mu);
        int n = ant_jobs_purge(j, 0);
        if (n < 0) {
            ant_log(ANT_LOG_ERROR, "jobs.purge", "purge pass failed: %s", strerror(-n));
        }
        pthread_mutex_lock(&j->mu);
        /* the condition is also signalled for every job queued or ended: wait out the interval */
        int64_t until = ant_mono_ns() + (int64_t)j->conf.purge_interval_s * 1000000000LL;
        while (!j->stopping && ant_mono_ns() < until) {
            timed_wait(j, 1);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}
