/* The saved login of the client commands; see client.h. */
#include "gateway/client.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A CA bundle bigger than this is not a site's certificate. */
#define LOGIN_CA_MAX (1u << 20)

int ant_client_login_dir(char *out, size_t n)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int w;
    /* XDG Base Directory spec: a relative $XDG_CONFIG_HOME is invalid and ignored */
    if (xdg != NULL && xdg[0] == '/') {
        w = snprintf(out, n, "%s/antenna", xdg);
    } else if (home != NULL && home[0] == '/') {
        w = snprintf(out, n, "%s/.config/antenna", home);
    } else {
        return -ENOENT;
    }
    return w < 0 || (size_t)w >= n ? -ENAMETOOLONG : 0;
}

/* mkdir -p with mode 0700 for what it creates; an existing folder is left as it is. */
static int mkdir_parents(char *path)
{
    for (char *s = strchr(path + 1, '/');; s = strchr(s + 1, '/')) {
        if (s != NULL) {
            *s = '\0';
        }
        int rc = mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
        if (s == NULL || rc < 0) {
            if (s != NULL) {
                *s = '/';
            }
            return rc;
        }
        *s = '/';
    }
}

/* Opens the login folder (creating it unless `create` is false), owned by us and closed to
 * group and others: as ssh with ~/.ssh, a folder others can write into is not trusted. */
