/* The shared base every layer uses: length-carrying views and buffers, a bounded cursor,
 * bounded number parsing, a diagnostic slot and small fd helpers. Thread-safe: no state. */
#ifndef ANT_BASE_H
#define ANT_BASE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ANT_MUST_CHECK __attribute__((warn_unused_result))
#define ANT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* errno values that glibc spells only under _GNU_SOURCE on some headers. */
#ifndef EKEYREJECTED
#define EKEYREJECTED 129
#endif
#ifndef EKEYEXPIRED
#define EKEYEXPIRED 127
#endif
#ifndef EKEYREVOKED
#define EKEYREVOKED 128
#endif

/* A borrowed view: never owns, never NUL-terminated by contract. */
struct ant_bytes {
    const uint8_t *p;
    size_t len;
};

/* An owned growable buffer that never grows past `max` (returns -E2BIG instead). */
struct ant_buf {
    uint8_t *p;
    size_t len, cap, max;
};

/* A read cursor over a view; every read checks what is left. */
struct ant_rd {
    const uint8_t *p;
    size_t len, off;
};

/* What went wrong, in words a user can act on; filled by functions that take one. */
struct ant_diag {
    char msg[256];
};

#define ANT_BUF_INIT(maxlen) {NULL, 0, 0, (maxlen)}
#define ANT_BYTES_NULL ((struct ant_bytes){NULL, 0})

static inline struct ant_bytes ant_bytes_of(const void *p, size_t len)
{
    return (struct ant_bytes){(const uint8_t *)p, len};
}
/* A view of a NUL-terminated C string (without the NUL); NULL gives an empty view. */
struct ant_bytes ant_bytes_str(const char *s);
bool ant_bytes_eq_str(struct ant_bytes b, const char *s);

