/* Bearer credentials: API keys and OIDC tokens from configured issuers. */
#include "policy/auth.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/base/log.h"
#include "crypto/token.h"
#include "policy/policy_internal.h"

/* Identity providers rotate their signing keys: a JWKS file that changed (another inode, size
 * or modification time) is read again, at most once per JWKS_CHECK_MS per issuer, by the one
 * request that finds the check due. A file that no longer parses keeps the keys we have (and
 * is logged once per change): a broken rotation must not lock everybody out, nor let anybody
 * in. */
#define JWKS_CHECK_MS 1000

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* What changes after the load: reached through a pointer, so that the issuer list itself stays
 * read-only and a const struct ant_oidc can be shared by every thread. */
struct jwks_live {
    pthread_rwlock_t lock; /* jwks: verifications read-lock it, a reload write-locks the swap */
    struct ant_jwks *jwks;
    pthread_mutex_t check; /* held by the one request doing a check (trylock: others go on) */
    struct file_id seen;   /* the file last read (loaded or refused); under check */
    _Atomic int64_t next_check_ms;
    _Atomic bool stale; /* the catalog's row is gone or changed: never used again (see below) */
};

struct oidc_issuer {
    char *issuer;
    char *audience;
    char *path;
    struct jwks_live *live;
};

/* An issuer added (`antenna admin oidc add`) while the daemon runs is taken up by the first
 * token that names it: a token whose iss is not loaded has its request look that one issuer up
 * in oidc_issuers, at most once per ISSUER_SCAN_MS for the whole set, so tokens naming unknown
 * issuers cost one indexed lookup a second, whoever sends them. The list only grows, in place:
 * an entry is complete before the count that publishes it. An issuer removed (`antenna admin
 * oidc rm`) or removed and added again with another audience or JWKS file is found out by the
 * catalog read every uncached token makes (ant_store_oidc_principal: -ESTALE): its entry is
 * marked stale, refuses that token, and is skipped from then on; a row added again is loaded
 * as a new entry. Stale entries stay allocated (a reader may hold one) until the daemon stops,
 * and count against ANT_OIDC_MAX_ISSUERS. */
#define ISSUER_SCAN_MS 1000

struct oidc_grow {
    pthread_mutex_t mu; /* held by the one request adding an issuer (trylock: others go on) */
    _Atomic size_t n;   /* entries of iss[] published: complete, read-only from then on */
    _Atomic int64_t next_scan_ms;
    struct oidc_issuer iss[ANT_OIDC_MAX_ISSUERS];
};

/* Reached through pointers, so that a const struct ant_oidc can be shared by every thread. */
struct ant_oidc {
    int dirfd; /* the site folder, for the JWKS files' relative paths */
    struct oidc_grow *grow;
};

static void issuer_fini(struct oidc_issuer *e)
{
    free(e->issuer);
    free(e->audience);
    free(e->path);
    if (e->live != NULL) {
        ant_jwks_free(e->live->jwks);
        pthread_rwlock_destroy(&e->live->lock);
        pthread_mutex_destroy(&e->live->check);
        free(e->live);
    }
    memset(e, 0, sizeof(*e));
}

void ant_oidc_free(struct ant_oidc *o)
{
    if (o == NULL) {
        return;
    }
    if (o->grow != NULL) {
        for (size_t i = 0; i < atomic_load(&o->grow->n); i++) {
            issuer_fini(&o->grow->iss[i]);
        }
        pthread_mutex_destroy(&o->grow->mu);
        free(o->grow);
    }
    ant_close(o->dirfd);
    free(o);
}

size_t ant_oidc_count(const struct ant_oidc *o)
{
    return o != NULL ? atomic_load_explicit(&o->grow->n, memory_order_acquire) : 0;
}

static void file_id_of(const struct stat *sb, struct file_id *id)
{
    memset(id, 0, sizeof(*id));
    id->dev = sb->st_dev;
    id->ino = sb->st_ino;
    id->size = sb->st_size;
    id->mtime = sb->st_mtim;
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads and parses the JWKS at path; *id says which file it was (set even when the parse
 * fails, so that a refused file is not read again until it changes). */
static int load_jwks(int dirfd, const char *path, struct ant_jwks **out, struct file_id *id,
                     struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_JWKS_MAX);
    struct stat sb;
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = fd < 0 || fstat(fd, &sb) < 0 ? -errno : 0;
    if (rc == 0) {
        file_id_of(&sb, id);
        rc = ant_read_all(fd, &raw);
    }
    if (rc == 0) {
        rc = ant_jwks_parse(ant_buf_view(&raw), out, d);
    }
    ant_close(fd);
    ant_buf_fini(&raw);
    return rc;
}

/* The request that finds the issuer's check due does it; the others go on with the keys they
 * have. */
