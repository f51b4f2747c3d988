/* Files of a dataset: PUT uploads (streamed), GET and HEAD download (streamed, with ranges).
 *
 * Upload. The body streams through ant_route_file_put_body() as libmicrohttpd hands it over;
 * memory is one Crypt4GH segment plus the header whatever the size. The first 8 bytes decide:
 *  - "crypt4gh": the body is a Crypt4GH file. Its header must open with the site's X25519 key
 *    and carry no edit list, and every segment must verify (else 422); it is stored byte for
 *    byte.
 *  - anything else is plaintext, encrypted on the way in for the site's key (a fresh data key,
 *    64 KiB segments).
 * Both ways the SHA-256 of the plaintext and of the encrypted body (every byte after the
 * header, which a change of recipient leaves alone) are computed on the fly. The bytes go to
 * archive/<dataset>/.up-<random>.tmp; at the end of the body the file is fsynced, the row is
 * added inside a transaction, the file renamed to <file-id>.c4gh, the folder fsynced, and only
 * then the transaction committed. A request that does not complete (client gone, error) is
 * cleaned up when libmicrohttpd frees it: the temporary file is removed and no row exists.
 *
 * Download. ?recipient=<base64 X25519 public key>: the stored header is re-encrypted for that
 * key and the stored body follows unchanged. The re-encrypted header has fresh random nonces,
 * so to keep one strong ETag per (file, recipient) — what lets an interrupted download resume
 * with If-Range — the first one made is cached under archive/<dataset>/.hdr/ (named by file id
 * and recipient key, created with RENAME_NOREPLACE so concurrent first requests agree) and
 * served from then on. ETag = SHA-256(served header || SHA-256 of the body), hex.
 * ?format=plain: the plaintext, decrypted segment by segment (each verified before any of its
 * bytes is sent), only where the decision function allows plaintext to leave (never for
 * `sensitive` data); its ETag is derived from the plaintext SHA-256. Both serve single byte
 * ranges (206, Content-Range; 416 past the end), honour If-Range, and answer HEAD. Every answer
 * with the file carries the catalog's checksums, X-Antenna-Sha256 (the plaintext's) and
 * X-Antenna-Sha256-C4gh (the stored body's, after the header), which the client checks the
 * whole file against before it takes its name. */
#include "gateway/api.h"
#include "gateway/routes.h"
#include "gateway/site.h"

#include "crypto/c4gh.h"
#include "crypto/base/log.h"
#include "staging/engine.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DL_BLOCK (256u * 1024u)
/* 422 Unprocessable Content: libmicrohttpd renamed its macro between 0.9.75 and 1.0 */
#define HTTP_UNPROCESSABLE 422
#define HDR_CACHE_DIR ".hdr"

