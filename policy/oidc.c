/* Bearer credentials: API keys and OIDC tokens from configured issuers. */
#include "policy/auth.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/base/log.h"
#include "crypto/token.h"
#include "policy/policy_internal.h"

struct oidc_issuer {
    char *issuer;
    char *audience;
    struct ant_jwks *jwks;
};

struct ant_oidc {
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
        ant_jwks_free(o->iss[i].jwks);
    }
    free(o);
}

size_t ant_oidc_count(const struct ant_oidc *o)
{
    return o != NULL ? o->n : 0;
}

static int load_jwks(int dirfd, const char *path, struct ant_jwks **out, struct ant_diag *d)
{
    struct ant_buf raw = ANT_BUF_INIT(ANT_JWKS_MAX);
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int rc = fd < 0 ? -errno : ant_read_all(fd, &raw);
    if (rc == 0) {
        rc = ant_jwks_parse(ant_buf_view(&raw), out, d);
    }
    ant_close(fd);
    ant_buf_fini(&raw);
    return rc;
}

int ant_oidc_load(struct ant_store *st, int dirfd, struct ant_oidc **out, struct ant_diag *d)
{
    struct ant_oidc *o = calloc(1, sizeof(*o));
    int rc = o == NULL ? -ENOMEM : 0;
    int src = SQLITE_DONE;
    if (rc < 0) {
        return rc;
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
        o->n++;
        if (e->issuer == NULL || e->audience == NULL || path == NULL) {
            rc = -ENOMEM;
            break;
        }
        struct ant_diag jd = {{0}};
        rc = load_jwks(dirfd, path, &e->jwks, &jd);
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
        int rc = ant_token_verify(token, e->jwks, &ex, &claims, &d);
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
