/* The shared base: buffers, cursor, bounded parsing, fd helpers. */
#include "crypto/base/base.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct ant_bytes ant_bytes_str(const char *s)
{
    return s ? ant_bytes_of(s, strlen(s)) : ANT_BYTES_NULL;
}

bool ant_bytes_eq_str(struct ant_bytes b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.p, s, n) == 0);
}

void ant_buf_init(struct ant_buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void ant_buf_fini(struct ant_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

void ant_buf_wipe_fini(struct ant_buf *b)
{
    if (b->p != NULL) {
        /* volatile stores so the wipe is not optimised away before free() */
        volatile uint8_t *v = b->p;
        for (size_t i = 0; i < b->cap; i++) {
            v[i] = 0;
        }
    }
    ant_buf_fini(b);
}

int ant_buf_reserve(struct ant_buf *b, size_t extra)
{
    /* +1 keeps room for ant_buf_terminate without a second allocation */
    if (extra > b->max || b->len > b->max - extra) {
        return -E2BIG;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    }
    if (ncap > b->max + 1) {
        ncap = b->max + 1;
    }
    uint8_t *np = realloc(b->p, ncap);
    if (np == NULL) {
        return -ENOMEM;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int ant_buf_append(struct ant_buf *b, const void *p, size_t len)
{
    int rc = ant_buf_reserve(b, len);
    if (rc < 0) {
        return rc;
    }
    if (len > 0) {
        memcpy(b->p + b->len, p, len);
    }
    b->len += len;
    return 0;
}

int ant_buf_append_str(struct ant_buf *b, const char *s)
{
    return ant_buf_append(b, s, strlen(s));
}

int ant_buf_printf(struct ant_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    int rc = ant_buf_reserve(b, (size_t)n);
    if (rc < 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int ant_buf_terminate(struct ant_buf *b)
{
    int rc = ant_buf_reserve(b, 0);
    if (rc < 0) {
        return rc;
    }
    b->p[b->len] = '\0';
    return 0;
}

struct ant_bytes ant_buf_view(const struct ant_buf *b)
{
    return ant_bytes_of(b->p, b->len);
}

uint8_t *ant_buf_take(struct ant_buf *b, size_t *len)
{
    uint8_t *p = b->p;
    if (len != NULL) {
        *len = b->len;
    }
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

int ant_rd_copy(struct ant_rd *rd, void *dst, size_t n)
{
    if (n > ant_rd_left(rd)) {
        return -EBADMSG;
    }
    if (n > 0) {
        memcpy(dst, rd->p + rd->off, n);
    }
    rd->off += n;
    return 0;
}

int ant_rd_view(struct ant_rd *rd, size_t n, struct ant_bytes *out)
{
    if (n > ant_rd_left(rd)) {
        return -EBADMSG;
    }
    *out = ant_bytes_of(rd->p + rd->off, n);
    rd->off += n;
    return 0;
}

int ant_rd_skip(struct ant_rd *rd, size_t n)
{
    if (n > ant_rd_left(rd)) {
        return -EBADMSG;
    }
    rd->off += n;
    return 0;
}

int ant_rd_u8(struct ant_rd *rd, uint8_t *v)
{
    return ant_rd_copy(rd, v, 1);
}

int ant_rd_u16be(struct ant_rd *rd, uint16_t *v)
{
    uint8_t b[2];
    if (ant_rd_copy(rd, b, 2) < 0) {
        return -EBADMSG;
    }
    *v = (uint16_t)((uint16_t)b[0] << 8 | b[1]);
    return 0;
}

int ant_rd_u32be(struct ant_rd *rd, uint32_t *v)
{
    uint8_t b[4];
    if (ant_rd_copy(rd, b, 4) < 0) {
        return -EBADMSG;
    }
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

int ant_rd_u32le(struct ant_rd *rd, uint32_t *v)
{
    uint8_t b[4];
    if (ant_rd_copy(rd, b, 4) < 0) {
        return -EBADMSG;
    }
    *v = (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
    return 0;
}

int ant_rd_u64le(struct ant_rd *rd, uint64_t *v)
{
    uint8_t b[8];
    if (ant_rd_copy(rd, b, 8) < 0) {
        return -EBADMSG;
    }
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) {
        x = x << 8 | b[i];
    }
    *v = x;
    return 0;
}

struct ant_bytes ant_rd_rest(struct ant_rd *rd)
{
    struct ant_bytes out = ant_bytes_of(rd->p + rd->off, ant_rd_left(rd));
    rd->off = rd->len;
    return out;
}

void ant_store_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

void ant_store_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

int ant_buf_u32le(struct ant_buf *b, uint32_t v)
{
    uint8_t t[4];
    ant_store_u32le(t, v);
    return ant_buf_append(b, t, sizeof(t));
}

int ant_buf_u64le(struct ant_buf *b, uint64_t v)
{
    uint8_t t[8];
    ant_store_u64le(t, v);
    return ant_buf_append(b, t, sizeof(t));
}

int ant_parse_u64(struct ant_bytes s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s.len == 0 || s.len > 20) {
        return -EINVAL;
    }
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.p[i];
        if (c < '0' || c > '9') {
            return -EINVAL;
        }
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -EINVAL;
        }
        v = v * 10 + d;
    }
    if (v < min || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_scaled(struct ant_bytes s, const char *units, const uint64_t *mult, uint64_t max,
                        uint64_t *out)
{
    uint64_t m = 1, v;
    if (s.len == 0) {
        return -EINVAL;
    }
    const char *u = strchr(units, s.p[s.len - 1]);
    if (s.p[s.len - 1] != '\0' && u != NULL) {
        m = mult[u - units];
        s.len--;
    }
    if (ant_parse_u64(s, 0, UINT64_MAX, &v) < 0 || (m > 1 && v > UINT64_MAX / m) ||
        v * m > max) {
        return -EINVAL;
    }
    *out = v * m;
    return 0;
}

int ant_parse_size(struct ant_bytes s, uint64_t max, uint64_t *out)
{
    static const uint64_t mult[] = {1024ULL, 1024ULL * 1024, 1024ULL * 1024 * 1024,
                                    1024ULL * 1024 * 1024 * 1024};
    return parse_scaled(s, "KMGT", mult, max, out);
}

int ant_parse_duration(struct ant_bytes s, uint64_t max_s, uint64_t *out_s)
{
    static const uint64_t mult[] = {1, 60, 3600, 86400};
    return parse_scaled(s, "smhd", mult, max_s, out_s);
}

void ant_diag_set(struct ant_diag *d, const char *fmt, ...)
{
    if (d == NULL) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
}

const char *ant_diag_msg(const struct ant_diag *d, const char *fallback)
{
    return (d != NULL && d->msg[0] != '\0') ? d->msg : fallback;
}

void ant_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
}

int ant_read_all(int fd, struct ant_buf *b)
{
    for (;;) {
        int rc = ant_buf_reserve(b, 4096);
        if (rc < 0) {
            /* a file of exactly max bytes is fine: probe for one more byte */
            uint8_t probe;
            ssize_t n = read(fd, &probe, 1);
            return n == 0 ? 0 : rc;
        }
        ssize_t n = read(fd, b->p + b->len, b->cap - b->len - 1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return 0;
        }
        b->len += (size_t)n;
    }
}

int ant_write_all(int fd, const void *p, size_t len)
{
    const uint8_t *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

int ant_pwrite_all(int fd, const void *p, size_t len, off_t off)
{
    const uint8_t *c = p;
    while (len > 0) {
        ssize_t n = pwrite(fd, c, len, off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        c += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

ssize_t ant_read_full(int fd, void *p, size_t len)
{
    uint8_t *c = p;
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, c + done, len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t ant_pread_full(int fd, void *p, size_t len, off_t off)
{
    uint8_t *c = p;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, c + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int ant_write_new_file(int dirfd, const char *name, unsigned mode, const void *p, size_t len)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    (mode_t)mode);
    if (fd < 0) {
        return -errno;
    }
    /* fchmod: the umask must not widen or narrow what the caller asked for */
    int rc = fchmod(fd, (mode_t)mode) < 0 ? -errno : ant_write_all(fd, p, len);
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
    }
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
    }
    if (rc < 0) {
        unlinkat(dirfd, name, 0);
    }
    return rc;
}

int ant_open_regular(int dirfd, const char *path, int flags, unsigned mode)
{
    struct stat st;
    int fd = openat(dirfd, path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, (mode_t)mode);
    if (fd < 0) {
        return -errno;
    }
    int rc = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
    int fl = rc < 0 ? -1 : fcntl(fd, F_GETFL);
    if (rc == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)) {
        rc = -errno;
    }
    if (rc < 0) {
        ant_close(fd);
        return rc;
    }
    return fd;
}

/* How deep rmtree recurses (one fd and one DIR per level) before it moves a folder up. */
#define RMTREE_DEPTH_MAX 64u
/* Passes over the top folder: each one takes RMTREE_DEPTH_MAX levels off the deepest chain. */
#define RMTREE_PASSES_MAX 65536u

struct rmtree {
    int topfd;       /* the folder being removed: folders too deep are moved up into it */
    unsigned moved;  /* folders moved up in this pass */
    unsigned serial; /* for their names */
    int first_err;
};

static void rmtree_err(struct rmtree *t, int rc)
{
    if (rc < 0 && rc != -ENOENT && t->first_err == 0) {
        t->first_err = rc;
    }
}

/* Empties the folder open as fd (consumed). Past RMTREE_DEPTH_MAX a subfolder is moved up into
 * the top folder, which the caller goes over again: a tree of any depth goes, with bounded fds
 * and stack. Keeps going past an entry it cannot remove, so that one such entry does not keep
 * everything else. */
static void rmtree_empty(struct rmtree *t, int fd, unsigned depth);

static void rmtree_entry(struct rmtree *t, int parentfd, const char *name, unsigned depth)
{
    if (unlinkat(parentfd, name, 0) == 0) {
        return;
    }
    if (errno != EISDIR && errno != EPERM) {
        rmtree_err(t, -errno);
        return;
    }
    if (depth >= RMTREE_DEPTH_MAX && t->topfd >= 0) {
        /* RENAME_NOREPLACE: a name planted in the top folder is not replaced, another is
         * tried */
        for (unsigned tries = 0; tries < 16; tries++) {
            char up[48];
            snprintf(up, sizeof(up), ".rmtree-%u-%u", t->serial++, (unsigned)getpid());
            if (renameat2(parentfd, name, t->topfd, up, RENAME_NOREPLACE) == 0) {
                t->moved++;
                return;
            }
            if (errno != EEXIST) {
                break;
            }
        }
        rmtree_err(t, -errno);
        return;
    }
    int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        rmtree_err(t, -errno);
        return;
    }
    rmtree_empty(t, fd, depth + 1);
    if (unlinkat(parentfd, name, AT_REMOVEDIR) < 0) {
        rmtree_err(t, -errno);
    }
}

static void rmtree_empty(struct rmtree *t, int fd, unsigned depth)
{
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        rmtree_err(t, -errno);
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            rmtree_entry(t, dirfd(d), e->d_name, depth);
        }
    }
    closedir(d);
}

int ant_rmtree_at(int dirfd, const char *name)
{
    struct rmtree t = {.topfd = -1};
    if (unlinkat(dirfd, name, 0) == 0) {
        return 0;
    }
    if (errno != EISDIR && errno != EPERM) {
        return -errno;
    }
    t.topfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (t.topfd < 0) {
        return -errno;
    }
    /* folders moved up during a pass may or may not be seen by that pass's readdir: go over
     * the top folder until a pass moves nothing */
    unsigned pass = 0;
    do {
        t.moved = 0;
        /* a new open file description: a dup() would share the offset the last pass's
         * readdir left at the end */
        int fd = openat(t.topfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            rmtree_err(&t, -errno);
            break;
        }
        rmtree_empty(&t, fd, 0);
    } while (t.moved > 0 && ++pass < RMTREE_PASSES_MAX);
    close(t.topfd);
    if (t.first_err == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0) {
        t.first_err = -errno;
    }
    return t.first_err;
}

int ant_fsync_dir(int dirfd)
{
    return fsync(dirfd) < 0 ? -errno : 0;
}

int ant_rename_durable(int fd, int dirfd, const char *tmp, const char *name)
{
    char folder[PATH_MAX];
    const char *slash = strrchr(name, '/');
    size_t fl = slash == NULL ? 0 : slash == name ? 1 : (size_t)(slash - name);
    if (fl >= sizeof(folder)) {
        return -ENAMETOOLONG;
    }
    memcpy(folder, slash != NULL ? name : ".", slash != NULL ? fl : 1);
    folder[slash != NULL ? fl : 1] = '\0';
    if (fd >= 0 && fsync(fd) < 0) {
        return -errno;
    }
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        return -errno;
    }
    /* the rename is an entry of the folder: only the folder's own fsync makes it durable */
    if (slash == NULL && dirfd != AT_FDCWD) {
        return ant_fsync_dir(dirfd);
    }
    int dfd = openat(dirfd, folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd < 0 ? -errno : ant_fsync_dir(dfd);
    ant_close(dfd);
    return rc;
}

int64_t ant_now_unix(void)
{
    return (int64_t)time(NULL);
}

int64_t ant_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ant_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void ant_fmt_time(int64_t unix_s, char out[32])
{
    struct tm tm;
    time_t t = (time_t)unix_s;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, 32, "%lld", (long long)unix_s);
    }
}

void ant_hex_encode(const uint8_t *p, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool ant_date_is_valid(uint64_t year, uint64_t month, uint64_t day)
{
    static const uint8_t mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month >= 1 && month <= 12 && day >= 1 && day <= mdays[month - 1] &&
           !(month == 2 && day == 29 && !leap);
}

int ant_hex_decode(struct ant_bytes hex, uint8_t *out, size_t outlen)
{
    if (hex.len != 2 * outlen) {
        return -EINVAL;
    }
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval(hex.p[2 * i]), lo = hexval(hex.p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -EINVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int ant_b64_decode(struct ant_bytes in, bool url, const char *ignore, uint8_t *out, size_t max,
                   size_t *outlen)
{
    if (in.len == 0) {
        return -EBADMSG;
    }
    for (size_t i = 0; i < in.len; i++) {
        if (in.p[i] == '\0' || in.p[i] >= 0x80) {
            return -EBADMSG;
        }
    }
    /* b64_end NULL: every character must be consumed */
    if (sodium_base642bin(out, max, (const char *)in.p, in.len, ignore, outlen, NULL,
                          url ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
                              : sodium_base64_VARIANT_ORIGINAL) != 0) {
        return -EBADMSG;
    }
    return 0;
}
