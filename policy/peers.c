/* Peers, single use of federation tokens, and the cache of peers' files; see peers.h. */
#include "policy/peers.h"

#include "policy/policy_internal.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/base/log.h"
#include "crypto/token.h"

bool ant_peer_url_is_valid(const char *url)
{
    static const char scheme[] = "https://";
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        return false;
    }
    size_t len = strnlen(url, ANT_PEER_URL_MAX + 1);
    if (len > ANT_PEER_URL_MAX || len == sizeof(scheme) - 1 || url[len - 1] == '/') {
        return false;
    }
    const char *host = url + sizeof(scheme) - 1;
    if (*host == '/' || *host == ':') {
        return false;
    }
    for (const char *c = host; *c != '\0'; c++) {
        /* userinfo ('@') would let a URL look like one host and reach another; a query or
         * fragment has no place in a base URL that paths are appended to */
        if (*c <= ' ' || *c >= 0x7f || *c == '@' || *c == '?' || *c == '#' || *c == '\\') {
            return false;
        }
    }
    return true;
}

static bool key_is_zero(const uint8_t k[ANT_KEY_LEN])
{
    return sodium_is_zero(k, ANT_KEY_LEN) == 1;
}

static bool anchor_is_valid(struct ant_bytes pem)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    if (pem.len == 0 || pem.len > ANT_PEER_ANCHOR_MAX) {
        return false;
    }
    for (size_t i = 0; i < pem.len; i++) {
        if (pem.p[i] == 0) {
            return false;
        }
    }
    return memmem(pem.p, pem.len, begin, sizeof(begin) - 1) != NULL;
}