static void maybe_reload(const struct ant_oidc *o, const struct oidc_issuer *e)
{
    struct jwks_live *l = e->live;
    int64_t now = ant_mono_ns() / 1000000;
    if (now < atomic_load_explicit(&l->next_check_ms, memory_order_relaxed) ||
        pthread_mutex_trylock(&l->check) != 0) {
        return;
    }
    atomic_store_explicit(&l->next_check_ms, now + JWKS_CHECK_MS, memory_order_relaxed);
    struct stat sb;
    struct file_id id;
    struct ant_jwks *fresh = NULL;
    struct ant_diag d = {{0}};
    /* a file gone for a moment (being replaced?) or unchanged: keep the keys */
    if (fstatat(o->dirfd, e->path, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
        goto out;
    }
    file_id_of(&sb, &id);
    if (file_id_eq(&id, &l->seen)) {
        goto out;
    }
    int rc = load_jwks(o->dirfd, e->path, &fresh, &id, &d);
    l->seen = id;
    if (rc < 0) {
        ant_log(ANT_LOG_WARN, "oidc.jwks_refused",
                "OIDC issuer %s: the changed JWKS %s is not usable (%s): keeping its keys",
                e->issuer, e->path, ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    pthread_rwlock_wrlock(&l->lock);
    struct ant_jwks *old = l->jwks;
    l->jwks = fresh;
    pthread_rwlock_unlock(&l->lock);
    ant_jwks_free(old);
    ant_log(ANT_LOG_INFO, "oidc.jwks_reloaded", "OIDC issuer %s: keys read again from %s",
            e->issuer, e->path);
out:
    pthread_mutex_unlock(&l->check);
}

/* Fills e (zeroed) from one oidc_issuers row and reads its JWKS; on failure e is left for
 * issuer_fini and diag names the issuer. */
static int issuer_init(int dirfd, struct oidc_issuer *e, const char *iss, const char *aud,
                       const char *path, struct ant_diag *d)
{
    e->issuer = iss != NULL ? strdup(iss) : NULL;
    e->audience = aud != NULL ? strdup(aud) : NULL;
    e->path = path != NULL ? strdup(path) : NULL;
    e->live = calloc(1, sizeof(*e->live));
    if (e->issuer == NULL || e->audience == NULL || e->path == NULL || e->live == NULL) {
        free(e->live);
        e->live = NULL;
        return -ENOMEM;
    }
    pthread_rwlock_init(&e->live->lock, NULL);
    pthread_mutex_init(&e->live->check, NULL);
    atomic_init(&e->live->stale, false);
    atomic_init(&e->live->next_check_ms, ant_mono_ns() / 1000000 + JWKS_CHECK_MS);
    struct ant_diag jd = {{0}};
    int rc = load_jwks(dirfd, path, &e->live->jwks, &e->live->seen, &jd);
    if (rc < 0) {
        ant_diag_set(d, "OIDC issuer %s: JWKS %s: %s", iss, path, ant_diag_msg(&jd, strerror(-rc)));
    }
    return rc;
}

/* Steps s (SELECT issuer, audience, jwks_path), appending each row not loaded yet; the caller
 * holds grow->mu or is the load. */
static int issuers_add(int dirfd, struct oidc_grow *g, sqlite3_stmt *s, struct ant_diag *d)
{
    int rc = 0, src;
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *iss = (const char *)sqlite3_column_text(s, 0);
        size_t n = atomic_load_explicit(&g->n, memory_order_relaxed);
        bool known = false;
        for (size_t i = 0; i < n && iss != NULL && !known; i++) {
            known = !atomic_load(&g->iss[i].live->stale) && strcmp(g->iss[i].issuer, iss) == 0;
        }
        if (known) {
            continue;
        }
        if (n == ANT_OIDC_MAX_ISSUERS) {
            ant_diag_set(d, "more than %d OIDC issuers (removed or changed ones count until the"
                            " daemon restarts)", ANT_OIDC_MAX_ISSUERS);
            rc = -E2BIG;
            break;
        }
        struct oidc_issuer *e = &g->iss[n];
        rc = issuer_init(dirfd, e, iss, (const char *)sqlite3_column_text(s, 1),
                         (const char *)sqlite3_column_text(s, 2), d);
        if (rc < 0) {
            issuer_fini(e);
            break;
        }
        atomic_store_explicit(&g->n, n + 1, memory_order_release);
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    return rc;
}

int ant_oidc_load(struct ant_store *st, int dirfd, struct ant_oidc **out, struct ant_diag *d)
{
    struct ant_oidc *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        return -ENOMEM;
    }
    o->dirfd = -1;
    o->grow = calloc(1, sizeof(*o->grow));
    int rc = o->grow == NULL ? -ENOMEM : 0;
    if (rc == 0) {
        pthread_mutex_init(&o->grow->mu, NULL);
        atomic_init(&o->grow->n, 0);
        atomic_init(&o->grow->next_scan_ms, 0);
        o->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        rc = o->dirfd < 0 ? -errno : 0;
    }
    sqlite3_stmt *s = NULL;
    if (rc == 0) {
        s = ant_store_stmt(st, "SELECT issuer, audience, jwks_path FROM oidc_issuers"
                               " ORDER BY issuer");
        rc = s == NULL ? -EIO : issuers_add(o->dirfd, o->grow, s, d);
    }
    if (rc == 0) {
        *out = o;
        o = NULL;
    }
    ant_oidc_free(o);
    return rc;
}

/* A token named an issuer not loaded: if one request a second may, look that issuer up and
 * load it (an issuer added since start-up). A row whose JWKS cannot be used is logged and
 * left out, and looked up again at a later token. */
static void maybe_add_issuer(const struct ant_oidc *o, struct ant_store *st, const char *iss)
{
    struct oidc_grow *g = o->grow;
    int64_t now = ant_mono_ns() / 1000000;
    if (now < atomic_load_explicit(&g->next_scan_ms, memory_order_relaxed) ||
        pthread_mutex_trylock(&g->mu) != 0) {
        return;
    }
    atomic_store_explicit(&g->next_scan_ms, now + ISSUER_SCAN_MS, memory_order_relaxed);
    struct ant_diag d = {{0}};
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT issuer, audience, jwks_path FROM oidc_issuers"
                                         " WHERE issuer = ?");
    size_t before = atomic_load_explicit(&g->n, memory_order_relaxed);
    int rc = s == NULL ? -EIO : 0;
    if (rc == 0) {
        ant_bind_text(s, 1, iss);
        rc = issuers_add(o->dirfd, g, s, &d); /* writes only past what g->n publishes */
    }
    if (rc < 0) {
        ant_log(ANT_LOG_WARN, "oidc.issuer_refused", "OIDC issuer %s added to the catalog: %s",
                iss, ant_diag_msg(&d, strerror(-rc)));
    } else if (atomic_load_explicit(&g->n, memory_order_relaxed) > before) {
        ant_log(ANT_LOG_INFO, "oidc.issuer_added", "OIDC issuer %s: taken up from the catalog",
                iss);
    }
    pthread_mutex_unlock(&g->mu);
}

/* The loaded issuer named iss, or NULL. */
static const struct oidc_issuer *issuer_find(const struct ant_oidc *o, const char *iss)
{
    size_t n = atomic_load_explicit(&o->grow->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (!atomic_load_explicit(&o->grow->iss[i].live->stale, memory_order_relaxed) &&
            strcmp(o->grow->iss[i].issuer, iss) == 0) {
            return &o->grow->iss[i];
        }
    }
    return NULL;
}

int ant_oidc_authenticate(const struct ant_oidc *o, struct ant_store *st, struct ant_bytes token,
                          int64_t now, struct ant_principal *out)
{
    if (token.len > ANT_TOKEN_MAX) {
        return -E2BIG;
    }
    /* The unverified iss only picks which issuer's keys to verify with: one signature check per
     * token, whatever the number of issuers. */
    char iss[ANT_TOKEN_ID_MAX + 1];
    struct ant_diag d = {{0}};
    if (o == NULL || ant_token_peek_iss(token, iss, &d) < 0) {
        return -EKEYREJECTED;
    }
    const struct oidc_issuer *e = issuer_find(o, iss);
    if (e == NULL) {
        maybe_add_issuer(o, st, iss);
        e = issuer_find(o, iss);
    }
    if (e != NULL) {
        /* EdDSA too: identity providers offer it (RFC 8037); the keys are only the issuer's */
        struct ant_token_expect ex = {
            .algs = ANT_TOKEN_RS256 | ANT_TOKEN_ES256 | ANT_TOKEN_EDDSA,
            .iss = e->issuer,
            .aud = e->audience,
            .now = now,
            .skew_s = ANT_OIDC_SKEW_S,
        };
        json_t *claims = NULL;
        maybe_reload(o, e);
        pthread_rwlock_rdlock(&e->live->lock);
        int rc = ant_token_verify(token, e->live->jwks, &ex, &claims, &d);
        pthread_rwlock_unlock(&e->live->lock);
        if (rc == -ENOMEM) {
            return rc;
        }
        if (rc < 0) {
            return -EKEYREJECTED;
        }
        rc = ant_store_oidc_principal(st, e->issuer, e->audience, e->path, claims, out);
        json_decref(claims);
        if (rc == -ESTALE) {
            if (!atomic_exchange(&e->live->stale, true)) {
                ant_log(ANT_LOG_INFO, "oidc.issuer_dropped",
                        "OIDC issuer %s: removed or changed in the catalog, its loaded keys are"
                        " no longer used", e->issuer);
            }
            rc = -EKEYREJECTED;
        }
        return rc;
    }
    return -EKEYREJECTED;
}

int ant_auth_bearer(struct ant_store *st, const struct ant_oidc *o, struct ant_bytes cred,
                    int64_t now, struct ant_principal *out)
{
    if (cred.len >= 3 && memcmp(cred.p, "ak_", 3) == 0) {
        return ant_store_authenticate_key(st, cred, now, out);
    }
    return ant_oidc_authenticate(o, st, cred, now, out);
}
