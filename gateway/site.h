/* A running site: its configuration, folders, keys, catalog and audit log. Everything the
 * daemon's handlers need comes through this context (no globals), so a test can run two. */
#ifndef ANT_SITE_H
#define ANT_SITE_H

#include "crypto/base/base.h"
#include "crypto/keys.h"
#include "gateway/config.h"

struct ant_store_pool;
struct ant_audit;
struct ant_oidc;
struct ant_jobs;

struct ant_site {
    struct ant_config cfg;
    int dirfd;         /* the site folder */
    int archive_fd;    /* cfg.archive_dir, opened O_DIRECTORY */
    int scratch_fd;    /* cfg.scratch_dir */
    struct ant_site_keys keys;
    struct ant_store_pool *pool;
    struct ant_audit *audit;
    struct ant_oidc *oidc; /* the OIDC issuers of the catalog, loaded at start-up */
    struct ant_jobs *jobs; /* the stage runner, while serving (gateway/routes_stage.h) */
    struct ant_buf cert_pem;
    struct ant_buf key_pem; /* wiped on close */
    char cert_sha256[65];
    char x25519_b64[48];
    char ed25519_b64[48];
};

/* Opens the site in `dir` with the configuration file `config` (NULL: DIR/antenna.conf). The key
 * passphrase, if the site key is encrypted, comes from $ANTENNA_KEY_PASSPHRASE.
 * Returns 0, -EINVAL for a bad, missing or unreadable configuration (diag names file, line and
 * key, or why it cannot be read), or another
 * negative errno with diag saying what could not be opened. */
ANT_MUST_CHECK int ant_site_open(const char *dir, const char *config, struct ant_site **out,
                                 struct ant_diag *d);
void ant_site_close(struct ant_site *s); /* accepts NULL */

/* Archive temporaries: an upload's archive/<dataset>/.up-<16 hex>.tmp and a peer fetch's
 * .fetch-<16 hex>.tmp. Their writer holds flock(LOCK_EX) on them from creation until they are
 * renamed into place or removed. */
bool ant_archive_is_temporary(const char *name);
/* Whether id is one the service makes for an archive name (dataset and storage ids, "ds_...",
 * "f_..."): 1 to ANT_ID_MAX lower-case letters, digits and '_'. Nothing else is ever joined
 * into an archive path. */
bool ant_archive_id_is_plain(const char *id);
/* Removes what a crash left in the archive (archive_fd): the temporaries above that no process
 * holds locked and that were last written at least min_age_s ago (the age covers the moment
 * between a temporary's creation and its lock), and the download header cache's own
 * temporaries (.hdr/.tmp-<16 hex>, written whole in one go, not locked) at least ten minutes
 * old. Only regular files are removed, nothing is followed. Returns how many. */
size_t ant_archive_sweep(int archive_fd, int64_t min_age_s);

#endif
