/* antenna admin archive check: the archive folder against the catalog, read-only.
 *
 * For every dataset (or one), the files its rows name must be in archive/<dataset>/ as
 * <storage-id>.c4gh: regular files whose Crypt4GH header opens with the site's key and whose
 * body holds exactly the plaintext size the catalog recorded; --deep also decrypts every
 * segment (each must verify) and compares both SHA-256 sums with the catalog's. The paths of a
 * dataset must fit one tree (no file "a" beside a file "a/b": datasets stored before that rule
 * may hold such pairs, which `antenna get`, staging and federation refuse). What the catalog
 * does not know is reported too: folders of no dataset, .c4gh files of no row, upload and fetch
 * temporaries left behind (the daemon removes these at its start and hourly: ant_archive_sweep).
 * Those are only reported once untouched for CHECK_GRACE_S (and a temporary only while no
 * writer holds its lock), so that a running daemon's uploads (written, renamed into place, then
 * committed) are never reported half-way; for the same reason each folder is listed before its
 * rows are read.
 *
 * Nothing is changed. Every problem is one object {problem, dataset, path, file_id, detail}. */
#include "crypto/base/base.h"
#include "crypto/c4gh.h"
#include "gateway/cli.h"
#include "gateway/site.h"
#include "policy/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK_GRACE_S (15 * 60)
#define CHECK_READ_LEN (1u << 20)

struct chk {
    int archive_fd;
    const struct ant_key *kx;
    bool deep;
    time_t now;
    uint8_t *buf; /* CHECK_READ_LEN, --deep only */
    json_t *problems;
    uint64_t datasets, files, bytes;
};

static int problem(struct chk *k, const char *kind, const char *ds, const char *path,
                   const char *file_id, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int problem(struct chk *k, const char *kind, const char *ds, const char *path,
                   const char *file_id, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s}", "problem", kind, "dataset", ds, "path",
                          path, "file_id", file_id, "detail", detail);
    return o != NULL && json_array_append_new(k->problems, o) == 0 ? 0 : -ENOMEM;
}

static int sink_discard(void *arg, const uint8_t *p, size_t len)
{
    (void)arg;
    (void)p;
    (void)len;
    return 0;
}

