/* Opening a site for the daemon: configuration, folders, keys, TLS material, catalog, audit. */
#include "gateway/site.h"

#include "crypto/base/log.h"
#include "gateway/tlscert.h"
#include "policy/audit.h"
#include "policy/auth.h"
#include "policy/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Test hook (tests/integration/test_audit_failclosed.sh): while the file this variable names
 * exists, every fdatasync of the audit log fails with EIO, as on a failing disk. */
#define AUDIT_SYNC_FAIL_ENV "ANTENNA_TEST_AUDIT_SYNC_FAIL"

static int audit_sync_fail(void *ctx)
{
    return access((const char *)ctx, F_OK) == 0 ? -EIO : 0;
}

static int open_dir(int dirfd, const char *path, int *out, struct ant_diag *d)
{
    int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        ant_diag_set(d, "cannot open folder %s: %s", path, strerror(errno));
        return rc;
    }
    *out = fd;
    return 0;
}

static int read_file(int dirfd, const char *path, struct ant_buf *b, struct ant_diag *d)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : ant_read_all(fd, b);
    if (rc < 0) {
        ant_diag_set(d, "cannot read %s: %s", path, strerror(-rc));
    }
    ant_close(fd);
    return rc;
}

int ant_site_open(const char *dir, const char *config, struct ant_site **out, struct ant_diag *d)
{
    struct ant_site *s = calloc(1, sizeof(*s));
    int keysfd = -1, rc;
    if (s == NULL) {
        return -ENOMEM;
    }
    s->dirfd = s->archive_fd = s->scratch_fd = -1;
    ant_buf_init(&s->cert_pem, 1024 * 1024);
    ant_buf_init(&s->key_pem, 64 * 1024);
    ant_config_defaults(&s->cfg);
    rc = open_dir(AT_FDCWD, dir, &s->dirfd, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_config_load(config ? AT_FDCWD : s->dirfd, config ? config : "antenna.conf", &s->cfg,
                         d);
    if (rc < 0) {
        /* a configuration that cannot be read is a configuration error, like a bad line */
        rc = rc == -ENOMEM ? rc : -EINVAL;
        goto out;
    }
    g_ant_log_level = s->cfg.log_level;
    rc = open_dir(s->dirfd, s->cfg.archive_dir, &s->archive_fd, d);
    rc = rc < 0 ? rc : open_dir(s->dirfd, s->cfg.scratch_dir, &s->scratch_fd, d);
    rc = rc < 0 ? rc : open_dir(s->dirfd, "keys", &keysfd, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_site_keys_load(keysfd, getenv("ANTENNA_KEY_PASSPHRASE"), &s->keys, d);
    if (rc < 0) {
        goto out;
    }
    ant_key_b64(ant_key_public(s->keys.kx), s->x25519_b64);
    ant_key_b64(ant_signkey_public(s->keys.sign), s->ed25519_b64);
    rc = read_file(s->dirfd, s->cfg.tls_cert, &s->cert_pem, d);
    rc = rc < 0 ? rc : read_file(s->dirfd, s->cfg.tls_key, &s->key_pem, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_tlscert_fingerprint(ant_buf_view(&s->cert_pem), s->cert_sha256);
    if (rc < 0) {
        ant_diag_set(d, "%s: no PEM certificate", s->cfg.tls_cert);
        goto out;
    }
    /* one connection per HTTP worker, and a few for the stage runner and the purger */
    unsigned nconn = ant_config_http_threads(&s->cfg) + 4;
    rc = ant_store_pool_new(s->dirfd, "antenna.db", nconn, &s->pool);
    if (rc < 0) {
        ant_diag_set(d, "cannot open antenna.db: %s", strerror(-rc));
        goto out;
    }
    struct ant_store *st = ant_store_pool_acquire(s->pool);
    rc = ant_oidc_load(st, s->dirfd, &s->oidc, d);
    ant_store_pool_release(s->pool, st);
    if (rc < 0) {
        goto out;
    }
    struct ant_audit_opts ao = {
        .checkpoint_every = s->cfg.checkpoint_every,
        .checkpoint_seconds = s->cfg.checkpoint_seconds,
        .max_batch = s->cfg.audit_max_batch,
    };
    rc = ant_audit_open(s->dirfd, "audit.db", 0, s->keys.sign, &ao, &s->audit);
    if (rc < 0) {
        ant_diag_set(d, "cannot open audit.db: %s", strerror(-rc));
        goto out;
    }
    const char *fail = getenv(AUDIT_SYNC_FAIL_ENV);
    if (fail != NULL && fail[0] != '\0') {
        ant_log(ANT_LOG_WARN, "audit.test_sync_fail", "test hook: fdatasyncs fail while %s exists",
                fail);
        ant_audit_test_sync_hook(s->audit, audit_sync_fail, (void *)(uintptr_t)fail);
    }
    *out = s;
    s = NULL;
out:
    ant_close(keysfd);
    ant_site_close(s);
    return rc;
}

void ant_site_close(struct ant_site *s)
{
    if (s == NULL) {
        return;
    }
    ant_audit_close(s->audit);
    ant_oidc_free(s->oidc);
    ant_store_pool_free(s->pool);
    ant_site_keys_fini(&s->keys);
    ant_buf_fini(&s->cert_pem);
    ant_buf_wipe_fini(&s->key_pem);
    ant_close(s->archive_fd);
    ant_close(s->scratch_fd);
    ant_close(s->dirfd);
    free(s);
}

/* --- what a crash leaves in the archive --- */

#define HDR_TMP_MIN_AGE_S 600

/* name is exactly prefix, 16 lower-case hex digits and suffix */
static bool is_hex16_name(const char *name, const char *prefix, const char *suffix)
{
    size_t n = strlen(name), p = strlen(prefix), x = strlen(suffix);
    return n == p + 16 + x && memcmp(name, prefix, p) == 0 &&
           strspn(name + p, "0123456789abcdef") >= 16 && memcmp(name + p + 16, suffix, x) == 0;
}

bool ant_archive_id_is_plain(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;
    return n > 0 && n <= ANT_ID_MAX && strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

bool ant_archive_is_temporary(const char *name)
{
    return is_hex16_name(name, ".up-", ".tmp") || is_hex16_name(name, ".fetch-", ".tmp");
}

/* Removes `name` if it is a regular file written at least min_age_s ago and, when `locked`
 * (its writer keeps a lock), no one holds its lock. O_NONBLOCK: a FIFO under such a name is
 * opened without waiting for a writer, then left alone. */
static bool sweep_one(int dirfd, const char *name, int64_t min_age_s, bool locked, time_t now)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    bool gone = false;
    if (fd < 0) {
        return false;
    }
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && now - sb.st_mtime >= min_age_s &&
        (!locked || flock(fd, LOCK_EX | LOCK_NB) == 0)) {
        gone = unlinkat(dirfd, name, 0) == 0;
    }
    ant_close(fd); /* drops the lock */
    return gone;
}

/* Calls fn(dirfd, name, arg) for each entry of the folder dirfd (not . and ..); the fd is
 * borrowed. Entries removed meanwhile may or may not be seen. */
static size_t each_entry(int dirfd, size_t (*fn)(int, const char *, void *), void *arg)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* closedir closes it */
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    struct dirent *e;
    size_t n = 0;
    if (dir == NULL) {
        ant_close(fd);
        return 0;
    }
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n += fn(fd, e->d_name, arg);
        }
    }
    closedir(dir);
    return n;
}