int ant_peer_add(struct ant_store *st, const struct ant_peer *p, struct ant_bytes anchor_pem)
{
    if (p == NULL || !ant_name_is_valid(p->id) || !ant_name_is_valid(p->region) ||
        !ant_peer_url_is_valid(p->url) || key_is_zero(p->x25519_pk) ||
        key_is_zero(p->ed25519_pk) || !anchor_is_valid(anchor_pem) ||
        memchr(p->added_by, 0, sizeof(p->added_by)) == NULL) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT INTO peers(id, url, region, x25519_pk,"
                                         " ed25519_pk, tls_anchor, added, added_by)"
                                         " VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, p->id);
    ant_bind_text(s, 2, p->url);
    ant_bind_text(s, 3, p->region);
    sqlite3_bind_blob(s, 4, p->x25519_pk, ANT_KEY_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 5, p->ed25519_pk, ANT_KEY_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, (const char *)anchor_pem.p, (int)anchor_pem.len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, p->added != 0 ? p->added : ant_now_unix());
    ant_bind_text(s, 8, p->added_by[0] != '\0' ? p->added_by : "unknown");
    return ant_store_exec_stmt(s);
}

static int copy_blob32(sqlite3_stmt *s, int i, uint8_t out[ANT_KEY_LEN])
{
    if (sqlite3_column_bytes(s, i) != ANT_KEY_LEN || sqlite3_column_blob(s, i) == NULL) {
        return -EBADMSG;
    }
    memcpy(out, sqlite3_column_blob(s, i), ANT_KEY_LEN);
    return 0;
}

int ant_peer_get(struct ant_store *st, const char *id, struct ant_peer *out)
{
    if (!ant_name_is_valid(id)) {
        return -ENOENT;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT id, url, region, x25519_pk, ed25519_pk, added,"
                                         " added_by FROM peers WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    struct ant_peer p;
    memset(&p, 0, sizeof(p));
    ant_bind_text(s, 1, id);
    int src = sqlite3_step(s);
    int rc;
    if (src == SQLITE_DONE) {
        rc = -ENOENT;
    } else if (src != SQLITE_ROW) {
        rc = ant_sqlite_err(src);
    } else {
        rc = ant_col_copy(s, 0, p.id, sizeof(p.id));
        rc = rc < 0 ? rc : ant_col_copy(s, 1, p.url, sizeof(p.url));
        rc = rc < 0 ? rc : ant_col_copy(s, 2, p.region, sizeof(p.region));
        rc = rc < 0 ? rc : copy_blob32(s, 3, p.x25519_pk);
        rc = rc < 0 ? rc : copy_blob32(s, 4, p.ed25519_pk);
        p.added = sqlite3_column_int64(s, 5);
        rc = rc < 0 ? rc : ant_col_copy(s, 6, p.added_by, sizeof(p.added_by));
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = p;
    }
    return rc;
}

int ant_peer_anchor(struct ant_store *st, const char *id, struct ant_buf *out)
{
    if (!ant_name_is_valid(id)) {
        return -ENOENT;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT tls_anchor FROM peers WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, id);
    int src = sqlite3_step(s);
    int rc;
    if (src == SQLITE_DONE) {
        rc = -ENOENT;
    } else if (src != SQLITE_ROW) {
        rc = ant_sqlite_err(src);
    } else {
        const void *t = sqlite3_column_text(s, 0);
        int n = sqlite3_column_bytes(s, 0);
        rc = t == NULL ? -EBADMSG : ant_buf_append(out, t, (size_t)n);
        rc = rc < 0 ? rc : ant_buf_terminate(out);
    }
    sqlite3_reset(s);
    return rc;
}

int ant_peer_remove(struct ant_store *st, const char *id)
{
    if (!ant_name_is_valid(id)) {
        return -ENOENT;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "DELETE FROM peers WHERE id = ?");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, id);
    int rc = ant_store_exec_stmt(s);
    if (rc == 0 && sqlite3_changes(st->db) == 0) {
        rc = -ENOENT;
    }
    return rc;
}

int ant_peer_list(struct ant_store *st, json_t **out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT id, url, region, x25519_pk, ed25519_pk, added,"
                                         " added_by FROM peers ORDER BY id");
    json_t *a = json_array();
    int rc = (s == NULL || a == NULL) ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        uint8_t kx[ANT_KEY_LEN], ked[ANT_KEY_LEN];
        char bx[48], bed[48];
        rc = copy_blob32(s, 3, kx);
        rc = rc < 0 ? rc : copy_blob32(s, 4, ked);
        if (rc < 0) {
            break;
        }
        ant_key_b64(kx, bx);
        ant_key_b64(ked, bed);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id",
                              (const char *)sqlite3_column_text(s, 0), "url",
                              (const char *)sqlite3_column_text(s, 1), "region",
                              (const char *)sqlite3_column_text(s, 2), "x25519", bx, "ed25519",
                              bed, "added", (json_int_t)sqlite3_column_int64(s, 5), "added_by",
                              (const char *)sqlite3_column_text(s, 6));
        if (o == NULL || json_array_append_new(a, o) != 0) {
            rc = -ENOMEM;
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    if (s != NULL) {
        sqlite3_reset(s);
    }
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    json_decref(a);
    return rc;
}

