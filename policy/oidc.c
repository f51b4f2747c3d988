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
};

struct oidc_issuer {
    char *issuer;
    char *audience;
    char *path;
    struct jwks_live *live;
};

struct ant_oidc {
    int dirfd; /* the site folder, for the JWKS files' relative paths */
    size_t n;
    struct oidc_issuer iss[ANT_OIDC_MAX_ISSUERS];
};

void ant_oidc_free(struct ant_oidc *o)
{
    if (o == NULL) {
        return;
    }
    for (size_t i = 0; i < o->n; i++) {
        free(o->iss[i].issuer);
        free(o->iss[i].audience);
        free(o->iss[i].path);
        if (o->iss[i].live != NULL) {
            ant_jwks_free(o->iss[i].live->jwks);
            pthread_rwlock_destroy(&o->iss[i].live->lock);
            pthread_mutex_destroy(&o->iss[i].live->check);
            free(o->iss[i].live);
        }
    }
    ant_close(o->dirfd);
    free(o);
}

size_t ant_oidc_count(const struct ant_oidc *o)
{
    return o != NULL ? o->n : 0;
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

int ant_oidc_load(struct ant_store *st, int dirfd, struct ant_oidc **out, struct ant_diag *d)
{
    struct ant_oidc *o = calloc(1, sizeof(*o));
    int rc = o == NULL ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    if (rc < 0) {
        return rc;
    }
    o->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (o->dirfd < 0) {
        rc = -errno;
        goto out;
    }
    sqlite3_stmt *s = ant_store_stmt(st, "SELECT issuer, audience, jwks_path FROM oidc_issuers"
                                         " ORDER BY issuer");
    if (s == NULL) {
        rc = -EIO;
        goto out;
    }
    while (rc == 0 && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *iss = (const char *)sqlite3_column_text(s, 0);
        const char *aud = (const char *)sqlite3_column_text(s, 1);
        const char *path = (const char *)sqlite3_column_text(s, 2);
        if (o->n == ANT_OIDC_MAX_ISSUERS) {
            rc = -E2BIG;
            ant_diag_set(d, "more than %d OIDC issuers", ANT_OIDC_MAX_ISSUERS);
            break;
        }
        struct oidc_issuer *e = &o->iss[o->n];
        e->issuer = iss != NULL ? strdup(iss) : NULL;
        e->audience = aud != NULL ? strdup(aud) : NULL;
        e->path = path != NULL ? strdup(path) : NULL;
        e->live = calloc(1, sizeof(*e->live));
        o->n++;
        if (e->issuer == NULL || e->audience == NULL || e->path == NULL || e->live == NULL) {
            rc = -ENOMEM;
            break;
        }
        pthread_rwlock_init(&e->live->lock, NULL);
        pthread_mutex_init(&e->live->check, NULL);
        atomic_init(&e->live->next_check_ms, ant_mono_ns() / 1000000 + JWKS_CHECK_MS);
        struct ant_diag jd = {{0}};
        rc = load_jwks(o->dirfd, path, &e->live->jwks, &e->live->seen, &jd);
        if (rc < 0) {
            ant_diag_set(d, "OIDC issuer %s: JWKS %s: %s", iss, path,
                         ant_diag_msg(&jd, strerror(-rc)));
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = ant_sqlite_err(src);
    }
    sqlite3_reset(s);
    if (rc == 0) {
        *out = o;
        o = NULL;
    }
out:
    ant_oidc_free(o);
    return rc;
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
    for (size_t i = 0; i < o->n; i++) {
        const struct oidc_issuer *e = &o->iss[i];
        if (strcmp(e->issuer, iss) != 0) {
            continue;
        }
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
        rc = ant_store_oidc_principal(st, e->issuer, claims, out);
        json_decref(claims);
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