static int open_dir(bool create, char *path, size_t n, struct ant_diag *d)
{
    struct stat sb;
    int rc = ant_client_login_dir(path, n);
    if (rc < 0) {
        if (create || rc != -ENOENT) { /* reading: no folder is no login */
            ant_diag_set(d, "no folder for the login: set $HOME or $XDG_CONFIG_HOME");
        }
        return rc;
    }
    if (create && (rc = mkdir_parents(path)) < 0) {
        ant_diag_set(d, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        if (rc != -ENOENT) {
            ant_diag_set(d, "cannot open %s: %s", path, strerror(-rc));
        }
        return rc;
    }
    if (fstat(fd, &sb) < 0 || sb.st_uid != geteuid()) {
        ant_diag_set(d, "%s is not owned by you", path);
        ant_close(fd);
        return -EACCES;
    }
    if ((sb.st_mode & 077) != 0 && fchmod(fd, 0700) < 0) {
        rc = -errno;
        ant_diag_set(d, "cannot make %s private (mode 0700): %s", path, strerror(-rc));
        ant_close(fd);
        return rc;
    }
    return fd;
}

/* Writes `name` under dirfd through a temporary name: fsynced, renamed, the folder fsynced, so
 * a crash leaves the old file or the new one, never half of one. */
static int write_atomic(int dirfd, const char *name, const void *p, size_t len)
{
    char tmp[64];
    uint8_t rnd[6];
    char hex[13];
    randombytes_buf(rnd, sizeof(rnd));
    ant_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(tmp, sizeof(tmp), ".%s.tmp-%s", name, hex);
    int rc = ant_write_new_file(dirfd, tmp, 0600, p, len); /* fsyncs */
    rc = rc < 0 ? rc : ant_rename_durable(-1, dirfd, tmp, name);
    if (rc < 0) {
        unlinkat(dirfd, tmp, 0);
    }
    return rc;
}

int ant_client_login_save(const char *url, const char *cacert, const char *key,
                          struct ant_diag *d)
{
    char path[1024];
    struct ant_buf ca;
    ant_buf_init(&ca, LOGIN_CA_MAX);
    const char *what = ANT_LOGIN_URL;
    int cafd = -1, rc = 0;
    int dirfd = -1;
    if (cacert != NULL) {
        cafd = open(cacert, O_RDONLY | O_CLOEXEC);
        rc = cafd < 0 ? -errno : ant_read_all(cafd, &ca);
        if (rc == 0 && memmem(ca.p, ca.len, "-----BEGIN CERTIFICATE-----", 27) == NULL) {
            rc = -EINVAL;
        }
        if (rc < 0) {
            ant_diag_set(d, "%s: %s", cacert,
                         rc == -EINVAL ? "not a PEM certificate" : strerror(-rc));
            goto out;
        }
    }
    dirfd = open_dir(true, path, sizeof(path), d);
    if (dirfd < 0) {
        rc = dirfd;
        goto out;
    }
    char line[1100];
    snprintf(line, sizeof(line), "%s\n", url);
    rc = write_atomic(dirfd, ANT_LOGIN_URL, line, strlen(line));
    if (rc == 0 && cacert != NULL) {
        what = ANT_LOGIN_CA;
        rc = write_atomic(dirfd, ANT_LOGIN_CA, ca.p, ca.len);
    } else if (rc == 0 && unlinkat(dirfd, ANT_LOGIN_CA, 0) < 0 && errno != ENOENT) {
        what = ANT_LOGIN_CA;
        rc = -errno;
    }
    if (rc == 0) {
        /* the key last: a login is complete once its key is there */
        what = ANT_LOGIN_KEY;
        char kl[ANT_LOGIN_KEY_MAX + 2];
        int w = snprintf(kl, sizeof(kl), "%s\n", key);
        rc = w < 0 || (size_t)w >= sizeof(kl) ? -E2BIG : write_atomic(dirfd, ANT_LOGIN_KEY, kl,
                                                                        (size_t)w);
        sodium_memzero(kl, sizeof(kl));
    }
    if (rc < 0) {
        ant_diag_set(d, "cannot write %s/%s: %s", path, what, strerror(-rc));
    }
out:
    ant_close(dirfd);
    ant_close(cafd);
    ant_buf_fini(&ca);
    return rc;
}

int ant_client_login_remove(struct ant_diag *d)
{
    static const char *const names[] = {ANT_LOGIN_KEY, ANT_LOGIN_CA, ANT_LOGIN_URL};
    char path[1024];
    int removed = 0, rc = 0;
    int dirfd = open_dir(false, path, sizeof(path), d);
    if (dirfd == -ENOENT) {
        return 0;
    }
    if (dirfd < 0) {
        return dirfd;
    }
    for (size_t i = 0; i < ANT_ARRAY_LEN(names); i++) {
        if (unlinkat(dirfd, names[i], 0) == 0) {
            removed++;
        } else if (errno != ENOENT && rc == 0) {
            rc = -errno;
            ant_diag_set(d, "cannot remove %s/%s: %s", path, names[i], strerror(errno));
        }
    }
    if (rc == 0) {
        rc = ant_fsync_dir(dirfd);
    }
    ant_close(dirfd);
    if (rc == 0) {
        rmdir(path); /* only if nothing else lives there */
    }
    return rc < 0 ? rc : removed;
}

int ant_client_login_open(const char *name, struct ant_diag *d)
{
    char path[1024];
    int dirfd = open_dir(false, path, sizeof(path), d);
    if (dirfd < 0) {
        return dirfd;
    }
    /* a FIFO in the folder is refused, not waited on (O_NONBLOCK until fstat) */
    int fd = ant_open_regular(dirfd, name, O_RDONLY | O_NOFOLLOW, 0);
    int rc = fd < 0 ? fd : 0;
    struct stat sb;
    if (rc == -ENOENT) {
        goto out;
    }
    if (rc == 0 && fstat(fd, &sb) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        ant_diag_set(d, "cannot read %s/%s: %s%s", path, name,
                     rc == -EINVAL ? "not a regular file" : strerror(-rc),
                     rc == -EINVAL ? "; remove it or run antenna login again" : "");
        rc = rc == -EINVAL && strcmp(name, ANT_LOGIN_KEY) == 0 ? -EACCES : rc;
        goto out;
    }
    /* as ssh refuses a private key others can read: the key may already have leaked */
    if (strcmp(name, ANT_LOGIN_KEY) == 0 &&
        (sb.st_uid != geteuid() || (sb.st_mode & 077) != 0 || !S_ISREG(sb.st_mode))) {
        ant_diag_set(d, "%s/%s is not private (mode %04o, or not yours): refused; chmod 600 "
                        "it or run antenna login again", path, name,
                     (unsigned)(sb.st_mode & 07777));
        rc = -EACCES;
    }
out:
    ant_close(dirfd);
    if (rc < 0) {
        ant_close(fd);
        return rc;
    }
    return fd;
}