int ant_peer_jti_use(struct ant_store *st, const char *iss, const char *jti, int64_t exp,
                     int64_t now)
{
    if (iss == NULL || jti == NULL || iss[0] == '\0' || jti[0] == '\0' ||
        strnlen(iss, 256) > 255 || strnlen(jti, 256) > 255) {
        return -EINVAL;
    }
    sqlite3_stmt *purge = ant_store_stmt(st, "DELETE FROM fed_jti WHERE expires < ?");
    sqlite3_stmt *ins =
        ant_store_stmt(st, "INSERT INTO fed_jti(iss, jti, expires) VALUES(?, ?, ?)");
    if (purge == NULL || ins == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(purge, 1, now);
    int rc = ant_store_exec_stmt(purge);
    if (rc < 0) {
        return rc;
    }
    ant_bind_text(ins, 1, iss);
    ant_bind_text(ins, 2, jti);
    /* The verifier accepts a token until exp + its clock skew (60 s for federation tokens,
     * at most ANT_TOKEN_SKEW_MAX for any caller): a row purged at exp let the same token be
     * replayed in that window. Kept until the latest moment any verifier could still accept
     * it (or now, for a token accepted already past exp). */
    int64_t keep = (exp > now ? exp : now) + ANT_TOKEN_SKEW_MAX;
    sqlite3_bind_int64(ins, 3, keep);
    rc = ant_store_exec_stmt(ins);
    return rc == -EEXIST ? -EALREADY : rc;
}

int ant_fed_cache_get(struct ant_store *st, const char *peer_id, const char *dataset_id,
                      const char *path, const uint8_t sha256_c4gh[32], int64_t now,
                      struct ant_fed_cached *out)
{
    if (!ant_name_is_valid(peer_id) || dataset_id == NULL || !ant_path_is_valid(path)) {
        return -ENOENT;
    }
    /* Marked used before it is read: an eviction pass that deleted the row first makes this a
     * miss (the file is fetched again); one that comes later finds it recent and keeps it. */
    sqlite3_stmt *touch = ant_store_stmt(st, "UPDATE fed_cache SET last_used = MAX(last_used, ?)"
                                             " WHERE peer_id = ? AND dataset_id = ? AND path = ?"
                                             " AND sha256_c4gh = ?"
                                             " AND peer_id IN (SELECT id FROM peers)");
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT storage, size, sha256_c4gh FROM fed_cache"
                                         " WHERE peer_id = ? AND dataset_id = ? AND path = ?"
                                         " AND peer_id IN (SELECT id FROM peers)");
    if (touch == NULL || s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(touch, 1, now != 0 ? now : ant_now_unix());
    ant_bind_text(touch, 2, peer_id);
    ant_bind_text(touch, 3, dataset_id);
    ant_bind_text(touch, 4, path);
    sqlite3_bind_blob(touch, 5, sha256_c4gh, 32, SQLITE_TRANSIENT);
    int rc = ant_store_exec_stmt(touch);
    if (rc < 0) {
        return rc;
    }
    struct ant_fed_cached c;
    memset(&c, 0, sizeof(c));
    ant_bind_text(s, 1, peer_id);
    ant_bind_text(s, 2, dataset_id);
    ant_bind_text(s, 3, path);
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        rc = -ENOENT;
    } else if (src != SQLITE_ROW) {
        rc = ant_sqlite_err(src);
    } else {
        rc = ant_col_copy(s, 0, c.storage, sizeof(c.storage));
        c.size = (uint64_t)sqlite3_column_int64(s, 1);
        rc = rc < 0 ? rc : copy_blob32(s, 2, c.sha256_c4gh);
        if (rc == 0 && sodium_memcmp(c.sha256_c4gh, sha256_c4gh, 32) != 0) {
            rc = -ENOENT;
        }
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = c;
    }
    return rc;
}

int ant_fed_cache_put(struct ant_store *st, const char *peer_id, const char *dataset_id,
                      const char *path, const struct ant_fed_cached *c, int64_t now)
{
    if (!ant_name_is_valid(peer_id) || dataset_id == NULL || dataset_id[0] == '\0' ||
        strnlen(dataset_id, ANT_ID_MAX + 1) > ANT_ID_MAX || !ant_path_is_valid(path) ||
        c == NULL || c->storage[0] == '\0' || c->size > INT64_MAX) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "INSERT OR REPLACE INTO fed_cache(peer_id, dataset_id,"
                                         " path, sha256_c4gh, size, storage, created, last_used)"
                                         " VALUES(?, ?, ?, ?, ?, ?, ?7, ?7)");
    if (s == NULL) {
        return -EIO;
    }
    ant_bind_text(s, 1, peer_id);
    ant_bind_text(s, 2, dataset_id);
    ant_bind_text(s, 3, path);
    sqlite3_bind_blob(s, 4, c->sha256_c4gh, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, (int64_t)c->size);
    ant_bind_text(s, 6, c->storage);
    sqlite3_bind_int64(s, 7, now != 0 ? now : ant_now_unix());
    return ant_store_exec_stmt(s);
}

/* --- eviction --- */

/* Rows deleted per transaction: one commit (an fsync: synchronous=FULL) per batch rather than
 * per file, and few enough that a pull waiting on the write lock is not held up for long. */