/* --deep: every segment decrypted and verified, both sums compared with the catalog's. */
static int check_deep(struct chk *k, int fd, const char *ds, json_t *row)
{
    const char *path = json_string_value(json_object_get(row, "path"));
    const char *fid = json_string_value(json_object_get(row, "id"));
    const char *want_plain = json_string_value(json_object_get(row, "sha256"));
    const char *want_body = json_string_value(json_object_get(row, "sha256_c4gh"));
    struct ant_c4gh_reader *r = NULL;
    struct ant_c4gh_digests dg;
    int rc = ant_c4gh_reader_new(k->kx, NULL, sink_discard, NULL, &r);
    if (rc < 0) {
        return rc;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    off_t off = 0;
    for (;;) {
        ssize_t n = ant_pread_full(fd, k->buf, CHECK_READ_LEN, off);
        if (n < 0) {
            rc = problem(k, "unreadable", ds, path, fid, "reading it: %s", strerror((int)-n));
            goto out;
        }
        if (n == 0) {
            break;
        }
        off += n;
        rc = ant_c4gh_reader_write(r, (struct ant_bytes){k->buf, (size_t)n});
        if (rc < 0) {
            break;
        }
    }
    rc = rc < 0 ? rc : ant_c4gh_reader_finish(r, &dg);
    if (rc == -ENOMEM) {
        goto out;
    }
    if (rc < 0) {
        rc = problem(k, "corrupt", ds, path, fid, "%s",
                     ant_c4gh_reader_diag(r) != NULL ? ant_c4gh_reader_diag(r) : strerror(-rc));
        goto out;
    }
    char plain[65], body[65];
    ant_hex_encode(dg.sha256_plain, 32, plain);
    ant_hex_encode(dg.sha256_body, 32, body);
    if (want_body == NULL || strcmp(body, want_body) != 0) {
        rc = problem(k, "checksum_mismatch", ds, path, fid,
                     "sha256 of the encrypted body is %s, the catalog says %s", body,
                     want_body != NULL ? want_body : "nothing");
    } else if (want_plain == NULL || strcmp(plain, want_plain) != 0) {
        rc = problem(k, "checksum_mismatch", ds, path, fid,
                     "sha256 of the plaintext is %s, the catalog says %s", plain,
                     want_plain != NULL ? want_plain : "nothing");
    }
out:
    ant_c4gh_reader_free(r);
    return rc;
}

/* One row: its archive file is there, a regular file, for the site's key, of the right size. */
static int check_file(struct chk *k, int dsfd, const char *ds, json_t *row)
{
    const char *path = json_string_value(json_object_get(row, "path"));
    const char *fid = json_string_value(json_object_get(row, "id"));
    const char *sid = json_string_value(json_object_get(row, "storage_id"));
    json_int_t size = json_integer_value(json_object_get(row, "size"));
    struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_c4gh_header *h = NULL;
    struct ant_diag d = {{0}};
    char name[ANT_ID_MAX + 8];
    struct stat sb;
    int fd = -1, rc = 0;
    k->files++;
    if (!ant_archive_id_is_plain(sid)) {
        return problem(k, "bad_storage_id", ds, path, fid, "storage id %s is not one the service"
                       " makes", sid != NULL ? sid : "(none)");
    }
    snprintf(name, sizeof(name), "%s.c4gh", sid);
    fd = ant_open_regular(dsfd, name, O_RDONLY | O_NOFOLLOW, 0);
    if (fd == -ENOENT) {
        return problem(k, "missing", ds, path, fid, "%s/%s is not in the archive", ds, name);
    }
    if (fd == -EINVAL || fd == -ELOOP) {
        return problem(k, "not_regular", ds, path, fid, "%s/%s is not a regular file", ds, name);
    }
    if (fd < 0) {
        return problem(k, "unreadable", ds, path, fid, "%s/%s: %s", ds, name, strerror(-fd));
    }
    if (fstat(fd, &sb) < 0) {
        rc = problem(k, "unreadable", ds, path, fid, "%s/%s: %s", ds, name, strerror(errno));
        goto out;
    }
    k->bytes += (uint64_t)sb.st_size;
    rc = ant_c4gh_header_read_fd(fd, &hdr, &d);
    if (rc == -ENOMEM) {
        goto out;
    }
    if (rc < 0) {
        rc = problem(k, "corrupt", ds, path, fid, "its Crypt4GH header: %s",
                     ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    rc = ant_c4gh_header_parse(ant_buf_view(&hdr), k->kx, NULL, 0, &h, &d);
    if (rc == -ENOMEM) {
        goto out;
    }
    if (rc < 0) {
        rc = problem(k, rc == -ENOKEY ? "not_for_site_key" : "corrupt", ds, path, fid,
                     "its Crypt4GH header: %s", ant_diag_msg(&d, strerror(-rc)));
        goto out;
    }
    uint64_t plain = 0;
    uint64_t body = (uint64_t)sb.st_size - hdr.len;
    if (ant_c4gh_plain_len(body, &plain) < 0) {
        rc = problem(k, "size_mismatch", ds, path, fid,
                     "a body of %llu bytes cannot end a Crypt4GH file (cut short?); the catalog"
                     " says %lld bytes of plaintext",
                     (unsigned long long)body, (long long)size);
        goto out;
    }
    if ((json_int_t)plain != size) {
        rc = problem(k, "size_mismatch", ds, path, fid,
                     "the file holds %llu bytes of plaintext, the catalog says %lld",
                     (unsigned long long)plain, (long long)size);
        goto out;
    }
    if (k->deep) {
        rc = check_deep(k, fd, ds, row);
    }
out:
    ant_c4gh_header_free(h);
    ant_buf_fini(&hdr);
    ant_close(fd);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Paths one tree cannot hold as files: a file "a" and a file "a/b" (every pair, not only the
 * first: what an admin must move or remove). */
static int check_paths(struct chk *k, const char *ds, json_t *rows)
{
    size_t n = json_array_size(rows), i;
    json_t *row;
    int rc = 0;
    if (n < 2) {
        return 0;
    }
    const char **paths = calloc(n, sizeof(*paths));
    if (paths == NULL) {
        return -ENOMEM;
    }
    json_array_foreach(rows, i, row)
    {
        const char *p = json_string_value(json_object_get(row, "path"));
        paths[i] = p != NULL ? p : "";
    }
    qsort(paths, n, sizeof(*paths), cmp_str);
    char parent[ANT_PATH_MAX + 1];
    for (i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(paths[i]);
        if (len > ANT_PATH_MAX) {
            continue;
        }
        memcpy(parent, paths[i], len + 1);
        /* every folder above it, longest first: is it one of the files? */
        for (char *slash = strrchr(parent, '/'); slash != NULL && rc == 0;
             slash = strrchr(parent, '/')) {
            *slash = '\0';
            const char *key = parent;
            if (bsearch(&key, paths, n, sizeof(*paths), cmp_str) != NULL) {
                rc = problem(k, "path_conflict", ds, paths[i], NULL,
                             "the dataset also has a file %s, which one folder tree cannot"
                             " hold beside this one",
                             parent);
            }
        }
    }
    free(paths);
    return rc;
}

/* Whether a process holds the lock its writer keeps on a temporary (a running upload or fetch
 * that has not written for a while: a slow client). The probe takes the lock for a moment. */
static bool temporary_in_use(int dsfd, const char *name)
{
    int fd = openat(dsfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool used = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    ant_close(fd);
    return used;
}

/* What a dataset's folder holds beyond its rows' files. `names` is the listing made before the
 * rows were read. */
static int check_extras(struct chk *k, int dsfd, const char *ds, json_t *names, json_t *rows)
{
    size_t i;
    json_t *v, *row;
    int rc = 0;
    json_array_foreach(names, i, v)
    {
        const char *name = json_string_value(v);
        struct stat sb;
        if (rc < 0) {
            break;
        }
        if (strcmp(name, ".hdr") == 0) {
            continue; /* the download header cache: rebuilt on demand */
        }
        if (fstatat(dsfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            k->now - sb.st_mtime < CHECK_GRACE_S) {
            continue; /* gone meanwhile, or in use by the daemon */
        }
        size_t n = strlen(name);
        bool known = false;
        if (n > 5 && strcmp(name + n - 5, ".c4gh") == 0) {
            size_t j;
            json_array_foreach(rows, j, row)
            {
                const char *sid = json_string_value(json_object_get(row, "storage_id"));
                if (sid != NULL && strlen(sid) == n - 5 && memcmp(sid, name, n - 5) == 0) {
                    known = true;
                    break;
                }
            }
            if (!known) {
                rc = problem(k, "orphan_file", ds, NULL, NULL,
                             "%s/%s belongs to no file of the dataset", ds, name);
            }
        } else if (ant_archive_is_temporary(name)) {
            if (temporary_in_use(dsfd, name)) {
                continue;
            }
            rc = problem(k, "stale_temporary", ds, NULL, NULL,
                         "%s/%s is an upload or fetch that never finished (%lld s old)", ds, name,
                         (long long)(k->now - sb.st_mtime));
        } else {
            rc = problem(k, "unexpected_entry", ds, NULL, NULL,
                         "%s/%s is not something the service writes", ds, name);
        }
    }
    return rc;
}

/* The names in a folder (not . and ..), as a JSON array. */
static int list_names(int fd, json_t **out)
{
    int dup_fd = dup(fd);
    if (dup_fd < 0) {
        return -errno;
    }
    DIR *dir = fdopendir(dup_fd);
    if (dir == NULL) {
        int rc = -errno;
        ant_close(dup_fd);
        return rc;
    }
    json_t *names = json_array();
    int rc = names != NULL ? 0 : -ENOMEM;
    struct dirent *e;
    while (rc == 0 && (errno = 0, e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        rc = json_array_append_new(names, json_string(e->d_name)) == 0 ? 0 : -ENOMEM;
    }
    if (rc == 0 && errno != 0) {
        rc = -errno;
    }
    closedir(dir);
    if (rc < 0) {
        json_decref(names);
        return rc;
    }
    *out = names;
    return 0;
}

static int check_dataset(struct chk *k, struct ant_store *st, const char *ds)
{
    json_t *names = NULL, *rows = NULL, *row;
    size_t i;
    int dsfd = -1, rc = 0;
    k->datasets++;
    if (!ant_archive_id_is_plain(ds)) {
        return problem(k, "bad_dataset_id", ds, NULL, NULL, "dataset id is not one the service"
                       " makes: its files are not looked for");
    }
    dsfd = openat(k->archive_fd, ds, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dsfd < 0 && errno != ENOENT) {
        return problem(k, "unreadable", ds, NULL, NULL, "archive folder %s: %s", ds,
                       strerror(errno));
    }
    rc = dsfd >= 0 ? list_names(dsfd, &names) : 0;
    if (rc < 0 && rc != -ENOMEM) {
        rc = problem(k, "unreadable", ds, NULL, NULL, "listing %s: %s", ds, strerror(-rc));
        goto out;
    }
    rc = rc < 0 ? rc : ant_store_file_list(st, ds, &rows);
    if (rc < 0) {
        goto out;
    }
    if (dsfd < 0) {
        /* no folder: a dataset without files has none; every row is missing */
        json_array_foreach(rows, i, row)
        {
            k->files++;
            rc = problem(k, "missing", ds, json_string_value(json_object_get(row, "path")),
                         json_string_value(json_object_get(row, "id")),
                         "the archive has no folder %s", ds);
            if (rc < 0) {
                break;
            }
        }
        goto out;
    }
    rc = check_paths(k, ds, rows);
    json_array_foreach(rows, i, row)
    {
        if (rc < 0) {
            break;
        }
        rc = check_file(k, dsfd, ds, row);
    }
    rc = rc < 0 ? rc : check_extras(k, dsfd, ds, names, rows);
out:
    json_decref(names);
    json_decref(rows);
    ant_close(dsfd);
    return rc;
}

/* Folders of the archive that are no dataset's (listed before the datasets were read). */
static int check_folders(struct chk *k, json_t *names, json_t *datasets)
{
    size_t i, j;
    json_t *v, *d;
    int rc = 0;
    json_array_foreach(names, i, v)
    {
        const char *name = json_string_value(v);
        struct stat sb;
        bool known = false;
        json_array_foreach(datasets, j, d)
        {
            const char *id = json_string_value(json_object_get(d, "id"));
            if (id != NULL && strcmp(id, name) == 0) {
                known = true;
                break;
            }
        }
        /* archive/fed: the federation cache (fed_cache rows; its copies are swept and evicted
         * by the stage runner, and fetched again when missing) */
        known = known || strcmp(name, "fed") == 0;
        if (known || fstatat(k->archive_fd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            k->now - sb.st_mtime < CHECK_GRACE_S) {
            continue;
        }
        rc = problem(k, S_ISDIR(sb.st_mode) ? "orphan_folder" : "unexpected_entry", NULL, NULL,
                     NULL, "%s in the archive belongs to no dataset", name);
        if (rc < 0) {
            break;
        }
    }
    return rc;
}

int ant_archive_check(int dirfd, const char *archive_dir, struct ant_store *st,
                      const struct ant_key *kx, const char *dataset, bool deep, json_t **report)
{
    struct chk k = {.archive_fd = -1, .kx = kx, .deep = deep, .now = time(NULL)};
    json_t *datasets = NULL, *names = NULL;
    int rc = 0;
    k.problems = json_array();
    if (k.problems == NULL) {
        return -ENOMEM;
    }
    if (deep && (k.buf = malloc(CHECK_READ_LEN)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    k.archive_fd = openat(dirfd, archive_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (k.archive_fd < 0) {
        rc = -errno;
        goto out;
    }
    if (dataset != NULL) {
        struct ant_dataset dsrow;
        rc = ant_store_dataset_get(st, dataset, &dsrow);
        rc = rc < 0 ? rc : check_dataset(&k, st, dataset);
        goto out;
    }
    rc = list_names(k.archive_fd, &names);
    rc = rc < 0 ? rc : ant_store_dataset_list(st, NULL, &datasets);
    size_t i;
    json_t *d;
    json_array_foreach(datasets, i, d)
    {
        if (rc < 0) {
            break;
        }
        rc = check_dataset(&k, st, json_string_value(json_object_get(d, "id")));
    }
    rc = rc < 0 ? rc : check_folders(&k, names, datasets);
out:
    if (rc == 0) {
        *report = json_pack("{s:I, s:I, s:I, s:b, s:o}", "datasets", (json_int_t)k.datasets,
                            "files", (json_int_t)k.files, "bytes", (json_int_t)k.bytes, "deep",
                            deep, "problems", k.problems);
        k.problems = NULL;
        rc = *report != NULL ? 0 : -ENOMEM;
    }
    json_decref(k.problems);
    json_decref(datasets);
    json_decref(names);
    free(k.buf);
    ant_close(k.archive_fd);
    return rc;
}