/* ------------------------------------------------------------------ logical paths */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_is_valid(struct ant_bytes s)
{
    size_t i = 0;
    while (i < s.len) {
        uint8_t c = s.p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (s.len - i - 1 < n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s.p[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s.p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

/* The logical path of the route (already percent-decoded by libmicrohttpd, so "%2e%2e" is
 * ".." here): the staging rules (relative, no "."/".."/empty component, no control byte), and
 * also no backslash (a separator to Windows clients and to some tools downstream), valid UTF-8,
 * at most ANT_PATH_MAX bytes. -EINVAL otherwise. */
static int path_param(const struct ant_req *r, char out[ANT_PATH_MAX + 1])
{
    struct ant_bytes p = r->nparams > 1 ? r->params[1] : ant_bytes_of(NULL, 0);
    if (p.len == 0 || p.len > ANT_PATH_MAX || ant_stage_path_check(p) < 0 ||
        memchr(p.p, '\\', p.len) != NULL || !utf8_is_valid(p)) {
        return -EINVAL;
    }
    memcpy(out, p.p, p.len);
    out[p.len] = '\0';
    return ant_path_is_valid(out) ? 0 : -EINVAL;
}

/* archive/<ds> as a directory fd, created when `create`. */
static int ds_dir_open(struct ant_site *s, const char *ds, bool create)
{
    if (!ant_archive_id_is_plain(ds)) {
        return -ENOENT;
    }
    if (create && mkdirat(s->archive_fd, ds, 0700) < 0 && errno != EEXIST) {
        return -errno;
    }
    int fd = openat(s->archive_fd, ds, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* ------------------------------------------------------------------ upload */

enum up_mode { UP_SNIFF, UP_PLAIN, UP_C4GH };

struct up {
    struct ant_site *site;
    char ds[ANT_ID_MAX + 1];
    char path[ANT_PATH_MAX + 1];
    char tmpname[40];
    int dirfd, fd;
    bool committed;
    enum up_mode mode;
    uint8_t sniff[8];
    size_t nsniff;
    uint64_t in_bytes;
    EVP_MD_CTX *md_plain, *md_body;
    struct ant_c4gh_cipher *cipher;
    struct ant_c4gh_header *hdr;
    struct ant_buf hbuf; /* c4gh: the header as it arrives */
    bool have_hdr;
    uint8_t *seg; /* plaintext (plain) or one stored segment (c4gh) being filled */
    size_t seglen;
    uint8_t *out; /* one segment's output */
    uint64_t plain_len, body_len, hdr_len;
    uint64_t kicked; /* file offset up to which writeback was started */
};

static void up_free(void *arg)
{
    struct up *u = arg;
    if (u == NULL) {
        return;
    }
    if (u->fd >= 0) {
        ant_close(u->fd);
    }
    if (!u->committed && u->tmpname[0] != '\0' && u->dirfd >= 0) {
        /* the request did not complete: leave nothing behind */
        (void)unlinkat(u->dirfd, u->tmpname, 0);
    }
    ant_close(u->dirfd);
    EVP_MD_CTX_free(u->md_plain);
    EVP_MD_CTX_free(u->md_body);
    ant_c4gh_cipher_free(u->cipher);
    ant_c4gh_header_free(u->hdr);
    ant_buf_fini(&u->hbuf);
    if (u->seg != NULL) {
        sodium_memzero(u->seg, ANT_C4GH_CIPHER_SEGMENT_LEN);
        free(u->seg);
    }
    if (u->out != NULL) {
        sodium_memzero(u->out, ANT_C4GH_CIPHER_SEGMENT_LEN);
        free(u->out);
    }
    free(u);
}

static int md_update(EVP_MD_CTX *md, const void *p, size_t n)
{
    return EVP_DigestUpdate(md, p, n) == 1 ? 0 : -EIO;
}

/* Every this many bytes written, an upload starts their writeback (sync_file_range, no
 * wait): a big upload never piles up dirty pages that the kernel then writes at once, in
 * front of the audit's fdatasyncs (the held answers' latency), and its final fsync has little
 * left to do. */
#define UP_WRITEBACK_BYTES (8u << 20)

/* Writes bytes that are part of the encrypted body (hashed). */
static int up_write_body(struct up *u, const uint8_t *p, size_t n)
{
    int rc = md_update(u->md_body, p, n);
    if (rc == 0) {
        rc = ant_write_all(u->fd, p, n);
    }
    u->body_len += n;
    uint64_t end = u->hdr_len + u->body_len;
    if (rc == 0 && end - u->kicked >= UP_WRITEBACK_BYTES) {
        (void)sync_file_range(u->fd, (off_t)u->kicked, (off_t)(end - u->kicked),
                              SYNC_FILE_RANGE_WRITE);
        u->kicked = end;
    }
    return rc;
}

/* plain: encrypts the buffered plaintext segment and writes it. */
static int up_flush_plain(struct up *u)
{
    if (u->seglen == 0) {
        return 0;
    }
    int rc = md_update(u->md_plain, u->seg, u->seglen);
    int n = rc < 0 ? rc
                   : ant_c4gh_segment_encrypt(u->cipher, u->hdr, ant_bytes_of(u->seg, u->seglen),
                                              u->out, ANT_C4GH_CIPHER_SEGMENT_LEN);
    if (n < 0) {
        return n;
    }
    u->plain_len += u->seglen;
    u->seglen = 0;
    return up_write_body(u, u->out, (size_t)n);
}

/* c4gh: decrypts (verifies) one stored segment; -EBADMSG if it does not. */
static int up_check_segment(struct up *u)
{
    if (u->seglen == 0) {
        return 0;
    }
    int n = ant_c4gh_segment_decrypt(u->cipher, u->hdr, ant_bytes_of(u->seg, u->seglen), u->out,
                                     ANT_C4GH_CIPHER_SEGMENT_LEN);
    if (n < 0) {
        return -EBADMSG;
    }
    int rc = md_update(u->md_plain, u->out, (size_t)n);
    u->plain_len += (uint64_t)n;
    u->seglen = 0;
    return rc;
}

/* Fills the current segment from p; calls flush each time it is full. */
static int up_segments(struct up *u, const uint8_t *p, size_t n, size_t seg_cap,
                       int (*flush)(struct up *))
{
    int rc = 0;
    while (rc == 0 && n > 0) {
        size_t take = seg_cap - u->seglen < n ? seg_cap - u->seglen : n;
        memcpy(u->seg + u->seglen, p, take);
        u->seglen += take;
        p += take;
        n -= take;
        if (u->seglen == seg_cap) {
            rc = flush(u);
        }
    }
    return rc;
}

/* c4gh: body bytes are stored as they come and each segment is verified once whole. */
static int up_write_raw_body(struct up *u, const uint8_t *p, size_t n)
{
    int rc = up_write_body(u, p, n);
    if (rc == 0) {
        rc = up_segments(u, p, n, ANT_C4GH_CIPHER_SEGMENT_LEN, up_check_segment);
    }
    return rc;
}

/* c4gh: header bytes until the header is whole (then checked against the site key), then
 * segments. Every byte is written as is. -EBADMSG for what the site cannot accept. */
static int up_feed_c4gh(struct up *u, const uint8_t *p, size_t n)
{
    int rc = 0;
    if (!u->have_hdr) {
        size_t need = 0;
        rc = ant_buf_append(&u->hbuf, p, n);
        if (rc < 0) {
            return rc == -E2BIG ? -EBADMSG : rc;
        }
        rc = ant_c4gh_header_measure(ant_buf_view(&u->hbuf), &need, NULL);
        if (rc == -EAGAIN) {
            return 0;
        }
        if (rc < 0) {
            return -EBADMSG;
        }
        const uint64_t *edits;
        size_t nedits;
        rc =
            ant_c4gh_header_parse(ant_buf_view(&u->hbuf), u->site->keys.kx, NULL, 0, &u->hdr, NULL);
        if (rc < 0) {
            return rc == -ENOMEM ? rc : -EBADMSG;
        }
        if (ant_c4gh_header_edits(u->hdr, &edits, &nedits) && nedits > 0) {
            return -EBADMSG; /* the stored plaintext hash would not be the file's content */
        }
        u->have_hdr = true;
        u->hdr_len = need;
        rc = ant_write_all(u->fd, u->hbuf.p, need);
        if (rc == 0) {
            rc = up_write_raw_body(u, u->hbuf.p + need, u->hbuf.len - need);
        }
        ant_buf_fini(&u->hbuf);
        return rc;
    }
    return up_write_raw_body(u, p, n);
}

static int up_feed(struct up *u, const uint8_t *p, size_t n)
{
    return u->mode == UP_PLAIN ? up_segments(u, p, n, ANT_C4GH_SEGMENT_LEN, up_flush_plain)
                               : up_feed_c4gh(u, p, n);
}

/* The first bytes are in: pick the mode; for plaintext, write a header for the site's key. */
static int up_choose_mode(struct up *u)
{
    struct ant_buf h = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    int rc;
    if (u->nsniff == sizeof(u->sniff) && memcmp(u->sniff, ANT_C4GH_MAGIC, 8) == 0) {
        u->mode = UP_C4GH;
        ant_buf_init(&u->hbuf, ANT_C4GH_MAX_HEADER_LEN);
        return up_feed(u, u->sniff, u->nsniff);
    }
    u->mode = UP_PLAIN;
    rc = ant_c4gh_header_generate(&u->hdr);
    if (rc == 0) {
        rc = ant_c4gh_header_encode(u->hdr, u->site->keys.kx, ant_key_public(u->site->keys.kx), 1,
                                    false, &h);
    }
    if (rc == 0) {
        rc = ant_write_all(u->fd, h.p, h.len);
        u->hdr_len = h.len;
    }
    ant_buf_fini(&h);
    return rc < 0 ? rc : up_feed(u, u->sniff, u->nsniff);
}

/* 409 for a path the dataset cannot take (ant_store_file_conflict's codes): the same path, or
 * a file where it needs a folder or the reverse (a dataset is written out as one folder tree,
 * so it never holds both "a" and "a/b"). `with` is the dataset's path in the way; it is also
 * in the body as "conflict". Returns ANT_API_DONE, or a negative errno. */
static int up_conflict(struct ant_req *r, const char *path, int rc, const char *with)
{
    char msg[2 * ANT_PATH_MAX + 160];
    if (rc == -EEXIST) {
        return ant_api_fail(r, MHD_HTTP_CONFLICT, "file_exists", "the dataset has this path");
    }
    if (rc == -ENOTDIR) {
        snprintf(msg, sizeof(msg),
                 "%s is a file of the dataset, so it cannot be the folder of %s (a dataset is "
                 "one folder tree: it never holds both a and a/b)",
                 with, path);
    } else {
        snprintf(msg, sizeof(msg),
                 "%s is a file of the dataset, so %s is its folder and cannot be a file (a "
                 "dataset is one folder tree: it never holds both a and a/b)",
                 with, path);
    }
    rc = ant_api_json_take(r, MHD_HTTP_CONFLICT,
                           json_pack("{s:s, s:s, s:s, s:s}", "error", "path_conflict", "message",
                                     msg, "request_id", r->request_id, "conflict", with));
    return rc < 0 ? rc : ANT_API_DONE;
}

/* Authorizes the upload (write on the dataset, audited) and opens the temporary file. Returns 0,
 * ANT_API_DONE with the answer set, or a negative errno. */
static int up_start(struct ant_req *r)
{
    struct ant_decision d;
    char with[ANT_PATH_MAX + 1];
    struct ant_store *st = NULL;
    uint8_t rnd[8];
    struct up *u = calloc(1, sizeof(*u));
    int rc;
    if (u == NULL) {
        return -ENOMEM;
    }
    u->site = r->site;
    u->dirfd = u->fd = -1;
    r->state = u;
    r->state_free = up_free;
    if (ant_api_param(r, 0, u->ds, sizeof(u->ds)) < 0) {
        return ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
    }
    if (path_param(r, u->path) < 0) {
        return ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_path",
                            "a file path is relative, '/'-separated UTF-8 of at most %d bytes, "
                            "without '.', '..' or empty components, control bytes, '\\' or "
                            "anything that looks like a credential (a PEM block, API key, JWT)",
                            ANT_PATH_MAX);
    }
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_api_decide(r, st, ANT_ACT_WRITE, u->ds, "file", u->path, NULL, &d);
    if (rc == 0) {
        /* fails fast, before the body is read; the check that counts is ant_store_file_add's,
         * in the transaction that inserts the row */
        rc = ant_store_file_conflict(st, u->ds, u->path, with);
        if (rc == -EEXIST || rc == -ENOTDIR || rc == -EISDIR) {
            rc = up_conflict(r, u->path, rc, with);
        }
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc != 0) {
        return rc;
    }
    u->md_plain = EVP_MD_CTX_new();
    u->md_body = EVP_MD_CTX_new();
    u->seg = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
    u->out = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
    if (u->md_plain == NULL || u->md_body == NULL || u->seg == NULL || u->out == NULL ||
        EVP_DigestInit_ex(u->md_plain, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(u->md_body, EVP_sha256(), NULL) != 1) {
        return -ENOMEM;
    }
    rc = ant_c4gh_cipher_new(&u->cipher);
    if (rc < 0) {
        return rc;
    }
    rc = u->dirfd = ds_dir_open(r->site, u->ds, true);
    if (rc < 0) {
        return rc;
    }
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(u->tmpname, ".up-", 4);
    ant_hex_encode(rnd, sizeof(rnd), u->tmpname + 4);
    memcpy(u->tmpname + 4 + 16, ".tmp", 5);
    u->fd =
        openat(u->dirfd, u->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        return -errno;
    }
    /* held until the rename or removal: the archive sweep leaves a locked temporary alone
     * (ant_archive_sweep); where flock is not supported, its age rule still holds */
    (void)flock(u->fd, LOCK_EX | LOCK_NB);
    return 0;
}

/* Answers for an upload that failed; returns what the body hook or handler returns. */
static int up_fail(struct ant_req *r, int rc)
{
    if (rc > 0 || r->resp != NULL) {
        return -ECANCELED; /* answered already */
    }
    if (rc == -EBADMSG) {
        rc = ant_api_fail(r, HTTP_UNPROCESSABLE, "bad_crypt4gh",
                          "the body starts as Crypt4GH but is not a valid Crypt4GH file for this "
                          "site's key (without edit list)");
    } else if (rc == -E2BIG) {
        rc = ant_api_fail(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "the file is larger than %llu bytes",
                          (unsigned long long)r->site->cfg.max_upload_bytes);
    } else if (rc == -ENOSPC || rc == -EDQUOT) {
        rc = ant_api_fail(r, MHD_HTTP_INSUFFICIENT_STORAGE, NULL, "the archive is full");
    } else {
        ant_log_kv(ANT_LOG_ERROR, "upload.failed",
                   ((const char *[]){"request_id", r->request_id, NULL}), "upload failed: %s",
                   strerror(-rc));
        rc = ant_api_fail(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "internal error");
    }
    return rc < 0 ? rc : -ECANCELED;
}

int ant_route_file_put_body(struct ant_req *r, const uint8_t *p, size_t n)
{
    struct up *u = r->state;
    int rc = 0;
    if (u == NULL) {
        rc = up_start(r);
        u = r->state;
    }
    if (rc != 0) {
        return up_fail(r, rc);
    }
    if (u->in_bytes == 0) {
        /* a declared length past the limit is refused before anything is stored */
        const char *cl = ant_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t len;
        if (cl != NULL && ant_parse_u64(ant_bytes_str(cl), 0, UINT64_MAX, &len) == 0 &&
            len > r->site->cfg.max_upload_bytes) {
            return up_fail(r, -E2BIG);
        }
    }
    u->in_bytes += n;
    if (u->in_bytes > r->site->cfg.max_upload_bytes) {
        return up_fail(r, -E2BIG);
    }
    if (u->mode == UP_SNIFF) {
        size_t take = sizeof(u->sniff) - u->nsniff < n ? sizeof(u->sniff) - u->nsniff : n;
        memcpy(u->sniff + u->nsniff, p, take);
        u->nsniff += take;
        p += take;
        n -= take;
        if (u->nsniff < sizeof(u->sniff)) {
            return 0;
        }
        rc = up_choose_mode(u);
    }
    if (rc == 0 && n > 0) {
        rc = up_feed(u, p, n);
    }
    return rc < 0 ? up_fail(r, rc) : 0;
}

/* End of the body: last segment, fsync, row + rename + commit. */
static int up_finish(struct ant_req *r, struct up *u)
{
    struct ant_file_spec spec = {.dataset_id = u->ds, .path = u->path};
    char id[ANT_ID_MAX + 1], name[ANT_ID_MAX + 8], with[ANT_PATH_MAX + 1] = "";
    struct ant_store *st = NULL;
    bool in_tx = false, renamed = false;
    int rc = u->mode == UP_SNIFF ? up_choose_mode(u) : 0;
    if (rc == 0 && u->mode == UP_PLAIN) {
        rc = up_flush_plain(u);
    } else if (rc == 0) {
        /* ended inside the header, or with a last segment holding no plaintext */
        rc = !u->have_hdr || (u->seglen > 0 && u->seglen <= ANT_C4GH_SEGMENT_OVERHEAD)
                 ? -EBADMSG
                 : up_check_segment(u);
    }
    if (rc == 0 && (EVP_DigestFinal_ex(u->md_plain, spec.sha256_plain, NULL) != 1 ||
                    EVP_DigestFinal_ex(u->md_body, spec.sha256_c4gh, NULL) != 1)) {
        rc = -EIO;
    }
    if (rc == 0 && fsync(u->fd) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        return up_fail(r, rc);
    }
    spec.size = u->plain_len;
    st = ant_store_pool_acquire(r->site->pool);
    rc = ant_store_begin(st);
    in_tx = rc == 0;
    if (rc == 0) {
        rc = ant_store_file_add(st, &spec, id);
    }
    if ((rc == -ENOTDIR || rc == -EISDIR) &&
        ant_store_file_conflict(st, u->ds, u->path, with) != rc) {
        with[0] = '\0'; /* the same transaction: the answer cannot have changed */
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "%s.c4gh", id);
        rc = renameat(u->dirfd, u->tmpname, u->dirfd, name) < 0 ? -errno : 0;
        renamed = rc == 0;
    }
    if (rc == 0) {
        rc = ant_fsync_dir(u->dirfd);
    }
    if (rc == 0) {
        /* what was stored, with its checksums, is on the record before the row is visible */
        char hp[65], hc[65];
        ant_hex_encode(spec.sha256_plain, 32, hp);
        ant_hex_encode(spec.sha256_c4gh, 32, hc);
        json_t *det = json_pack("{s:s, s:I, s:s, s:s, s:s}", "path", u->path, "size",
                                (json_int_t)u->plain_len, "sha256", hp, "sha256_c4gh", hc,
                                "stored_as", u->mode == UP_C4GH ? "crypt4gh" : "encrypted");
        rc = det == NULL
                 ? -ENOMEM
                 : ant_api_audit(r, "file.store", "file", id, u->ds, ANT_AUDIT_INFO, "stored", det);
        json_decref(det);
    }
    if (rc == 0) {
        rc = ant_store_commit(st);
        in_tx = rc != 0;
    }
    if (rc == 0) {
        u->committed = true;
    } else if (renamed) {
        /* the temporary name is gone: remove the stored file itself */
        (void)unlinkat(u->dirfd, name, 0);
    } else {
        /* refused: the temporary goes before the answer does, not when the request ends */
        (void)unlinkat(u->dirfd, u->tmpname, 0);
        u->tmpname[0] = '\0';
    }
    if (in_tx) {
        ant_store_rollback(st);
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc > 0) {
        return -ECANCELED; /* answered (503: the audit log could not take the event) */
    }
    if (rc == -EEXIST || rc == -ENOTDIR || rc == -EISDIR) {
        return up_conflict(r, u->path, rc, with);
    }
    if (rc == -EINVAL) {
        return ant_api_fail(r, MHD_HTTP_CONFLICT, "dataset_not_draft",
                            "the dataset stopped being a draft during the upload");
    }
    if (rc < 0) {
        return up_fail(r, rc);
    }
    char h1[65], h2[65];
    ant_hex_encode(spec.sha256_plain, 32, h1);
    ant_hex_encode(spec.sha256_c4gh, 32, h2);
    ant_log_kv(ANT_LOG_INFO, "upload.stored",
               ((const char *[]){"request_id", r->request_id, "dataset_id", u->ds, NULL}),
               "%s stored as %s (%llu bytes, %s)", u->path, id, (unsigned long long)u->plain_len,
               u->mode == UP_C4GH ? "Crypt4GH as sent" : "encrypted on arrival");
    return ant_api_json_take(r, MHD_HTTP_CREATED,
                             json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s}", "id", id,
                                       "dataset_id", u->ds, "path", u->path, "size",
                                       (json_int_t)u->plain_len, "sha256", h1, "sha256_c4gh", h2,
                                       "stored_as", u->mode == UP_C4GH ? "crypt4gh" : "encrypted"));
}

int ant_route_file_put(struct ant_req *r)
{
    int rc = 0;
    if (r->state == NULL) {
        rc = up_start(r); /* an empty body: the body hook never ran */
    }
    if (rc != 0) {
        rc = up_fail(r, rc);
        return rc == -ECANCELED ? 0 : rc;
    }
    rc = up_finish(r, r->state);
    return rc == -ECANCELED ? 0 : ant_api_end(rc);
}

/* ------------------------------------------------------------------ download */

struct dl {
    int fd;
    bool plain;
    uint8_t *hdr; /* c4gh: the header served (re-encrypted for the recipient) */
    size_t hlen;
    uint64_t stored_hdr_len, body_len; /* of the stored file */
    uint64_t total;                    /* length of the whole served stream */
    uint64_t start;                    /* first byte of the range served */
    struct ant_c4gh_header *h;         /* plain: the stored header, opened */
    struct ant_c4gh_cipher *c;
    uint8_t *seg_in, *seg_out;
    uint64_t cur_seg;
    size_t cur_len;
    bool have_seg;
};

static void dl_free(void *arg)
{
    struct dl *d = arg;
    if (d == NULL) {
        return;
    }
    ant_close(d->fd);
    free(d->hdr);
    ant_c4gh_header_free(d->h);
    ant_c4gh_cipher_free(d->c);
    free(d->seg_in);
    if (d->seg_out != NULL) {
        sodium_memzero(d->seg_out, ANT_C4GH_SEGMENT_LEN);
        free(d->seg_out);
    }
    free(d);
}

/* libmicrohttpd's content reader: pos counts from the start of the response (the range). */
static ssize_t dl_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct dl *d = cls;
    uint64_t off = d->start + pos;
    if (off >= d->total) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (max > d->total - off) {
        max = (size_t)(d->total - off);
    }
    if (!d->plain) {
        if (off < d->hlen) {
            size_t n = d->hlen - off < max ? (size_t)(d->hlen - off) : max;
            memcpy(buf, d->hdr + off, n);
            return (ssize_t)n;
        }
        ssize_t n = ant_pread_full(d->fd, buf, max, (off_t)(d->stored_hdr_len + off - d->hlen));
        return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR; /* 0: the file shrank */
    }
    uint64_t i = off / ANT_C4GH_SEGMENT_LEN;
    if (!d->have_seg || d->cur_seg != i) {
        uint64_t soff;
        size_t slen;
        d->have_seg = false;
        if (ant_c4gh_segment_span(d->stored_hdr_len, d->body_len, i, &soff, &slen) < 0 ||
            ant_pread_full(d->fd, d->seg_in, slen, (off_t)soff) != (ssize_t)slen) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int n = ant_c4gh_segment_decrypt(d->c, d->h, ant_bytes_of(d->seg_in, slen), d->seg_out,
                                         ANT_C4GH_SEGMENT_LEN);
        if (n < 0) {
            /* a segment that does not verify ends the download: nothing of it is sent */
            ant_log(ANT_LOG_ERROR, "download.bad_segment", "segment %llu does not verify",
                    (unsigned long long)i);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        d->cur_seg = i;
        d->cur_len = (size_t)n;
        d->have_seg = true;
    }
    size_t in = (size_t)(off % ANT_C4GH_SEGMENT_LEN);
    if (in >= d->cur_len) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = d->cur_len - in < max ? d->cur_len - in : max;
    memcpy(buf, d->seg_out + in, n);
    return (ssize_t)n;
}

/* Reads the stored header (at most ANT_C4GH_MAX_HEADER_LEN) into hb. */
static int read_stored_header(int fd, struct ant_buf *hb, size_t *hlen)
{
    size_t want = 4096;
    for (;;) {
        hb->len = 0;
        int rc = ant_buf_reserve(hb, want);
        if (rc < 0) {
            return rc == -E2BIG ? -EBADMSG : rc;
        }
        ssize_t n = ant_pread_full(fd, hb->p, want, 0);
        if (n < 0) {
            return (int)n;
        }
        hb->len = (size_t)n;
        rc = ant_c4gh_header_measure(ant_buf_view(hb), hlen, NULL);
        if (rc != -EAGAIN) {
            return rc;
        }
        if ((size_t)n < want || *hlen <= want) {
            return -EBADMSG; /* the file ends inside its header */
        }
        want = *hlen;
    }
}

/* The header for (file, recipient): the cached one if any, else a new one, cached with
 * RENAME_NOREPLACE so that every request for the pair serves the same bytes. */
static int recipient_header(struct ant_site *s, int dsfd, const char *storage_id,
                            struct ant_bytes stored_hdr, const uint8_t pk[ANT_KEY_LEN],
                            struct ant_buf *out)
{
    char pkhex[2 * ANT_KEY_LEN + 1], name[ANT_ID_MAX + 2 * ANT_KEY_LEN + 16], tmp[64];
    uint8_t rnd[8];
    int cfd = -1, fd = -1;
    ant_hex_encode(pk, ANT_KEY_LEN, pkhex);
    snprintf(name, sizeof(name), "%s.%s.hdr", storage_id, pkhex);
    if (mkdirat(dsfd, HDR_CACHE_DIR, 0700) < 0 && errno != EEXIST) {
        return -errno;
    }
    cfd = openat(dsfd, HDR_CACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = cfd < 0 ? -errno : 0;
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        fd = openat(cfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            out->len = 0;
            rc = ant_read_all(fd, out);
            ant_close(fd);
            fd = -1;
            goto out;
        }
        if (errno != ENOENT) {
            rc = -errno;
            goto out;
        }
        if (attempt == 1) {
            rc = -EIO;
            goto out;
        }
        out->len = 0;
        rc = ant_c4gh_reencrypt_header(stored_hdr, s->keys.kx, pk, 1, true, out, NULL, NULL);
        if (rc < 0) {
            goto out;
        }
        randombytes_buf(rnd, sizeof(rnd));
        memcpy(tmp, ".tmp-", 5);
        ant_hex_encode(rnd, sizeof(rnd), tmp + 5);
        rc = ant_write_new_file(cfd, tmp, 0600, out->p, out->len);
        if (rc < 0) {
            goto out;
        }
        if (renameat2(cfd, tmp, cfd, name, RENAME_NOREPLACE) == 0) {
            rc = ant_fsync_dir(cfd);
            goto out;
        }
        rc = errno == EEXIST ? 0 : -errno; /* another request was first: serve its header */
        (void)unlinkat(cfd, tmp, 0);
    }
out:
    ant_close(cfd);
    return rc;
}

/* Opens the stored file and prepares what is served. */
static int dl_prepare(struct ant_req *r, struct dl *d, const char *ds, const struct ant_file *f,
                      const uint8_t *pk, char etag[70])
{
    struct ant_buf stored = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_buf served = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    char name[ANT_ID_MAX + 8];
    struct stat sb;
    size_t shlen = 0;
    uint8_t h[32];
    int dsfd = ds_dir_open(r->site, ds, false);
    int rc = dsfd < 0 ? dsfd : 0;
    if (rc == 0) {
        snprintf(name, sizeof(name), "%s.c4gh", f->storage_id);
        d->fd = openat(dsfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        rc = d->fd < 0 ? -errno : 0;
    }
    if (rc == 0) {
        rc = fstat(d->fd, &sb) < 0 ? -errno : 0;
    }
    if (rc == 0) {
        rc = read_stored_header(d->fd, &stored, &shlen);
    }
    if (rc == 0 && (uint64_t)sb.st_size < shlen) {
        rc = -EBADMSG;
    }
    if (rc < 0) {
        goto out;
    }
    d->stored_hdr_len = shlen;
    d->body_len = (uint64_t)sb.st_size - shlen;
    if (d->plain) {
        const uint64_t *edits;
        size_t nedits;
        uint64_t plain_len;
        rc = ant_c4gh_header_parse(ant_bytes_of(stored.p, shlen), r->site->keys.kx, NULL, 0, &d->h,
                                   NULL);
        if (rc == 0 && ant_c4gh_header_edits(d->h, &edits, &nedits) && nedits > 0) {
            rc = -ENOTSUP;
        }
        if (rc == 0) {
            rc = ant_c4gh_plain_len(d->body_len, &plain_len);
        }
        if (rc == 0) {
            rc = ant_c4gh_cipher_new(&d->c);
        }
        d->seg_in = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
        d->seg_out = malloc(ANT_C4GH_SEGMENT_LEN);
        if (rc == 0 && (d->seg_in == NULL || d->seg_out == NULL)) {
            rc = -ENOMEM;
        }
        if (rc < 0) {
            goto out;
        }
        d->total = plain_len;
        ant_hex_encode(f->sha256_plain, 32, etag + 3);
        memcpy(etag, "\"p-", 3);
        memcpy(etag + 3 + 40, "\"", 2); /* 40 hex digits identify the content well enough */
        goto out;
    }
    rc = recipient_header(r->site, dsfd, f->storage_id, ant_bytes_of(stored.p, shlen), pk, &served);
    if (rc == -EBADMSG) {
        /* the stored header or the recipient key? If the header opens, it is the key (a
         * low-order X25519 point): the caller's mistake, not a damaged archive */
        struct ant_c4gh_header *probe = NULL;
        if (ant_c4gh_header_parse(ant_bytes_of(stored.p, shlen), r->site->keys.kx, NULL, 0, &probe,
                                  NULL) == 0) {
            rc = -EDOM;
        }
        ant_c4gh_header_free(probe);
    }
    if (rc < 0) {
        goto out;
    }
    d->hlen = served.len;
    d->hdr = ant_buf_take(&served, &d->hlen);
    d->total = d->hlen + d->body_len;
    /* strong: the bytes served for (file, recipient) never change */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, d->hdr, d->hlen) != 1 ||
        EVP_DigestUpdate(md, f->sha256_c4gh, 32) != 1 || EVP_DigestFinal_ex(md, h, NULL) != 1) {
        rc = -ENOMEM;
    }
    EVP_MD_CTX_free(md);
    etag[0] = '"';
    ant_hex_encode(h, 20, etag + 1);
    memcpy(etag + 41, "\"", 2);
out:
    ant_buf_fini(&stored);
    ant_buf_fini(&served);
    ant_close(dsfd);
    return rc;
}

int ant_route_file_get(struct ant_req *r)
{
    char ds[ANT_ID_MAX + 1], path[ANT_PATH_MAX + 1], etag[70] = "";
    const char *rcpt = ant_req_query(r, "recipient"), *fmt = ant_req_query(r, "format");
    uint8_t pk[ANT_KEY_LEN];
    struct ant_decide_ctx ctx = {0};
    struct ant_decision dec;
    struct ant_file f;
    struct dl *d = NULL;
    struct ant_store *st = NULL;
    int rc;
    if (ant_api_param(r, 0, ds, sizeof(ds)) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such dataset");
        goto out;
    }
    if (path_param(r, path) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_path", "not a valid file path");
        goto out;
    }
    ctx.plaintext = fmt != NULL && strcmp(fmt, "plain") == 0;
    ctx.purpose = ant_req_query(r, "purpose"); /* what a grant's purpose is checked against */
    if ((fmt != NULL && !ctx.plaintext && strcmp(fmt, "c4gh") != 0) ||
        (ctx.plaintext && rcpt != NULL)) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "say whom the file is for (?recipient=<base64 X25519 public key>, or "
                          "none for your registered key) or ask for plaintext (?format=plain)");
        goto out;
    }
    if (rcpt != NULL && ant_key_b64_decode(ant_bytes_str(rcpt), pk) < 0) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_recipient",
                          "recipient must be the base64 of a 32-byte X25519 public key");
        goto out;
    }
    st = ant_store_pool_acquire(r->site->pool);
    if (!ctx.plaintext && rcpt == NULL) {
        /* no recipient named: the key the caller registered (PUT .../c4gh-key) */
        rc = r->who.kind == ANT_PRINCIPAL_USER ? ant_store_principal_pubkey(st, r->who.id, pk)
                                               : -ENODATA;
        if (rc == -ENODATA || rc == -ENOENT) {
            rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "no_recipient",
                              "name a recipient (?recipient=<base64 X25519 public key>) or "
                              "register your key first (PUT /v1/principals/%s/c4gh-key)",
                              r->who.id);
        }
        if (rc != 0) {
            ant_store_pool_release(r->site->pool, st);
            goto out;
        }
    }
    /* decided and audited before anything of the file is read */
    rc = ant_api_decide(r, st, ANT_ACT_READ, ds, "file", path, &ctx, &dec);
    if (rc == 0) {
        rc = ant_store_file_get(st, ds, path, &f);
        if (rc == -ENOENT) {
            rc = ant_api_fail(r, MHD_HTTP_NOT_FOUND, NULL, "no such file");
        }
    }
    ant_store_pool_release(r->site->pool, st);
    if (rc != 0) {
        goto out;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    d->fd = -1;
    d->plain = ctx.plaintext;
    rc = dl_prepare(r, d, ds, &f, ctx.plaintext ? NULL : pk, etag);
    if (rc == -ENOTSUP) {
        rc = ant_api_fail(r, MHD_HTTP_CONFLICT, "edited_file",
                          "this file carries a Crypt4GH edit list: download it encrypted");
        goto out;
    }
    if (rc == -EDOM) {
        rc = ant_api_fail(r, MHD_HTTP_BAD_REQUEST, "bad_recipient",
                          "the recipient key cannot be used (a low-order X25519 point)");
        goto out;
    }
    if (rc == -EBADMSG) {
        rc = -EIO; /* our own archive is damaged: a 500, logged */
    }
    if (rc < 0) {
        goto out;
    }
    struct ant_api_span sp;
    rc = ant_api_range(r, etag, d->total, &sp);
    if (rc != 0) {
        goto out;
    }
    d->start = sp.start;
    struct dl *keep = d;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(sp.len, DL_BLOCK, dl_read, d, dl_free);
    if (resp == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    d = NULL; /* the response owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            keep->plain ? "application/octet-stream" : "application/crypt4gh");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    /* what the client checks the whole file against once it has it (resumed or not): the
     * listing's sha256 and sha256_c4gh, from the same row as the bytes served */
    char sum[2 * sizeof(f.sha256_plain) + 1];
    ant_hex_encode(f.sha256_plain, sizeof(f.sha256_plain), sum);
    MHD_add_response_header(resp, "X-Antenna-Sha256", sum);
    ant_hex_encode(f.sha256_c4gh, sizeof(f.sha256_c4gh), sum);
    MHD_add_response_header(resp, "X-Antenna-Sha256-C4gh", sum);
    ant_api_respond_span(r, resp, &sp);
    rc = 0;
out:
    dl_free(d);
    return ant_api_end(rc);
}