#define EVICT_BATCH 64

struct evict_row {
    char peer[ANT_NAME_MAX + 1];
    char dataset[ANT_ID_MAX + 1];
    char path[ANT_PATH_MAX + 1];
    char storage[ANT_ID_MAX + 1];
    uint64_t size;
    bool gone; /* its row was deleted by this batch */
};

/* One non-negative integer from a one-row query (a sum or a count). */
static int query_u64(struct ant_store *st, const char *sql, uint64_t *out)
{
    sqlite3_stmt *s = ant_store_stmt(st, sql);
    if (s == NULL) {
        return -EIO;
    }
    int src = sqlite3_step(s);
    int rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? -EIO : ant_sqlite_err(src);
    if (rc == 0) {
        int64_t v = sqlite3_column_int64(s, 0);
        *out = v > 0 ? (uint64_t)v : 0;
    }
    sqlite3_reset(s);
    return rc;
}

int ant_fed_cache_bytes(struct ant_store *st, uint64_t *out)
{
    return query_u64(st, "SELECT COALESCE(SUM(size), 0) FROM fed_cache", out);
}

int ant_fed_cache_remote_jobs_running(struct ant_store *st, uint64_t *out)
{
    return query_u64(st,
                     "SELECT count(*) FROM stage_jobs"
                     " WHERE state = 'running' AND peer_id IS NOT NULL",
                     out);
}

/* The least recently used rows last used before `cutoff`, at most EVICT_BATCH, into rows. */
static int evict_candidates(struct ant_store *st, int64_t cutoff, struct evict_row *rows,
                            size_t *n_out)
{
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT peer_id, dataset_id, path, storage, size"
                                         " FROM fed_cache WHERE last_used < ?"
                                         " ORDER BY last_used, created, peer_id, dataset_id, path"
                                         " LIMIT ?");
    if (s == NULL) {
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, cutoff);
    sqlite3_bind_int(s, 2, EVICT_BATCH);
    size_t n = 0;
    int rc = 0;
    int src = SQLITE_DONE;
    while (n < EVICT_BATCH && (src = sqlite3_step(s)) == SQLITE_ROW) {
        struct evict_row *r = &rows[n];
        memset(r, 0, sizeof(*r));
        rc = ant_col_copy(s, 0, r->peer, sizeof(r->peer));
        rc = rc < 0 ? rc : ant_col_copy(s, 1, r->dataset, sizeof(r->dataset));
        rc = rc < 0 ? rc : ant_col_copy(s, 2, r->path, sizeof(r->path));
        rc = rc < 0 ? rc : ant_col_copy(s, 3, r->storage, sizeof(r->storage));
        if (rc < 0) {
            break;
        }
        int64_t size = sqlite3_column_int64(s, 4);
        r->size = size > 0 ? (uint64_t)size : 0;
        n++;
    }
    if (rc == 0 && n < EVICT_BATCH && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    *n_out = n;
    return rc;
}

/* Deletes, in one transaction, the rows of `rows` still unused since cutoff, until *total is at
 * most max_bytes; marks those deleted `gone`. */
static int evict_rows(struct ant_store *st, struct evict_row *rows, size_t n, int64_t cutoff,
                      uint64_t max_bytes, uint64_t *total)
{
    sqlite3_stmt *s = ant_store_stmt(st, "DELETE FROM fed_cache WHERE peer_id = ?"
                                         " AND dataset_id = ? AND path = ? AND storage = ?"
                                         " AND last_used < ?");
    if (s == NULL) {
        return -EIO;
    }
    uint64_t left = *total;
    int rc = ant_store_begin(st);
    for (size_t i = 0; rc == 0 && i < n && left > max_bytes; i++) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        ant_bind_text(s, 1, rows[i].peer);
        ant_bind_text(s, 2, rows[i].dataset);
        ant_bind_text(s, 3, rows[i].path);
        ant_bind_text(s, 4, rows[i].storage);
        sqlite3_bind_int64(s, 5, cutoff);
        rc = ant_store_exec_stmt(s);
        /* no change: looked up (or replaced) since the candidates were read, so kept */
        rows[i].gone = rc == 0 && sqlite3_changes(st->db) == 1;
        if (rows[i].gone) {
            left = rows[i].size > left ? 0 : left - rows[i].size;
        }
    }
    rc = rc < 0 ? rc : ant_store_commit(st);
    if (rc < 0) {
        ant_store_rollback(st);
        for (size_t i = 0; i < n; i++) {
            rows[i].gone = false;
        }
        return rc;
    }
    *total = left;
    return 0;
}