struct sweep {
    int64_t min_age_s;
    time_t now;
};

static size_t sweep_hdr_entry(int dirfd, const char *name, void *arg)
{
    struct sweep *sw = arg;
    if (!is_hex16_name(name, ".tmp-", "")) {
        return 0;
    }
    int64_t age = sw->min_age_s > HDR_TMP_MIN_AGE_S ? sw->min_age_s : HDR_TMP_MIN_AGE_S;
    return sweep_one(dirfd, name, age, false, sw->now) ? 1 : 0;
}

static size_t sweep_ds_entry(int dirfd, const char *name, void *arg)
{
    struct sweep *sw = arg;
    if (ant_archive_is_temporary(name)) {
        return sweep_one(dirfd, name, sw->min_age_s, true, sw->now) ? 1 : 0;
    }
    if (strcmp(name, ".hdr") != 0) {
        return 0;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    size_t n = fd < 0 ? 0 : each_entry(fd, sweep_hdr_entry, sw);
    ant_close(fd);
    return n;
}

static size_t sweep_archive_entry(int dirfd, const char *name, void *arg)
{
    if (name[0] == '.') {
        return 0;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    size_t n = fd < 0 ? 0 : each_entry(fd, sweep_ds_entry, arg);
    ant_close(fd);
    return n;
}

size_t ant_archive_sweep(int archive_fd, int64_t min_age_s)
{
    struct sweep sw = {.min_age_s = min_age_s, .now = time(NULL)};
    return each_entry(archive_fd, sweep_archive_entry, &sw);
}