/* --- owned buffers --- */
void ant_buf_init(struct ant_buf *b, size_t max);
/* Frees; accepts an empty buffer. */
void ant_buf_fini(struct ant_buf *b);
/* Zeroes the whole capacity, then frees: for buffers that held secrets. */
void ant_buf_wipe_fini(struct ant_buf *b);
/* Makes room for `extra` more bytes. -E2BIG past max, -ENOMEM. */
ANT_MUST_CHECK int ant_buf_reserve(struct ant_buf *b, size_t extra);
ANT_MUST_CHECK int ant_buf_append(struct ant_buf *b, const void *p, size_t len);
ANT_MUST_CHECK int ant_buf_append_str(struct ant_buf *b, const char *s);
ANT_MUST_CHECK int ant_buf_printf(struct ant_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a NUL without counting it in len, so p can be used as a C string. */
ANT_MUST_CHECK int ant_buf_terminate(struct ant_buf *b);
struct ant_bytes ant_buf_view(const struct ant_buf *b);
/* Hands the memory to the caller (free() it); `b` is left empty with the same max. */
uint8_t *ant_buf_take(struct ant_buf *b, size_t *len);

/* --- the cursor: every function returns 0, or -EBADMSG when the input is too short --- */
static inline struct ant_rd ant_rd_init(struct ant_bytes in)
{
    return (struct ant_rd){in.p, in.len, 0};
}
static inline size_t ant_rd_left(const struct ant_rd *rd)
{
    return rd->len - rd->off;
}
ANT_MUST_CHECK int ant_rd_copy(struct ant_rd *rd, void *dst, size_t n);
ANT_MUST_CHECK int ant_rd_view(struct ant_rd *rd, size_t n, struct ant_bytes *out);
ANT_MUST_CHECK int ant_rd_skip(struct ant_rd *rd, size_t n);
ANT_MUST_CHECK int ant_rd_u8(struct ant_rd *rd, uint8_t *v);
ANT_MUST_CHECK int ant_rd_u16be(struct ant_rd *rd, uint16_t *v);
ANT_MUST_CHECK int ant_rd_u32be(struct ant_rd *rd, uint32_t *v);
ANT_MUST_CHECK int ant_rd_u32le(struct ant_rd *rd, uint32_t *v);
ANT_MUST_CHECK int ant_rd_u64le(struct ant_rd *rd, uint64_t *v);
/* The rest of the input as a view; the cursor moves to the end. */
struct ant_bytes ant_rd_rest(struct ant_rd *rd);

/* Little-endian writers into a buffer. */
ANT_MUST_CHECK int ant_buf_u32le(struct ant_buf *b, uint32_t v);
ANT_MUST_CHECK int ant_buf_u64le(struct ant_buf *b, uint64_t v);
void ant_store_u32le(uint8_t *p, uint32_t v);
void ant_store_u64le(uint8_t *p, uint64_t v);

/* --- bounded parsing --- */
/* Decimal digits only (no sign, no space), value within [min, max]. -EINVAL otherwise. */
ANT_MUST_CHECK int ant_parse_u64(struct ant_bytes s, uint64_t min, uint64_t max, uint64_t *out);
/* Sizes such as "64M", "2G", "4096" (binary units K, M, G, T). */
ANT_MUST_CHECK int ant_parse_size(struct ant_bytes s, uint64_t max, uint64_t *out);
/* Durations such as "30s", "5m", "2h", "1d" or plain seconds. */
ANT_MUST_CHECK int ant_parse_duration(struct ant_bytes s, uint64_t max_s, uint64_t *out_s);

/* --- diagnostics --- */
void ant_diag_set(struct ant_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ant_diag_msg(const struct ant_diag *d, const char *fallback);

/* --- fd helpers --- */
/* close() that accepts -1 and keeps errno. */
void ant_close(int fd);
/* Reads the whole fd into b (bounded by b->max: -E2BIG). */
ANT_MUST_CHECK int ant_read_all(int fd, struct ant_buf *b);
/* Writes all of p, retrying on short writes and EINTR. Returns 0 or -errno. */
ANT_MUST_CHECK int ant_write_all(int fd, const void *p, size_t len);
ANT_MUST_CHECK int ant_pwrite_all(int fd, const void *p, size_t len, off_t off);
/* Reads up to len bytes, retrying until len or EOF. Returns the count or -errno. */
ANT_MUST_CHECK ssize_t ant_read_full(int fd, void *p, size_t len);
ANT_MUST_CHECK ssize_t ant_pread_full(int fd, void *p, size_t len, off_t off);
/* Creates `name` under dirfd exclusively (O_EXCL, no symlink followed) with `mode`, writes
 * len bytes, fsyncs and closes. On failure the half-written file is removed. */
ANT_MUST_CHECK int ant_write_new_file(int dirfd, const char *name, unsigned mode, const void *p,
                                      size_t len);
/* Opens path (relative to dirfd) with O_NONBLOCK added to `flags` (O_RDONLY, O_WRONLY, ...,
 * O_CLOEXEC always; `mode` for O_CREAT), refuses anything but a regular file, then clears
 * O_NONBLOCK: a FIFO without a writer (or, for writing, without a reader) would otherwise
 * block in open() before fstat() could refuse it. Returns the fd, -EINVAL for a file that is
 * not regular (a folder, a FIFO, a device, a socket), or -errno of open(), fstat() or fcntl()
 * (-ENXIO: a FIFO opened for writing with no reader). */
ANT_MUST_CHECK int ant_open_regular(int dirfd, const char *path, int flags, unsigned mode);
/* Removes name under dirfd and, if it is a folder, everything beneath it, never following a
 * symlink (only names under folders opened with O_NOFOLLOW are touched), at any depth with
 * bounded fds and stack (folders deeper than 64 levels are moved up into `name` and removed
 * from there). An entry that cannot be removed does not stop the rest: everything else goes
 * and the first error is returned. -ENOENT if it does not exist. */
ANT_MUST_CHECK int ant_rmtree_at(int dirfd, const char *name);
/* fsyncs the directory fd itself (after a rename into it). */
ANT_MUST_CHECK int ant_fsync_dir(int dirfd);
/* Puts a finished temporary file in place for good: fsyncs `fd` (the temporary, still open; -1
 * when it was synced already, as ant_write_new_file does), renames `tmp` to `name` (both
 * relative to dirfd, which may be AT_FDCWD; `name` may name a file in a subfolder), then fsyncs
 * the folder that holds `name`. A crash before the return leaves the old `name` or the whole
 * new file, and once it returns 0 the new file stays. Returns 0 or the -errno of the step that
 * failed (-ENAMETOOLONG for a folder name past PATH_MAX, checked before anything is done); the
 * temporary is then the caller's to remove (after a failed folder fsync it is already renamed). */
ANT_MUST_CHECK int ant_rename_durable(int fd, int dirfd, const char *tmp, const char *name);

/* --- time --- */
int64_t ant_now_unix(void);
int64_t ant_now_ms(void);      /* wall clock, milliseconds */
int64_t ant_mono_ns(void);     /* monotonic, nanoseconds */
/* RFC 3339 UTC with seconds, "2026-11-26T23:50:14Z"; out needs 21 bytes. */
void ant_fmt_time(int64_t unix_s, char out[32]);
/* Does the calendar have this day (month 1..12, day 1..31, Gregorian leap years)? timegm() would
 * take "02-31" as March 3rd rather than refuse it. */
bool ant_date_is_valid(uint64_t year, uint64_t month, uint64_t day);

/* --- encodings --- */
/* Lower-case hex; out must hold 2*len+1. */
void ant_hex_encode(const uint8_t *p, size_t len, char *out);
ANT_MUST_CHECK int ant_hex_decode(struct ant_bytes hex, uint8_t *out, size_t outlen);
/* Base64 into out[0..max), *outlen bytes: url selects base64url without padding (JWS, JWK),
 * else the standard padded alphabet; characters of `ignore` (NULL: none) are skipped, every
 * other one must be a digit of the alphabet. libsodium's decoder with its traps closed: it takes
 * a NUL as ignored (strchr finds the terminator), and 1.0.18 decodes every byte >= 0x80 as the
 * alphabet's last digit ('/' or '_'), so one value had 129 spellings per character. -EBADMSG. */
ANT_MUST_CHECK int ant_b64_decode(struct ant_bytes in, bool url, const char *ignore, uint8_t *out,
                                  size_t max, size_t *outlen);

#endif
