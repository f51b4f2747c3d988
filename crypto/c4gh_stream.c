/* Crypt4GH streaming: a writer and a reader with bounded memory (the header plus one segment)
 * that hash what they see, and re-encryption between file descriptors. */
#include "crypto/c4gh.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- SHA-256 on the fly (OpenSSL: SHA-NI where the CPU has it) --- */

struct sha_pair {
    EVP_MD_CTX *plain, *body;
};

static int sha_pair_init(struct sha_pair *s)
{
    s->plain = EVP_MD_CTX_new();
    s->body = EVP_MD_CTX_new();
    if (s->plain == NULL || s->body == NULL ||
        EVP_DigestInit_ex2(s->plain, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex2(s->body, EVP_sha256(), NULL) != 1) {
        return -ENOMEM;
    }
    return 0;
}

static void sha_pair_fini(struct sha_pair *s)
{
    EVP_MD_CTX_free(s->plain);
    EVP_MD_CTX_free(s->body);
    s->plain = s->body = NULL;
}

static int sha_update(EVP_MD_CTX *ctx, const uint8_t *p, size_t len)
{
    return len == 0 || EVP_DigestUpdate(ctx, p, len) == 1 ? 0 : -EIO;
}

static int sha_pair_final(struct sha_pair *s, struct ant_c4gh_digests *dg)
{
    if (EVP_DigestFinal_ex(s->plain, dg->sha256_plain, NULL) != 1 ||
        EVP_DigestFinal_ex(s->body, dg->sha256_body, NULL) != 1) {
        return -EIO;
    }
    return 0;
}

/* --- writer --- */

struct ant_c4gh_writer {
    const struct ant_key *sender;
    uint8_t *recipients; /* n × ANT_KEY_LEN */
    size_t n;
    struct ant_c4gh_header *h;
    struct ant_c4gh_cipher *c;
    ant_c4gh_sink_fn sink;
    void *arg;
    uint8_t *plain; /* plaintext waiting for a full segment; wiped on free */
    size_t fill;
    uint8_t *seg;
    struct sha_pair sha;
    struct ant_c4gh_digests dg;
    bool header_sent, done, no_digests;
};

int ant_c4gh_writer_new(const struct ant_key *sender, const uint8_t *recipients, size_t n,
                        const uint64_t *edits, size_t nedits, ant_c4gh_sink_fn sink, void *arg,
                        struct ant_c4gh_writer **out)
{
    struct ant_c4gh_writer *w = NULL;
    int rc = 0;
    if (n == 0 || n > ANT_C4GH_MAX_RECIPIENTS || sink == NULL) {
        rc = -EINVAL;
        goto out;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    w->sender = sender;
    w->n = n;
    w->sink = sink;
    w->arg = arg;
    w->recipients = malloc(n * ANT_KEY_LEN);
    w->plain = malloc(ANT_C4GH_SEGMENT_LEN);
    w->seg = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
    if (w->recipients == NULL || w->plain == NULL || w->seg == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(w->recipients, recipients, n * ANT_KEY_LEN);
    rc = ant_c4gh_header_generate(&w->h);
    if (rc == 0 && nedits > 0) {
        rc = ant_c4gh_header_set_edits(w->h, edits, nedits);
    }
    if (rc == 0) {
        rc = ant_c4gh_cipher_new(&w->c);
    }
    if (rc == 0) {
        rc = sha_pair_init(&w->sha);
    }
    if (rc < 0) {
        goto out;
    }
    *out = w;
    w = NULL;
out:
    ant_c4gh_writer_free(w);
    return rc;
}

void ant_c4gh_writer_free(struct ant_c4gh_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->plain != NULL) {
        sodium_memzero(w->plain, ANT_C4GH_SEGMENT_LEN);
    }
    free(w->plain);
    free(w->seg);
    free(w->recipients);
    ant_c4gh_header_free(w->h);
    ant_c4gh_cipher_free(w->c);
    sha_pair_fini(&w->sha);
    free(w);
}

static int writer_send_header(struct ant_c4gh_writer *w)
{
    struct ant_buf hb = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    int rc = 0;
    if (w->header_sent) {
        return 0;
    }
    rc = ant_c4gh_header_encode(w->h, w->sender, w->recipients, w->n, false, &hb);
    if (rc == 0) {
        rc = w->sink(w->arg, hb.p, hb.len);
    }
    if (rc == 0) {
        w->header_sent = true;
        w->dg.header_len = hb.len;
    }
    ant_buf_fini(&hb);
    return rc;
}

static int writer_segment(struct ant_c4gh_writer *w, const uint8_t *p, size_t len)
{
    int rc = ant_c4gh_segment_encrypt(w->c, w->h, ant_bytes_of(p, len), w->seg,
                                      ANT_C4GH_CIPHER_SEGMENT_LEN);
    if (rc < 0) {
        return rc;
    }
    size_t n = (size_t)rc;
    rc = 0;
    if (!w->no_digests) {
        rc = sha_update(w->sha.plain, p, len);
    }
    if (rc == 0 && !w->no_digests) {
        rc = sha_update(w->sha.body, w->seg, n);
    }
    if (rc == 0) {
        rc = w->sink(w->arg, w->seg, n);
    }
    if (rc == 0) {
        w->dg.plain_len += len;
        w->dg.body_len += n;
    }
    return rc;
}

void ant_c4gh_writer_skip_digests(struct ant_c4gh_writer *w)
{
    w->no_digests = true;
}

int ant_c4gh_writer_write(struct ant_c4gh_writer *w, struct ant_bytes plain)
{
    struct ant_rd rd = ant_rd_init(plain);
    int rc;
    if (w->done) {
        return -EINVAL;
    }
    rc = writer_send_header(w);
    while (rc == 0 && ant_rd_left(&rd) > 0) {
        size_t left = ant_rd_left(&rd);
        struct ant_bytes v;
        if (w->fill == 0 && left >= ANT_C4GH_SEGMENT_LEN) {
            /* a whole segment in the input: encrypt it in place, no copy */
            rc = ant_rd_view(&rd, ANT_C4GH_SEGMENT_LEN, &v);
            if (rc == 0) {
                rc = writer_segment(w, v.p, v.len);
            }
            continue;
        }
        size_t take = ANT_C4GH_SEGMENT_LEN - w->fill;
        take = take < left ? take : left;
        rc = ant_rd_copy(&rd, w->plain + w->fill, take);
        w->fill += take;
        /* A full buffer is sent only when more data follows or at finish, which is the same
         * thing here: a full segment is always a valid segment. */
        if (rc == 0 && w->fill == ANT_C4GH_SEGMENT_LEN) {
            rc = writer_segment(w, w->plain, w->fill);
            w->fill = 0;
        }
    }
    if (rc < 0) {
        w->done = true; /* a failed stream cannot be resumed: the sink saw part of it */
    }
    return rc;
}

int ant_c4gh_writer_finish(struct ant_c4gh_writer *w, struct ant_c4gh_digests *dg)
{
    int rc;
    if (w->done) {
        return -EINVAL;
    }
    w->done = true;
    rc = writer_send_header(w);
    /* No empty segment: an empty plaintext has none, an aligned one ends on a full segment. */
    if (rc == 0 && w->fill > 0) {
        rc = writer_segment(w, w->plain, w->fill);
        w->fill = 0;
    }
    if (rc == 0 && !w->no_digests) {
        rc = sha_pair_final(&w->sha, &w->dg);
    }
    if (rc == 0 && dg != NULL) {
        *dg = w->dg;
    }
    return rc;
}

/* --- reader --- */

enum { RD_HEADER, RD_BODY, RD_DONE, RD_FAILED };

struct ant_c4gh_reader {
    const struct ant_key *key;
    uint8_t sender_pk[ANT_KEY_LEN];
    bool has_sender;
    ant_c4gh_sink_fn sink;
    void *arg;
    int state;
    struct ant_buf hdr; /* header bytes until the header is complete */
    size_t hdr_need;
    struct ant_c4gh_header *h;
    struct ant_c4gh_cipher *c;
    uint8_t *seg; /* one on-disk segment */
    size_t fill;
    uint8_t *plain; /* wiped on free */
    uint64_t index; /* of the next segment */
    /* edit list: entries alternate skip, keep; `left` is what remains of entry `ei` */
    const uint64_t *edits;
    size_t nedits, ei;
    uint64_t left;
    bool editing;
    struct sha_pair sha;
    bool no_digests;
    struct ant_c4gh_digests dg;
    struct ant_diag diag;
};

int ant_c4gh_reader_new(const struct ant_key *key, const uint8_t *sender_pk,
                        ant_c4gh_sink_fn sink, void *arg, struct ant_c4gh_reader **out)
{
    struct ant_c4gh_reader *r = NULL;
    int rc = 0;
    if (key == NULL || sink == NULL) {
        rc = -EINVAL;
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    r->key = key;
    r->sink = sink;
    r->arg = arg;
    r->state = RD_HEADER;
    r->hdr_need = ANT_C4GH_PREAMBLE_LEN;
    ant_buf_init(&r->hdr, ANT_C4GH_MAX_HEADER_LEN);
    if (sender_pk != NULL) {
        memcpy(r->sender_pk, sender_pk, ANT_KEY_LEN);
        r->has_sender = true;
    }
    r->seg = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
    r->plain = malloc(ANT_C4GH_SEGMENT_LEN);
    if (r->seg == NULL || r->plain == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = ant_c4gh_cipher_new(&r->c);
    if (rc == 0) {
        rc = sha_pair_init(&r->sha);
    }
    if (rc < 0) {
        goto out;
    }
    *out = r;
    r = NULL;
out:
    ant_c4gh_reader_free(r);
    return rc;
}

void ant_c4gh_reader_free(struct ant_c4gh_reader *r)
{
    if (r == NULL) {
        return;
    }
    if (r->plain != NULL) {
        sodium_memzero(r->plain, ANT_C4GH_SEGMENT_LEN);
    }
    free(r->plain);
    free(r->seg);
    ant_buf_fini(&r->hdr);
    ant_c4gh_header_free(r->h);
    ant_c4gh_cipher_free(r->c);
    sha_pair_fini(&r->sha);
    free(r);
}

void ant_c4gh_reader_skip_digests(struct ant_c4gh_reader *r)
{
    r->no_digests = true;
}

const struct ant_c4gh_header *ant_c4gh_reader_header(const struct ant_c4gh_reader *r)
{
    return r->h;
}

const char *ant_c4gh_reader_diag(const struct ant_c4gh_reader *r)
{
    return ant_diag_msg(&r->diag, "no error");
}

/* Sends the kept parts of one segment's plaintext (FORMAT-NOTES §7: lengths count over the
 * plaintext of the segments present, and may span segments). */
static int emit_plain(struct ant_c4gh_reader *r, const uint8_t *p, size_t len)
{
    int rc = 0;
    while (rc == 0 && len > 0) {
        size_t n = len;
        bool keep = true;
        if (r->editing) {
            if (r->ei == r->nedits) {
                /* past the list: odd count keeps the rest, even count drops it */
                keep = (r->nedits % 2) == 1;
            } else {
                keep = (r->ei % 2) == 1;
                n = r->left < len ? (size_t)r->left : len;
                r->left -= n;
                while (r->ei < r->nedits && r->left == 0) {
                    r->ei++;
                    r->left = r->ei < r->nedits ? r->edits[r->ei] : 0;
                }
            }
        }
        if (keep && n > 0) {
            rc = r->no_digests ? 0 : sha_update(r->sha.plain, p, n);
            if (rc == 0) {
                rc = r->sink(r->arg, p, n);
            }
            r->dg.plain_len += n;
        }
        p += n;
        len -= n;
    }
    return rc;
}

/* True when the edit list throws away all `len` next plaintext bytes: such a segment is
 * skipped without being decrypted, as the reference does; its bytes still go into the body
 * hash. */
static bool edit_skips(struct ant_c4gh_reader *r, size_t len)
{
    if (!r->editing) {
        return false;
    }
    if (r->ei == r->nedits) {
        return (r->nedits % 2) == 0;
    }
    if ((r->ei % 2) == 1) {
        return false;
    }
    /* the current skip must cover the whole segment; advancing is done by emit_plain's logic */
    return r->left >= len;
}

static int reader_segment(struct ant_c4gh_reader *r, const uint8_t *p, size_t len)
{
    int rc = r->no_digests ? 0 : sha_update(r->sha.body, p, len);
    if (rc < 0) {
        return rc;
    }
    r->dg.body_len += len;
    if (len <= ANT_C4GH_SEGMENT_OVERHEAD) {
        ant_diag_set(&r->diag, "segment %llu is %zu bytes: too short to hold any data, the file "
                     "is truncated or corrupt", (unsigned long long)r->index, len);
        return -EBADMSG;
    }
    size_t plen = len - ANT_C4GH_SEGMENT_OVERHEAD;
    if (edit_skips(r, plen)) {
        if (r->ei < r->nedits) {
            r->left -= plen;
            while (r->ei < r->nedits && r->left == 0) {
                r->ei++;
                r->left = r->ei < r->nedits ? r->edits[r->ei] : 0;
            }
        }
        r->index++;
        return 0;
    }
    rc = ant_c4gh_segment_decrypt(r->c, r->h, ant_bytes_of(p, len), r->plain,
                                  ANT_C4GH_SEGMENT_LEN);
    if (rc < 0) {
        ant_diag_set(&r->diag, "segment %llu (body offset %llu) failed authentication: the file "
                     "was altered or is corrupt", (unsigned long long)r->index,
                     (unsigned long long)(r->dg.body_len - len));
        return rc;
    }
    r->index++;
    return emit_plain(r, r->plain, (size_t)rc);
}

static int reader_header(struct ant_c4gh_reader *r, struct ant_rd *rd)
{
    int rc = 0;
    while (ant_rd_left(rd) > 0) {
        size_t take = r->hdr_need - r->hdr.len;
        struct ant_bytes v;
        take = take < ant_rd_left(rd) ? take : ant_rd_left(rd);
        rc = ant_rd_view(rd, take, &v);
        if (rc == 0) {
            rc = ant_buf_append(&r->hdr, v.p, v.len);
        }
        if (rc < 0) {
            return rc;
        }
        if (r->hdr.len < r->hdr_need) {
            return 0; /* wait for more input */
        }
        size_t hl = 0;
        rc = ant_c4gh_header_measure(ant_buf_view(&r->hdr), &hl, &r->diag);
        if (rc == -EAGAIN) {
            r->hdr_need = hl;
            continue;
        }
        if (rc < 0) {
            return rc;
        }
        rc = ant_c4gh_header_parse(ant_buf_view(&r->hdr), r->key,
                                   r->has_sender ? r->sender_pk : NULL, 0, &r->h, &r->diag);
        if (rc < 0) {
            return rc;
        }
        r->dg.header_len = hl;
        r->editing = ant_c4gh_header_edits(r->h, &r->edits, &r->nedits) && r->nedits > 0;
        r->left = r->editing ? r->edits[0] : 0;
        /* leading zero-length entries */
        while (r->editing && r->ei < r->nedits && r->left == 0) {
            r->ei++;
            r->left = r->ei < r->nedits ? r->edits[r->ei] : 0;
        }
        ant_buf_fini(&r->hdr);
        r->state = RD_BODY;
        return 0;
    }
    return 0;
}

int ant_c4gh_reader_write(struct ant_c4gh_reader *r, struct ant_bytes in)
{
    struct ant_rd rd = ant_rd_init(in);
    int rc = 0;
    if (r->state != RD_HEADER && r->state != RD_BODY) {
        return -EINVAL;
    }
    if (r->state == RD_HEADER) {
        rc = reader_header(r, &rd);
    }
    while (rc == 0 && r->state == RD_BODY && ant_rd_left(&rd) > 0) {
        struct ant_bytes v;
        size_t left = ant_rd_left(&rd);
        if (r->fill == 0 && left >= ANT_C4GH_CIPHER_SEGMENT_LEN) {
            rc = ant_rd_view(&rd, ANT_C4GH_CIPHER_SEGMENT_LEN, &v);
            if (rc == 0) {
                rc = reader_segment(r, v.p, v.len);
            }
            continue;
        }
        size_t take = ANT_C4GH_CIPHER_SEGMENT_LEN - r->fill;
        take = take < left ? take : left;
        rc = ant_rd_copy(&rd, r->seg + r->fill, take);
        r->fill += take;
        if (rc == 0 && r->fill == ANT_C4GH_CIPHER_SEGMENT_LEN) {
            rc = reader_segment(r, r->seg, r->fill);
            r->fill = 0;
        }
    }
    if (rc < 0) {
        r->state = RD_FAILED;
    }
    return rc;
}

int ant_c4gh_reader_finish(struct ant_c4gh_reader *r, struct ant_c4gh_digests *dg)
{
    int rc = 0;
    if (r->state == RD_HEADER) {
        ant_diag_set(&r->diag, "the input ended inside the Crypt4GH header (%zu bytes read)",
                     r->hdr.len);
        r->state = RD_FAILED;
        return -EBADMSG;
    }
    if (r->state != RD_BODY) {
        return -EINVAL;
    }
    if (r->fill > 0) {
        rc = reader_segment(r, r->seg, r->fill);
        r->fill = 0;
    }
    if (rc == 0 && !r->no_digests) {
        rc = sha_pair_final(&r->sha, &r->dg);
    }
    if (rc < 0) {
        r->state = RD_FAILED;
        return rc;
    }
    r->state = RD_DONE;
    if (dg != NULL) {
        *dg = r->dg;
    }
    return 0;
}

/* --- re-encryption between fds --- */

int ant_c4gh_header_read_fd(int fd, struct ant_buf *hdr, struct ant_diag *d)
{
    size_t base = hdr->len, need = ANT_C4GH_PREAMBLE_LEN;
    int rc = 0;
    /* Read exactly as much as the header needs, so nothing of the body is consumed. */
    while (rc == 0) {
        size_t hl = 0, have = hdr->len - base;
        rc = ant_buf_reserve(hdr, need - have);
        if (rc < 0) {
            break;
        }
        ssize_t got = ant_read_full(fd, hdr->p + hdr->len, need - have);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        hdr->len += (size_t)got;
        have += (size_t)got;
        rc = ant_c4gh_header_measure(ant_bytes_of(hdr->p + base, have), &hl, d);
        if (rc == -EAGAIN && have < need) {
            ant_diag_set(d, "the input ended inside the Crypt4GH header (%zu bytes read)", have);
            rc = -EBADMSG;
        } else if (rc == -EAGAIN) {
            need = hl;
            rc = 0;
        } else {
            break; /* 0: complete, or an error */
        }
    }
    return rc;
}

int ant_c4gh_reencrypt_fd(int in_fd, int out_fd, const struct ant_key *key,
                          const uint8_t *recipients, size_t n, unsigned flags, struct ant_diag *d)
{
    struct ant_buf hdr = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    struct ant_buf nh = ANT_BUF_INIT(ANT_C4GH_MAX_HEADER_LEN);
    uint8_t *buf = malloc(ANT_C4GH_CIPHER_SEGMENT_LEN);
    int rc = buf == NULL ? -ENOMEM : ant_c4gh_header_read_fd(in_fd, &hdr, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_c4gh_reencrypt_header(ant_buf_view(&hdr), key, recipients, n,
                                   (flags & ANT_C4GH_REENC_TRIM) != 0, &nh, NULL, d);
    if (rc < 0) {
        goto out;
    }
    rc = ant_write_all(out_fd, nh.p, nh.len);
    /* The body is copied byte for byte: its segments are sealed with the data key, which a
     * change of recipient does not touch. */
    while (rc == 0 && !(flags & ANT_C4GH_REENC_HEADER_ONLY)) {
        ssize_t got = ant_read_full(in_fd, buf, ANT_C4GH_CIPHER_SEGMENT_LEN);
        if (got <= 0) {
            rc = (int)got;
            break;
        }
        rc = ant_write_all(out_fd, buf, (size_t)got);
    }
out:
    free(buf);
    ant_buf_fini(&hdr);
    ant_buf_fini(&nh);
    return rc;
}