int ant_fed_cache_evict(struct ant_store *st, int archive_fd, uint64_t max_bytes, int64_t now,
                        int64_t grace_s, struct ant_fed_evict_stats *out)
{
    struct ant_fed_evict_stats es;
    struct evict_row *rows = NULL;
    int fedfd = -1;
    memset(&es, 0, sizeof(es));
    if (st == NULL || archive_fd < 0 || grace_s < 0) {
        return -EINVAL;
    }
    int64_t cutoff = (now != 0 ? now : ant_now_unix()) - grace_s;
    int rc = ant_fed_cache_bytes(st, &es.total_before);
    es.total_after = es.total_before;
    if (rc < 0 || max_bytes == 0 || es.total_before <= max_bytes) {
        goto out;
    }
    fedfd = openat(archive_fd, "fed", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fedfd < 0 && errno != ENOENT) {
        /* rows removed with their files left behind would free nothing on disk */
        rc = -errno;
        goto out;
    }
    rows = calloc(EVICT_BATCH, sizeof(*rows));
    if (rows == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (rc == 0 && es.total_after > max_bytes) {
        size_t n = 0;
        rc = evict_candidates(st, cutoff, rows, &n);
        if (rc < 0 || n == 0) {
            break; /* n == 0: what is left was used within the grace period */
        }
        uint64_t before = es.total_after;
        rc = evict_rows(st, rows, n, cutoff, max_bytes, &es.total_after);
        if (rc < 0) {
            break;
        }
        es.evicted_bytes += before - es.total_after;
        /* The rows are committed: from here on nothing finds these files, so they can go. An
         * unlink lost in a crash leaves a file no row names, swept at the next start-up. */
        for (size_t i = 0; i < n; i++) {
            char name[ANT_ID_MAX + 8];
            if (!rows[i].gone) {
                continue;
            }
            es.evicted_files++;
            if (fedfd < 0) {
                continue;
            }
            /* the pull names its copies "fc_" and hex (staging/fetch.c); a row naming anything
             * that is not a plain name (a path, a dot file) loses its row, no file touched */
            if (!ant_name_is_valid(rows[i].storage)) {
                es.unlink_failed++;
                ant_log(ANT_LOG_WARN, "fed.cache_unlink",
                        "cache row of %s:%s names no file of archive/fed: row removed only",
                        rows[i].peer, rows[i].dataset);
                continue;
            }
            snprintf(name, sizeof(name), "%s.c4gh", rows[i].storage);
            if (unlinkat(fedfd, name, 0) < 0 && errno != ENOENT) {
                es.unlink_failed++;
                ant_log(ANT_LOG_WARN, "fed.cache_unlink", "cannot remove archive/fed/%s: %s", name,
                        strerror(errno));
            }
        }
        bool progress = false;
        for (size_t i = 0; i < n; i++) {
            progress = progress || rows[i].gone;
        }
        if (!progress) {
            break; /* all looked up meanwhile: stop rather than risk spinning; the next pass
                      goes on */
        }
    }
out:
    if (rc == 0 && out != NULL) {
        *out = es;
    }
    free(rows);
    ant_close(fedfd);
    return rc;
}

/* --- witnessed checkpoints --- */

int ant_peer_witness_top(struct ant_store *st, const char *peer_id, int64_t *out)
{
    if (!ant_name_is_valid(peer_id)) {
        return -EINVAL;
    }
    sqlite3_stmt *top = ant_store_stmt(st, "SELECT COALESCE(MAX(seq), 0) FROM peer_witness"
                                           " WHERE peer = ?");
    if (top == NULL) {
        return -EIO;
    }
    ant_bind_text(top, 1, peer_id);
    int src = sqlite3_step(top);
    int rc = src == SQLITE_ROW ? 0 : ant_sqlite_err(src);
    rc = rc == 0 && src != SQLITE_ROW ? -EIO : rc;
    if (rc == 0) {
        *out = sqlite3_column_int64(top, 0);
    }
    sqlite3_reset(top);
    return rc;
}

int ant_peer_witness_record(struct ant_store *st, const char *peer_id,
                            const struct ant_audit_ckpt *c, int64_t asked_top, int64_t seen_ms,
                            struct ant_witness_result *out)
{
    if (!ant_name_is_valid(peer_id) || c == NULL || c->seq < 1 || c->time_ms < 0 ||
        c->prev_seq < 0 || c->prev_seq >= c->seq || asked_top < 0) {
        return -EINVAL;
    }
    sqlite3_stmt *same = ant_store_stmt(st, "SELECT hash = ?3 FROM peer_witness"
                                            " WHERE peer = ?1 AND seq = ?2 ORDER BY 1 DESC");
    sqlite3_stmt *seen = ant_store_stmt(st, "SELECT 1 FROM peer_witness_rollback WHERE peer = ?"
                                            " AND seq = ? AND hash = ? AND highest = ?");
    sqlite3_stmt *ins = ant_store_stmt(st, "INSERT INTO peer_witness(peer, seq, hash, time_ms,"
                                           " prev_seq, sig, seen_ms) VALUES(?, ?, ?, ?, ?, ?, ?)");
    sqlite3_stmt *back = ant_store_stmt(st, "INSERT INTO peer_witness_rollback(peer, seq, hash,"
                                            " highest, seen_ms) VALUES(?, ?, ?, ?, ?)");
    if (same == NULL || seen == NULL || ins == NULL || back == NULL) {
        return -EIO;
    }
    struct ant_witness_result res = {.highest = asked_top};
    bool known = false, other = false;
    int64_t at = seen_ms != 0 ? seen_ms : ant_now_unix() * 1000;
    int rc = ant_store_begin(st);
    if (rc < 0) {
        return rc;
    }
    ant_bind_text(same, 1, peer_id);
    sqlite3_bind_int64(same, 2, c->seq);
    sqlite3_bind_blob(same, 3, c->hash, ANT_AUDIT_HASH_LEN, SQLITE_TRANSIENT);
    int src = sqlite3_step(same);
    if (src == SQLITE_ROW) {
        /* a row of this hash sorts first: known; only other hashes: equivocation */
        known = sqlite3_column_int(same, 0) != 0;
        other = !known;
    } else if (src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(same);
    if (rc == 0 && c->seq < asked_top) {
        /* behind what the peer served before it was asked: recorded or not, a rollback */
        ant_bind_text(seen, 1, peer_id);
        sqlite3_bind_int64(seen, 2, c->seq);
        sqlite3_bind_blob(seen, 3, c->hash, ANT_AUDIT_HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(seen, 4, asked_top);
        src = sqlite3_step(seen);
        rc = src == SQLITE_ROW || src == SQLITE_DONE ? 0 : ant_sqlite_err(src);
        res.rollback_seen = src == SQLITE_ROW;
        res.rollback = src == SQLITE_DONE;
        sqlite3_reset(seen);
    }
    if (rc == 0 && !known) {
        ant_bind_text(ins, 1, peer_id);
        sqlite3_bind_int64(ins, 2, c->seq);
        sqlite3_bind_blob(ins, 3, c->hash, ANT_AUDIT_HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 4, c->time_ms);
        sqlite3_bind_int64(ins, 5, c->prev_seq);
        sqlite3_bind_blob(ins, 6, c->sig, ANT_SIG_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 7, at);
        rc = ant_store_exec_stmt(ins);
        res.added = rc == 0;
        res.equivocation = rc == 0 && other;
    }
    if (rc == 0 && res.rollback) {
        ant_bind_text(back, 1, peer_id);
        sqlite3_bind_int64(back, 2, c->seq);
        sqlite3_bind_blob(back, 3, c->hash, ANT_AUDIT_HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(back, 4, asked_top);
        sqlite3_bind_int64(back, 5, at);
        rc = ant_store_exec_stmt(back);
    }
    if (rc == 0) {
        rc = ant_store_commit(st);
    } else {
        ant_store_rollback(st);
    }
    if (rc == 0) {
        *out = res;
    }
    return rc;
}

int ant_peer_witnessed(struct ant_store *st, const char *peer_id, struct ant_audit_ckpt **out,
                       int64_t **seen, size_t *n)
{
    if (!ant_name_is_valid(peer_id)) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT seq, hash, time_ms, prev_seq, sig, seen_ms"
                                         " FROM peer_witness WHERE peer = ?"
                                         " ORDER BY seq, seen_ms, hash");
    if (s == NULL) {
        return -EIO;
    }
    struct ant_audit_ckpt *arr = NULL;
    int64_t *at = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0, src;
    ant_bind_text(s, 1, peer_id);
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t ncap = cap != 0 ? 2 * cap : 16;
            struct ant_audit_ckpt *p = realloc(arr, ncap * sizeof(*arr));
            arr = p != NULL ? p : arr;
            int64_t *q = p != NULL ? realloc(at, ncap * sizeof(*at)) : NULL;
            at = q != NULL ? q : at;
            if (q == NULL) {
                rc = -ENOMEM;
                break;
            }
            cap = ncap;
        }
        struct ant_audit_ckpt *c = &arr[cnt];
        c->seq = sqlite3_column_int64(s, 0);
        c->time_ms = sqlite3_column_int64(s, 2);
        c->prev_seq = sqlite3_column_int64(s, 3);
        if (sqlite3_column_bytes(s, 1) != ANT_AUDIT_HASH_LEN ||
            sqlite3_column_bytes(s, 4) != ANT_SIG_LEN) {
            rc = -EIO; /* the table's CHECKs make this a corrupt file */
            break;
        }
        memcpy(c->hash, sqlite3_column_blob(s, 1), ANT_AUDIT_HASH_LEN);
        memcpy(c->sig, sqlite3_column_blob(s, 4), ANT_SIG_LEN);
        at[cnt++] = sqlite3_column_int64(s, 5);
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = arr;
        *n = cnt;
        arr = NULL;
        if (seen != NULL) {
            *seen = at;
            at = NULL;
        }
    }
    free(arr);
    free(at);
    return rc;
}

int ant_peer_witness_rollbacks(struct ant_store *st, const char *peer_id,
                               struct ant_witness_rollback **out, size_t *n)
{
    if (!ant_name_is_valid(peer_id)) {
        return -EINVAL;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT seq, hash, highest, seen_ms"
                                         " FROM peer_witness_rollback WHERE peer = ?"
                                         " ORDER BY seen_ms, seq, highest, hash");
    if (s == NULL) {
        return -EIO;
    }
    struct ant_witness_rollback *arr = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0, src;
    ant_bind_text(s, 1, peer_id);
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t ncap = cap != 0 ? 2 * cap : 8;
            struct ant_witness_rollback *p = realloc(arr, ncap * sizeof(*arr));
            if (p == NULL) {
                rc = -ENOMEM;
                break;
            }
            arr = p;
            cap = ncap;
        }
        struct ant_witness_rollback *r = &arr[cnt];
        if (sqlite3_column_bytes(s, 1) != ANT_AUDIT_HASH_LEN) {
            rc = -EIO; /* the foreign key to peer_witness makes this a corrupt file */
            break;
        }
        r->seq = sqlite3_column_int64(s, 0);
        memcpy(r->hash, sqlite3_column_blob(s, 1), ANT_AUDIT_HASH_LEN);
        r->highest = sqlite3_column_int64(s, 2);
        r->seen_ms = sqlite3_column_int64(s, 3);
        cnt++;
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = arr;
        *n = cnt;
        arr = NULL;
    }
    free(arr);
    return rc;
}
